"""Oracle separators: upper bounds for mask-based methods, computed from the true stems.

* ``ideal_ratio_mask``: |S_j|^p / sum_k |S_k|^p applied to the mixture STFT (p = 1 by default).
* ``ideal_binary_mask``: each time-frequency bin goes wholly to the loudest source.
* ``oracle_wiener``: multichannel Wiener filter with the true source power spectra v_j(f, t) and
  spatial covariances R_j(f) (Duong et al. 2010; sigsep's oracle "MWF").

All take ``stems: (sources, channels, time)`` (numpy or torch) and return estimates of the same shape
(float32 numpy) that sum to the mixture (up to STFT round-off). ``oracle_blocks`` gives the same
estimates a few seconds at a time from ``Stems`` (files), in memory bounded whatever the track length.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from stemforge.dsp.spectral import istft, stft
from stemforge.metrics.streams import Stems, as_stems

EPS = 1e-10
#: Frames processed at once by the Wiener filter (bounds memory on long tracks).
CHUNK_FRAMES = 2048
#: STFT frames per segment of the streamed oracles (``oracle_blocks``).
SEGMENT_FRAMES = 128


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


def _wiener_stats(spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """spec: (S, C, F, N) complex128 -> (sum_t S_j S_j^H: (S, F, C, C), sum_t v_j: (S, F))."""
    power = spec.abs().pow(2).mean(1)  # (S, F, N)
    return torch.einsum("scfn,sdfn->sfcd", spec, spec.conj()), power.sum(-1)


def _wiener_apply(spec: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """spec: (S, C, F, N) source spectra, cov: (S, F, C, C) spatial covariances -> filtered (S, C, F, N)."""
    sources, channels, freqs, frames = spec.shape
    power = spec.abs().pow(2).mean(1)  # (S, F, N)
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
    return out


def _covariance(num: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    return num / total[..., None, None].clamp_min(EPS)


def oracle_wiener(stems: np.ndarray | torch.Tensor, n_fft: int = 4096, hop: int = 1024,
                  device: str | None = None) -> np.ndarray:
    """Multichannel Wiener filter with oracle PSDs and spatial covariances -> (S, C, T) estimates.

    v_j(f, t) = mean_c |S_jc|^2; R_j(f) = sum_t S_j S_j^H / sum_t v_j; W_j = v_j R_j (sum_k v_k R_k)^-1.
    """
    spec = _spectra(stems, n_fft, hop, device).to(torch.complex128)  # (S, C, F, N)
    out = _wiener_apply(spec, _covariance(*_wiener_stats(spec)))
    return istft(out, stems.shape[-1], n_fft, hop).float().cpu().numpy()


ORACLES = {"oracle-irm": ideal_ratio_mask, "oracle-ibm": ideal_binary_mask, "oracle-mwf": oracle_wiener}


def _segments(length: int, n_fft: int, hop: int, frames: int) -> Iterator[tuple[int, int, int, int]]:
    """(start, stop, lo, hi): output samples [start, stop) are exact when computed from input [lo, hi).

    Spans are ``frames * hop`` samples, margins ``n_fft`` samples (whole hops, so the STFT frames of a
    segment fall on the whole track's frames): every frame that touches [start, stop) lies wholly inside
    [lo, hi) or reaches the track's own edge, where the padding is the same as the whole track's.
    """
    if n_fft % hop:
        raise ValueError(f"streamed oracles need n_fft ({n_fft}) to be a multiple of hop ({hop})")
    size = frames * hop
    for start in range(0, length, size):
        stop = min(start + size, length)
        yield start, stop, max(0, start - n_fft), min(length, stop + n_fft)


def oracle_blocks(name: str, stems: Stems | np.ndarray | torch.Tensor, n_fft: int = 4096, hop: int = 1024,
                  device: str | None = None, frames: int = SEGMENT_FRAMES) -> Iterator[tuple[int, np.ndarray]]:
    """An oracle's estimates a segment at a time, equal to the whole-track function's (memory bounded).

    The masks are local in time, so each segment is computed from its samples plus ``n_fft`` on each
    side; the Wiener filter's spatial covariances sum over the whole track, so it reads the track twice.

    Args:
        name: ``oracle-irm``, ``oracle-ibm`` or ``oracle-mwf``.
        stems: true stems (sources, channels, time): array, tensor or ``Stems`` (e.g. files).
        n_fft: STFT size (a multiple of ``hop``).
        hop: STFT hop.
        device: where to compute (default CPU).
        frames: STFT frames per segment (memory vs speed).

    Returns:
        Iterator of (start sample, estimates (S, C, n) float32), consecutive and covering the track.
    """
    if name not in ORACLES:
        raise ValueError(f"unknown oracle {name!r}; choose from {', '.join(ORACLES)}")
    stems = as_stems(stems)
    length = stems.shape[-1]
    cov = None
    if name == "oracle-mwf":
        num = total = None
        for start, stop, lo, hi in _segments(length, n_fft, hop, frames):
            spec = _spectra(stems.read(lo, hi), n_fft, hop, device).to(torch.complex128)
            # This segment's own frames: centres in [start, stop) (the last one also owns the end).
            first = (start - lo) // hop
            own = spec[..., first : (stop - lo) // hop if stop < length else None]
            part_num, part_total = _wiener_stats(own)
            num = part_num if num is None else num + part_num
            total = part_total if total is None else total + part_total
        cov = _covariance(num, total)
    for start, stop, lo, hi in _segments(length, n_fft, hop, frames):
        block = stems.read(lo, hi)
        if cov is None:
            estimates = ORACLES[name](block, n_fft=n_fft, hop=hop, device=device)
        else:
            spec = _spectra(block, n_fft, hop, device).to(torch.complex128)
            estimates = istft(_wiener_apply(spec, cov), hi - lo, n_fft, hop).float().cpu().numpy()
        yield start, np.ascontiguousarray(estimates[..., start - lo : stop - lo])
