"""Peak memory of `stemforge separate` against input length: it must stay flat (streaming).

Writes 1, 10 and 60 minutes of stereo 44.1 kHz audio to a temporary folder, separates each in a fresh
process and prints that process's peak RSS and speed. Usage:

    python benchmarks/memory.py [--model classical] [--minutes 1 10 60] [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from stemforge.audio import AudioWriter

SR = 44100


def write_input(path: Path, minutes: float) -> None:
    """Noise plus a moving tone, streamed to disk a minute at a time."""
    rng = np.random.default_rng(0)
    with AudioWriter(path, SR, 2, "wav", "16", overwrite=True) as writer:
        remaining = int(minutes * 60 * SR)
        start = 0
        while remaining > 0:
            n = min(remaining, 60 * SR)
            t = (start + np.arange(n)) / SR
            tone = 0.2 * np.sin(2 * np.pi * (220 + 20 * np.sin(t / 7)) * t)
            block = 0.05 * rng.standard_normal((2, n)) + tone
            writer.write(block.astype(np.float32))
            start += n
            remaining -= n


def separate(path: Path, out: Path, model: str, jobs: int) -> tuple[float, float]:
    """-> (peak RSS in MB of the separating process, wall seconds)."""
    cmd = [sys.executable, "-m", "stemforge", "separate", str(path), "-o", str(out), "-n", model, "-q", "-j", str(jobs), "--force"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"separation failed: {proc.stderr.read().decode()}")
    return usage.ru_maxrss / 1024, elapsed  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 60])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in args.minutes:
            path = Path(tmp) / f"input_{minutes:g}min.wav"
            write_input(path, minutes)
            peak, elapsed = separate(path, Path(tmp) / "out", args.model, args.jobs)
            rows.append((minutes, peak, elapsed, minutes * 60 / elapsed))
            path.unlink()
            print(f"{minutes:g} min done: peak RSS {peak:.0f} MB, {elapsed:.0f} s", file=sys.stderr, flush=True)
    print(f"model: {args.model}, threads: {args.jobs}, input: stereo 44.1 kHz wav, output: 16-bit wav")
    print(f"{'input':>8}  {'peak RSS':>9}  {'wall':>8}  {'x real time':>11}")
    for minutes, peak, elapsed, speed in rows:
        print(f"{minutes:>6g} m  {peak:>6.0f} MB  {elapsed:>6.0f} s  {speed:>10.1f}x")
    if len(rows) > 1:
        print(f"peak RSS ratio, longest / shortest input: {rows[-1][1] / rows[0][1]:.2f}")


if __name__ == "__main__":
    main()
