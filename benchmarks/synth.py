"""Synthetic song render speed: x real time per core for each backend, and 16-bit writing to disk.

    PYTHONPATH=src python benchmarks/synth.py [--songs 3] [--seconds 60]

CPU time (``time.process_time``) of one process is what "per core" means; wall time is printed too
because shared machines make it larger. The issue's target is >= 20x real time per core; the
numpy backend is the reference measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from stemforge.data.synth import render_song_with_plan, write_song
from stemforge.data.synth import soundfont

TARGET = 20.0


def measure(backend: str, seeds: list[int], seconds: float, write_to: Path | None) -> tuple[float, float]:
    render_song_with_plan(seeds[0], 2.0, backend=backend)  # warm-up: imports, SoundFont preset scan
    cpu, wall = time.process_time(), time.perf_counter()
    for seed in seeds:
        tracks, meta = render_song_with_plan(seed, seconds, backend=backend)
        if write_to is not None:
            write_song(write_to / f"song_{seed}", tracks, 44100, meta, bits=16)
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    seeds = list(range(100, 100 + args.songs))
    audio = args.songs * args.seconds
    backends = ["numpy"] + ([] if soundfont.available() else ["soundfont"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            for write in (False, True):
                cpu, wall = measure(backend, seeds, args.seconds, Path(tmp) / backend if write else None)
                rows.append((backend, "render+write" if write else "render", cpu, wall))
    reference = audio / rows[0][2]
    print(f"{args.songs} songs x {args.seconds:g} s = {audio:g} s of audio; target >= {TARGET:g}x real time per core")
    print(f"{'backend':<10} {'task':<13} {'cpu s':>7} {'wall s':>7} {'xRT/core':>9} {'vs numpy':>9} {'vs target':>9}")
    for backend, task, cpu, wall in rows:
        speed = audio / cpu
        print(f"{backend:<10} {task:<13} {cpu:7.2f} {wall:7.2f} {speed:9.1f} {speed / reference:9.2f} {speed / TARGET:9.2f}")
    if soundfont.available():
        print(f"soundfont backend not measured: {soundfont.available()}")


if __name__ == "__main__":
    main()
