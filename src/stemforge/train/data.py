"""Training examples from MUSDB-layout folders, reproducible from the example index alone.

Example ``i`` is drawn with its own generator seeded by ``(seed, i)``, so the batches of step ``k`` are the same
whether a run is fresh, resumed or read by any number of loader workers: that is what makes resume bit-exact.

Layout: each track is a folder holding ``<stem>.wav`` (or .flac) files and usually ``mixture.wav``; tracks are
found anywhere below the given roots.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch

from stemforge.audio import convert_channels
from stemforge.errors import AudioError, StemforgeError

AUDIO_SUFFIXES = (".wav", ".flac")
MIXTURE = "mixture"


@dataclasses.dataclass(frozen=True)
class Track:
    """One song folder: ``files[name]`` is the path of each stem (None when missing and allowed)."""

    folder: Path
    files: dict[str, Path | None]
    frames: int


def _find(folder: Path, name: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def find_tracks(roots: Sequence[str | Path], stems: Sequence[str], sample_rate: int, missing: str = "error") -> list[Track]:
    """Every folder below ``roots`` that holds any of ``stems`` (sorted by path); checks rates and lengths.

    ``missing="silence"`` lets a track lack some stems (they read as silence); otherwise a missing stem is an
    error naming the track. A stem with another sample rate or length than its siblings is an error naming the file.
    """
    names = set(stems)
    tracks: list[Track] = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise StemforgeError(f"data folder not found: {root}")
        folders = sorted({p.parent for p in root.rglob("*") if p.suffix in AUDIO_SUFFIXES and p.stem in names})
        for folder in folders:
            files = {stem: _find(folder, stem) for stem in stems}
            absent = [stem for stem, path in files.items() if path is None]
            if absent and missing != "silence":
                raise StemforgeError(f"track {folder} has no {absent[0]!r} stem (expected {absent[0]}.wav)")
            tracks.append(Track(folder, files, _check_files(folder, [p for p in files.values() if p], sample_rate)))
    if not tracks:
        raise StemforgeError(f"no tracks with stems {', '.join(stems)} under {', '.join(map(str, roots))}")
    return tracks


def find_mixtures(roots: Sequence[str | Path], sample_rate: int) -> list[Track]:
    """Every ``mixture.wav`` below ``roots``, as single-stem tracks (for MixIT, which never sees stems)."""
    tracks = []
    for root in roots:
        if not Path(root).is_dir():
            raise StemforgeError(f"data folder not found: {root}")
        for path in sorted(Path(root).rglob("*")):
            if path.suffix in AUDIO_SUFFIXES and path.stem == MIXTURE:
                tracks.append(Track(path.parent, {MIXTURE: path}, _check_files(path.parent, [path], sample_rate)))
    if not tracks:
        raise StemforgeError(f"no mixture.wav files under {', '.join(map(str, roots))}")
    return tracks


def _check_files(folder: Path, paths: list[Path], sample_rate: int) -> int:
    frames = None
    for path in paths:
        try:
            info = sf.info(str(path))
        except (RuntimeError, sf.LibsndfileError) as exc:
            raise AudioError(f"cannot read {path}: {str(exc).splitlines()[0]}") from exc
        if info.samplerate != sample_rate:
            raise AudioError(f"{path}: sample rate {info.samplerate} Hz, the model needs {sample_rate} Hz")
        if frames is not None and info.frames != frames:
            raise AudioError(f"{path}: {info.frames} samples but the other stems of {folder} have {frames}")
        frames = info.frames
    return int(frames or 0)


def read_stem(track: Track, stem: str, start: int, frames: int, channels: int) -> np.ndarray:
    """(channels, frames) float32 from ``start``; zero-padded past the end, silent when the stem is missing."""
    out = np.zeros((channels, frames), dtype=np.float32)
    path = track.files.get(stem)
    if path is None:
        return out
    try:
        data, _ = sf.read(str(path), start=start, frames=min(frames, max(0, track.frames - start)), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise AudioError(f"cannot read {path}: {str(exc).splitlines()[0]}") from exc
    out[:, : data.shape[0]] = convert_channels(data.T, channels)
    return out


@dataclasses.dataclass(frozen=True)
class Augment:
    """On-the-fly augmentation of stems before mixing: cross-track remix, per-stem gain, channel swap."""

    remix: float = 0.5
    gain_db: float = 3.0
    channel_swap: bool = True


class ChunkDataset(torch.utils.data.Dataset):
    """Index ``i`` -> stems (sources, channels, segment) float32 of one random chunk; mixture = stems.sum(0)."""

    def __init__(self, tracks: list[Track], stems: Sequence[str], segment: int, channels: int, seed: int,
                 augment: Augment = Augment(), size: int = 1 << 62) -> None:
        self.tracks, self.stems, self.segment, self.channels = tracks, list(stems), segment, channels
        self.seed, self.augment, self.size = seed, augment, size

    def __len__(self) -> int:
        return self.size

    def _chunk(self, rng: np.random.Generator, track: Track, stem: str) -> np.ndarray:
        start = int(rng.integers(0, max(1, track.frames - self.segment + 1)))
        return read_stem(track, stem, start, self.segment, self.channels)

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, index])
        base = self.tracks[int(rng.integers(len(self.tracks)))]
        start = int(rng.integers(0, max(1, base.frames - self.segment + 1)))
        stems = []
        for stem in self.stems:
            if rng.random() < self.augment.remix:
                wav = self._chunk(rng, self.tracks[int(rng.integers(len(self.tracks)))], stem)
            else:
                wav = read_stem(base, stem, start, self.segment, self.channels)
            wav = wav * np.float32(10.0 ** (rng.uniform(-self.augment.gain_db, self.augment.gain_db) / 20.0))
            if self.augment.channel_swap and self.channels == 2 and rng.random() < 0.5:
                wav = wav[::-1]
            stems.append(wav)
        return torch.from_numpy(np.ascontiguousarray(np.stack(stems)))


class MixturePairDataset(torch.utils.data.Dataset):
    """Index ``i`` -> two mixtures (2, channels, segment) of two different random tracks, for MixIT.

    Tracks from ``find_mixtures`` give their mixture file; tracks with stems give the sum of their stems.
    """

    def __init__(self, tracks: list[Track], segment: int, channels: int, seed: int, size: int = 1 << 62) -> None:
        self.tracks, self.segment, self.channels, self.seed, self.size = tracks, segment, channels, seed, size

    def __len__(self) -> int:
        return self.size

    def _mixture(self, rng: np.random.Generator, track: Track) -> np.ndarray:
        start = int(rng.integers(0, max(1, track.frames - self.segment + 1)))
        return sum(read_stem(track, stem, start, self.segment, self.channels) for stem in track.files)  # type: ignore[return-value]

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, index])
        first = int(rng.integers(len(self.tracks)))
        second = (first + 1 + int(rng.integers(max(1, len(self.tracks) - 1)))) % len(self.tracks)
        pair = [self._mixture(rng, self.tracks[first]), self._mixture(rng, self.tracks[second])]
        return torch.from_numpy(np.stack(pair))


def split_tracks(tracks: list[Track], fraction: float, seed: int) -> tuple[list[Track], list[Track]]:
    """Deterministic (train, valid) split holding out ``ceil(fraction * n)`` tracks (none when only one)."""
    if len(tracks) < 2 or fraction <= 0:
        return tracks, []
    order = np.random.default_rng(seed).permutation(len(tracks))
    held = max(1, int(np.ceil(fraction * len(tracks))))
    valid = {int(i) for i in order[:held]}
    return [t for i, t in enumerate(tracks) if i not in valid], [t for i, t in enumerate(tracks) if i in valid]


def step_loader(dataset: torch.utils.data.Dataset, batch_size: int, start_step: int, steps: int, workers: int) -> torch.utils.data.DataLoader:
    """Batches for steps ``start_step .. steps - 1``: step k holds examples ``k*B .. k*B + B - 1``.

    The loader has its own generator so creating it never consumes the global torch RNG (resume stays exact).
    """
    indices = range(start_step * batch_size, steps * batch_size)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=indices, num_workers=workers,
        generator=torch.Generator().manual_seed(0), persistent_workers=False,
    )
