"""Input checks shared by every metric: same shape, finite, (sources, channels, time) layout.

Mismatches raise ``MetricsError`` (a one-line ``StemforgeError``) naming the track and stem when known.
"""

from __future__ import annotations

import numpy as np
import torch

from stemforge.errors import StemforgeError


class MetricsError(StemforgeError):
    """An estimate does not match its reference (shape, length, rate) or holds non-finite values."""


def _where(track: str | None, stem: str | None) -> str:
    parts = [f"track {track!r}" if track else "", f"stem {stem!r}" if stem else ""]
    label = ", ".join(p for p in parts if p)
    return f" ({label})" if label else ""


def check_pair(
    reference: np.ndarray | torch.Tensor,
    estimate: np.ndarray | torch.Tensor,
    track: str | None = None,
    stem: str | None = None,
    ndim: int = 3,
) -> None:
    """Raise ``MetricsError`` unless both arrays have the same ``ndim``-dimensional shape and are finite.

    Args:
        reference: true signal; an array, a tensor, or anything with ``shape`` (e.g. ``Stems`` read
            from files, whose samples are checked block by block as they are read instead).
        estimate: estimated signal.
        track: track name for the message.
        stem: stem name for the message.
        ndim: expected number of dimensions.

    Raises:
        MetricsError: shapes differ, wrong dimensions, empty or non-finite signal.
    """
    where = _where(track, stem)
    if tuple(reference.shape) != tuple(estimate.shape):
        ref, est = tuple(reference.shape), tuple(estimate.shape)
        if len(ref) == len(est) and ref[:-1] == est[:-1]:
            raise MetricsError(f"length mismatch{where}: estimate has {est[-1]} samples, reference {ref[-1]}")
        raise MetricsError(f"shape mismatch{where}: estimate {est} vs reference {ref}")
    if len(reference.shape) != ndim:
        raise MetricsError(f"expected {ndim} dimensions{where}, got shape {tuple(reference.shape)}")
    if reference.shape[-1] < 1:
        raise MetricsError(f"empty signal{where}")
    for name, x in (("reference", reference), ("estimate", estimate)):
        if not isinstance(x, (np.ndarray, torch.Tensor)):
            continue  # read a block at a time: checked as it is read
        # One reduction instead of an elementwise test: NaN or inf anywhere makes the sum non-finite.
        total = x.sum() if isinstance(x, torch.Tensor) else np.sum(x, dtype=np.float64)
        if not bool(np.isfinite(float(total))):
            raise MetricsError(f"{name} contains NaN or infinite samples{where}")


def check_rate(reference_rate: int, estimate_rate: int, track: str | None = None, stem: str | None = None) -> None:
    """Raise ``MetricsError`` when the sample rates differ."""
    if reference_rate != estimate_rate:
        raise MetricsError(
            f"sample rate mismatch{_where(track, stem)}: estimate {estimate_rate} Hz vs reference {reference_rate} Hz"
        )


def as_tensor(x: np.ndarray | torch.Tensor, device: str | torch.device | None = None,
              keep_float: bool = False) -> torch.Tensor:
    """Tensor on ``device`` (default: where ``x`` lives, CPU for numpy), float64 unless ``keep_float``
    and ``x`` is already float32/float64 (then no copy is made when it is already there)."""
    tensor = torch.from_numpy(np.ascontiguousarray(x)) if not isinstance(x, torch.Tensor) else x
    dtype = tensor.dtype if keep_float and tensor.dtype in (torch.float32, torch.float64) else torch.float64
    return tensor.to(device=device if device is not None else tensor.device, dtype=dtype)
