"""DAW sessions for separated stems: Ardour 7 session folders and REAPER projects (``stemforge session``).

``read_stem_folder`` checks a folder of stems and describes its ``Session``; ``write_session`` writes it for
one DAW.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from stemforge.daw.ardour import write_ardour
from stemforge.daw.reaper import write_reaper
from stemforge.daw.session import (DAWS, Session, SessionError, SessionTrack, check_session_name, read_stem_folder,
                                   session_from_files)

__all__ = ["DAWS", "Session", "SessionError", "SessionTrack", "plain_name", "read_stem_folder",
           "separated_session_target", "session_target", "write_session", "write_stem_session"]


def write_session(session: Session, daw: str, directory: str | os.PathLike[str], force: bool = False) -> Path:
    """Write ``session`` for ``daw`` into ``directory``.

    Args:
        session: the tracks (see ``read_stem_folder``).
        daw: ``ardour`` (a session folder ``directory/NAME``) or ``reaper`` (``directory/NAME.rpp``).
        directory: where the session goes, usually the stem folder itself.
        force: replace an existing session.

    Returns:
        The session folder (Ardour) or project file (REAPER).

    Raises:
        SessionError: an unknown DAW.
        OutputExistsError: the session exists (without ``force``).
    """
    if daw == "ardour":
        return write_ardour(session, directory, force)
    if daw == "reaper":
        return write_reaper(session, directory, force)
    raise SessionError(f"--daw {daw}: choose one of {', '.join(DAWS)}")


def session_target(daw: str, folder: str | os.PathLike[str], name: str | None = None) -> Path:
    """Where the session of the stems in ``folder`` goes: ``folder/NAME`` (Ardour) or ``folder/NAME.rpp`` (REAPER).

    Args:
        daw: ``ardour`` or ``reaper``.
        folder: the stem folder.
        name: the session's name (default: the folder's name).

    Returns:
        The session folder or project file that ``write_session`` would write.

    Raises:
        SessionError: an unknown DAW or a name that is not a plain file name.
    """
    folder = Path(folder)
    name = check_session_name(name if name is not None else folder.resolve().name)
    if daw not in DAWS:
        raise SessionError(f"--daw {daw}: choose one of {', '.join(DAWS)}")
    return folder / (name if daw == "ardour" else f"{name}.rpp")


def separated_session_target(daw: str, stems: dict[str, Path], track: str | os.PathLike[str]) -> Path:
    """Where ``separate --session`` puts the session of ``track``'s stems: beside them, named after the track.

    Args:
        daw: ``ardour`` or ``reaper``.
        stems: stem name -> output file (``Separator.output_paths``), all in one folder.
        track: the separated input file.

    Returns:
        The session folder or project file.

    Raises:
        SessionError: the stems are not in one folder (a ``--filename`` template that spreads them).
    """
    folders = {Path(p).parent for p in stems.values()}
    if len(folders) != 1:
        raise SessionError(f"--session needs a track's stems in one folder; --filename puts them in "
                           f"{', '.join(sorted(map(str, folders)))}")
    return session_target(daw, folders.pop(), plain_name(Path(track).stem))


def plain_name(name: str) -> str:
    """``name`` made a valid session name: path and shell-hostile characters become ``_``, no leading dot.

    Args:
        name: e.g. an input file's name without its extension.

    Returns:
        A name ``check_session_name`` accepts.
    """
    name = re.sub(r"[/\\\0:*?\"<>|]", "_", name).strip()
    return ("_" + name.lstrip(".")) if name.startswith(".") or not name else name


def write_stem_session(stems: dict[str, Path], daw: str, track: str | os.PathLike[str], tempo: float | None = None,
                       force: bool = False) -> Path:
    """Write the session of a track's stems just separated (``Separator.separate_file``'s result) beside them.

    Args:
        stems: stem name -> file, all in one folder, in track order.
        daw: ``ardour`` or ``reaper``.
        track: the separated file: the original mix (a muted track) and the session's name.
        tempo: beats per minute, if known.
        force: replace an existing session.

    Returns:
        The session folder or project file.

    Raises:
        SessionError: the stems are not in one folder, or differ in rate, channels or length.
        OutputExistsError: the session exists (without ``force``).
    """
    target = separated_session_target(daw, stems, track)
    session = session_from_files(plain_name(Path(track).stem), stems, mix=track, tempo=tempo)
    return write_session(session, daw, target.parent, force=force)
