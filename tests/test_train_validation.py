"""Validation SDR is the MDX SDR of ``stemforge.metrics.simple.mdx_sdr`` (one implementation, one delta)."""

from __future__ import annotations

import numpy as np
import torch

from stemforge.metrics.simple import MDX_DELTA, mdx_sdr
from stemforge.models.base import ModelConfig, StemModel
from stemforge.train.validation import overall, playing, validate


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
        ref[2] = 0.0  # a silent stem: not scored
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
    for i, stem in enumerate("ab"):
        expected = np.mean([float(mdx_sdr(r[i], Split.gains[i] * r.sum(0))) for r in refs])
        assert abs(scores[stem] - expected) < 1e-3, (stem, scores[stem], expected)
    assert np.isnan(scores["c"])  # silent in every track: nothing to average (MDX's delta would give < -50 dB)
    assert playing(refs, ["a", "b", "c"]) == ["a", "b"]
    assert overall(scores, ["a", "b"]) == np.mean([scores["a"], scores["b"]])


def test_a_stem_silent_in_some_tracks_is_averaged_over_the_others():
    model = Split(ModelConfig(sources=("a", "b", "c"), sample_rate=100))
    refs = tracks(count=3)
    refs[1][2] = np.random.default_rng(5).standard_normal((2, 800))  # "c" plays in the second track only
    refs[2][0] = 0.0  # and "a" is silent in the third
    scores = validate(model, refs, ["a", "b", "c"], segment=3.0)
    assert abs(scores["c"] - float(mdx_sdr(refs[1][2], Split.gains[2] * refs[1].sum(0)))) < 1e-3
    expected_a = np.mean([float(mdx_sdr(r[0], Split.gains[0] * r.sum(0))) for r in refs[:2]])
    assert abs(scores["a"] - expected_a) < 1e-3
    assert playing(refs, ["a", "b", "c"]) == ["a", "b", "c"]


def test_validate_scores_a_non_finite_estimate_nan_and_the_others_normally():
    model = Nan(ModelConfig(sources=("a", "b", "c"), sample_rate=100))
    scores = validate(model, tracks(), ["a", "b", "c"])
    assert np.isnan(scores["b"]) and np.isfinite(scores["a"]) and np.isnan(scores["c"])
    assert np.isnan(overall(scores, ["a", "b"]))  # a diverged stem is never the best checkpoint


def test_a_stem_40_db_below_its_mix_is_not_scored():
    """A near-silent reference's SDR measures the leakage (two dev excerpts scored -26 and -47 dB): not averaged."""
    model = Split(ModelConfig(sources=("a", "b", "c"), sample_rate=100))
    refs = tracks(count=2)
    refs[1][2] = 1e-3 * refs[1][0]  # -60 dB below "a" alone: inaudible in the mix
    scores = validate(model, refs, ["a", "b", "c"], segment=3.0)
    assert np.isnan(scores["c"]) and playing(refs, ["a", "b", "c"]) == ["a", "b"]
    refs[1][2] = 0.1 * refs[1][0]  # -20 dB: it plays, and is scored
    scores = validate(model, refs, ["a", "b", "c"], segment=3.0)
    assert abs(scores["c"] - float(mdx_sdr(refs[1][2], Split.gains[2] * refs[1].sum(0)))) < 1e-3
