"""``stemforge models``: list the registered models with stems, rate and size; ``--speed`` also measures them."""

from __future__ import annotations

import argparse
import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

SPEED_SECONDS = 5.0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list available models", description="List available models.")
    p.add_argument("--speed", action="store_true",
                   help=f"also measure speed (x real time on {SPEED_SECONDS:g} s of noise; takes ~20 s)")
    p.add_argument("--no-speed", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    p.add_argument("--json", action="store_true", help="print the table as a JSON list of objects")
    p.add_argument("--info", action="store_true", help="print the bundled default model's metadata (its model card)")
    p.set_defaults(func=run)
    from stemforge.zoo import register_subcommands

    register_subcommands(p.add_subparsers(dest="models_command", metavar="{list,download}"))


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


def model_rows(speed: bool = False) -> list[dict[str, Any]]:
    """One record per listed model: the bundled default (if any), then every registered architecture.

    Args:
        speed: also time one forward pass of each model (slow: seconds per model).

    Returns:
        Dicts with name, family, stems, sample_rate, parameters, size_mb and x_real_time (None unless ``speed``).
    """
    from stemforge.models import available, build
    from stemforge.models.loading import bundled_checkpoint

    rows: list[dict[str, Any]] = []
    checkpoint = bundled_checkpoint()
    if checkpoint is not None:
        from stemforge.checkpoint import load_checkpoint

        model, meta = load_checkpoint(checkpoint)
        rows.append({"name": "default", "family": meta["architecture"], "stems": list(model.sources),
                     "sample_rate": model.sample_rate, "parameters": model.num_parameters(),
                     "size_mb": round(checkpoint.stat().st_size / 1e6, 1),
                     "x_real_time": measure_speed(model, model.sample_rate, model.channels) if speed else None})
    for spec in available():
        model = build(spec.name).eval()
        params = model.num_parameters()
        rows.append({"name": spec.name, "family": spec.family, "stems": list(model.sources),
                     "sample_rate": model.sample_rate, "parameters": params, "size_mb": round(params * 4 / 1e6, 1),
                     "x_real_time": measure_speed(model, model.sample_rate, model.channels) if speed else None})
    return rows


def run(args: argparse.Namespace) -> int:
    from stemforge.checkpoint import read_metadata
    from stemforge.models.loading import bundled_checkpoint

    if args.info:
        checkpoint = bundled_checkpoint()
        if checkpoint is None:
            print("no bundled default model in this install; 'default' falls back to 'classical'")
            return 0
        print(json.dumps(read_metadata(checkpoint), indent=2))
        return 0
    records = model_rows(speed=args.speed)
    if args.json:
        print(json.dumps(records, indent=1))
        return 0
    header = ("name", "family", "stems", "rate", "params", "size MB") + (("speed",) if args.speed else ())
    rows = [header]
    for r in records:
        row = (r["name"], r["family"], ",".join(r["stems"]), str(r["sample_rate"]), f"{r['parameters'] / 1e6:.2f}M",
               f"{r['size_mb']:.1f}")
        rows.append(row + ((f"{r['x_real_time']:.1f}x",) if args.speed else ()))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    if args.speed:
        print(f"speed: x real time for one pass over {SPEED_SECONDS:g} s of stereo noise on this machine's CPU")
    print("size: float32 weights (the default: its file); --speed measures speed, --json prints JSON")
    print("cnn/rnn/transformer rows are architectures (tiny preset, untrained): train them with `stemforge train`;"
          " `stemforge models list` shows published checkpoints")
    return 0
