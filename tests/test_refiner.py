"""``models.refiner``: an untrained refiner is the plain re-mask; a trained one changes only its band."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from stemforge.dsp.spectral import stft
from stemforge.dsp.wiener import remask
from stemforge.models.refiner import LowBandRefiner, feature_planes, features
from stemforge.models.unet import UNetConfig, UNetSeparator


def song(seed: int = 0, channels: int = 2, length: int = 20000) -> torch.Tensor:
    return torch.randn(1, 4, channels, length, generator=torch.Generator().manual_seed(seed)) * 0.2


def test_untrained_refiner_is_the_plain_remask() -> None:
    stems = song()
    refiner = LowBandRefiner(4, width=8, layers=3)
    with torch.no_grad():
        plain = remask(stems, None, 2048, 512)
        got = remask(stems, None, 2048, 512, refiner, 100)
    torch.testing.assert_close(got, plain, atol=1e-6, rtol=0)


def test_a_trained_refiner_changes_only_its_band() -> None:
    stems = song(1)
    refiner = LowBandRefiner(4, width=8, layers=3)
    with torch.no_grad():
        refiner.head.weight.normal_(0, 0.5)
        plain = remask(stems, None, 2048, 512)
        got = remask(stems, None, 2048, 512, refiner, 100)
    torch.testing.assert_close(got.sum(1), stems.sum(1), atol=1e-5, rtol=0)  # still a split of the mix
    diff = stft(got - plain, 2048, 512).abs()  # (B, S, C, F, N)
    assert diff[..., :90, :].amax() > 0.05  # its band changed ...
    # ... and nothing far above it (the first and last frames aside, where the centred STFT pads)
    assert diff[..., 110:, 2:-2].amax() < 2e-3 * diff.amax()


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_features_are_finite_on_silence_and_any_channels(channels: int) -> None:
    mag = torch.full((2, 4, 7, 30), 1e-10)  # floored silence
    x = torch.zeros(2, channels, 7, 30, dtype=torch.complex64)
    planes = features(mag, x)
    assert planes.shape == (2, feature_planes(4), 7, 30)
    assert torch.isfinite(planes).all()
    masks = LowBandRefiner(4, 8, 2).masks(mag, x)
    torch.testing.assert_close(masks, torch.full_like(masks, 0.25))  # silence is split equally


def test_the_unet_applies_its_refiner_in_eval_mode_only() -> None:
    settings = dict(n_fft=512, hop=128, max_bins=64, depth=3, base_channels=4)
    model = UNetSeparator(UNetConfig(**settings, remask_fft=2048, remask_hop=512, refine_bins=80, refine_width=4,
                                     refine_layers=2))
    with torch.no_grad():
        model.refiner.head.weight.normal_(0, 1.0)
    plain = UNetSeparator(dataclasses.replace(model.config, refine_bins=0))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("refiner.")})
    mix = torch.randn(1, 2, 6000, generator=torch.Generator().manual_seed(2)) * 0.3
    model.eval(), plain.eval()
    with torch.no_grad():
        assert (model(mix) - plain(mix)).abs().max() > 1e-3
    model.train(), plain.train()
    with torch.no_grad():  # training fits the masks themselves: no re-mask, no refiner
        torch.testing.assert_close(model(mix), plain(mix))


@pytest.mark.parametrize("bad", [dict(refine_bins=80),  # no re-mask to refine
                                 dict(remask_fft=2048, remask_hop=512, refine_bins=2000),  # above the STFT's bins
                                 dict(remask_fft=2048, remask_hop=512, refine_bins=80, refine_layers=9),
                                 dict(remask_fft=2048, remask_hop=512, refine_bins=80, refine_width=0),
                                 dict(remask_fft=2048, remask_hop=512, refine_bins=80.0)])
def test_bad_refiner_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError, match="refine_bins"):
        UNetConfig(n_fft=512, hop=128, max_bins=64, depth=3, base_channels=4, **bad)


def test_silent_frames_leave_the_features_of_the_sounding_ones_alone() -> None:
    """The engine zero-pads a song's last segment: its sounding frames must look as they would unpadded."""
    gen = torch.Generator().manual_seed(3)
    mag = torch.rand(1, 4, 20, 30, generator=gen) + 0.01
    x = torch.complex(torch.randn(1, 2, 20, 30, generator=gen), torch.randn(1, 2, 20, 30, generator=gen))
    padded_mag = torch.cat([mag, torch.full((1, 4, 20, 30), 1e-10)], 2)
    padded_x = torch.cat([x, torch.zeros(1, 2, 20, 30, dtype=x.dtype)], 2)
    torch.testing.assert_close(features(padded_mag, padded_x)[:, :, :20], features(mag, x))
