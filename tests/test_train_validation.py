"""Validation SDR is the MDX SDR of ``stemforge.metrics.simple.mdx_sdr`` (one implementation, one delta)."""

from __future__ import annotations

import numpy as np
import torch

from stemforge.metrics.simple import MDX_DELTA, mdx_sdr
from stemforge.models.base import ModelConfig, StemModel
from stemforge.train.validation import validate


class Split(StemModel):
    """Each stem is a fixed fraction of the mix: an output we know exactly."""

    architecture = "test_validation_split"
    gains = (0.5, 0.3, 0.2)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        return torch.stack([g * mix for g in self.gains], dim=1)


class Nan(Split):
    architecture = "test_validation_nan"

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        out = super().forward(mix)
        out[:, 1] = float("nan")
        return out


def tracks(seed: int = 0, count: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    result = []
    for _ in range(count):
        ref = rng.standard_normal((3, 2, 800)).astype(np.float32)
        ref[2] = 0.0  # a silent stem: the score depends on the delta (MDX: 1e-7)
        result.append(ref)
    return result


def test_mdx_sdr_is_the_energy_ratio_formula_on_random_signals():
    rng = np.random.default_rng(1)
    ref, est = rng.standard_normal((2, 4, 2, 1000))
    by_hand = 10 * np.log10(((ref ** 2).sum((-2, -1)) + MDX_DELTA) / (((ref - est) ** 2).sum((-2, -1)) + MDX_DELTA))
    np.testing.assert_allclose(mdx_sdr(ref, est).numpy(), by_hand, rtol=0, atol=1e-9)


def test_validate_scores_with_mdx_sdr():
    model = Split(ModelConfig(sources=("a", "b", "c"), sample_rate=100))
    refs = tracks()
    scores = validate(model, refs, ["a", "b", "c"], segment=3.0)
    for i, stem in enumerate("abc"):
        expected = np.mean([float(mdx_sdr(r[i], Split.gains[i] * r.sum(0))) for r in refs])
        assert abs(scores[stem] - expected) < 1e-3, (stem, scores[stem], expected)
    assert scores["c"] < -50  # the silent stem, scored against a non-silent estimate with MDX's delta


def test_validate_scores_a_non_finite_estimate_nan_and_the_others_normally():
    model = Nan(ModelConfig(sources=("a", "b", "c"), sample_rate=100))
    scores = validate(model, tracks(), ["a", "b", "c"])
    assert np.isnan(scores["b"]) and np.isfinite(scores["a"]) and np.isfinite(scores["c"])
