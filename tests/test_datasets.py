"""Datasets: fixed chunks with resampling, random remix chunks that are reproducible and finite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from data_fixtures import RATE, SOURCES, musdb_song, tone
from stemforge.data.augment import Augment, AugmentConfig
from stemforge.data.datasets import RandomChunkDataset, StemFolderDataset, discover_songs
from stemforge.errors import StemforgeError


def test_other_sample_rates_are_resampled(tmp_path: Path) -> None:
    musdb_song(tmp_path / "s", frames=RATE, rate=RATE)
    ds = StemFolderDataset(tmp_path, segment_seconds=0.5, sample_rate=2 * RATE)
    item = ds[0]
    assert item.shape == (4, 2, RATE)
    spectrum = np.abs(np.fft.rfft(item[0, 0].numpy()))
    assert abs(np.argmax(spectrum) * 2 * RATE / RATE - 100) <= 2  # the 100 Hz drum tone stays at 100 Hz


def test_random_chunks_are_reproducible_finite_and_remixed(tmp_path: Path) -> None:
    musdb_song(tmp_path / "a")
    song_b = tmp_path / "b"
    song_b.mkdir()
    for name in SOURCES:  # a song whose vocals are silent: still a valid training example
        wave = np.zeros((RATE * 2, 2), np.float32) if name == "vocals" else tone(330, RATE * 2)
        sf.write(song_b / f"{name}.wav", wave, RATE, subtype="FLOAT")
    songs = discover_songs(tmp_path)
    augment = Augment(AugmentConfig(sample_rate=RATE, pitch_shift_probability=0.5, tempo_probability=0.5))
    ds = RandomChunkDataset(songs, chunk_seconds=0.5, sample_rate=RATE, epoch_size=12, remix_probability=0.5,
                            augment=augment, seed=3)
    items = [ds[i] for i in range(len(ds))]
    for item in items:
        assert item.shape == (4, 2, RATE // 2) and item.dtype == torch.float32
        assert torch.isfinite(item).all()
    assert torch.equal(ds[4], items[4])
    ds.set_epoch(1)
    assert not torch.equal(ds[4], items[4])
    with pytest.raises(StemforgeError):
        RandomChunkDataset([], chunk_seconds=1.0)
