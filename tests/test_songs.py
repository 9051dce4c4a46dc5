"""Song discovery and checks: layouts, manifests, .stem.mp4, errors that name the bad file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from data_fixtures import RATE, SOURCES, musdb_song, tone, write_stem_mp4
from stemforge.data.datasets import StemFolderDataset
from stemforge.data.songs import discover_songs, read_stems
from stemforge.errors import AudioError, StemforgeError


def test_musdb_tree_is_found_and_chunked(tmp_path: Path) -> None:
    musdb_song(tmp_path / "train" / "song A")
    stems_b = musdb_song(tmp_path / "train" / "song B")
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
            sf.write(song / stem / f"take{k}.wav", tone(200 + 50 * k, RATE, channels=1), RATE)
    songs = discover_songs(tmp_path)
    assert len(songs) == 1 and len(songs[0].sources["vocals"]) == 2 and len(songs[0].sources["drums"]) == 2
    stems = read_stems(songs[0], SOURCES, 0, RATE, RATE, channels=2)
    expected_vocals = (tone(200, RATE, 1) + tone(250, RATE, 1))[:, 0]
    assert np.allclose(stems[3, 0], expected_vocals, atol=1e-4)  # mono files become two equal channels
    assert np.allclose(stems[3, 0], stems[3, 1])
    assert np.any(stems[2])  # bowed_strings -> other


def test_csv_and_json_manifests(tmp_path: Path) -> None:
    stems = musdb_song(tmp_path / "audio")
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
    musdb_song(tmp_path / "s")
    sf.write(tmp_path / "s" / "bass.wav", tone(100, RATE), RATE, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"bass\.wav has 8000 frames"):
        discover_songs(tmp_path)


def test_rate_mismatch_names_the_file(tmp_path: Path) -> None:
    musdb_song(tmp_path / "s")
    sf.write(tmp_path / "s" / "vocals.wav", tone(100, 2 * RATE), 2 * RATE // 2 + 1, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"vocals\.wav is 8001 Hz"):
        discover_songs(tmp_path)


def test_corrupt_stem_is_reported_not_skipped(tmp_path: Path) -> None:
    musdb_song(tmp_path / "s")
    (tmp_path / "s" / "drums.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(AudioError, match=r"drums\.wav"):
        discover_songs(tmp_path)
    with pytest.raises(StemforgeError, match="does not exist"):
        discover_songs(tmp_path / "missing")
    with pytest.raises(StemforgeError, match="no songs"):
        (tmp_path / "empty").mkdir()
        discover_songs(tmp_path / "empty")


def test_stem_mp4_is_decoded(tmp_path: Path) -> None:
    from stemforge.data.stemmp4 import decode_stream as _decode_stream, read_stream as _read_stream

    t = np.arange(3 * 44100) / 44100
    tones = [np.stack([0.2 * np.sin(2 * np.pi * f * t)] * 2, axis=1).astype(np.float32) for f in (100, 200, 300, 400)]
    write_stem_mp4(tmp_path / "track.stem.mp4", [sum(tones)] + tones)
    songs = discover_songs(tmp_path)
    assert [s.name for s in songs] == ["track"] and songs[0].sample_rate == 44100
    assert abs(songs[0].length - 3 * 44100) < 4096  # from the container metadata (AAC pads the end)
    stems = read_stems(songs[0], SOURCES, 0, 22050, 44100)
    for i, freq in enumerate((100, 200, 300, 400)):  # drums, bass, other, vocals streams in MUSDB order
        spectrum = np.abs(np.fft.rfft(stems[i, 0, 4096:]))
        assert abs(np.argmax(spectrum) * 44100 / (22050 - 4096) - freq) < 5
    full = _decode_stream(str(tmp_path / "track.stem.mp4"), 2)[0]
    for start in (0, 5000, 44100, 100000):  # seeking reads exactly what a full decode gives
        chunk = _read_stream(str(tmp_path / "track.stem.mp4"), 2, start, 10000)
        assert np.array_equal(chunk, full[:, start: start + 10000])


def test_corrupt_stem_mp4_is_reported(tmp_path: Path) -> None:
    (tmp_path / "broken.stem.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 10)
    with pytest.raises(AudioError, match=r"broken\.stem\.mp4"):
        discover_songs(tmp_path)
def test_data_check_command_lists_songs_and_names_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import argparse

    from stemforge.commands import data as data_command

    parser = argparse.ArgumentParser()
    data_command.register(parser.add_subparsers(dest="command"))
    musdb_song(tmp_path / "good")
    args = parser.parse_args(["data", "check", str(tmp_path)])
    assert args.func(args) == 0
    assert "1 songs" in capsys.readouterr().out
    (tmp_path / "good" / "other.wav").write_bytes(b"not audio at all")
    args = parser.parse_args(["data", "check", str(tmp_path)])
    with pytest.raises(AudioError, match=r"other\.wav"):
        args.func(args)


@pytest.mark.parametrize("entry", [{"name": "x", "sources": ["audio/drums.wav"]}, "audio/drums.wav", {"name": "x"}])
def test_malformed_json_manifest_is_one_error(tmp_path: Path, entry: object) -> None:
    (tmp_path / "list.json").write_text(json.dumps([entry]))
    with pytest.raises(StemforgeError, match="cannot read manifest"):
        discover_songs(tmp_path / "list.json")
