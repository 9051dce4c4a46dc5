"""Growing a trained U-Net by one level without changing what it computes (a warm start for a larger model).

A U-Net's levels cost about the same arithmetic each (channels double as the spectrogram halves in both axes), but
the deepest holds most of the parameters: one more level of the default (depth 5 -> 6, 8 base channels) takes it
from 0.62 M to 2.46 M parameters at about the same separation time. Training that larger model from scratch throws
away what the shipped one learnt, so :func:`deepen` builds it *around* the trained weights (in the spirit of
Net2Net, Chen et al. 2016):

    old:  ... down[d-1] ------------------------------------------> up'[0] (cin = w[d])          -> ...
    new:  ... down[d-1] -> down[d] (new) -> up[0] (new) -> cat(up[0], skip = down[d-1]) -> up[1] -> ...

``up[1]`` is the old deepest decoder layer reading the skip half of its input with the old weights, and the new
layer's half with zeros, so the grown model computes exactly what the old one did (on inputs whose frame count
needs no extra padding; the new depth pads to a multiple of 2**(depth + 1) frames). The zeros get gradients from
the first step (the new layer's activations are not zero), so training opens the new level gradually. Nothing here
is in a library: growth is specific to this U-Net's layout.
"""

from __future__ import annotations

import dataclasses

import torch

from stemforge.errors import ModelError
from stemforge.models.base import StemModel
from stemforge.models.unet import UNetSeparator


def deepen(model: StemModel) -> UNetSeparator:
    """A U-Net one level deeper than ``model`` that separates as ``model`` does, keeping all its weights.

    Args:
        model: a trained :class:`UNetSeparator`; left unchanged.

    Returns:
        A new U-Net (train mode) with ``depth + 1`` levels: the old levels' weights copied, the new innermost
        encoder and decoder layers freshly initialised, and the old deepest decoder layer reading the new one
        through zero weights. For ``mix: (batch, channels, time)`` whose frame count is a multiple of
        ``2 ** (depth + 1)`` both give the same ``(batch, sources, channels, time)`` in eval mode.

    Raises:
        ModelError: ``model`` is not a U-Net, or one more level does not divide its ``max_bins``.
    """
    if not isinstance(model, UNetSeparator):
        raise ModelError(f"only the U-Net can be deepened, not {model.architecture!r}")
    old_config = model.config
    try:
        config = dataclasses.replace(old_config, depth=old_config.depth + 1)
    except ValueError as err:
        raise ModelError(f"cannot add a level to this U-Net: {err}") from None
    grown = UNetSeparator(config)
    old, new = model.state_dict(), grown.state_dict()  # the new one's tensors share the grown model's storage
    renamed = {}
    for name in old:
        if name.startswith("up."):
            _, index, rest = name.split(".", 2)
            renamed[name] = f"up.{int(index) + 1}.{rest}"
        else:
            renamed[name] = name
    with torch.no_grad():
        for name, value in old.items():
            target = new[renamed[name]]
            if renamed[name] == "up.1.conv.weight":
                # ConvTranspose2d weight: (in, out, kH, kW); its input is cat([new level's output, skip]).
                target.zero_()
                target[-value.shape[0]:].copy_(value)
            else:
                if target.shape != value.shape:
                    raise ModelError(f"cannot deepen: {name} has shape {tuple(value.shape)}, the grown model's "
                                     f"{renamed[name]} {tuple(target.shape)}")
                target.copy_(value)
    return grown.train()
