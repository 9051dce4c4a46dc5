#!/usr/bin/env bash
# Reproduce the bundled default model: render the synthetic songs, train, install the checkpoint, evaluate.
# Usage: bash recipes/default.sh   (from anywhere; PYTHON overrides the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
PY="${PYTHON:-python}"

[ -d runs/data/train ] || "$PY" -m stemforge data synth --out runs/data/train --songs 120 --seconds 30 --seed 0
[ -d runs/data/eval ] || "$PY" -m stemforge data synth --out runs/data/eval --songs 8 --seconds 30 --seed 0 --evaluation
if [ -f runs/default/state.pt ]; then
  "$PY" -m stemforge train --config recipes/default.toml --resume
else
  "$PY" -m stemforge train --config recipes/default.toml
fi
mkdir -p src/stemforge/assets
cp runs/default/best.safetensors src/stemforge/assets/default.safetensors
"$PY" benchmarks/default_model.py --data runs/data/eval --checkpoint src/stemforge/assets/default.safetensors
