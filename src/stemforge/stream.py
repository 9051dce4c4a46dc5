"""Real-time streaming separation: blocks of any size in, the same number of stem samples out, fixed latency.

``StreamingSeparator(model).process(block)`` takes a mixture block (channels, n) and returns every stem's next
n samples. The output is the offline separation delayed by ``latency_samples``: after a stream of T samples and
``flush()`` (which returns the last ``latency_samples``), output sample ``t + latency_samples`` equals sample ``t``
of ``offline(mix)``, the same model run over the whole signal (to float rounding). Two ways to stream:

* ``"frames"``: a model that computes one STFT frame at a time (``stream_frame``, e.g. the causal U-Net
  ``-n lowlatency``). Frame k covers samples [k * hop - n_fft / 2, k * hop + n_fft / 2) of the zero-padded,
  centred STFT (``dsp.spectral``), is computed as soon as its last sample arrives, and its inverse is
  overlap-added as ``torch.istft`` does; a sample is final once the last frame covering it is in, which is at most
  ``n_fft - 1`` samples later: latency ``n_fft - 1`` (2047 samples = 46.4 ms for n_fft 2048 at 44.1 kHz).
  ``offline`` is ``model(mix)`` over the whole signal.
* ``"segments"``: any other model (the default U-Net, zoo models) through the engine's overlap-add
  (``engine.OverlapAdd``), which runs the model on whole segments: a segment starting at sample a runs when sample
  a + segment - 1 arrives, and finishes the samples up to the next segment's start. Latency
  ``segment + (batch_size - 1) * stride - 1`` (+ ``max_shift`` with shifts): 10 s for the default model's
  10 s segments, or the ``segment`` asked for. ``offline`` is ``engine.separate_tensor`` with the same options
  (what ``stemforge separate`` runs).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stemforge.engine import EngineOptions, OverlapAdd, separate_tensor
from stemforge.errors import StemforgeError
from stemforge.hub import load_model
from stemforge.models.base import StemModel

MODES = ("auto", "frames", "segments")


@dataclasses.dataclass
class StreamOptions:
    """How to stream. ``segment``/``overlap``/``shifts``/``batch_size`` matter in ``"segments"`` mode only."""

    mode: str = "auto"  # "auto": frames when the model can (``stream_frame``), else segments
    segment: float | None = None  # seconds; None: the model's default_segment
    overlap: float | None = None  # None: the model's default_overlap
    shifts: int = 0
    batch_size: int = 1
    device: str = "cpu"

    def validate(self) -> None:
        if self.mode not in MODES:
            raise StemforgeError(f"unknown stream mode {self.mode!r}; choose from {', '.join(MODES)}")
        self.engine_options().validate()

    def engine_options(self) -> EngineOptions:
        return EngineOptions(segment=self.segment, overlap=self.overlap, shifts=self.shifts,
                             batch_size=self.batch_size, device=self.device)


class _Fifo:
    """Output samples (sources, channels, n) waiting to be handed out, in one growing buffer."""

    def __init__(self, sources: int, channels: int, zeros: int) -> None:
        self.buf = np.zeros((sources, channels, max(zeros, 1024)), dtype=np.float32)
        self.start, self.end = 0, zeros

    def __len__(self) -> int:
        return self.end - self.start

    def push(self, block: np.ndarray) -> None:
        n = block.shape[-1]
        if self.end + n > self.buf.shape[-1]:
            kept = self.buf[..., self.start:self.end]
            size = max(2 * (len(self) + n), 1024)
            self.buf = np.zeros((*self.buf.shape[:2], size), dtype=np.float32)
            self.buf[..., :kept.shape[-1]] = kept
            self.start, self.end = 0, kept.shape[-1]
        self.buf[..., self.end:self.end + n] = block
        self.end += n

    def pop(self, n: int) -> np.ndarray:
        if n > len(self):
            raise AssertionError(f"stream fell behind its latency: {n} samples asked, {len(self)} ready")
        out = self.buf[..., self.start:self.start + n].copy()
        self.start += n
        return out


class _FrameBackend:
    """STFT frame by frame through ``model.stream_frame``, inverse overlap-added as ``torch.istft`` does."""

    def __init__(self, model: StemModel, device: torch.device) -> None:
        self.model, self.device = model, device
        self.n_fft, self.hop = model.config.n_fft, model.config.hop  # type: ignore[attr-defined]
        self.half = self.n_fft // 2
        self.window = torch.hann_window(self.n_fft, periodic=True, device=device)
        self.window_sq = (self.window**2).cpu().numpy()
        self.sources, self.channels = len(model.sources), model.channels
        self.latency = self.n_fft - 1
        self.reset()

    def reset(self) -> None:
        self.state = self.model.stream_state()
        self.received = 0
        self.frame = 0
        # Input samples [in_start, in_start + inbuf.shape[-1]); negative positions are the STFT's zero padding.
        self.in_start = -self.half
        self.inbuf = np.zeros((self.channels, self.half), dtype=np.float32)
        # Overlap-add accumulators for samples [out_start, ...): sum of windowed frames and of squared windows.
        self.out_start = -self.half
        self.acc = np.zeros((self.sources, self.channels, self.n_fft), dtype=np.float32)
        self.env = np.zeros(self.n_fft, dtype=np.float32)

    def push(self, block: np.ndarray) -> list[np.ndarray]:
        self.inbuf = np.concatenate([self.inbuf, block], axis=-1)
        self.received += block.shape[-1]
        out = []
        while self.frame * self.hop + self.half <= self.received:
            out.append(self._run_frame())
        return out

    def finish(self) -> list[np.ndarray]:
        """The remaining frames (zero padding after the end) and every sample still held."""
        total = self.received
        frames = total // self.hop + 1 if total else 0  # as torch.stft(center=True)
        out = []
        if self.frame < frames:
            needed = (frames - 1) * self.hop + self.half - (self.in_start + self.inbuf.shape[-1])
            if needed > 0:
                self.inbuf = np.concatenate([self.inbuf, np.zeros((self.channels, needed), np.float32)], axis=-1)
            while self.frame < frames:
                out.append(self._run_frame())
        if total > max(self.out_start, 0):
            out.append(self._emit(total))
        return out

    @torch.inference_mode()
    def _run_frame(self) -> np.ndarray:
        k = self.frame
        lo = k * self.hop - self.half - self.in_start
        chunk = torch.from_numpy(self.inbuf[:, lo:lo + self.n_fft]).to(self.device)
        spec = torch.stft(chunk, self.n_fft, self.hop, window=self.window, center=False, return_complex=True)[..., 0]
        stems = self.model.stream_frame(spec, self.state)  # (S, C, F) complex
        wave = (torch.fft.irfft(stems, n=self.n_fft) * self.window).cpu().numpy()
        self.frame += 1
        # The next frame starts one hop later: drop the input before it.
        drop = self.hop
        self.inbuf = self.inbuf[:, drop:]
        self.in_start += drop
        # Overlap-add this frame at [k * hop - half, k * hop + half).
        pos = k * self.hop - self.half - self.out_start
        self._grow(pos + self.n_fft)
        self.acc[..., pos:pos + self.n_fft] += wave
        self.env[pos:pos + self.n_fft] += self.window_sq
        return self._emit((k + 1) * self.hop - self.half)

    def _grow(self, size: int) -> None:
        if size > self.env.shape[-1]:
            extra = size - self.env.shape[-1]
            self.acc = np.concatenate([self.acc, np.zeros((*self.acc.shape[:2], extra), np.float32)], axis=-1)
            self.env = np.concatenate([self.env, np.zeros(extra, np.float32)])

    def _emit(self, upto: int) -> np.ndarray:
        """Normalised samples [max(out_start, 0), upto); the padding before sample 0 is dropped."""
        n = upto - self.out_start
        if n <= 0:
            return np.zeros((self.sources, self.channels, 0), np.float32)
        block = self.acc[..., :n] / np.maximum(self.env[:n], 1e-11)
        self.acc = self.acc[..., n:]
        self.env = self.env[n:]
        skip = max(0, -self.out_start)
        self.out_start = upto
        return block[..., skip:]

    def offline(self, mix: torch.Tensor) -> torch.Tensor:
        return self.model(mix)


class _SegmentBackend:
    """The engine's overlap-add over whole segments (any model)."""

    def __init__(self, model: StemModel, options: EngineOptions) -> None:
        self.model, self.options = model, options
        probe = OverlapAdd(model, 1, options)
        self.latency = probe.window - 1 + (options.batch_size - 1) * probe.stride
        self.sources, self.channels = len(model.sources), model.channels
        self.reset()

    def reset(self) -> None:
        self.engine = OverlapAdd(self.model, 1, dataclasses.replace(self.options))
        self.pending: list[np.ndarray] = []
        self.pending_samples = 0

    def push(self, block: np.ndarray) -> list[np.ndarray]:
        # Hand input to the engine only when its next batch of segments can run (it copies its buffer per push).
        self.pending.append(block)
        self.pending_samples += block.shape[-1]
        e = self.engine
        needed = e.next_segment + e.window + (self.options.batch_size - 1) * e.stride
        if e.received + self.pending_samples < needed:
            return []
        data = np.concatenate(self.pending, axis=-1)[None]
        self.pending, self.pending_samples = [], 0
        with torch.inference_mode():
            return [out[0] for out in e.push(data)]

    def finish(self) -> list[np.ndarray]:
        out = []
        with torch.inference_mode():
            if self.pending:
                out += [o[0] for o in self.engine.push(np.concatenate(self.pending, axis=-1)[None])]
            out += [o[0] for o in self.engine.finish()]
        self.pending, self.pending_samples = [], 0
        return out

    def offline(self, mix: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return torch.from_numpy(separate_tensor(self.model, mix.cpu().numpy(), self.options))


class StreamingSeparator:
    """Separate a stream block by block with a fixed latency (see the module docstring).

    Args:
        model: a ``StemModel``, or what ``stemforge.load_model`` accepts (``"lowlatency"``, ``"default"``, a path).
        options: ``StreamOptions`` (mode, segment settings for segment mode, device).

    Attributes:
        latency_samples: output sample ``t + latency_samples`` is offline sample ``t``.
        mode: ``"frames"`` or ``"segments"``.
        sources, sample_rate, channels: the model's.
    """

    def __init__(self, model: StemModel | str | Path = "lowlatency", options: StreamOptions | None = None) -> None:
        options = options or StreamOptions()
        options.validate()
        if options.device.startswith("cuda") and not torch.cuda.is_available():
            raise StemforgeError("--device cuda was asked for but no CUDA device is available")
        self.model = (model if isinstance(model, StemModel) else load_model(model)).eval().to(options.device)
        framewise = hasattr(self.model, "stream_frame")
        if options.mode == "frames" and not framewise:
            raise StemforgeError(f"model {self.model.architecture!r} cannot stream frame by frame (it is not causal); "
                                 "use mode 'segments'")
        self.mode = "frames" if options.mode == "frames" or (options.mode == "auto" and framewise) else "segments"
        self.options = options
        self.backend: _FrameBackend | _SegmentBackend
        if self.mode == "frames":
            self.backend = _FrameBackend(self.model, torch.device(options.device))
        else:
            self.backend = _SegmentBackend(self.model, options.engine_options())
        self.latency_samples: int = self.backend.latency
        self.reset()

    @property
    def sources(self) -> list[str]:
        return self.model.sources

    @property
    def sample_rate(self) -> int:
        return self.model.sample_rate

    @property
    def channels(self) -> int:
        return self.model.channels

    @property
    def latency_seconds(self) -> float:
        return self.latency_samples / self.sample_rate

    def reset(self) -> None:
        """Forget the stream: the next ``process`` starts a new one (output starts with ``latency_samples`` zeros)."""
        self.backend.reset()
        self.fifo = _Fifo(len(self.sources), self.channels, self.latency_samples)

    def _check(self, block: Any) -> np.ndarray:
        if isinstance(block, torch.Tensor):
            block = block.detach().cpu().numpy()
        block = np.asarray(block)
        if block.ndim != 2 or block.shape[0] != self.channels:
            raise StemforgeError(f"stream blocks must be (channels={self.channels}, samples) arrays, got shape {block.shape}")
        if not np.issubdtype(block.dtype, np.floating):
            raise StemforgeError(f"stream blocks must hold float samples, got {block.dtype}")
        block = np.ascontiguousarray(block, dtype=np.float32)
        if not np.isfinite(block).all():
            raise StemforgeError("stream block contains NaN or infinite samples")
        return block

    def _split(self, out: np.ndarray) -> dict[str, np.ndarray]:
        return {name: out[i] for i, name in enumerate(self.sources)}

    def process(self, block: Any) -> dict[str, np.ndarray]:
        """Separate the next block of the stream.

        Args:
            block: (channels, n) float samples at the model's rate, any n >= 0 (numpy or torch).

        Returns:
            {stem: (channels, n) float32}: the stems ``latency_samples`` behind the input.
        """
        block = self._check(block)
        if block.shape[-1]:
            for out in self.backend.push(block):
                self.fifo.push(out)
        return self._split(self.fifo.pop(block.shape[-1]))

    def flush(self) -> dict[str, np.ndarray]:
        """End the stream: the last ``latency_samples`` samples of every stem; then ``reset()``.

        Returns:
            {stem: (channels, latency_samples) float32}.
        """
        for out in self.backend.finish():
            self.fifo.push(out)
        out = self.fifo.pop(len(self.fifo))
        if out.shape[-1] != self.latency_samples:
            raise AssertionError(f"flush returned {out.shape[-1]} samples, latency is {self.latency_samples}")
        self.reset()
        return self._split(out)

    def offline(self, mix: Any) -> dict[str, np.ndarray]:
        """What the stream equals, computed at once: the model over the whole signal.

        Args:
            mix: (channels, time) float samples, time >= 1.

        Returns:
            {stem: (channels, time) float32}: ``frames`` mode ``model(mix)``, ``segments`` mode the engine's
            overlap-add with the same options (``stemforge separate``).
        """
        mix = self._check(mix)
        with torch.inference_mode():
            out = self.backend.offline(torch.from_numpy(mix)[None].to(self.options.device))[0]
        return self._split(out.float().cpu().numpy())


__all__ = ["MODES", "StreamOptions", "StreamingSeparator"]
