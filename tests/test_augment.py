"""Augmentation: shapes, no NaN/inf (silent stems included), pitch and tempo do what they say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stemforge.data.augment import Augment, AugmentConfig, pitch_shift, time_stretch, widen

RATE = 16000


def _sine(freq: float, seconds: float) -> torch.Tensor:
    t = torch.arange(int(seconds * RATE), dtype=torch.float64) / RATE
    return (0.5 * torch.sin(2 * torch.pi * freq * t)).float()


def _peak_hz(x: torch.Tensor) -> float:
    spectrum = torch.fft.rfft(x * torch.hann_window(x.shape[-1]))
    return float(torch.argmax(spectrum.abs())) * RATE / x.shape[-1]


def test_everything_on_keeps_shapes_and_finite_values_even_for_silence() -> None:
    config = AugmentConfig(sample_rate=RATE, channel_swap_probability=1, polarity_flip_probability=1,
                           pitch_shift_probability=1, tempo_probability=1)
    augment = Augment(config)
    chunk = RATE // 2
    stems = torch.zeros(4, 2, augment.input_length(chunk))
    stems[0] = torch.randn(2, stems.shape[-1]) * 0.3
    stems[1, 0] = _sine(110, stems.shape[-1] / RATE)  # one-sided stem; stems 2 and 3 stay silent
    for seed in range(4):
        out = augment(stems, np.random.default_rng(seed), chunk)
        assert out.shape == (4, 2, chunk) and out.dtype == torch.float32
        assert torch.isfinite(out).all()
        assert torch.count_nonzero(out[2:]) == 0  # silence stays exactly silent
    silent = augment(torch.zeros(4, 2, augment.input_length(chunk)), np.random.default_rng(0), chunk)
    assert torch.isfinite(silent).all() and torch.count_nonzero(silent) == 0


def test_same_generator_state_same_output() -> None:
    augment = Augment(AugmentConfig(sample_rate=RATE, pitch_shift_probability=0.5, tempo_probability=0.5))
    stems = torch.randn(4, 2, augment.input_length(4000))
    first = augment(stems, np.random.default_rng(7), 4000)
    second = augment(stems, np.random.default_rng(7), 4000)
    assert torch.equal(first, second)


def test_gain_polarity_and_swap_are_per_stem_linear() -> None:
    config = AugmentConfig(sample_rate=RATE, gain_db=(-6, -6), channel_swap_probability=1.0,
                           polarity_flip_probability=0.0, max_shift_seconds=0.0, pitch_shift_probability=0.0,
                           tempo_probability=0.0)
    stems = torch.randn(2, 2, 1000)
    out = Augment(config)(stems, np.random.default_rng(0), 1000)
    gain = 10 ** (-6 / 20)
    assert torch.allclose(out, stems.flip(1) * gain, atol=1e-6)


def test_time_stretch_changes_length_not_pitch() -> None:
    x = _sine(440, 1.0)
    slower = time_stretch(x, 0.8)
    assert slower.shape[-1] == round(RATE / 0.8)
    assert abs(_peak_hz(slower[2000:-2000]) - 440) < 3


@pytest.mark.parametrize("semitones", [-2.0, 3.0])
def test_pitch_shift_moves_the_pitch_and_keeps_length(semitones: float) -> None:
    x = _sine(440, 1.0)
    shifted = pitch_shift(x, semitones)
    assert shifted.shape == x.shape
    assert abs(_peak_hz(shifted[2000:-2000]) - 440 * 2 ** (semitones / 12)) < 4


def test_combined_tempo_and_pitch_change() -> None:
    from stemforge.data.augment import change_tempo_and_pitch

    out = change_tempo_and_pitch(_sine(440, 1.0), tempo=1.25, semitones=-3.0)
    assert abs(out.shape[-1] - RATE / 1.25) <= 2
    assert abs(_peak_hz(out[2000:-2000]) - 440 * 2 ** (-3 / 12)) < 4


def test_widen_delays_the_right_channel_only_and_keeps_the_length() -> None:
    stem = torch.randn(2, 1000)
    out = widen(stem, 30)
    assert out.shape == stem.shape
    assert torch.equal(out[0], stem[0])
    assert torch.equal(out[1, 30:], stem[1, :970]) and not out[1, :30].any()
    assert torch.equal(widen(stem, 0), stem)
    assert not widen(stem, 5000)[1].any()


@pytest.mark.parametrize("stem, frames", [(torch.zeros(1, 100), 3), (torch.zeros(2, 2, 100), 3),
                                          (torch.zeros(2, 100), -1)])
def test_widen_refuses_what_it_cannot_delay(stem: torch.Tensor, frames: int) -> None:
    with pytest.raises(ValueError, match="widen needs"):
        widen(stem, frames)
