"""Helpers for parity tests against reference packages (test-only dependencies, never needed at run time)."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
import torch


def stub_torchaudio() -> None:
    """Reference packages import torchaudio at import time but our tests never touch it: stub it if absent."""
    if "torchaudio" not in sys.modules and importlib.util.find_spec("torchaudio") is None:
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")


def require(module: str) -> types.ModuleType:
    stub_torchaudio()
    return pytest.importorskip(module)


def randomize_(module: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> None:
    """Give every parameter and float buffer a random value so no weight hides behind its default."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=gen) * scale
            if "running_var" in name:
                tensor.copy_(1.0 + noise.abs())
            else:
                tensor.add_(noise)


def random_audio(seconds: float, rate: int = 44100, channels: int = 2, seed: int = 0) -> torch.Tensor:
    """(1, channels, time) noise at a music-like level."""
    gen = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(1, channels, int(seconds * rate), generator=gen)


def assert_parity(ours: torch.Tensor, expected: torch.Tensor) -> None:
    """Issue 7's bar (max abs difference < 1e-4), plus a relative bar so small-signal bugs cannot hide under it."""
    assert ours.shape == expected.shape
    diff = (ours - expected).abs().max().item()
    assert diff < 1e-4, diff
    assert diff < 1e-3 * expected.std().item(), (diff, expected.std().item())
