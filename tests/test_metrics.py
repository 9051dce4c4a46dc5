"""BSS Eval v4 against museval itself, simple metrics against hand-computed values, input checks."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest
import torch
from scipy.signal import lfilter

from stemforge.metrics import (MetricsError, bss_eval_v4, check_pair, check_rate, framewise_snr, ideal_binary_mask,
                               ideal_ratio_mask, mdx_sdr, oracle_wiener, si_sdr)
from stemforge.metrics.bss_eval import _lagged_correlations, num_windows
from stemforge.metrics.oracle import oracle_blocks
from stemforge.metrics.simple import audible
from stemforge.metrics.streams import Stems

SR = 44100


def _museval_metrics():
    """museval.metrics without museval/__init__ (which imports musdb/stempeg and needs ffmpeg)."""
    spec = importlib.util.find_spec("museval")
    if spec is None:
        pytest.skip("museval (test dependency) is not installed")
    path = os.path.join(spec.submodule_search_locations[0], "metrics.py")
    module_spec = importlib.util.spec_from_file_location("museval_metrics", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def museval_v4(refs: np.ndarray, ests: np.ndarray) -> np.ndarray:
    """museval.evaluate(..., mode="v4") on (sources, channels, time) -> (4, sources, windows)."""
    m = _museval_metrics()
    out = m.bss_eval(refs.transpose(0, 2, 1), ests.transpose(0, 2, 1), window=SR, hop=SR, compute_permutation=False,
                     framewise_filters=False, bsseval_sources_version=False)
    return np.stack(out[:4])


def coloured(rng: np.random.Generator, shape: tuple[int, ...], pole: float) -> np.ndarray:
    """Noise through a one-pole low-pass: music-like spectral tilt, well-defined Gram systems."""
    return lfilter([1.0], [1.0, -pole], rng.standard_normal(shape), axis=-1)


def case(name: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    if name == "stereo4_silent_sections":  # 3.5 s: partial last window dropped; vocals silent in window 1
        refs = np.stack([coloured(rng, (2, int(3.5 * SR)), p) for p in (0.0, 0.95, 0.6, 0.8)])
        refs[3, :, SR : 2 * SR] = 0
        ests = 0.8 * refs + 0.05 * refs.sum(0) + 0.05 * rng.standard_normal(refs.shape)
    elif name == "mono3_near_perfect":
        refs = np.stack([coloured(rng, (1, int(2.5 * SR)), p) for p in (0.3, 0.9, 0.5)])
        ests = refs + 1e-3 * rng.standard_normal(refs.shape)
    elif name == "stereo2_very_poor":  # estimates swapped and buried in noise
        refs = np.stack([coloured(rng, (2, 2 * SR), p) for p in (0.2, 0.85)])
        ests = refs[::-1] + 3.0 * rng.standard_normal(refs.shape)
    elif name == "stereo2_shorter_than_window":
        refs = np.stack([coloured(rng, (2, int(0.6 * SR)), p) for p in (0.1, 0.7)])
        ests = 0.7 * refs + 0.3 * refs[::-1] + 0.01 * rng.standard_normal(refs.shape)
    elif name == "stereo2_pure_tones":  # singular Gram system: museval falls back to least squares
        t = np.arange(int(2.2 * SR)) / SR
        refs = np.stack([np.stack([np.sin(2 * np.pi * f * t), 0.5 * np.sin(2 * np.pi * f * t + 0.3)]) for f in (110, 440)])
        ests = 0.9 * refs + 0.1 * refs[::-1] + 0.01 * rng.standard_normal(refs.shape)
    elif name == "stereo2_silent_estimate_window":
        refs = np.stack([coloured(rng, (2, 3 * SR), p) for p in (0.5, 0.9)])
        ests = refs + 0.2 * rng.standard_normal(refs.shape)
        ests[1, :, SR : 2 * SR] = 0
    else:
        raise KeyError(name)
    return refs, ests


CASES = ["stereo4_silent_sections", "mono3_near_perfect", "stereo2_very_poor", "stereo2_shorter_than_window",
         "stereo2_pure_tones", "stereo2_silent_estimate_window"]


@pytest.mark.parametrize("name", CASES)
def test_bss_eval_v4_matches_museval(name: str) -> None:
    refs, ests = case(name)
    expected = museval_v4(refs, ests)
    ours = bss_eval_v4(refs, ests)
    got = np.stack([ours.sdr, ours.isr, ours.sir, ours.sar])
    assert got.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))  # same silent windows
    finite = np.isfinite(expected)
    assert np.abs(got[finite] - expected[finite]).max() < 1e-3
    with np.errstate(all="ignore"):
        museval_medians = np.nanmedian(expected, axis=-1)  # museval's track aggregate (np.nanmedian)
    medians = ours.track_medians()
    for i, metric in enumerate(("SDR", "ISR", "SIR", "SAR")):
        np.testing.assert_allclose(medians[metric], museval_medians[i], atol=0.01, equal_nan=True)


def test_float32_input_gives_the_float64_result() -> None:
    refs, ests = case("stereo4_silent_sections")
    refs, ests = refs.astype(np.float32), ests.astype(np.float32)
    single = bss_eval_v4(refs, ests)
    double = bss_eval_v4(refs.astype(np.float64), ests.astype(np.float64))
    for a, b in zip(single.as_dict().values(), double.as_dict().values()):
        np.testing.assert_allclose(a, b, atol=1e-9)


def test_exactly_mono_stem_gives_the_well_posed_projection() -> None:
    """A stem stored with identical channels makes the Gram system singular. museval's LU then returns a
    numerically arbitrary solution (up to ~0.1 dB off on such tracks); we return the least-squares
    projection, i.e. the limit of a well-posed problem where the copy differs by 1e-9 of noise."""
    refs, ests = case("stereo2_very_poor")
    refs[0, 1] = refs[0, 0]
    ests = 0.9 * refs + 0.1 * refs[::-1] + 0.05 * np.random.default_rng(7).standard_normal(refs.shape)
    perturbed = refs.copy()
    perturbed[0, 1] += 1e-9 * np.random.default_rng(8).standard_normal(refs.shape[-1])
    singular, well_posed = bss_eval_v4(refs, ests).track_medians(), bss_eval_v4(perturbed, ests).track_medians()
    for metric in ("SDR", "ISR", "SIR", "SAR"):
        np.testing.assert_allclose(singular[metric], well_posed[metric], atol=1e-3)


def test_near_perfect_and_poor_estimates_score_as_expected() -> None:
    refs, ests = case("mono3_near_perfect")
    assert np.all(bss_eval_v4(refs, ests).track_medians()["SDR"] > 40)
    refs, ests = case("stereo2_very_poor")
    assert np.all(bss_eval_v4(refs, ests).track_medians()["SDR"] < 0)


def test_hand_computed_bss_eval_on_tiny_signals() -> None:
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((1, 1, 3000))
    # est = 2 * ref: a pure gain is spatial (filter) distortion only: SDR = ISR = 10 log10(1 / 1) = 0 dB,
    # no interference (one source), no artefacts.
    scores = bss_eval_v4(ref, 2 * ref, window=1000, hop=1000, filters_len=16)
    np.testing.assert_allclose(scores.sdr, 0.0, atol=1e-9)
    np.testing.assert_allclose(scores.isr, 0.0, atol=1e-6)
    assert np.all(scores.sir == np.inf)
    assert np.all(scores.sar > 100)
    # A 5-sample delay: SDR is |s|^2 / |e - s|^2 per window (about -3 dB for white noise); the delayed copy
    # is inside the 16-tap filter span, so it is explained as spatial distortion: ISR ~ SDR; the only
    # artefact is the 5 samples carried over from the previous window, about 10 log10(1000 / 5) = 23 dB.
    delayed = np.concatenate([np.zeros((1, 1, 5)), ref[..., :-5]], axis=-1)
    scores = bss_eval_v4(ref, delayed, window=1000, hop=1000, filters_len=16)
    s, e = ref[0, 0].reshape(3, 1000), delayed[0, 0].reshape(3, 1000)
    hand = 10 * np.log10((s**2).sum(1) / ((e - s) ** 2).sum(1))
    np.testing.assert_allclose(scores.sdr[0], hand, atol=1e-9)
    np.testing.assert_allclose(scores.sdr, -10 * np.log10(2), atol=0.3)
    np.testing.assert_allclose(scores.isr, scores.sdr, atol=0.05)
    assert np.all((scores.sar > 15) & (scores.sar < 30))


def test_lagged_correlations_match_direct_sums() -> None:
    rng = np.random.default_rng(4)
    x = torch.from_numpy(rng.standard_normal((3, 5000)))
    got = _lagged_correlations([x[:1], x[1:]], 2, 7, block=512)  # several blocks: exercises the wrap-around correction
    for a in range(3):
        for b in range(2):
            for k in range(7):
                expected = float((x[a, k:] * x[b, : 5000 - k]).sum())
                assert abs(float(got[a, b, k]) - expected) < 1e-9


def test_window_count_follows_museval() -> None:
    assert num_windows(3 * SR + 100, SR, SR) == 3  # partial last window dropped
    assert num_windows(SR // 2, SR, SR) == 1  # shorter than a window: one window
    assert num_windows(5 * SR, 2 * SR, SR) == 4


def test_mdx_sdr_hand_computed() -> None:
    ref = np.array([[[1.0, 0.0, 0.0, 0.0]]])
    est = np.array([[[0.5, 0.0, 0.0, 0.0]]])
    expected = 10 * np.log10((1 + 1e-7) / (0.25 + 1e-7))
    assert float(mdx_sdr(ref, est)[0]) == pytest.approx(expected, abs=1e-12)
    silent = np.zeros((1, 1, 4))
    assert float(mdx_sdr(silent, silent)[0]) == pytest.approx(0.0)  # delta keeps silent stems finite


def test_si_sdr_hand_computed_and_scale_invariant() -> None:
    ref = np.array([[1.0, 0.0]])
    est = np.array([[2.0, 1.0]])  # projection 2 * ref, residual (0, 1): 10 log10(4 / 1)
    assert float(si_sdr(ref, est)) == pytest.approx(10 * np.log10(4.0), abs=1e-9)
    rng = np.random.default_rng(5)
    r = rng.standard_normal((2, 1000))
    e = r + 0.1 * rng.standard_normal((2, 1000))
    assert float(si_sdr(r, 3 * e)) == pytest.approx(float(si_sdr(r, e)), abs=1e-9)


def test_framewise_snr_hand_computed_and_equal_to_v4_sdr() -> None:
    ref = np.ones((1, 30))
    est = ref.copy()
    est[0, :10] = 0.0  # window 0: error energy 10 = signal energy -> 0 dB
    est[0, 10:20] = 0.9  # window 1: 10 / (10 * 0.01) -> 20 dB
    snr = framewise_snr(ref, est, window=10, hop=10).numpy()
    np.testing.assert_allclose(snr[:2], [0.0, 20.0], atol=1e-9)
    assert snr[2] == np.inf
    assert np.isnan(framewise_snr(np.zeros((1, 10)), np.ones((1, 10)), 10, 10).numpy()).all()
    refs, ests = case("stereo2_very_poor")
    np.testing.assert_allclose(framewise_snr(refs, ests).numpy(), bss_eval_v4(refs, ests).sdr, atol=1e-9)


def test_oracles_sum_to_mixture_and_rank_above_the_mixture() -> None:
    rng = np.random.default_rng(6)
    t = np.arange(2 * SR) / SR
    stems = np.stack([np.stack([np.sin(2 * np.pi * 220 * t)] * 2), coloured(rng, (2, 2 * SR), 0.0) * 0.1]).astype(np.float32)
    mixture = stems.sum(0)
    for oracle in (ideal_ratio_mask, ideal_binary_mask, oracle_wiener):
        est = oracle(stems)
        assert est.shape == stems.shape
        np.testing.assert_allclose(est.sum(0), mixture, atol=1e-4)
        assert np.all(mdx_sdr(stems, est).numpy() > mdx_sdr(stems, np.stack([mixture] * 2)).numpy() + 10)


def test_mismatches_give_clear_errors() -> None:
    ref = np.zeros((2, 100))
    with pytest.raises(MetricsError, match=r"length mismatch \(track 'song', stem 'vocals'\).*99.*100"):
        check_pair(ref, np.zeros((2, 99)), "song", "vocals", ndim=2)
    with pytest.raises(MetricsError, match=r"shape mismatch \(track 'song', stem 'bass'\)"):
        check_pair(ref, np.zeros((1, 100)), "song", "bass", ndim=2)
    with pytest.raises(MetricsError, match=r"sample rate mismatch \(track 'song', stem 'drums'\).*22050.*44100"):
        check_rate(44100, 22050, "song", "drums")
    bad = np.zeros((2, 100))
    bad[0, 3] = np.nan
    with pytest.raises(MetricsError, match="NaN"):
        check_pair(ref, bad, ndim=2)
    with pytest.raises(MetricsError, match="length mismatch"):
        bss_eval_v4(np.zeros((2, 2, 100)), np.zeros((2, 2, 90)))


class _CountingStems(Stems):
    """An array read through ``Stems`` that records the largest span read (to show reads are bounded)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.largest = array, array.shape, 0

    def read(self, start: int, stop: int) -> np.ndarray:
        self.largest = max(self.largest, stop - start)
        return self.array[..., start:stop]


def test_oracle_blocks_equal_the_whole_track_oracles() -> None:
    rng = np.random.default_rng(8)
    length = 20 * 1024 + 333  # several segments of 4 frames, and a last partial hop
    stems = np.stack([coloured(rng, (2, length), p) for p in (0.0, 0.9, 0.6)]).astype(np.float32)
    stems[1, 1, :] = 0.5 * stems[1, 0]  # a correlated stereo image for the Wiener filter
    for name, whole in (("oracle-irm", ideal_ratio_mask), ("oracle-ibm", ideal_binary_mask), ("oracle-mwf", oracle_wiener)):
        reader = _CountingStems(stems)
        parts = list(oracle_blocks(name, reader, n_fft=2048, hop=512, frames=4))
        assert [start for start, _ in parts] == list(range(0, length, 4 * 512))
        streamed = np.concatenate([block for _, block in parts], axis=-1)
        np.testing.assert_allclose(streamed, whole(stems, n_fft=2048, hop=512), atol=1e-5)
        assert reader.largest <= 4 * 512 + 2 * 2048


def test_bss_eval_reading_blocks_equals_the_in_memory_scores_and_museval() -> None:
    refs, ests = case("stereo4_silent_sections")
    refs, ests = refs.astype(np.float32), ests.astype(np.float32)
    ref_reader, est_reader = _CountingStems(refs), _CountingStems(ests)
    streamed = bss_eval_v4(ref_reader, est_reader, windows_per_chunk=1)
    whole = bss_eval_v4(refs, ests, windows_per_chunk=3)
    expected = museval_v4(refs.astype(np.float64), ests.astype(np.float64))
    for got, same, want in zip(streamed.as_dict().values(), whole.as_dict().values(), expected):
        np.testing.assert_allclose(got, same, atol=1e-9)
        finite = np.isfinite(want)
        assert np.abs(got[finite] - want[finite]).max() < 1e-3
    assert max(ref_reader.largest, est_reader.largest) < refs.shape[-1] // 2  # never read whole


def test_simple_metrics_reading_blocks_equal_the_in_memory_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    import stemforge.metrics.simple as simple

    monkeypatch.setattr(simple, "BLOCK", 10_000)  # many blocks on a short signal
    monkeypatch.setattr(simple, "WINDOWS_PER_CHUNK", 2)
    for name in ("stereo4_silent_sections", "mono3_near_perfect"):
        refs, ests = (x.astype(np.float32) for x in case(name))
        ref_reader, est_reader = _CountingStems(refs), _CountingStems(ests)
        for metric in (mdx_sdr, si_sdr):
            np.testing.assert_allclose(metric(ref_reader, est_reader).numpy(), metric(refs, ests).numpy(), atol=1e-7)
        np.testing.assert_allclose(framewise_snr(ref_reader, est_reader, SR // 2, SR // 3).numpy(),
                                   framewise_snr(refs, ests, SR // 2, SR // 3).numpy(), atol=1e-7)
        assert max(ref_reader.largest, est_reader.largest) <= max(10_000, SR // 3 + SR // 2)


def test_audible_counts_a_stem_40_db_below_the_mix_as_silent():
    rng = np.random.default_rng(3)
    stems = rng.standard_normal((4, 2, 4000))
    mix_energy = np.square(stems[:2].sum(0)).sum()
    stems[2] *= np.sqrt(mix_energy * 10 ** (-4.5) / np.square(stems[2]).sum())  # about -45 dB: leakage only
    stems[3] = 0.0
    assert audible(stems).tolist() == [True, True, False, False]
    stems[2] *= 10 ** (1.5 / 2)  # about -30 dB: quiet, but it plays
    assert audible(stems).tolist() == [True, True, True, False]
