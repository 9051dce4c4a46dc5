"""REAPER projects: a plain-text ``NAME.rpp`` beside the stems.

The RPP format is REAPER's documented project format: nested ``<TAG ...`` ... ``>`` chunks of one-line,
space-separated values. We write the project's tempo and sample rate, then one ``TRACK`` per stem and one for
the original mix (muted), each with its name, colour (``PEAKCOL``) and a single ``ITEM`` at position 0 whose
``SOURCE`` names the file relative to the project's folder, so the stems and the project move together. The
stems are used where they are (nothing is copied); the mix is referred to where it is, by a relative path too.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from stemforge.audio import OutputExistsError, default_file_mode
from stemforge.daw.session import Session, SessionError, SessionTrack, check_session_name, staged_output
from stemforge.errors import AudioError

#: REAPER's source type for each file extension (anything else goes through its FFmpeg/video decoder).
SOURCE_TYPES = {".wav": "WAVE", ".wave": "WAVE", ".w64": "WAVE", ".rf64": "WAVE", ".aif": "WAVE", ".aiff": "WAVE",
                ".aifc": "WAVE", ".flac": "FLAC", ".mp3": "MP3", ".ogg": "VORBIS", ".oga": "VORBIS",
                ".opus": "OPUS"}


def project_path(session: Session, directory: str | os.PathLike[str]) -> Path:
    """Where ``write_reaper`` puts the project: ``directory/NAME.rpp``."""
    return Path(directory) / f"{check_session_name(session.name)}.rpp"


def quote(value: str) -> str:
    """An RPP string value, in the first of ``"``, ``'`` and ````` that it does not contain (RPP has no escapes).

    Raises:
        SessionError: the value holds all three quote characters or a line break, which RPP cannot store.
    """
    if "\n" in value or "\r" in value:
        raise SessionError(f"{value!r}: a line break cannot be stored in a REAPER project")
    for q in ('"', "'", "`"):
        if q not in value:
            return f"{q}{value}{q}"
    raise SessionError(f"{value!r}: a name with all of \", ' and ` cannot be stored in a REAPER project")


def peakcol(rgb: tuple[int, int, int]) -> int:
    """REAPER's custom track colour: the Windows ``RGB()`` value with the 0x1000000 "custom colour" flag."""
    r, g, b = rgb
    return 0x1000000 | (b << 16) | (g << 8) | r


def _seconds(frames: int, rate: int) -> str:
    return repr(frames / rate)


def _track_lines(track: SessionTrack, folder: Path, channels: int) -> list[str]:
    rel = os.path.relpath(os.path.abspath(track.path), os.path.abspath(folder))
    source = SOURCE_TYPES.get(track.path.suffix.lower(), "VIDEO")
    guid = "{" + str(uuid.uuid4()).upper() + "}"
    return [
        f"  <TRACK {guid}",
        f"    NAME {quote(track.name)}",
        f"    PEAKCOL {peakcol(track.colour)}",
        "    VOLPAN 1 0 -1 -1 1",
        f"    MUTESOLO {1 if track.muted else 0} 0 0",
        f"    NCHAN {max(2, channels + channels % 2)}",
        "    <ITEM",
        "      POSITION 0",
        f"      LENGTH {_seconds(track.frames, track.sample_rate)}",
        "      MUTE 0 0",
        f"      NAME {quote(track.name)}",
        "      VOLPAN 1 0 1 -1",
        "      SOFFS 0",
        f"      IGUID {{{str(uuid.uuid4()).upper()}}}",
        f"      <SOURCE {source}",
        f"        FILE {quote(Path(rel).as_posix())}",
        "      >",
        "    >",
        "  >",
    ]


def project_text(session: Session, folder: str | os.PathLike[str]) -> str:
    """The ``.rpp`` text for ``session`` saved in ``folder`` (file paths are relative to it).

    Args:
        session: the tracks, sample rate and tempo.
        folder: the folder the project will be saved in.

    Returns:
        The project, one chunk per track.
    """
    folder = Path(folder)
    tempo = f"{session.tempo:.10g}" if session.tempo is not None else "120"
    lines = [
        '<REAPER_PROJECT 0.1 "6.0" 0',
        "  RIPPLE 0",
        f"  TEMPO {tempo} 4 4",
        f"  SAMPLERATE {session.sample_rate} 0 0",
    ]
    for track in session.tracks:
        lines += _track_lines(track, folder, track.channels)
    lines.append(">")
    return "\n".join(lines) + "\n"


def write_reaper(session: Session, directory: str | os.PathLike[str], force: bool = False) -> Path:
    """Write ``session`` as ``directory/NAME.rpp`` (atomically: a temporary file renamed into place).

    Args:
        session: the tracks.
        directory: the folder that receives the project; the stems' own folder keeps paths short.
        force: replace an existing project.

    Returns:
        The project file.

    Raises:
        OutputExistsError: the project exists (without ``force``).
        AudioError: it cannot be written, or a name cannot be stored in RPP.
    """
    target = project_path(session, directory)
    if os.path.lexists(target) and not force:
        raise OutputExistsError(f"{target}: already exists (use --force to replace it)")
    text = project_text(session, target.parent)
    with staged_output(target, directory=False, force=force) as staged:
        try:
            staged.write_text(text, encoding="utf-8")
            os.chmod(staged, default_file_mode())  # mkstemp makes 0600 files
        except OSError as exc:
            raise AudioError(f"{target}: cannot write the project ({exc.strerror or exc})") from exc
    return target

