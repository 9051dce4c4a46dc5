#!/bin/sh
# Profile `stemforge separate` end to end on a 10-minute song (issue #18) with py-spy, and print the hottest frames.
#
#   sh benchmarks/profile_separate.sh [SECONDS] [OUTDIR]      (needs py-spy on PATH or in $PYSPY: pip install py-spy)
#
# The song is examples/example.flac tiled to SECONDS (default 600) and written as FLAC; the profile is py-spy's
# "raw" (collapsed stacks) format in OUTDIR/profile.txt, summarised as inclusive and self shares per function.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-600}
out=${2:-$(mktemp -d)}
python=${PYTHON:-python}
export PYTHONPATH="$here/src${PYTHONPATH:+:$PYTHONPATH}"
"$python" - "$here/examples/example.flac" "$out/song.flac" "$seconds" <<'PY'
import sys
import numpy as np
import soundfile as sf
wav, rate = sf.read(sys.argv[1], dtype="float32", always_2d=True)
frames = int(float(sys.argv[3]) * rate)
sf.write(sys.argv[2], np.tile(wav, (frames // len(wav) + 1, 1))[:frames], rate, subtype="PCM_16")
PY
uptime
"${PYSPY:-py-spy}" record -r 50 -f raw -o "$out/profile.txt" -- \
    "$python" -m stemforge separate "$out/song.flac" -o "$out/separated" 2>/dev/null
uptime
"$python" - "$out/profile.txt" <<'PY'
import collections, re, sys
inclusive, own, total = collections.Counter(), collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, count = line.rstrip().rsplit(" ", 1)
    frames = [re.sub(r":\d+\)", ")", f) for f in stack.split(";")]
    total += int(count)
    for f in set(frames):
        inclusive[f] += int(count)
    own[frames[-1]] += int(count)
print(f"{total} samples; inclusive:")
for f, n in inclusive.most_common(30):
    print(f"{100 * n / total:5.1f}% {f}")
print("self:")
for f, n in own.most_common(15):
    print(f"{100 * n / total:5.1f}% {f}")
PY
echo "profile: $out/profile.txt"
