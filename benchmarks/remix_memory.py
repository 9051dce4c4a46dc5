"""Peak memory of `stemforge remix` against track length: it must stay flat (the stems are streamed).

Writes one stem folder per length (``drums, bass, other, vocals`` and ``mixture``, 44.1 kHz stereo 16-bit wav:
filtered noise and tones, loud enough that the limiter works), then remixes it (``--karaoke``) in a fresh
process per length and prints that process's peak RSS (``ru_maxrss``) and wall time, for the streaming command
and, with ``--in-memory``, for the whole-array path (``load_stem_folder`` + ``remix`` + ``save``, what the command
did before) as the comparison. The last column is the peak RSS relative to the first length's: about 1.0 for a
flat profile. Usage:

    PYTHONPATH=src python benchmarks/remix_memory.py [--minutes 5 20] [--in-memory] [--keep DIR]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

from stemforge.stems import FOUR_STEMS

SR = 44100

IN_MEMORY = """
import sys
from stemforge.audio import save
from stemforge.remix import load_stem_folder, remix
folder = load_stem_folder(sys.argv[1])
mix = remix(folder.stems, folder.rate, {"vocals": float("-inf")}, None, folder.mixture, folder.mixture_rate)
save(sys.argv[2], mix, folder.rate, bits="24", overwrite=True)
"""


def _block(rng: np.random.Generator, start: int, n: int) -> dict[str, np.ndarray]:
    """One block of (2, n) float32 stems: clicky drums, low bass, band-passed noise, a tremolo tone."""
    t = (start + np.arange(n)) / SR
    noise = rng.standard_normal((4, 2, n))
    stems = {
        "drums": 0.6 * np.exp(-((t * 2) % 1) * 30) * noise[0],
        "bass": 0.4 * np.sin(2 * np.pi * 55 * t) + 0.05 * lfilter([0.02], [1.0, -0.98], noise[1], axis=-1),
        "other": 0.2 * lfilter([1.0, 0.0, -1.0], [1.0, -1.6, 0.8], noise[2], axis=-1) / 4,
        "vocals": 0.3 * np.sin(2 * np.pi * (440 + 30 * np.sin(t)) * t) * (1 + 0.5 * np.sin(2 * np.pi * 5 * t))
        + 0.01 * noise[3],
    }
    return {k: v.astype(np.float32) for k, v in stems.items()}


def write_folder(folder: Path, minutes: float) -> None:
    """The stems and their sum as ``mixture.wav``, streamed to disk a minute at a time."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    files = {s: sf.SoundFile(folder / f"{s}.wav", "w", SR, 2, "PCM_16") for s in (*FOUR_STEMS, "mixture")}
    try:
        total, start = int(minutes * 60 * SR), 0
        while start < total:
            n = min(total - start, 60 * SR)
            stems = _block(rng, start, n)
            stems["mixture"] = np.clip(sum(stems.values()), -1, 1)
            for name, f in files.items():
                f.write(stems[name].T)
            start += n
    finally:
        for f in files.values():
            f.close()


def measure(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of one child process (``ru_maxrss`` of the children is their maximum,
    so each measurement runs under a fresh Python that starts the child)."""
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr}")
    return int(result.stdout.split()[-1]) / 1024, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[5.0, 20.0])
    parser.add_argument("--in-memory", action="store_true", help="also run the whole-array path, for comparison")
    parser.add_argument("--keep", type=Path, help="write the folders here and keep them (default: a temp dir)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="remix_memory_"))
    rows = []
    for minutes in args.minutes:
        folder = root / f"song_{minutes:g}min"
        if not folder.exists():
            write_folder(folder, minutes)
        out = root / f"karaoke_{minutes:g}min.wav"
        runs = {"stream": [sys.executable, "-m", "stemforge", "remix", str(folder), "-o", str(out), "--karaoke", "-f"]}
        if args.in_memory:
            runs["in-memory"] = [sys.executable, "-c", IN_MEMORY, str(folder), str(out)]
        for name, cmd in runs.items():
            rss, wall = measure(cmd)
            rows.append((name, minutes, rss, wall))
            print(f"{name:9s} {minutes:5g} min  peak RSS {rss:7.0f} MB  {wall:6.1f} s", flush=True)
    print("\npath       minutes  peak RSS (MB)  wall (s)  RSS / first length's")
    for name, minutes, rss, wall in rows:
        base = next(r[2] for r in rows if r[0] == name)
        print(f"{name:9s} {minutes:8g} {rss:14.0f} {wall:9.1f} {rss / base:10.2f}")
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
