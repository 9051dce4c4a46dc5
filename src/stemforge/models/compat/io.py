"""The one small I/O helper every checkpoint format shares: torch pickles read ``weights_only``, one-line errors.

Every third-party ``.th`` / ``.pth`` / ``.ckpt`` file goes through ``read_torch_pickle`` (SECURITY.md); our own
files are safetensors (``stemforge.checkpoint``).
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Iterable

import torch

from stemforge.errors import ModelError


def one_line(text: str, limit: int = 200) -> str:
    """First line of ``text`` without terminal escapes or control characters, at most ``limit`` characters."""
    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    line = "".join(ch if ch.isprintable() else "?" for ch in line)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _refusal(path: Path, what: str, exc: Exception) -> str:
    """Why torch's ``weights_only`` unpickler refused ``path``: the globals it names, else torch's own reason."""
    try:
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - legacy (non-zip) files, or a file broken in another way
        names = []
    if names:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        return f"refusing to load {what} {path}: it refers to code ({shown}); model files may hold only tensors and plain data"
    reason = one_line(str(exc).split("WeightsUnpickler error:", 1)[-1].split(". ", 1)[0]) or type(exc).__name__
    return f"cannot read {what} {path} (corrupt, or more than tensors and plain data): {reason}"


def read_torch_pickle(path: str | os.PathLike[str], what: str, safe_globals: Iterable[Any] = (),
                      map_location: str | torch.device = "cpu") -> Any:
    """Read a ``torch.save`` file with ``weights_only=True``: tensors and plain containers, no code runs.

    Every third-party ``.th`` / ``.pth`` / ``.ckpt`` file goes through here (our own files are safetensors).

    Args:
        path: the file.
        what: how the file is named in error messages (e.g. ``"demucs model package"``).
        safe_globals: extra globals the file may name, as accepted by ``torch.serialization.safe_globals``
            (harmless stand-ins, e.g. ``(StandIn, "demucs.htdemucs.HTDemucs")``).
        map_location: where tensors are placed.

    Returns:
        The unpickled object.

    Raises:
        ModelError: the file is missing, corrupt, or names anything beyond tensors and plain data (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{what} not found: {path}")
    with torch.serialization.safe_globals(list(safe_globals)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ModelError(_refusal(path, what, exc)) from exc
        except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
            raise ModelError(f"cannot read {what} {path}: {one_line(str(exc).split('. ', 1)[0]) or type(exc).__name__}") from exc


def torch_load(path: Path) -> Any:
    """Read a torch pickle of tensors and plain containers only (``weights_only``: no code runs)."""
    return read_torch_pickle(path, "checkpoint")


def config_yaml_loader() -> type:
    """SafeLoader that also reads ``!!python/tuple`` (used throughout the community configs) as a tuple."""
    import yaml

    class ConfigLoader(yaml.SafeLoader):
        pass

    ConfigLoader.add_constructor("tag:yaml.org,2002:python/tuple",
                                 lambda loader, node: tuple(loader.construct_sequence(node)))
    return ConfigLoader
