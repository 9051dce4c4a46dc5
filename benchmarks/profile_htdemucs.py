"""Where HTDemucs spends its CPU time: torch.profiler over one segment, ours and demucs' (issue #18).

    PYTHONPATH=src python benchmarks/profile_htdemucs.py [--threads 2] [--seconds 7.8] [--rows 25] [--only ours]

Builds the released htdemucs architecture with random weights (as ``end_to_end.py`` does), runs one warm-up and
then one profiled forward pass of each model on the same ``--seconds`` of noise, and prints the operators by self
CPU time (the ``aten::`` ops where the time is spent) with the total wall time of each pass. glibc keeps freed
blocks for reuse as in ``stemforge separate`` (``engine.keep_freed_memory``), for both models.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

RATE = 44100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=7.8)
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--only", choices=["ours", "demucs"])
    parser.add_argument("--batch", type=int, default=1, help="segments per forward pass")
    args = parser.parse_args()
    import torch
    from torch.profiler import ProfilerActivity, profile

    from end_to_end import build_htdemucs

    torch.set_num_threads(args.threads)
    from stemforge.engine import keep_freed_memory

    keep_freed_memory()  # as the engine does before separating (freed blocks reused, not page-faulted in again)
    with tempfile.TemporaryDirectory() as tmp:
        ref, path = build_htdemucs(Path(tmp))
        from stemforge.models.compat import load_pretrained

        ours = load_pretrained(path).eval()
    mix = 0.3 * torch.randn(args.batch, 2, int(args.seconds * RATE), generator=torch.Generator().manual_seed(0))
    models = {"demucs": ref, "ours": ours}
    for name, model in models.items():
        if args.only and name != args.only:
            continue
        with torch.inference_mode():
            model(mix)
            start, cpu = time.perf_counter(), time.process_time()
            model(mix)
            plain, cpu = time.perf_counter() - start, time.process_time() - cpu
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                model(mix)
        print(f"\n## {name}: {plain:.2f} s wall, {cpu:.2f} s CPU per forward pass ({args.batch} x {args.seconds} s, "
              f"{args.threads} threads)")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40))


if __name__ == "__main__":
    main()
