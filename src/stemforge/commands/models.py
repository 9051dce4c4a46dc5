"""``stemforge models``: what can run now, what can be downloaded, what can be trained; ``list`` / ``download``.

Every table fits ``WIDTH`` columns (long cells end in ``...``; ``-v`` / ``--json`` give the whole text).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

SPEED_SECONDS = 5.0
WIDTH = 100
_CACHE_HELP = "zoo cache (default: $STEMFORGE_CACHE or the user cache dir's stemforge/zoo)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list available models", description="List available models.")
    p.add_argument("--speed", action="store_true",
                   help=f"also measure speed (x real time on {SPEED_SECONDS:g} s of noise; takes ~20 s)")
    p.add_argument("--no-speed", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    p.add_argument("--json", action="store_true", help="print the table as a JSON list of objects")
    p.add_argument("--info", action="store_true", help="print the bundled default model's metadata (its model card)")
    p.set_defaults(func=run)
    register_subcommands(p.add_subparsers(dest="models_command", metavar="{list,download}"))


def register_subcommands(models_subparsers: argparse._SubParsersAction) -> None:
    """Add ``list`` and ``download`` (the model zoo) under ``stemforge models``."""
    p = models_subparsers.add_parser("list", help="list known public checkpoints (model zoo)")
    p.add_argument("-v", "--verbose", action="store_true", help="also print licences, URLs, sha256 and SDR sources")
    p.add_argument("--cache-dir", default=None, help=_CACHE_HELP)
    p.set_defaults(func=run_list)
    d = models_subparsers.add_parser("download", help="download a zoo checkpoint into the cache (resumes, checks sha256)")
    d.add_argument("name", help="zoo name, see 'stemforge models list'")
    d.add_argument("--cache-dir", default=None, help=_CACHE_HELP)
    d.add_argument("--mirror", default=None, help="base URL of a mirror holding the same file names")
    d.add_argument("--timeout", type=float, default=30.0, help="seconds without data before giving up (default 30)")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=run_download)


def format_table(rows: list[tuple[str, ...]], width: int = WIDTH) -> list[str]:
    """Rows as aligned lines no wider than ``width``: the widest columns (never the first) are cut with ``...``.

    Args:
        rows: the header, then the rows; every row has the same number of cells.
        width: the most characters a line may have.

    Returns:
        One line per row, right-stripped.
    """
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    gap = 2 * (len(widths) - 1)
    while sum(widths) + gap > width:
        i = max(range(1, len(widths)), key=lambda k: widths[k])
        if widths[i] <= 6:
            break
        widths[i] -= 1

    def cut(cell: str, w: int) -> str:
        return cell if len(cell) <= w else cell[: w - 3] + "..."

    return ["  ".join(cut(cell, w).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _zoo_size(entry: Any) -> str:
    known = sum(f.size or 0 for f in entry.files)
    return f"{known / 1e6:.0f} MB" if entry.size is not None else f"{known / 1e6:.0f} MB+" if known else "unknown"


def run_list(args: argparse.Namespace) -> int:
    """``stemforge models list``: the zoo catalogue, with what is downloaded."""
    from stemforge.hub import is_downloaded, list_checkpoints

    entries = list_checkpoints()
    rows = [("name", "architecture", "stems", "size", "SDR (dB, as published)", "downloaded")]
    rows += [(e.name, e.architecture, ",".join(e.stems), _zoo_size(e), e.sdr or "unknown",
              "yes" if is_downloaded(e, args.cache_dir) else "no") for e in entries]
    for line in format_table(rows):
        print(line)
    if args.verbose:
        for e in entries:
            print(f"\n{e.name}: {e.notes}".rstrip())
            print(f"  licence: {e.licence or 'unknown'}")
            print(f"  SDR: {e.sdr or 'unknown'} (source: {e.sdr_source or 'unknown'})")
            for f in e.files:
                hash_text = f"{f.sha256}{'...' if len(f.sha256) < 64 else ''}" if f.sha256 else "unknown"
                print(f"  {f.url}  sha256 {hash_text}" + (f" ({f.sha256_source})" if f.sha256_source else ""))
    else:
        print("(-v for licences, URLs, sha256 and SDR sources)")
    return 0


def run_download(args: argparse.Namespace) -> int:
    """``stemforge models download NAME``: fetch and verify one zoo checkpoint."""
    from stemforge.errors import ModelError
    from stemforge.hub import catalogue, download, find

    entry = find(args.name)
    if entry is None:
        import difflib

        close = difflib.get_close_matches(args.name, [e.name for e in catalogue.CATALOGUE], n=3)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise ModelError(f"unknown zoo model {args.name!r}; {hint}known: {', '.join(e.name for e in catalogue.CATALOGUE)}")
    folder = download(entry, args.cache_dir, progress=not args.quiet, mirror=args.mirror, timeout=args.timeout)
    print(f"{entry.name}: {folder}")
    return 0


def measure_speed(model: torch.nn.Module, sample_rate: int, channels: int, seconds: float = SPEED_SECONDS) -> float:
    """x real time of one forward pass over ``seconds`` of noise on the CPU (after a warm-up).

    Args:
        model: a model taking (batch, channels, time).
        sample_rate: the model's rate in Hz.
        channels: the model's input channels.
        seconds: length of the timed input.

    Returns:
        Seconds of audio per second of wall time.
    """
    import torch

    x = torch.randn(1, channels, int(seconds * sample_rate)) * 0.1
    with torch.inference_mode():
        model(x[..., : sample_rate // 2])
        start = time.perf_counter()
        model(x)
        elapsed = time.perf_counter() - start
    return seconds / max(elapsed, 1e-9)


def model_rows(speed: bool = False, cache_dir: str | None = None) -> list[dict[str, Any]]:
    """One record per model, each with its ``kind``: ``"trained"`` (runs now: the bundled default, the presets
    that need no training, downloaded zoo checkpoints), ``"downloadable"`` (zoo checkpoints not in the cache) or
    ``"architecture"`` (a registered architecture, tiny preset, untrained: train it first).

    Args:
        speed: also time one forward pass of each trained built-in model (slow: seconds per model).
        cache_dir: the zoo cache root (default: the hub's).

    Returns:
        Dicts with name, kind, family, stems, sample_rate, parameters, size_mb and x_real_time (None unless
        ``speed``; None for zoo rows, whose rate and size are not known until loaded).
    """
    from stemforge.hub import bundled_checkpoint, is_downloaded, list_checkpoints
    from stemforge.hub.catalogue import BUNDLED
    from stemforge.models import available, build

    rows: list[dict[str, Any]] = []
    for name in BUNDLED:  # the models shipped in the package: default, lowlatency
        checkpoint = bundled_checkpoint(name)
        if checkpoint is None:
            continue
        from stemforge.checkpoint import load_checkpoint

        model, meta = load_checkpoint(checkpoint)
        rows.append({"name": name, "kind": "trained", "family": meta["architecture"], "stems": list(model.sources),
                     "sample_rate": model.sample_rate, "parameters": model.num_parameters(),
                     "size_mb": round(checkpoint.stat().st_size / 1e6, 1),
                     "x_real_time": measure_speed(model, model.sample_rate, model.channels) if speed else None})
    zoo = [{"name": e.name, "kind": "trained" if is_downloaded(e, cache_dir) else "downloadable",
            "family": e.architecture, "stems": list(e.stems), "sample_rate": None, "parameters": None,
            "size_mb": round(e.size / 1e6, 1) if e.size is not None else None, "x_real_time": None,
            "sdr": e.sdr} for e in list_checkpoints()]
    architectures = []
    for spec in available():
        model = build(spec.name).eval()
        params = model.num_parameters()
        trained = not model.trainable
        record = {"name": spec.name, "kind": "trained" if trained else "architecture", "family": spec.family,
                  "stems": list(model.sources), "sample_rate": model.sample_rate, "parameters": params,
                  "size_mb": round(params * 4 / 1e6, 1),
                  "x_real_time": measure_speed(model, model.sample_rate, model.channels) if speed and trained else None}
        (rows if trained else architectures).append(record)
    return rows + [z for z in zoo if z["kind"] == "trained"] + [z for z in zoo if z["kind"] != "trained"] + architectures


def _cell(value: Any, spec: str = "", suffix: str = "", scale: float = 1.0) -> str:
    """``value / scale`` formatted with ``spec`` plus ``suffix``; ``-`` for None (not known)."""
    return "-" if value is None else format(value / scale if scale != 1.0 else value, spec) + suffix


def run(args: argparse.Namespace) -> int:
    """``stemforge models``: three tables (trained models / downloadable checkpoints / architectures to train)."""
    from stemforge.checkpoint import read_metadata
    from stemforge.hub import bundled_checkpoint

    if args.info:
        checkpoint = bundled_checkpoint()
        if checkpoint is None:
            print("no bundled default model in this install; 'default' falls back to 'classical'")
            return 0
        print(json.dumps(read_metadata(checkpoint), indent=2))
        return 0
    records = model_rows(speed=args.speed)  # the zoo cache: $STEMFORGE_CACHE or the user cache dir
    if args.json:
        print(json.dumps(records, indent=1))
        return 0
    trained = [("trained models (run now)", "family", "stems", "rate", "params", "size MB")
               + (("speed",) if args.speed else ())]
    for r in (r for r in records if r["kind"] == "trained"):
        row = (r["name"], r["family"], ",".join(r["stems"]), _cell(r["sample_rate"]),
               _cell(r["parameters"], ".2f", "M", 1e6), _cell(r["size_mb"], ".1f"))
        trained.append(row + ((_cell(r["x_real_time"], ".1f", "x"),) if args.speed else ()))
    downloadable = [("downloadable checkpoints", "architecture", "stems", "size MB", "SDR (dB, as published)")]
    downloadable += [(r["name"], r["family"], ",".join(r["stems"]), _cell(r["size_mb"], ".0f"),
                      r["sdr"] or "unknown") for r in records if r["kind"] == "downloadable"]
    untrained = [("architectures (train first)", "family", "stems", "rate", "params (tiny preset)")]
    untrained += [(r["name"], r["family"], ",".join(r["stems"]), str(r["sample_rate"]), f"{r['parameters'] / 1e6:.2f}M")
                  for r in records if r["kind"] == "architecture"]
    for number, table in enumerate(t for t in (trained, downloadable, untrained) if len(t) > 1):
        if number:
            print()
        for line in format_table(table):
            print(line)
    print()
    notes = ["size: float32 weights (the default: its file; zoo: the download)"]
    if args.speed:
        notes.append(f"speed: x real time for one pass over {SPEED_SECONDS:g} s of stereo noise on this CPU")
    notes += ["get a checkpoint: stemforge models download NAME (details: stemforge models list -v)",
              "train an architecture: stemforge train; --speed measures speed, --json prints JSON"]
    for note in notes:
        print(note)
    return 0
