"""``stemforge models``: list the registered models with stems, rate, size and measured speed."""

from __future__ import annotations

import argparse
import time

import torch

from stemforge.models import available, build
from stemforge.models.loading import bundled_checkpoint


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("models", help="list available models", description="List available models.")
    p.add_argument("--no-speed", action="store_true", help="skip measuring speed (x real time on 5 s of noise)")
    p.add_argument("--info", action="store_true", help="print the bundled default model's metadata (its model card)")
    p.set_defaults(func=run)
    from stemforge.zoo import register_subcommands

    register_subcommands(p.add_subparsers(dest="models_command", metavar="{list,download}"))


def measure_speed(model: torch.nn.Module, sample_rate: int, channels: int, seconds: float = 5.0) -> float:
    """x real time of one forward pass over ``seconds`` of noise on the CPU (after a warm-up)."""
    x = torch.randn(1, channels, int(seconds * sample_rate)) * 0.1
    with torch.inference_mode():
        model(x[..., : sample_rate // 2])
        start = time.perf_counter()
        model(x)
        elapsed = time.perf_counter() - start
    return seconds / max(elapsed, 1e-9)


def run(args: argparse.Namespace) -> int:
    from stemforge.checkpoint import read_metadata

    checkpoint = bundled_checkpoint()
    if args.info:
        if checkpoint is None:
            print("no bundled default model in this install; 'default' falls back to 'classical'")
            return 0
        import json

        print(json.dumps(read_metadata(checkpoint), indent=2))
        return 0
    rows = [("name", "family", "stems", "rate", "params", "size MB", "speed")]
    if checkpoint is not None:
        from stemforge.checkpoint import load_checkpoint

        model, meta = load_checkpoint(checkpoint)
        speed = "-" if args.no_speed else f"{measure_speed(model, model.sample_rate, model.channels):.1f}x"
        rows.append(("default", meta["architecture"], ",".join(model.sources), str(model.sample_rate),
                     f"{model.num_parameters() / 1e6:.2f}M", f"{checkpoint.stat().st_size / 1e6:.1f}", speed))
    for spec in available():
        model = build(spec.name).eval()
        params = model.num_parameters()
        speed = "-" if args.no_speed else f"{measure_speed(model, model.sample_rate, model.channels):.1f}x"
        rows.append((spec.name, spec.family, ",".join(model.sources), str(model.sample_rate),
                     f"{params / 1e6:.2f}M", f"{params * 4 / 1e6:.1f}", speed))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print("speed: x real time for one pass over 5 s of stereo noise on this machine's CPU; size: float32 weights")
    print("cnn/rnn/transformer rows are architectures (tiny preset, untrained): train them with `stemforge train`;"
          " `stemforge models list` shows published checkpoints")
    return 0
