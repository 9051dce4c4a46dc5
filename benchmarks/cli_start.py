"""Start-up time of the ``stemforge`` command: each command runs as a fresh subprocess N times; median wall.

    python benchmarks/cli_start.py [--runs 7] [--command=--help --command=models]

Prints the machine's state before and after (CPU count, 1-minute load average, and whether the load was
below half the core count: "quiet" or "loaded"), then one line per command: median, min and max wall seconds,
and the median CPU seconds (user + system) of the process, which a loaded machine inflates much less.
Targets (issue #11): ``stemforge --help`` < 1 s, ``stemforge models`` < 3 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
DEFAULT_COMMANDS = ("--help", "models", "models list", "separate --help")


def machine_state() -> str:
    """One line: cores, 1-minute load average, and quiet/loaded.

    Returns:
        e.g. "2 cores, load 0.42 (quiet)".
    """
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    state = "quiet" if load < 0.5 * cores else "loaded"
    return f"{cores} cores, load {load:.2f} ({state})"


def time_command(args: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``python -m stemforge ARGS`` run ``runs`` times, each in a fresh process.

    Args:
        args: the stemforge arguments.
        runs: how many times.

    Returns:
        (wall times, CPU times) in seconds, one per run.
    """
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep)}
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "stemforge", *args], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if result.returncode != 0:
            raise SystemExit(f"stemforge {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return walls, cpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (default 7)")
    parser.add_argument("--command", action="append", help="stemforge arguments, quoted, as --command='models --json' (repeatable)")
    options = parser.parse_args()
    print(f"python {sys.version.split()[0]}; before: {machine_state()}")
    for command in options.command or DEFAULT_COMMANDS:
        args = shlex.split(command)
        times, cpus = time_command(args, options.runs)
        print(f"stemforge {command:<18} median {statistics.median(times):.2f} s  "
              f"(min {min(times):.2f}, max {max(times):.2f}, n={len(times)})  cpu {statistics.median(cpus):.2f} s")
    print(f"after: {machine_state()}")


if __name__ == "__main__":
    main()
