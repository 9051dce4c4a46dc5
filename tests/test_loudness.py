"""``stemforge.dsp.loudness``: the streaming BS.1770 meter reads what pyloudnorm reads on the whole array."""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest

from stemforge.dsp.loudness import LoudnessMeter, integrated_loudness


def reference(x: np.ndarray, rate: int) -> float:
    return pyloudnorm.Meter(rate).integrated_loudness(x.T.astype(np.float64))


def signals(rate: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(rate)
    n = int(3.37 * rate)  # not a whole number of gating hops: the last block runs past the end
    t = np.arange(n) / rate
    return {
        "stereo noise": 0.1 * rng.standard_normal((2, n)),
        "mono decaying tone, then silence": (np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t) * (t < 2))[None],
        "quiet then loud (relative gate)": np.concatenate([1e-3 * rng.standard_normal((2, n // 2)),
                                                           0.3 * rng.standard_normal((2, n - n // 2))], axis=1),
        "5.0 surround": 0.05 * rng.standard_normal((5, n)) * np.array([[1], [1], [0.5], [2], [2]]),
        "one gating block": 0.1 * rng.standard_normal((2, int(0.4 * rate))),
        "low bass": 0.5 * np.sin(2 * np.pi * 30 * t)[None].repeat(2, axis=0),  # the 38 Hz high pass at work
    }


@pytest.mark.parametrize("rate", [44100, 48000, 22050])
def test_blockwise_equals_pyloudnorm_on_the_whole_array(rate: int) -> None:
    for name, x in signals(rate).items():
        expected = reference(x, rate)
        for block in (1000, 4410, 65536, x.shape[1]):  # hop-sized, unaligned and whole
            got = integrated_loudness((x[:, i:i + block] for i in range(0, x.shape[1], block)), rate, x.shape[0])
            assert abs(got - expected) < 0.01 and abs(got - expected) < 1e-9, (name, block, got, expected)


def test_silence_short_signals_and_channel_limits() -> None:
    rate = 44100
    assert integrated_loudness([np.zeros((2, rate))], rate, 2) == -math.inf
    assert integrated_loudness([1e-6 * np.ones((1, rate))], rate, 1) == -math.inf  # under the -70 LUFS gate
    short = 0.2 * np.random.default_rng(0).standard_normal((2, 5000))  # under 400 ms: measured padded to 400 ms
    padded = np.pad(short, ((0, 0), (0, int(math.ceil(0.4 * rate)) - 5000)))
    assert integrated_loudness([short[:, :3000], short[:, 3000:]], rate, 2) == pytest.approx(reference(padded, rate),
                                                                                             abs=1e-9)
    with pytest.raises(ValueError, match="1 to 5 channels"):
        LoudnessMeter(rate, 6)
    meter = LoudnessMeter(rate, 2)
    with pytest.raises(ValueError, match=r"expected \(2, n\) audio"):
        meter.add(np.zeros((1, 10)))
    meter.add(short)
    meter.result()
    with pytest.raises(RuntimeError, match="make a new one"):
        meter.add(short)
