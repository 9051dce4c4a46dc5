"""Throughput of ``stemforge batch`` (audio hours separated per wall-clock hour) with 1 and 2 workers.

    PYTHONPATH=src python benchmarks/batch.py [--tracks 8] [--seconds 30] [--model default] [--workers 1 2] [--ray]

Writes a library of ``--tracks`` synthetic songs (``stemforge.data.synth``, numpy backend) to a temporary folder
and separates it with ``run_batch`` (the code path of ``stemforge batch``) once per worker count, each worker on
one torch thread, into a fresh output folder: the local process pool, and with ``--ray`` also a Ray cluster
started here (``ray start --head --num-cpus=N``, stopped afterwards by its own process). Each row counts the
whole run (model load in every worker, planning, hashing, the manifest), as a user would see it. The 1-minute load
average is printed too: on a machine shared with other work the wall-clock figures shrink and 2 workers gain less.
Audio hours per worker CPU-hour (the workers' own CPU time per track) does not depend on that load: on dedicated
cores, N workers approach N times it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from stemforge.audio import save
from stemforge.batch.driver import run_batch
from stemforge.batch.library import walk_library
from stemforge.batch.runners import LocalRunner, RayRunner
from stemforge.batch.worker import SeparationSpec
from stemforge.data.synth import render_song
from stemforge.separate import OutputOptions


def make_library(folder: Path, tracks: int, seconds: float) -> None:
    for i in range(tracks):
        mix = sum(render_song(i, seconds, 44100, backend="numpy").values())
        save(folder / f"song{i:02d}.wav", np.clip(mix, -1, 1).astype(np.float32), 44100, bits=16)


def start_ray(cpus: int, temp: Path) -> tuple[str, subprocess.Popen]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    exe = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen([exe, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
                             f"--num-cpus={cpus}", "--include-dashboard=false", f"--temp-dir={temp}",
                             "--disable-usage-stats"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while subprocess.run([exe, "health-check", "--address", address], capture_output=True).returncode:
        if head.poll() is not None:
            raise SystemExit("ray start failed")
        time.sleep(0.5)
    return address, head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--model", default="default")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--ray", action="store_true", help="also run on a local Ray cluster of N CPUs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sf-batch-bench-", dir="/tmp") as tmp:
        library = Path(tmp) / "library"
        library.mkdir()
        make_library(library, args.tracks, args.seconds)
        tracks = walk_library(library)
        hours = args.tracks * args.seconds / 3600
        print(f"{args.tracks} tracks x {args.seconds:.0f} s ({hours * 60:.1f} audio minutes), model {args.model}, "
              f"1 torch thread per worker, {os.cpu_count()} CPUs")
        print("| runner | workers | wall s | audio hours per hour | audio hours per worker CPU-hour "
              "| load (1 min) before / after |")
        print("|---|---|---|---|---|---|")
        runs = [("local pool", w) for w in args.workers] + ([("ray", w) for w in args.workers] if args.ray else [])
        for kind, workers in runs:
            out = Path(tmp) / f"out-{kind.replace(' ', '-')}-{workers}"
            spec = SeparationSpec(args.model, OutputOptions(directory=out), threads=1)
            load = os.getloadavg()[0]
            head = None
            if kind == "ray":
                address, head = start_ray(workers, Path(tmp) / f"ray{workers}")
                runner = RayRunner(address, threads=1)
            else:
                runner = LocalRunner(workers)
            try:
                report = run_batch(tracks, spec, runner)
            finally:
                runner.close()
                if head is not None:
                    head.send_signal(signal.SIGTERM)
                    head.wait(60)
            assert report.count("done") == args.tracks, report.table()
            per_cpu = report.audio_hours("done") / (sum(t.cpu or 0.0 for t in report.tracks) / 3600)
            print(f"| {kind} | {workers} | {report.wall_seconds:.1f} | {report.throughput:.1f} | {per_cpu:.1f} | "
                  f"{load:.1f} / {os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
