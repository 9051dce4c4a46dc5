#!/usr/bin/env bash
# Reproduce the bundled low-latency model: songs, warm start from the default model, fine-tune, install.
# Usage: bash recipes/lowlatency.sh   (from anywhere; PYTHON overrides the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
PY="${PYTHON:-python}"

# --backend numpy: the numpy synths the default model was trained on (with a SoundFont installed, auto picks it).
[ -d runs/data/train ] || "$PY" -m stemforge data synth --out runs/data/train --songs 120 --seconds 30 --seed 0 --backend numpy --jobs 2
# The default model's weights in the causal U-Net (same parameter names and kernel shapes).
[ -f runs/lowlatency_init.safetensors ] || "$PY" - <<'PYEOF'
from stemforge.checkpoint import save_checkpoint
from stemforge.hub import load_model
from stemforge.models.causal_unet import from_unet

save_checkpoint(from_unet(load_model("default")), "runs/lowlatency_init.safetensors", origin="default.safetensors")
PYEOF
"$PY" -m stemforge train --config recipes/lowlatency.toml
mkdir -p src/stemforge/assets
cp runs/lowlatency/best.safetensors src/stemforge/assets/lowlatency.safetensors
