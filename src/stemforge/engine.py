"""Streaming overlap-add inference: memory bounded by the segment size, not the track length.

The input arrives as blocks ``(groups, channels, n)`` at the model's rate (``groups`` are independent
signals separated side by side, e.g. channel pairs of a multichannel file). The engine cuts it into
segments of ``segment`` samples every ``stride`` samples, runs the model on batches of them, weights
each output with a triangular window and divides by the summed weights (``dsp.overlap.OverlapSum``, shared with
the torch-free ``lite.OverlapAdd``), and yields output blocks ``(groups, sources, channels, n)`` as soon as no
later segment can touch them.

With ``shifts > 0`` each segment is separated ``shifts`` times, each time from a window that starts up to
``max_shift`` samples earlier (random, seeded), and the results are averaged (test-time augmentation as in
Demucs). An identity model therefore returns its input exactly, for any segment, overlap and shifts.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from stemforge.dsp.overlap import OverlapSum, drain, triangle_weights
from stemforge.errors import StemforgeError
from stemforge.models.base import StemModel


#: ``EngineOptions.precision`` values.
PRECISIONS = ("fp32", "bf16", "int8")


@dataclasses.dataclass
class EngineOptions:
    """How to cut and batch the signal. Lengths are in seconds at the model's rate."""

    segment: float | None = None  # None: the model's default_segment
    overlap: float | None = None  # fraction of a segment shared with the next one, in [0, 1); None: the model's
    shifts: int = 0  # random-shift test-time augmentation passes (0: off)
    max_shift: float = 0.5
    batch_size: int = 1  # segments per model call
    device: str = "cpu"
    precision: str = "fp32"  # "fp32", "bf16" (autocast, CUDA only) or "int8" (CPU fast path, see int8_transformers)
    seed: int = 0  # for the random shifts, so results are reproducible

    def validate(self) -> None:
        if self.segment is not None and not self.segment > 0:
            raise StemforgeError(f"segment must be positive, got {self.segment}")
        if self.overlap is not None and not 0 <= self.overlap < 1:
            raise StemforgeError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.shifts < 0:
            raise StemforgeError(f"shifts must be >= 0, got {self.shifts}")
        if self.batch_size < 1:
            raise StemforgeError(f"batch size must be >= 1, got {self.batch_size}")
        if self.precision not in PRECISIONS:
            raise StemforgeError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.precision == "int8" and torch.device(self.device).type != "cpu":
            raise StemforgeError(f"precision int8 is a CPU fast path; on {self.device} use bf16")

    def overlap_for(self, model: StemModel) -> float:
        """The overlap ``model``'s input is cut with: this one if given, else the model's own."""
        return self.overlap if self.overlap is not None else float(model.default_overlap)


#: glibc's allocator unmaps freed blocks over its (dynamic, at most 32 MB) threshold and trims the heap top,
#: so every segment's ~60 MB spectra and frames are fresh pages, faulted in and zeroed by the kernel again:
#: that was about a third of the default model's CPU time. Keeping blocks this large in the heap avoids it.
MALLOC_KEEP_BYTES = 96 << 20
_allocator_tuned = False


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks up to ``MALLOC_KEEP_BYTES`` for reuse (Linux with glibc; once per process).

    Peak memory is unchanged (the blocks are reused, not added); a finished separation may hold on to that much
    freed memory until the process ends.

    Returns:
        Whether the allocator is tuned (False where there is no glibc ``mallopt``).
    """
    global _allocator_tuned
    if not _allocator_tuned:
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            m_trim_threshold, m_mmap_threshold = -1, -3
            _allocator_tuned = bool(libc.mallopt(m_mmap_threshold, MALLOC_KEEP_BYTES)
                                    and libc.mallopt(m_trim_threshold, MALLOC_KEEP_BYTES))
        except (OSError, AttributeError):
            _allocator_tuned = False
    return _allocator_tuned


def int8_transformers(model: torch.nn.Module) -> int:
    """The opt-in CPU fast path (``precision="int8"``): int8 Linear layers inside the model's Transformer blocks.

    Every ``nn.Linear`` inside a module whose class name contains ``Transformer`` (the attention projections and
    feed-forward layers of RoFormer and HTDemucs) becomes a dynamically quantised int8 layer with one weight scale
    per output channel; activations are quantised per call. Everything else stays float32: the attention kernel
    itself, normalisations, convolutions, the band split and mask estimators (quantising those costs far more
    accuracy than it saves time). ``benchmarks/end_to_end.py`` prints the result's SDR against the exact output
    and its speed-up. The model is changed in place.

    Args:
        model: a float32 model on the CPU.

    Returns:
        How many Linear layers were quantised (0: the model has no Transformer, nothing changed).
    """
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    names = {name for name, module in model.named_modules() if "Transformer" in type(module).__name__}
    chosen = {f"{outer}.{inner}" if outer else inner: per_channel_dynamic_qconfig
              for outer in names for inner, module in model.get_submodule(outer).named_modules()
              if isinstance(module, torch.nn.Linear)}
    if chosen:
        with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao (not a dependency)
            warnings.simplefilter("ignore")
            quantize_dynamic(model, chosen, inplace=True)
    return len(chosen)


class OverlapAdd:
    """Stateful streaming separator for one signal of ``groups`` x ``channels``."""

    def __init__(self, model: StemModel, groups: int, options: EngineOptions) -> None:
        options.validate()
        keep_freed_memory()
        self.model = model
        self.options = options
        rate = model.sample_rate
        seconds = options.segment if options.segment is not None else model.default_segment
        self.segment = max(1, int(round(seconds * rate)))
        self.stride = max(1, int(round(self.segment * (1 - options.overlap_for(model)))))
        self.max_shift = int(round(options.max_shift * rate)) if options.shifts > 0 else 0
        self.window = self.segment + self.max_shift
        self.weights = triangle_weights(self.segment)
        self.groups = groups
        self.channels = model.channels
        self.sources = len(model.sources)
        self.rng = np.random.default_rng(options.seed)
        # Input buffer: global samples [in_start, in_start + n); windows reaching before 0 are zero-padded.
        self.in_start = 0
        self.inbuf = np.zeros((groups, self.channels, 0), dtype=np.float32)
        self.output = OverlapSum((groups, self.sources, self.channels))  # the cross-faded stems
        self.next_segment = 0
        self.received = 0

    def _in_end(self) -> int:
        return self.in_start + self.inbuf.shape[-1]

    def push(self, block: np.ndarray) -> Iterator[np.ndarray]:
        """Feed (groups, channels, n); yields finished (groups, sources, channels, m) blocks."""
        if block.shape[:2] != (self.groups, self.channels):
            raise ValueError(f"expected blocks of shape ({self.groups}, {self.channels}, n), got {block.shape}")
        self.inbuf = np.concatenate([self.inbuf, block.astype(np.float32, copy=False)], axis=-1)
        self.received += block.shape[-1]
        need = self.options.batch_size
        while self._ready_segments(final=False) >= need:
            yield from self._run(need, final=False)

    def finish(self) -> Iterator[np.ndarray]:
        """Flush at end of input; yields the remaining output, exactly ``received`` samples in all."""
        while self._ready_segments(final=True) > 0:
            yield from self._run(min(self.options.batch_size, self._ready_segments(final=True)), final=True)
        if self.output.start < self.received:
            yield self.output.emit(self.received)

    def _ready_segments(self, final: bool) -> int:
        """How many pending segments have all the input they need."""
        if final:
            return max(0, math.ceil((self.received - self.next_segment) / self.stride))
        # A segment starting at a reads input up to a + segment + max_shift (its unshifted window's end).
        available = self._in_end() - self.window
        return max(0, (available - self.next_segment) // self.stride + 1) if available >= self.next_segment else 0

    def _window(self, start: int) -> np.ndarray:
        """Input (groups, channels, window) for global [start, start + window), zero outside the signal."""
        lo = start - self.in_start
        hi = lo + self.window
        out = self.inbuf[..., max(lo, 0):max(hi, 0)]
        if lo < 0 or out.shape[-1] < self.window:
            padded = np.zeros((self.groups, self.channels, self.window), dtype=np.float32)
            padded[..., max(-lo, 0):max(-lo, 0) + out.shape[-1]] = out
            out = padded
        return out

    def _run(self, count: int, final: bool) -> Iterator[np.ndarray]:
        starts = [self.next_segment + i * self.stride for i in range(count)]
        self.next_segment += count * self.stride
        passes = max(1, self.options.shifts)
        # A pass with shift o reads the window [a - o, a - o + window); the segment's output sits at [o, o + segment).
        offsets = [[int(self.rng.integers(0, self.max_shift + 1)) if self.max_shift else 0 for _ in range(passes)] for _ in starts]
        windows = [self._window(a - o) for a, offs in zip(starts, offsets) for o in offs]
        batch = np.stack(windows).reshape(-1, self.channels, self.window)  # (count*passes*groups, C, W)
        result = self._forward(batch).reshape(count, passes, self.groups, self.sources, self.channels, self.window)
        for i, (a, offs) in enumerate(zip(starts, offsets)):
            acc = np.zeros((self.groups, self.sources, self.channels, self.segment), dtype=np.float32)
            for p, o in enumerate(offs):
                acc += result[i, p, ..., o:o + self.segment]
            self.output.add(a, acc * (self.weights / passes), self.weights)
        # No later segment touches samples before the next segment's start.
        done = min(self.next_segment, self.received) if final else self.next_segment
        if done > self.output.start:
            yield self.output.emit(done)
        keep_from = self.next_segment - self.max_shift
        if keep_from > self.in_start:
            self.inbuf = self.inbuf[..., keep_from - self.in_start:]
            self.in_start = keep_from

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """batch: (n, C, W) -> (n, S, C, W) float32 numpy."""
        device = torch.device(self.options.device)
        x = torch.from_numpy(batch).to(device)
        autocast = self.options.precision == "bf16" and device.type == "cuda"
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            y = self.model(x)
        return y.float().cpu().numpy()


def separate_blocks(model: StemModel, blocks: Iterable[np.ndarray], groups: int, options: EngineOptions,
                    on_output: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
    """Stream (groups, channels, n) input blocks -> (groups, sources, channels, m) output blocks."""
    # A generator, as before: the engine is made (and the options checked) when the first block is asked for.
    yield from drain(OverlapAdd(model, groups, options), blocks, on_output)


def separate_tensor(model: StemModel, mix: np.ndarray, options: EngineOptions) -> np.ndarray:
    """Whole-array convenience: mix (groups, channels, time) -> (groups, sources, channels, time)."""
    block = 1 << 18
    parts = list(separate_blocks(model, (mix[..., i:i + block] for i in range(0, mix.shape[-1], block)), mix.shape[0], options))
    return np.concatenate(parts, axis=-1)
