"""The training state a run needs to resume, stored without pickle: one safetensors file.

Tensors (weights, optimizer moments, RNG states) are the file's tensors; everything else (step, schedule, best
score, optimizer settings, NumPy / Python RNG states) is JSON in its header. Loading it cannot run code, so a run
folder shared with others is safe to ``--resume``.

Nested values are encoded so that types survive JSON: a tensor becomes ``{"$tensor": name}``, a tuple
``{"$tuple": [...]}``, a dict whose keys are not all strings (optimizer state is keyed by parameter index)
``{"$dict": [[key, value], ...]}``, and a NumPy array ``{"$ndarray": [...], "dtype": ...}``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from stemforge.errors import StemforgeError

FORMAT = "stemforge-train-state/1"
_HEADER_KEY = "stemforge-train-state"
#: NumPy dtypes a state may hold (the MT19937 key is uint32).
_NDARRAY_DTYPES = {"uint32", "int64", "float64"}


class StateError(StemforgeError):
    """A run's training state is missing, corrupt, or not in our format."""


def _encode(value: Any, tensors: dict[str, torch.Tensor], seen: set[int]) -> Any:
    if isinstance(value, torch.Tensor):
        name = f"t{len(tensors)}"
        tensor = value.detach().cpu().contiguous()
        if tensor.numel():
            if tensor.untyped_storage().data_ptr() in seen:
                tensor = tensor.clone()  # safetensors refuses tensors that share memory (e.g. tied weights)
            seen.add(tensor.untyped_storage().data_ptr())
        tensors[name] = tensor
        return {"$tensor": name}
    if isinstance(value, np.ndarray):
        if value.dtype.name not in _NDARRAY_DTYPES:
            raise TypeError(f"cannot store a NumPy array of {value.dtype} in the training state")
        return {"$ndarray": value.tolist(), "dtype": value.dtype.name}
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, tuple):
        return {"$tuple": [_encode(v, tensors, seen) for v in value]}
    if isinstance(value, list):
        return [_encode(v, tensors, seen) for v in value]
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _encode(v, tensors, seen) for k, v in value.items()}
        return {"$dict": [[_encode(k, tensors, seen), _encode(v, tensors, seen)] for k, v in value.items()]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in the training state")


def _decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "$tensor" in value:
        return tensors[value["$tensor"]]
    if "$tuple" in value:
        return tuple(_decode(v, tensors) for v in value["$tuple"])
    if "$dict" in value:
        return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in value["$dict"]}
    if "$ndarray" in value:
        if value.get("dtype") not in _NDARRAY_DTYPES:
            raise ValueError(f"unexpected array dtype {str(value.get('dtype'))[:20]!r}")
        return np.asarray(value["$ndarray"], dtype=value["dtype"])
    return {k: _decode(v, tensors) for k, v in value.items()}


def _hashable(key: Any) -> Any:
    if not isinstance(key, (str, int, float, bool, tuple)) and key is not None:
        raise ValueError("unexpected dictionary key")
    return key


def save_state(state: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``state`` (nested dicts, lists, tuples, tensors, NumPy arrays, JSON scalars) to ``path`` atomically.

    Args:
        state: what resume needs, e.g. ``{"step": 4, "model": model.state_dict(), "optimizer": ...}``.
        path: the file to write (``RUN/state.safetensors``); an existing one is replaced only once the new one
            is complete.

    Raises:
        TypeError: ``state`` holds a value of another type (a programming error, not bad input).
    """
    tensors: dict[str, torch.Tensor] = {}
    header = json.dumps({"format": FORMAT, "state": _encode(state, tensors, set())})
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={_HEADER_KEY: header})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a state written by ``save_state``; no code runs, whatever the file holds.

    Args:
        path: ``RUN/state.safetensors``.

    Returns:
        The state as saved (tensors on the CPU).

    Raises:
        StateError: the file is missing, corrupt, or not a training state (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise StateError(f"training state not found: {path}")
    try:
        tensors = load_file(str(path))
        with path.open("rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size))
        stored = json.loads(header["__metadata__"][_HEADER_KEY])
        if not isinstance(stored, dict) or stored.get("format") != FORMAT:
            raise ValueError("not our format")
        state = _decode(stored["state"], tensors)
        if not isinstance(state, dict):
            raise ValueError("state is not a mapping")
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise StateError(f"training state is corrupt or not a stemforge training state: {path}") from exc
    return state
