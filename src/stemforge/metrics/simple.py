"""Whole-signal and framewise energy-ratio metrics: MDX SDR, SI-SDR, framewise SNR.

All take ``reference, estimate: (..., channels, time)`` (numpy or torch, any device), or ``Stems``
(sources, channels, time) read a block at a time (files: memory bounded whatever the length), compute
in float64 and return torch tensors in dB with the leading ``...`` dims (plus a ``windows`` dim for SNR).
``audible`` says which stems of one in-memory numpy track play, i.e. have an SDR worth averaging.
"""

from __future__ import annotations

import numpy as np
import torch

from stemforge.metrics.bss_eval import num_windows
from stemforge.metrics.checks import as_tensor, check_pair
from stemforge.metrics.streams import Stems, as_stems, blocks, default_device, read_block

#: Offset of the Music Demixing Challenge SDR: keeps silent stems finite (20 log10 of ~1e-7 energy).
MDX_DELTA = 1e-7
#: A stem whose energy is this far below its track's mixture does not play there: its SDR would measure only the
#: leakage into an inaudible reference (two dev excerpts' vocals, at -45 and -69 dB, scored -26 and -47 dB).
SILENT_DB = -40.0
#: Samples read at once when the inputs are ``Stems`` (e.g. files): memory does not grow with the track.
BLOCK = 1 << 18
#: Windows read at once by the streamed framewise SNR.
WINDOWS_PER_CHUNK = 8

Signal = np.ndarray | torch.Tensor | Stems


def _streamed(*inputs: Signal) -> bool:
    return any(isinstance(x, Stems) for x in inputs)


def _accumulate(reference: Stems, estimate: Stems, *terms) -> list[torch.Tensor]:
    """Sum each ``term(ref_block, est_block) -> (sources,)`` over the track, read BLOCK samples at a time."""
    check_pair(reference, estimate)
    reference, estimate = as_stems(reference), as_stems(estimate)
    device = default_device(reference, estimate)
    totals = [0.0] * len(terms)
    for start, stop in blocks(reference.shape[-1], BLOCK):
        ref = read_block(reference, start, stop, device, "reference")
        est = read_block(estimate, start, stop, device, "estimate")
        totals = [total + term(ref, est) for total, term in zip(totals, terms)]
    return totals


def _pair(reference: np.ndarray | torch.Tensor, estimate: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_pair(reference, estimate, ndim=len(reference.shape))
    if len(reference.shape) < 2:
        raise ValueError("expected (..., channels, time) arrays")
    ref = as_tensor(reference)
    return ref, as_tensor(estimate, ref.device)


def audible(stems: np.ndarray) -> np.ndarray:
    """Which stems of one track play, and so have an SDR to average over tracks (an all-zero stem never does).

    Args:
        stems: (sources, channels, time) references; their sum is the track's mixture.

    Returns:
        (sources,) bool: a stem's energy is above ``SILENT_DB`` relative to the mixture's.
    """
    energy = np.square(stems, dtype=np.float64).sum(axis=(1, 2))
    mixture = np.square(stems.sum(0), dtype=np.float64).sum()
    return (energy > 0) & (energy >= mixture * 10.0 ** (SILENT_DB / 10.0))


def mdx_sdr(reference: Signal, estimate: Signal, delta: float = MDX_DELTA) -> torch.Tensor:
    """MDX challenge SDR: 10 log10((|s|^2 + delta) / (|s - e|^2 + delta)) over the whole track -> (...).

    ``Stems`` inputs (sources, channels, time) are read a block at a time.
    """
    if _streamed(reference, estimate):
        num, den = _accumulate(reference, estimate, lambda r, e: r.pow(2).sum((-2, -1)),
                               lambda r, e: (r - e).pow(2).sum((-2, -1)))
        return 10.0 * torch.log10((num + delta) / (den + delta))
    ref, est = _pair(reference, estimate)
    num = ref.pow(2).sum((-2, -1)) + delta
    den = (ref - est).pow(2).sum((-2, -1)) + delta
    return 10.0 * torch.log10(num / den)


def si_sdr(reference: Signal, estimate: Signal, eps: float = 1e-12) -> torch.Tensor:
    """Scale-invariant SDR (Le Roux et al. 2019) over all channels and samples jointly -> (...).

    The reference is scaled by the least-squares gain ``<e, s> / |s|^2``; signals are not mean-removed
    (audio stems are zero-mean in practice and removing it would change silent-stem behaviour).
    ``Stems`` inputs are read twice, a block at a time (gain, then residual).
    """
    if _streamed(reference, estimate):
        dot, energy = _accumulate(reference, estimate, lambda r, e: (e * r).sum((-2, -1)), lambda r, e: r.pow(2).sum((-2, -1)))
        gain = (dot / (energy + eps))[:, None, None]
        target, residual = _accumulate(reference, estimate, lambda r, e: (gain * r).pow(2).sum((-2, -1)),
                                       lambda r, e: (e - gain * r).pow(2).sum((-2, -1)))
        return 10.0 * torch.log10((target + eps) / (residual + eps))
    ref, est = _pair(reference, estimate)
    gain = (est * ref).sum((-2, -1), keepdim=True) / (ref.pow(2).sum((-2, -1), keepdim=True) + eps)
    target = gain * ref
    return 10.0 * torch.log10((target.pow(2).sum((-2, -1)) + eps) / ((est - target).pow(2).sum((-2, -1)) + eps))


def framewise_snr(reference: Signal, estimate: Signal,
                  window: int = 44100, hop: int = 44100) -> torch.Tensor:
    """10 log10(|s_w|^2 / |s_w - e_w|^2) per window -> (..., windows); NaN where the reference is silent.

    Windows follow museval (whole windows only; one window if the signal is shorter); this equals
    BSS Eval v4's SDR in every window where no source is silent. ``Stems`` inputs are read a few
    windows at a time.
    """
    if _streamed(reference, estimate):
        check_pair(reference, estimate)
        reference, estimate = as_stems(reference), as_stems(estimate)
        device = default_device(reference, estimate)
        length = reference.shape[-1]
        width, count = min(window, length), num_windows(length, window, hop)
        nums, dens = [], []
        for start in range(0, count, WINDOWS_PER_CHUNK):
            stop = min(start + WINDOWS_PER_CHUNK, count)
            first, last = start * hop, (stop - 1) * hop + width
            ref = read_block(reference, first, last, device, "reference")
            est = read_block(estimate, first, last, device, "estimate")
            nums.append(ref.unfold(-1, width, hop).pow(2).sum((-3, -1)))
            dens.append((ref - est).unfold(-1, width, hop).pow(2).sum((-3, -1)))
        num, den = torch.cat(nums, -1), torch.cat(dens, -1)
    else:
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
