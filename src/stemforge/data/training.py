"""What the training loop reads: songs in every layout ``data check`` accepts, cut into chunks at the model's rate.

Songs are found and read by ``stemforge.data.songs`` (MUSDB18 folders and ``.stem.mp4`` files, MoisesDB-like
trees, CSV/JSON manifests), at any sample rate: chunks are resampled to the model's rate with soxr.

A *chunk* is one training example. Example ``i`` is drawn with its own generator seeded by ``(seed, i)``, so the
batches of step ``k`` are the same whether a run is fresh, resumed or read by any number of loader workers: that
is what keeps resume bit-exact.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from stemforge.data.augment import Augment, AugmentConfig
from stemforge.data.datasets import RandomChunkDataset
from stemforge.data.songs import AudioFile, Song, discover_songs, read_stems
from stemforge.data.stemmp4 import STEM_MP4_STREAMS

__all__ = ["MixturePairDataset", "Song", "chunk_dataset", "find_mixture_songs", "find_training_songs", "split_songs",
           "StepIndices", "step_loader", "validation_stems"]
from stemforge.errors import StemforgeError
from stemforge.stems import FOUR_STEMS

#: The source that a mixture-only song (for MixIT) is read as.
MIXTURE = "mixture"
#: Stems looked for when only mixtures are wanted (a song without a mixture file is the sum of these).
MIXTURE_STEMS = FOUR_STEMS


def _check_roots(roots: Sequence[str | Path]) -> list[Path]:
    paths = [Path(root) for root in roots]
    for path in paths:
        if not path.exists():
            raise StemforgeError(f"data folder not found: {path}")
    return paths


def find_training_songs(roots: Sequence[str | Path], sources: Sequence[str], missing: str = "error") -> list[Song]:
    """Every song below ``roots`` (folders, ``.stem.mp4`` files or manifests), checked, in discovery order.

    Args:
        roots: folders, ``.stem.mp4`` files or ``.csv``/``.json`` manifests.
        sources: the stems the model is trained on.
        missing: ``"error"`` (a song lacking one of ``sources`` is an error naming it) or ``"silence"``
            (the stem reads as silence).

    Returns:
        The songs; each knows its own sample rate and length in frames.
    """
    songs = discover_songs(_check_roots(roots), tuple(sources))
    if missing != "silence":
        for song in songs:
            absent = [source for source in sources if source not in song.sources]
            if absent:
                raise StemforgeError(f"song {song.name!r} has no {absent[0]!r} stem "
                                     f"(or set missing_stems = \"silence\" to train on it with a silent {absent[0]})")
    return songs


def find_mixture_songs(roots: Sequence[str | Path]) -> list[Song]:
    """Every song below ``roots`` as a single ``"mixture"`` source, for MixIT (which never sees stems).

    A song's mixture file (``mixture.wav``, stream 0 of a ``.stem.mp4``) is read when it has one; otherwise its
    stems are summed.

    Args:
        roots: folders, ``.stem.mp4`` files or ``.csv``/``.json`` manifests.

    Returns:
        Songs whose ``sources`` hold the files that sum to the mixture.
    """
    songs = []
    for song in discover_songs(_check_roots(roots), MIXTURE_STEMS):
        files = [f for fs in song.sources.values() for f in fs]
        containers = {f.path for f in files if f.stream is not None}
        if song.mixture is not None:
            files = [song.mixture]
        elif len(containers) == 1 and all(f.stream is not None for f in files):
            files = [AudioFile(containers.pop(), STEM_MP4_STREAMS.index(MIXTURE))]
        songs.append(Song(song.name, {MIXTURE: files}, song.sample_rate, song.length))
    return songs


def split_songs(songs: list[Song], fraction: float, seed: int) -> tuple[list[Song], list[Song]]:
    """Deterministic (train, valid) split holding out ``ceil(fraction * n)`` songs (none when only one).

    Args:
        songs: all songs, in a fixed order.
        fraction: share held out for validation.
        seed: which songs are held out.

    Returns:
        (training songs, validation songs), each in the original order.
    """
    if len(songs) < 2 or fraction <= 0:
        return songs, []
    order = np.random.default_rng(seed).permutation(len(songs))
    held = max(1, int(np.ceil(fraction * len(songs))))
    valid = {int(i) for i in order[:held]}
    return [s for i, s in enumerate(songs) if i not in valid], [s for i, s in enumerate(songs) if i in valid]


def chunk_dataset(songs: list[Song], sources: Sequence[str], chunk_seconds: float, sample_rate: int, channels: int,
                  seed: int, remix: float = 0.5, augment: AugmentConfig | None = None) -> RandomChunkDataset:
    """Supervised chunks: item ``i`` -> stems (sources, channels, chunk) float32 at ``sample_rate``; a function of
    (seed, i) only (the dataset's epoch stays 0; the loop gives every example of the run its own index).

    Args:
        songs: from ``find_training_songs``, at any sample rate.
        sources: stem order of the model's output.
        chunk_seconds: length of one example.
        sample_rate: the model's rate; songs at other rates are resampled.
        channels: the model's channel count.
        seed: the run's seed.
        remix: probability that an example draws every stem from its own random song and offset.
        augment: gain, channel swap, polarity, time shift and (opt-in) pitch/tempo; None for no augmentation.

    Returns:
        A map-style dataset of effectively unbounded length.
    """
    transform = Augment(augment) if augment is not None else None
    return RandomChunkDataset(songs, sources, chunk_seconds, sample_rate, channels, epoch_size=1 << 62,
                              remix_probability=remix, augment=transform, seed=seed)


class MixturePairDataset(torch.utils.data.Dataset):
    """Index ``i`` -> two mixtures (2, channels, chunk) float32 of two different random songs, for MixIT.

    A song's mixture is the sum of its sources (``find_mixture_songs`` gives one ``"mixture"`` source). Index ``i``
    is drawn from a generator seeded by ``(seed, i)`` alone.

    Args:
        songs: at any sample rate.
        chunk: frames per mixture at ``sample_rate``.
        sample_rate: the model's rate.
        channels: the model's channel count.
        seed: the run's seed (plus one, so the pairs differ from the supervised chunks).
        size: nominal length.
    """

    def __init__(self, songs: list[Song], chunk: int, sample_rate: int, channels: int, seed: int,
                 size: int = 1 << 62) -> None:
        if not songs:
            raise StemforgeError("MixturePairDataset needs at least one song")
        self.songs, self.chunk, self.sample_rate, self.channels = list(songs), chunk, sample_rate, channels
        self.seed, self.size = seed, size

    def __len__(self) -> int:
        return self.size

    def _mixture(self, rng: np.random.Generator, song: Song) -> np.ndarray:
        native = int(math.ceil(self.chunk * song.sample_rate / self.sample_rate))
        start = int(rng.integers(0, max(1, song.length - native + 1)))
        return read_stems(song, tuple(song.sources), start, self.chunk, self.sample_rate, self.channels).sum(0)

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, index])
        first = int(rng.integers(len(self.songs)))
        second = (first + 1 + int(rng.integers(max(1, len(self.songs) - 1)))) % len(self.songs)
        pair = [self._mixture(rng, self.songs[first]), self._mixture(rng, self.songs[second])]
        return torch.from_numpy(np.stack(pair))


def validation_stems(songs: list[Song], sources: Sequence[str], seconds: float, sample_rate: int,
                     channels: int) -> list[np.ndarray]:
    """The first ``seconds`` of each song, resampled to ``sample_rate``, for scoring during training.

    Args:
        songs: validation songs, at any sample rate.
        sources: stem order of the model's output.
        seconds: how much of each song's start is scored (a shorter song is read whole).
        sample_rate: the model's rate.
        channels: the model's channel count.

    Returns:
        One (sources, channels, frames) float32 array per song.
    """
    out = []
    for song in songs:
        frames = min(int(round(seconds * sample_rate)), int(round(song.length * sample_rate / song.sample_rate)))
        out.append(read_stems(song, sources, 0, frames, sample_rate, channels))
    return out


class StepIndices(Sequence[int]):
    """The example numbers one process reads for steps ``start_step .. steps - 1``, in order.

    Step k's global batch is examples ``k*B .. k*B + B - 1`` (B = ``batch_size``); of ``world_size`` processes,
    rank r takes the r-th contiguous share of ``B / world_size`` of them. The shares are disjoint, cover the
    global batch, and depend on nothing but these numbers (a lazy sequence: a long run lists no indices).

    Args:
        batch_size: the global batch B, a multiple of ``world_size``.
        start_step: first step.
        steps: one past the last step.
        rank: this process's rank, ``0 <= rank < world_size``.
        world_size: processes sharing each global batch.
    """

    def __init__(self, batch_size: int, start_step: int, steps: int, rank: int = 0, world_size: int = 1) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a world of {world_size}")
        if batch_size % world_size:
            raise StemforgeError(f"a batch of {batch_size} examples cannot be split evenly over {world_size} "
                                 f"processes; give a --batch-size that is a multiple of {world_size}")
        self.batch_size, self.start, self.steps = batch_size, start_step, max(start_step, steps)
        self.share = batch_size // world_size
        self.offset = rank * self.share

    def __len__(self) -> int:
        return (self.steps - self.start) * self.share

    def __getitem__(self, i: int) -> int:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        step, j = divmod(i, self.share)
        return (self.start + step) * self.batch_size + self.offset + j


def step_loader(dataset: torch.utils.data.Dataset, batch_size: int, start_step: int, steps: int,
                workers: int, rank: int = 0, world_size: int = 1) -> torch.utils.data.DataLoader:
    """Batches for steps ``start_step .. steps - 1``: step k holds examples ``k*B .. k*B + B - 1``.

    With ``world_size`` processes (distributed data parallel) rank r's batch of step k is the r-th contiguous
    ``B / world_size`` of those examples (``StepIndices``): together the ranks read exactly the global batch a
    single process would, each example once. The loader has its own generator so creating it never consumes the
    global torch RNG (resume stays exact).

    Args:
        dataset: indexable by example number.
        batch_size: examples per step over all processes (B).
        start_step: first step to yield.
        steps: one past the last step.
        workers: loader processes (0: in this process).
        rank: this process's rank.
        world_size: processes sharing each step; must divide ``batch_size``.

    Returns:
        A DataLoader yielding (B / world_size, ...) batches in step order.

    Raises:
        StemforgeError: ``batch_size`` is not a multiple of ``world_size`` (one line).
    """
    indices = StepIndices(batch_size, start_step, steps, rank, world_size)
    return torch.utils.data.DataLoader(
        dataset, batch_size=indices.share, sampler=indices, num_workers=workers,
        generator=torch.Generator().manual_seed(0), persistent_workers=False,
    )
