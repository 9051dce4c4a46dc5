"""Oracle separators: upper bounds for mask-based methods, computed from the true stems.

* ``ideal_ratio_mask``: |S_j|^p / sum_k |S_k|^p applied to the mixture STFT (p = 1 by default).
* ``ideal_binary_mask``: each time-frequency bin goes wholly to the loudest source.
* ``oracle_wiener``: multichannel Wiener filter with the true source power spectra v_j(f, t) and
  spatial covariances R_j(f) (Duong et al. 2010; sigsep's oracle "MWF").

All take ``stems: (sources, channels, time)`` (numpy or torch) and return estimates of the same shape
(float32 numpy) that sum to the mixture (up to STFT round-off).
"""

from __future__ import annotations

import numpy as np
import torch

from stemforge.dsp.spectral import istft, stft

EPS = 1e-10
#: Frames processed at once by the Wiener filter (bounds memory on long tracks).
CHUNK_FRAMES = 2048


def _spectra(stems: np.ndarray | torch.Tensor, n_fft: int, hop: int, device: str | None) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(stems, dtype=np.float32)) if not isinstance(stems, torch.Tensor) else stems.float()
    if device is not None:
        x = x.to(device)
    if x.ndim != 3:
        raise ValueError(f"stems must be (sources, channels, time), got shape {tuple(x.shape)}")
    return stft(x, n_fft, hop)  # (S, C, F, N)


def _apply_masks(masks: torch.Tensor, spec: torch.Tensor, length: int, n_fft: int, hop: int) -> np.ndarray:
    """masks: (S, F, N) or (S, C, F, N), spec: (S, C, F, N) source spectra -> (S, C, T) estimates."""
    mix = spec.sum(0)
    if masks.ndim == 3:
        masks = masks[:, None]
    return istft(masks * mix, length, n_fft, hop).cpu().numpy()


def ideal_ratio_mask(stems: np.ndarray | torch.Tensor, power: float = 1.0, n_fft: int = 4096, hop: int = 1024,
                     device: str | None = None) -> np.ndarray:
    """Soft oracle masks from the channel-summed source magnitudes -> (S, C, T) estimates."""
    spec = _spectra(stems, n_fft, hop, device)
    mag = spec.abs().sum(1).pow(power)  # (S, F, N)
    total = mag.sum(0, keepdim=True)
    masks = torch.where(total > EPS, mag / total.clamp_min(EPS), torch.full_like(mag, 1.0 / mag.shape[0]))
    return _apply_masks(masks, spec, stems.shape[-1], n_fft, hop)


def ideal_binary_mask(stems: np.ndarray | torch.Tensor, n_fft: int = 4096, hop: int = 1024,
                      device: str | None = None) -> np.ndarray:
    """Binary oracle masks: each bin to the source with the largest channel-summed magnitude."""
    spec = _spectra(stems, n_fft, hop, device)
    mag = spec.abs().sum(1)
    masks = torch.nn.functional.one_hot(mag.argmax(0), mag.shape[0]).permute(2, 0, 1).to(mag.dtype)
    return _apply_masks(masks, spec, stems.shape[-1], n_fft, hop)


def oracle_wiener(stems: np.ndarray | torch.Tensor, n_fft: int = 4096, hop: int = 1024,
                  device: str | None = None) -> np.ndarray:
    """Multichannel Wiener filter with oracle PSDs and spatial covariances -> (S, C, T) estimates.

    v_j(f, t) = mean_c |S_jc|^2; R_j(f) = sum_t S_j S_j^H / sum_t v_j; W_j = v_j R_j (sum_k v_k R_k)^-1.
    """
    spec = _spectra(stems, n_fft, hop, device).to(torch.complex128)  # (S, C, F, N)
    sources, channels, freqs, frames = spec.shape
    power = spec.abs().pow(2).mean(1)  # (S, F, N)
    cov = torch.einsum("scfn,sdfn->sfcd", spec, spec.conj()) / power.sum(-1)[..., None, None].clamp_min(EPS)
    mix = spec.sum(0)  # (C, F, N)
    out = torch.zeros_like(spec)
    eye = torch.eye(channels, dtype=spec.dtype, device=spec.device)
    for start in range(0, frames, CHUNK_FRAMES):
        span = slice(start, start + CHUNK_FRAMES)
        v = power[:, :, span]  # (S, F, n)
        model = v[..., None, None] * cov[:, :, None]  # (S, F, n, C, C)
        total = model.sum(0) + EPS * eye  # (F, n, C, C)
        x = mix[:, :, span].permute(1, 2, 0)[..., None]  # (F, n, C, 1)
        solved = torch.linalg.solve(total, x)  # (F, n, C, 1)
        estimate = (model @ solved[None])[..., 0]  # (S, F, n, C)
        out[:, :, :, span] = estimate.permute(0, 3, 1, 2)
    return istft(out, stems.shape[-1], n_fft, hop).float().cpu().numpy()
