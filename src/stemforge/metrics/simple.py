"""Whole-signal and framewise energy-ratio metrics: MDX SDR, SI-SDR, framewise SNR.

All take ``reference, estimate: (..., channels, time)`` (numpy or torch, any device), compute in
float64 and return torch tensors in dB with the leading ``...`` dims (plus a ``windows`` dim for SNR).
"""

from __future__ import annotations

import numpy as np
import torch

from stemforge.metrics.checks import as_tensor, check_pair

#: Offset of the Music Demixing Challenge SDR: keeps silent stems finite (20 log10 of ~1e-7 energy).
MDX_DELTA = 1e-7


def _pair(reference: np.ndarray | torch.Tensor, estimate: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_pair(reference, estimate, ndim=len(reference.shape))
    if len(reference.shape) < 2:
        raise ValueError("expected (..., channels, time) arrays")
    ref = as_tensor(reference)
    return ref, as_tensor(estimate, ref.device)


def mdx_sdr(reference: np.ndarray | torch.Tensor, estimate: np.ndarray | torch.Tensor, delta: float = MDX_DELTA) -> torch.Tensor:
    """MDX challenge SDR: 10 log10((|s|^2 + delta) / (|s - e|^2 + delta)) over the whole track -> (...)."""
    ref, est = _pair(reference, estimate)
    num = ref.pow(2).sum((-2, -1)) + delta
    den = (ref - est).pow(2).sum((-2, -1)) + delta
    return 10.0 * torch.log10(num / den)


def si_sdr(reference: np.ndarray | torch.Tensor, estimate: np.ndarray | torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale-invariant SDR (Le Roux et al. 2019) over all channels and samples jointly -> (...).

    The reference is scaled by the least-squares gain ``<e, s> / |s|^2``; signals are not mean-removed
    (audio stems are zero-mean in practice and removing it would change silent-stem behaviour).
    """
    ref, est = _pair(reference, estimate)
    gain = (est * ref).sum((-2, -1), keepdim=True) / (ref.pow(2).sum((-2, -1), keepdim=True) + eps)
    target = gain * ref
    return 10.0 * torch.log10((target.pow(2).sum((-2, -1)) + eps) / ((est - target).pow(2).sum((-2, -1)) + eps))


def framewise_snr(reference: np.ndarray | torch.Tensor, estimate: np.ndarray | torch.Tensor,
                  window: int = 44100, hop: int = 44100) -> torch.Tensor:
    """10 log10(|s_w|^2 / |s_w - e_w|^2) per window -> (..., windows); NaN where the reference is silent.

    Windows follow museval (whole windows only; one window if the signal is shorter); this equals
    BSS Eval v4's SDR in every window where no source is silent.
    """
    ref, est = _pair(reference, estimate)
    length = ref.shape[-1]
    width = min(window, length)
    count = 1 if window >= length else (length - window + hop) // hop
    span = (count - 1) * hop + width
    ref_frames = ref[..., :span].unfold(-1, width, hop)  # (..., channels, windows, width)
    err_frames = (ref - est)[..., :span].unfold(-1, width, hop)
    num = ref_frames.pow(2).sum((-3, -1))
    den = err_frames.pow(2).sum((-3, -1))
    snr = 10.0 * torch.log10(num / den)
    snr = torch.where(den == 0, torch.full_like(snr, float("inf")), snr)
    return torch.where(num == 0, torch.full_like(snr, float("nan")), snr)
