"""What a DAW session is made of, whatever the DAW: the stems of one track, the original mix, names, colours, tempo.

``read_stem_folder`` checks a folder of stems as ``stemforge separate`` writes it (one file per stem, named after
the stem) by the rule in ``stemforge.stem_folder`` and returns a ``Session``: every stem must be there, nothing
else that looks like a stem may be, and all of them must share one sample rate, one channel count and one
length. The original mix (``--mix``, else the folder's ``mixture.*``) is optional, may have its own rate,
layout and length, and is muted in the session. ``publish_tree`` moves a finished session
(built in a hidden temporary folder or file beside its target) into place in one rename.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from pathlib import Path
from typing import Iterable, Iterator

from stemforge.audio import (
    OutputExistsError,
    publish_folder,
    publish_staged,
    remove_tree,
    staged_folder,
    staging_path as audio_staging_path,
)
from stemforge.errors import StemforgeError
from stemforge.stem_folder import (
    StemFolderError,
    StemSetError,
    check_stem_files,
    expected_stems,  # noqa: F401 - the stem-set rule, re-exported where it used to live
    find_stem_files,
    probe,
)

#: The DAWs we write sessions for.
DAWS = ("ardour", "reaper")

#: Track colours (RGB), one per stem name; other names (``no_vocals``, a custom model's stems) are grey.
STEM_COLOURS: dict[str, tuple[int, int, int]] = {
    "drums": (0xE8, 0x47, 0x3F),
    "bass": (0x3F, 0x7F, 0xE8),
    "other": (0x4F, 0xBF, 0x5A),
    "vocals": (0xE8, 0xC2, 0x3F),
    "guitar": (0xE8, 0x87, 0x3F),
    "piano": (0xA4, 0x5F, 0xE0),
}
STEM_GREY = (0x8C, 0x8C, 0x8C)
MIX_COLOUR = (0x50, 0x50, 0x50)
#: The name of the original mix's track.
MIX_TRACK = "mix"


class SessionError(StemforgeError):
    """A stem folder cannot become a session (missing, extra or mismatched stems, an existing session)."""


@dataclasses.dataclass(frozen=True)
class SessionTrack:
    """One audio file on its own track, starting at 0.

    ``frames`` are at ``sample_rate``; the file has ``channels`` channels.
    """

    name: str
    path: Path
    sample_rate: int
    channels: int
    frames: int
    colour: tuple[int, int, int] = STEM_GREY
    muted: bool = False


@dataclasses.dataclass(frozen=True)
class Session:
    """A DAW session: the stems (all the same rate, layout and length), then the original mix (muted), if any.

    ``tempo`` is in beats per minute (None: unknown; the DAW's default then stands).
    """

    name: str
    stems: tuple[SessionTrack, ...]
    mix: SessionTrack | None = None
    tempo: float | None = None

    @property
    def tracks(self) -> tuple[SessionTrack, ...]:
        """The stems, then the mix."""
        return self.stems + ((self.mix,) if self.mix is not None else ())

    @property
    def sample_rate(self) -> int:
        return self.stems[0].sample_rate

    @property
    def channels(self) -> int:
        return self.stems[0].channels


def stem_colour(name: str) -> tuple[int, int, int]:
    """The RGB colour of the stem ``name`` (grey for names without one)."""
    return STEM_COLOURS.get(name, STEM_GREY)


def check_tempo(tempo: float | None) -> None:
    """Refuse a tempo no DAW takes (the CLI's ``--tempo``)."""
    if tempo is not None and not 1.0 <= tempo <= 999.0:
        raise SessionError(f"--tempo {tempo:g}: give beats per minute between 1 and 999")


def check_session_name(name: str) -> str:
    """A session name that is also one plain file name (no separators, no leading dot, not empty).

    Returns:
        ``name`` unchanged.
    """
    if not name or name.strip() != name or name.startswith(".") or re.search(r"[/\\\0:*?\"<>|]", name):
        raise SessionError(f"session name {name!r}: use a plain file name (no slashes, no leading dot or spaces)")
    return name


def _session_error(exc: StemFolderError, hint: str = "") -> SessionError:
    """The stem folder checker's refusal as a ``SessionError`` (same one-line message)."""
    error = SessionError(f"{exc}{hint}")
    error.__cause__ = exc
    return error


def read_stem_folder(folder: str | os.PathLike[str], stems: Iterable[str] | None = None,
                     mix: str | os.PathLike[str] | None = None, name: str | None = None,
                     tempo: float | None = None) -> Session:
    """Check a folder of stems (``<stem>.<ext>``, as ``stemforge separate`` writes them) and describe its session.

    The folder is checked by ``stemforge.stem_folder`` (the rule ``stemforge remix`` applies too): audio files
    directly in ``folder`` are the stems (hidden files and subfolders are ignored), and ``mixture.<ext>`` is
    the original mix. Without ``stems`` the folder must hold one known set (``expected_stems``): ``X`` and
    ``no_X`` (``--two-stems``), the six stems, or the four.

    Args:
        folder: the stem folder.
        stems: the stem names to expect, in track order (default: the set the folder's names imply).
        mix: the original mix (any rate, layout and length); None: the folder's ``mixture.*`` if there is one,
            else no mix track.
        name: the session's name (default: the folder's name).
        tempo: beats per minute, if known.

    Returns:
        The session: stems in order, each with its colour, then the mix, muted.

    Raises:
        SessionError: no such folder, a stem missing, a file that is no expected stem, a stem twice (two
            extensions), or stems that differ in sample rate, channel count or length.
        AudioError: a file that cannot be read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SessionError(f"{folder}: no such stem folder")
    check_tempo(tempo)
    name = check_session_name(name if name is not None else folder.resolve().name)
    try:
        files, mixture = find_stem_files(folder, stems, ignore=[mix] if mix is not None else [])
    except StemSetError as exc:
        raise _session_error(exc, "" if stems is not None else "; name the stems with --stems") from exc
    except StemFolderError as exc:
        raise _session_error(exc) from exc
    return session_from_files(name, files, mix if mix is not None else mixture, tempo)


def session_from_files(name: str, stems: dict[str, Path], mix: str | os.PathLike[str] | None = None,
                       tempo: float | None = None) -> Session:
    """The session of the given stem files (checked to share one sample rate, channel count and length).

    Args:
        name: the session's name (a plain file name).
        stems: track name -> audio file, in track order.
        mix: the original mix, muted in the session (any rate, layout and length), or None.
        tempo: beats per minute, if known.

    Returns:
        The session.

    Raises:
        SessionError: no stems, a bad name or tempo, or stems that differ in rate, channels or length.
        AudioError: a file that cannot be read.
    """
    check_session_name(name)
    check_tempo(tempo)
    if not stems:
        raise SessionError("no stems to make a session of")
    try:
        infos = check_stem_files({stem: Path(path) for stem, path in stems.items()})
    except StemFolderError as exc:
        raise _session_error(exc) from exc
    tracks = [SessionTrack(stem, Path(stems[stem]), info.sample_rate, info.channels, int(info.frames),
                           stem_colour(stem)) for stem, info in infos.items()]
    mix_track = None
    if mix is not None:
        info = probe(mix)
        name_taken = MIX_TRACK in stems  # track names must differ (Ardour's routes, REAPER's track list)
        mix_track = SessionTrack(f"original {MIX_TRACK}" if name_taken else MIX_TRACK, Path(mix), info.sample_rate,
                                 info.channels, int(info.frames), MIX_COLOUR, muted=True)
    return Session(name, tuple(tracks), mix_track, tempo)


def staging_path(target: Path, directory: bool) -> Path:
    """A new hidden temporary folder (or empty file) beside ``target``, for building it before ``publish_tree``.

    Raises:
        AudioError: it cannot be made (a read-only folder, a full disk).
    """
    return audio_staging_path(target, directory, noun="session")


@contextlib.contextmanager
def staged_output(target: Path, directory: bool, force: bool = False) -> Iterator[Path]:
    """Build ``target`` out of sight: yields a ``staging_path``, published in one rename when the block ends.

    A session folder goes through ``stemforge.audio.staged_folder``; a single project file through
    ``stemforge.audio.publish_staged`` the same way. An error or an interruption inside the block (or while
    publishing) removes the staged folder or file, so nothing half-written is left behind.

    Raises:
        OutputExistsError: ``target`` exists and ``force`` is false (checked again when publishing).
        AudioError: the staging path cannot be made or the rename failed.
    """
    if directory:
        with staged_folder(target, force=force, noun="session") as staged:
            yield staged
        return
    staged = staging_path(target, directory=False)
    try:
        yield staged
        publish_tree(staged, target, force=force)
    except BaseException:
        remove(staged)
        raise


def publish_tree(staged: Path, target: Path, force: bool = False) -> None:
    """Move a finished folder or file into place in one rename (signals held meanwhile).

    Without ``force`` an existing target is an error; with it the old one is moved aside, replaced, and deleted
    only once the new one is in place (on failure it is put back): ``stemforge.audio.publish_staged``, a file
    claimed exclusively (``_claim``).

    Raises:
        OutputExistsError: ``target`` exists and ``force`` is false.
        AudioError: the rename failed.
    """
    if staged.is_dir():
        publish_folder(staged, target, force=force, noun="session")
    else:
        claim = lambda new, name: _claim(new, name)  # noqa: E731 - looks _claim up when called (patchable)
        publish_staged(staged, target, claim, force=force, noun="session")


def _claim(staged: Path, target: Path) -> None:
    """Move the file ``staged`` to ``target``, failing with FileExistsError if the name is taken."""
    try:
        os.link(staged, target)  # claims the name atomically
    except FileExistsError:
        raise
    except OSError:  # no hard links on this filesystem: reserve the name, then rename over it
        os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.replace(staged, target)
        return
    staged.unlink()


#: Deletes a file or folder we made (a staging one), quietly.
remove = remove_tree
