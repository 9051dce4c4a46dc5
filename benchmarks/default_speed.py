"""Speed of the bundled default model beside the classical baseline, measured in the same run.

    PYTHONPATH=src python benchmarks/default_speed.py [--threads 2] [--seconds 60] [--checkpoint PATH]

Separates ``--seconds`` of stereo 44.1 kHz audio (a synthetic song, looped) with ``Separator.separate_array``
(segmenting, overlap-add, the same path as ``stemforge separate``) and prints x real time for each model,
best of ``--repeats`` runs: by wall clock, and by CPU time (audio seconds per CPU-second of this process, all
threads summed), which a shared, overloaded machine does not distort: on ``--threads`` dedicated cores the wall-clock
figure would be about ``threads x`` that (less with imperfect thread scaling).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from stemforge.data.synth import render_song
from stemforge.separate import Separator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="src/stemforge/assets/default.safetensors")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stems = render_song(7, 20.0, 44100)
    mix = sum(stems.values())
    frames = int(args.seconds * 44100)
    mix = np.tile(mix, (1, frames // mix.shape[1] + 1))[:, :frames].astype(np.float32)
    print(f"| model | parameters | x real time, wall ({args.threads} threads, {args.seconds:.0f} s stereo 44.1 kHz) | audio s per CPU s |")
    print("|---|---|---|---|")
    for name, model in (("default", args.checkpoint), ("classical", "classical")):
        separator = Separator(model, threads=args.threads)
        best, best_cpu = float("inf"), float("inf")
        for _ in range(args.repeats):
            tic, cpu = time.perf_counter(), time.process_time()
            separator.separate_array(mix, 44100)
            best, best_cpu = min(best, time.perf_counter() - tic), min(best_cpu, time.process_time() - cpu)
        params = sum(p.numel() for p in separator.model.parameters())
        print(f"| {name} | {params / 1e6:.2f} M | {args.seconds / best:.1f}x | {args.seconds / best_cpu:.1f} |", flush=True)


if __name__ == "__main__":
    main()
