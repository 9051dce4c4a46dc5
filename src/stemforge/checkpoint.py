"""Checkpoints: one safetensors file whose header carries JSON metadata and a hash of the weights.

The metadata is enough to rebuild the model (architecture + config), so a checkpoint is self-describing:

    {"format": "stemforge-checkpoint/1", "architecture": ..., "config": {...}, "sources": [...],
     "sample_rate": ..., "weights_sha256": ..., plus free-form "training" / "metrics" / ... entries}
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from stemforge.audio import default_file_mode
from stemforge.errors import ModelError
from stemforge.models.base import StemModel
from stemforge.models.bounded import build_within
from stemforge.models.compat.io import one_line as _one_line
from stemforge.models.registry import NOT_CHECKPOINTABLE, architecture_class

FORMAT = "stemforge-checkpoint/1"
_HEADER_KEY = "stemforge"


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """Hash of names, dtypes, shapes and bytes of every tensor, in name order (layout independent)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")  # reshape: 0-dim tensors (BatchNorm counters) cannot be viewed as bytes
    return digest.hexdigest()


def save_checkpoint(model: StemModel, path: str | os.PathLike[str], **extra: Any) -> dict[str, Any]:
    """Write ``model`` to ``path`` atomically; ``extra`` (JSON-serialisable) is stored in the metadata."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "architecture": model.architecture,
        "config": model.config.to_dict(),
        "sources": model.sources,
        "sample_rate": model.sample_rate,
        "channels": model.channels,
        "num_parameters": model.num_parameters(),
        "weights_sha256": weights_sha256(state),
        **extra,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata={_HEADER_KEY: json.dumps(meta)})
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return meta


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's metadata without loading the weights.

    Args:
        path: a stemforge ``.safetensors`` checkpoint.

    Returns:
        The metadata dict (format, architecture, config, sources, weights_sha256, ...).

    Raises:
        ModelError: missing, not a stemforge checkpoint, or a malformed header (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    try:
        with path.open("rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if size <= 0 or size > 100_000_000:
                raise ValueError("bad header size")
            header = json.loads(fh.read(size))
        meta = json.loads(header["__metadata__"][_HEADER_KEY])
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise ModelError(f"not a stemforge checkpoint (corrupt or wrong format): {path}") from exc
    if not isinstance(meta, dict):
        raise ModelError(f"not a stemforge checkpoint (its metadata is not a JSON object): {path}")
    if meta.get("format") != FORMAT:
        raise ModelError(f"unsupported checkpoint format {_one_line(repr(meta.get('format')), 60)}: {path}")
    if not isinstance(meta.get("architecture"), str) or not isinstance(meta.get("config"), dict):
        raise ModelError(f"not a stemforge checkpoint (architecture or config missing or malformed): {path}")
    return meta


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> tuple[StemModel, dict[str, Any]]:
    """Rebuild the model from the metadata alone, load the weights and verify their hash.

    Args:
        path: a stemforge ``.safetensors`` checkpoint (safetensors: no pickle, no code runs).
        map_location: device the weights are read to.

    Returns:
        (model in eval mode, metadata).

    Raises:
        ModelError: missing, corrupt, tampered (hash mismatch), not matching its architecture, or a config that
            describes a larger model than the file's weights (``models.bounded``; one line).
    """
    meta = read_metadata(path)
    arch = meta.get("architecture")
    if arch in NOT_CHECKPOINTABLE:
        raise ModelError(f"checkpoint {path} claims architecture {arch!r}, whose weights cannot live in a stemforge "
                         "checkpoint (load the published file itself)")
    cls = architecture_class(arch)
    if cls is None:
        raise ModelError(f"checkpoint {path} uses unknown architecture {_one_line(repr(arch), 60)}")
    try:
        state = load_file(str(path), device=map_location)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"checkpoint is corrupt or truncated: {path}") from exc
    if weights_sha256(state) != meta.get("weights_sha256"):
        raise ModelError(f"checkpoint weights do not match their recorded sha256 (tampered or corrupt): {path}")
    try:
        model = build_within(lambda: cls(cls.config_class.from_dict(meta["config"])), state.values(), str(path))
        model.load_state_dict(state, strict=True)
    except (ValueError, TypeError, RuntimeError, KeyError, AttributeError) as exc:
        raise ModelError(f"checkpoint does not match its architecture {arch!r}: {path}: {_one_line(str(exc))}") from exc
    model.eval()
    return model, meta
