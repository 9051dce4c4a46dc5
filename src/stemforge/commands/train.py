"""``stemforge train``: train, resume or fine-tune a model; a thin layer over ``stemforge.train``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from stemforge.errors import StemforgeError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", allow_abbrev=False, help="train, resume or fine-tune a separation model",
        description="Train a model on MUSDB-layout stem folders (supervised), on mixtures alone (MixIT), or both. "
                    "Flags override the --config file. The run folder gets checkpoints, logs and config.json.",
    )
    p.add_argument("--config", help="JSON or TOML training config (see recipes/)")
    p.add_argument("--out", help="run folder (default runs/run)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out where its last checkpoint left off, with its own settings except "
                        "those given again (flags, or --config keys); each change is reported")
    m = p.add_argument_group("model")
    m.add_argument("--model", help="architecture name (see `stemforge models`)")
    m.add_argument("--preset", help="size preset, e.g. tiny, base, large")
    m.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                   help="architecture config override (VALUE parsed as JSON when possible); repeatable")
    m.add_argument("--init", help="checkpoint to fine-tune from (ours or a user's)")
    m.add_argument("--sources", help="comma-separated stems, e.g. drums,bass,other,vocals,guitar,piano")
    m.add_argument("--freeze", action="append", help="freeze parameters matching this name pattern (fnmatch); repeatable")
    d = p.add_argument_group("data")
    d.add_argument("--data", action="append", help="MUSDB-layout folder of stems; repeatable")
    d.add_argument("--valid", action="append", help="held-out folder for validation (default: a split of --data)")
    d.add_argument("--unsupervised", action="append", help="folder of mixtures (mixture.wav) for MixIT; repeatable")
    d.add_argument("--chunk", "--segment", dest="chunk", type=float,
                   help="seconds per training example (--segment: the old spelling)")
    d.add_argument("--batch-size", type=int)
    d.add_argument("--workers", type=int, help="data-loader worker processes")
    d.add_argument("--remix", type=float, help="probability of drawing each stem from another track")
    t = p.add_argument_group("training")
    t.add_argument("--mode", choices=("supervised", "mixit", "both"))
    t.add_argument("--mixit-weight", type=float)
    t.add_argument("--loss", action="append", metavar="NAME[=WEIGHT]", help="l1, mrstft or sdr; repeatable")
    t.add_argument("--steps", type=int)
    t.add_argument("--epoch-steps", type=int, help="validate and pick the best checkpoint every N steps")
    t.add_argument("--checkpoint-every", type=int)
    t.add_argument("--stop-step", type=int, help="stop (checkpointed) after this step, keeping the schedule of --steps")
    t.add_argument("--time-limit", type=float, help="minutes; checkpoint and stop when reached")
    t.add_argument("--lr", type=float)
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--warmup", type=int, help="warm-up steps")
    t.add_argument("--grad-clip", type=float)
    t.add_argument("--ema", type=float, help="EMA decay (0 disables)")
    t.add_argument("--seed", type=int)
    t.add_argument("--device", help="cpu or cuda")
    t.add_argument("--amp", action="store_true", default=None, help="bf16 autocast (CUDA)")
    t.add_argument("--threads", type=int, help="torch CPU threads")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--ddp", action="store_true",
                   help="distributed data parallel, one process per device, launched by torchrun: "
                        "'torchrun --nproc_per_node=N -m stemforge train --ddp ...'; --batch-size is the global batch")
    p.set_defaults(func=run)


#: The flag that sets each ``merge`` key (named in the lines that report a setting changed on resume).
FLAGS = {
    "out": "--out", "model": "--model", "preset": "--preset", "model_options": "--model-option", "init": "--init",
    "sources": "--sources", "freeze": "--freeze", "mode": "--mode", "mixit_weight": "--mixit-weight", "loss": "--loss",
    "steps": "--steps", "epoch_steps": "--epoch-steps", "checkpoint_every": "--checkpoint-every",
    "time_limit": "--time-limit", "stop_step": "--stop-step", "seed": "--seed", "device": "--device", "amp": "--amp",
    "threads": "--threads", "ema_decay": "--ema", "progress": "--no-progress", "data.train": "--data",
    "data.valid": "--valid", "data.unsupervised": "--unsupervised", "data.chunk": "--chunk",
    "data.batch_size": "--batch-size", "data.workers": "--workers", "data.remix": "--remix", "optim.lr": "--lr",
    "optim.weight_decay": "--weight-decay", "optim.warmup_steps": "--warmup", "optim.grad_clip": "--grad-clip",
}


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Flag values as ``merge`` overrides (None = not given)."""
    options = {}
    for item in args.model_option:
        key, sep, value = item.partition("=")
        if not sep:
            raise StemforgeError(f"--model-option needs KEY=VALUE, got {item!r}")
        options[key] = _value(value)
    losses = None
    if args.loss:
        losses = {}
        for item in args.loss:
            name, _, weight = item.partition("=")
            try:
                losses[name] = float(weight) if weight else 1.0
            except ValueError:
                raise StemforgeError(f"--loss weight must be a number, got {item!r}") from None
    return {
        "out": args.out, "model": args.model, "preset": args.preset, "model_options": options or None, "init": args.init,
        "sources": args.sources.split(",") if args.sources else None, "freeze": args.freeze, "mode": args.mode,
        "mixit_weight": args.mixit_weight, "loss": losses, "steps": args.steps, "epoch_steps": args.epoch_steps,
        "checkpoint_every": args.checkpoint_every, "time_limit": args.time_limit, "stop_step": args.stop_step, "seed": args.seed,
        "device": args.device, "amp": args.amp, "threads": args.threads, "ema_decay": args.ema,
        "progress": False if args.no_progress else None,
        "data.train": args.data, "data.valid": args.valid, "data.unsupervised": args.unsupervised,
        "data.chunk": args.chunk, "data.batch_size": args.batch_size, "data.workers": args.workers,
        "data.remix": args.remix, "optim.lr": args.lr, "optim.weight_decay": args.weight_decay,
        "optim.warmup_steps": args.warmup, "optim.grad_clip": args.grad_clip,
    }


def run(args: argparse.Namespace) -> int:
    import logging
    import os

    from stemforge.train import TrainConfig, train
    from stemforge.train.config import config_overrides, merge
    from stemforge.train.loop import resume_config

    from_file = config_overrides(args.config) if args.config else {}
    from_flags = {key: value for key, value in overrides(args).items() if value is not None}
    origins = {key: args.config for key in from_file} | {key: FLAGS[key] for key in from_flags}
    if args.resume:  # the run's own settings, changed only where the file or a flag says
        out = from_flags.get("out") or from_file.get("out") or TrainConfig().out
        config = resume_config(out, {**from_file, **from_flags})
    else:
        config = merge(merge(TrainConfig(), from_file), from_flags)
    if args.ddp and os.environ.get("RANK", "0") != "0":  # rank 0 speaks for the run; the others only for errors
        logging.getLogger("stemforge").setLevel(logging.ERROR)
    summary = train(config, resume=args.resume, origins=origins, ddp=args.ddp)
    if summary.get("interrupted"):
        if summary.get("rank", 0):
            return 130
        out = summary["out"]
        again = (f"torchrun --nproc_per_node={os.environ.get('LOCAL_WORLD_SIZE', 'N')} -m stemforge train --ddp"
                 if args.ddp else "stemforge train")
        print(f"stopped by {summary['interrupted']} after step {summary['step']}; saved {summary['state']}\n"
              f"continue with: {again} --out {shlex.quote(out)} --resume", file=sys.stderr)
        return 130
    if summary.get("rank", 0):
        return 0
    best = summary["best"]
    print(f"trained to step {summary['step']}; run folder {summary['out']}")
    if best:
        scores = ", ".join(f"{k} {v:.2f}" for k, v in best["sdr"].items())
        print(f"best validation SDR (dB) at step {best['step']}: mean {best['sdr_mean']:.2f} ({scores})")
    return 0
