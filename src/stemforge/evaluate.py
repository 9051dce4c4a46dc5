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
import re
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from tqdm import tqdm

from stemforge.audio import load
from stemforge.data.datasets import Song, discover_songs, read_stems
from stemforge.errors import StemforgeError
from stemforge.metrics.bss_eval import bss_eval_v4, nanmedian
from stemforge.metrics.checks import MetricsError, check_pair, check_rate
from stemforge.metrics.oracle import ideal_binary_mask, ideal_ratio_mask, oracle_wiener
from stemforge.metrics.simple import framewise_snr, mdx_sdr, si_sdr

METRICS = ("bss", "mdx", "sisdr", "snr")
#: Reference points added to every report (besides the classical DSP model).
REFERENCE_METHODS = ("oracle-irm", "oracle-ibm", "oracle-mwf", "mixture")
CLASSICAL_REFERENCE = "classical"
#: Seconds of audio kept from the first track of each method for the spectrogram plot.
EXCERPT_SECONDS = 5.0

Estimates = dict[str, np.ndarray]


@dataclasses.dataclass
class EvaluateOptions:
    """How to score: metrics, BSS Eval window/hop (seconds), separation settings, reference points."""

    metrics: tuple[str, ...] = ("bss", "mdx", "sisdr")
    sources: tuple[str, ...] = ("drums", "bass", "other", "vocals")
    window: float = 1.0
    hop: float = 1.0
    references: bool = True
    resume: bool = True
    device: str = "cpu"
    segment: float | None = None
    overlap: float = 0.25
    shifts: int = 0
    progress: bool = True

    def validate(self) -> None:
        unknown = sorted(set(self.metrics) - set(METRICS))
        if unknown:
            raise StemforgeError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
        if self.window <= 0 or self.hop <= 0:
            raise StemforgeError("window and hop must be positive seconds")


@dataclasses.dataclass
class Track:
    """One evaluation track: true stems (channels, time) at ``sample_rate`` and the mixture."""

    name: str
    sample_rate: int
    stems: dict[str, np.ndarray]
    mixture: np.ndarray


@dataclasses.dataclass
class Method:
    """Named estimator: ``estimate(track) -> {stem: (channels, time)}``."""

    name: str
    estimate: Callable[[Track], Estimates]
    kind: str = "model"  # model | estimates | reference


def load_track(song: Song, sources: tuple[str, ...]) -> Track:
    """Read a song's stems (and its mixture file when it has one; otherwise the stems' sum)."""
    channels = 2
    if song.mixture is not None:
        mixture, rate = load(song.mixture.path)
        channels = mixture.shape[0]
    stems_array = read_stems(song, sources, 0, song.length, song.sample_rate, channels=channels)
    stems = {name: stems_array[i] for i, name in enumerate(sources) if name in song.sources}
    if song.mixture is None:
        mixture = stems_array.sum(0)
    elif mixture.shape[1] != song.length:
        raise MetricsError(f"track {song.name!r}: mixture has {mixture.shape[1]} samples, stems {song.length}")
    return Track(song.name, song.sample_rate, stems, mixture.astype(np.float32))


def find_tracks(data: Path, sources: tuple[str, ...]) -> list[Song]:
    """Songs under ``data`` (MUSDB-style folders, .stem.mp4 files or manifests), sorted by name."""
    return sorted(discover_songs(data, sources), key=lambda s: s.name)


def model_method(model: str, options: EvaluateOptions) -> Method:
    """A separator run through ``stemforge.separate.Separator``."""
    from stemforge.separate import Separator

    separator = Separator(model, segment=options.segment, overlap=options.overlap, shifts=options.shifts,
                          device=options.device)
    name = Path(model).stem if Path(model).suffix else str(model)
    return Method(name, lambda track: separator.separate_array(track.mixture, track.sample_rate))


def estimates_method(folder: Path) -> Method:
    """Estimates already on disk: ``<folder>/<track>/<stem>.<wav|flac>``; rates are checked."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StemforgeError(f"estimates folder {folder} does not exist")

    def read(track: Track) -> Estimates:
        track_dir = folder / track.name
        if not track_dir.is_dir():
            raise MetricsError(f"no estimates for track {track.name!r} in {folder}")
        out = {}
        for path in sorted(track_dir.iterdir()):
            if path.suffix.lower() in (".wav", ".flac") and path.stem in track.stems:
                wav, rate = load(path)
                check_rate(track.sample_rate, rate, track.name, path.stem)
                out[path.stem] = wav
        if not out:
            raise MetricsError(f"no stem files for track {track.name!r} in {track_dir}")
        return out

    return Method(folder.name, read, kind="estimates")


def reference_method(name: str, options: EvaluateOptions) -> Method:
    """Oracle masks / Wiener filter from the true stems, or the mixture as every stem's estimate."""
    oracles = {"oracle-irm": ideal_ratio_mask, "oracle-ibm": ideal_binary_mask, "oracle-mwf": oracle_wiener}
    if name == "mixture":
        return Method(name, lambda t: {s: t.mixture.copy() for s in t.stems}, kind="reference")
    if name not in oracles:
        raise StemforgeError(f"unknown reference {name!r}; choose from {', '.join(REFERENCE_METHODS)}")
    oracle = oracles[name]
    device = options.device if options.device != "cpu" else None

    def estimate(track: Track) -> Estimates:
        names = list(track.stems)
        stems = np.stack([track.stems[s] for s in names])
        return dict(zip(names, oracle(stems, device=device)))

    return Method(name, estimate, kind="reference")


def references_for(track: Track, stems: Iterable[str]) -> dict[str, np.ndarray]:
    """True stems matching a method's stems. A method with fewer stems than the dataset (e.g. vocals +
    other) has its ``other`` compared with the sum of every dataset stem it does not name."""
    stems = list(stems)
    out = {s: track.stems[s] for s in stems if s in track.stems}
    missing = [s for s in track.stems if s not in stems]
    if "other" in stems and missing:
        folded = [track.stems[s] for s in missing] + ([track.stems["other"]] if "other" in track.stems else [])
        out["other"] = np.sum(folded, axis=0)
    return out


def score_track(track_name: str, references: dict[str, np.ndarray], estimates: Estimates, sample_rate: int,
                metrics: Iterable[str] = ("bss", "mdx", "sisdr"), window: float = 1.0, hop: float = 1.0,
                device: str | None = None) -> dict:
    """Score one track -> {"stems": {stem: {metric: median dB}}, "frames": {stem: {metric: [dB per window]}}}.

    Only stems present in both dicts are scored; each estimate must match its reference's shape exactly.
    """
    metrics = tuple(metrics)
    names = [s for s in references if s in estimates]
    if not names:
        raise MetricsError(f"track {track_name!r}: no stem in common between estimates {sorted(estimates)} "
                           f"and references {sorted(references)}")
    for stem in names:
        check_pair(references[stem], estimates[stem], track_name, stem, ndim=2)
    dtype = np.float32 if all(np.asarray(a).dtype == np.float32 for a in (*references.values(), *estimates.values())) else np.float64
    refs = np.stack([references[s] for s in names]).astype(dtype, copy=False)  # float64 only chunk-wise inside
    ests = np.stack([np.asarray(estimates[s]) for s in names]).astype(dtype, copy=False)
    stems: dict[str, dict[str, float | None]] = {s: {} for s in names}
    frames: dict[str, dict[str, list[float | None]]] = {s: {} for s in names}
    win, step = int(round(window * sample_rate)), int(round(hop * sample_rate))
    if "bss" in metrics:
        scores = bss_eval_v4(refs, ests, window=win, hop=step, device=device)
        for metric, values in scores.as_dict().items():
            medians = nanmedian(values)
            for i, stem in enumerate(names):
                stems[stem][metric] = _number(medians[i])
                frames[stem][metric] = [_number(v) for v in values[i]]
    if "mdx" in metrics:
        for stem, value in zip(names, mdx_sdr(refs, ests).cpu().numpy()):
            stems[stem]["MDX_SDR"] = _number(value)
    if "sisdr" in metrics:
        for stem, value in zip(names, si_sdr(refs, ests).cpu().numpy()):
            stems[stem]["SI_SDR"] = _number(value)
    if "snr" in metrics:
        snr = framewise_snr(refs, ests, win, step).cpu().numpy()
        for i, stem in enumerate(names):
            stems[stem]["SNR"] = _number(nanmedian(snr[i]))
            frames[stem]["SNR"] = [_number(v) for v in snr[i]]
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


def evaluate(data: Path, methods: list[Method], out: Path, options: EvaluateOptions | None = None) -> list[dict]:
    """Score every method on every track of ``data``; returns all per-track results (also on disk).

    Results already in ``out`` are reused when ``options.resume``; the first track's estimates of each
    method are kept as a short excerpt (``excerpt.npz``) for the spectrogram plot.
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
        for index, song in enumerate(bar):
            path = result_path(out, method.name, song.name)
            if options.resume and path.exists():
                results.append(json.loads(path.read_text()))
                continue
            track = load_track(song, options.sources)
            start = time.perf_counter()
            estimates = method.estimate(track)
            elapsed = time.perf_counter() - start
            references = references_for(track, estimates)
            result = score_track(track.name, references, estimates, track.sample_rate, options.metrics,
                                 options.window, options.hop, device=options.device)
            result.update(method=method.name, kind=method.kind, seconds=track.mixture.shape[1] / track.sample_rate,
                          separation_seconds=elapsed, sample_rate=track.sample_rate)
            path.parent.mkdir(parents=True, exist_ok=True)
            if index == 0:
                _save_excerpt(path.parent / "excerpt.npz", track, references, estimates)
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(result))
            tmp.replace(path)  # atomic: a crash never leaves a half-written result that resume would trust
            results.append(result)
    return results


def _save_excerpt(path: Path, track: Track, references: dict[str, np.ndarray], estimates: Estimates) -> None:
    """The loudest EXCERPT_SECONDS of the mixture: reference and estimate of every scored stem."""
    span = min(int(EXCERPT_SECONDS * track.sample_rate), track.mixture.shape[1])
    cumulative = np.concatenate([[0.0], np.cumsum(np.square(track.mixture, dtype=np.float64).sum(0))])
    start = int(np.argmax(cumulative[span:] - cumulative[:-span]))
    arrays = {"sample_rate": np.array(track.sample_rate), "track": np.array(track.name)}
    for stem in references:
        if stem in estimates:
            arrays[f"ref_{stem}"] = references[stem][:, start : start + span].astype(np.float32)
            arrays[f"est_{stem}"] = np.asarray(estimates[stem])[:, start : start + span].astype(np.float32)
    np.savez_compressed(path, **arrays)


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
