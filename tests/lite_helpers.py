"""Shared helper of the torch-free runtime's tests (``test_lite.py``, ``test_lite_graph.py``): a random U-Net."""

from __future__ import annotations

from pathlib import Path

import torch

from stemforge.checkpoint import save_checkpoint
from stemforge.models import build
from stemforge.models.unet import UNetSeparator


def randomized_unet(tmp_path: Path, channels: int = 2, name: str = "unet.safetensors", **config: object) -> tuple[UNetSeparator, Path]:
    """A small U-Net with random weights and BatchNorm statistics (far from the identity), saved as a checkpoint."""
    settings = dict(n_fft=512, hop=128, max_bins=64, depth=3, base_channels=4, channels=channels)
    model = build("unet", preset="tiny", **{**settings, **config}).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name_, tensor in model.state_dict().items():
            if tensor.dtype != torch.float32:
                tensor.fill_(7)  # num_batches_tracked: hashed, never used
            elif name_.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (0.3 if "conv" in name_ or "head" in name_ else 1.0))
    path = tmp_path / name
    save_checkpoint(model, path)
    return model, path
