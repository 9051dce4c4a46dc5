"""Training losses on separated stems: L1 on the waveform, multi-resolution STFT, and an SDR-style loss.

Every loss takes ``estimate, reference: (batch, sources, channels, time)`` and returns a scalar tensor.
Losses are computed in float32 even under bf16 autocast, and stay finite on silent references
(the SDR loss carries an epsilon in both terms for that reason).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from stemforge.dsp.spectral import stft
from stemforge.errors import StemforgeError

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: (n_fft, hop) pairs of the multi-resolution STFT loss (Yamamoto et al. 2020 use a similar set).
DEFAULT_RESOLUTIONS: tuple[tuple[int, int], ...] = ((2048, 512), (1024, 256), (512, 128))


def _check(estimate: torch.Tensor, reference: torch.Tensor) -> None:
    if estimate.shape != reference.shape:
        raise ValueError(f"estimate shape {tuple(estimate.shape)} != reference shape {tuple(reference.shape)}")


def l1_waveform(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean absolute sample error; (B, S, C, T) x2 -> scalar."""
    _check(estimate, reference)
    return (estimate.float() - reference.float()).abs().mean()


def multi_resolution_stft(
    estimate: torch.Tensor, reference: torch.Tensor, resolutions: Sequence[tuple[int, int]] = DEFAULT_RESOLUTIONS,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Spectral convergence + log-magnitude L1, averaged over STFT resolutions; (B, S, C, T) x2 -> scalar.

    Spectral convergence is computed per (batch, source, channel) signal so a loud stem does not drown a quiet one.
    """
    _check(estimate, reference)
    total = estimate.new_zeros((), dtype=torch.float32)
    for n_fft, hop in resolutions:
        est_mag = stft(estimate.float(), n_fft, hop).abs()
        ref_mag = stft(reference.float(), n_fft, hop).abs()
        diff = torch.linalg.vector_norm(ref_mag - est_mag, dim=(-2, -1))
        norm = torch.linalg.vector_norm(ref_mag, dim=(-2, -1))
        convergence = (diff / (norm + eps)).mean()
        log_mag = (torch.log(est_mag + eps) - torch.log(ref_mag + eps)).abs().mean()
        total = total + convergence + log_mag
    return total / len(resolutions)


def sdr_loss(estimate: torch.Tensor, reference: torch.Tensor, floor: float = 1e-3, eps: float = 1e-8) -> torch.Tensor:
    """Negative signal-to-distortion ratio in dB (MDX-style energy ratio), averaged over batch and sources.

    SDR = 10 log10((|s|^2 + d) / (|s - s_hat|^2 + d)) per (batch, source), channels and time pooled, with
    ``d = floor * mean_j |s_j|^2 + eps`` taken over the item's sources: a silent stem then scores at most
    about -10 log10(floor) (30 dB) instead of dominating the batch, as windows with a silent stem are not
    scored by BSS Eval either. ``floor=0`` gives the plain energy ratio.
    """
    _check(estimate, reference)
    ref = reference.float().flatten(2)
    err = ref - estimate.float().flatten(2)
    energy = ref.square().sum(-1)  # (B, S)
    offset = floor * energy.mean(1, keepdim=True) + eps
    return -(10.0 * torch.log10((energy + offset) / (err.square().sum(-1) + offset))).mean()


LOSSES: dict[str, Loss] = {"l1": l1_waveform, "mrstft": multi_resolution_stft, "sdr": sdr_loss}


def build_loss(weights: dict[str, float]) -> Loss:
    """Weighted sum of named losses, e.g. ``{"l1": 1.0, "mrstft": 0.5}``; unknown names are a user error."""
    if not weights:
        raise StemforgeError("at least one loss must be given (choices: " + ", ".join(LOSSES) + ")")
    unknown = sorted(set(weights) - set(LOSSES))
    if unknown:
        raise StemforgeError(f"unknown loss {unknown[0]!r}; choices: {', '.join(LOSSES)}")
    terms = [(LOSSES[name], float(w)) for name, w in weights.items() if w != 0.0]

    def combined(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return sum(w * fn(estimate, reference) for fn, w in terms)  # type: ignore[return-value]

    return combined
