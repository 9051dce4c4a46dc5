"""MUSDB18 ``.stem.mp4`` (multi-stream MP4) access with PyAV: probe, seek-and-read, full decode.

Stream order in MUSDB18 files: mixture, drums, bass, other, vocals (``STEM_MP4_STREAMS``).
"""

from __future__ import annotations

import functools

import av
import numpy as np

from stemforge.errors import AudioError
from stemforge.stems import FOUR_STEMS

STEM_MP4_STREAMS = ("mixture", *FOUR_STEMS)


def _audio_stream(container, path: str, stream: int):
    streams = [s for s in container.streams if s.type == "audio"]
    if stream >= len(streams):
        raise AudioError(f"{path} has {len(streams)} audio streams, stream {stream} is missing")
    return streams[stream]


def probe_stream(path: str, stream: int) -> tuple[int, int, int]:
    """(rate, frames, channels) of one stream from the container's metadata (decodes only if it has none)."""
    try:
        with av.open(path) as container:
            st = _audio_stream(container, path, stream)
            rate = int(st.codec_context.sample_rate)
            channels = int(st.codec_context.channels)
            if st.duration is not None and st.time_base is not None:
                return rate, int(round(st.duration * st.time_base * rate)), channels
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(f"cannot read {path} (stream {stream}): {exc}") from None
    data, rate = decode_stream(path, stream)
    return rate, data.shape[1], data.shape[0]


def _frame_array(frame) -> np.ndarray:
    """A decoded PyAV audio frame -> (channels, samples) float32."""
    array = frame.to_ndarray()
    if not frame.format.is_planar:
        array = array.reshape(-1, len(frame.layout.channels)).T
    if np.issubdtype(array.dtype, np.integer):
        array = array / np.float32(np.iinfo(array.dtype).max)
    return array.astype(np.float32)


def read_stream(path: str, stream: int, start: int, frames: int) -> np.ndarray:
    """Frames [start, start + frames) of one stream, decoding only around them: (channels, <= frames).

    Seeks 4096 samples early so the decoder's overlap state is primed, then keeps samples by their
    timestamps; this matches a full decode sample for sample (checked in the tests).
    """
    try:
        with av.open(path) as container:
            st = _audio_stream(container, path, stream)
            rate = st.codec_context.sample_rate
            base = st.time_base
            if start > 4096:
                container.seek(int(max(0, start - 4096) / rate / base), stream=st, backward=True)
            chunks, first = [], None
            for frame in container.decode(st):
                if frame.pts is None:
                    continue
                frame_start = int(round(frame.pts * base * rate))
                if frame_start + frame.samples <= start:
                    continue
                if first is None:
                    first = frame_start
                chunks.append(_frame_array(frame))
                if frame_start + frame.samples >= start + frames:
                    break
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(f"cannot decode {path} (stream {stream}): {exc}") from None
    if not chunks:
        return np.zeros((2, 0), np.float32)
    data = np.concatenate(chunks, axis=1)
    offset = start - first
    if offset < 0:  # the stream starts later than asked: pad the front
        data = np.pad(data, ((0, 0), (-offset, 0)))
        offset = 0
    return data[:, offset: offset + frames]


@functools.lru_cache(maxsize=8)
def decode_stream(path: str, stream: int) -> tuple[np.ndarray, int]:
    """Decode a whole audio stream with PyAV -> ((channels, time) float32, rate); for files without duration."""
    try:
        with av.open(path) as container:
            audio_streams = [s for s in container.streams if s.type == "audio"]
            if stream >= len(audio_streams):
                raise AudioError(f"{path} has {len(audio_streams)} audio streams, stream {stream} is missing")
            st = audio_streams[stream]
            rate = st.codec_context.sample_rate
            # AAC pads its last frame; the track's duration says where the audio ends (as probe_stream reports).
            frames = None
            if st.duration is not None and st.time_base is not None:
                frames = int(round(st.duration * st.time_base * rate))
            chunks = [_frame_array(frame) for frame in container.decode(st)]
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(f"cannot decode {path} (stream {stream}): {exc}") from None
    if not chunks:
        raise AudioError(f"{path} (stream {stream}) has no audio frames")
    data = np.concatenate(chunks, axis=1)
    if frames:
        data = data[:, :frames]
    return np.ascontiguousarray(data, dtype=np.float32), int(rate)
