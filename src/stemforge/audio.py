"""Audio file I/O: streaming readers and atomic writers for every format we support.

Arrays are always float32 shaped ``(channels, time)``. Reading goes through soundfile (wav, flac, ogg,
aiff, ...) and falls back to PyAV/FFmpeg (mp3, m4a/aac, opus, ...). Writing supports wav (16/24-bit
PCM, 32-bit float), flac (16/24-bit) and mp3 (via PyAV's LAME encoder). Every write goes to a temporary
file in the target directory and is renamed into place only when complete, so a crash or a bad input
never leaves a half-written file behind. Temp files are named ``.<target>.sf<pid>.<random>.part.<ext>`` so a
later run can sweep those of a run that was killed outright; ``publish`` moves a group of them into place
together, claiming each name exclusively unless overwriting was asked for. ``staged_folder`` does the same for a
whole folder (a song, a DAW session, a cache): built hidden beside its target, renamed into place when complete,
an old one replaced only once the new one is there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import re
import shutil
import signal
import struct
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator, Mapping, Protocol

import numpy as np
# soxr is a nanobind extension: a KeyboardInterrupt (Ctrl-C, or SIGTERM/SIGHUP turned into one by the CLI) raised
# while it is first imported makes nanobind call std::terminate (a core dump instead of a clean stop), and the
# streaming resampler used to import it only once temp files existed. Import it with this module instead.
import soxr

from stemforge.errors import AudioError

log = logging.getLogger(__name__)

#: Extensions we try to read; anything else is skipped when walking directories.
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc", ".mp3", ".m4a", ".aac",
     ".mp4", ".wma", ".webm", ".mka", ".caf", ".w64", ".rf64", ".au"}
)
_PYAV_ONLY = frozenset({".mp3", ".mp2", ".mpga"})
_SOUNDFILE_FIRST = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc", ".caf", ".w64", ".rf64", ".au"})

#: Sample rates we accept; anything outside is a corrupt header rather than audio.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 1_536_000

OUTPUT_FORMATS = ("wav", "flac", "mp3")
BIT_DEPTHS = ("16", "24", "32f")
#: How stems are kept within full scale; "none" is accepted for Demucs users and behaves like "clamp".
CLIP_MODES = ("rescale", "clamp", "none")
#: The mp3 bitrates (kbit/s) LAME accepts; it rounds a value in between to the nearest the sample rate allows.
MP3_BITRATE_RANGE = (8, 320)
_SUBTYPES = {("wav", "16"): "PCM_16", ("wav", "24"): "PCM_24", ("wav", "32f"): "FLOAT",
             ("flac", "16"): "PCM_16", ("flac", "24"): "PCM_24"}


class OutputExistsError(AudioError):
    """An output file is there already (and overwriting was not asked for)."""


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What we know about a file before decoding it. ``frames`` is None when the container does not say."""

    path: Path
    sample_rate: int
    channels: int
    frames: int | None
    channel_mask: int | None = None  # speaker positions (WAVEFORMATEXTENSIBLE bits), None when the file does not say

    @property
    def seconds(self) -> float | None:
        return None if self.frames is None else self.frames / self.sample_rate


class AudioReader(Protocol):
    info: AudioInfo

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """Yield float32 blocks ``(channels, n)``, n <= block_frames, in order, until the end of the file."""
        ...

    def close(self) -> None: ...


class _SoundFileReader:
    def __init__(self, path: Path) -> None:
        import soundfile as sf

        self._file = sf.SoundFile(str(path))
        if self._file.format == "MPEG":  # libmpg123 prints its complaints to stderr: leave MPEG audio to FFmpeg
            self._file.close()
            raise ValueError("MPEG audio is read with PyAV")
        mask = _wav_channel_mask(path) if self._file.format in ("WAV", "WAVEX") else None
        self.info = AudioInfo(path, int(self._file.samplerate), int(self._file.channels), int(self._file.frames), mask)
        if self._file.format in ("WAV", "WAVEX"):
            _warn_if_truncated(self.info, _wav_declared_frames(path))

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        import soundfile as sf

        try:
            for block in self._file.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                yield np.ascontiguousarray(block.T)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"{self.info.path}: decoding failed part-way (corrupt file?): {exc}") from exc

    def close(self) -> None:
        self._file.close()


class _PyAVReader:
    def __init__(self, path: Path) -> None:
        import av

        self._container = av.open(str(path))
        if not self._container.streams.audio:
            self._container.close()
            raise AudioError(f"{path}: no audio stream in file")
        self._stream = self._container.streams.audio[0]
        rate = int(self._stream.rate or self._stream.codec_context.sample_rate or 0)
        channels = int(self._stream.codec_context.channels or len(self._stream.layout.channels))
        if rate <= 0 or channels <= 0:
            self._container.close()
            raise AudioError(f"{path}: audio stream has no valid sample rate or channel count")
        frames = None
        self._promised: int | None = None  # what the stream header (e.g. an mp3's Xing/Info frame count) says
        if self._stream.duration is not None and self._stream.time_base is not None:
            frames = self._promised = int(round(float(self._stream.duration * self._stream.time_base) * rate))
        elif self._container.duration:
            frames = int(round(self._container.duration / 1_000_000 * rate))
        self.info = AudioInfo(path, rate, channels, frames, _layout_mask(self._stream.layout, channels))

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        import av

        pending: list[np.ndarray] = []
        size = decoded = 0
        try:
            for frame in self._container.decode(self._stream):
                data = _frame_to_array(frame, self.info.channels)
                pending.append(data)
                size += data.shape[1]
                while size >= block_frames:
                    joined = np.concatenate(pending, axis=1)
                    decoded += block_frames
                    yield joined[:, :block_frames]
                    rest = joined[:, block_frames:]
                    pending, size = [rest], rest.shape[1]
        except av.FFmpegError as exc:
            raise AudioError(f"{self.info.path}: decoding failed part-way (corrupt file?): {exc}") from exc
        if size:
            yield np.concatenate(pending, axis=1)
        decoded += size
        if self._promised is not None and self._promised - decoded > max(4096, self._promised // 200):
            # Slack for encoder delay and padding, and for durations estimated from the bitrate.
            missing = self._promised - decoded
            log.warning("%s: file ended early (truncated?): its header promises %.3f s but it holds %.3f s "
                        "(%.3f s missing)", self.info.path, self._promised / self.info.sample_rate,
                        decoded / self.info.sample_rate, missing / self.info.sample_rate)

    def close(self) -> None:
        self._container.close()


#: WAVEFORMATEXTENSIBLE speaker bits, in bit order; FFmpeg's channel names use the same bits.
SPEAKERS = ("FL", "FR", "FC", "LFE", "BL", "BR", "FLC", "FRC", "BC", "SL", "SR", "TC", "TFL", "TFC", "TFR", "TBL",
            "TBC", "TBR")


def _layout_mask(layout: object, channels: int) -> int | None:
    """A PyAV channel layout -> its WAVEFORMATEXTENSIBLE mask, or None for an unknown or unusual layout."""
    try:
        names = [c.name for c in layout.channels]  # type: ignore[attr-defined]
    except Exception:
        return None
    if len(names) != channels or len(set(names)) != channels or not set(names) <= set(SPEAKERS):
        return None
    if names != sorted(names, key=SPEAKERS.index):  # WAVE stores channels in bit order
        return None
    return sum(1 << SPEAKERS.index(n) for n in names)


def _wav_fmt_chunk(f) -> tuple[int, bytes] | None:
    """(offset, body) of a RIFF/WAVE file's fmt chunk, or None."""
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    for _ in range(64):
        chunk = f.read(8)
        if len(chunk) < 8:
            return None
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"fmt ":
            return f.tell(), f.read(size)
        f.seek(size + (size & 1), os.SEEK_CUR)
    return None


def _wav_channel_mask(path: Path) -> int | None:
    """The dwChannelMask of a WAVE_FORMAT_EXTENSIBLE file (None if absent or zero)."""
    try:
        with path.open("rb") as f:
            found = _wav_fmt_chunk(f)
    except OSError:
        return None
    if found is None or len(found[1]) < 24 or struct.unpack("<H", found[1][:2])[0] != 0xFFFE:
        return None
    return struct.unpack("<I", found[1][20:24])[0] or None


def _set_wav_channel_mask(path: Path, mask: int) -> None:
    """Write ``mask`` into the dwChannelMask of a WAVE_FORMAT_EXTENSIBLE file we just wrote."""
    with path.open("r+b") as f:
        found = _wav_fmt_chunk(f)
        if found is None or len(found[1]) < 24 or struct.unpack("<H", found[1][:2])[0] != 0xFFFE:
            raise OSError(f"{path}: no WAVE_FORMAT_EXTENSIBLE header to hold a channel mask")
        f.seek(found[0] + 20)
        f.write(struct.pack("<I", mask))


def _wav_declared_frames(path: Path) -> int | None:
    """The frame count a RIFF/WAVE header promises (its data chunk size), or None when it does not say."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = 0
            for _ in range(64):  # a WAVE file has a handful of chunks before its data
                chunk = f.read(8)
                if len(chunk) < 8:
                    return None
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = f.read(size + (size & 1))
                    if len(fmt) < 14:
                        return None
                    block_align = struct.unpack("<H", fmt[12:14])[0]
                elif cid == b"data":
                    if not block_align or size in (0, 0xFFFFFFFF):  # streamed wavs leave the size open
                        return None
                    return size // block_align
                else:
                    f.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None
    return None


def _warn_if_truncated(info: AudioInfo, declared: int | None) -> None:
    if declared is not None and info.frames is not None and declared > info.frames:
        missing = declared - info.frames
        log.warning("%s: file is truncated: its header promises %d frames but it holds %d (%d frames, %.3f s missing)",
                    info.path, declared, info.frames, missing, missing / info.sample_rate)


def _frame_to_array(frame: object, channels: int) -> np.ndarray:
    """A decoded PyAV audio frame -> float32 (channels, n), whatever its sample format."""
    data = frame.to_ndarray()  # type: ignore[attr-defined]
    fmt = frame.format  # type: ignore[attr-defined]
    if not fmt.is_planar:
        data = data.reshape(-1, channels).T
    if data.dtype.kind == "i":
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    elif data.dtype.kind == "u":  # u8 PCM is offset binary
        data = (data.astype(np.float32) - 128.0) / 128.0
    return np.ascontiguousarray(data, dtype=np.float32)


def open_audio(path: str | os.PathLike[str]) -> AudioReader:
    """Open ``path`` for streaming; every failure is an ``AudioError`` with a one-line message."""
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file")
    try:
        size = path.stat().st_size
        with path.open("rb"):
            pass
    except OSError as exc:
        raise AudioError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes)")
    reader = _try_open(path)
    if reader.info.frames == 0:
        reader.close()
        raise AudioError(f"{path}: contains no audio samples")
    if not MIN_SAMPLE_RATE <= reader.info.sample_rate <= MAX_SAMPLE_RATE:
        reader.close()  # a corrupt header: 1 Hz would mean hours of audio to resample, 2 GHz none at all
        raise AudioError(f"{path}: implausible sample rate {reader.info.sample_rate} Hz (corrupt header?); "
                         f"expected {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz")
    return reader


def _try_open(path: Path) -> AudioReader:
    suffix = path.suffix.lower()
    if suffix in _SOUNDFILE_FIRST:
        openers = [_SoundFileReader, _PyAVReader]
    elif suffix in _PYAV_ONLY:
        openers = [_PyAVReader]  # libsndfile would hand MPEG to libmpg123, which writes its errors to stderr
    else:
        openers = [_PyAVReader, _SoundFileReader]
    for opener in openers:
        try:
            return opener(path)
        except AudioError:
            raise
        except Exception:  # both libraries raise a zoo of exception types for undecodable input
            continue
    raise AudioError(f"{path}: not a readable audio file (corrupt or unsupported format)")


def load(path: str | os.PathLike[str], sample_rate: int | None = None, channels: int | None = None) -> tuple[np.ndarray, int]:
    """Read a whole file -> (float32 (channels, time), rate), optionally resampled and channel-converted."""
    reader = open_audio(path)
    try:
        parts = list(reader.blocks(1 << 18))
    finally:
        reader.close()
    if not parts:
        raise AudioError(f"{path}: contains no audio samples")
    wav = np.concatenate(parts, axis=1)
    rate = reader.info.sample_rate
    if channels is not None:
        wav = convert_channels(wav, channels)
    if sample_rate is not None and sample_rate != rate:
        wav = resample(wav, rate, sample_rate)
        rate = sample_rate
    return wav, rate


def convert_channels(wav: np.ndarray, channels: int) -> np.ndarray:
    """(in_channels, time) -> (channels, time): mono is duplicated, extra channels are downmixed."""
    return (downmix_matrix(wav.shape[0], channels) @ wav).astype(np.float32, copy=False)


def downmix_matrix(in_channels: int, out_channels: int) -> np.ndarray:
    """(out, in) mixing matrix. Mono->N copies; N->mono averages; 5.1 (L R C LFE Ls Rs)->stereo uses ITU
    coefficients without LFE; other N->stereo sends even channels left and odd channels right."""
    if in_channels == out_channels:
        return np.eye(out_channels, dtype=np.float32)
    if in_channels == 1:
        return np.ones((out_channels, 1), dtype=np.float32)
    if out_channels == 1:
        return np.full((1, in_channels), 1.0 / in_channels, dtype=np.float32)
    if out_channels == 2 and in_channels == 6:
        g = 1 / np.sqrt(2)
        m = np.array([[1, 0, g, 0, g, 0], [0, 1, g, 0, 0, g]], dtype=np.float32)
        return m / m.sum(axis=1, keepdims=True)
    if out_channels == 2:
        m = np.zeros((2, in_channels), dtype=np.float32)
        m[0, 0::2] = 1.0
        m[1, 1::2] = 1.0
        return m / m.sum(axis=1, keepdims=True)
    raise AudioError(f"cannot convert {in_channels} channels to {out_channels}")


def resample(wav: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Whole-signal high-quality resampling (soxr) of (channels, time)."""

    if from_rate == to_rate:
        return wav
    out = soxr.resample(np.ascontiguousarray(wav.T), from_rate, to_rate, quality="HQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)


class StreamResampler:
    """Chunk-by-chunk resampling with soxr's streaming API; output equals whole-signal resampling."""

    def __init__(self, from_rate: int, to_rate: int, channels: int) -> None:

        self.identity = from_rate == to_rate
        self._stream = None if self.identity else soxr.ResampleStream(from_rate, to_rate, channels, dtype="float32", quality="HQ")

    def process(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        """block: (channels, n) -> (channels, m)."""
        if self._stream is None:
            return block
        out = self._stream.resample_chunk(np.ascontiguousarray(block.T, dtype=np.float32), last=last)
        return np.ascontiguousarray(out.T)


def check_output_format(fmt: str, bits: str, channels: int) -> None:
    """Reject impossible combinations before any work is done."""
    if fmt not in OUTPUT_FORMATS:
        raise AudioError(f"unsupported output format {fmt!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    if fmt != "mp3" and (fmt, bits) not in _SUBTYPES:
        raise AudioError(f"{fmt} cannot store {bits}-bit samples; use {' or '.join(b for f, b in _SUBTYPES if f == fmt)}")
    if fmt == "mp3" and channels > 2:
        raise AudioError(f"mp3 holds at most 2 channels, not {channels}; use wav or flac")


def check_mp3_bitrate(bitrate: int) -> None:
    """Reject an mp3 bitrate LAME cannot encode (``MP3_BITRATE_RANGE``, kbit/s)."""
    low, high = MP3_BITRATE_RANGE
    if not low <= bitrate <= high:
        raise AudioError(f"--mp3-bitrate {bitrate}: mp3 bitrate must be between {low} and {high} kbit/s")


class AudioWriter:
    """Streams (channels, n) float32 blocks into ``path`` through a temp file renamed on ``commit``.

    Samples outside [-1, 1] are clamped for integer formats and mp3 (rescaling, if wanted, is the caller's job:
    it needs the peak of the whole signal). ``overwrite=False`` refuses to replace an existing file. A wav with
    more than two channels is written as WAVE_FORMAT_EXTENSIBLE with ``channel_mask`` (speaker bits, one per
    channel; libsndfile's default layout for the channel count when None or not matching).
    """

    def __init__(self, path: str | os.PathLike[str], sample_rate: int, channels: int, fmt: str = "wav",
                 bits: str = "16", mp3_bitrate: int = 320, overwrite: bool = False,
                 channel_mask: int | None = None) -> None:
        check_output_format(fmt, bits, channels)
        # More than two channels need WAVE_FORMAT_EXTENSIBLE to say which speaker each is (else players guess).
        self._mask = channel_mask if channel_mask and bin(channel_mask).count("1") == channels else None
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise OutputExistsError(f"{self.path}: already exists (use --force to overwrite)")
        self.fmt, self.bits, self.channels, self.sample_rate = fmt, bits, channels, sample_rate
        self.overwrite = overwrite
        with deferred_signals():  # a signal must not land between creating the temp file and owning it
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=_part_prefix(self.path), suffix=f".part.{fmt}", dir=self.path.parent)
                os.close(fd)
            except OSError as exc:
                raise AudioError(f"{self.path.parent}: cannot write output ({exc.strerror or exc})") from exc
            self._tmp = Path(tmp)
            self._closed = False
            try:
                if fmt == "mp3":
                    self._open_mp3(mp3_bitrate)
                else:
                    import soundfile as sf

                    container = "WAVEX" if fmt == "wav" and channels > 2 else fmt.upper()
                    self._sf = sf.SoundFile(str(self._tmp), "w", samplerate=sample_rate, channels=channels,
                                            subtype=_SUBTYPES[(fmt, bits)], format=container)
            except AudioError:
                self._tmp.unlink(missing_ok=True)
                raise
            except Exception as exc:
                self._tmp.unlink(missing_ok=True)
                raise AudioError(f"{self.path}: cannot open for writing: {self._failure(exc)}") from exc

    def _open_mp3(self, bitrate: int) -> None:
        import av

        check_mp3_bitrate(bitrate)
        self._container = av.open(str(self._tmp), "w", format="mp3")
        self._stream = self._container.add_stream("libmp3lame", rate=self.sample_rate)
        self._layout = "mono" if self.channels == 1 else "stereo"
        self._stream.layout = self._layout
        self._stream.bit_rate = bitrate * 1000
        self._pts = 0

    def write(self, block: np.ndarray) -> None:
        """block: (channels, n) float32."""
        if block.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {block.shape[0]}")
        if self.fmt == "mp3" or self.bits != "32f":
            block = np.clip(block, -1.0, 1.0)
        try:
            if self.fmt == "mp3":
                import av

                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block, dtype=np.float32), format="fltp", layout=self._layout)
                frame.sample_rate = self.sample_rate
                frame.pts = self._pts
                self._pts += block.shape[1]
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)
            else:
                self._sf.write(np.ascontiguousarray(block.T))
        except Exception as exc:  # a full disk, a file size limit, a vanished directory...
            reason = self._failure(exc)
            self.abort()
            raise AudioError(f"{self.path}: writing failed: {reason}") from exc

    def finish(self) -> Path:
        """Complete the file without publishing it.

        Returns:
            The finished hidden temporary file next to ``path``; the caller moves it into place (``publish``)
            or deletes it.
        """
        try:
            if self.fmt == "mp3":
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                self._container.close()
            else:
                self._sf.close()
                if self._mask is not None and self.fmt == "wav" and self.channels > 2:
                    _set_wav_channel_mask(self._tmp, self._mask)  # libsndfile writes its default layout
            self._closed = True
        except Exception as exc:
            reason = self._failure(exc)
            self.abort()
            raise AudioError(f"{self.path}: writing failed: {reason}") from exc
        return self._tmp

    def commit(self) -> Path:
        """Finish the file and move it into place (refusing to replace an existing file unless ``overwrite``).

        Returns:
            The target path.
        """
        tmp = self.finish()
        try:
            publish({self.path: tmp}, overwrite=self.overwrite)
        finally:
            tmp.unlink(missing_ok=True)
        return self.path

    def _failure(self, exc: Exception) -> str:
        """One-line reason for a failed write; libsndfile keeps the system error on the handle, not the exception."""
        if isinstance(exc, OSError) and exc.strerror:
            return exc.strerror[:1].lower() + exc.strerror[1:]
        if self.fmt != "mp3":
            try:
                import soundfile as sf

                handle = self._sf._file if getattr(self, "_sf", None) is not None else sf._ffi.NULL  # NULL: failed open
                text = sf._ffi.string(sf._snd.sf_strerror(handle)).decode("utf-8", "replace")
            except Exception:
                text = ""
            if text.startswith("System error"):
                text = text.split(":", 1)[-1].strip().rstrip(".")
                return text[:1].lower() + text[1:]
        # Some encoders (FLAC) report only "encoder error": try a write ourselves to learn the system's reason.
        probed = _probe_write(self._tmp)
        if probed:
            return probed[:1].lower() + probed[1:]
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

    def abort(self) -> None:
        """Drop the partial output; the target path is left untouched."""
        if not self._closed:
            try:
                if self.fmt == "mp3":
                    self._container.close()
                else:
                    self._sf.close()
            except Exception:
                pass
            self._closed = True
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "AudioWriter":
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def _probe_write(path: Path) -> str | None:
    """Append 64 KiB to our own (doomed) temp file: the system's reason it cannot be written, or None."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError as exc:
        return exc.strerror
    try:
        os.write(fd, bytes(1 << 16))
    except OSError as exc:
        return exc.strerror
    finally:
        os.close(fd)
    return None


#: Marks our temporary files: ``.<target name>.sf<pid>.<random>.part.<ext>``, so a later run can tell whose they are.
_PART_RE = re.compile(r"^\.(?P<name>.+)\.sf(?P<pid>\d+)\.[^.]+\.part\.[a-z0-9]+$")


def _part_prefix(target: Path) -> str:
    return f".{target.name}.sf{os.getpid()}."


def sweep_stale_parts(target: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files for ``target`` left by runs that died (killed, power loss) before cleaning up.

    Only files whose writer process no longer exists are removed, so a run writing right now is left alone.

    Args:
        target: an output path; its directory is searched for that path's temporary files.

    Returns:
        The files removed.
    """
    target = Path(target)
    removed = []
    if os.name != "posix" or not target.parent.is_dir():
        return removed
    for entry in target.parent.iterdir():
        match = _PART_RE.match(entry.name)
        if not match or match["name"] != target.name:
            continue
        if _process_alive(int(match["pid"])):
            continue
        try:
            entry.unlink()
            removed.append(entry)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("%s: cannot remove a stale temporary file (%s)", entry, exc.strerror or exc)
    if removed:
        log.info("removed %d stale temporary file(s) next to %s", len(removed), target)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM/SIGHUP until the block ends, so a group of renames is never cut in half.

    The Python-level handlers are swapped for one that only notes the signal; on exit the old handlers come
    back and each noted signal is raised again (so Ctrl-C still interrupts, SIGTERM still terminates, just
    after the block). Masking with ``pthread_sigmask`` would not do: it covers one thread, and a process
    signal may land on any of torch's threads. Python runs handlers on the main thread only, so elsewhere
    nothing can interrupt the block and nothing needs holding. Ignored signals stay ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: object) -> None:
        caught.append(signum)

    previous = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) not in (signal.SIG_IGN, None):
            previous[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)


def publish(parts: Mapping[Path, Path], overwrite: bool = False) -> None:
    """Move finished temporary files onto their targets as one step: all of them or (on failure) none.

    Without ``overwrite`` each target is claimed exclusively (a hard link fails if the name exists), so of two
    runs racing for the same outputs exactly one wins. Signals are held while the files move.

    Args:
        parts: target path -> finished temporary file in the same directory.
        overwrite: replace existing targets instead of refusing.

    Raises:
        AudioError: a target exists (without ``overwrite``) or cannot be written; targets published so far by
            this call are removed again.
    """
    claimed: list[Path] = []
    linked: set[Path] = set()
    target = None
    with deferred_signals():
        try:
            for target, tmp in parts.items():
                os.chmod(tmp, default_file_mode())  # mkstemp makes 0600 files; outputs should look like any other
                if overwrite:
                    continue
                try:  # a hard link claims the name atomically and fails if it exists
                    os.link(tmp, target)
                    linked.add(target)
                except FileExistsError:
                    raise
                except OSError:  # no hard links on this filesystem: reserve the name, rename over it below
                    os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                claimed.append(target)
            for target, tmp in parts.items():
                if target in linked:
                    tmp.unlink()
                else:
                    os.replace(tmp, target)
        except FileExistsError as exc:
            _unclaim(claimed)
            raise OutputExistsError(f"{target}: already exists (use --force to overwrite)") from exc
        except OSError as exc:
            _unclaim(claimed)
            raise AudioError(f"{target}: cannot write output ({exc.strerror or exc})") from exc


def _unclaim(claimed: list[Path]) -> None:
    for path in claimed:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def staging_path(target: Path, directory: bool = True, noun: str = "output", suffix: str = ".part") -> Path:
    """A new, empty hidden folder (or file) beside ``target`` (``.<name>.stemforge-<random><suffix>``).

    Hidden, so song discovery and the like skip it; the ``.part`` suffix marks it as unfinished.

    Args:
        target: what will be published from it (its parent is made if missing).
        directory: a folder, else an empty file.
        noun: what is being written, for the error message ("song", "session", ...).
        suffix: the name's ending.

    Returns:
        The new folder or file.

    Raises:
        AudioError: it cannot be made (a read-only folder, a full disk).
    """
    prefix = f".{target.name}.stemforge-"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if directory:
            return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=target.parent))
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    except OSError as exc:
        raise AudioError(f"{target}: cannot write the {noun} ({exc.strerror or exc})") from exc
    os.close(fd)
    return Path(name)


def publish_folder(staged: Path, target: Path, force: bool = False, noun: str = "output") -> None:
    """Move the finished folder ``staged`` onto ``target`` in one rename, never losing what was there.

    ``publish_staged`` with a rename that gives ``staged`` the usual folder mode (not ``mkdtemp``'s 0700) and
    refuses a non-empty folder that appeared at ``target`` meanwhile (POSIX ``rename`` replaces only an empty one).

    Args:
        staged: the finished folder, in the same directory as ``target``.
        target: where it goes.
        force: replace an existing ``target`` (folder or file).
        noun: what is being written, for the error message.

    Raises:
        OutputExistsError: ``target`` exists (without ``force``) or appeared meanwhile.
        AudioError: the rename failed (``staged`` is left for the caller to remove).
    """
    publish_staged(staged, target, _rename_folder, force=force, noun=noun)


def _rename_folder(staged: Path, target: Path) -> None:
    os.chmod(staged, folder_mode())
    os.rename(staged, target)  # fails with ENOTEMPTY/EEXIST on a non-empty folder, ENOTDIR on a file


def publish_staged(staged: Path, target: Path, move: Callable[[Path, Path], None], force: bool = False,
                   noun: str = "output") -> None:
    """Put the finished folder or file ``staged`` in place of ``target`` with ``move``, never losing what was there.

    Without ``force`` an existing ``target`` is refused. With it, the old ``target`` is first moved aside (a
    hidden name beside it), ``move(staged, target)`` puts the new one in place, and only then is the old one
    deleted; if ``move`` fails the old one is put back. Signals are held meanwhile.

    Args:
        staged: the finished folder or file, in the same directory as ``target``.
        target: where it goes.
        move: moves ``staged`` to the free name ``target``; it must fail (``FileExistsError``, ``ENOTEMPTY``,
            ``ENOTDIR``) rather than replace something that appeared there meanwhile.
        force: replace an existing ``target`` (folder or file).
        noun: what is being written, for the error message.

    Raises:
        OutputExistsError: ``target`` exists (without ``force``) or appeared meanwhile.
        AudioError: ``move`` failed (``staged`` is left for the caller to remove).
    """
    with deferred_signals():
        old = None
        if os.path.lexists(target):
            if not force:
                raise OutputExistsError(f"{target}: already exists (use --force to replace it)")
            # A free name beside the target to move it to (an empty folder for a folder: rename replaces it).
            old = staging_path(target, target.is_dir() and not target.is_symlink(), noun, suffix=".old")
            try:
                os.replace(target, old)
            except OSError as exc:
                remove_tree(old)
                raise AudioError(f"{target}: cannot replace the {noun} ({exc.strerror or exc})") from exc
        try:
            move(staged, target)
        except BaseException as exc:
            if old is not None:
                os.replace(old, target)
            if isinstance(exc, OSError) and exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                raise OutputExistsError(f"{target}: already exists (use --force to replace it)") from exc
            if isinstance(exc, OSError):
                raise AudioError(f"{target}: cannot write the {noun} ({exc.strerror or exc})") from exc
            raise
    if old is not None:
        remove_tree(old)


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike[str], force: bool = False, noun: str = "output") -> Iterator[Path]:
    """Build the folder ``target`` out of sight and publish it (``publish_folder``) when the block ends.

    Yields a new hidden folder beside ``target``. An error or an interruption inside the block, or a failed
    publication, removes it, so nothing half-written is left behind; with ``force`` the old ``target`` stays
    in place until the new one replaces it.

    Args:
        target: the folder to write.
        force: replace an existing ``target``.
        noun: what is being written ("song", "session", ...), for error messages.

    Yields:
        The staging folder to fill.

    Raises:
        OutputExistsError: ``target`` exists and ``force`` is false (checked first, and again when publishing).
        AudioError: the staging folder cannot be made or the rename failed.
    """
    target = Path(target)
    if os.path.lexists(target) and not force:
        raise OutputExistsError(f"{target}: already exists (use --force to replace it)")
    staged = staging_path(target, directory=True, noun=noun)
    try:
        yield staged
        publish_folder(staged, target, force=force, noun=noun)
    except BaseException:
        remove_tree(staged)
        raise


def remove_tree(path: Path) -> None:
    """Delete a file or folder we made (a staging one), quietly; a symlink is removed, not followed."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def default_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def folder_mode() -> int:
    """The mode a plain ``mkdir`` would give a new folder under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


def save(path: str | os.PathLike[str], wav: np.ndarray, sample_rate: int, bits: str | int = 16,
         mp3_bitrate: int = 320, overwrite: bool = True) -> Path:
    """Write a whole (channels, time) array; the format comes from the extension (.wav, .flac, .mp3)."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    bits = "32f" if str(bits) in ("32", "32f") else str(bits)
    with AudioWriter(path, sample_rate, wav.shape[0], fmt, bits, mp3_bitrate, overwrite=overwrite) as writer:
        for start in range(0, wav.shape[1], 1 << 18):
            writer.write(wav[:, start:start + (1 << 18)])
    return path
