"""Peak memory of `stemforge evaluate` against track length: it must stay flat (window-by-window scoring).

Writes one MUSDB-style track (``<data>/<track>/{mixture,drums,bass,other,vocals}.wav``: filtered noise
and tones, no synth rendering) of each length plus an estimates folder (the stems with some leakage and
noise), then runs ``stemforge evaluate --estimates EST --data DATA`` WITH the reference points (oracle
IRM/IBM/MWF, mixture, classical model) in a fresh process per length and prints that process's peak
RSS (``ru_maxrss``) and wall time. Usage:

    PYTHONPATH=src python benchmarks/evaluate_memory.py [--minutes 1 3 10] [--model NAME] [--no-references]
        [--no-classical] [--keep DIR]
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
import soundfile as sf
from scipy.signal import lfilter

from stemforge.stems import FOUR_STEMS

SR = 44100
STEMS = FOUR_STEMS


def _block(rng: np.random.Generator, start: int, n: int) -> dict[str, np.ndarray]:
    """One block of (2, n) float32 stems: clicky drums, low bass, band-passed 'other', tremolo voice tone."""
    t = (start + np.arange(n)) / SR
    noise = rng.standard_normal((4, 2, n))
    stems = {
        "drums": 0.3 * np.exp(-((t * 2) % 1) * 30) * noise[0],
        "bass": 0.2 * np.sin(2 * np.pi * 55 * t) + 0.05 * lfilter([0.02], [1.0, -0.98], noise[1], axis=-1),
        "other": 0.1 * lfilter([1.0, 0.0, -1.0], [1.0, -1.6, 0.8], noise[2], axis=-1) / 4,
        "vocals": 0.2 * np.sin(2 * np.pi * (440 + 30 * np.sin(t)) * t) * (1 + 0.5 * np.sin(2 * np.pi * 5 * t))
        + 0.01 * noise[3],
    }
    stems["vocals"] = stems["vocals"] * ((t % 20) > 4)  # silent stretches, as in songs
    return {k: v.astype(np.float32) for k, v in stems.items()}


def write_track(data: Path, estimates: Path, name: str, minutes: float) -> None:
    """Stems, mixture and estimates of one track, streamed to disk a minute at a time (16-bit wav)."""
    rng = np.random.default_rng(0)
    (data / name).mkdir(parents=True)
    (estimates / name).mkdir(parents=True)
    files = {s: sf.SoundFile(data / name / f"{s}.wav", "w", SR, 2, "PCM_16") for s in (*STEMS, "mixture")}
    files.update({f"est_{s}": sf.SoundFile(estimates / name / f"{s}.wav", "w", SR, 2, "PCM_16") for s in STEMS})
    try:
        total, start = int(minutes * 60 * SR), 0
        while start < total:
            n = min(total - start, 60 * SR)
            stems = _block(rng, start, n)
            mix = sum(stems.values())
            for s, wav in stems.items():
                files[s].write(wav.T)
                estimate = 0.8 * wav + 0.05 * mix + 0.005 * rng.standard_normal(wav.shape).astype(np.float32)
                files[f"est_{s}"].write(estimate.T)
            files["mixture"].write(mix.T)
            start += n
    finally:
        for f in files.values():
            f.close()


#: What ``stemforge evaluate --estimates EST --data DATA -o OUT --no-plots -q`` runs, minus the classical
#: model reference (whose separation is slow on a shared CPU and streams anyway; see benchmarks/memory.py).
NO_CLASSICAL = """
import sys
from pathlib import Path
from stemforge.evaluate import REFERENCE_METHODS, EvaluateOptions, estimates_method, evaluate, reference_method
from stemforge.report import write_tables
options = EvaluateOptions(progress=False)
methods = [estimates_method(Path(sys.argv[2]))] + [reference_method(n, options) for n in REFERENCE_METHODS]
write_tables(evaluate(Path(sys.argv[1]), methods, Path(sys.argv[3]), options), Path(sys.argv[3]))
"""


def evaluate(data: Path, estimates: Path, out: Path, model: str | None, references: bool,
             classical: bool = True) -> tuple[float, float]:
    """-> (peak RSS in MB of the evaluating process, wall seconds)."""
    cmd = [sys.executable, "-m", "stemforge", "evaluate", "--data", str(data), "--estimates", str(estimates),
           "-o", str(out), "--no-plots", "-q"]
    if model:
        cmd += ["--model", model]
    if not references:
        cmd.append("--no-references")
    elif not classical:
        cmd = [sys.executable, "-c", NO_CLASSICAL, str(data), str(estimates), str(out)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"evaluate failed: {proc.stderr.read().decode()}")
    return usage.ru_maxrss / 1024, elapsed  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 3, 10])
    parser.add_argument("--model", default=None, help="also score this model (default: only the estimates folder)")
    parser.add_argument("--no-references", action="store_true")
    parser.add_argument("--no-classical", action="store_true",
                        help="every reference point but the classical model (same code path, through the Python API)")
    parser.add_argument("--keep", type=Path, default=None, help="write the data here instead of a temporary folder")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| minutes | peak RSS (MB) | wall (s) |\n|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for minutes in args.minutes:
            base = root / f"{minutes:g}min"
            write_track(base / "data", base / "estimates", "track", minutes)
            peak, wall = evaluate(base / "data", base / "estimates", base / "report", args.model, not args.no_references,
                                  not args.no_classical)
            print(f"| {minutes:g} | {peak:.0f} | {wall:.1f} |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
