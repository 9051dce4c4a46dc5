"""What runs on a worker (a Ray task or a local pool process): separate one track with ``Separator.separate_file``.

The worker keeps one ``Separator`` per process (keyed by the model and engine settings), so a model is loaded once
per worker, not once per track. Every failure of the track itself (unreadable, corrupt, full disk) becomes a
``failed`` result with a one-line message; only the death of the process (killed, out of memory) is left to the
runner, which retries the track a bounded number of times.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from pathlib import Path
from typing import Any

from stemforge.batch.store import stamp_file
from stemforge.errors import StemforgeError

_SEPARATORS: dict[tuple, Any] = {}


@dataclasses.dataclass(frozen=True)
class SeparationSpec:
    """Everything a worker needs besides the track: the model, the engine settings and the output options.

    ``output`` is a ``stemforge.separate.OutputOptions``; ``threads`` is the torch CPU threads of one worker.
    """

    model: str
    output: Any  # stemforge.separate.OutputOptions (typed loosely: importing it here would import torch)
    segment: float | None = None
    overlap: float | None = None  # None: the model's default_overlap
    shifts: int = 0
    batch_size: int = 1
    device: str = "cpu"
    precision: str = "fp32"
    backend: str = "auto"  # stemforge.separate.open_separator: torch-free for a plain U-Net
    wiener: int = 0
    threads: int = 1

    def engine_key(self) -> tuple:
        """The settings that pick a loaded ``Separator`` (a worker reuses one per key)."""
        return (self.model, self.segment, self.overlap, self.shifts, self.batch_size, self.device, self.precision,
                self.backend, self.wiener, self.threads)


@dataclasses.dataclass(frozen=True)
class TrackJob:
    """One track to separate: the input file, its folder relative to the library (``{relpath}``), its name template."""

    path: str
    relpath: str
    filename: str


def separator_for(spec: SeparationSpec):  # -> stemforge.separate.FileSeparator
    """The separator for ``spec`` (``stemforge.separate.open_separator``), loaded once per process.

    Args:
        spec: model and engine settings.

    Returns:
        A ``stemforge.separate.FileSeparator``: the torch-free ``LiteSeparator`` where ``backend`` is ``"auto"`` and
        it gives the same stems (the bundled model at default settings), else a ``Separator``.
    """
    from stemforge.separate import open_separator

    key = spec.engine_key()
    if key not in _SEPARATORS:
        _SEPARATORS.clear()  # one model in memory per worker
        _SEPARATORS[key] = open_separator(spec.model, segment=spec.segment, overlap=spec.overlap, shifts=spec.shifts,
                                          batch_size=spec.batch_size, device=spec.device, precision=spec.precision,
                                          threads=spec.threads, backend=spec.backend, wiener=spec.wiener)
    return _SEPARATORS[key]


def separate_track(spec: SeparationSpec, job: TrackJob) -> dict[str, Any]:
    """Separate one track exactly as ``stemforge separate`` would, then fingerprint what was written.

    The driver dispatches a track only when its targets are absent or were written by this batch, so the stems
    are written with ``force`` (a retry after a worker died just after publishing must not be refused).

    Args:
        spec: model, engine and output options (shared by every track).
        job: the track.

    Returns:
        ``{"status": "done", "input": stamp, "outputs": {stem: stamp}, "elapsed": wall s, "cpu": CPU s,
        "seconds": audio s, "host": ..., "pid": ...}``
        with output paths relative to the output directory, or ``{"status": "failed", "error": one line}``.
    """
    started, cpu = time.perf_counter(), time.process_time()
    where = {"host": socket.gethostname(), "pid": os.getpid()}
    audio = [0.0]

    def progress(done: float, total: float | None) -> None:
        audio[0] = total if total else done

    try:
        separator = separator_for(spec)
        output = dataclasses.replace(spec.output, filename=job.filename, force=True)
        written = separator.separate_file(Path(job.path), output, relpath=job.relpath, callback=progress)
        root = Path(output.directory)
        outputs = {stem: {**stamp_file(path), "path": Path(path).relative_to(root).as_posix()}
                   for stem, path in written.items()}
        source = stamp_file(job.path)  # hashed here, in parallel, rather than by the driver one by one
    except OSError as exc:
        return {"status": "failed", "error": f"{job.path}: cannot hash it or its stems ({exc.strerror or exc})", **where}
    except StemforgeError as exc:
        return {"status": "failed", "error": str(exc), **where}
    except Exception as exc:  # noqa: BLE001 - a decoder or model bug on one file must not stop the others
        first = str(exc).splitlines()[0] if str(exc) else ""
        return {"status": "failed", "error": f"{job.path}: {type(exc).__name__}: {first}", **where}
    return {"status": "done", "input": source, "outputs": outputs, "elapsed": time.perf_counter() - started,
            "cpu": time.process_time() - cpu, "seconds": audio[0], **where}
