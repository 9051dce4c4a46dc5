"""Published checkpoint files -> our ``StemModel``: the format table and the dispatch over it.

Each format lives in its own module next to its architecture (``<format>_format.py``) and exposes
``detect(path) -> bool`` and ``load(path, **options) -> StemModel``; they share ``compat.io`` (torch pickles
read ``weights_only``). A format module is imported only when a path is looked at. Adding a format is one new
module plus one line in ``FORMATS`` (CONTRIBUTING.md walks through it).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from stemforge.errors import ModelError
from stemforge.models.base import StemModel
from stemforge.models.compat.io import one_line

#: (format name, module path). The first format whose ``detect`` accepts a path loads it, so order matters
#: (a RoFormer ``.yaml`` before a demucs bag ``.yaml``; a folder of ``.pth`` before a folder of ``.th``).
FORMATS: tuple[tuple[str, str], ...] = (
    ("openunmix", "stemforge.models.compat.openunmix_format"),
    ("roformer", "stemforge.models.compat.roformer_format"),
    ("demucs", "stemforge.models.compat.demucs_format"),
    ("mdxnet", "stemforge.models.compat.mdxnet_format"),
)

#: What a loader raises when a file's contents (config values, tensor shapes) are of the wrong type or value.
_MALFORMED = (ValueError, TypeError, AttributeError, KeyError, IndexError, ZeroDivisionError, OverflowError, RuntimeError)


def format_module(name: str) -> ModuleType:
    """The module of format ``name`` (imported on first use).

    Raises:
        ModelError: no such format.
    """
    for format_name, module in FORMATS:
        if format_name == name:
            return importlib.import_module(module)
    raise ModelError(f"unknown checkpoint format {name!r}; known: {', '.join(n for n, _ in FORMATS)}")


def detect_format(path: str | Path) -> str | None:
    """The format name of a local file or folder (``"demucs"``, ``"openunmix"``, ...), or None if we read none."""
    path = Path(path)
    for name, _ in FORMATS:
        if format_module(name).detect(path):
            return name
    return None


def load_pretrained(path: str | Path, **options: Any) -> StemModel:
    """Load a published checkpoint file or folder as a ``StemModel`` (zoo names: ``stemforge.hub.load_model``).

    Args:
        path: a ``.th`` / ``.yaml`` / ``.pth`` / ``.ckpt`` / ``.onnx`` file, or a folder of them.
        **options: passed to the format's loader (e.g. ``niter`` for Open-Unmix, ``config`` for a RoFormer).

    Returns:
        The model in eval mode, on the CPU.

    Raises:
        ModelError: the file is missing, unsupported, malformed or hostile (one line; nothing in it runs).
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"checkpoint not found: {path}")
    kind = detect_format(path)
    if kind is None:
        raise ModelError(f"unrecognised checkpoint format: {path} (expected .pth, .th, .yaml, .ckpt or .onnx)")
    try:
        return format_module(kind).load(path, **options)
    except _MALFORMED as exc:
        if isinstance(exc, torch.OutOfMemoryError):
            raise
        raise ModelError(f"cannot use {path}: malformed contents ({type(exc).__name__}: {one_line(str(exc))})") from exc
