"""Score separators on a dataset: separate (or read estimates), measure, and keep per-track results.

A *method* is anything that turns a track into stem estimates: a model (registered name or checkpoint,
run through ``Separator``), a folder of existing estimates (``<folder>/<track>/<stem>.wav``), or a
reference point computed from the true stems: ``oracle-irm``, ``oracle-ibm``, ``oracle-mwf`` (upper
bounds for mask-based methods) and ``mixture`` (the mixture as every stem's estimate, a lower bound).

Each (method, track) result is written to ``<out>/scores/<method>/<track>.json`` as soon as it is
scored, so an interrupted run resumes where it stopped. Tables and plots are in ``stemforge.report``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import soundfile as sf
from tqdm import tqdm

from stemforge.data.datasets import Song, discover_songs, read_stems
from stemforge.data.songs import _probe
from stemforge.errors import StemforgeError
from stemforge.metrics.bss_eval import bss_eval_v4, nanmedian
from stemforge.metrics.checks import MetricsError, check_pair, check_rate
from stemforge.metrics.oracle import ORACLES, oracle_blocks
from stemforge.metrics.simple import framewise_snr, mdx_sdr, si_sdr
from stemforge.metrics.streams import ArrayStems, Stems, as_stems, blocks
from stemforge.stems import FOUR_STEMS

logger = logging.getLogger(__name__)

METRICS = ("bss", "mdx", "sisdr", "snr")
#: Reference points added to every report (besides the classical DSP model).
REFERENCE_METHODS = ("oracle-irm", "oracle-ibm", "oracle-mwf", "mixture")
CLASSICAL_REFERENCE = "classical"
#: Seconds of audio kept from the first track of each method for the spectrogram plot.
EXCERPT_SECONDS = 5.0
#: Samples read at once when copying audio (the mixture for a model).
READ_BLOCK = 1 << 18
#: Metrics that mean nothing by construction for a method -> (metrics, why): reported blank (None),
#: never as a number.
DEGENERATE = {
    "mixture": (("ISR", "SIR", "SAR"), "the mixture is exactly the sum of the references, so the BSS Eval "
                "projections reproduce it: its artifacts are zero up to rounding (SAR would be ~150 dB of "
                "round-off) and ISR/SIR only re-split the interference that its SDR already measures"),
}

Estimates = dict[str, np.ndarray]


@dataclasses.dataclass
class EvaluateOptions:
    """How to score: metrics, BSS Eval window/hop (seconds), separation settings, reference points."""

    metrics: tuple[str, ...] = ("bss", "mdx", "sisdr")
    sources: tuple[str, ...] = FOUR_STEMS
    window: float = 1.0
    hop: float = 1.0
    references: bool = True
    resume: bool = True
    device: str = "cpu"
    segment: float | None = None
    overlap: float | None = None  # None: the model's default_overlap
    shifts: int = 0
    progress: bool = True

    def validate(self) -> None:
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            raise StemforgeError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
        if self.window <= 0 or self.hop <= 0:
            raise StemforgeError("window and hop must be positive seconds")


class Track:
    """One evaluation track: true stems (channels, time) at ``sample_rate`` and the mixture.

    Built from a dataset song (``load_track``) nothing is read up front: ``reference_stems`` and
    ``mixture_stems`` read the files a block at a time. ``stems`` and ``mixture`` (whole arrays, for
    custom methods that need them) are read on first use.
    """

    def __init__(self, name: str, sample_rate: int, stems: dict[str, np.ndarray] | None = None,
                 mixture: np.ndarray | None = None, *, song: Song | None = None, sources: tuple[str, ...] = (),
                 channels: int = 2, scratch: Path | None = None) -> None:
        if song is None and (stems is None or mixture is None):
            raise ValueError("a Track needs either a song or both stems and mixture arrays")
        self.name, self.sample_rate, self.song, self.channels = name, sample_rate, song, channels
        self._stems, self._mixture = stems, mixture
        self.names = [s for s in sources if s in song.sources] if song is not None else list(stems)
        self.length = song.length if song is not None else mixture.shape[-1]
        if song is None:
            self.channels = mixture.shape[0]
        #: Folder for temporary estimates (removed after each track), set by ``evaluate``.
        self.scratch = scratch

    @property
    def stems(self) -> dict[str, np.ndarray]:
        """Every true stem as a whole (channels, time) float32 array (read on first use)."""
        if self._stems is None:
            whole = self.reference_stems().read(0, self.length)
            self._stems = dict(zip(self.names, whole))
        return self._stems

    @property
    def mixture(self) -> np.ndarray:
        """The whole mixture (channels, time) float32 (read on first use)."""
        if self._mixture is None:
            self._mixture = self.mixture_stems(1).read(0, self.length)[0]
        return self._mixture

    def reference_stems(self, names: Iterable[str] | None = None) -> Stems:
        """True stems matching ``names`` (default: every dataset stem), read a block at a time.

        Args:
            names: a method's stem names (see ``reference_groups`` for a method with fewer stems).

        Returns:
            ``Stems`` with one source per reference, in the order of ``reference_groups``.
        """
        groups = reference_groups(self.names, self.names if names is None else names)
        if self._stems is not None:
            return ArrayStems(np.stack([np.sum([self._stems[s] for s in group], axis=0) for group in groups.values()]))
        return SongStems(self.song, self.names, self.channels, list(groups.values()))

    def mixture_stems(self, count: int) -> Stems:
        """The mixture as ``count`` identical sources, read a block at a time.

        Args:
            count: number of sources.

        Returns:
            ``Stems`` (count, channels, length): the mixture file, or the stems' sum without one.
        """
        if self._mixture is not None:
            return ArrayStems(np.broadcast_to(self._mixture, (count, *self._mixture.shape)))
        if self.song.mixture is None:
            return SongStems(self.song, self.names, self.channels, [self.names] * count)
        mixture = Song(self.song.name, {"mixture": [self.song.mixture]}, self.song.sample_rate, self.song.length)
        return SongStems(mixture, ["mixture"], self.channels, [["mixture"]] * count)


class SongStems(Stems):
    """Sums of a song's stems read from its files at an offset: source i is the sum of ``groups[i]``."""

    def __init__(self, song: Song, sources: list[str], channels: int, groups: list[list[str]]) -> None:
        self.song, self.sources, self.channels = song, sources, channels
        self.index = [[sources.index(s) for s in group] for group in groups]
        self.shape = (len(groups), channels, song.length)

    def read(self, start: int, stop: int) -> np.ndarray:
        stems = read_stems(self.song, self.sources, start, stop - start, self.song.sample_rate, channels=self.channels)
        if all(len(group) == 1 for group in self.index) and [g[0] for g in self.index] == list(range(len(stems))):
            return stems
        return np.stack([stems[group].sum(0) for group in self.index])


class FileStems(Stems):
    """One audio file (wav/flac) per source, all of one length and channel count, read at an offset."""

    def __init__(self, paths: list[Path], length: int, channels: int) -> None:
        self.paths = list(paths)
        self.shape = (len(self.paths), channels, length)

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((len(self.paths), self.shape[1], stop - start), np.float32)
        for i, path in enumerate(self.paths):
            out[i] = sf.read(str(path), start=start, frames=stop - start, dtype="float32", always_2d=True)[0].T
        return out


@dataclasses.dataclass
class NamedStems:
    """A method's estimates: stem names and the ``Stems`` holding them in that order."""

    names: list[str]
    stems: Stems


@dataclasses.dataclass
class Method:
    """Named estimator: ``estimate(track) -> {stem: (channels, time)}`` or ``NamedStems`` (bounded memory)."""

    name: str
    estimate: Callable[[Track], Estimates | NamedStems]
    kind: str = "model"  # model | estimates | reference


class MissingEstimates(MetricsError):
    """An estimates folder has no folder for a track of the dataset (that track is skipped)."""


def load_track(song: Song, sources: tuple[str, ...]) -> Track:
    """A dataset song as a ``Track``; nothing is read yet (the channel count comes from the mixture).

    Args:
        song: a song from ``find_tracks``.
        sources: the dataset's stem names.

    Returns:
        A ``Track`` reading the song's files on demand.
    """
    channels = 2
    if song.mixture is not None:
        channels = _probe(song.mixture)[2]
    return Track(song.name, song.sample_rate, song=song, sources=sources, channels=channels)


def find_tracks(data: Path, sources: tuple[str, ...]) -> list[Song]:
    """Songs under ``data`` (MUSDB-style folders, .stem.mp4 files or manifests), sorted by name.

    Args:
        data: dataset root.
        sources: the dataset's stem names.

    Returns:
        The songs, sorted by name.
    """
    return sorted(discover_songs(data, sources), key=lambda s: s.name)


def _scratch(track: Track) -> Path:
    if track.scratch is None:
        track.scratch = Path(tempfile.mkdtemp(prefix="stemforge-evaluate-"))
    track.scratch.mkdir(parents=True, exist_ok=True)
    return track.scratch


def _write_blocks(paths: list[Path], blocks: Iterable[np.ndarray], sample_rate: int, channels: int) -> None:
    """Write (sources, channels, n) blocks to one float32 wav per source."""
    files = [sf.SoundFile(str(p), "w", sample_rate, channels, "FLOAT") for p in paths]
    try:
        for block in blocks:
            for f, wav in zip(files, block):
                f.write(np.ascontiguousarray(wav.T))
    finally:
        for f in files:
            f.close()


def model_method(model: str, options: EvaluateOptions) -> Method:
    """A separator run through ``stemforge.separate.Separator``; its stems are streamed to temporary
    files and scored from there (memory bounded whatever the track length).

    Args:
        model: registered name or checkpoint path.
        options: separation settings (segment, overlap, shifts, device).

    Returns:
        The method, named after the model (a checkpoint's file stem).
    """
    from stemforge.separate import OutputOptions, Separator

    separator = Separator(model, segment=options.segment, overlap=options.overlap, shifts=options.shifts,
                          device=options.device)
    name = Path(model).stem if Path(model).suffix else str(model)

    def estimate(track: Track) -> Estimates | NamedStems:
        if track.song is None:  # arrays in memory
            return separator.separate_array(track.mixture, track.sample_rate)
        scratch = _scratch(track)
        mixture = scratch / "mixture.wav"
        reader = track.mixture_stems(1)
        _write_blocks([mixture], (reader.read(a, b) for a, b in blocks(track.length, READ_BLOCK)),
                      track.sample_rate, track.channels)
        output = OutputOptions(directory=scratch / "model", bits="32f", keep_rate=True, keep_channels=True, force=True)
        paths = separator.separate_file(mixture, output)
        return NamedStems(list(paths), FileStems(list(paths.values()), track.length, track.channels))

    return Method(name, estimate)


def estimates_method(folder: Path) -> Method:
    """Estimates already on disk: ``<folder>/<track>/<stem>.<wav|flac>``; rates and lengths are checked.

    A track without a folder raises ``MissingEstimates`` (``evaluate`` skips it and names it).

    Args:
        folder: the estimates folder.

    Returns:
        The method, named after the folder.

    Raises:
        StemforgeError: the folder does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise StemforgeError(f"estimates folder {folder} does not exist")

    def read(track: Track) -> NamedStems:
        track_dir = folder / track.name
        if not track_dir.is_dir():
            raise MissingEstimates(f"no estimates for track {track.name!r} in {folder}")
        paths = {}
        for path in sorted(track_dir.iterdir()):
            if path.suffix.lower() in (".wav", ".flac") and path.stem in track.names:
                try:
                    info = sf.info(str(path))
                except Exception as exc:  # soundfile raises several types for corrupt files
                    raise MetricsError(f"cannot read estimate {path}: {str(exc).splitlines()[0]}") from None
                check_rate(track.sample_rate, info.samplerate, track.name, path.stem)
                check_pair(_Shape((track.channels, track.length)), _Shape((info.channels, info.frames)),
                           track.name, path.stem, ndim=2)
                paths[path.stem] = path
        if not paths:
            raise MetricsError(f"no stem files for track {track.name!r} in {track_dir}")
        return NamedStems(list(paths), FileStems(list(paths.values()), track.length, track.channels))

    return Method(folder.name, read, kind="estimates")


class _Shape:
    """Something with a shape only, for the shape checks of files not read yet."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


def reference_method(name: str, options: EvaluateOptions) -> Method:
    """Oracle masks / Wiener filter from the true stems, or the mixture as every stem's estimate.

    Oracles are computed a few seconds at a time (``oracle_blocks``) into temporary files.

    Args:
        name: one of ``REFERENCE_METHODS``.
        options: ``device`` is used for the oracles.

    Returns:
        The method (kind "reference").

    Raises:
        StemforgeError: unknown name.
    """
    if name == "mixture":
        return Method(name, lambda t: NamedStems(list(t.names), t.mixture_stems(len(t.names))), kind="reference")
    if name not in ORACLES:
        raise StemforgeError(f"unknown reference {name!r}; choose from {', '.join(REFERENCE_METHODS)}")
    device = options.device if options.device != "cpu" else None

    def estimate(track: Track) -> NamedStems:
        paths = [_scratch(track) / f"{name}-{stem}.wav" for stem in track.names]
        parts = (block for _, block in oracle_blocks(name, track.reference_stems(), device=device))
        _write_blocks(paths, parts, track.sample_rate, track.channels)
        return NamedStems(list(track.names), FileStems(paths, track.length, track.channels))

    return Method(name, estimate, kind="reference")


def reference_groups(dataset: Iterable[str], stems: Iterable[str]) -> dict[str, list[str]]:
    """Which dataset stems make each reference of a method: its own name, except that a method with
    fewer stems than the dataset (e.g. vocals + other) has its ``other`` compared with the sum of every
    dataset stem it does not name.

    Args:
        dataset: the track's stem names.
        stems: the method's stem names.

    Returns:
        reference name -> dataset stems summed to make it (methods' stems missing from the dataset left out).
    """
    dataset, stems = list(dataset), list(stems)
    out = {s: [s] for s in stems if s in dataset}
    missing = [s for s in dataset if s not in stems]
    if "other" in stems and missing:
        out["other"] = missing + (["other"] if "other" in dataset else [])
    return out


def references_for(track: Track, stems: Iterable[str]) -> dict[str, np.ndarray]:
    """True stems (whole arrays) matching a method's stems; see ``reference_groups``.

    Args:
        track: the track.
        stems: the method's stem names.

    Returns:
        reference name -> (channels, time) array.
    """
    groups = reference_groups(track.stems, stems)
    return {name: track.stems[group[0]] if len(group) == 1 else np.sum([track.stems[s] for s in group], axis=0)
            for name, group in groups.items()}


def score_track(track_name: str, references: dict[str, np.ndarray], estimates: Estimates, sample_rate: int,
                metrics: Iterable[str] = ("bss", "mdx", "sisdr"), window: float = 1.0, hop: float = 1.0,
                device: str | None = None) -> dict:
    """Score one track -> {"stems": {stem: {metric: median dB}}, "frames": {stem: {metric: [dB per window]}}}.

    Only stems present in both dicts are scored; each estimate must match its reference's shape exactly.
    The arrays are scored through ``score_stems`` (the same code as files read a block at a time).

    Args:
        track_name: for the result and error messages.
        references: stem -> true (channels, time) array.
        estimates: stem -> estimated (channels, time) array.
        sample_rate: Hz.
        metrics: names from ``METRICS``.
        window: BSS Eval / SNR window in seconds.
        hop: hop between windows in seconds.
        device: where BSS Eval computes (default CPU).

    Returns:
        As ``score_stems``.

    Raises:
        MetricsError: no stem in common, or an estimate that does not match its reference.
    """
    names = [s for s in references if s in estimates]
    if not names:
        raise MetricsError(f"track {track_name!r}: no stem in common between estimates {sorted(estimates)} "
                           f"and references {sorted(references)}")
    for stem in names:
        check_pair(references[stem], estimates[stem], track_name, stem, ndim=2)
    dtype = np.float32 if all(np.asarray(a).dtype == np.float32 for a in (*references.values(), *estimates.values())) else np.float64
    refs = np.stack([references[s] for s in names]).astype(dtype, copy=False)
    ests = np.stack([np.asarray(estimates[s]) for s in names]).astype(dtype, copy=False)
    return score_stems(track_name, names, refs, ests, sample_rate, metrics, window, hop, device)


def score_stems(track_name: str, names: list[str], references: Stems | np.ndarray, estimates: Stems | np.ndarray,
                sample_rate: int, metrics: Iterable[str] = ("bss", "mdx", "sisdr"), window: float = 1.0,
                hop: float = 1.0, device: str | None = None) -> dict:
    """Score one track whose stems are read a block at a time (files): memory does not grow with its length.

    Args:
        track_name: for the result and error messages.
        names: stem names, in the order of the sources of ``references`` and ``estimates``.
        references: true stems (sources, channels, time).
        estimates: estimates of the same shape.
        sample_rate: Hz, to turn ``window``/``hop`` seconds into samples.
        metrics: names from ``METRICS``.
        window: BSS Eval / SNR window in seconds.
        hop: hop between windows in seconds.
        device: where to compute (default CPU).

    Returns:
        {"track", "stems": {stem: {metric: median dB or None}}, "frames": {stem: {metric: [dB per window]}}}.
    """
    metrics = tuple(metrics)
    references, estimates = as_stems(references), as_stems(estimates)
    check_pair(references, estimates, track_name)
    stems: dict[str, dict[str, float | None]] = {s: {} for s in names}
    frames: dict[str, dict[str, list[float | None]]] = {s: {} for s in names}
    win, step = int(round(window * sample_rate)), int(round(hop * sample_rate))
    try:
        if "bss" in metrics:
            scores = bss_eval_v4(references, estimates, window=win, hop=step, device=device)
            for metric, values in scores.as_dict().items():
                medians = nanmedian(values)
                for i, stem in enumerate(names):
                    stems[stem][metric] = _number(medians[i])
                    frames[stem][metric] = [_number(v) for v in values[i]]
        if "mdx" in metrics:
            for stem, value in zip(names, mdx_sdr(references, estimates).cpu().numpy()):
                stems[stem]["MDX_SDR"] = _number(value)
        if "sisdr" in metrics:
            for stem, value in zip(names, si_sdr(references, estimates).cpu().numpy()):
                stems[stem]["SI_SDR"] = _number(value)
        if "snr" in metrics:
            snr = framewise_snr(references, estimates, win, step).cpu().numpy()
            for i, stem in enumerate(names):
                stems[stem]["SNR"] = _number(nanmedian(snr[i]))
                frames[stem]["SNR"] = [_number(v) for v in snr[i]]
    except MetricsError as exc:
        if "track '" in str(exc):
            raise
        raise MetricsError(f"{exc} (track {track_name!r})") from None
    return {"track": track_name, "stems": stems, "frames": frames}


def _number(value: float) -> float | None:
    """JSON-safe float: NaN becomes None (JSON has no NaN); infinities are clipped to +-999 dB."""
    value = float(value)
    if np.isnan(value):
        return None
    return float(np.clip(value, -999.0, 999.0))


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name) or "_"


def result_path(out: Path, method: str, track: str) -> Path:
    return Path(out) / "scores" / _safe_name(method) / f"{_safe_name(track)}.json"


def _read_result(path: Path) -> dict | None:
    """A saved (method, track) result, or None (with a warning) when it is torn or not a result: score it again."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        logger.warning("re-scoring %s: its saved result cannot be read (%s)", path, str(exc).splitlines()[0][:120])
        return None
    if not isinstance(saved, dict) or not isinstance(saved.get("stems"), dict):
        logger.warning("re-scoring %s: its saved result is not a score record", path)
        return None
    return saved


def evaluate(data: Path, methods: list[Method], out: Path, options: EvaluateOptions | None = None) -> list[dict]:
    """Score every method on every track of ``data``; returns all per-track results (also on disk).

    Tracks are scored one (method, track) at a time, reading references and estimates a block at a
    time; computed estimates (models, oracles) go to a temporary folder under ``out`` that is removed
    as soon as the track is scored. Results already in ``out`` are reused when ``options.resume``; the
    first track's estimates of each method are kept as a short excerpt (``excerpt.npz``) for the
    spectrogram plot. Tracks an estimates folder lacks are skipped and named in a warning (on
    stderr); a method that scores no track at all is an error.

    Args:
        data: dataset root.
        methods: what to score (``default_methods``).
        out: report folder.
        options: how to score.

    Returns:
        One result dict per (method, track) scored.

    Raises:
        StemforgeError: bad options, or an estimates folder with none of the dataset's tracks.
    """
    options = options or EvaluateOptions()
    options.validate()
    songs = find_tracks(Path(data), options.sources)
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise StemforgeError(f"methods must have distinct names, got {names}")
    results = []
    for method in methods:
        bar = tqdm(songs, desc=method.name, unit="track", disable=not options.progress, leave=False)
        missing, scored, excerpt = [], 0, True
        for song in bar:
            path = result_path(out, method.name, song.name)
            if options.resume and path.exists():
                saved = _read_result(path)
                if saved is not None:
                    results.append(saved)
                    scored += 1
                    excerpt = False
                    continue
            track = load_track(song, options.sources)
            path.parent.mkdir(parents=True, exist_ok=True)
            track.scratch = Path(tempfile.mkdtemp(prefix=".scratch-", dir=path.parent))
            try:
                start = time.perf_counter()
                try:
                    estimates = method.estimate(track)
                except MissingEstimates:
                    missing.append(song.name)
                    continue
                elapsed = time.perf_counter() - start
                if not isinstance(estimates, NamedStems):
                    estimates = _in_memory(track, estimates)
                references = track.reference_stems(estimates.names)
                names = list(reference_groups(track.names, estimates.names))
                estimates = _select(estimates, names)
                result = score_stems(track.name, names, references, estimates.stems, track.sample_rate, options.metrics,
                                     options.window, options.hop, device=options.device)
                _blank_degenerate(method.name, result)
                result.update(method=method.name, kind=method.kind, seconds=track.length / track.sample_rate,
                              separation_seconds=elapsed, sample_rate=track.sample_rate)
                if excerpt:
                    _save_excerpt(path.parent / "excerpt.npz", track, names, references, estimates.stems)
                    excerpt = False
            finally:
                shutil.rmtree(track.scratch, ignore_errors=True)
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(result))
            tmp.replace(path)  # atomic: a crash never leaves a half-written result that resume would trust
            results.append(result)
            scored += 1
        if missing and not scored:
            raise StemforgeError(f"{method.name}: no estimates for any of the {len(songs)} tracks of {data}")
        if missing:
            logger.warning("%s: no estimates for %d of %d tracks, skipped: %s", method.name, len(missing), len(songs),
                           ", ".join(missing))
    return results


def _in_memory(track: Track, estimates: Estimates) -> NamedStems:
    """Estimates returned as arrays (custom methods): checked against their references, then wrapped."""
    names = list(reference_groups(track.names, estimates))
    if not names:
        raise MetricsError(f"track {track.name!r}: no stem in common between estimates {sorted(estimates)} "
                           f"and references {sorted(track.names)}")
    for stem in names:
        check_pair(_Shape((track.channels, track.length)), np.asarray(estimates[stem]), track.name, stem, ndim=2)
    return NamedStems(names, ArrayStems(np.stack([np.asarray(estimates[s], dtype=np.float32) for s in names])))


def _select(estimates: NamedStems, names: list[str]) -> NamedStems:
    """The estimates of ``names`` only, in that order."""
    if names == estimates.names:
        return estimates
    if not names:
        raise MetricsError(f"no stem in common between estimates {sorted(estimates.names)} and the dataset")
    return NamedStems(names, _Subset(estimates.stems, [estimates.names.index(n) for n in names]))


class _Subset(Stems):
    def __init__(self, stems: Stems, index: list[int]) -> None:
        self.stems, self.index = stems, index
        self.shape = (len(index), *stems.shape[1:])

    def read(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.stems.read(start, stop))[self.index]


def _blank_degenerate(method: str, result: dict) -> None:
    """Metrics meaningless by construction for ``method`` (``DEGENERATE``) become None (blank in reports)."""
    for metric in DEGENERATE.get(method, ((), ""))[0]:
        for table in (result["stems"], result["frames"]):
            for scores in table.values():
                if metric in scores:
                    scores[metric] = None if table is result["stems"] else [None] * len(scores[metric])


def _save_excerpt(path: Path, track: Track, names: list[str], references: Stems, estimates: Stems) -> None:
    """The loudest EXCERPT_SECONDS of the mixture (to a hop of 1024 samples): reference and estimate
    of every scored stem."""
    span = min(int(EXCERPT_SECONDS * track.sample_rate), track.length)
    hop = 1024
    mixture = track.mixture_stems(1)
    energy = []  # per hop of the mixture
    for a, b in blocks(track.length, READ_BLOCK - READ_BLOCK % hop):
        power = np.square(mixture.read(a, b)[0], dtype=np.float64).sum(0)
        energy.append(np.pad(power, (0, -len(power) % hop)).reshape(-1, hop).sum(1))
    cumulative = np.concatenate([[0.0], np.cumsum(np.concatenate(energy))])
    hops = max(1, span // hop)
    start = int(np.argmax(cumulative[hops:] - cumulative[:-hops])) * hop
    start = max(0, min(start, track.length - span))
    refs, ests = np.asarray(references.read(start, start + span)), np.asarray(estimates.read(start, start + span))
    arrays = {"sample_rate": np.array(track.sample_rate), "track": np.array(track.name)}
    for i, stem in enumerate(names):
        arrays[f"ref_{stem}"] = refs[i].astype(np.float32)
        arrays[f"est_{stem}"] = ests[i].astype(np.float32)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def default_methods(models: list[str], options: EvaluateOptions, estimates: list[Path] | None = None) -> list[Method]:
    """Methods for a report: the models, estimate folders, then reference points (unless disabled)."""
    methods = [model_method(m, options) for m in models]
    methods += [estimates_method(Path(f)) for f in estimates or []]
    if options.references:
        if CLASSICAL_REFERENCE not in {m.name for m in methods}:
            classical = model_method(CLASSICAL_REFERENCE, options)
            classical.kind = "reference"
            methods.append(classical)
        methods += [reference_method(name, options) for name in REFERENCE_METHODS]
    return methods
