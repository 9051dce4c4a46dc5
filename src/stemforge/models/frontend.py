"""Shared front-end pieces of the neural separators: STFT layout, input normalisation, mask application.

Written once and used by every spectrogram model, so they all see the same time-frequency layout:

    mix (batch, channels, time) --stft--> spec (batch, channels, freq, frames) complex
"""

from __future__ import annotations

import torch
from torch import nn

from stemforge.dsp.spectral import istft, stft


class Spectrogram(nn.Module):
    """Parameter-free STFT / iSTFT pair with fixed ``n_fft`` and ``hop`` (exact inverse, see ``dsp.spectral``)."""

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        if hop > n_fft // 2:
            raise ValueError(f"hop ({hop}) must be at most n_fft / 2 ({n_fft // 2}) for an exact inverse")
        self.n_fft = n_fft
        self.hop = hop

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """wave: (..., time) -> (..., freq, frames) complex (always float32 or float64, autocast-safe)."""
        return stft(wave, self.n_fft, self.hop)

    def inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """spec: (..., freq, frames) complex -> (..., length) real."""
        return istft(spec, length, self.n_fft, self.hop)


def complex_to_channels(spec: torch.Tensor) -> torch.Tensor:
    """spec: (batch, channels, freq, frames) complex -> (batch, 2 * channels, freq, frames) real.

    Channel order is (re_0, im_0, re_1, im_1, ...), "complex as channels" as in HTDemucs and BS-RoFormer.
    """
    b, c, f, n = spec.shape
    ri = torch.view_as_real(spec)  # (B, C, F, N, 2)
    return ri.permute(0, 1, 4, 2, 3).reshape(b, 2 * c, f, n)


def channels_to_complex(x: torch.Tensor) -> torch.Tensor:
    """x: (..., 2 * channels, freq, frames) real -> (..., channels, freq, frames) complex; inverse of the above."""
    *lead, c2, f, n = x.shape
    ri = x.float().reshape(*lead, c2 // 2, 2, f, n).movedim(-3, -1).contiguous()
    return torch.view_as_complex(ri)


def pad_to_multiple(x: torch.Tensor, multiple: int, dim: int = -1) -> torch.Tensor:
    """Zero-pad ``x`` at the end of ``dim`` so its size is a multiple of ``multiple`` (networks with strides need it)."""
    size = x.shape[dim]
    extra = (-size) % multiple
    if extra == 0:
        return x
    shape = list(x.shape)
    shape[dim] = extra
    return torch.cat([x, x.new_zeros(shape)], dim=dim)


def extend_bins(x: torch.Tensor, bins: int) -> torch.Tensor:
    """x: (..., freq', frames) -> (..., bins, frames), repeating the top bin (masks of band-limited networks)."""
    missing = bins - x.shape[-2]
    if missing <= 0:
        return x[..., :bins, :]
    top = x[..., -1:, :].expand(*x.shape[:-2], missing, x.shape[-1])
    return torch.cat([x, top], dim=-2)


class FrequencyNorm(nn.Module):
    """Input normalisation: log-compressed magnitude, then a learned per-bin shift and scale (Open-Unmix style).

    ``forward(mag: (..., freq, frames)) -> (..., freq, frames)``. Log compression makes the network's input
    range independent of the recording level; the per-bin affine starts as the identity.
    """

    def __init__(self, bins: int) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(bins, 1))
        self.scale = nn.Parameter(torch.ones(bins, 1))

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        return (torch.log1p(mag) + self.shift) * self.scale


def standardize(x: torch.Tensor, dims: tuple[int, ...], eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Zero-mean unit-variance over ``dims`` per example; returns (normalised, mean, std) to undo it later."""
    mean = x.mean(dim=dims, keepdim=True)
    std = x.std(dim=dims, keepdim=True)
    return (x - mean) / (std + eps), mean, std


def apply_masks(masks: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
    """masks: (batch, sources, channels, freq, frames), real or complex; spec: (batch, channels, freq, frames) complex.

    Returns the stems' spectra (batch, sources, channels, freq, frames). Masks are cast to float32 first so a
    bf16 network under autocast still gives full-precision spectra.
    """
    if masks.is_complex():
        return masks * spec.unsqueeze(1)
    # Real masks scale real and imaginary parts alike: no complex copy of the masks needed.
    return torch.view_as_complex(torch.view_as_real(spec).unsqueeze(1) * masks.float().unsqueeze(-1))
