"""``ServeConfig``: where ``stemforge serve`` keeps its jobs, how many workers it runs, and its limits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from stemforge.errors import StemforgeError

#: Output formats a job may ask for (the CLI's ``--format``).
FORMATS = ("wav", "flac", "mp3")


@dataclasses.dataclass
class ServeConfig:
    """Settings of one server; ``validate()`` checks them before anything starts.

    Attributes:
        data: folder holding the job database (``jobs.sqlite3``) and one folder per job (``jobs/<id>/``).
        host: address to listen on (``127.0.0.1``: this machine only).
        port: TCP port.
        workers: worker processes separating at once.
        threads: torch CPU threads per worker (None: the CPU count divided by ``workers``).
        device: ``cpu`` or ``cuda`` for the workers' models.
        queue: most jobs waiting to start; another upload is refused with 503 (server busy).
        max_upload_mb: largest upload in MB (10**6 bytes); a larger one is refused with 413.
        max_seconds: longest audio accepted, in seconds; a longer one is refused with 413.
        token: when set, every ``/api`` route needs ``Authorization: Bearer <token>``.
        keep_days: finished and failed jobs (and their files) are deleted this many days after they end;
            0 keeps them until deleted through the API.
        max_attempts: a job interrupted by a server stop this many times is marked failed instead of resumed.
    """

    data: Path = Path("stemforge-data")
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    threads: int | None = None
    device: str = "cpu"
    queue: int = 16
    max_upload_mb: float = 200.0
    max_seconds: float = 1200.0
    token: str | None = None
    keep_days: float = 7.0
    max_attempts: int = 2

    def validate(self) -> None:
        """Raise ``StemforgeError`` (one line naming the option) for a setting that cannot work."""
        if not 0 <= self.port <= 65535:
            raise StemforgeError(f"--port {self.port}: choose 0 to 65535")
        if self.workers < 1:
            raise StemforgeError(f"--workers {self.workers}: needs at least 1")
        if self.threads is not None and self.threads < 1:
            raise StemforgeError(f"--threads {self.threads}: needs at least 1")
        if self.queue < 1:
            raise StemforgeError(f"--queue {self.queue}: needs at least 1")
        if not self.max_upload_mb > 0:
            raise StemforgeError(f"--max-upload-mb {self.max_upload_mb:g}: must be positive")
        if not self.max_seconds > 0:
            raise StemforgeError(f"--max-seconds {self.max_seconds:g}: must be positive")
        if self.keep_days < 0:
            raise StemforgeError(f"--keep-days {self.keep_days:g}: must be 0 (keep) or more")
        if self.token is not None and (len(self.token) < 8 or any(c.isspace() for c in self.token)):
            raise StemforgeError("--token: use at least 8 characters and no spaces")
        if self.max_attempts < 1:
            raise StemforgeError(f"max_attempts {self.max_attempts}: needs at least 1")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)

    @property
    def database(self) -> Path:
        return Path(self.data) / "jobs.sqlite3"

    @property
    def jobs_dir(self) -> Path:
        return Path(self.data) / "jobs"

    def worker_threads(self, cpus: int) -> int:
        """Torch threads for each worker on a machine with ``cpus`` CPUs."""
        return self.threads or max(1, cpus // self.workers)
