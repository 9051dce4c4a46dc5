"""Songs on disk: find them, check them, and read their stems.

Layouts understood (any mix of them under the given roots):

* MUSDB18-style folders: ``song/mixture.wav`` plus ``song/<source>.wav`` (or ``.flac``);
* MUSDB18 ``.stem.mp4`` files (streams: mixture, drums, bass, other, vocals), read with PyAV;
* MoisesDB-like folders: ``song/<stem>/*.wav`` with several files per stem, summed;
* a manifest, ``.csv`` (columns ``name`` plus one column per source, several paths joined by ``;``) or
  ``.json`` (a list of ``{"name": ..., "sources": {source: path or [paths]}}``), paths relative to it.

Every song is checked when found: all of its files must share one sample rate and one length, and a
file that cannot be read is reported by name (never skipped). Sources a song lacks read as silence.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import soundfile as sf
import soxr

from stemforge.data.stemmp4 import STEM_MP4_STREAMS, probe_stream, read_stream
from stemforge.errors import AudioError, StemforgeError
from stemforge.stems import FOUR_STEMS

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")
#: MoisesDB-like stem folder name -> stemforge source (others go to "other", or to itself if requested).
STEM_ALIASES = {
    "vocals": "vocals", "vocal": "vocals", "voice": "vocals", "drums": "drums", "percussion": "drums",
    "bass": "bass", "guitar": "guitar", "guitars": "guitar", "piano": "piano", "keys": "piano",
}
#: Names recognised as stems (files or folders); those not in STEM_ALIASES belong to "other".
KNOWN_STEMS = frozenset(STEM_ALIASES) | {"other", "other_keys", "other_plucked", "bowed_strings", "wind",
                                         "strings", "synth", "fx", "accompaniment"}


@dataclasses.dataclass(frozen=True)
class AudioFile:
    """One file (or one stream of a multi-stream ``.stem.mp4``)."""

    path: Path
    stream: int | None = None

    def __str__(self) -> str:
        return str(self.path) if self.stream is None else f"{self.path} (stream {self.stream})"


@dataclasses.dataclass
class Song:
    """A song: for each source the files that are summed to make it; rate and length are checked."""

    name: str
    sources: dict[str, list[AudioFile]]
    sample_rate: int = 0
    length: int = 0  # frames at ``sample_rate``
    mixture: AudioFile | None = None  # checked for rate/length, never read (the mixture is the stems' sum)

    @property
    def seconds(self) -> float:
        return self.length / self.sample_rate if self.sample_rate else 0.0


# ----------------------------------------------------------------------------------------------- probing

def _probe(file: AudioFile) -> tuple[int, int, int]:
    """(sample_rate, frames, channels) of a file; AudioError naming the file when it is unreadable."""
    if file.stream is not None:
        return probe_stream(str(file.path), file.stream)
    try:
        info = sf.info(str(file.path))
    except Exception as exc:  # soundfile raises several types for corrupt files
        raise AudioError(f"cannot read {file}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if info.frames <= 0:
        raise AudioError(f"{file} has no audio frames")
    return int(info.samplerate), int(info.frames), int(info.channels)


def check_song(song: Song) -> Song:
    """Fill in rate/length and verify every file agrees; AudioError naming the odd file otherwise.

    The reference is what most of the song's files (mixture included) agree on, so the message blames
    the file that is actually different.
    """
    files = [f for fs in song.sources.values() for f in fs] + ([song.mixture] if song.mixture else [])
    if not files:
        raise StemforgeError(f"song {song.name!r} has no source files")
    probed = []
    for file in files:
        if file.stream is None and not file.path.is_file():
            raise AudioError(f"song {song.name!r}: {file} does not exist")
        rate, frames, _ = _probe(file)
        probed.append((file, rate, frames))
    votes = collections.Counter((rate, frames) for _, rate, frames in probed)
    (ref_rate, ref_frames), _ = votes.most_common(1)[0]
    ref_file = next(f for f, r, n in probed if (r, n) == (ref_rate, ref_frames))
    for file, rate, frames in probed:
        if rate != ref_rate:
            raise AudioError(f"song {song.name!r}: {file} is {rate} Hz but {ref_file} is {ref_rate} Hz")
        if frames != ref_frames:
            raise AudioError(f"song {song.name!r}: {file} has {frames} frames but {ref_file} has {ref_frames}")
    song.sample_rate, song.length = ref_rate, ref_frames
    return song


# --------------------------------------------------------------------------------------------- discovery

def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def _map_stem(name: str, sources: Sequence[str]) -> str | None:
    """A stem folder/file name -> the requested source it belongs to (None: mixture or not a stem)."""
    key = name.lower()
    if key not in KNOWN_STEMS:
        return None
    alias = STEM_ALIASES.get(key, "other")
    if alias in sources:
        return alias
    return "other" if "other" in sources else None


def _stem_name(path: Path) -> str:
    return path.name[: -len(path.suffix)].lower()


def _folder_song(folder: Path, sources: Sequence[str], name: str) -> Song | None:
    """A MUSDB-style (files named after stems) or MoisesDB-style (folders named after stems) song, or None."""
    song_sources: dict[str, list[AudioFile]] = {}
    is_song = False
    mixture = None
    for path in _audio_files(folder):
        if _stem_name(path) == "mixture":
            mixture = AudioFile(path)
        if _stem_name(path) in KNOWN_STEMS or _stem_name(path) == "mixture":
            is_song = True
            target = _map_stem(_stem_name(path), sources)
            if target is not None:
                song_sources.setdefault(target, []).append(AudioFile(path))
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name.lower() in KNOWN_STEMS):
        sub_files = _audio_files(sub)
        if sub_files:
            is_song = True
            target = _map_stem(sub.name, sources)
            if target is not None:
                song_sources.setdefault(target, []).extend(AudioFile(p) for p in sub_files)
    return Song(name, song_sources, mixture=mixture) if is_song else None


def _walk(folder: Path, root: Path, sources: Sequence[str], songs: list[Song]) -> None:
    """Depth-first search for songs; a folder that is a song is not searched further.

    Hidden entries (a name starting with ".") are skipped: ``.git``, and the staging folders of a song that
    ``data synth`` was still writing when it was killed.
    """
    name = str(folder.relative_to(root)) if folder != root else folder.name
    song = _folder_song(folder, sources, name)
    if song is not None:
        songs.append(song)
        return
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            _walk(path, root, sources, songs)
        elif path.name.endswith(".stem.mp4"):
            songs.append(_stem_mp4_song(path, sources, name=str(path.relative_to(root))[: -len(".stem.mp4")]))


def _songs_from_manifest(path: Path, sources: Sequence[str]) -> list[Song]:
    base = path.parent
    rows: list[tuple[str, dict[str, list[str]]]] = []
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="") as handle:
                for i, row in enumerate(csv.DictReader(handle)):
                    name = (row.get("name") or f"row{i + 1}").strip()
                    rows.append((name, {k.strip(): [p.strip() for p in (v or "").split(";") if p.strip()]
                                        for k, v in row.items() if k and k.strip() != "name"}))
        else:
            data = json.loads(path.read_text())
            entries = data["songs"] if isinstance(data, dict) else data
            for i, entry in enumerate(entries):
                srcs = entry["sources"]
                rows.append((str(entry.get("name", f"song{i + 1}")),
                             {k: [v] if isinstance(v, str) else list(v) for k, v in srcs.items()}))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:  # AttributeError: "sources" not a mapping
        raise StemforgeError(f"cannot read manifest {path}: {exc}") from None
    songs = []
    for name, columns in rows:
        song_sources: dict[str, list[AudioFile]] = {}
        for column, paths in columns.items():
            target = _map_stem(column, sources)
            if target is None and column.lower() not in ("mixture", "mix"):
                raise StemforgeError(f"manifest {path}: unknown column {column!r} (song {name!r})")
            for p in paths if target is not None else []:
                full = Path(p) if Path(p).is_absolute() else base / p
                song_sources.setdefault(target, []).append(AudioFile(full))
        songs.append(Song(name, song_sources))
    return songs


def discover_songs(roots: Path | str | Iterable[Path | str],
                   sources: Sequence[str] = FOUR_STEMS, check: bool = True) -> list[Song]:
    """Find every song under ``roots`` (folders, ``.stem.mp4`` files or manifests) and check it."""
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    songs: list[Song] = []
    for root in map(Path, roots):
        if not root.exists():
            raise StemforgeError(f"dataset root {root} does not exist")
        if root.is_dir():
            _walk(root, root, sources, songs)
        elif root.suffix.lower() in (".csv", ".json"):
            songs.extend(_songs_from_manifest(root, sources))
        elif root.name.endswith(".stem.mp4"):
            songs.append(_stem_mp4_song(root, sources))
        else:
            raise StemforgeError(f"{root} is neither a folder, a .stem.mp4 file nor a .csv/.json manifest")
    if not songs:
        raise StemforgeError(f"no songs found under {', '.join(map(str, roots))}")
    if check:
        for song in songs:
            check_song(song)
    return songs


def _stem_mp4_song(path: Path, sources: Sequence[str], name: str | None = None) -> Song:
    song_sources: dict[str, list[AudioFile]] = {}
    for index, stem in enumerate(STEM_MP4_STREAMS):
        target = _map_stem(stem, sources)
        if target is not None:
            song_sources.setdefault(target, []).append(AudioFile(path, index))
    return Song(name or path.name[: -len(".stem.mp4")], song_sources)


# ------------------------------------------------------------------------------------------------ reading

def _read_file(file: AudioFile, start: int, frames: int) -> np.ndarray:
    """(channels, frames) float32 from ``start``; zero-padded past the end."""
    if file.stream is not None:
        data = read_stream(str(file.path), file.stream, start, frames)
    else:
        try:
            data = sf.read(str(file.path), start=start, frames=frames, dtype="float32", always_2d=True)[0].T
        except Exception as exc:
            raise AudioError(f"cannot read {file}: {exc}") from None
    if data.shape[1] < frames:
        data = np.pad(data, ((0, 0), (0, frames - data.shape[1])))
    return data


def _fit_channels(data: np.ndarray, channels: int) -> np.ndarray:
    if data.shape[0] == channels:
        return data
    if channels == 1:
        return data.mean(axis=0, keepdims=True)
    if data.shape[0] == 1:
        return np.repeat(data, channels, axis=0)
    return data[:channels]


def read_stems(song: Song, sources: Sequence[str], start: int, frames: int, sample_rate: int,
               channels: int = 2) -> np.ndarray:
    """Stems of ``song`` from ``start`` (song frames) -> (sources, channels, frames at sample_rate) float32.

    Files of one source are summed; a missing source is zeros; other rates are resampled with soxr.
    """
    native = frames if song.sample_rate == sample_rate else int(math.ceil(frames * song.sample_rate / sample_rate)) + 16
    out = np.zeros((len(sources), channels, frames), np.float32)
    for i, source in enumerate(sources):
        total = None
        for file in song.sources.get(source, []):
            data = _fit_channels(_read_file(file, start, native), channels)
            total = data if total is None else total + data
        if total is None:
            continue
        if song.sample_rate != sample_rate:
            total = soxr.resample(total.T, song.sample_rate, sample_rate).T
        n = min(frames, total.shape[1])
        out[i, :, :n] = total[:, :n]
    return out
