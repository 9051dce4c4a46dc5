"""Mastering that keeps mixture == sum of stems: bus compression, loudness target, limiter, codec round trips."""

from __future__ import annotations

import numpy as np
import pytest

from stemforge.data.synth.master import Master, codec_round_trip, limiter_gain, loudness, master_stems, stereo_width
from stemforge.errors import StemforgeError

SR = 44100


def _stems(seconds: float = 6.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    swell = (0.2 + np.sin(np.pi * t / seconds) ** 2).astype(np.float32)
    return {
        "drums": (rng.standard_normal((2, t.size)) * 0.05 * (np.sin(2 * np.pi * 2 * t) > 0.9)).astype(np.float32),
        "bass": np.stack([0.2 * np.sin(2 * np.pi * 55 * t)] * 2).astype(np.float32) * swell,
        "other": np.stack([0.1 * np.sin(2 * np.pi * 440 * t), 0.1 * np.sin(2 * np.pi * 660 * t)]).astype(np.float32),
        "vocals": np.zeros((2, t.size), np.float32),
    }


@pytest.mark.parametrize("target", [-14.0, -8.0])
def test_master_hits_the_loudness_target_under_the_ceiling_and_keeps_the_sum(target: float) -> None:
    stems = _stems()
    out, report = master_stems(stems, SR, Master(target_lufs=target, ceiling_db=-1.0))
    mixture = sum(out.values())
    assert abs(loudness(mixture, SR) - target) < 0.5
    assert np.max(np.abs(mixture)) <= 10 ** (-1 / 20) + 1e-4
    assert not np.any(out["vocals"])  # a silent stem stays silent
    # One gain curve for all stems: each mastered stem is its input times the same per-sample gain.
    gain = out["bass"][0] / np.where(stems["bass"][0] == 0, 1, stems["bass"][0])
    nonzero = np.abs(stems["other"][0]) > 1e-3
    assert np.allclose(out["other"][0][nonzero], (stems["other"][0] * gain)[nonzero], rtol=1e-3, atol=1e-6)
    assert report["lufs"] == pytest.approx(target, abs=0.5)


def test_limiter_never_lets_a_peak_through() -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((2, SR)) * 0.3).astype(np.float32)
    x[:, 20000] = 3.0
    gain = limiter_gain(x, SR, ceiling_db=-1.0)
    assert np.max(np.abs(x * gain)) <= 10 ** (-1 / 20) + 1e-6
    assert gain.max() <= 1.0 and np.median(gain) > 0.5  # it only acts around the peaks


def test_stereo_width() -> None:
    x = np.random.default_rng(2).standard_normal((2, 1000)).astype(np.float32)
    mono = stereo_width(x, 0.0)
    assert np.allclose(mono[0], mono[1]) and np.allclose(mono.sum(0), x.sum(0), atol=1e-6)
    assert np.allclose(stereo_width(x, 1.0), x, atol=1e-6)


@pytest.mark.parametrize("codec", ["mp3", "aac"])
def test_codec_round_trip_is_aligned_and_lossy(codec: str) -> None:
    t = np.arange(3 * SR) / SR
    x = np.stack([0.3 * np.sin(2 * np.pi * 440 * t) * np.sin(2 * np.pi * 0.7 * t) + 0.05 * np.sin(2 * np.pi * 5000 * t),
                  0.3 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)
    y = codec_round_trip(x, SR, codec, 128000)
    assert y.shape == x.shape and y.dtype == np.float32
    snr = 10 * np.log10(np.sum(x**2) / np.sum((x - y) ** 2))
    assert 15 < snr < 80  # time-aligned (an uncorrected encoder delay gives about 0 dB) and not lossless
    with pytest.raises(StemforgeError, match="codec"):
        codec_round_trip(x, SR, "ogg", 128000)


def test_ceiling_holds_when_the_loudness_target_is_out_of_reach() -> None:
    # Sparse clicks cannot reach -8 LUFS under a -0.3 dB ceiling: the master gives up on loudness, never on the
    # ceiling (it once limited with one makeup gain and then applied another: a 16-bit write failed, clipping).
    rng = np.random.default_rng(4)
    clicks = np.zeros((2, 4 * SR), np.float32)
    for start in rng.integers(0, 4 * SR - 2000, size=12):
        clicks[:, start:start + 2000] += (rng.standard_normal(2000) * np.exp(-np.arange(2000) / 200)).astype(np.float32)
    out, report = master_stems({"drums": clicks, "bass": 0.01 * clicks[::-1]}, SR, Master(target_lufs=-8.0, ceiling_db=-0.3))
    assert np.max(np.abs(out["drums"] + out["bass"])) <= 10 ** (-0.3 / 20) + 1e-5
    assert report["lufs"] < -8.5
