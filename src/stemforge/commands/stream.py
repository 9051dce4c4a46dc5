"""``stemforge stream``: separate block by block, from a file or raw PCM on stdin, to stem files or raw PCM on stdout.

Composes with ffmpeg / sox pipes::

    ffmpeg -i song.mp3 -f f32le -ar 44100 -ac 2 - | stemforge stream - -o - --stems vocals | \\
        sox -t f32 -r 44100 -c 2 - vocals.wav

Raw PCM is little-endian and interleaved; on stdout the frames hold every chosen stem's channels in turn (stem
by stem). Outputs are at the model's rate and aligned with the input (the model's latency is taken off the
front and flushed at the end), so the stems equal an offline run of the same model.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from stemforge.errors import StemforgeError

logger = logging.getLogger(__name__)

PCM_FORMATS = {"f32": np.dtype("<f4"), "s16": np.dtype("<i2")}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("stream", help="separate block by block (real time): a file or raw PCM on stdin",
                              allow_abbrev=False, description=__doc__.split("\n\n")[0])
    p.add_argument("input", metavar="IN", help="an audio file, or - for raw PCM on stdin (--rate, --channels, --pcm)")
    p.add_argument("-o", "--out", required=True, metavar="DIR",
                   help="folder for the stem files (DIR/<stem>.<ext>), or - for raw PCM on stdout")
    p.add_argument("-n", "--name", default="lowlatency", metavar="MODEL",
                   help="model (default lowlatency: 46 ms latency; any other streams segment by segment)")
    p.add_argument("--mode", choices=("auto", "frames", "segments"), default="auto",
                   help="frames (causal models) or segments (any model, latency = segment); default auto")
    p.add_argument("--segment", type=float, metavar="S", help="segment mode: segment length in seconds")
    p.add_argument("--block", type=int, default=512, metavar="N", help="samples per block read and processed (default 512)")
    p.add_argument("--rate", type=int, metavar="HZ", help="stdin: sample rate (default: the model's)")
    p.add_argument("--channels", type=int, default=2, metavar="C", help="stdin: channels (default 2)")
    p.add_argument("--pcm", choices=tuple(PCM_FORMATS), default="f32", help="stdin sample format (default f32)")
    p.add_argument("--out-pcm", choices=tuple(PCM_FORMATS), help="stdout sample format (default: as --pcm)")
    p.add_argument("--stems", metavar="A,B", help="comma-separated stems to output (default all)")
    p.add_argument("--format", dest="fmt", choices=("wav", "flac"), default="wav", help="stem file format (default wav)")
    p.add_argument("--bits", choices=("16", "24", "32f"), default="16", help="stem file bit depth (default 16)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite existing stem files")
    p.add_argument("-d", "--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="CPU threads (default 1: real time on one core)")
    p.set_defaults(func=run)


def _pcm_blocks(stream: BinaryIO, channels: int, dtype: np.dtype, block: int) -> Iterator[np.ndarray]:
    """Raw interleaved PCM -> float32 (channels, n) blocks; a trailing partial frame is dropped with a warning."""
    frame_bytes = channels * dtype.itemsize
    pending = b""
    while True:
        data = stream.read(block * frame_bytes - len(pending))
        if not data:
            break
        pending += data
        whole = len(pending) // frame_bytes * frame_bytes
        if whole:
            samples = np.frombuffer(pending[:whole], dtype=dtype).reshape(-1, channels).T
            pending = pending[whole:]
            if dtype.kind == "i":
                yield samples.astype(np.float32) / 32768.0
            else:
                yield np.ascontiguousarray(samples, dtype=np.float32)
    if pending:
        logger.warning("stdin ended inside a sample frame: %d trailing bytes dropped", len(pending))


def _to_pcm(blocks: list[np.ndarray], dtype: np.dtype) -> bytes:
    """(channels, n) float blocks -> interleaved little-endian PCM bytes, stem after stem within each frame."""
    frames = np.concatenate(blocks, axis=0).T  # (n, stems * channels)
    if dtype.kind == "i":
        frames = np.round(np.clip(frames, -1.0, 32767 / 32768) * 32768.0)
    return np.ascontiguousarray(frames).astype(dtype).tobytes()


class _Aligner:
    """Drops the first ``latency`` samples of the stream's output, so outputs line up with the input."""

    def __init__(self, latency: int) -> None:
        self.skip = latency

    def __call__(self, stems: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = next(iter(stems.values())).shape[-1]
        cut = min(self.skip, n)
        self.skip -= cut
        return {k: v[:, cut:] for k, v in stems.items()}


def run(args: argparse.Namespace) -> int:
    import torch

    from stemforge.audio import AudioWriter, StreamResampler, convert_channels, open_audio, publish
    from stemforge.stream import StreamingSeparator, StreamOptions

    if args.block < 1:
        raise StemforgeError(f"--block must be >= 1, got {args.block}")
    if args.threads < 1:
        raise StemforgeError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    separator = StreamingSeparator(args.name, StreamOptions(mode=args.mode, segment=args.segment, device=args.device))
    rate, channels = separator.sample_rate, separator.channels
    stems = separator.sources
    if args.stems:
        stems = [s.strip() for s in args.stems.split(",") if s.strip()]
        unknown = [s for s in stems if s not in separator.sources]
        if unknown or not stems:
            raise StemforgeError(f"--stems {args.stems!r}: the model's stems are {', '.join(separator.sources)}")
    logger.info("streaming with %s mode, latency %d samples (%.1f ms)", separator.mode, separator.latency_samples,
                1000 * separator.latency_seconds)

    # Input: (in_channels, n) float32 blocks at in_rate.
    reader = None
    if args.input == "-":
        if args.channels < 1:
            raise StemforgeError(f"--channels must be >= 1, got {args.channels}")
        in_rate, in_channels = (rate if args.rate is None else args.rate), args.channels
        if not 1000 <= in_rate <= 768000:
            raise StemforgeError(f"--rate {in_rate}: expected 1000 to 768000 Hz")
        blocks = _pcm_blocks(sys.stdin.buffer, in_channels, PCM_FORMATS[args.pcm], args.block)
    else:
        if args.rate or args.pcm != "f32" or args.channels != 2:
            logger.warning("--rate/--channels/--pcm describe raw stdin; the file's own header is used")
        reader = open_audio(args.input)
        in_rate, in_channels = reader.info.sample_rate, reader.info.channels
        blocks = reader.blocks(args.block)
    resampler = StreamResampler(in_rate, rate, channels)

    # Output: stem files (written through temp files, published together at the end) or raw PCM on stdout.
    to_stdout = args.out == "-"
    writers: dict[str, AudioWriter] = {}
    out_dtype = PCM_FORMATS[args.out_pcm or args.pcm]
    stdout = sys.stdout.buffer if to_stdout else None
    align = _Aligner(separator.latency_samples)
    try:
        if not to_stdout:
            folder = Path(args.out)
            for stem in stems:
                writers[stem] = AudioWriter(folder / f"{stem}.{args.fmt}", rate, channels, args.fmt, args.bits,
                                            overwrite=args.force)

        def emit(out: dict[str, np.ndarray]) -> None:
            out = align(out)
            if not next(iter(out.values())).shape[-1]:
                return
            if stdout is not None:
                stdout.write(_to_pcm([out[s] for s in stems], out_dtype))
                stdout.flush()
            else:
                for stem in stems:
                    writers[stem].write(out[stem])

        for block in blocks:
            block = resampler.process(convert_channels(block, channels) if in_channels != channels else block)
            emit(separator.process(block))
        tail = resampler.process(np.zeros((channels, 0), np.float32), last=True)
        if tail.shape[-1]:
            emit(separator.process(tail))
        emit(separator.flush())
        if writers:
            parts = {w.path: w.finish() for w in writers.values()}
            try:
                publish(parts, overwrite=args.force)
            finally:
                for tmp in parts.values():
                    tmp.unlink(missing_ok=True)
            writers.clear()
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head -c`): stop quietly, as other pipe tools do, and point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        for writer in writers.values():
            writer.abort()
        if reader is not None:
            reader.close()
    return 0
