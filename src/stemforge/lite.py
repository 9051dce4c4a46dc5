"""Torch-free runtime for plain U-Net checkpoints (the bundled default model): numpy STFT, onnxruntime network.

``import torch`` alone takes 1.4-2.3 s on a small machine, longer than the whole wait the user should have for the
first separated audio (issue #18). This module runs the bundled U-Net (``models.unet.UNetSeparator``) and the
engine's overlap-add (``engine.OverlapAdd``) without torch, giving the same stems to float32 rounding:

    blocks (groups, channels, n) --cut as engine.OverlapAdd cuts (the model's 10 s segment, its overlap (0.25 unless
    its config says), triangular cross-fades)--> segment (channels, W)
    --STFT (numpy; dsp.spectral.stft: periodic Hann, centred, zero padded)--> spec (channels, frames, bins)
    --|spec| of the lowest max_bins bins, log1p, per-bin shift and scale (FrequencyNorm)--> x (channels, F', N')
    --U-Net as an ONNX graph (onnxruntime), built in memory from the checkpoint's weights--> logits
    --softmax over stems, top bin repeated up to Nyquist--> masks --masks x spec, iSTFT (numpy)--> stems
    [--re-split by magnitude ratios in a longer STFT (numpy), when the config's remask_fft is set; in its lowest
        refine_bins bins the ratios corrected by the refiner (features in numpy, its convolutions in onnxruntime)
        --> stems]

``stemforge.separate.open_separator`` uses it only where it gives the torch path's result (a ``unet``
checkpoint on the CPU, fp32, no shifts, no Wiener filter, the model's own segment and overlap); anything this module
does not recognise in full raises ``Unsupported`` and takes the torch path, which also reports bad files.

What is read, and how the graph is made, is ``stemforge.lite_graph``: the checkpoint only, through safetensors'
numpy loader (no pickle), its weights checked against their recorded hash; the ONNX graph is built in memory and
handed to onnxruntime as bytes. This module is the runtime: numpy STFT and iSTFT, the onnxruntime session, and the
overlap-add. Its names (``read_unet``, ``build_graph``, ``Unsupported``, ...) are importable from here as before.
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from stemforge.dsp.overlap import OverlapSum, drain, triangle_weights
# The checkpoint reader and graph builder, re-exported: ``stemforge.lite`` stays the one public import path.
from stemforge.lite_graph import (
    ARCHITECTURE,
    BN_EPS,
    CONFIG_FIELDS,
    FORMAT,
    HEADER_KEY,
    REFINE_ACTIVE,
    REFINE_LOG_FLOOR,
    REMASK_FLOOR,
    UNetSpec,
    Unsupported,
    build_graph,
    build_refiner_graph,
    read_unet,
    weights_sha256,
)

__all__ = ["ARCHITECTURE", "BN_EPS", "CONFIG_FIELDS", "FORMAT", "HEADER_KEY", "OVERLAP", "SEGMENT", "LiteUNet",
           "OverlapAdd", "UNetSpec", "Unsupported", "build_graph", "hann_window", "istft", "read_unet",
           "separate_blocks", "stft", "triangle_weights", "weights_sha256"]

#: ``UNetSeparator.default_segment`` (seconds) and ``StemModel.default_overlap``.
SEGMENT = 10.0
OVERLAP = 0.25


def hann_window(n_fft: int) -> np.ndarray:
    """(n_fft,) float32 periodic Hann window (``torch.hann_window(n_fft, periodic=True)``)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def stft(x: np.ndarray, n_fft: int, hop: int, window: np.ndarray, out: np.ndarray | None = None,
         scratch: np.ndarray | None = None) -> np.ndarray:
    """``dsp.spectral.stft`` in numpy, frame-major.

    Args:
        x: (..., time) float32.
        n_fft: FFT size (the window's length).
        hop: hop length.
        window: (n_fft,) analysis window.
        out: optional (..., frames, n_fft // 2 + 1) complex64 array to write the result to.
        scratch: optional (..., frames, n_fft) float32 array for the windowed frames (overwritten).

    Returns:
        (..., frames, n_fft // 2 + 1) complex64 with frames = time // hop + 1: centred frames, the signal zero
        padded by n_fft // 2 on both sides (``torch.stft(center=True, pad_mode="constant")`` transposed).
    """
    half = n_fft // 2
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(half, half)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop, :]
    # rfft(x) = conj(ihfft(n * x)), the factor n folded into the window. numpy 2.4's float32 rfft took 2.2-2.7 times
    # as long as its ihfft on these shapes (2 x 862 x 2048: 19.0 vs 8.5 ms with the conjugation and a scaling
    # pass; 2 x 55 x 24576: 18.4 vs 6.9 ms).
    windowed = np.multiply(frames, window * np.float32(n_fft), out=scratch, dtype=np.float32)
    if out is None:
        out = np.empty((*windowed.shape[:-1], half + 1), np.complex64)
    np.fft.ihfft(windowed, axis=-1, out=out)
    return np.conjugate(out, out=out)


def istft(spec: np.ndarray, length: int, n_fft: int, hop: int, window: np.ndarray,
          scratch: np.ndarray | None = None) -> np.ndarray:
    """``dsp.spectral.istft`` in numpy: the exact inverse of ``stft`` (hop must divide n_fft).

    Args:
        spec: (batch, frames, n_fft // 2 + 1) complex64, frame-major as ``stft`` returns it.
        length: output samples.
        n_fft: FFT size.
        hop: hop length, dividing ``n_fft``.
        window: (n_fft,) the analysis window.
        scratch: optional (batch, frames, n_fft) float32 array for the inverse FFT (overwritten).

    Returns:
        (batch, length) float32: windowed overlap-add divided by the summed squared window.
    """
    batch, frames, _ = spec.shape
    k = n_fft // hop
    wave = np.fft.irfft(spec, n=n_fft, axis=-1, out=scratch)  # (batch, frames, n_fft)
    wave *= window
    pieces = wave.reshape(batch, frames, k, hop)
    out = np.zeros((batch, frames + k - 1, hop), np.float32)
    for j in range(k):  # frame f's j-th hop-long piece lands on output block f + j
        out[:, j:j + frames] += pieces[:, :, j]
    start = n_fft // 2
    out = out.reshape(batch, -1)[:, start:start + length]
    out /= _envelope(n_fft, hop, frames, window.tobytes())[start:start + length]
    if out.shape[-1] < length:
        out = np.pad(out, ((0, 0), (0, length - out.shape[-1])))
    return out


@functools.lru_cache(maxsize=8)
def _envelope(n_fft: int, hop: int, frames: int, window: bytes) -> np.ndarray:
    """The summed squared window of ``frames`` overlap-added frames (every segment has the same)."""
    k = n_fft // hop
    taps = np.square(np.frombuffer(window, np.float32)).reshape(k, hop)
    envelope = np.zeros((frames + k - 1, hop), np.float32)
    for j in range(k):
        envelope[j:j + frames] += taps[j]
    return envelope.reshape(-1)


class LiteUNet:
    """A ``unet`` checkpoint run without torch: ``model(mix) -> stems`` as ``UNetSeparator.forward`` in eval mode.

    Args:
        path: a stemforge ``unet`` checkpoint.
        threads: onnxruntime's intra-op threads (None: its default, one per physical core, as torch).

    Raises:
        Unsupported: the checkpoint is not one this runtime reproduces, onnx / onnxruntime are missing, or numpy
            is older than 2.0.
    """

    segment_seconds = SEGMENT

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        if int(np.__version__.split(".")[0]) < 2:  # numpy 1.x has no float32 FFTs and no out= for them
            raise Unsupported(f"numpy {np.__version__} is older than 2.0")
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise Unsupported("onnxruntime is not installed") from exc
        self.path = Path(path)
        self.spec, state = read_unet(path)
        graph = build_graph(self.spec, state)
        self.shift, self.scale = state["norm.shift"], state["norm.scale"]  # (max_bins, 1) each
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are not the user's business
        # No spin-waiting between operators: on shared or busy cores it only takes time from the work (the first
        # segment came out 0.1-0.2 s later with it at load 4-5 on 2 cores); each operator here runs for milliseconds.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads is not None:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
            self.refiner = (ort.InferenceSession(build_refiner_graph(self.spec, state), options,
                                                 providers=["CPUExecutionProvider"])
                            if self.spec.refine_bins else None)
        except Exception as exc:  # an onnxruntime that cannot run this graph: the torch path can
            raise Unsupported(f"onnxruntime cannot run the graph ({type(exc).__name__}: {exc})") from exc
        self.window = hann_window(self.spec.n_fft)
        self.remask_window = hann_window(self.spec.remask_fft) if self.spec.remask_fft else None
        self._work_key: tuple[int, int, int] | None = None
        self._work: dict[str, Any] = {}
        #: Threads synthesising stems side by side (the network has onnxruntime's own).
        self.lanes = max(1, min(len(self.spec.sources), threads or os.cpu_count() or 1, 2))
        self._threads: concurrent.futures.ThreadPoolExecutor | None = None

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._threads is None:
            self._threads = concurrent.futures.ThreadPoolExecutor(self.lanes - 1, thread_name_prefix="stemforge-lite")
        return self._threads

    @property
    def sources(self) -> list[str]:
        return list(self.spec.sources)

    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    @property
    def channels(self) -> int:
        return self.spec.channels

    def __call__(self, mix: np.ndarray) -> np.ndarray:
        """Separate a batch.

        Args:
            mix: (batch, channels, time) float32.

        Returns:
            (batch, sources, channels, time) float32.
        """
        cfg = self.spec
        batch, channels, length = mix.shape
        sources, bins = len(cfg.sources), cfg.max_bins
        frames, full = length // cfg.hop + 1, cfg.n_fft // 2 + 1
        # Every segment has the same shape: its buffers are made (and their pages faulted in) once.
        work = self._workspace(batch, channels, length)
        spec = work["spec"]  # (B, C, N, F)

        split = min(self.lanes, channels)

        def analyse(lane: int) -> None:  # the STFT of some of the channels
            part = slice(lane * channels // split, (lane + 1) * channels // split)
            stft(mix[:, part], cfg.n_fft, cfg.hop, self.window, out=spec[:, part], scratch=work["frames"][:, part])

        self._side_by_side(analyse, split)
        padded = -(-frames // 2**cfg.depth) * 2**cfg.depth  # zero frames up to a multiple of 2**depth, as in torch
        x = work["x"]
        with np.errstate(over="ignore", invalid="ignore"):  # see _quietly
            x[..., frames:] = 0
            np.abs(spec[..., :bins].transpose(0, 1, 3, 2), out=x[..., :frames])
            np.log1p(x, out=x)  # FrequencyNorm, padding frames included (as in torch)
            np.add(x, self.shift, out=x)
            np.multiply(x, self.scale, out=x)
            logits = self.session.run(None, {"x": x})[0].reshape(batch, sources, channels, bins, padded)[..., :frames]
            masks = _softmax_over_stems(logits, out=work["masks"])
        masks = masks.transpose(0, 1, 2, 4, 3)  # (B, S, C, N, F'), like the spectra
        wave = np.empty((batch, sources, channels, length), np.float32)

        def synthesise(lane: int) -> None:  # one stem at a time per lane: a quarter of the memory
            stem, scratch = work["stem"][lane], work["frames" if lane == 0 else f"frames{lane}"]
            for s in range(lane, sources, self.lanes):
                np.multiply(masks[:, s], spec[..., :bins], out=stem[..., :bins])
                np.multiply(masks[:, s, ..., -1:], spec[..., bins:], out=stem[..., bins:])  # top bin's mask above
                wave[:, s] = istft(stem.reshape(-1, frames, full), length, cfg.n_fft, cfg.hop, self.window,
                                   scratch=scratch.reshape(-1, frames, cfg.n_fft)).reshape(batch, channels, length)

        self._side_by_side(synthesise, self.lanes)
        if cfg.remask_fft:
            self._remask(wave, work)
        return wave

    def _remask(self, wave: np.ndarray, work: dict[str, Any]) -> None:
        """``dsp.wiener.remask(wave, None, ...)`` in place: wave (B, S, C, T) re-split by magnitude ratios."""
        cfg = self.spec
        n_fft, hop, window = cfg.remask_fft, cfg.remask_hop, self.remask_window
        batch, sources, channels, length = wave.shape
        frames = length // hop + 1
        # (B, S, C, N, F), (B, S, N, F), and per lane (B, C, N, F) magnitudes and (B, C, N, n_fft) frames
        spec, mags, absolute, scratch = (work[f"remask_{k}"] for k in ("spec", "mags", "abs", "frames"))
        mix = wave.sum(axis=1)  # the masks sum to one: the stems add up to the mix

        def analyse(lane: int) -> None:
            for s in range(lane, sources, self.lanes):
                stft(wave[:, s], n_fft, hop, window, out=spec[:, s], scratch=scratch[lane])
                np.abs(spec[:, s], out=absolute[lane])
                # torch's sqrt(|Y|^2 + floor^2), to float32 rounding where |Y| > 1e-6 (np.hypot took 25 ms a segment)
                np.maximum(absolute[lane], np.float32(REMASK_FLOOR), out=absolute[lane])
                np.sum(absolute[lane], axis=1, out=mags[:, s])

        self._side_by_side(analyse, self.lanes)
        x = spec.sum(axis=1)  # (B, C, N, F): the mix's spectrum
        with np.errstate(invalid="ignore", over="ignore"):  # see _quietly
            low = self._refine(mags[..., :cfg.refine_bins], x[..., :cfg.refine_bins]) if self.refiner else None
            np.divide(mags, mags.sum(axis=1, keepdims=True), out=mags)
            if low is not None:
                mags[..., :cfg.refine_bins] = low

        def synthesise(lane: int) -> None:  # all stems but the last: the mix less the others
            for s in range(lane, sources - 1, self.lanes):
                np.multiply(mags[:, s, None], x, out=spec[:, s])
                wave[:, s] = istft(spec[:, s].reshape(-1, frames, spec.shape[-1]), length, n_fft, hop, window,
                                   scratch=scratch[lane].reshape(-1, frames, n_fft)).reshape(batch, channels, length)

        self._side_by_side(synthesise, min(self.lanes, sources - 1))
        np.subtract(mix, wave[:, :-1].sum(axis=1), out=wave[:, -1])

    def _refine(self, mag: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``models.refiner.LowBandRefiner.masks``: mag (B, S, N, K), x (B, C, N, K) complex -> (B, S, N, K)."""
        mixmag = np.abs(x).sum(axis=1)  # (B, N, K)
        frame = mixmag.sum(axis=-1)  # models.refiner.active_mean: the frames that sound
        active = frame > np.float32(REFINE_ACTIVE) * frame.max(axis=-1, keepdims=True)
        count = np.maximum(active.sum(axis=-1) * mixmag.shape[-1], 1)
        scale = np.maximum((frame * active).sum(axis=-1) / count, np.float32(1e-8)).astype(np.float32)[:, None, None]
        floor = np.float32(REFINE_LOG_FLOOR) * scale
        planes = [np.log((mag + floor[:, None]) / scale[:, None]), mag / mag.sum(axis=1, keepdims=True),
                  np.log((mixmag + floor) / scale)[:, None],
                  np.broadcast_to(np.linspace(0, 1, mag.shape[-1], dtype=np.float32), mixmag.shape)[:, None]]
        features = np.concatenate(planes, axis=1, dtype=np.float32)
        logits = np.log(mag) + self.refiner.run(None, {"features": features})[0]
        return _softmax_over_stems(logits, out=logits)

    def _side_by_side(self, work: Callable[[int], None], lanes: int) -> None:
        """``work(lane)`` for each lane, lane 0 in this thread (numpy's FFTs and ufuncs release the GIL)."""
        futures = [self._pool().submit(_quietly, work, lane) for lane in range(1, lanes)]
        try:
            _quietly(work, 0)
        finally:
            for future in futures:
                future.result()

    def _workspace(self, batch: int, channels: int, length: int) -> dict[str, Any]:
        """Buffers for segments of this shape (the re-mask's too), kept for the next one (the last shape only)."""
        key = (batch, channels, length)
        if self._work_key != key:
            cfg = self.spec
            frames = length // cfg.hop + 1
            padded = -(-frames // 2**cfg.depth) * 2**cfg.depth
            self._work = {
                "frames": np.empty((batch, channels, frames, cfg.n_fft), np.float32),
                "spec": np.empty((batch, channels, frames, cfg.n_fft // 2 + 1), np.complex64),
                "x": np.empty((batch, channels, cfg.max_bins, padded), np.float32),
                "masks": np.empty((batch, len(cfg.sources), channels, cfg.max_bins, frames), np.float32),
                "stem": [np.empty((batch, channels, frames, cfg.n_fft // 2 + 1), np.complex64) for _ in range(self.lanes)],
                **{f"frames{lane}": np.empty((batch, channels, frames, cfg.n_fft), np.float32)
                   for lane in range(1, self.lanes)},
            }
            if cfg.remask_fft:
                sources, frames, bins = len(cfg.sources), length // cfg.remask_hop + 1, cfg.remask_fft // 2 + 1
                self._work.update({
                    "remask_spec": np.empty((batch, sources, channels, frames, bins), np.complex64),
                    "remask_mags": np.empty((batch, sources, frames, bins), np.float32),
                    "remask_abs": [np.empty((batch, channels, frames, bins), np.float32) for _ in range(self.lanes)],
                    "remask_frames": [np.empty((batch, channels, frames, cfg.remask_fft), np.float32)
                                      for _ in range(self.lanes)],
                })
            self._work_key = key
        return self._work


def _softmax_over_stems(logits: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Softmax over axis 1 (the stems) of (B, S, ...) logits, written into ``out`` (may be ``logits``)."""
    np.subtract(logits, logits.max(axis=1, keepdims=True), out=out)
    np.exp(out, out=out)
    out *= np.reciprocal(out.sum(axis=1, keepdims=True))
    return out


def _quietly(work: Callable[[int], None], lane: int) -> None:
    """``work(lane)`` without numpy's overflow warnings, in any thread (``np.errstate`` is per thread): an absurd
    input (samples near 1e38) gives non-finite stems, which ``stemforge.separate`` reports in one line, as the
    torch path does, instead of a warning per operation."""
    with np.errstate(over="ignore", invalid="ignore"):
        work(lane)


class OverlapAdd:
    """``engine.OverlapAdd`` for one segment per model call and no shifts, without torch.

    Segments of ``segment`` samples start every ``stride`` samples; each output is weighted by a triangular
    window and the sum divided by the summed weights (``dsp.overlap.OverlapSum``, which the engine uses too); a
    block is handed out as soon as no later segment can touch it.

    Args:
        model: (n, channels, W) -> (n, sources, channels, W), e.g. a ``LiteUNet``.
        groups: independent signals separated side by side.
        channels: the model's channels.
        sources: the model's stem count.
        segment: segment length in samples.
        overlap: fraction of a segment shared with the next one.
    """

    def __init__(self, model: Callable[[np.ndarray], np.ndarray], groups: int, channels: int, sources: int,
                 segment: int, overlap: float = OVERLAP) -> None:
        self.model, self.groups, self.channels, self.sources = model, groups, channels, sources
        self.segment = max(1, segment)
        self.stride = max(1, int(round(self.segment * (1 - overlap))))
        self.weights = triangle_weights(self.segment)
        self.in_start, self.inbuf = 0, np.zeros((groups, channels, 0), np.float32)
        self.output = OverlapSum((groups, sources, channels))  # the cross-faded stems
        self.next_segment = 0
        self.received = 0

    def push(self, block: np.ndarray) -> Iterator[np.ndarray]:
        """Feed (groups, channels, n); yields finished (groups, sources, channels, m) blocks."""
        if block.shape[:2] != (self.groups, self.channels):
            raise ValueError(f"expected blocks of shape ({self.groups}, {self.channels}, n), got {block.shape}")
        self.inbuf = np.concatenate([self.inbuf, block.astype(np.float32, copy=False)], axis=-1)
        self.received += block.shape[-1]
        while self.in_start + self.inbuf.shape[-1] - self.segment >= self.next_segment:
            yield from self._run(final=False)

    def finish(self) -> Iterator[np.ndarray]:
        """Flush at end of input; yields the remaining output, exactly the samples received in all."""
        while self.next_segment < self.received:
            yield from self._run(final=True)
        if self.output.start < self.received:
            yield self.output.emit(self.received)

    def _run(self, final: bool) -> Iterator[np.ndarray]:
        start = self.next_segment
        self.next_segment += self.stride
        lo = start - self.in_start
        window = self.inbuf[..., lo:lo + self.segment]
        if window.shape[-1] < self.segment:  # the end of the signal: zeros beyond it
            window = np.pad(window, ((0, 0), (0, 0), (0, self.segment - window.shape[-1])))
        result = self.model(window)  # (groups, sources, channels, segment)
        self.output.add(start, result * self.weights, self.weights)
        done = min(self.next_segment, self.received) if final else self.next_segment
        if done > self.output.start:
            yield self.output.emit(done)
        if self.next_segment > self.in_start:
            self.inbuf = self.inbuf[..., self.next_segment - self.in_start:]
            self.in_start = self.next_segment


def separate_blocks(model: LiteUNet, blocks: Iterable[np.ndarray], groups: int,
                    on_output: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
    """``engine.separate_blocks`` with the default options, for a ``LiteUNet``.

    Args:
        model: the runtime.
        blocks: (groups, channels, n) input blocks at the model's rate.
        groups: independent signals separated side by side.
        on_output: called with each output block's length.

    Returns:
        An iterator of (groups, sources, channels, m) output blocks, as many samples in all as came in.
    """
    engine = OverlapAdd(model, groups, model.channels, len(model.sources),
                        int(round(model.segment_seconds * model.sample_rate)), float(model.spec.overlap))
    yield from drain(engine, blocks, on_output)
