"""dsp.spectral: the STFT pair inverts exactly, and the fast inverse equals torch.istft without calling it."""

from __future__ import annotations

import pytest
import torch

from stemforge.dsp import spectral
from stemforge.dsp.spectral import inverse_stft, istft, stft


def _spectra(batch: int, n_fft: int, frames: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, n_fft // 2 + 1, frames)
    return torch.complex(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen))


@pytest.mark.parametrize("n_fft,hop,normalized", [(2048, 512, False), (4096, 1024, True), (256, 128, False)])
@pytest.mark.parametrize("length_offset", [-700, 0, 300])
@pytest.mark.filterwarnings("ignore:The length of signal is shorter")
def test_inverse_stft_equals_torch_istft(n_fft, hop, normalized, length_offset) -> None:
    """Masked (non-consistent) spectra, lengths inside and past the last frame: torch.istft's output to rounding."""
    frames = 40
    spec = _spectra(3, n_fft, frames)
    window = torch.hann_window(n_fft)
    length = (frames - 1) * hop + length_offset
    ours = inverse_stft(spec, n_fft, hop, window, length, normalized=normalized)
    ref = torch.istft(spec, n_fft, hop, window=window, center=True, normalized=normalized, length=length)
    assert ours.shape == ref.shape == (3, length)
    assert (ours - ref).abs().max().item() < 1e-5 * ref.abs().max().item()


def test_fast_path_does_not_call_torch_istft(monkeypatch) -> None:
    """The models' hop divides the FFT size: the overlap-add path runs, not torch.istft (the slow term)."""
    x = torch.randn(2, 2, 30_000)
    spec = stft(x, 2048, 512)

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.istft called")

    monkeypatch.setattr(spectral.torch, "istft", forbidden)
    y = istft(spec, x.shape[-1], 2048, 512)
    assert y.shape == x.shape
    assert (y - x).abs().max().item() < 1e-5  # and it still inverts stft exactly


def test_other_hops_and_gradients_match_torch_istft() -> None:
    """A hop that does not divide the FFT falls back to torch.istft; gradients flow like torch.istft's."""
    spec = _spectra(1, 400, 30)
    window = torch.hann_window(400)
    odd = inverse_stft(spec, 400, 150, window, 4000)
    assert torch.equal(odd, torch.istft(spec, 400, 150, window=window, center=True, length=4000))
    a = spec.clone().requires_grad_(True)
    b = spec.clone().requires_grad_(True)
    inverse_stft(a, 400, 100, window, 3000).square().sum().backward()
    torch.istft(b, 400, 100, window=window, center=True, length=3000).square().sum().backward()
    assert (a.grad - b.grad).abs().max().item() < 1e-4 * b.grad.abs().max().item()


def test_not_invertible_raises_like_torch_istft() -> None:
    """A window whose overlap-add has a zero still raises torch.istft's error, not a division by zero."""
    window = torch.zeros(256)
    window[:64] = 1.0
    with pytest.raises(RuntimeError):
        inverse_stft(_spectra(1, 256, 10), 256, 128, window, 1000)


@pytest.mark.parametrize("before,after,bins", [(2, 2, 1024), (0, 3, 1025), (1, 0, 1000)])
def test_zero_frames_and_missing_bins_equal_the_padded_spectrogram(monkeypatch, before, after, bins) -> None:
    """HTDemucs' inverse pads two zero frames each side and a zero Nyquist bin: ``zero_frames`` and a short
    frequency axis give torch.istft's result on that padded copy, without building it (and without torch.istft)."""
    gen = torch.Generator().manual_seed(3)
    spec = torch.randn(3, bins, 40, dtype=torch.complex64, generator=gen)
    window = torch.hann_window(2048)
    padded = torch.nn.functional.pad(spec, (before, after, 0, 1025 - bins))
    length = 512 * (40 + before + after - 1)
    expected = torch.istft(padded, 2048, 512, window=window, center=True, normalized=True, length=length)

    def forbidden(*args, **kwargs):
        raise AssertionError("torch.istft called")

    monkeypatch.setattr(spectral.torch, "istft", forbidden)
    got = inverse_stft(spec, 2048, 512, window, length, normalized=True, zero_frames=(before, after))
    assert (got - expected).abs().max().item() < 1e-5 * expected.abs().max().item()


def test_normalized_inverse_needs_no_scaling_pass() -> None:
    """``normalized=True`` folds sqrt(n_fft) into the synthesis taps: no multiply over all the frames' samples."""
    from torch.profiler import profile

    spec = _spectra(3, 1024, 20, seed=5)
    window = torch.hann_window(1024)
    expected = torch.istft(spec, 1024, 256, window=window, center=True, normalized=True, length=5000)
    with profile(record_shapes=True) as prof:
        got = inverse_stft(spec, 1024, 256, window, 5000, normalized=True)
    assert (got - expected).abs().max().item() < 1e-5 * expected.abs().max().item()
    frames_shape = [3, 20, 1024]
    muls = [e for e in prof.events() if e.name in ("aten::mul", "aten::mul_") and frames_shape in e.input_shapes]
    assert not muls


def test_zero_frames_on_the_torch_istft_path() -> None:
    """A hop that does not divide the FFT size goes to torch.istft: the implicit zeros are padded for it."""
    spec = torch.randn(2, 1000, 30, dtype=torch.complex64, generator=torch.Generator().manual_seed(4))
    window = torch.hann_window(2048)
    length = 441 * 33
    padded = torch.nn.functional.pad(spec, (1, 2, 0, 25))
    expected = torch.istft(padded, 2048, 441, window=window, center=True, length=length)
    got = inverse_stft(spec, 2048, 441, window, length, zero_frames=(1, 2))
    assert torch.equal(got, expected)
    got2d = inverse_stft(spec[0], 2048, 441, window, length, zero_frames=(1, 2))  # unbatched, as torch.istft takes
    assert torch.equal(got2d, expected[0])
