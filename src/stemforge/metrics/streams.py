"""Signals read a span at a time: the ``(sources, channels, time)`` inputs of the metrics.

Every metric reads its inputs through ``Stems``: ``shape`` is (sources, channels, length) and
``read(start, stop)`` returns that span (numpy array or torch tensor, float32 or float64). An array in
memory is wrapped by ``ArrayStems``; audio files and computed estimates implement the same two members
(``stemforge.evaluate``), so scoring a track never needs the whole track in memory.
"""

from __future__ import annotations

import numpy as np
import torch

from stemforge.metrics.checks import MetricsError, as_tensor


class Stems:
    """(sources, channels, length) signals read a span at a time; subclasses set ``shape`` and ``read``."""

    shape: tuple[int, int, int]

    def read(self, start: int, stop: int) -> np.ndarray | torch.Tensor:
        """Samples ``[start, stop)`` of every source and channel.

        Args:
            start: first sample.
            stop: one past the last sample (``<= length``).

        Returns:
            Array or tensor of shape (sources, channels, stop - start).
        """
        raise NotImplementedError


class ArrayStems(Stems):
    """An array or tensor already in memory, read by slicing (no copy)."""

    def __init__(self, array: np.ndarray | torch.Tensor) -> None:
        self.array = array
        self.shape = tuple(array.shape)

    def read(self, start: int, stop: int) -> np.ndarray | torch.Tensor:
        return self.array[..., start:stop]


def as_stems(x: Stems | np.ndarray | torch.Tensor) -> Stems:
    """``x`` itself when it is a ``Stems``, else ``x`` wrapped in ``ArrayStems``.

    Args:
        x: signals or an array/tensor of shape (sources, channels, time).

    Returns:
        A ``Stems`` reading ``x``.
    """
    return x if isinstance(x, Stems) else ArrayStems(x)


def default_device(*inputs: object) -> torch.device:
    """The device of the first torch tensor among ``inputs`` (also inside ``ArrayStems``), else CPU.

    Args:
        inputs: arrays, tensors or ``Stems``.

    Returns:
        The device metrics compute on when none is given.
    """
    for x in inputs:
        x = x.array if isinstance(x, ArrayStems) else x
        if isinstance(x, torch.Tensor):
            return x.device
    return torch.device("cpu")


def read_block(stems: Stems, start: int, stop: int, device: torch.device, name: str = "signal",
               keep_float: bool = False) -> torch.Tensor:
    """One span as a tensor on ``device`` (float64 unless ``keep_float``), checked to be finite.

    Args:
        stems: signals to read.
        start: first sample.
        stop: one past the last sample.
        device: where the tensor goes.
        name: what the signals are ("reference", "estimate"), for the error message.
        keep_float: keep float32 input as float32 (float64 otherwise).

    Returns:
        Tensor (sources, channels, stop - start).

    Raises:
        MetricsError: the span holds NaN or infinite samples.
    """
    block = as_tensor(stems.read(start, stop), device, keep_float=keep_float)
    if not bool(torch.isfinite(block.sum(dtype=torch.float64))):
        raise MetricsError(f"{name} contains NaN or infinite samples")
    return block


def blocks(length: int, size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` spans of at most ``size`` samples covering ``[0, length)``.

    Args:
        length: samples in total.
        size: samples per span.

    Returns:
        The spans in order.
    """
    return [(start, min(start + size, length)) for start in range(0, length, size)]
