"""NI Stems files (``.stem.mp4``): the master mix and four stems in one MP4, as Traktor and the DJ apps read it.

Layout (Native Instruments' Stems format, as its ``stem-creator`` tool builds it with MP4Box): five audio
tracks in the order master, drums, bass, other, vocals (``STEM_FILE_STREAMS``, the MUSDB18 order our reader
``stemforge.data.stemmp4`` expects), AAC (256 kbit/s) or ALAC (24-bit, lossless); only the master track is
enabled, so a plain player plays the mix; the ``ftyp`` major brand is ``M4A ``. The stem names, colours and
the master limiter/compressor settings are a JSON document stored raw in a ``stem`` box under
``moov/udta`` (``ni_metadata``). PyAV writes the audio; the ``stem`` box is added afterwards by rewriting
the ``moov`` box, which FFmpeg places after the media data, so no sample offset moves.

Everything is written to a hidden temporary file next to the target and moved into place only when complete
(``stemforge.audio.publish``: never over an existing file unless asked). Reading the ``stem`` box parses JSON
only (``read_stem_metadata``). Reading and writing stem files import no torch; ``separate_to_stem_file`` runs a
separator.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import struct
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from stemforge.audio import (AudioReader, AudioWriter, OutputExistsError, StreamResampler, _part_prefix,
                             _process_alive, convert_channels, deferred_signals, open_audio, publish)
from stemforge.data.stemmp4 import STEM_MP4_STREAMS
from stemforge.errors import AudioError, StemforgeError
from stemforge.stems import FOUR_STEMS

if TYPE_CHECKING:  # the separator (and torch) are imported only where a track is separated
    from stemforge.separate import OutputOptions, Separator

log = logging.getLogger(__name__)

#: The ``--format`` name and file suffix of an NI Stems file.
STEM_FORMAT = "stem.mp4"
#: Audio streams of a stem file, in order: the master mix, then the four stems.
STEM_FILE_STREAMS: tuple[str, ...] = STEM_MP4_STREAMS
#: Codecs: AAC (lossy, what most stem files use) and ALAC (lossless 24-bit, ``--bits 24``).
STEM_CODECS = ("aac", "alac")
#: NI's default stem colours (stem-creator's defaults), by stem.
NI_COLOURS = {"drums": "#009E73", "bass": "#D55E00", "other": "#CC79A7", "vocals": "#56B4E9"}
#: AAC bitrate in bit/s (NI's stem-creator uses 256 kbit/s).
AAC_BITRATE = 256_000
#: Frames read from each source per encoding step.
_BLOCK = 1 << 16
#: Largest ``stem`` box we read (the JSON is a few hundred bytes).
_MAX_STEM_BOX = 1 << 20
_INT24 = 1 << 23


@dataclasses.dataclass(frozen=True)
class MasteringDSP:
    """The master bus block of NI's ``stem`` JSON (Traktor applies it to the summed stems); NI's defaults, off."""

    compressor_enabled: bool = False
    compressor_ratio: float = 3.0
    compressor_input_gain: float = 0.5
    compressor_output_gain: float = 0.5
    compressor_attack: float = 0.003  # seconds
    compressor_release: float = 0.3  # seconds
    compressor_threshold: float = 0.0
    compressor_hp_cutoff: float = 300.0  # Hz
    compressor_dry_wet: float = 50.0  # percent
    limiter_enabled: bool = False
    limiter_threshold: float = 0.0
    limiter_release: float = 0.05  # seconds
    limiter_ceiling: float = -0.35  # dB

    def as_json(self) -> dict:
        """NI's ``mastering_dsp`` object: ``{"compressor": {...}, "limiter": {...}}``."""
        return {
            "compressor": {"enabled": self.compressor_enabled, "ratio": self.compressor_ratio,
                           "input_gain": self.compressor_input_gain, "output_gain": self.compressor_output_gain,
                           "attack": self.compressor_attack, "release": self.compressor_release,
                           "threshold": self.compressor_threshold, "hp_cutoff": self.compressor_hp_cutoff,
                           "dry_wet": self.compressor_dry_wet},
            "limiter": {"enabled": self.limiter_enabled, "threshold": self.limiter_threshold,
                        "release": self.limiter_release, "ceiling": self.limiter_ceiling},
        }


def ni_metadata(stems: Sequence[str] = FOUR_STEMS, mastering: MasteringDSP | None = None) -> dict:
    """The JSON document of NI's ``stem`` box.

    Args:
        stems: the four stem names in stream order (after the master).
        mastering: the master limiter/compressor settings (NI's defaults, both off, when None).

    Returns:
        ``{"version": 1, "mastering_dsp": {"compressor": {...}, "limiter": {...}}, "stems": [{"name", "color"}]}``.
    """
    return {"version": 1, "mastering_dsp": (mastering or MasteringDSP()).as_json(),
            "stems": [{"name": s.capitalize(), "color": NI_COLOURS.get(s, "#000000")} for s in stems]}


# --- MP4 boxes -------------------------------------------------------------------------------------------------


def _boxes(f, start: int, end: int):
    """Yield ``(type, offset, header_size, size)`` of the boxes in ``[start, end)`` of an open binary file."""
    offset = start
    while offset + 8 <= end:
        f.seek(offset)
        head = f.read(8)
        if len(head) < 8:
            return
        size, kind = struct.unpack(">I4s", head)
        header = 8
        if size == 1:
            large = f.read(8)
            if len(large) < 8:
                raise ValueError("truncated box header")
            size, header = struct.unpack(">Q", large)[0], 16
        elif size == 0:
            size = end - offset
        if size < header or offset + size > end:
            raise ValueError(f"box {kind!r} at {offset} has a bad size {size}")
        yield kind, offset, header, size
        offset += size


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _add_stem_box(path: Path, metadata: dict) -> None:
    """Put ``metadata`` as a ``moov/udta/stem`` box into the MP4 at ``path`` (its ``moov`` must be the last box)."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        top = list(_boxes(f, 0, size))
        moov = [b for b in top if b[0] == b"moov"]
        if len(moov) != 1 or top[-1][0] != b"moov":
            raise ValueError("expected one moov box at the end of the file")
        _, offset, header, moov_size = moov[0]
        children = []
        for kind, child, child_header, child_size in _boxes(f, offset + header, offset + moov_size):
            f.seek(child)
            data = f.read(child_size)
            if kind == b"udta":
                inner = [d for d in _split(data[child_header:]) if d[4:8] != b"stem"]
                data = _box(b"udta", b"".join(inner))
            children.append((kind, data))
        stem = _box(b"stem", json.dumps(metadata).encode("utf-8"))
        if not any(kind == b"udta" for kind, _ in children):
            children.append((b"udta", _box(b"udta", b"")))
        body = b"".join(_box(b"udta", data[8:] + stem) if kind == b"udta" else data for kind, data in children)
        f.seek(offset)
        f.write(_box(b"moov", body))
        f.truncate()


def _split(data: bytes) -> list[bytes]:
    """The boxes in ``data`` (plain 32-bit sizes, as in ``udta``), each with its header."""
    out, offset = [], 0
    while offset + 8 <= len(data):
        size = struct.unpack(">I", data[offset:offset + 4])[0]
        if size < 8 or offset + size > len(data):
            raise ValueError("bad box inside udta")
        out.append(data[offset:offset + size])
        offset += size
    return out


def read_stem_metadata(path: str | os.PathLike[str]) -> dict:
    """NI's ``stem`` JSON of a ``.stem.mp4`` file (``moov/udta/stem``), parsed with ``json`` only.

    Args:
        path: the stem file.

    Returns:
        The JSON object (``version``, ``mastering_dsp``, ``stems``).

    Raises:
        AudioError: the file is unreadable, not an MP4, has no ``stem`` box, or the box is not a JSON object.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            for kind, offset, header, box_size in _boxes(f, 0, size):
                if kind != b"moov":
                    continue
                for child, child_offset, child_header, child_size in _boxes(f, offset + header, offset + box_size):
                    if child != b"udta":
                        continue
                    for leaf, leaf_offset, leaf_header, leaf_size in _boxes(f, child_offset + child_header,
                                                                            child_offset + child_size):
                        if leaf == b"stem":
                            if leaf_size > _MAX_STEM_BOX:
                                raise ValueError(f"stem box of {leaf_size} bytes")
                            f.seek(leaf_offset + leaf_header)
                            document = json.loads(f.read(leaf_size - leaf_header).decode("utf-8"))
                            if not isinstance(document, dict):
                                raise ValueError("stem box is not a JSON object")
                            return document
    except OSError as exc:
        raise AudioError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise AudioError(f"{path}: not a valid NI Stems file ({exc})") from None
    raise AudioError(f"{path}: no NI stem metadata (moov/udta/stem box); not an NI Stems file")


# --- writing ---------------------------------------------------------------------------------------------------


def write_stem_file(path: str | os.PathLike[str], sources: Mapping[str, str | os.PathLike[str]], *,
                    codec: str = "aac", overwrite: bool = False, metadata: dict | None = None) -> Path:
    """Write an NI Stems file from five audio files of the same rate, channel count (1 or 2) and length.

    Args:
        path: the ``.stem.mp4`` to write.
        sources: ``{"mixture": file, "drums": file, "bass": file, "other": file, "vocals": file}``; each file
            holds (channels, time) audio. With ALAC, samples are stored as 24-bit integers (a 16- or 24-bit
            source is stored bit-exactly); with AAC at 256 kbit/s.
        codec: ``aac`` or ``alac``.
        overwrite: replace an existing ``path`` (otherwise an error).
        metadata: the ``stem`` JSON (``ni_metadata()`` when None).

    Returns:
        ``path``.

    Raises:
        StemforgeError: wrong or mismatched sources, an unknown codec, an existing output, or a failed write;
            nothing is left at ``path`` (or beside it) on failure.
    """
    path = Path(path)
    if codec not in STEM_CODECS:
        raise StemforgeError(f"stem file codec {codec!r}: choose one of {', '.join(STEM_CODECS)}")
    if set(sources) != set(STEM_FILE_STREAMS):
        raise StemforgeError(f"a stem file needs exactly {', '.join(STEM_FILE_STREAMS)}; got {', '.join(sources)}")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists (use --force to overwrite)")
    readers: list[AudioReader] = []
    tmp: Path | None = None
    try:
        for name in STEM_FILE_STREAMS:
            readers.append(open_audio(sources[name]))
        infos = [r.info for r in readers]
        first = infos[0]
        for name, info in zip(STEM_FILE_STREAMS, infos):
            if (info.sample_rate, info.channels) != (first.sample_rate, first.channels):
                raise AudioError(f"{info.path}: {info.sample_rate} Hz, {info.channels} channels, but "
                                 f"{first.path} has {first.sample_rate} Hz, {first.channels} channels")
            if info.frames != first.frames:
                raise AudioError(f"{info.path}: {info.frames} frames, but {first.path} has {first.frames}")
        if first.channels not in (1, 2):
            raise AudioError(f"NI Stems hold mono or stereo streams, not {first.channels} channels")
        with deferred_signals():  # the temp file is created and recorded together
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, name = tempfile.mkstemp(prefix=_part_prefix(path), suffix=".part.mp4", dir=path.parent)
                os.close(fd)
            except OSError as exc:
                raise AudioError(f"{path.parent}: cannot write output ({exc.strerror or exc})") from exc
            tmp = Path(name)
        try:
            _encode(tmp, readers, codec, first.sample_rate, first.channels)
            _add_stem_box(tmp, metadata if metadata is not None else ni_metadata())
        except (OSError, ValueError) as exc:
            raise AudioError(f"{path}: writing failed: {getattr(exc, 'strerror', None) or exc}") from exc
        publish({path: tmp}, overwrite=overwrite)
    finally:
        for reader in readers:
            reader.close()
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return path


def _encode(tmp: Path, readers: list[AudioReader], codec: str, rate: int, channels: int) -> None:
    """Encode the readers' audio, block by block in lockstep, as the audio tracks of ``tmp``."""
    import av

    layout = "mono" if channels == 1 else "stereo"
    fmt = "s32p" if codec == "alac" else "fltp"
    with av.open(str(tmp), "w", format="mp4", options={"brand": "M4A "}) as container:
        streams = []
        for name in STEM_FILE_STREAMS:
            stream = container.add_stream(codec, rate=rate, layout=layout)
            stream.format = fmt
            if codec == "aac":
                stream.bit_rate = AAC_BITRATE
            stream.metadata["title"] = stream.metadata["handler_name"] = name.capitalize()
            streams.append(stream)
        iterators = [r.blocks(_BLOCK) for r in readers]
        pts = 0
        while True:
            blocks = [next(it, None) for it in iterators]
            if all(b is None for b in blocks):
                break
            if any(b is None for b in blocks) or len({b.shape[1] for b in blocks}) != 1:
                raise ValueError("the sources ended at different lengths")
            for stream, block in zip(streams, blocks):
                if codec == "alac":  # 24-bit integers, in the top bits of s32 as FFmpeg's ALAC encoder wants them
                    ints = np.clip(np.round(block.astype(np.float64) * _INT24), -_INT24, _INT24 - 1).astype(np.int32)
                    data = np.ascontiguousarray(ints << 8)
                else:
                    data = np.ascontiguousarray(block, dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
                frame.sample_rate, frame.pts = rate, pts
                for packet in stream.encode(frame):
                    container.mux(packet)
            pts += blocks[0].shape[1]
        for stream in streams:
            for packet in stream.encode(None):
                container.mux(packet)


# --- separating into a stem file -------------------------------------------------------------------------------


def stem_file_path(model_name: str, track: Path, directory: Path, relpath: str | Path = "") -> Path:
    """Where ``separate --format stem.mp4`` writes ``track``.

    Args:
        model_name: the separator's name (the folder under ``directory``).
        track: the input file.
        directory: the output folder.
        relpath: the track's folder relative to the input directory it was found in.

    Returns:
        ``directory/<model>/<relpath>/<track name without extension>.stem.mp4``.
    """
    from stemforge.separate import _safe_part

    parts = [_safe_part(p) for p in Path(relpath).parts if p not in ("", ".")]
    return Path(directory, _safe_part(model_name), *parts, f"{_safe_part(track.stem)}.{STEM_FORMAT}")


def codec_for_bits(bits: str | None) -> str:
    """The stem file codec for a ``--bits`` value.

    Args:
        bits: ``None`` or ``"24"``.

    Returns:
        ``"aac"`` for None, ``"alac"`` for 24.

    Raises:
        StemforgeError: any other bit depth.
    """
    if bits is None:
        return "aac"
    if bits == "24":
        return "alac"
    raise StemforgeError(f"--bits {bits} does not apply to --format {STEM_FORMAT}: leave it out for AAC or use "
                         "--bits 24 for lossless ALAC")


def separate_to_stem_file(separator: Separator, track: str | os.PathLike[str], output: OutputOptions, *,
                          relpath: str | Path = "", progress: bool = False) -> Path:
    """Separate ``track`` into one NI Stems file: master (the input) + drums, bass, other, vocals.

    The stems are written as 24-bit wavs to a hidden staging folder by ``Separator.separate_file`` (so clipping,
    sample rate and channel options work as for wav), then encoded with the input (resampled and channel-
    converted the same way) as the master. ``output.bits`` picks the codec (``codec_for_bits``).

    Args:
        separator: a separator whose model has the four stems drums, bass, other, vocals.
        track: the audio file.
        output: directory, bits (None: AAC, 24: ALAC), clip mode, keep_rate/keep_channels, force.
        relpath: the track's folder relative to the input directory (mirrored under the output folder).
        progress: show a progress bar while separating.

    Returns:
        The written ``.stem.mp4``.

    Raises:
        StemforgeError: a model without the four stems, an output that exists (without ``force``), or any
            error of the separation or the write; nothing is left behind.
    """
    track = Path(track)
    codec = codec_for_bits(output.bits)
    if sorted(separator.sources) != sorted(FOUR_STEMS):
        raise StemforgeError(f"--format {STEM_FORMAT} needs a model with the stems {', '.join(FOUR_STEMS)}; "
                             f"{separator.name!r} has {', '.join(separator.sources)}")
    if output.keep_channels:
        reader = open_audio(track)
        reader.close()
        if reader.info.channels > 2:
            raise StemforgeError(f"{track}: --keep-channels would give {reader.info.channels}-channel stems, but NI "
                                 "Stems hold mono or stereo streams; leave --keep-channels out")
    target = stem_file_path(separator.name, track, output.directory, relpath)
    if target.exists() and not output.force:
        raise OutputExistsError(f"{track}: output already exists: {target} (use --force to overwrite, "
                                "--skip-existing to skip it)")
    made = [d for d in (target.parent, *target.parent.parents) if not d.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_staging(target)
    staging = Path(tempfile.mkdtemp(prefix=_part_prefix(target), suffix=".staging", dir=target.parent))
    try:
        stage = dataclasses.replace(output, directory=staging, fmt="wav", bits="24", mp3_bitrate=None,
                                    filename="{stem}.{ext}", stems=None, two_stems=None, force=True)
        stems = separator.separate_file(track, stage, progress=progress)
        reader = open_audio(stems[FOUR_STEMS[0]])
        reader.close()
        master = _stage_master(track, staging / "mixture.wav", reader.info.sample_rate, reader.info.channels,
                               reader.info.frames)
        write_stem_file(target, {"mixture": master, **stems}, codec=codec, overwrite=output.force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:  # deepest first: a failed run leaves no empty folders
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return target


def _stage_master(track: Path, dest: Path, rate: int, channels: int, frames: int) -> Path:
    """The input as a 24-bit wav at the stems' rate, channel count and length (streamed: memory stays flat)."""
    reader = open_audio(track)
    writer = AudioWriter(dest, rate, channels, "wav", "24")
    try:
        resampler = StreamResampler(reader.info.sample_rate, rate, channels)
        written = 0

        def put(block: np.ndarray) -> None:
            nonlocal written
            block = block[:, :frames - written]
            writer.write(block)
            written += block.shape[1]

        for block in reader.blocks(_BLOCK):
            put(resampler.process(convert_channels(block, channels)))
        put(resampler.process(np.zeros((channels, 0), np.float32), last=True))
        if written < frames:
            writer.write(np.zeros((channels, frames - written), np.float32))
        return writer.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        reader.close()


_STAGING_RE = re.compile(r"^\.(?P<name>.+)\.sf(?P<pid>\d+)\.[^.]+\.staging$")


def _sweep_stale_staging(target: Path) -> None:
    """Remove staging folders for ``target`` left by runs that were killed outright."""
    for entry in target.parent.iterdir():
        match = _STAGING_RE.match(entry.name)
        if match and match["name"] == target.name and entry.is_dir() and not _process_alive(int(match["pid"])):
            shutil.rmtree(entry, ignore_errors=True)
