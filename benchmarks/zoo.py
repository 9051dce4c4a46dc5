"""HTDemucs separation: stemforge's streaming engine vs demucs' own ``apply_model``, CPU time and peak memory.

Both run the same htdemucs-architecture package (the released hyper-parameters, random weights; demucs
must be installed, see requirements-parity.txt) on the same noise, each case in a fresh process:

- demucs: ``apply_model(model, mix, shifts=0, split=True, overlap=0.25)`` on the whole tensor (its API);
- ours:   ``load_pretrained`` + ``engine.separate_blocks`` reading the input from disk in blocks and writing
          the stems to disk as they finish (what ``stemforge separate`` does), same segment and overlap.

Prints CPU seconds (all threads), wall seconds, and peak RSS of each process, with ours/demucs ratios.
Usage: python benchmarks/zoo.py [--seconds 60 600] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

SR = 44100
BLOCK = 1 << 18


def make_package(path: Path, channels: int = 48) -> None:
    """Released htdemucs hyper-parameters (demucs defaults + dconv_mode 3, 7.8 s segment), random weights.

    ``channels`` (48 in the release) scales the width only, for quicker runs on small machines.
    """
    import torch
    from demucs.htdemucs import HTDemucs
    from demucs.states import get_state

    from stemforge.stems import FOUR_STEMS

    torch.manual_seed(0)
    kwargs = dict(sources=list(FOUR_STEMS), channels=channels, dconv_mode=3, t_layers=5,
                  segment=Fraction(39, 5))
    model = HTDemucs(**kwargs)
    torch.save({"klass": HTDemucs, "args": (), "kwargs": kwargs, "state": get_state(model, None, half=True),
                "training_args": {}}, path)


def make_input(path: Path, seconds: float) -> None:
    rng = np.random.default_rng(0)
    with path.open("wb") as fh:  # channel-major raw float32, written a minute at a time
        total = int(seconds * SR)
        for channel in range(2):
            for start in range(0, total, 60 * SR):
                (0.1 * rng.standard_normal(min(60 * SR, total - start))).astype(np.float32).tofile(fh)


def read_block(path: Path, total: int, start: int, n: int) -> np.ndarray:
    """(1, 2, n) float32 read with plain file I/O (no memory map, so it does not count as resident)."""
    out = np.empty((1, 2, n), dtype=np.float32)
    with path.open("rb") as fh:
        for channel in range(2):
            fh.seek((channel * total + start) * 4)
            out[0, channel] = np.fromfile(fh, dtype=np.float32, count=n)
    return out


def child(engine: str, package: Path, input_path: Path, seconds: float, out_path: Path) -> dict:
    import torch

    total = int(seconds * SR)
    if engine == "demucs":
        from demucs.apply import apply_model
        from demucs.states import load_model

        model = load_model(str(package)).eval()
    else:
        from stemforge.engine import EngineOptions, separate_blocks
        from stemforge.models.compat import load_pretrained

        model = load_pretrained(package)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cpu, wall = time.process_time(), time.perf_counter()
    with torch.inference_mode():
        if engine == "demucs":
            mix = torch.from_numpy(read_block(input_path, total, 0, total))
            out = apply_model(model, mix, shifts=0, split=True, overlap=0.25, progress=False)
            out.numpy().tofile(out_path)
        else:
            options = EngineOptions(segment=float(model.default_segment), overlap=0.25)
            blocks = (read_block(input_path, total, s, min(BLOCK, total - s)) for s in range(0, total, BLOCK))
            with out_path.open("wb") as fh:
                for stems in separate_blocks(model, blocks, 1, options):
                    stems.tofile(fh)
    return {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "model_mb": base_rss}


def run_cases(package: Path, input_path: Path, seconds: float, threads: int, tmp: Path, parallel: bool) -> dict:
    """{engine: measurements}, each engine in its own process (both at once with ``parallel``)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    procs = {}
    results = {}
    for engine in ("demucs", "ours"):
        cmd = [sys.executable, __file__, "--child", engine, "--package", str(package), "--input", str(input_path),
               "--seconds", str(seconds), "--threads", str(threads), "--out", str(tmp / f"{engine}.out")]
        procs[engine] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if not parallel:
            results[engine] = _collect(engine, procs.pop(engine), tmp)
    for engine, proc in procs.items():
        results[engine] = _collect(engine, proc, tmp)
    return results


def _collect(engine: str, proc: subprocess.Popen, tmp: Path) -> dict:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{engine} failed:\n{err}")
    (tmp / f"{engine}.out").unlink(missing_ok=True)
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[60, 600])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--channels", type=int, default=48, help="htdemucs base width (48 = released models)")
    parser.add_argument("--parallel", action="store_true",
                        help="run both engines at once (CPU time and peak RSS are per process; wall times then interfere)")
    parser.add_argument("--child", choices=["ours", "demucs"])
    parser.add_argument("--package", type=Path)
    parser.add_argument("--input", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.child, args.package, args.input, args.seconds[0], args.out)))
        return
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        package = tmp / "htdemucs.th"
        make_package(package, args.channels)
        rows = []
        for seconds in args.seconds:
            input_path = tmp / "mix.f32"
            make_input(input_path, seconds)
            res = run_cases(package, input_path, seconds, args.threads, tmp, args.parallel)
            rows.append((seconds, res))
            d, o = res["demucs"], res["ours"]
            print(f"{seconds:>6.0f} s  demucs cpu {d['cpu']:7.1f} s wall {d['wall']:7.1f} s peak {d['peak_mb']:7.0f} MB | "
                  f"ours cpu {o['cpu']:7.1f} s wall {o['wall']:7.1f} s peak {o['peak_mb']:7.0f} MB | "
                  f"cpu ratio {o['cpu'] / d['cpu']:.2f}  peak ratio {o['peak_mb'] / d['peak_mb']:.2f}  "
                  f"(after model load: demucs {d['model_mb']:.0f} MB, ours {o['model_mb']:.0f} MB)", flush=True)
    print(f"htdemucs channels={args.channels}, threads={args.threads}; ratios are ours / demucs (lower is better); peak = max RSS of the separating "
          "process (model included)")


if __name__ == "__main__":
    main()
