"""STFT / iSTFT front end shared by every spectrogram model.

Shapes: ``stft(x: (..., time)) -> (..., freq, frames)`` complex; ``istft`` inverts it exactly
(Hann window, hop <= n_fft / 2, centred frames), so masks summing to one give stems summing to the mix.
"""

from __future__ import annotations

import torch


def _window(n_fft: int, x: torch.Tensor) -> torch.Tensor:
    dtype = x.real.dtype if x.is_complex() else x.dtype
    if dtype not in (torch.float32, torch.float64):
        dtype = torch.float32
    return torch.hann_window(n_fft, periodic=True, device=x.device, dtype=dtype)


def stft(x: torch.Tensor, n_fft: int = 4096, hop: int = 1024) -> torch.Tensor:
    """x: (..., time) real -> (..., n_fft // 2 + 1, frames) complex."""
    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    if flat.dtype not in (torch.float32, torch.float64):
        flat = flat.float()
    # Reflect padding needs more samples than half a frame; zero padding works for any length.
    spec = torch.stft(
        flat, n_fft=n_fft, hop_length=hop, window=_window(n_fft, flat), center=True,
        pad_mode="constant", return_complex=True,
    )
    return spec.reshape(*shape[:-1], *spec.shape[-2:])


def istft(spec: torch.Tensor, length: int, n_fft: int = 4096, hop: int = 1024) -> torch.Tensor:
    """spec: (..., freq, frames) complex -> (..., length) real; exact inverse of ``stft``."""
    shape = spec.shape
    flat = spec.reshape(-1, *shape[-2:])
    wave = torch.istft(
        flat, n_fft=n_fft, hop_length=hop, window=_window(n_fft, flat), center=True, length=length,
    )
    return wave.reshape(*shape[:-2], length)


def num_frames(length: int, hop: int) -> int:
    """Number of STFT frames ``stft`` returns for ``length`` samples."""
    return length // hop + 1
