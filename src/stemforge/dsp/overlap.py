"""Overlap-add of segment outputs, without torch: the part ``engine.OverlapAdd`` and ``lite.OverlapAdd`` share.

Both cut a signal into overlapping segments, run a model on each and cross-fade the outputs with triangular
weights; they differ in how they call the model (torch with shifts and batches; onnxruntime) but not in how the
outputs are summed and handed out. That is here: ``triangle_weights``, ``OverlapSum`` (the weighted sums and the
normalised output blocks) and ``drain`` (feeding blocks to a streaming separator and collecting what it yields).
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np


def triangle_weights(length: int) -> np.ndarray:
    """(length,) positive cross-fade weights peaking mid-segment."""
    ramp = np.arange(1, length + 1, dtype=np.float32)
    return np.minimum(ramp, ramp[::-1]) / max(1.0, math.ceil(length / 2))


class OverlapSum:
    """Weighted sums of overlapping segment outputs for samples [start, ...), handed out normalised.

    Args:
        shape: the leading shape of every output, e.g. (groups, sources, channels); time is the last axis.
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.start = 0
        self.sums = np.zeros((*shape, 0), dtype=np.float32)
        self.weight = np.zeros(0, dtype=np.float32)

    def add(self, at: int, values: np.ndarray, weights: np.ndarray) -> None:
        """Add ``values`` (*shape, n), already weighted, at global sample ``at`` (>= ``start``); ``weights`` (n,)."""
        missing = at + weights.shape[-1] - (self.start + self.sums.shape[-1])
        if missing > 0:
            self.sums = np.concatenate([self.sums, np.zeros((*self.sums.shape[:-1], missing), np.float32)], axis=-1)
            self.weight = np.concatenate([self.weight, np.zeros(missing, np.float32)])
        lo = at - self.start
        self.sums[..., lo:lo + weights.shape[-1]] += values
        self.weight[lo:lo + weights.shape[-1]] += weights

    def emit(self, upto: int) -> np.ndarray:
        """Normalise and hand out samples [start, upto) as (*shape, upto - start); drop them from the sums."""
        n = upto - self.start
        block = self.sums[..., :n] / np.maximum(self.weight[:n], 1e-8)
        self.sums, self.weight, self.start = self.sums[..., n:], self.weight[n:], upto
        return block


class Streaming(Protocol):
    def push(self, block: np.ndarray) -> Iterator[np.ndarray]: ...

    def finish(self) -> Iterator[np.ndarray]: ...


def drain(separator: Streaming, blocks: Iterable[np.ndarray],
          on_output: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
    """Feed ``blocks`` to a streaming separator, then flush it; yield every output block.

    Args:
        separator: has ``push(block)`` and ``finish()``, each yielding output blocks (time last).
        blocks: the input blocks, in order.
        on_output: called with each output block's length.

    Returns:
        An iterator of the output blocks.
    """
    # finish() is a generator too: it runs only once every pushed block's output has been taken.
    for out in itertools.chain(itertools.chain.from_iterable(map(separator.push, blocks)), separator.finish()):
        if on_output:
            on_output(out.shape[-1])
        yield out
