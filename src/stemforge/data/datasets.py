"""Training and evaluation datasets over stem folders: items are ``stems: (sources, channels, time)``.

float32 tensors; the mixture is ``stems.sum(0)``. Songs come from ``stemforge.data.songs`` (MUSDB18
folders and ``.stem.mp4`` files, MoisesDB-like trees, CSV/JSON manifests), checked when found.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from stemforge.data.songs import AudioFile, Song, check_song, discover_songs, read_stems
from stemforge.errors import StemforgeError
from stemforge.stems import FOUR_STEMS

__all__ = ["AudioFile", "RandomChunkDataset", "Song", "StemFolderDataset", "check_song", "discover_songs",
           "read_stems"]

#: augment(stems (S, C, T_in), rng, chunk) -> stems (S, C, chunk); see ``stemforge.data.augment.Augment``.
AugmentFn = Callable[[torch.Tensor, np.random.Generator, int], torch.Tensor]


class StemFolderDataset(Dataset):
    """Fixed, ordered chunks of every song (validation / evaluation): item -> (sources, channels, time).

    ``segment_seconds=None`` gives whole songs (lengths differ). Chunks start every ``stride_seconds``
    (default: the segment length); the last chunk of a song is zero-padded.
    """

    def __init__(self, roots: Path | str | Iterable[Path | str],
                 sources: Sequence[str] = FOUR_STEMS,
                 segment_seconds: float | None = 6.0, sample_rate: int = 44100, channels: int = 2,
                 stride_seconds: float | None = None, songs: list[Song] | None = None) -> None:
        self.sources = tuple(sources)
        self.sample_rate = sample_rate
        self.channels = channels
        self.songs = songs if songs is not None else discover_songs(roots, self.sources)
        self.segment_seconds = segment_seconds
        self.index: list[tuple[int, int, int]] = []  # (song, start in song frames, frames at target rate)
        for s, song in enumerate(self.songs):
            if segment_seconds is None:
                self.index.append((s, 0, int(round(song.length * sample_rate / song.sample_rate))))
                continue
            if segment_seconds <= 0:
                raise StemforgeError(f"segment_seconds must be > 0, got {segment_seconds}")
            stride = stride_seconds or segment_seconds
            segment = int(round(segment_seconds * sample_rate))
            for k in range(max(1, int(math.ceil((song.seconds - segment_seconds) / stride)) + 1)):
                start = int(round(k * stride * song.sample_rate))
                if start >= song.length:
                    break
                self.index.append((s, start, segment))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> torch.Tensor:
        s, start, frames = self.index[item]
        return torch.from_numpy(read_stems(self.songs[s], self.sources, start, frames, self.sample_rate, self.channels))


class RandomChunkDataset(Dataset):
    """Random chunks for training, optionally remixed across songs and augmented: item -> (sources, channels, time).

    Item ``i`` of epoch ``e`` is drawn from ``numpy.random.default_rng([seed, e, i])``: reproducible, and
    different per worker without shared state. With probability ``remix_probability`` every source comes
    from an independently chosen song and offset (new combinations each time); otherwise all sources
    come from one song at one offset. Chunks whose mixture is silent (< ``silence_db``) are redrawn a few
    times; silent single stems are kept, they are valid targets.
    """

    def __init__(self, songs: list[Song] | StemFolderDataset,
                 sources: Sequence[str] = FOUR_STEMS, chunk_seconds: float = 6.0,
                 sample_rate: int = 44100, channels: int = 2, epoch_size: int = 1000,
                 remix_probability: float = 0.5, augment: AugmentFn | None = None, seed: int = 0,
                 silence_db: float = -60.0) -> None:
        if isinstance(songs, StemFolderDataset):
            songs = songs.songs
        if not songs:
            raise StemforgeError("RandomChunkDataset needs at least one song")
        if chunk_seconds <= 0:
            raise StemforgeError(f"chunk_seconds must be > 0, got {chunk_seconds}")
        self.songs = list(songs)
        self.sources = tuple(sources)
        self.chunk = int(round(chunk_seconds * sample_rate))
        self.sample_rate = sample_rate
        self.channels = channels
        self.epoch_size = epoch_size
        self.remix_probability = remix_probability
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.silence_db = silence_db

    def set_epoch(self, epoch: int) -> None:
        """Call before each epoch so every epoch sees new chunks.

        DataLoader workers hold copies of the dataset: this reaches them when workers are started per
        epoch (the default); with ``persistent_workers=True`` they would keep the old epoch.
        """
        self.epoch = epoch

    def __len__(self) -> int:
        return self.epoch_size

    def _input_frames(self) -> int:
        needed = getattr(self.augment, "input_length", None)
        return needed(self.chunk) if callable(needed) else self.chunk

    def _offset(self, rng: np.random.Generator, song: Song, frames: int) -> int:
        native = int(math.ceil(frames * song.sample_rate / self.sample_rate))
        return int(rng.integers(0, max(1, song.length - native + 1)))

    def _draw(self, rng: np.random.Generator) -> torch.Tensor:
        frames = self._input_frames()
        if rng.random() < self.remix_probability:
            parts = []
            for source in self.sources:
                song = self.songs[int(rng.integers(len(self.songs)))]
                parts.append(read_stems(song, (source,), self._offset(rng, song, frames), frames,
                                        self.sample_rate, self.channels))
            stems = np.concatenate(parts, axis=0)
        else:
            song = self.songs[int(rng.integers(len(self.songs)))]
            stems = read_stems(song, self.sources, self._offset(rng, song, frames), frames, self.sample_rate,
                               self.channels)
        tensor = torch.from_numpy(stems)
        if self.augment is not None:
            tensor = self.augment(tensor, rng, self.chunk)
        tensor = tensor[..., : self.chunk]
        if tensor.shape[-1] < self.chunk:
            tensor = torch.nn.functional.pad(tensor, (0, self.chunk - tensor.shape[-1]))
        return tensor.contiguous()

    def __getitem__(self, item: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.epoch, item])
        threshold = 10 ** (self.silence_db / 10)
        stems = self._draw(rng)
        for _ in range(8):
            if float(stems.sum(0).square().mean()) > threshold:
                break
            stems = self._draw(rng)
        return stems
