"""Validation SDR per stem on held-out tracks, separated with the same engine as ``stemforge separate``.

SDR here is the MDX challenge's whole-signal energy ratio, ``stemforge.metrics.simple.mdx_sdr``
(10 log10((|s|^2 + delta) / (|s - s_hat|^2 + delta)), delta = 1e-7) per track and stem, averaged over the tracks
where the stem plays; a non-finite estimate scores NaN. A silent reference (a drumless song's drums) is not scored:
its SDR only measures the leakage's energy (-30 dB and below), and three such songs among 36 once outweighed every
other difference in a checkpoint's mean. Nor is a reference 40 dB or more below its mixture
(``stemforge.metrics.simple.audible``): two dev excerpts' near-silent vocals moved the dev vocal mean more than a
checkpoint's change did. ``benchmarks/realistic.py`` averages the same way (museval skips only all-zero stems). A model
whose outputs are not named after the stems (MixIT) is scored after assigning each output to the stem it fits best
(``stemforge.train.mixit.best_assignment``).
"""

from __future__ import annotations

import numpy as np
import torch

from stemforge.engine import EngineOptions, separate_tensor
from stemforge.metrics.simple import audible, mdx_sdr
from stemforge.models.base import StemModel
from stemforge.train.mixit import best_assignment, remix


def _score(estimate: np.ndarray, reference: np.ndarray) -> float:
    """MDX SDR in dB of one (channels, time) estimate; NaN (not an error) when the estimate is not finite."""
    if not np.isfinite(estimate).all():
        return float("nan")
    return float(mdx_sdr(reference, estimate))


@torch.no_grad()
def validate(model: StemModel, tracks: list[np.ndarray], stems: list[str], device: str = "cpu",
             segment: float | None = None) -> dict[str, float]:
    """Mean MDX SDR per stem of ``model`` on mixtures made by summing each reference's stems.

    Args:
        model: the separator; its outputs are matched to ``stems`` by name, else by best assignment (MixIT).
        tracks: (stems, channels, time) reference arrays, ``stems`` in the order of ``stems``.
        stems: stem names.
        device: torch device the engine runs on.
        segment: segment length in seconds (None: the model's default).

    Returns:
        stem -> SDR in dB averaged over the tracks where it plays (NaN if any estimate of that stem was not finite,
        or if it plays in no track).
    """
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
            plays = audible(reference)
            for i, stem in enumerate(stems):
                if plays[i]:
                    scores[stem].append(_score(estimate[i], reference[i]))
    finally:
        model.train(was_training)
    return {stem: float(np.mean(values)) if values else float("nan") for stem, values in scores.items()}


def playing(tracks: list[np.ndarray], stems: list[str]) -> list[str]:
    """The stems that play (``metrics.simple.audible``) in at least one of ``tracks``: (stems, channels, time) arrays."""
    plays = [audible(reference) for reference in tracks]
    return [stem for i, stem in enumerate(stems) if any(p[i] for p in plays)]


def overall(scores: dict[str, float], stems: list[str]) -> float:
    """The mean of ``scores`` over ``stems`` (those that play, see :func:`playing`); NaN if any of them is NaN."""
    return float(np.mean([scores[stem] for stem in stems])) if stems else float("nan")
