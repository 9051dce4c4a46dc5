"""Where the tracks run: a Ray cluster, or a local process pool. Both run ``worker.separate_track`` per track.

A runner takes the shared ``SeparationSpec`` and the jobs, and yields ``(job, result)`` as tracks finish, in
any order. A track's own failure comes back as a ``failed`` result from the worker; a worker process that dies
(killed, out of memory, its node lost) costs the track one try, and after ``retries`` more tries it is reported
as failed with a one-line message, while the other tracks go on.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import socket
import sys
from typing import Iterable, Iterator, Protocol

from stemforge.batch.worker import SeparationSpec, TrackJob, separate_track
from stemforge.errors import StemforgeError
from stemforge.extras import require

log = logging.getLogger(__name__)

#: Tries after the first for a track whose worker died.
DEFAULT_RETRIES = 2


class Runner(Protocol):
    """What the driver needs from a runner."""

    description: str  # e.g. "local pool" or "ray 10.0.0.1:6379", for the summary

    @property
    def workers(self) -> int:
        """Tracks that can run at once."""

    def run(self, spec: SeparationSpec, jobs: Iterable[TrackJob]) -> Iterator[tuple[TrackJob, dict]]:
        """Separate every job; yield each ``(job, result)`` as it finishes."""

    def close(self) -> None:
        """Release the pool or the cluster connection."""


def _died(job: TrackJob, tries: int, why: str) -> dict:
    return {"status": "failed", "error": f"{job.path}: the worker separating it died {tries} time(s) ({why}); "
                                         "not retried again"}


class LocalRunner:
    """A pool of ``workers`` local processes, forked from a clean server (no thread or CUDA state inherited).

    At most ``workers`` tracks are in flight, so when a worker dies only those running lose a try (the pool
    cannot tell which of them was killed; it is rebuilt and they are resubmitted).
    """

    description = "local pool"

    def __init__(self, workers: int | None = None, retries: int = DEFAULT_RETRIES) -> None:
        if workers is not None and workers < 1:
            raise StemforgeError(f"--workers {workers}: needs at least 1")
        if retries < 0:
            raise StemforgeError(f"--retries {retries}: needs at least 0")
        self._workers = workers or os.cpu_count() or 1
        self.retries = retries
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    @property
    def workers(self) -> int:
        return self._workers

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if "forkserver" in multiprocessing.get_all_start_methods():
            # A clean server process imports torch and the separator once; every worker (and every replacement
            # for a killed one) is forked from it in milliseconds instead of importing torch again.
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["stemforge.batch.worker", "stemforge.separate"])
            _start_forkserver()
        else:
            context = multiprocessing.get_context("spawn")
        return concurrent.futures.ProcessPoolExecutor(self._workers, mp_context=context)

    def run(self, spec: SeparationSpec, jobs: Iterable[TrackJob]) -> Iterator[tuple[TrackJob, dict]]:
        queue = collections.deque(jobs)
        tries: collections.Counter[TrackJob] = collections.Counter()
        running: dict[concurrent.futures.Future, TrackJob] = {}
        self._pool = self._pool or self._new_pool()
        try:
            while queue or running:
                while queue and len(running) < self._workers:
                    job = queue.popleft()
                    tries[job] += 1
                    running[self._pool.submit(separate_track, spec, job)] = job
                done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
                broken = False
                for future in done:
                    job = running.pop(future)
                    try:
                        yield job, future.result()
                    except concurrent.futures.process.BrokenProcessPool:
                        broken = True
                        if tries[job] > self.retries:
                            yield job, _died(job, tries[job], "a pool process ended abruptly")
                        else:
                            queue.appendleft(job)
                if broken:  # the pool is unusable: every other running track failed the same way
                    for future in concurrent.futures.as_completed(list(running)):
                        job = running.pop(future)
                        try:
                            yield job, future.result()
                        except concurrent.futures.process.BrokenProcessPool:
                            if tries[job] > self.retries:
                                yield job, _died(job, tries[job], "a pool process ended abruptly")
                            else:
                                queue.appendleft(job)
                    log.warning("a worker process died; restarting the pool and retrying the %d track(s) it held",
                                len(queue))
                    self._pool.shutdown(wait=True)
                    self._pool = self._new_pool()
        except BaseException:
            for future in running:
                future.cancel()
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _start_forkserver() -> None:
    """Start the fork server (once per process) importing modules by our import path, as spawn would.

    Python 3.11's fork server ignores the parent's ``sys.path`` and starts with the default one, so a driver
    running a checkout (``PYTHONPATH``, pytest's ``pythonpath``) could get workers running another stemforge.
    """
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        if previous is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = previous


def _check_reachable(address: str) -> None:
    """Fail in seconds, with one line, when ``host:port`` does not answer (Ray itself retries for minutes)."""
    if address == "auto":
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        raise StemforgeError(f"--ray {address}: expected 'auto', 'local' or the head's host:port (e.g. 10.0.0.1:6379)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise StemforgeError(f"--ray {address}: no Ray cluster answers there ({exc.strerror or exc}); start one with "
                             "`ray start --head`, or use --ray local") from None


class RayRunner:
    """One Ray task per track on an existing cluster (``address``: ``auto``, or ``host:port`` of its head).

    Ray retries a task whose worker died (``max_retries``); a task that returned a failure is not retried.
    Every node must have stemforge (same version) and see the library and the output folder at the same paths.
    """

    def __init__(self, address: str, retries: int = DEFAULT_RETRIES, threads: int = 1, gpus: float = 0) -> None:
        if retries < 0:
            raise StemforgeError(f"--retries {retries}: needs at least 0")
        self.ray = require("ray", "cluster", "stemforge batch --ray")
        self.retries, self.threads, self.gpus = retries, threads, gpus
        _check_reachable(address)
        try:
            context = self.ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                                    configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StemforgeError(f"--ray {address}: cannot connect to a Ray cluster ({first}); start one with "
                                 "`ray start --head`, or use --ray local") from None
        self.description = f"ray {getattr(context, 'address_info', {}).get('address', address)}"

    @property
    def workers(self) -> int:
        cpus = self.ray.cluster_resources().get("CPU", 1)
        slots = cpus // max(self.threads, 1)
        if self.gpus:
            slots = min(slots, self.ray.cluster_resources().get("GPU", 0) // self.gpus)
        return max(1, int(slots))

    def run(self, spec: SeparationSpec, jobs: Iterable[TrackJob]) -> Iterator[tuple[TrackJob, dict]]:
        ray = self.ray
        task = ray.remote(separate_track).options(num_cpus=self.threads, num_gpus=self.gpus,
                                                  max_retries=self.retries, retry_exceptions=False)
        spec_ref = ray.put(spec)
        pending = {task.remote(spec_ref, job): job for job in jobs}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=min(len(pending), 16), timeout=0.5)
                for ref in ready:
                    job = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the worker or its node died, retries used up
                        result = _died(job, self.retries + 1, type(exc).__name__)
                    yield job, result
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise

    def close(self) -> None:
        self.ray.shutdown()


def make_runner(ray_address: str | None, workers: int | None = None, retries: int = DEFAULT_RETRIES,
                threads: int = 1, device: str = "cpu") -> Runner:
    """The runner ``--ray`` asks for: ``None`` or ``local``: a local pool; ``auto`` or ``host:port``: Ray.

    Args:
        ray_address: the ``--ray`` value.
        workers: local pool size (default: one per CPU); ignored on Ray (the cluster's CPUs decide).
        retries: tries after the first for a track whose worker died.
        threads: torch CPU threads per track (Ray: the CPUs each task reserves).
        device: ``cuda`` reserves one GPU per Ray task.

    Returns:
        The runner.
    """
    if ray_address in (None, "local"):
        return LocalRunner(workers, retries)
    return RayRunner(ray_address, retries, threads, gpus=1 if device.startswith("cuda") else 0)
