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
(Cholesky, LU fallback), and score all windows at once in the frequency domain (Parseval), so the
cost is a few seconds per track and memory stays bounded. Works on any torch device; float64.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import scipy.fft
import torch

from stemforge.metrics.checks import as_tensor, check_pair

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


def _frames(x: torch.Tensor, window: int, hop: int) -> torch.Tensor:
    """x: (..., time) -> (..., windows, window_length) views."""
    length = x.shape[-1]
    width = min(window, length)
    return x[..., : (num_windows(length, window, hop) - 1) * hop + width].unfold(-1, width, hop)


def _lagged_correlations(shifted: torch.Tensor, fixed: torch.Tensor, lags: int, block: int = 1 << 16) -> torch.Tensor:
    """X[a, b, k] = sum_n shifted[a, n + k] * fixed[b, n] for k in [0, lags) (zero outside the signals).

    shifted: (A, time), fixed: (B, time) -> (A, B, lags). Cross-spectra of blocks (each block of
    ``shifted`` extended by ``lags - 1`` samples so no product is lost at block edges) are summed over
    blocks with one batched matrix product per frequency, so memory does not grow with the track length.
    """
    length = shifted.shape[-1]
    step = block - lags + 1
    blocks = -(-length // step)
    pad = blocks * step + lags - 1 - length
    ext = torch.nn.functional.pad(shifted, (0, pad)).unfold(-1, step + lags - 1, step)  # (A, blocks, step+lags-1)
    base = torch.nn.functional.pad(fixed, (0, pad))[..., : blocks * step].reshape(fixed.shape[0], blocks, step)
    cross = torch.zeros(block // 2 + 1, shifted.shape[0], fixed.shape[0], dtype=torch.complex128, device=shifted.device)
    for start in range(0, blocks, 16):
        a = torch.fft.rfft(ext[:, start : start + 16], n=block).permute(2, 1, 0).contiguous()  # (F, n, A)
        b = torch.fft.rfft(base[:, start : start + 16], n=block).permute(2, 1, 0).contiguous()  # (F, n, B)
        cross += torch.bmm(a.transpose(1, 2), b.conj())
    return torch.fft.irfft(cross, n=block, dim=0)[:lags].permute(1, 2, 0)


def _solve_psd(gram: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """Solve (gram + eps I) x = rhs; Cholesky when positive definite, LU otherwise (batched)."""
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    system = gram + EPS * eye
    factor, info = torch.linalg.cholesky_ex(system)
    if bool((info == 0).all()):
        return torch.cholesky_solve(rhs, factor)
    return torch.linalg.solve(system, rhs)


def distortion_filters(references: torch.Tensor, estimates: torch.Tensor, filters_len: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares distortion filters fitted on whole signals.

    references, estimates: (sources, channels, time) float64 ->
    ``all_filters``: (sources_ref, channels_ref, filters_len, sources_est, channels_est) projecting each
    estimate on every reference; ``own_filters``: (sources, channels_ref, filters_len, channels_est)
    projecting estimate j on reference j only.
    """
    sources, channels, _ = references.shape
    n = sources * channels
    refs = references.reshape(n, -1)
    ests = estimates.reshape(n, -1)
    corr = _lagged_correlations(torch.cat([refs, ests]), refs, filters_len)  # (2n, n, L)
    ref_corr, est_corr = corr[:n], corr[n:]
    lag = torch.arange(filters_len, device=refs.device)
    delta = lag[None, :] - lag[:, None]  # q - p
    forward = ref_corr[:, :, delta.clamp(min=0)]  # (n, n, L, L): corr_ab[q-p] for q >= p
    backward = ref_corr.transpose(0, 1)[:, :, (-delta).clamp(min=0)]  # corr_ba[p-q] for q < p
    gram = torch.where(delta >= 0, forward, backward)  # (a, b, p, q)
    gram = gram.permute(0, 2, 1, 3).reshape(n * filters_len, n * filters_len)
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
    power = torch.view_as_real(spectrum).pow(2).sum(-1)
    energy = torch.tensordot(weights, power, dims=([0], [0]))  # (windows, sources * channels)
    return energy.reshape(energy.shape[0], sources, -1).sum(-1).T


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
    references: np.ndarray | torch.Tensor,
    estimates: np.ndarray | torch.Tensor,
    window: int = 44100,
    hop: int = 44100,
    filters_len: int = 512,
    device: str | torch.device | None = None,
    windows_per_chunk: int = 16,
) -> BSSEvalScores:
    """Framewise BSS Eval v4 image metrics, equal to ``museval.evaluate`` (mode "v4").

    references, estimates: (sources, channels, time), same shape. Returns SDR/ISR/SIR/SAR in dB,
    each (sources, windows). ``device`` defaults to the input tensor's device (CPU for numpy).
    """
    check_pair(references, estimates)
    refs = as_tensor(references, device)
    ests = as_tensor(estimates, refs.device)
    sources, channels, length = refs.shape
    all_filters, own_filters = distortion_filters(refs, ests, filters_len)

    width = min(window, length)
    n_fft = scipy.fft.next_fast_len(width + filters_len - 1, real=True)
    weights = _parseval_weights(n_fft, refs.device)
    # One filter matrix per frequency: reference channel -> [all-source projection | own-source projection]
    # of every output channel, so each window's projections are a single batched matrix product.
    n = sources * channels
    own = torch.zeros(sources, channels, filters_len, sources, channels, dtype=refs.dtype, device=refs.device)
    own[torch.arange(sources), :, :, torch.arange(sources)] = own_filters
    filters = torch.cat([all_filters.reshape(n, filters_len, n), own.reshape(n, filters_len, n)], dim=-1)
    filters_f = torch.fft.rfft(filters, n=n_fft, dim=1).permute(1, 0, 2).contiguous()  # (F, n, 2n)

    ref_frames = _frames(refs, window, hop)  # (S, C, W, width)
    est_frames = _frames(ests, window, hop)
    windows = ref_frames.shape[2]
    # museval: a window is scored only if no reference and no estimate is silent in it.
    ref_active = (ref_frames.sum(1) != 0).any(-1).all(0)
    est_active = (est_frames.sum(1) != 0).any(-1).all(0)
    valid = ref_active & est_active  # (W,)

    ref_energy = ref_frames.pow(2).sum((1, 3))  # (S, W)
    sdr = _db(ref_energy, (est_frames - ref_frames).pow(2).sum((1, 3)))
    isr = torch.empty_like(sdr)
    sir = torch.empty_like(sdr)
    sar = torch.empty_like(sdr)
    for start in range(0, windows, windows_per_chunk):
        chunk = slice(start, start + windows_per_chunk)

        def spectrum(frames: torch.Tensor) -> torch.Tensor:
            flat = frames[:, :, chunk].permute(2, 0, 1, 3).reshape(-1, n, width)
            return torch.fft.rfft(flat, n=n_fft).permute(2, 0, 1).contiguous()  # (F, w, n)

        ref_f = spectrum(ref_frames)
        est_f = spectrum(est_frames)
        proj = torch.bmm(ref_f, filters_f)  # (F, w, 2n)
        proj_all, proj_own = proj[..., :n], proj[..., n:]
        isr[:, chunk] = _db(ref_energy[:, chunk], _energy(proj_own - ref_f, weights, sources))
        sir[:, chunk] = _db(_energy(proj_own, weights, sources), _energy(proj_all - proj_own, weights, sources))
        sar[:, chunk] = _db(_energy(proj_all, weights, sources), _energy(est_f - proj_all, weights, sources))

    nan = torch.tensor(float("nan"), dtype=sdr.dtype, device=sdr.device)
    scores = [torch.where(valid, m, nan).cpu().numpy() for m in (sdr, isr, sir, sar)]
    return BSSEvalScores(*scores)
