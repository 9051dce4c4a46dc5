"""BSS Eval v4 (museval's ``bss_eval_images`` with time-invariant filters), fast and batched.

Definition (Vincent et al. 2006; Liutkus et al. 2018, as implemented by museval 0.4):

* Distortion filters of ``filters_len`` taps are fitted ONCE per track by least squares on the whole
  signals: each estimate is projected on all delayed reference channels (filters ``C``), and on the
  delayed channels of its own reference only (filters ``Cj``). The Gram system gets ``eps * I``
  (float64 machine epsilon) added, exactly as museval does.
* Each window (``window`` samples, every ``hop`` samples; a track shorter than a window is one
  window; a last partial window is dropped) is scored with the fixed filters applied to the
  *windowed* references (linear convolution, so the projections are ``window + filters_len - 1`` long):

      SDR = |s|^2 / |e - s|^2          ISR = |s|^2 / |Pj - s|^2
      SIR = |Pj|^2 / |P - Pj|^2        SAR = |P|^2 / |e - P|^2

  with ``s`` the reference, ``e`` the estimate, ``Pj``/``P`` the own-source/all-source projections.
* A window where any reference or any estimate is silent (channel sum zero at every sample) is NaN
  for every source. Track scores are the NaN-ignoring median over windows (``track_medians``).

Unlike museval we correlate in blocks with FFTs, solve the big Gram system once for all estimates
(one Cholesky factorisation), and score windows in chunks in the frequency domain (Parseval: one
batched matrix product per frequency gives every projection), so memory stays bounded. Works on any
torch device; all arithmetic is float64 (float32 audio is converted a chunk at a time).

Where a reference makes the Gram system exactly singular (a stem whose channels are identical, pure
tones) museval's LU returns a numerically arbitrary solution and its SIR/SAR can be ~0.1 dB off; we
return the well-posed least-squares projection instead (see ``_solve_psd``).
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import scipy.fft
import torch

from stemforge.metrics.checks import check_pair
from stemforge.metrics.streams import Stems, as_stems, default_device, read_block

EPS = float(np.finfo(np.float64).eps)


@dataclasses.dataclass
class BSSEvalScores:
    """Framewise scores in dB, each ``(sources, windows)``; NaN in windows with a silent source."""

    sdr: np.ndarray
    isr: np.ndarray
    sir: np.ndarray
    sar: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"SDR": self.sdr, "ISR": self.isr, "SIR": self.sir, "SAR": self.sar}

    def track_medians(self) -> dict[str, np.ndarray]:
        """Median over windows ignoring NaN (museval's track aggregate): metric -> (sources,)."""
        return {name: nanmedian(values) for name, values in self.as_dict().items()}


def nanmedian(values: np.ndarray) -> np.ndarray:
    """Median over the last axis ignoring NaN; all-NaN rows give NaN without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=-1)


def num_windows(length: int, window: int, hop: int) -> int:
    """museval's framing: whole windows only, or one window when the track is shorter than a window."""
    if window >= length:
        return 1
    return (length - window + hop) // hop


def _lagged_correlations(parts: list, fixed: int, lags: int, block: int = 1 << 13,
                         device: torch.device | None = None) -> torch.Tensor:
    """X[a, b, k] = sum_n x[a, n + k] * x[b, n] for b < ``fixed``, k in [0, lags), x = cat(parts).

    parts: tensors (rows, time) or ``Stems`` (sources, channels, time; rows = sources * channels) of one
    length, zero outside -> (A, fixed, lags), float64. The track is cut into blocks of ``block`` samples
    overlapping by ``lags - 1``; the circular cross-spectra of the blocks are summed (one batched matrix
    product per frequency) and the wrapped-around products, which only involve the ``lags - 1`` overlap
    samples, are subtracted with a short FFT. Blocks are read and converted to float64 a few at a time,
    so the audio is never read (or copied) whole.
    """
    def rows(p) -> int:
        return p.shape[0] * p.shape[1] if isinstance(p, Stems) else p.shape[0]

    count, length = sum(rows(p) for p in parts), parts[0].shape[-1]
    device = device if device is not None else default_device(*parts)
    step = block - lags + 1
    blocks = -(-length // step)
    small = 2 * lags
    cross = torch.zeros(block // 2 + 1, count, fixed, dtype=torch.complex128, device=device)
    wrapped = torch.zeros(small // 2 + 1, count, fixed, dtype=torch.complex128, device=device)

    def accumulate(total: torch.Tensor, shifted: torch.Tensor, kept: torch.Tensor, n_fft: int) -> None:
        a = torch.fft.rfft(shifted, n=n_fft).permute(2, 1, 0).contiguous()  # (F, blocks, A)
        b = torch.fft.rfft(kept, n=n_fft).permute(2, 1, 0).contiguous()  # (F, blocks, fixed)
        total += torch.bmm(a.transpose(1, 2), b.conj())

    for start in range(0, blocks, 8):
        count_blocks = min(8, blocks - start)
        begin = start * step
        samples = torch.zeros(count, count_blocks * step + lags - 1, dtype=torch.float64, device=device)
        stop = min(length, begin + samples.shape[1])
        row = 0
        for p in parts:
            if isinstance(p, Stems):
                data = read_block(p, begin, stop, device, "reference" if row == 0 else "estimate").reshape(-1, stop - begin)
            else:
                data = p[:, begin:stop]
            samples[row : row + data.shape[0], : stop - begin] = data
            row += data.shape[0]
        part = samples.unfold(-1, block, step)  # (A, blocks, block), consecutive blocks share lags - 1 samples
        spectra = torch.fft.rfft(part).permute(2, 1, 0).contiguous()  # (F, blocks, A)
        cross += torch.bmm(spectra.transpose(1, 2), spectra[..., :fixed].conj())
        # Circular products with n >= step: b's overlap tail against a's tail followed by a's head.
        tails = torch.cat([part[..., step:], part[..., : lags - 1]], dim=-1)  # (A, blocks, 2 * (lags - 1))
        accumulate(wrapped, tails, part[:fixed, :, step:], small)
    full = torch.fft.irfft(cross, n=block, dim=0)[:lags]
    edge = torch.fft.irfft(wrapped, n=small, dim=0)[:lags]
    return (full - edge).permute(1, 2, 0)


def _solve_psd(gram: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Solve (gram + eps I) x = rhs (batched) by Cholesky, as museval does with LU.

    When rounding makes the matrix indefinite (references with little spectral content, e.g. pure
    tones, make it singular) a tiny relative ridge (1e-12 of the mean diagonal, growing 100-fold until
    Cholesky succeeds) is added instead: the projections, hence the metrics, then equal museval's
    least-squares fallback up to the energy in directions the references barely span.
    """
    scale = gram.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(EPS)
    ridge = 0.0
    for exponent in range(-12, 0, 2):
        system = gram.clone()
        system.diagonal(dim1=-2, dim2=-1).add_((EPS + ridge * scale)[..., None])
        factor, info = torch.linalg.cholesky_ex(system, out=(system, torch.empty(0, dtype=torch.int32, device=system.device)))
        if bool((info == 0).all()):
            return torch.cholesky_solve(rhs, factor)  # factorised in place: no second n x n copy
        del system, factor
        ridge = 10.0**exponent
    return torch.linalg.lstsq(gram, rhs).solution


def distortion_filters(references: Stems | torch.Tensor, estimates: Stems | torch.Tensor, filters_len: int = 512,
                       device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares distortion filters fitted on whole signals (read a few blocks at a time).

    references, estimates: (sources, channels, time) tensors or ``Stems``, float32 or float64 ->
    ``all_filters``: (sources_ref, channels_ref, filters_len, sources_est, channels_est) projecting each
    estimate on every reference; ``own_filters``: (sources, channels_ref, filters_len, channels_est)
    projecting estimate j on reference j only.
    """
    sources, channels, _ = references.shape
    n = sources * channels
    corr = _lagged_correlations([as_stems(references), as_stems(estimates)], n, filters_len, device=device)
    ref_corr, est_corr = corr[:n], corr[n:]  # (n, n, L), (n, n, L)
    # G[(a, p), (b, q)] = corr_ab[q - p]; v[a, b, m] = corr_ab[m - (L - 1)] for m in [0, 2L - 1).
    negative = ref_corr.transpose(0, 1)[:, :, 1:].flip(-1)  # corr_ab[-k] = corr_ba[k]
    v = torch.cat([negative, ref_corr], dim=-1)
    # Filled one reference row-block at a time: no (n L)^2 temporaries besides the Gram matrix itself.
    lag = torch.arange(filters_len, device=v.device)
    index = lag[None, :] - lag[:, None] + filters_len - 1  # (p, q) -> q - p + L - 1
    gram = torch.empty(n * filters_len, n * filters_len, dtype=v.dtype, device=v.device)
    for a in range(n):
        gram[a * filters_len : (a + 1) * filters_len] = v[a][:, index].permute(1, 0, 2).reshape(filters_len, -1)
    # D[(a, k), (e, c)] = <reference a delayed by k, estimate channel (e, c)>
    rhs = est_corr.permute(1, 2, 0).reshape(n * filters_len, n)
    all_filters = _solve_psd(gram, rhs).reshape(sources, channels, filters_len, sources, channels)
    size = channels * filters_len
    blocks = gram.reshape(sources, size, sources, size)
    own_gram = blocks[torch.arange(sources), :, torch.arange(sources)]  # (sources, size, size)
    own_rhs = rhs.reshape(sources, size, sources, channels)[torch.arange(sources), :, torch.arange(sources)]
    own_filters = _solve_psd(own_gram, own_rhs).reshape(sources, channels, filters_len, channels)
    return all_filters, own_filters


def _energy(spectrum: torch.Tensor, weights: torch.Tensor, sources: int) -> torch.Tensor:
    """Per-window, per-source energy of real signals from their rfft (Parseval).

    spectrum: (freq, windows, sources * channels) complex, weights: (freq,) -> (sources, windows).
    """
    parts = torch.view_as_real(spectrum)
    power = (parts * parts).reshape(parts.shape[0], -1)  # (freq, windows * sources * channels * 2)
    energy = (weights @ power).reshape(spectrum.shape[1], sources, -1).sum(-1)
    return energy.T


def _parseval_weights(n_fft: int, device: torch.device) -> torch.Tensor:
    """Weights w such that sum(x**2) == sum(w * |rfft(x, n_fft)|**2)."""
    weights = torch.full((n_fft // 2 + 1,), 2.0 / n_fft, dtype=torch.float64, device=device)
    weights[0] = 1.0 / n_fft
    if n_fft % 2 == 0:
        weights[-1] = 1.0 / n_fft
    return weights


def _db(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """10 log10(num / den), +inf where den == 0 (museval's convention)."""
    ratio = 10.0 * torch.log10(num / den)
    return torch.where(den == 0, torch.full_like(ratio, float("inf")), ratio)


def bss_eval_v4(
    references: Stems | np.ndarray | torch.Tensor,
    estimates: Stems | np.ndarray | torch.Tensor,
    window: int = 44100,
    hop: int = 44100,
    filters_len: int = 512,
    device: str | torch.device | None = None,
    windows_per_chunk: int = 4,
) -> BSSEvalScores:
    """Framewise BSS Eval v4 image metrics, equal to ``museval.evaluate`` (mode "v4").

    Memory is bounded whatever the track length: the signals are read twice, a few blocks at a time
    (once to fit the distortion filters, once window chunk by window chunk to score).

    Args:
        references: true stems (sources, channels, time): array, tensor or ``Stems`` (e.g. files).
        estimates: estimates of the same shape.
        window: window length in samples.
        hop: hop between windows in samples.
        filters_len: taps of the distortion filters.
        device: where to compute; defaults to the input tensor's device (CPU for numpy and files).
        windows_per_chunk: windows scored at once (memory vs speed; results do not depend on it).

    Returns:
        SDR/ISR/SIR/SAR in dB, each (sources, windows).
    """
    check_pair(references, estimates)
    # Inputs stay in their precision (float32 audio is not copied) and are read a chunk at a time;
    # every computation converts the chunk to float64.
    device = torch.device(device) if device is not None else default_device(references, estimates)
    refs, ests = as_stems(references), as_stems(estimates)
    sources, channels, length = refs.shape
    n = sources * channels
    all_filters, own_filters = distortion_filters(refs, ests, filters_len, device=device)

    width = min(window, length)
    windows = num_windows(length, window, hop)
    n_fft = scipy.fft.next_fast_len(width + filters_len - 1, real=True)
    weights = _parseval_weights(n_fft, device)
    # Filters per frequency: all_f (F, ref channel, est channel), own_f (F * S, ref channel, est channel).
    all_f = torch.fft.rfft(all_filters.reshape(n, filters_len, n), n=n_fft, dim=1).permute(1, 0, 2).contiguous()
    own_f = torch.fft.rfft(own_filters, n=n_fft, dim=2).permute(2, 0, 1, 3).reshape(-1, channels, channels).contiguous()

    ref_buffer = torch.zeros(windows_per_chunk, n, n_fft, dtype=torch.float64, device=device)
    est_buffer = torch.zeros_like(ref_buffer)
    sdr, isr, sir, sar = (torch.empty(sources, windows, dtype=torch.float64, device=device) for _ in range(4))
    valid = torch.empty(windows, dtype=torch.bool, device=device)
    for start in range(0, windows, windows_per_chunk):
        chunk = slice(start, min(start + windows_per_chunk, windows))
        count = chunk.stop - chunk.start
        first, last = start * hop, (chunk.stop - 1) * hop + width
        ref_frames = read_block(refs, first, last, device, "reference", keep_float=True).unfold(-1, width, hop)
        est_frames = read_block(ests, first, last, device, "estimate", keep_float=True).unfold(-1, width, hop)
        # museval: a window is scored only if no reference and no estimate is silent in it.
        valid[chunk] = (ref_frames.sum(1) != 0).any(-1).all(0) & (est_frames.sum(1) != 0).any(-1).all(0)
        ref_part = ref_frames.to(torch.float64)
        ref_energy = (ref_part * ref_part).sum((1, 3))
        error = est_frames.to(torch.float64) - ref_part
        sdr[:, chunk] = _db(ref_energy, (error * error).sum((1, 3)))
        del ref_part, error

        def spectrum(frames: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
            part = frames.permute(2, 0, 1, 3)  # (w, S, C, width)
            padded = buffer[:count]
            padded[..., :width].copy_(part.reshape(-1, n, width))
            return torch.fft.rfft(padded).permute(2, 0, 1).contiguous()  # (F, w, n)

        ref_f = spectrum(ref_frames, ref_buffer)
        proj_all = torch.bmm(ref_f, all_f)  # (F, w, n)
        by_source = ref_f.reshape(-1, count, sources, channels).transpose(1, 2).reshape(-1, count, channels)
        proj_own = torch.bmm(by_source, own_f).reshape(-1, sources, count, channels).transpose(1, 2).reshape(-1, count, n)
        residual = spectrum(est_frames, est_buffer).sub_(proj_all)
        isr[:, chunk] = _db(ref_energy, _energy(proj_own - ref_f, weights, sources))
        sir[:, chunk] = _db(_energy(proj_own, weights, sources), _energy(proj_all - proj_own, weights, sources))
        sar[:, chunk] = _db(_energy(proj_all, weights, sources), _energy(residual, weights, sources))

    nan = torch.tensor(float("nan"), dtype=sdr.dtype, device=sdr.device)
    scores = [torch.where(valid, m, nan).cpu().numpy() for m in (sdr, isr, sir, sar)]
    return BSSEvalScores(*scores)
