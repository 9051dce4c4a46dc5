"""The one rule for a folder of stems as ``stemforge separate`` writes it, checked without decoding the audio.

A stem folder holds one audio file per stem, named after the stem (``drums.wav``, ``bass.flac``, ...), and
optionally the original mix as ``mixture.<ext>`` (as in MUSDB18). Hidden files, subfolders and non-audio
files are ignored. Every stem must be there, nothing else that looks like a stem may be, no stem may be there
twice (two extensions), and the stems must share one sample rate, one channel count and one length; the
mixture may have its own. ``check_stem_folder`` enforces this by reading each file's header only
(``stemforge.audio.open_audio``); frames are counted by decoding only for a container whose header does not
say. ``stemforge.daw.session`` (DAW sessions) and ``stemforge.remix`` both read stem folders through it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Iterable

from stemforge.audio import AUDIO_EXTENSIONS, AudioInfo, open_audio
from stemforge.errors import AudioError, StemforgeError
from stemforge.stems import FOUR_STEMS, SIX_STEMS

#: The name of the original mix in a stem folder (as in MUSDB18).
MIXTURE = "mixture"


class StemFolderError(StemforgeError):
    """A folder that is not a stem folder: missing, extra, doubled or mismatched stems."""


class StemSetError(StemFolderError):
    """The folder's file names do not form the expected stem set (missing or unexpected stems)."""


@dataclasses.dataclass(frozen=True)
class StemFolder:
    """The checked files of a stem folder.

    ``stems`` maps each stem name (in the expected order) to its file's header; they all share ``sample_rate``,
    ``channels`` and ``frames``. ``mixture`` is the original mix's header (any rate, layout and length), or None.
    """

    folder: Path
    stems: dict[str, AudioInfo]
    sample_rate: int
    channels: int
    frames: int
    mixture: AudioInfo | None = None

    @property
    def paths(self) -> dict[str, Path]:
        """stem -> its file."""
        return {name: info.path for name, info in self.stems.items()}


def expected_stems(found: Iterable[str]) -> tuple[str, ...]:
    """The stem set a folder holding ``found`` should hold.

    ``X`` and ``no_X`` when exactly one ``no_X`` name is there; the six stems when guitar and piano are both
    there, or one of them without all four stems; else the four (so the four stems plus a guitar file read as
    the four stems with an extra file, not the six with piano missing: either way one file is off).

    Args:
        found: the stem names present.

    Returns:
        The names expected, in track order.
    """
    found = set(found)
    pairs = sorted(n[len("no_"):] for n in found if n.startswith("no_"))
    if len(pairs) == 1:
        return (pairs[0], f"no_{pairs[0]}")
    six_only = found & (set(SIX_STEMS) - set(FOUR_STEMS))
    if len(six_only) == 2 or (six_only and not set(FOUR_STEMS) <= found):
        return SIX_STEMS
    return FOUR_STEMS


def find_stem_files(folder: str | os.PathLike[str], stems: Iterable[str] | None = None,
                    ignore: Iterable[str | os.PathLike[str]] = ()) -> tuple[dict[str, Path], Path | None]:
    """The stem files (and ``mixture.*``) of a folder, checked by name only.

    Args:
        folder: the stem folder.
        stems: the stem names to expect, in order (default: ``expected_stems`` of the names found). A stem named
            ``mixture`` here is a stem, not the original mix.
        ignore: files to pass over (e.g. an original mix given separately that lies in the folder).

    Returns:
        ({stem: file} in the expected order, the ``mixture.*`` file or None).

    Raises:
        StemFolderError: no such folder, no stems asked for, or a name there twice (two extensions).
        StemSetError: a stem missing or a file that is no expected stem.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise StemFolderError(f"{folder}: no such stem folder")
    wanted = tuple(dict.fromkeys(stems)) if stems is not None else None
    if wanted is not None and not wanted:
        raise StemFolderError("no stems asked for")
    skip = {Path(p).resolve() for p in ignore}
    files: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        if path.resolve() in skip:
            continue
        files.setdefault(path.stem, []).append(path)
    twice = {stem: paths for stem, paths in files.items() if len(paths) > 1}
    if twice:
        stem, paths = next(iter(twice.items()))
        raise StemFolderError(f"{folder}: stem {stem!r} is there twice ({', '.join(p.name for p in paths)}); "
                              "keep one")
    mixture = None
    if MIXTURE in files and (wanted is None or MIXTURE not in wanted):
        mixture = files.pop(MIXTURE)[0]
    if wanted is None:
        wanted = expected_stems(files)
    missing = [s for s in wanted if s not in files]
    extra = sorted(files[s][0].name for s in files if s not in wanted)
    if missing or extra:
        parts = [f"missing {', '.join(missing)}"] * bool(missing) + [f"unexpected {', '.join(extra)}"] * bool(extra)
        optional = f", and optionally {MIXTURE}.*" if MIXTURE not in wanted else ""
        raise StemSetError(f"{folder}: {'; '.join(parts)} (expected {', '.join(wanted)}{optional})")
    return {stem: files[stem][0] for stem in wanted}, mixture


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """An audio file's header: rate, channels and frames (counted by decoding only when the header lacks them).

    Args:
        path: an audio file.

    Returns:
        Its ``AudioInfo``, ``frames`` filled in.

    Raises:
        AudioError: the file cannot be read or holds no samples.
    """
    reader = open_audio(path)
    try:
        info = reader.info
        if info.frames is None:
            info = dataclasses.replace(info, frames=sum(block.shape[1] for block in reader.blocks(1 << 16)))
        if not info.frames:
            raise AudioError(f"{info.path}: contains no audio samples")
        return info
    finally:
        reader.close()


def _duration(frames: int, rate: int) -> str:
    return f"{frames} frames ({frames / rate:.3f} s)"


def check_stem_files(paths: dict[str, Path]) -> dict[str, AudioInfo]:
    """Check from their headers that stem files fit together: one sample rate, one channel count, one length.

    Args:
        paths: stem -> audio file, in track order (at least one).

    Returns:
        stem -> the file's header (``probe``), in the same order.

    Raises:
        StemFolderError: no stems, or two stems that differ in sample rate, channel count or length (the message
            names both files).
        AudioError: a file that cannot be read.
    """
    if not paths:
        raise StemFolderError("no stems given")
    infos = {name: probe(path) for name, path in paths.items()}
    first = next(iter(infos.values()))
    for info in infos.values():
        a, b = first.path, info.path
        if info.sample_rate != first.sample_rate:
            raise StemFolderError(f"stems differ in sample rate: {a} is at {first.sample_rate} Hz, {b} at "
                                  f"{info.sample_rate} Hz; stems must share one sample rate")
        if info.channels != first.channels:
            raise StemFolderError(f"stems differ in channel count: {a} has {first.channels}, {b} {info.channels}; "
                                  "stems must share one channel layout")
        if info.frames != first.frames:
            raise StemFolderError(f"stems differ in length: {a} is {_duration(first.frames, first.sample_rate)} "
                                  f"long, {b} {_duration(info.frames, info.sample_rate)}; stems must be equally long")
    return infos


def check_stem_folder(folder: str | os.PathLike[str], stems: Iterable[str] | None = None,
                      ignore: Iterable[str | os.PathLike[str]] = ()) -> StemFolder:
    """Find a folder's stems (``find_stem_files``) and check from their headers that they fit together.

    Args:
        folder: the stem folder.
        stems: the stem names to expect, in order (default: the set the folder's names imply).
        ignore: files in the folder that are not stems (an original mix given separately).

    Returns:
        The stems' headers (sharing one rate, channel count and length) and the mixture's, if there is one.

    Raises:
        StemFolderError: see ``find_stem_files`` and ``check_stem_files``.
        AudioError: a file that cannot be read.
    """
    paths, mixture = find_stem_files(folder, stems, ignore)
    infos = check_stem_files(paths)
    first = next(iter(infos.values()))
    mixture_info = probe(mixture) if mixture is not None else None
    return StemFolder(Path(folder), infos, first.sample_rate, first.channels, int(first.frames), mixture_info)


__all__ = ["MIXTURE", "StemFolder", "StemFolderError", "StemSetError", "check_stem_files", "check_stem_folder",
           "expected_stems", "find_stem_files", "probe"]
