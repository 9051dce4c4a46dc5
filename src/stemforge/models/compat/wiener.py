"""Multichannel Wiener filtering with EM refinement (Nugraha et al. 2016, Liutkus et al. 2014).

Used by Open-Unmix, whose published scores assume one EM iteration after the per-target networks.
Complex tensors throughout; shapes name frames ``N``, bins ``F``, channels ``C``, sources ``S``.
"""

from __future__ import annotations

import torch


def _invert(matrix: torch.Tensor) -> torch.Tensor:
    """matrix: (..., C, C) complex -> inverse; closed form for C <= 2 (stable and fast), LAPACK otherwise."""
    channels = matrix.shape[-1]
    if channels == 1:
        return 1.0 / matrix
    if channels == 2:
        a, b = matrix[..., 0, 0], matrix[..., 0, 1]
        c, d = matrix[..., 1, 0], matrix[..., 1, 1]
        inv_det = 1.0 / (a * d - b * c)
        row0 = torch.stack([d * inv_det, -b * inv_det], dim=-1)
        row1 = torch.stack([-c * inv_det, a * inv_det], dim=-1)
        return torch.stack([row0, row1], dim=-2)
    return torch.linalg.inv(matrix)


def expectation_maximization(
    estimates: torch.Tensor, mix: torch.Tensor, iterations: int, eps: float = 1e-10
) -> torch.Tensor:
    """Refine source STFTs by EM on a local Gaussian model.

    estimates: (N, F, C, S) complex initial source STFTs; mix: (N, F, C) complex -> (N, F, C, S).
    Each iteration re-estimates power spectral densities ``v`` and spatial covariances ``R`` from the
    current estimates, then re-separates the mixture with the resulting multichannel Wiener gains.
    """
    channels = mix.shape[-1]
    eye = torch.eye(channels, dtype=mix.dtype, device=mix.device)
    regularization = (eps ** 0.5) * eye
    y = estimates
    for _ in range(iterations):
        power = (y.real ** 2 + y.imag ** 2).mean(dim=-2)  # (N, F, S)
        # Spatial covariance per source and bin: sum_t y y^H / sum_t v.
        covariance = torch.einsum("nfas,nfbs->fsab", y, y.conj())  # (F, S, C, C)
        weight = eps + power.sum(dim=0)  # (F, S)
        spatial = covariance / weight[..., None, None]
        mix_covariance = regularization + torch.einsum("nfs,fsab->nfab", power.to(mix.dtype), spatial)
        inv_mix = _invert(mix_covariance)  # (N, F, C, C)
        gains = torch.einsum("nfs,fsab,nfbc->nfsac", power.to(mix.dtype), spatial, inv_mix)
        y = torch.einsum("nfsac,nfc->nfas", gains, mix)
    return y


def wiener(
    magnitudes: torch.Tensor,
    mix: torch.Tensor,
    iterations: int = 1,
    softmask: bool = False,
    residual: bool = False,
    scale_factor: float = 10.0,
    eps: float = 1e-10,
) -> torch.Tensor:
    """Turn per-source magnitude estimates into complex source STFTs.

    magnitudes: (N, F, C, S) non-negative; mix: (N, F, C) complex -> (N, F, C, S [+1 if residual]).
    Initial estimates take the mixture phase (or a soft ratio mask); ``iterations`` EM steps follow,
    run on the mixture scaled so its peak magnitude is at most ``scale_factor`` (numerical range).
    """
    if softmask:
        total = eps + magnitudes.sum(dim=-1, keepdim=True)
        y = mix[..., None] * (magnitudes / total)
    else:
        phase = torch.polar(torch.ones_like(mix.real), torch.angle(mix))
        y = magnitudes * phase[..., None]
    if residual:
        y = torch.cat([y, (mix - y.sum(dim=-1))[..., None]], dim=-1)
    if iterations == 0:
        return y
    one = torch.ones((), dtype=mix.real.dtype, device=mix.device)
    max_abs = torch.maximum(one, mix.abs().max() / scale_factor)
    y = expectation_maximization(y / max_abs, mix / max_abs, iterations, eps=eps)
    return y * max_abs
