"""Render songs with the synthesiser of commit 009df8b: the data the bundled default model was trained and scored on.

    git archive 009df8b src | tar -x -C /tmp/old009
    PYTHONPATH=/tmp/old009/src python recipes/old_synth_009df8b.py runs/data/train_009df8b 0 60          # training
    PYTHONPATH=/tmp/old009/src python recipes/old_synth_009df8b.py runs/data/eval_009df8b 1000000000 8  # old split

Songs are 30 s, numpy synthesis (that commit had no SoundFont backend). Today's ``data synth`` renders other songs
for the same seeds (the generator changed since), so MODEL_CARD.md's "old synthetic split" figures need this script.
"""

import sys
from pathlib import Path

from stemforge.data.synth.render import render_song_with_plan, write_song  # the 009df8b version, via PYTHONPATH

out, first, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for seed in range(first, first + count):
    tracks, meta = render_song_with_plan(seed, 30.0, 44100)
    write_song(out / f"song_{seed:010d}", tracks, 44100, meta)
    print("done", seed, flush=True)
