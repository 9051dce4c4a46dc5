"""Plan a batch against its manifest, run what needs running, record every result, and sum it up.

Planning decides each track's fate before any work: ``unchanged`` (done before with the same input bytes, model
and options, and its outputs are still the ones written), ``skipped`` (``--skip-existing`` and every stem is
there), ``failed`` (its outputs exist but were not written by this batch, or the input cannot be read), or to
do. Only tracks whose targets are absent or are this batch's own outputs are dispatched, so nothing written by
someone else is overwritten unless ``--force`` asks for it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from stemforge.batch.library import Track
from stemforge.batch.runners import Runner
from stemforge.batch.store import ManifestStore, Record, stamp_file
from stemforge.batch.worker import SeparationSpec, TrackJob
from stemforge.errors import StemforgeError

#: Track statuses, in the summary table's order.
STATUSES = ("done", "unchanged", "skipped", "failed")


@dataclasses.dataclass
class TrackOutcome:
    """What became of one track in this run."""

    input: str
    relpath: str
    status: str  # done | unchanged | skipped | failed
    outputs: dict[str, str] = dataclasses.field(default_factory=dict)  # stem -> path
    error: str | None = None
    seconds: float | None = None  # audio seconds (when known)
    elapsed: float | None = None  # worker wall seconds (done tracks)
    cpu: float | None = None  # worker CPU seconds, all its threads (done tracks)
    worker: str | None = None


@dataclasses.dataclass
class BatchReport:
    """The outcome of a batch run: per track, plus totals for the summary."""

    model: str
    runner: str
    workers: int
    wall_seconds: float
    tracks: list[TrackOutcome]

    def count(self, status: str) -> int:
        return sum(t.status == status for t in self.tracks)

    def audio_hours(self, status: str | None = None) -> float:
        """Hours of audio of the tracks with ``status`` (all when None)."""
        return sum(t.seconds or 0.0 for t in self.tracks if status in (None, t.status)) / 3600

    @property
    def throughput(self) -> float | None:
        """Audio hours separated per wall-clock hour in this run (None when nothing ran)."""
        if not self.count("done") or self.wall_seconds <= 0:
            return None
        return self.audio_hours("done") / (self.wall_seconds / 3600)

    @property
    def failed(self) -> int:
        return self.count("failed")

    def as_json(self) -> dict[str, Any]:
        """The report as plain data (``--json``)."""
        return {"model": self.model, "runner": self.runner, "workers": self.workers, "tracks": len(self.tracks),
                **{status: self.count(status) for status in STATUSES},
                "audio_hours": round(self.audio_hours("done"), 6), "wall_seconds": round(self.wall_seconds, 3),
                "audio_hours_per_hour": None if self.throughput is None else round(self.throughput, 3),
                "inputs": [{k: v for k, v in dataclasses.asdict(t).items() if v not in (None, {})}
                           for t in self.tracks]}

    def table(self) -> str:
        """The summary table, failures listed under it."""
        lines = [f"{'status':<10} {'tracks':>7} {'audio h':>9}"]
        for status in STATUSES:
            lines.append(f"{status:<10} {self.count(status):>7} {self.audio_hours(status):>9.4f}")
        lines.append(f"{'total':<10} {len(self.tracks):>7} {self.audio_hours():>9.4f}")
        rate = "" if self.throughput is None else f": {self.throughput:.1f} audio hours per hour"
        lines.append(f"{self.count('done')} separated with {self.model} in {self.wall_seconds:.1f} s on {self.runner} "
                     f"({self.workers} worker{'s' if self.workers != 1 else ''}){rate}")
        failures = [t for t in self.tracks if t.status == "failed"]
        if failures:
            lines.append("failed:")
            lines.extend(f"  {t.error}" for t in failures)
        return "\n".join(lines)


def checkpoint_file(model: str) -> Path | None:
    """The file whose bytes decide ``model``'s stems: a checkpoint path, or a bundled model's own file (a stemforge
    upgrade may replace it, and the tracks it separated must then be redone), else None (a published checkpoint's
    files are pinned by their catalogue hashes; the classical models have none)."""
    from stemforge.hub import bundled_checkpoint, catalogue

    path = Path(model)
    if path.is_file():
        return path
    return bundled_checkpoint(model) if model in catalogue.BUNDLED else None


def options_fingerprint(spec: SeparationSpec, template: str, model_sha256: str | None) -> dict[str, Any]:
    """Every setting that changes a track's outputs (a change redoes the track); device, threads and jobs do not.

    Args:
        spec: the batch's settings.
        template: the track's output name template.
        model_sha256: the hash of the file behind ``spec.model`` (``checkpoint_file``), else None.

    Returns:
        Plain data, compared as is with the manifest's.
    """
    out = spec.output
    return {"model": spec.model, "model_sha256": model_sha256,
            "segment": spec.segment, "overlap": spec.overlap, "shifts": spec.shifts, "batch_size": spec.batch_size,
            "precision": spec.precision, "backend": spec.backend, "wiener": spec.wiener, "format": out.fmt,
            "bits": out.bits, "mp3_bitrate": out.mp3_bitrate, "clip": out.clip, "filename": template,
            "keep_rate": out.keep_rate, "keep_channels": out.keep_channels,
            "stems": list(out.stems) if out.stems else None, "two_stems": out.two_stems}


@dataclasses.dataclass
class _Plan:
    track: Track
    job: TrackJob
    targets: dict[str, Path]
    options: dict[str, Any]
    stamp: dict[str, Any] | None
    outcome: TrackOutcome | None  # decided without running (unchanged, skipped, failed); None: to run


def _same_file(path: Path, recorded: dict[str, Any] | None) -> bool:
    """Whether ``path`` still holds the bytes recorded for it."""
    if not recorded or not path.is_file():
        return False
    try:
        return stamp_file(path, known=recorded)["sha256"] == recorded.get("sha256")
    except OSError:
        return False


def _plan_track(track: Track, spec: SeparationSpec, separator, store: ManifestStore, filename: str | None,
                skip_existing: bool, model_sha256: str | None) -> _Plan:
    template = track.template(filename)
    output = dataclasses.replace(spec.output, filename=template)
    job = TrackJob(str(track.path), track.relpath, template)
    targets = separator.output_paths(track.path, output, track.relpath)
    options = options_fingerprint(spec, template, model_sha256)
    record = store.get(str(track.path), track.relpath, separator.name)
    plan = _Plan(track, job, targets, options, None, None)

    def decided(status: str, error: str | None = None, seconds: float | None = None) -> _Plan:
        plan.outcome = TrackOutcome(str(track.path), track.relpath, status, error=error, seconds=seconds,
                                    outputs={stem: str(p) for stem, p in targets.items()} if not error else {})
        return plan

    if record is not None:  # a track never seen before is hashed by its worker, not here
        try:
            plan.stamp = stamp_file(track.path, known=record.input_stamp)
        except OSError as exc:
            return decided("failed", f"{track.path}: cannot read it ({exc.strerror or exc})")
    root = Path(spec.output.directory)
    ours = {root / o["path"]: o for o in (record.outputs.values() if record else ()) if "path" in o}
    if (not spec.output.force and record is not None and record.status == "done"
            and record.input_stamp.get("sha256") == plan.stamp["sha256"] and record.options == options
            and set(ours) == set(targets.values()) and all(_same_file(p, ours[p]) for p in targets.values())):
        return decided("unchanged", seconds=record.seconds)
    existing = [p for p in targets.values() if p.exists()]
    foreign = [p for p in existing if not _same_file(p, ours.get(p))]
    if foreign and not spec.output.force:
        if skip_existing and len(existing) == len(targets):
            return decided("skipped")
        return decided("failed", f"{track.path}: output already exists and was not written by this batch: "
                                 f"{foreign[0]} (use --force to overwrite, --skip-existing to skip it)")
    return plan


def _check_collisions(plans: list[_Plan]) -> None:
    """Refuse, before any work, two tracks that would write the same file."""
    owners: dict[str, Path] = {}
    for plan in plans:
        for target in plan.targets.values():
            other = owners.setdefault(os.path.normcase(os.path.abspath(target)), plan.track.path)
            if other != plan.track.path:
                raise StemforgeError(f"{other} and {plan.track.path} would both be written to {target}; add "
                                     "{relpath} to --filename (e.g. '{relpath}/{track}/{stem}.{ext}')")


def _probe_seconds(path: Path) -> float | None:
    from stemforge.audio import open_audio

    try:
        reader = open_audio(path)
    except StemforgeError:
        return None
    try:
        return reader.info.seconds
    finally:
        reader.close()


def run_batch(tracks: list[Track], spec: SeparationSpec, runner: Runner, *, filename: str | None = None,
              skip_existing: bool = False, progress: bool = False,
              on_result: Callable[[TrackOutcome], None] | None = None) -> BatchReport:
    """Separate a library's tracks on ``runner``, skipping what the manifest says is done.

    Args:
        tracks: from ``library.walk_library``.
        spec: model, engine and output options; ``spec.output.directory`` holds the outputs and the manifest.
        runner: a ``LocalRunner`` or a ``RayRunner``.
        filename: the ``--filename`` template, or None for ``separate``'s default (MUSDB songs: by folder).
        skip_existing: skip a track whose stems all exist already, whoever wrote them.
        progress: show one tqdm bar on stderr (tracks, and audio hours in its postfix).
        on_result: called with each outcome as it is decided.

    Returns:
        The report (every track, in library order).

    Raises:
        StemforgeError: the model or options are unusable, or two tracks would write the same file.
    """
    from stemforge.separate import open_separator

    started = time.perf_counter()
    spec.output.validate()
    # The driver only plans (names, stems, rates): torch-free where the workers are, never an export or a compile.
    separator = open_separator(spec.model, backend=spec.backend, needs="plan", segment=spec.segment,
                               overlap=spec.overlap, shifts=spec.shifts, batch_size=spec.batch_size,
                               precision=spec.precision, wiener=spec.wiener)
    outcomes: dict[TrackJob, TrackOutcome] = {}
    # Recorded as used: a manifest of any release compares equal while the model's own overlap stays the same.
    planned = dataclasses.replace(spec, overlap=separator.overlap)
    with ManifestStore(spec.output.directory) as store:
        model_file = checkpoint_file(spec.model)
        model_sha256 = stamp_file(model_file)["sha256"] if model_file is not None else None
        plans = [_plan_track(t, planned, separator, store, filename, skip_existing, model_sha256) for t in tracks]
        _check_collisions(plans)
        todo = {}
        for plan in plans:
            if plan.outcome is not None:
                outcomes[plan.job] = plan.outcome
                if plan.outcome.status == "failed":
                    store.put(Record(plan.job.path, plan.job.relpath, separator.name, plan.stamp or {}, plan.options,
                                     "failed", error=plan.outcome.error))
                if on_result:
                    on_result(plan.outcome)
            else:
                todo[plan.job] = plan
        seconds = {job: _probe_seconds(plan.track.path) for job, plan in todo.items()}
        bar = _bar(len(todo), sum(s or 0.0 for s in seconds.values()) / 3600) if progress and todo else None
        hours = 0.0
        try:
            for job, result in runner.run(spec, list(todo)) if todo else ():
                plan = todo[job]
                audio = result.get("seconds") or seconds[job]
                worker = f"{result['host']}:{result['pid']}" if "host" in result else None
                if result["status"] == "done":
                    root = Path(spec.output.directory)
                    outcome = TrackOutcome(job.path, job.relpath, "done", seconds=audio, elapsed=result["elapsed"],
                                           cpu=result.get("cpu"), worker=worker, outputs={stem: str(root / o["path"])
                                                                   for stem, o in result["outputs"].items()})
                    store.put(Record(job.path, job.relpath, separator.name, result["input"], plan.options, "done",
                                     outputs=result["outputs"], seconds=audio, elapsed=result["elapsed"],
                                     worker=worker))
                else:
                    outcome = TrackOutcome(job.path, job.relpath, "failed", error=result["error"], seconds=audio,
                                           worker=worker)
                    store.put(Record(job.path, job.relpath, separator.name, plan.stamp or {}, plan.options, "failed",
                                     error=result["error"], seconds=audio, worker=worker))
                outcomes[job] = outcome
                if on_result:
                    on_result(outcome)
                if bar is not None:
                    hours += (audio or 0.0) / 3600
                    bar.set_postfix_str(f"audio {hours:.3f}/{bar.audio_total:.3f} h", refresh=False)
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
    return BatchReport(separator.name, runner.description, runner.workers, time.perf_counter() - started,
                       [outcomes[plan.job] for plan in plans])


def _bar(tracks: int, audio_hours: float):
    from tqdm import tqdm

    bar = tqdm(total=tracks, desc="batch", unit="track", file=sys.stderr, dynamic_ncols=True)
    bar.audio_total = audio_hours
    bar.set_postfix_str(f"audio 0.000/{audio_hours:.3f} h")
    return bar
