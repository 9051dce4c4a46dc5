"""Stem-folder datasets: layouts, checks that name the bad file, chunking, random remix chunks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge.data.augment import Augment, AugmentConfig
from stemforge.data.datasets import RandomChunkDataset, StemFolderDataset, discover_songs, read_stems
from stemforge.errors import AudioError, StemforgeError

RATE = 8000
SOURCES = ("drums", "bass", "other", "vocals")


def _tone(freq: float, frames: int, channels: int = 2) -> np.ndarray:
    t = np.arange(frames) / RATE
    wave = 0.2 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([wave] * channels, axis=1)


def _musdb_song(folder: Path, frames: int = RATE * 2, rate: int = RATE) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True)
    stems = {name: _tone(100 * (i + 1), frames) for i, name in enumerate(SOURCES)}
    for name, wave in stems.items():
        sf.write(folder / f"{name}.wav", wave, rate, subtype="FLOAT")
    sf.write(folder / "mixture.wav", sum(stems.values()), rate, subtype="FLOAT")
    return stems


def test_musdb_tree_is_found_and_chunked(tmp_path: Path) -> None:
    _musdb_song(tmp_path / "train" / "song A")
    stems_b = _musdb_song(tmp_path / "train" / "song B")
    songs = discover_songs(tmp_path)
    assert [s.name for s in songs] == ["train/song A", "train/song B"]
    assert songs[0].sample_rate == RATE and songs[0].length == 2 * RATE
    ds = StemFolderDataset(tmp_path, segment_seconds=0.75, sample_rate=RATE)
    assert len(ds) == 6  # 3 chunks per 2 s song; the last one zero-padded
    item = ds[3]
    assert item.shape == (4, 2, int(0.75 * RATE)) and item.dtype == torch.float32
    expected = np.stack([stems_b[n].T[:, : int(0.75 * RATE)] for n in SOURCES])
    assert np.allclose(item.numpy(), expected, atol=1e-7)
    assert torch.all(ds[5][..., RATE // 2:] == 0)


def test_moisesdb_like_tree_sums_files_and_maps_names(tmp_path: Path) -> None:
    song = tmp_path / "moises" / "0001"
    for stem, files in {"vocals": 2, "drums": 1, "percussion": 1, "bass": 1, "bowed_strings": 1}.items():
        (song / stem).mkdir(parents=True)
        for k in range(files):
            sf.write(song / stem / f"take{k}.wav", _tone(200 + 50 * k, RATE, channels=1), RATE)
    songs = discover_songs(tmp_path)
    assert len(songs) == 1 and len(songs[0].sources["vocals"]) == 2 and len(songs[0].sources["drums"]) == 2
    stems = read_stems(songs[0], SOURCES, 0, RATE, RATE, channels=2)
    expected_vocals = (_tone(200, RATE, 1) + _tone(250, RATE, 1))[:, 0]
    assert np.allclose(stems[3, 0], expected_vocals, atol=1e-4)  # mono files become two equal channels
    assert np.allclose(stems[3, 0], stems[3, 1])
    assert np.any(stems[2])  # bowed_strings -> other


def test_csv_and_json_manifests(tmp_path: Path) -> None:
    stems = _musdb_song(tmp_path / "audio")
    (tmp_path / "list.csv").write_text("name,drums,bass,other,vocals\n"
                                       "one,audio/drums.wav,audio/bass.wav,audio/other.wav,audio/vocals.wav;audio/other.wav\n")
    (tmp_path / "list.json").write_text(json.dumps([{"name": "two", "sources": {"drums": "audio/drums.wav",
                                                                             "vocals": ["audio/vocals.wav"]}}]))
    songs = discover_songs([tmp_path / "list.csv", tmp_path / "list.json"])
    assert [s.name for s in songs] == ["one", "two"]
    one = read_stems(songs[0], SOURCES, 0, 100, RATE)
    assert np.allclose(one[3], (stems["vocals"] + stems["other"]).T[:, :100], atol=1e-6)
    two = read_stems(songs[1], SOURCES, 0, 100, RATE)
    assert not np.any(two[1]) and not np.any(two[2])  # sources the song lacks are silent


def test_length_mismatch_names_the_file(tmp_path: Path) -> None:
    _musdb_song(tmp_path / "s")
    sf.write(tmp_path / "s" / "bass.wav", _tone(100, RATE), RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"bass\.wav has 8000 frames"):
        discover_songs(tmp_path)


def test_rate_mismatch_names_the_file(tmp_path: Path) -> None:
    _musdb_song(tmp_path / "s")
    sf.write(tmp_path / "s" / "vocals.wav", _tone(100, 2 * RATE), 2 * RATE // 2 + 1, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"vocals\.wav is 8001 Hz"):
        discover_songs(tmp_path)


def test_corrupt_stem_is_reported_not_skipped(tmp_path: Path) -> None:
    _musdb_song(tmp_path / "s")
    (tmp_path / "s" / "drums.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(AudioError, match=r"drums\.wav"):
        discover_songs(tmp_path)
    with pytest.raises(StemforgeError, match="does not exist"):
        discover_songs(tmp_path / "missing")
    with pytest.raises(StemforgeError, match="no songs"):
        (tmp_path / "empty").mkdir()
        discover_songs(tmp_path / "empty")


def test_other_sample_rates_are_resampled(tmp_path: Path) -> None:
    _musdb_song(tmp_path / "s", frames=RATE, rate=RATE)
    ds = StemFolderDataset(tmp_path, segment_seconds=0.5, sample_rate=2 * RATE)
    item = ds[0]
    assert item.shape == (4, 2, RATE)
    spectrum = np.abs(np.fft.rfft(item[0, 0].numpy()))
    assert abs(np.argmax(spectrum) * 2 * RATE / RATE - 100) <= 2  # the 100 Hz drum tone stays at 100 Hz


def _write_stem_mp4(path: Path, stems: list[np.ndarray]) -> None:
    import av

    with av.open(str(path), "w", format="mp4") as container:
        streams = [container.add_stream("aac", rate=44100) for _ in stems]
        for stream in streams:
            stream.layout = "stereo"
        for stream, wave in zip(streams, stems):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave.reshape(1, -1)), format="flt",
                                               layout="stereo")
            frame.sample_rate = 44100
            for packet in stream.encode(frame):
                container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)


def test_stem_mp4_is_decoded(tmp_path: Path) -> None:
    t = np.arange(44100) / 44100
    tones = [np.stack([0.2 * np.sin(2 * np.pi * f * t)] * 2, axis=1).astype(np.float32) for f in (100, 200, 300, 400)]
    _write_stem_mp4(tmp_path / "track.stem.mp4", [sum(tones)] + tones)
    songs = discover_songs(tmp_path)
    assert [s.name for s in songs] == ["track"] and songs[0].sample_rate == 44100
    stems = read_stems(songs[0], SOURCES, 0, 22050, 44100)
    for i, freq in enumerate((100, 200, 300, 400)):  # drums, bass, other, vocals streams in MUSDB order
        spectrum = np.abs(np.fft.rfft(stems[i, 0, 4096:]))
        assert abs(np.argmax(spectrum) * 44100 / (22050 - 4096) - freq) < 5


def test_random_chunks_are_reproducible_finite_and_remixed(tmp_path: Path) -> None:
    _musdb_song(tmp_path / "a")
    song_b = tmp_path / "b"
    song_b.mkdir()
    for name in SOURCES:  # a song whose vocals are silent: still a valid training example
        wave = np.zeros((RATE * 2, 2), np.float32) if name == "vocals" else _tone(330, RATE * 2)
        sf.write(song_b / f"{name}.wav", wave, RATE, subtype="FLOAT")
    songs = discover_songs(tmp_path)
    augment = Augment(AugmentConfig(sample_rate=RATE, pitch_shift_probability=0.5, tempo_probability=0.5))
    ds = RandomChunkDataset(songs, segment_seconds=0.5, sample_rate=RATE, epoch_size=12, remix_probability=0.5,
                            augment=augment, seed=3)
    items = [ds[i] for i in range(len(ds))]
    for item in items:
        assert item.shape == (4, 2, RATE // 2) and item.dtype == torch.float32
        assert torch.isfinite(item).all()
    assert torch.equal(ds[4], items[4])
    ds.set_epoch(1)
    assert not torch.equal(ds[4], items[4])
    with pytest.raises(StemforgeError):
        RandomChunkDataset([], segment_seconds=1.0)
