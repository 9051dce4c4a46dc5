"""Walk a library into tracks: a folder of audio files, a MUSDB-style tree, or a manifest (CSV or JSON).

* A folder: every audio file under it, as ``stemforge separate DIR`` finds them; ``{relpath}`` is the file's
  folder relative to the library.
* A MUSDB-style tree (``song/mixture.wav`` beside ``song/vocals.wav`` ...): each song folder is one track, its
  mixture; the stem files next to it are not separated. A mixture is named after its folder: unless
  ``--filename`` is given, its stems go to ``{relpath}/{stem}.{ext}`` (``OUT/<model>/train/Song/vocals.wav``).
* A manifest: ``.csv`` with a ``path`` (or ``mixture``) column, or ``.json``: a list of paths or of
  ``{"path": ...}`` objects (or ``{"tracks": [...]}``); relative paths are relative to the manifest.

Missing or unreadable files are not dropped here: they become tracks that fail alone, with their own message.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

from stemforge.audio import AUDIO_EXTENSIONS
from stemforge.errors import StemforgeError

#: The default output name template of ``separate``, and the one a MUSDB song's mixture gets instead.
DEFAULT_TEMPLATE = "{track}/{stem}.{ext}"
SONG_TEMPLATE = "{relpath}/{stem}.{ext}"


@dataclasses.dataclass(frozen=True)
class Track:
    """One input of a batch.

    Attributes:
        path: the audio file (absolute).
        relpath: its folder relative to the library (``.`` when outside it), for ``{relpath}``.
        song: True for a MUSDB-style song's mixture (named after its folder).
    """

    path: Path
    relpath: str
    song: bool = False

    def template(self, filename: str | None) -> str:
        """The output name template for this track: ``filename`` if given, else ``separate``'s default (songs: by folder)."""
        if filename is not None:
            return filename
        return SONG_TEMPLATE if self.song else DEFAULT_TEMPLATE


def walk_library(library: str | os.PathLike[str]) -> list[Track]:
    """Every track of a library, in a stable order (repeated files once).

    Args:
        library: a folder (plain or MUSDB-style), or a ``.csv`` / ``.json`` manifest.

    Returns:
        The tracks.

    Raises:
        StemforgeError: the library does not exist, is an unreadable manifest, or holds no audio.
    """
    root = Path(library)
    if not root.exists():
        raise StemforgeError(f"library {root} does not exist")
    if root.is_dir():
        tracks = _walk_folder(root.resolve())
    elif root.suffix.lower() in (".csv", ".json"):
        tracks = _read_manifest(root.resolve())
    else:
        raise StemforgeError(f"library {root} is neither a folder nor a .csv/.json manifest (for one file, use "
                             "`stemforge separate`)")
    if not tracks:
        raise StemforgeError(f"library {root} contains no audio files")
    unique: dict[Path, Track] = {}
    for track in tracks:
        unique.setdefault(track.path, track)
    return list(unique.values())


def _is_audio(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS


def _walk_folder(root: Path) -> list[Track]:
    tracks: list[Track] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        here = Path(folder)
        rel = here.relative_to(root).as_posix()
        mixtures = [name for name in sorted(files) if Path(name).stem.lower() == "mixture" and _is_audio(here / name)]
        if mixtures:  # a MUSDB-style song: the mixture is the track, the stems beside it are not
            song_rel = rel if rel != "." else root.name
            tracks.append(Track(here / mixtures[0], song_rel, song=True))
            dirs[:] = []  # MoisesDB-style stem folders inside a song are not tracks either
            continue
        tracks.extend(Track(here / name, rel) for name in sorted(files) if _is_audio(here / name))
    return tracks


def _read_manifest(path: Path) -> list[Track]:
    base = path.parent
    try:
        if path.suffix.lower() == ".csv":
            with path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                fields = [f.strip().lower() for f in reader.fieldnames or []]
                column = next((f for f in ("path", "mixture") if f in fields), None)
                if column is None:
                    raise StemforgeError(f"manifest {path}: needs a 'path' (or 'mixture') column, has "
                                         f"{', '.join(fields) or 'none'}")
                entries = [{k.strip().lower(): v for k, v in row.items() if k}.get(column) for row in reader]
        else:
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                data = data.get("tracks")
            if not isinstance(data, list):
                raise StemforgeError(f"manifest {path}: expected a list of paths, or {{\"tracks\": [...]}}")
            entries = [item.get("path", item.get("mixture")) if isinstance(item, dict) else item for item in data]
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
        raise StemforgeError(f"cannot read manifest {path}: {exc}") from None
    tracks = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, str) or not entry.strip():
            raise StemforgeError(f"manifest {path}: entry {number} has no path")
        file = Path(entry.strip())
        file = Path(os.path.normpath(file if file.is_absolute() else base / file))
        try:
            rel = file.parent.relative_to(base).as_posix()
        except ValueError:
            rel = "."
        song = file.stem.lower() == "mixture"
        if song and rel == ".":
            rel = file.parent.name or "."
        tracks.append(Track(file, rel, song=song))
    return tracks
