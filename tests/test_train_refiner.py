"""``train.refiner``: the band's SDR is the waveform's, and the refiner learns a song the plain re-mask splits badly."""

from __future__ import annotations

import math

import pytest
import torch

from stemforge.dsp.wiener import remask
from stemforge.metrics.simple import mdx_sdr
from stemforge.models.refiner import LowBandRefiner
from stemforge.train.refiner import BandSet, band_example, band_sdr, mean_sdr, train_refiner

N_FFT, HOP, BINS = 2048, 512, 60


def tone_song(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four stems of low tones and noise, and first estimates that leak a third of each into its neighbour."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(22050) / 44100
    truth = torch.stack([torch.sin(2 * math.pi * (60 + 40 * j + float(torch.rand(1, generator=gen)) * 20) * t)
                         + 0.05 * torch.randn(22050, generator=gen) for j in range(4)])
    truth = torch.stack([truth, 0.8 * truth], 1)  # (S, C, T)
    estimate = 0.67 * truth + 0.33 * truth.roll(1, 0)
    return truth, estimate


def example(seed: int) -> BandSet:
    truth, estimate = tone_song(seed)
    return band_example(estimate, truth.sum(0), truth, N_FFT, HOP, BINS, torch.ones(4, dtype=torch.bool))


def test_band_sdr_of_the_plain_ratios_is_close_to_the_waveforms() -> None:
    """The loss measures what evaluation measures: the re-mask's stems' SDR, less what the iSTFT's projection onto
    consistent spectra takes off the error (a least-squares projection: the band's SDR is a lower bound)."""
    truth, estimate = tone_song(0)
    songs = example(0)
    ratios = songs.mag / songs.mag.sum(1, keepdim=True)
    band = band_sdr(ratios, songs)[0]
    wave = remask(estimate[None], truth.sum(0)[None], N_FFT, HOP)[0]
    reference = torch.stack([mdx_sdr(truth[j], wave[j]) for j in range(4)])
    assert (band.float() <= reference + 1e-3).all() and (reference - band.float()).max() < 1.0
    assert torch.isfinite(band).all()


def test_the_refiner_learns_a_song_and_keeps_the_best_step() -> None:
    songs = BandSet.gather([example(1), example(2)], 2)
    refiner = LowBandRefiner(4, width=8, layers=3)
    before = float(mean_sdr(refiner, songs).mean())
    lines: list[str] = []
    state, step, score = train_refiner(refiner, songs, songs, steps=60, batch=2, lr=3e-3, every=20, log=lines.append)
    assert step > 0 and score > before + 1.0  # the leak is learnable: a dB or more on the songs it saw
    assert lines[0].startswith("step 0 dev") and len(lines) == 4
    refiner.load_state_dict(state)
    assert abs(float(mean_sdr(refiner, songs).mean()) - score) < 1e-4  # the state returned is the step it names


@pytest.mark.parametrize("steps", [1, 2, 20, 21])
def test_any_number_of_steps_runs(steps: int) -> None:
    """The one-cycle schedule's warm-up never has zero length (it divides by it)."""
    lines: list[str] = []
    train_refiner(LowBandRefiner(4, 4, 2), example(3), example(3), steps=steps, batch=1, every=10, log=lines.append)
    assert lines[-1].startswith(f"step {steps} ")
