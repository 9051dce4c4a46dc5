"""Validation SDR per stem on held-out tracks, separated with the same engine as ``stemforge separate``.

SDR here is the whole-signal energy ratio (the MDX challenge's "SDR"): 10 log10(|s|^2 / |s - s_hat|^2) per track
and stem, averaged over tracks. A model whose outputs are not named after the stems (MixIT) is scored after
assigning each output to the stem it fits best (``stemforge.train.mixit.best_assignment``).
"""

from __future__ import annotations

import numpy as np
import torch

from stemforge.engine import EngineOptions, separate_tensor
from stemforge.models.base import StemModel
from stemforge.train.mixit import best_assignment, remix

EPS = 1e-8


def sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Energy-ratio SDR in dB of one (channels, time) estimate."""
    num = float(np.sum(reference.astype(np.float64) ** 2)) + EPS
    den = float(np.sum((reference.astype(np.float64) - estimate) ** 2)) + EPS
    return 10.0 * np.log10(num / den)


@torch.no_grad()
def validate(model: StemModel, tracks: list[np.ndarray], stems: list[str], device: str = "cpu",
             segment: float | None = None) -> dict[str, float]:
    """tracks: list of (stems, channels, time) references -> mean SDR per stem (dB)."""
    was_training = model.training
    model.eval()
    scores: dict[str, list[float]] = {stem: [] for stem in stems}
    options = EngineOptions(segment=segment, device=device)
    try:
        for reference in tracks:
            mix = reference.sum(0)[None]  # (1, C, T)
            estimate = separate_tensor(model, mix, options)[0]  # (S, C, T)
            if all(stem in model.sources for stem in stems):
                estimate = estimate[[model.sources.index(stem) for stem in stems]]
            else:
                est, ref = torch.from_numpy(estimate)[None], torch.from_numpy(reference)[None]
                estimate = remix(est, best_assignment(est, ref))[0].numpy()
            for i, stem in enumerate(stems):
                scores[stem].append(sdr(estimate[i], reference[i]))
    finally:
        model.train(was_training)
    return {stem: float(np.mean(values)) for stem, values in scores.items()}
