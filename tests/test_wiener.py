"""Multichannel Wiener EM filter: equal to norbert (the reference), sums to the mix, separates by space."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stemforge.dsp.spectral import stft
from stemforge.dsp.wiener import expectation_maximization, softmask, wiener, wiener_refine

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
