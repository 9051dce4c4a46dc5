"""Multichannel Wiener EM filter: equal to norbert (the reference), sums to the mix, separates by space."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stemforge.dsp.spectral import istft, stft
from stemforge.dsp.wiener import expectation_maximization, remask, softmask, wiener, wiener_refine

norbert = pytest.importorskip("norbert")


def _to_norbert(t: torch.Tensor) -> np.ndarray:
    """(1, [S,] C, F, N) torch -> norbert layout (N, F, C[, S])."""
    t = t[0]
    return t.permute(*reversed(range(t.dim()))).numpy().copy()


@pytest.mark.parametrize("channels", [1, 2, 3])
@pytest.mark.parametrize("iterations", [0, 1, 3])
@pytest.mark.parametrize("use_softmask", [True, False])
def test_equals_norbert(channels: int, iterations: int, use_softmask: bool) -> None:
    gen = torch.Generator().manual_seed(channels * 10 + iterations)
    x = torch.randn(1, channels, 17, 23, dtype=torch.complex128, generator=gen)
    v = torch.rand(1, 3, channels, 17, 23, dtype=torch.float64, generator=gen)
    ours = wiener(v, x, iterations, use_softmask)
    ref = norbert.wiener(_to_norbert(v), _to_norbert(x), iterations, use_softmask)
    ref_t = torch.from_numpy(ref).permute(3, 2, 1, 0)[None]
    if channels == 3:  # norbert uses a pseudo-inverse beyond stereo, we use the exact inverse
        assert torch.allclose(ours, ref_t, atol=1e-6)
    else:
        assert torch.allclose(ours, ref_t, atol=1e-10)


def test_softmask_sums_to_mix() -> None:
    x = torch.randn(2, 2, 9, 11, dtype=torch.complex64)
    v = torch.rand(2, 4, 1, 9, 11)
    assert torch.allclose(softmask(v, x).sum(1), x, atol=1e-5)


def test_em_separates_sources_by_their_spatial_image() -> None:
    """Two sources hard-panned left and right, same spectrum: masks on magnitudes cannot tell them apart,
    the spatial covariances learned by EM can."""
    gen = torch.Generator().manual_seed(0)
    left = torch.randn(1, 1, 64, 40, dtype=torch.complex128, generator=gen)
    right = torch.randn(1, 1, 64, 40, dtype=torch.complex128, generator=gen)
    zeros = torch.zeros_like(left)
    stems = torch.stack([torch.cat([left, zeros], 1), torch.cat([zeros, right], 1)], dim=1)  # (1, 2, 2, F, N)
    x = stems.sum(1)
    first = 0.5 * x.unsqueeze(1).expand_as(stems).clone()  # "half of everything": no information yet
    first[:, 0, 0] *= 1.2  # a hint which side is which
    first[:, 1, 1] *= 1.2
    first[:, 0, 1] *= 0.8
    first[:, 1, 0] *= 0.8
    refined = expectation_maximization(first, x, iterations=3, eps=1e-20)
    error_before = (first - stems).abs().pow(2).sum() / stems.abs().pow(2).sum()
    error_after = (refined - stems).abs().pow(2).sum() / stems.abs().pow(2).sum()
    assert error_before > 0.15
    assert error_after < 0.25 * error_before


def test_refine_waveforms_keeps_the_sum() -> None:
    gen = torch.Generator().manual_seed(1)
    stems = torch.randn(1, 3, 2, 6000, generator=gen) * torch.tensor([1.0, 0.1, 0.01])[None, :, None, None]
    mix = stems.sum(1)
    guess = stems + 0.05 * torch.randn(stems.shape, generator=gen)
    refined = wiener_refine(guess, mix, iterations=2, n_fft=512, hop=128)
    assert refined.shape == stems.shape and refined.dtype == torch.float32
    assert torch.allclose(refined.sum(1), mix, atol=1e-5)
    assert stft(refined, 512, 128).shape[-2] == 257


@pytest.mark.parametrize("iterations", [0, 1, 2])
def test_residual_source_equals_norbert_em_on_the_augmented_first_estimate(iterations: int) -> None:
    """``residual=True`` (Open-Unmix's option): one more source, the mix minus the others' first estimates,
    then norbert's EM on all of them (scaled as ``wiener`` scales)."""
    gen = torch.Generator().manual_seed(7 + iterations)
    x = torch.randn(1, 2, 17, 23, dtype=torch.complex128, generator=gen) * 30
    v = torch.rand(1, 3, 2, 17, 23, dtype=torch.float64, generator=gen)
    ours = wiener(v, x, iterations, use_softmask=False, eps=1e-10, residual=True)
    first = v * torch.exp(1j * torch.angle(x)).unsqueeze(1)
    first = torch.cat([first, (x - first.sum(1)).unsqueeze(1)], dim=1)
    assert ours.shape == (1, 4, 2, 17, 23)
    if iterations == 0:
        assert torch.allclose(ours, first, atol=1e-12)
        return
    scale = max(1.0, float(x.abs().max()) / 10.0)
    ref, _, _ = norbert.expectation_maximization(_to_norbert(first / scale), _to_norbert(x / scale), iterations, eps=1e-10)
    ref_t = torch.from_numpy(ref).permute(3, 2, 1, 0)[None] * scale
    assert torch.allclose(ours, ref_t, atol=1e-9)


def test_one_wiener_filter() -> None:
    """Open-Unmix filters with ``stemforge.dsp.wiener.wiener``; there is no second implementation."""
    import importlib.util

    from stemforge.models.compat import openunmix

    assert openunmix.wiener is wiener
    assert importlib.util.find_spec("stemforge.models.compat.wiener") is None


def test_remask_is_the_softmask_of_channel_summed_magnitudes() -> None:
    """``remask`` equals ``wiener(iterations=0)`` (norbert's softmask, checked above) given the stems' magnitudes
    summed over the channels, in the STFT of the re-mask's size, and back through the iSTFT."""
    gen = torch.Generator().manual_seed(5)
    stems = torch.randn(2, 3, 2, 5000, generator=gen)
    mix = stems.sum(1) + 0.1 * torch.randn(2, 2, 5000, generator=gen)  # not the stems' sum: X is the mix's own
    got = remask(stems, mix, 1024, 256)
    v = stft(stems, 1024, 256).abs().sum(2, keepdim=True)  # (B, S, 1, F, N)
    spectra = wiener(v, stft(mix, 1024, 256), iterations=0, use_softmask=True, eps=0.0)
    expected = istft(spectra, 5000, 1024, 256)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.sum(1), mix, atol=1e-5, rtol=0)
    # Without a mix, the stems' sum is the mixture, its spectrum their spectra summed.
    without = remask(stems, None, 1024, 256)
    torch.testing.assert_close(without, remask(stems, stems.sum(1), 1024, 256), atol=1e-5, rtol=0)
    one = remask(stems[:, :1], mix, 1024, 256)  # one stem takes all of the mix
    torch.testing.assert_close(one, mix[:, None], atol=0, rtol=0)


def test_remask_resolves_what_a_coarse_split_smeared() -> None:
    """Held harmonic tones and noise bursts, first split by their true magnitude ratios in a 512-point STFT (what
    a coarse mask does at best): re-masked in a 16384-point STFT, both stems come out closer to the truth (the
    error energy falls by a third or more); a stem alone keeps the whole mix."""
    t = torch.arange(44100 * 3) / 44100
    tones = sum(torch.sin(2 * torch.pi * f * t) / k for k, f in enumerate([110, 220, 330, 440, 550], 1))
    bursts = torch.randn(len(t), generator=torch.Generator().manual_seed(0)) * ((t * 4) % 1 < 0.08).float() * 0.7
    truth = torch.stack([tones, bursts])[None, :, None]  # (1, 2, 1, T)
    mix = truth.sum(1)
    magnitudes = stft(truth, 512, 128).abs()
    coarse = istft(magnitudes / magnitudes.sum(1, keepdim=True).clamp_min(1e-12) * stft(mix, 512, 128)[:, None],
                   len(t), 512, 128)
    got = remask(coarse, mix, 16384, 4096)

    def error(est: torch.Tensor) -> torch.Tensor:  # per stem, relative to its energy
        return (est - truth).pow(2).sum(-1).squeeze() / truth.pow(2).sum(-1).squeeze()

    assert bool((error(got) < 0.7 * error(coarse)).all()), (error(got), error(coarse))
    alone = remask(torch.stack([mix[:, 0], torch.zeros_like(mix[:, 0])], 1)[:, :, None], mix, 2048, 512)
    torch.testing.assert_close(alone[:, 0], mix, atol=1e-5, rtol=0)
    assert alone[:, 1].abs().max() < 1e-6


def test_remask_of_silence_is_silence_and_has_gradients() -> None:
    """Every bin silent (0 / 0 ratios) gives zeros, not NaN; training through the re-mask gives finite gradients."""
    silent = remask(torch.zeros(1, 4, 2, 3000), torch.zeros(1, 2, 3000), 2048, 512)
    assert torch.equal(silent, torch.zeros_like(silent))
    # Digital silence in a training chunk: a stem that never plays, and the first half silent in all of them.
    values = torch.randn(1, 4, 2, 6000) * torch.tensor([1.0, 1.0, 0.0, 1.0])[:, None, None]
    values[..., :3000] = 0
    stems = values.requires_grad_()
    with_grad = remask(stems, None, 2048, 512)
    with_grad.pow(2).sum().backward()
    assert stems.grad is not None and bool(stems.grad.isfinite().all()) and stems.grad.abs().max() > 0
    with torch.no_grad():  # inference takes a cheaper magnitude: the same stems to float32 rounding
        torch.testing.assert_close(remask(values.detach(), None, 2048, 512), with_grad.detach(), atol=1e-6, rtol=0)
