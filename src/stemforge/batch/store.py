"""The batch manifest: one SQLite row per (track, model) with its input hash, options and output hashes.

A re-run reads it to skip what is done and redo what changed or failed. Hashes are sha256; a file's stamp also
keeps its size and mtime, so an unchanged file is not read again to be re-hashed (a changed size or mtime means
reading it). Only the driver writes the store (workers return their results to it), one commit per track, so a
driver killed mid-run loses nothing that finished.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

from stemforge.errors import StemforgeError

#: The manifest's file name inside the output directory.
STORE_NAME = ".stemforge-batch.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tracks (
    input TEXT NOT NULL,        -- absolute input path
    relpath TEXT NOT NULL,      -- folder relative to the library, for {relpath}
    model TEXT NOT NULL,        -- the model's name (output folder)
    input_stamp TEXT NOT NULL,  -- JSON {sha256, size, mtime_ns}
    options TEXT NOT NULL,      -- JSON of every option that changes the outputs
    status TEXT NOT NULL,       -- done | failed
    outputs TEXT,               -- JSON {stem: {path (relative to the output dir), sha256, size, mtime_ns}}
    error TEXT,
    seconds REAL,               -- audio seconds
    elapsed REAL,               -- wall seconds the worker spent
    worker TEXT,                -- host:pid that did it
    runs INTEGER NOT NULL DEFAULT 1,
    updated REAL NOT NULL,
    PRIMARY KEY (input, relpath, model)
)
"""


def sha256_file(path: str | os.PathLike[str], block: int = 1 << 20) -> str:
    """The sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def stamp_file(path: str | os.PathLike[str], known: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{sha256, size, mtime_ns}`` of a file; ``known``'s hash is reused when size and mtime are unchanged.

    Args:
        path: the file.
        known: an earlier stamp of the same file, or None.

    Returns:
        The stamp.

    Raises:
        OSError: the file cannot be read.
    """
    st = os.stat(path)
    if known and known.get("size") == st.st_size and known.get("mtime_ns") == st.st_mtime_ns and known.get("sha256"):
        return {"sha256": known["sha256"], "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return {"sha256": sha256_file(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclasses.dataclass
class Record:
    """One track's row."""

    input: str
    relpath: str
    model: str
    input_stamp: dict[str, Any]
    options: dict[str, Any]
    status: str
    outputs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    error: str | None = None
    seconds: float | None = None
    elapsed: float | None = None
    worker: str | None = None
    runs: int = 1


class ManifestStore:
    """The SQLite manifest of one output directory (``OUT/.stemforge-batch.sqlite``)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / STORE_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("PRAGMA trusted_schema=OFF")  # a planted trigger or view cannot call functions
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise StemforgeError(f"{self.path}: not a usable batch manifest ({exc}); move it away to start afresh") from None
        except OSError as exc:
            raise StemforgeError(f"{self.path.parent}: cannot write the batch manifest ({exc.strerror or exc})") from None

    def get(self, input: str, relpath: str, model: str) -> Record | None:
        """The row of one track, or None."""
        row = self._execute("SELECT input, relpath, model, input_stamp, options, status, outputs, error, seconds, "
                            "elapsed, worker, runs FROM tracks WHERE input=? AND relpath=? AND model=?",
                            (input, relpath, model)).fetchone()
        return None if row is None else self._record(row)

    def put(self, record: Record) -> None:
        """Insert or replace a track's row (``runs`` counts the rows written for it) and commit."""
        previous = self.get(record.input, record.relpath, record.model)
        record.runs = (previous.runs + 1) if previous else 1
        self._execute(
            "INSERT OR REPLACE INTO tracks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.input, record.relpath, record.model, json.dumps(record.input_stamp),
             json.dumps(record.options, sort_keys=True), record.status, json.dumps(record.outputs), record.error,
             record.seconds, record.elapsed, record.worker, record.runs, time.time()))
        try:
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise StemforgeError(f"{self.path}: cannot write the batch manifest ({exc})") from None

    def records(self) -> Iterator[Record]:
        """Every row."""
        for row in self._execute("SELECT input, relpath, model, input_stamp, options, status, outputs, error, "
                                 "seconds, elapsed, worker, runs FROM tracks ORDER BY input").fetchall():
            yield self._record(row)

    def close(self) -> None:
        self._db.close()

    def _execute(self, sql: str, parameters: tuple = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, parameters)
        except sqlite3.DatabaseError as exc:  # another program's table, a damaged file, a full disk
            raise StemforgeError(f"{self.path}: cannot use the batch manifest ({exc}); move it away to start "
                                 "afresh") from None

    def _record(self, row: tuple) -> Record:
        try:
            record = Record(input=row[0], relpath=row[1], model=row[2], input_stamp=json.loads(row[3]),
                            options=json.loads(row[4]), status=row[5], outputs=json.loads(row[6] or "{}"),
                            error=row[7], seconds=row[8], elapsed=row[9], worker=row[10], runs=int(row[11]))
            if not (isinstance(record.input_stamp, dict) and isinstance(record.options, dict)
                    and isinstance(record.outputs, dict) and all(isinstance(o, dict) for o in record.outputs.values())):
                raise TypeError("a JSON column is not an object")
        except (TypeError, ValueError) as exc:
            raise StemforgeError(f"{self.path}: the row for {row[0]} is corrupt ({exc}); move it away to "
                                 "start afresh") from None
        return record

    def __enter__(self) -> "ManifestStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
