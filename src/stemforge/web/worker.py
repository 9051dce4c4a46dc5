"""The worker processes: each takes queued jobs from the ``JobStore`` and separates them with
``stemforge.separate.Separator.separate_file``, the engine behind ``stemforge separate``.

``WorkerPool`` (in the server process) starts them with the ``spawn`` method, restarts one that dies (failing
the job it held, with the reason) and stops them on shutdown. A worker dies with its server: Linux's
parent-death signal, and a watchdog thread for anything that slips past it, so a server killed with
``kill -9`` leaves no orphan writing files. Stems are published by ``separate_file`` all together or not at
all, so a killed worker leaves only hidden temporary files, which the next run on that job sweeps.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from stemforge.errors import StemforgeError
from stemforge.web.config import ServeConfig
from stemforge.web.store import Job, JobStore

log = logging.getLogger(__name__)

#: Seconds between two looks at the queue when it is empty, and between two progress writes.
POLL = 0.2
PROGRESS_EVERY = 0.25

#: The meta key under which workers publish the models jobs may use.
MODELS_KEY = "models"


class JobCancelled(Exception):
    """The job was deleted, or handed to another worker, while this one was running it."""


@dataclasses.dataclass
class WorkerSettings:
    """What a worker process needs to know (picklable; ``spawn`` sends it to the child)."""

    database: str
    jobs_dir: str
    parent: int
    threads: int
    device: str
    max_seconds: float


def worker_main(settings: WorkerSettings, stop: Any) -> None:
    """A worker process: claim jobs and separate them until ``stop`` (an Event) is set or the server dies.

    Args:
        settings: paths and limits.
        stop: a ``multiprocessing.Event`` set by the server at shutdown.
    """
    _die_with_parent(settings.parent)
    signal.signal(signal.SIGTERM, _interrupt)  # a clean stop: separate_file removes its temporary files
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the server decides
    try:
        import torch

        torch.set_num_threads(settings.threads)
        store = JobStore(settings.database)
        store.set_meta(MODELS_KEY, runnable_models())
        separators: dict[str, Any] = {}
        pid = os.getpid()
        while not stop.is_set():
            job = store.claim(pid)
            if job is None:
                stop.wait(POLL)
                continue
            run_job(store, job, settings, separators)
    except KeyboardInterrupt:
        pass  # the job stays "running": the server puts it back in the queue
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # exiting now: a late SIGTERM just ends the process


def runnable_models() -> list[dict[str, Any]]:
    """The models a job may name: every one that runs now (the bundled default, the classical presets and the
    downloaded zoo checkpoints), never a path.

    Returns:
        ``[{"name", "stems", "sample_rate", "default"}]``, the default model first.
    """
    from stemforge.hub import DEFAULT_MODEL, is_downloaded, list_checkpoints, model_names, resolve

    models = []
    for name in [*model_names()["runnable"], *(e.name for e in list_checkpoints() if is_downloaded(e))]:
        try:
            model, _ = resolve(name)
        except StemforgeError as exc:  # a damaged download: left out, said once
            log.warning("model %s is left out of the server's list: %s", name, exc)
            continue
        models.append({"name": name, "stems": list(model.sources), "sample_rate": model.sample_rate,
                       "default": name == DEFAULT_MODEL})
    return models


def run_job(store: JobStore, job: Job, settings: WorkerSettings, separators: dict[str, Any]) -> None:
    """Separate one claimed job and record the outcome (done with its stems, failed with a reason, or gone).

    Args:
        store: the job store.
        job: a job this worker has claimed.
        settings: paths, device and limits.
        separators: model name -> ``stemforge.separate.FileSeparator``, kept between jobs.
    """
    from stemforge.audio import OutputExistsError
    from stemforge.separate import OutputOptions, open_separator

    pid = os.getpid()
    folder = Path(settings.jobs_dir) / job.id
    source = folder / job.input
    last = [0.0]

    def progress(done: float, total: float | None) -> None:
        if done > settings.max_seconds + 1:
            raise StemforgeError(f"the audio is longer than the server's limit of {settings.max_seconds:g} s")
        now = time.monotonic()
        if now - last[0] < PROGRESS_EVERY:
            return
        last[0] = now
        share = done / total if total else 0.0
        if not store.set_progress(job.id, pid, min(share, 0.99)):
            raise JobCancelled(job.id)

    try:
        separator = separators.get(job.model)
        if separator is None:
            separator = open_separator(job.model, device=settings.device)  # torch-free for the bundled model
            separators.clear()  # one model in memory per worker
            separators[job.model] = separator
        opts = job.options
        stems = tuple(opts["stems"]) if opts.get("stems") else None
        output = OutputOptions(directory=folder / "stems", fmt=opts.get("fmt", "wav"), bits=opts.get("bits"),
                               mp3_bitrate=opts.get("mp3_bitrate"), filename="{stem}.{ext}", stems=stems,
                               two_stems=opts.get("two_stems"), jobs=1)
        try:
            written = separator.separate_file(source, output, callback=progress)
        except OutputExistsError:
            written = separator.output_paths(source, output)  # published before a crash, not yet recorded
            if not all(p.is_file() for p in written.values()):
                raise
        if not store.finish(job.id, pid, {stem: p.relative_to(folder).as_posix() for stem, p in written.items()}):
            raise JobCancelled(job.id)
    except JobCancelled:
        current = store.get(job.id)
        if current is not None and current.cancelled:
            _remove(folder)
            store.remove(job.id)
    except StemforgeError as exc:
        store.fail(job.id, public_message(str(exc), folder, job.filename), worker=pid)
    except Exception as exc:  # noqa: BLE001 - a bug must fail this job, not the worker or the others
        log.exception("job %s failed", job.id)
        store.fail(job.id, f"internal error while separating ({type(exc).__name__}); see the server log", worker=pid)


def public_message(message: str, folder: Path, filename: str) -> str:
    """An error message fit to show the uploader: the server's paths replaced by the uploaded file's name."""
    for path in sorted((str(p) for p in folder.rglob("*")), key=len, reverse=True):
        message = message.replace(path, filename)
    return message.replace(str(folder), filename)


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _die_with_parent(parent: int) -> None:
    """End this process when the server process ends, however it ends (``kill -9`` included)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before the call above
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="stemforge-parent-watch", daemon=True).start()


class WorkerPool:
    """The server's worker processes, started, watched and stopped by one thread.

    One thread does it all because the parent-death signal follows the thread that started a process: the
    workers must outlive any request thread, and must not outlive the server.

    Args:
        config: the server settings (workers, threads, device, limits, paths).
        store: the job store.
    """

    def __init__(self, config: ServeConfig, store: JobStore) -> None:
        self.config, self.store = config, store
        self._ctx = multiprocessing.get_context("spawn")
        self._stop = self._ctx.Event()
        self._done = threading.Event()
        self._started = threading.Event()
        self._processes: list[Any] = []
        self._thread: threading.Thread | None = None
        self.deaths: list[str] = []

    def _settings(self) -> WorkerSettings:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return WorkerSettings(database=str(self.config.database), jobs_dir=str(self.config.jobs_dir),
                              parent=os.getpid(), threads=self.config.worker_threads(cpus),
                              device=self.config.device, max_seconds=self.config.max_seconds)

    def _spawn(self) -> Any:
        process = self._ctx.Process(target=worker_main, args=(self._settings(), self._stop), daemon=True,
                                    name="stemforge-worker")
        process.start()
        return process

    def start(self) -> None:
        """Start the workers (returns once they are launched, not loaded)."""
        self._thread = threading.Thread(target=self._run, name="stemforge-pool", daemon=True)
        self._thread.start()
        self._started.wait(60)

    def _run(self) -> None:
        self._processes = [self._spawn() for _ in range(self.config.workers)]
        self._started.set()
        while not self._done.wait(0.5):
            for i, process in enumerate(self._processes):
                if process.exitcode is None:
                    continue
                reason = (f"killed by signal {signal.Signals(-process.exitcode).name}" if process.exitcode < 0
                          else f"exit status {process.exitcode}")
                failed = self.store.fail_worker(process.pid, "the worker separating this file stopped "
                                                f"({reason}); the file may crash the decoder or need more memory")
                self.deaths.append(reason)
                log.warning("worker %d stopped (%s); failed its job(s) %s; starting another", process.pid, reason,
                            ", ".join(failed) or "(none)")
                self._processes[i] = self._spawn()
        self._stop.set()
        deadline = time.monotonic() + 3 * POLL
        for process in self._processes:  # idle workers see the event and leave by themselves
            process.join(max(0.0, deadline - time.monotonic()))
        for process in self._processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: the job's temporary files are removed, its row stays "running"
        for process in self._processes:
            process.join(15)
            if process.is_alive():
                process.kill()
                process.join(5)

    def pids(self) -> list[int]:
        """The worker processes' ids."""
        return [p.pid for p in self._processes]

    def stop(self) -> None:
        """Stop the workers (a running job goes back to the queue, as if never started) and wait for them."""
        self._done.set()
        if self._thread is not None:
            self._thread.join(60)
        self.store.requeue_running()
