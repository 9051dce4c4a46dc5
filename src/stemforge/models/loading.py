"""Resolve what a user names with ``-n``: the bundled default, a registered model, or a checkpoint file."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from stemforge.errors import ModelError
from stemforge.models.base import StemModel
from stemforge.models.registry import available, build

DEFAULT_MODEL = "default"


def bundled_checkpoint() -> Path | None:
    """The shipped default model's checkpoint, if this install has one."""
    path = Path(str(resources.files("stemforge") / "assets" / "default.safetensors"))
    return path if path.is_file() else None


def load_model(name: str | Path = DEFAULT_MODEL) -> tuple[StemModel, str]:
    """-> (model in eval mode, display name used for output folders)."""
    from stemforge.checkpoint import load_checkpoint

    text = str(name)
    if text == DEFAULT_MODEL:
        checkpoint = bundled_checkpoint()
        if checkpoint is None:
            model = build("classical")
            return model.eval(), "classical"
        model, _ = load_checkpoint(checkpoint)
        return model, DEFAULT_MODEL
    path = Path(text).expanduser()
    if path.suffix == ".safetensors":
        model, _ = load_checkpoint(path)
        return model, path.stem
    from stemforge.zoo import resolve_model

    published = resolve_model(text)  # a zoo name, or a Demucs / Open-Unmix / RoFormer / MDX-Net file
    if published is not None:
        return published.eval(), path.stem if path.exists() else text
    if path.is_file():
        model, _ = load_checkpoint(path)
        return model, path.stem
    names = {spec.name for spec in available()}
    if text not in names:
        raise ModelError(f"unknown model {text!r}: not a checkpoint file and not one of: {', '.join(sorted(names | {DEFAULT_MODEL}))}")
    model = build(text)
    if model.trainable:
        raise ModelError(f"model {text!r} is an architecture without trained weights; pass a trained checkpoint (-n path/to/model.safetensors)")
    return model.eval(), text
