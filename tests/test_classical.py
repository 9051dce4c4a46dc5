import numpy as np
import pytest
import torch

from stemforge.dsp.classical import hpss_masks, lowpass_mask, repet_sim_mask
from stemforge.models import build
from toy_song import toy_stems


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    return float(10 * np.log10((reference**2).sum() / ((reference - estimate) ** 2).sum()))


def test_hpss_masks_sum_to_one_and_split_clicks_from_tones() -> None:
    mag = np.zeros((200, 100))
    mag[50, :] = 1.0  # a sustained tone: one bin, every frame
    mag[:, 40] = 1.0  # a click: every bin, one frame
    harmonic, percussive = hpss_masks(mag)
    np.testing.assert_allclose(harmonic + percussive, 1.0)
    assert harmonic[50, 10] > 0.9 and percussive[120, 40] > 0.9


def test_hpss_masks_on_silence_are_finite() -> None:
    harmonic, percussive = hpss_masks(np.zeros((10, 10)))
    assert np.all(np.isfinite(harmonic)) and np.allclose(harmonic + percussive, 1.0)


def test_repet_finds_the_repeating_background() -> None:
    rng = np.random.default_rng(0)
    pattern = rng.random((64, 8))
    background = np.tile(pattern, (1, 12))  # repeats every 8 frames
    lead = np.zeros_like(background)
    lead[30, 44:46] = 5.0  # a short note played once
    mask = repet_sim_mask(background + lead, min_distance=2)
    assert mask[30, 44] < 0.2  # the one-off note is not repeating
    assert np.median(mask[:, :30]) > 0.9  # the loop is


def test_lowpass_mask_shape() -> None:
    freqs = np.array([0.0, 100.0, 240.0, 320.0, 1000.0])
    mask = lowpass_mask(freqs, 160.0, 320.0)
    np.testing.assert_allclose(mask[[0, 1, 3, 4]], [1, 1, 0, 0])
    assert 0 < mask[2] < 1


@pytest.mark.parametrize("name,count", [("classical", 4), ("hpss", 2), ("repet", 2)])
def test_stems_sum_to_mixture(name: str, count: int) -> None:
    model = build(name)
    assert model.mask_based and not model.trainable
    mix = torch.randn(2, 2, 30000) * 0.1
    stems = model(mix)
    assert stems.shape == (2, count, 2, 30000)
    assert (stems.sum(dim=1) - mix).abs().max() < 1e-5


@pytest.mark.parametrize("length", [1, 10, 2047, 4097])
def test_short_inputs(length: int) -> None:
    out = build("classical")(torch.randn(1, 2, length))
    assert out.shape == (1, 4, 2, length) and torch.isfinite(out).all()


def test_classical_separates_a_toy_song() -> None:
    stems = toy_stems(6.0)
    mix = sum(stems.values())
    model = build("classical")
    with torch.no_grad():
        est = model(torch.from_numpy(mix)[None])[0].numpy()
    est = dict(zip(model.sources, est))
    for name in ("drums", "bass", "other"):
        assert sdr(stems[name], est[name]) > sdr(stems[name], mix) + 1.5, name
    accompaniment = mix - stems["vocals"]
    v = est["vocals"].ravel()
    assert np.dot(v, stems["vocals"].ravel()) > 3 * abs(np.dot(v, accompaniment.ravel()))
