"""``stemforge evaluate``: score models on a dataset and write tables and plots."""

from __future__ import annotations

import argparse
from pathlib import Path

#: ``stemforge.evaluate.METRICS``, repeated so ``--help`` need not import the evaluation stack (a test keeps them equal).
METRICS = ("bss", "mdx", "sisdr", "snr")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", allow_abbrev=False, help="score separators on a dataset (BSS Eval v4, MDX SDR, SI-SDR)",
        description="Separate every track of a MUSDB-style dataset (or read existing estimates), score it, and "
                    "write per-track/per-stem tables (CSV, JSON, Markdown) and plots. Reference points (oracle "
                    "IRM/IBM/multichannel Wiener, the mixture, the classical model) are added unless --no-references.")
    p.add_argument("-m", "--model", action="append", default=[], metavar="MODEL",
                   help="model name or checkpoint (repeatable)")
    p.add_argument("--compare", nargs="+", default=[], metavar="MODEL", help="more models in the same table")
    p.add_argument("--estimates", action="append", default=[], metavar="DIR", type=Path,
                   help="folder of existing estimates DIR/<track>/<stem>.wav (repeatable)")
    p.add_argument("--data", required=True, type=Path, metavar="DIR", help="dataset root (one folder per track)")
    p.add_argument("--metrics", nargs="+", default=["bss", "mdx", "sisdr"], choices=METRICS,
                   help="metrics to compute (default: bss mdx sisdr)")
    p.add_argument("-o", "--out", default=Path("evaluation"), type=Path, metavar="REPORT",
                   help="report folder (default: evaluation)")
    p.add_argument("--sources", default="drums,bass,other,vocals", metavar="A,B", help="dataset stems")
    p.add_argument("--no-references", action="store_true", help="skip the oracle, mixture and classical reference points")
    p.add_argument("--no-resume", action="store_true", help="rescore tracks that already have results")
    p.add_argument("--no-plots", action="store_true", help="write tables only")
    p.add_argument("--window", type=float, default=1.0, metavar="S", help="BSS Eval window in seconds (default 1)")
    p.add_argument("--hop", type=float, default=1.0, metavar="S", help="BSS Eval hop in seconds (default 1)")
    p.add_argument("--segment", type=float, metavar="S", help="separation segment length (default: the model's)")
    p.add_argument("--overlap", type=float, help="separation overlap, 0..1 (default: the model's, 0.25 for most)")
    p.add_argument("--shifts", type=int, default=0, help="random-shift passes (default 0)")
    p.add_argument("-d", "--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from stemforge.errors import StemforgeError
    from stemforge.evaluate import EvaluateOptions, default_methods, evaluate
    from stemforge.report import markdown, require_plotting, write_plots, write_tables

    models = list(args.model) + list(args.compare)
    if not models and not args.estimates:
        raise StemforgeError("give at least one --model or --estimates folder")
    options = EvaluateOptions(
        metrics=tuple(args.metrics), sources=tuple(s for s in args.sources.split(",") if s), window=args.window,
        hop=args.hop, references=not args.no_references, resume=not args.no_resume, device=args.device,
        segment=args.segment, overlap=args.overlap, shifts=args.shifts, progress=not args.quiet)
    options.validate()
    if not args.no_plots:
        require_plotting()  # fail before the (long) evaluation, not after it
    results = evaluate(args.data, default_methods(models, options, args.estimates), args.out, options)
    paths = write_tables(results, args.out)
    if not args.no_plots:
        write_plots(results, args.out)
    print(markdown(results).split("\n## All metrics")[0].rstrip())
    print(f"\nreport: {paths['markdown']}")
    return 0
