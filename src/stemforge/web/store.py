"""``JobStore``: separation jobs in one SQLite database (WAL), shared by the server and its worker processes.

A job moves ``queued -> running -> done | failed``. Every change is one short transaction, so a server killed
at any moment leaves a consistent database: on the next start ``recover`` puts the jobs that were running back
in the queue (or fails them, with the reason, once they have been interrupted ``max_attempts`` times). Writes
from a worker name the worker's pid and apply only while the job is still that worker's, so a worker that
outlived its server cannot overwrite what the new server decided.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

#: Job states.
QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0,
    error TEXT,
    filename TEXT NOT NULL,
    input TEXT NOT NULL,
    model TEXT NOT NULL,
    options TEXT NOT NULL,
    seconds REAL,
    stems TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker INTEGER,
    cancelled INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, created);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclasses.dataclass
class Job:
    """One row of the ``jobs`` table.

    Attributes:
        id: generated identifier; also the name of the job's folder.
        state: ``queued``, ``running``, ``done`` or ``failed``.
        progress: 0..1, the share of the audio separated.
        error: why the job failed (one line), or None.
        filename: the uploaded file's name, for display and download names only (never a path on disk).
        input: the input's file name inside the job folder (``input.<sniffed extension>``).
        model: the model name.
        options: output options (``fmt``, ``bits``, ``mp3_bitrate``, ``stems``, ``two_stems``).
        seconds: the input's duration.
        stems: stem -> file path relative to the job folder, once done.
        attempts: how many times a worker started it.
        worker: pid of the worker running it.
        cancelled: deleted while running; the worker stops and removes it.
        created, started, finished: Unix times.
    """

    id: str
    state: str
    progress: float
    error: str | None
    filename: str
    input: str
    model: str
    options: dict[str, Any]
    seconds: float | None
    stems: dict[str, str] | None
    attempts: int
    worker: int | None
    cancelled: bool
    created: float
    started: float | None
    finished: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Job":
        data = dict(row)
        data["options"] = json.loads(data["options"])
        data["stems"] = json.loads(data["stems"]) if data["stems"] else None
        data["cancelled"] = bool(data["cancelled"])
        return cls(**data)


class JobStore:
    """The job table. Each call opens its own short-lived connection, so any thread or process may use it.

    Args:
        path: the database file (created with its schema if missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash loses no committed transaction's consistency
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``: writers queue instead of failing to upgrade a read lock)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def add(self, job_id: str, filename: str, input_name: str, model: str, options: dict[str, Any],
            seconds: float | None) -> Job:
        """Queue a new job whose input is already in its folder.

        Returns:
            The job as stored.
        """
        with self._write() as db:
            db.execute("INSERT INTO jobs (id, state, filename, input, model, options, seconds, created) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (job_id, QUEUED, filename, input_name, model, json.dumps(options), seconds, time.time()))
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        """The job, or None if there is none by that id."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    def jobs(self) -> list[Job]:
        """Every job, oldest first."""
        with self._connect() as db:
            return [Job.from_row(r) for r in db.execute("SELECT * FROM jobs ORDER BY created")]

    def waiting(self) -> int:
        """How many jobs are queued (not yet started)."""
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (QUEUED,)).fetchone()[0]

    def claim(self, worker: int) -> Job | None:
        """Hand the oldest queued job to ``worker`` (a pid), or None if the queue is empty."""
        with self._write() as db:
            row = db.execute("SELECT id FROM jobs WHERE state = ? AND cancelled = 0 ORDER BY created LIMIT 1",
                             (QUEUED,)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET state = ?, worker = ?, attempts = attempts + 1, started = ?, progress = 0 "
                       "WHERE id = ?", (RUNNING, worker, time.time(), row["id"]))
        return self.get(row["id"])

    def set_progress(self, job_id: str, worker: int, progress: float) -> bool:
        """Record progress (0..1) of a running job.

        Returns:
            False when the job is no longer this worker's to run (deleted, or handed on after a restart).
        """
        with self._write() as db:
            cur = db.execute("UPDATE jobs SET progress = ? WHERE id = ? AND worker = ? AND state = ? AND cancelled = 0",
                             (min(max(progress, 0.0), 1.0), job_id, worker, RUNNING))
            return cur.rowcount == 1

    def finish(self, job_id: str, worker: int, stems: dict[str, str]) -> bool:
        """Mark a running job done with its stem files (paths relative to the job folder).

        Returns:
            False when the job is no longer this worker's (nothing changed).
        """
        with self._write() as db:
            cur = db.execute("UPDATE jobs SET state = ?, progress = 1, stems = ?, finished = ?, worker = NULL "
                             "WHERE id = ? AND worker = ? AND state = ? AND cancelled = 0",
                             (DONE, json.dumps(stems), time.time(), job_id, worker, RUNNING))
            return cur.rowcount == 1

    def fail(self, job_id: str, error: str, worker: int | None = None) -> bool:
        """Mark a job failed with a one-line reason (only if it is still ``worker``'s, when one is given).

        Returns:
            Whether the job changed.
        """
        sql = "UPDATE jobs SET state = ?, error = ?, finished = ?, worker = NULL WHERE id = ? AND state IN (?, ?)"
        args: list[Any] = [FAILED, " ".join(error.split()), time.time(), job_id, QUEUED, RUNNING]
        if worker is not None:
            sql += " AND worker = ?"
            args.append(worker)
        with self._write() as db:
            return db.execute(sql, args).rowcount == 1

    def fail_worker(self, worker: int, error: str) -> list[str]:
        """Fail every job a dead worker was running.

        Returns:
            Their ids.
        """
        with self._write() as db:
            ids = [r["id"] for r in db.execute("SELECT id FROM jobs WHERE worker = ? AND state = ?", (worker, RUNNING))]
            db.execute("UPDATE jobs SET state = ?, error = ?, finished = ?, worker = NULL WHERE worker = ? AND state = ?",
                       (FAILED, error, time.time(), worker, RUNNING))
        return ids

    def cancel(self, job_id: str) -> Job | None:
        """Delete a job: a running one is flagged for its worker to stop and remove; any other row goes now.

        Returns:
            The job as it was (its files are the caller's to remove unless it was running), or None if unknown.
        """
        with self._write() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ? AND cancelled = 0", (job_id,)).fetchone()
            if row is None:
                return None
            if row["state"] == RUNNING:
                db.execute("UPDATE jobs SET cancelled = 1 WHERE id = ?", (job_id,))
            else:
                db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return Job.from_row(row)

    def remove(self, job_id: str) -> None:
        """Drop a job's row."""
        with self._write() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def recover(self, max_attempts: int) -> dict[str, list[str]]:
        """After a server start: resume the jobs that were running when it stopped, or fail them.

        A job interrupted fewer than ``max_attempts`` times goes back to the queue; one interrupted that often
        is failed with the reason (it may be what brings the server down). Jobs deleted while running are
        removed.

        Returns:
            ``{"resumed": ids, "failed": ids, "removed": ids}``.
        """
        result: dict[str, list[str]] = {"resumed": [], "failed": [], "removed": []}
        with self._write() as db:
            for row in db.execute("SELECT id, attempts, cancelled FROM jobs WHERE state = ?", (RUNNING,)).fetchall():
                if row["cancelled"]:
                    db.execute("DELETE FROM jobs WHERE id = ?", (row["id"],))
                    result["removed"].append(row["id"])
                elif row["attempts"] < max_attempts:
                    db.execute("UPDATE jobs SET state = ?, worker = NULL, progress = 0 WHERE id = ?", (QUEUED, row["id"]))
                    result["resumed"].append(row["id"])
                else:
                    db.execute("UPDATE jobs SET state = ?, worker = NULL, finished = ?, error = ? WHERE id = ?",
                               (FAILED, time.time(), f"the server stopped while separating this file, "
                                f"{row['attempts']} times; not retried", row["id"]))
                    result["failed"].append(row["id"])
        return result

    def requeue_running(self) -> list[str]:
        """At a clean shutdown: put running jobs back in the queue without counting the interrupted attempt.

        Returns:
            Their ids.
        """
        with self._write() as db:
            ids = [r["id"] for r in db.execute("SELECT id FROM jobs WHERE state = ? AND cancelled = 0", (RUNNING,))]
            db.execute("UPDATE jobs SET state = ?, worker = NULL, progress = 0, attempts = MAX(attempts - 1, 0) "
                       "WHERE state = ? AND cancelled = 0", (QUEUED, RUNNING))
        return ids

    def expired(self, before: float) -> list[Job]:
        """Finished or failed jobs that ended before ``before`` (a Unix time)."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs WHERE state IN (?, ?) AND finished < ?", (DONE, FAILED, before))
            return [Job.from_row(r) for r in rows]

    def ids(self) -> set[str]:
        """Every job id."""
        with self._connect() as db:
            return {r["id"] for r in db.execute("SELECT id FROM jobs")}

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` (the workers publish the model list this way)."""
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str) -> Any:
        """The JSON value under ``key``, or None."""
        with self._connect() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else None

    def integrity(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"`` for a sound database."""
        with self._connect() as db:
            return db.execute("PRAGMA integrity_check").fetchone()[0]
