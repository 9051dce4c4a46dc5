"""``stemforge batch``: separate a whole library (folders, a MUSDB tree or a manifest) on Ray or a local pool."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from stemforge.commands.separate import add_separation_arguments, output_options


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "batch", help="separate a whole library on a Ray cluster or a local process pool", allow_abbrev=False,
        description="Separate every track of a library (a folder, a MUSDB-style tree, or a .csv/.json manifest) "
                    "with the same outputs and layout as `separate`. Resumable: OUT/.stemforge-batch.sqlite "
                    "records each track's input hash, model, options and output hashes, and a re-run skips what "
                    "is done and redoes what changed or failed.")
    p.add_argument("library", metavar="LIBRARY", help="a folder, a MUSDB-style tree, or a .csv/.json manifest")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="output directory (also holds the manifest)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run on a Ray cluster: 'auto' (the running one, or $RAY_ADDRESS) or its head's host:port; "
                        "'local' (or leaving it out) runs a local process pool")
    p.add_argument("--workers", type=int, metavar="N", help="local pool processes (default: one per CPU)")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="tries after the first for a track whose worker died (default 2)")
    add_separation_arguments(p)
    batch_help = {
        "force": "redo every track, overwriting whatever is there",
        "skip_existing": "skip a track whose stems all exist already, even if this batch did not write them",
        "json": "print the summary as JSON on stdout (per track: status done, unchanged, skipped or failed, "
                "outputs or the error; totals and throughput); no progress bar",
        "threads": "CPU threads per track (Ray: CPUs each task reserves, default 1; local pool: default CPUs / "
                   "workers)",
        "filename": "output name template, as in `separate` (default {track}/{stem}.{ext}; a MUSDB song's mixture: "
                    "{relpath}/{stem}.{ext})",
    }
    for action in p._actions:  # the shared flags, in batch's words
        action.help = batch_help.get(action.dest, action.help)
    p.set_defaults(func=run, filename=None, threads=None)


def run(args: argparse.Namespace) -> int:
    from stemforge.batch.driver import run_batch
    from stemforge.batch.library import DEFAULT_TEMPLATE, walk_library
    from stemforge.batch.runners import make_runner
    from stemforge.batch.worker import SeparationSpec
    from stemforge.separate import check_filename_template

    filename = args.filename  # None: separate's default, by folder for a MUSDB song's mixture
    check_filename_template(filename or DEFAULT_TEMPLATE)
    args.out = str(Path(args.out).resolve())  # workers on other nodes see the same absolute paths
    output = output_options(argparse.Namespace(**{**vars(args), "filename": filename or DEFAULT_TEMPLATE}))
    output.validate()
    tracks = walk_library(args.library)
    local = args.ray in (None, "local")
    workers = args.workers
    if not local and workers is not None:
        logging.getLogger(__name__).warning("--workers applies to the local pool; on Ray the cluster's CPUs (and "
                                            "--threads per track) decide how many tracks run at once")
    if local and workers is None and args.device.startswith("cuda"):
        workers = 1  # one process on the GPU; more would each hold a model and a CUDA context on the same device
    threads = args.threads or 1
    if local and args.threads is None:
        threads = max(1, (os.cpu_count() or 1) // (workers or os.cpu_count() or 1))
    spec = SeparationSpec(model=args.name, output=output, segment=args.segment, overlap=args.overlap,
                          shifts=args.shifts, batch_size=args.batch_size, device=args.device, precision=args.precision,
                          backend=args.backend, wiener=args.wiener, threads=threads)
    runner = make_runner(args.ray, workers, args.retries, threads, args.device)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout is for the table or the JSON, not Ray's notices
            report = run_batch(tracks, spec, runner, filename=filename, skip_existing=args.skip_existing,
                               progress=not (args.quiet or args.json))
    finally:
        runner.close()
    if args.json:
        json.dump(report.as_json(), sys.stdout, indent=2)
        print()
    else:
        print(report.table())
    if report.failed:
        print(f"error: {report.failed} of {len(report.tracks)} tracks failed", file=sys.stderr)
    return 1 if report.failed else 0
