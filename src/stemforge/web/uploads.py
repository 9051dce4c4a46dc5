"""Uploads: copied into the job's folder under a generated name, their content sniffed and their audio probed.

Nothing about an upload is trusted: its name is kept for display only, its type is read from its first bytes
(``filetype``'s magic numbers, not the extension) and its length from the decoder, before a job is queued.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import BinaryIO

from stemforge.errors import AudioError, StemforgeError

#: What ``filetype`` recognises -> the extension the input is stored under (it picks our decoder: libsndfile
#: first for wav/flac/ogg/aiff, FFmpeg for the rest).
SNIFFED = {"wav": ".wav", "flac": ".flac", "ogg": ".ogg", "aiff": ".aiff", "mp3": ".mp3", "aac": ".aac",
           "m4a": ".m4a", "mp4": ".mp4", "mov": ".mov", "3gp": ".3gp", "webm": ".webm", "mkv": ".mka",
           "amr": ".amr"}

#: The bytes read to sniff a file.
SNIFF_BYTES = 8192

#: Copy block size.
CHUNK = 1 << 20


class UploadError(StemforgeError):
    """An upload the server refuses. ``status`` is the HTTP status, ``code`` a short machine-readable word."""

    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def sniff(head: bytes) -> str | None:
    """The extension to store an upload under, judged from its first bytes.

    Args:
        head: the file's first bytes (``SNIFF_BYTES`` is plenty).

    Returns:
        ``".wav"``, ``".flac"``, ``".mp3"``, ... or None when the content is not an audio type we read.
    """
    import filetype

    kind = filetype.guess(head)
    return SNIFFED.get(kind.extension) if kind is not None else None


def save_upload(source: BinaryIO, folder: Path, max_bytes: int) -> Path:
    """Copy an upload into ``folder`` as ``input<ext>``, refusing it if it is too large or not audio.

    The copy goes to ``input.part`` first and gets its final name only when complete and sniffed.

    Args:
        source: the uploaded file, at its start.
        folder: the job folder (created).
        max_bytes: the most bytes accepted.

    Returns:
        The stored input file.

    Raises:
        UploadError: 413 (too large), 415 (not an audio type), 422 (empty).
    """
    folder.mkdir(parents=True, exist_ok=False)
    part = folder / "input.part"
    size = 0
    with open(part, "wb") as out:
        while chunk := source.read(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise UploadError(f"the file is too large: more than the server's limit of {max_bytes / 1e6:g} MB",
                                  413, "too_large")
            out.write(chunk)
    if size == 0:
        raise UploadError("the file is empty (0 bytes)", 422, "empty")
    with open(part, "rb") as f:
        head = f.read(SNIFF_BYTES)
    ext = sniff(head)
    if ext is None:
        raise UploadError("not an audio file this server reads (its content is not wav, flac, ogg/opus, aiff, "
                          "mp3, aac/m4a or an mp4/webm/mkv/mov with audio)", 415, "unsupported")
    final = folder / f"input{ext}"
    os.replace(part, final)
    return final


def probe(path: Path, max_seconds: float) -> float:
    """Decode the start of an input (and all of it when its header gives no length) and return its duration.

    Args:
        path: a stored input (``save_upload``).
        max_seconds: the longest audio accepted.

    Returns:
        The duration in seconds.

    Raises:
        UploadError: 422 (not decodable, corrupt, no samples) or 413 (longer than ``max_seconds``).
    """
    from stemforge.audio import open_audio

    try:
        reader = open_audio(path)
    except AudioError as exc:
        raise UploadError(_without_path(str(exc), path) or "not a readable audio file", 422, "corrupt") from exc
    try:
        info = reader.info
        frames = 0
        try:
            for block in reader.blocks(1 << 16):
                frames += block.shape[1]
                if info.frames is not None or frames > max_seconds * info.sample_rate:
                    break  # the header says how long it is: the first block shows it decodes
        except AudioError as exc:
            raise UploadError(_without_path(str(exc), path), 422, "corrupt") from exc
        except Exception as exc:  # noqa: BLE001 - decoders raise many types; all mean a corrupt file here
            raise UploadError(f"the audio cannot be decoded ({type(exc).__name__}); is the file corrupt?", 422,
                              "corrupt") from exc
        if frames == 0:
            raise UploadError("the file holds no audio samples", 422, "corrupt")
        seconds = info.seconds if info.frames is not None else frames / info.sample_rate
    finally:
        reader.close()
    if seconds > max_seconds:
        raise UploadError(f"the audio is too long: {seconds:.0f} s, more than the server's limit of "
                          f"{max_seconds:g} s", 413, "too_long")
    return float(seconds)


def remove_folder(folder: Path) -> None:
    """Remove a job folder and everything in it (missing is fine)."""
    shutil.rmtree(folder, ignore_errors=True)


def _without_path(message: str, path: Path) -> str:
    """A decoder's message without the server-side path it starts with."""
    for prefix in (f"{path}: ", str(path)):
        if message.startswith(prefix):
            return message[len(prefix):].strip()
    return message.replace(str(path), "the file")
