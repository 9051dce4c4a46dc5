"""Classical mask estimators that need no training: HPSS, REPET-SIM and a low-pass bass split.

All functions take a magnitude spectrogram ``mag: (freq, frames)`` (float, non-negative) and return
soft masks of the same shape with values in [0, 1].
"""

from __future__ import annotations

import numpy as np

EPS = 1e-10


def hpss_masks(mag: np.ndarray, kernel_time: int = 17, kernel_freq: int = 17, power: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Median-filter harmonic/percussive separation (Fitzgerald 2010). Returns (harmonic, percussive), summing to 1."""
    # scipy.ndimage costs ~0.75 s to import; only HPSS needs it, so `stemforge models` and --help skip it.
    from scipy.ndimage import median_filter

    harmonic = median_filter(mag, size=(1, kernel_time), mode="reflect")
    percussive = median_filter(mag, size=(kernel_freq, 1), mode="reflect")
    h = harmonic**power
    p = percussive**power
    total = h + p + EPS
    # Where both are zero (silence) split evenly so the masks still sum to one.
    mask_h = np.where(total > EPS, h / total, 0.5)
    return mask_h, 1.0 - mask_h


def repet_sim_mask(mag: np.ndarray, neighbours: int = 10, min_distance: int = 5, power: float = 2.0) -> np.ndarray:
    """REPET-SIM (Rafii & Pardo 2012): mask of the repeating background, from the median of similar frames.

    Each frame is modelled as the median of its ``neighbours`` most similar frames (cosine similarity),
    at least ``min_distance`` frames away; the repeating part cannot exceed the observed magnitude.
    """
    frames = mag.shape[1]
    if frames < 3:
        return np.ones_like(mag)
    norm = np.linalg.norm(mag, axis=0) + EPS
    unit = mag / norm
    similarity = unit.T @ unit
    idx = np.arange(frames)
    similarity[np.abs(idx[:, None] - idx[None, :]) < min_distance] = -np.inf
    k = min(neighbours, max(1, frames - 2 * min_distance + 1))
    k = max(1, min(k, frames - 1))
    nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]  # (frames, k)
    repeating = np.median(mag[:, nearest], axis=2)  # (freq, frames)
    repeating = np.minimum(repeating, mag)
    r = repeating**power
    total = mag**power + EPS
    return np.clip(np.where(mag > EPS, r / total, 1.0), 0.0, 1.0)


def lowpass_mask(freqs: np.ndarray, cutoff: float = 160.0, rolloff: float = 320.0) -> np.ndarray:
    """(freq,) mask: 1 below ``cutoff`` Hz, raised-cosine down to 0 at ``rolloff`` Hz."""
    t = np.clip((freqs - cutoff) / max(rolloff - cutoff, EPS), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))
