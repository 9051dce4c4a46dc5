"""train.grow: a U-Net grown by one level separates exactly as before and trains its new level."""

from __future__ import annotations

import pytest
import torch

from stemforge.errors import ModelError
from stemforge.models import build
from stemforge.models.unet import UNetSeparator, UNetConfig
from stemforge.train.grow import deepen


def _trained_looking(depth: int = 3) -> UNetSeparator:
    """A small U-Net with random weights and random BatchNorm statistics (a fresh one has trivial statistics)."""
    torch.manual_seed(0)
    model = UNetSeparator(UNetConfig(n_fft=256, hop=64, max_bins=64, depth=depth, base_channels=4))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.normal_(1, 0.2)
                module.bias.normal_(0, 0.2)
    return model.eval()


def test_the_grown_model_separates_exactly_as_the_old_one():
    model = _trained_looking()
    grown = deepen(model).eval()
    assert grown.config.depth == model.config.depth + 1
    assert sum(p.numel() for p in grown.parameters()) > 2 * sum(p.numel() for p in model.parameters())
    mix = torch.randn(2, 2, 64 * 63)  # 64 frames of hop 64: a multiple of 2**4, so no extra padding
    (mag,), _ = grown.analyse(mix)
    assert mag.shape[-1] == 64
    with torch.no_grad():
        expected, got = model(mix), grown(mix)
    assert expected.shape == got.shape == (2, 4, 2, mix.shape[-1])
    assert torch.allclose(got, expected, atol=1e-5)
    # The new level computes something; only the zero weights keep it out of the output.
    assert grown.up[1].conv.weight[: grown.up[0].conv.out_channels].abs().max() == 0
    assert grown.down[-1].conv.weight.abs().max() > 0


def test_training_reaches_the_new_level():
    grown = deepen(_trained_looking())
    optimiser = torch.optim.SGD(grown.parameters(), lr=0.1)
    mix = torch.randn(2, 2, 64 * 63)
    for _ in range(2):
        optimiser.zero_grad()
        grown(mix)[:, 0].pow(2).mean().backward()
        optimiser.step()
    new_half = grown.up[0].conv.out_channels
    assert grown.up[1].conv.weight[:new_half].abs().max() > 0  # the bridge opened after the first step
    assert grown.down[-1].conv.weight.grad.abs().max() > 0  # and the new encoder level gets gradients


def test_the_old_model_is_left_unchanged():
    model = _trained_looking()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deepen(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_models_that_cannot_grow_are_refused():
    with pytest.raises(ModelError, match="only the U-Net"):
        deepen(build("classical"))
    with pytest.raises(ModelError, match="cannot add a level"):
        deepen(UNetSeparator(UNetConfig(n_fft=256, hop=64, max_bins=32, depth=5, base_channels=4)))
