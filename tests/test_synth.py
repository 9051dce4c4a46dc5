"""Synthetic songs: determinism, mixture == sum of stems, layout on disk, held-out evaluation presets."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge.commands import data as data_command
from stemforge.data.synth import EVALUATION_SEED_BASE, SIX_STEMS, render_song, render_song_with_plan
from stemforge.data.synth import soundfont
from stemforge.data.synth.composition import compose
from stemforge.data.synth.instruments import EVALUATION_PRESETS
from stemforge.errors import StemforgeError


def _synth(out: Path, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    data_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "synth", "--out", str(out), *extra])
    return args.func(args)


def test_same_seed_same_samples_and_different_seed_differs() -> None:
    first = render_song(5, 3.0)
    second = render_song(5, 3.0)
    other = render_song(6, 3.0)
    assert list(first) == ["drums", "bass", "other", "vocals"]
    for name in first:
        assert first[name].shape == (2, 3 * 44100) and first[name].dtype == np.float32
        assert np.isfinite(first[name]).all()
        assert first[name].tobytes() == second[name].tobytes()
    assert any(not np.array_equal(first[n], other[n]) for n in first)


@pytest.mark.parametrize("bits", ["16", "32f"])
def test_files_are_byte_identical_and_mixture_is_sum_of_stems(tmp_path: Path, bits: str) -> None:
    assert _synth(tmp_path / "a", "--songs", "2", "--seconds", "2.5", "--seed", "40", "--bits", bits) == 0
    assert _synth(tmp_path / "b", "--songs", "2", "--seconds", "2.5", "--seed", "40", "--bits", bits) == 0
    songs = sorted((tmp_path / "a").iterdir())
    assert [s.name for s in songs] == ["song_0000000040", "song_0000000041"]
    for song in songs:
        names = sorted(p.name for p in song.iterdir())
        assert names == ["bass.wav", "drums.wav", "mixture.wav", "other.wav", "song.json", "vocals.wav"]
        for name in names:
            assert (song / name).read_bytes() == (tmp_path / "b" / song.name / name).read_bytes()
        mixture, rate = sf.read(song / "mixture.wav", dtype="float32")
        assert rate == 44100 and mixture.shape == (int(2.5 * 44100), 2)
        total = sum(sf.read(song / f"{n}.wav", dtype="float32")[0] for n in ("drums", "bass", "other", "vocals"))
        assert np.max(np.abs(mixture - total)) <= 1e-6
        assert np.max(np.abs(mixture)) > 0.1
        meta = json.loads((song / "song.json").read_text())
        assert meta["plan"]["seed"] == int(song.name.split("_")[1])
        assert {"key", "scale", "tempo", "time_signature", "sections", "drum_style", "parts"} <= set(meta["plan"])


def test_six_stems_split_guitar_and_piano_out_of_other() -> None:
    """guitar.wav / piano.wav sound exactly when such instruments play; a silent stem is valid."""
    seconds = 8.0
    seen = set()
    for seed in (3, 4):
        stems, meta = render_song_with_plan(seed, seconds, stems=SIX_STEMS)
        assert list(stems) == list(SIX_STEMS)
        playing = {part["stem"] for part in meta["plan"]["parts"] if any(n[0] < seconds for n in part["notes"])}
        for name in ("guitar", "piano", "other"):
            assert np.any(stems[name]) == (name in playing), (seed, name)
        seen |= playing
        four = render_song(seed, seconds)
        assert set(four) == {"drums", "bass", "other", "vocals"}
        assert np.any(four["other"]) == bool(playing & {"guitar", "piano", "other"})
    assert {"guitar", "piano"} <= seen


@pytest.mark.parametrize("backend", ["numpy", "soundfont"])
def test_stems_sound_like_their_instruments(backend: str) -> None:
    """Bass owns the low end; vocals live in the voice band; drums carry the most high-frequency energy."""
    if backend == "soundfont" and soundfont.available():
        pytest.skip(soundfont.available())
    stems, meta = render_song_with_plan(3, 16.0, backend=backend)
    assert meta["backend"] == backend
    rate = 44100

    def band_fraction(x: np.ndarray, low: float, high: float) -> float:
        spectrum = np.abs(np.fft.rfft(x.mean(0))) ** 2
        freqs = np.fft.rfftfreq(x.shape[1], 1 / rate)
        return float(spectrum[(freqs >= low) & (freqs < high)].sum() / spectrum.sum())

    def flatness(x: np.ndarray) -> float:  # median spectral flatness, 0.9-10 kHz, of the sounding frames
        spec = torch.stft(torch.from_numpy(x.mean(0)), 2048, 512, window=torch.hann_window(2048),
                          return_complex=True).abs().numpy() ** 2
        spec = spec[40:460] + 1e-12
        active = spec.sum(0) > 1e-6 * spec.sum(0).max()
        return float(np.median((np.exp(np.log(spec).mean(0)) / spec.mean(0))[active]))

    assert all(np.any(stems[n]) for n in stems), "every stem should play within 16 s of seed 3"
    low = {name: band_fraction(x, 20, 300) for name, x in stems.items()}
    assert low["bass"] > 0.5 and low["bass"] > max(low["other"], low["vocals"])
    assert band_fraction(stems["vocals"], 150, 5000) > 0.8
    high = {name: band_fraction(x, 3000, 20000) for name, x in stems.items()}
    assert high["drums"] == max(high.values())
    flat = {name: flatness(x) for name, x in stems.items()}  # drums are noisy, the rest is tonal
    assert flat["drums"] > 3 * max(flat["bass"], flat["other"], flat["vocals"])


@pytest.mark.skipif(bool(soundfont.available()), reason=str(soundfont.available()))
def test_soundfont_rendering_is_deterministic_across_synth_instances() -> None:
    events = [(0.0, 60, 100), (0.3, 60, 0), (0.3, 64, 90), (0.61, 64, 0)]
    first = soundfont.render_events(events, 30000, 44100, bank=0, program=0)
    second = soundfont.render_events(events, 30000, 44100, bank=0, program=0)
    assert first.shape == (2, 30000) and np.any(first)
    assert first.tobytes() == second.tobytes()


def test_evaluation_songs_use_held_out_presets_only_there() -> None:
    for seed in range(12):
        presets = {p.preset for p in compose(seed, 20.0).parts}
        assert not presets & EVALUATION_PRESETS
    held_out_used = set()
    for i in range(8):
        presets = {p.preset for p in compose(EVALUATION_SEED_BASE + i, 20.0, evaluation=True).parts}
        held_out_used |= presets & EVALUATION_PRESETS
    assert held_out_used


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(StemforgeError, match="positive"):
        render_song(1, 0.0)
    with pytest.raises(StemforgeError, match="stems must include"):
        render_song(1, 1.0, stems=("drums", "bass"))
    with pytest.raises(StemforgeError, match="below"):
        _synth(tmp_path, "--songs", "2", "--seed", str(EVALUATION_SEED_BASE - 1))
    with pytest.raises(StemforgeError, match="--songs"):
        _synth(tmp_path, "--songs", "0")


def test_missing_soundfont_falls_back_to_numpy_or_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEMFORGE_SOUNDFONT", "/nonexistent/none.sf2")
    soundfont.available.cache_clear()
    try:
        _, meta = render_song_with_plan(2, 1.0, backend="auto")
        assert meta["backend"] == "numpy"
        with pytest.raises(StemforgeError, match="apt-get install"):
            render_song(2, 1.0, backend="soundfont")
    finally:
        monkeypatch.undo()
        soundfont.available.cache_clear()


def test_default_seed_renders_songs_no_bundled_model_has_seen(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import re

    from stemforge.data.splits import evaluation_seeds

    recipe = (Path(__file__).resolve().parents[1] / "recipes" / "default.sh").read_text()
    line = next(x for x in recipe.splitlines() if "--out runs/data/train" in x)  # the bundled model's songs
    songs, seed = (int(re.search(rf"--{name} (\d+)", line).group(1)) for name in ("songs", "seed"))
    trained, evaluation = set(range(seed, seed + songs)), set(evaluation_seeds())
    with caplog.at_level("WARNING", logger="stemforge"):
        assert _synth(tmp_path / "plain", "--songs", "2", "--seconds", "0.5", "--backend", "numpy") == 0
        assert _synth(tmp_path / "eval", "--songs", "2", "--seconds", "0.5", "--backend", "numpy", "--evaluation") == 0
    assert not caplog.records
    seeds = {}
    for kind in ("plain", "eval"):
        songs = sorted((tmp_path / kind).iterdir())
        seeds[kind] = [json.loads((song / "song.json").read_text())["plan"]["seed"] for song in songs]
        assert [song.name for song in songs] == [f"song_{seed:010d}" for seed in seeds[kind]]
    assert seeds["plain"][1] == seeds["plain"][0] + 1 and seeds["plain"][1] < EVALUATION_SEED_BASE
    assert seeds["eval"][0] >= EVALUATION_SEED_BASE  # still held-out instruments
    assert not set(seeds["plain"] + seeds["eval"]) & (trained | evaluation)
    # Asking for the training songs is allowed (the recipe does), with a word about evaluating on them.
    with caplog.at_level("WARNING", logger="stemforge"):
        assert _synth(tmp_path / "train", "--songs", "2", "--seconds", "0.5", "--backend", "numpy", "--seed", "119") == 0
    assert [r.getMessage() for r in caplog.records] == [
        "songs with seeds 119 are ones the bundled default model was trained on: fine for training, flattering for "
        "evaluating it (leave out --seed for unseen songs)"]
    from stemforge.data.synth import DEFAULT_MODEL_TRAINING_SEEDS

    assert set(DEFAULT_MODEL_TRAINING_SEEDS) == trained


def test_existing_songs_are_not_overwritten_unless_forced(tmp_path: Path) -> None:
    out = tmp_path / "songs"
    assert _synth(out, "--songs", "1", "--seconds", "0.5", "--seed", "7", "--backend", "numpy") == 0
    song = out / "song_0000000007"
    (song / "notes.txt").write_text("mine")
    with pytest.raises(StemforgeError, match="already exist.*--force"):
        _synth(out, "--songs", "2", "--seconds", "0.5", "--seed", "6", "--backend", "numpy")
    assert (song / "notes.txt").read_text() == "mine" and sorted(p.name for p in out.iterdir()) == [song.name]
    assert _synth(out, "--songs", "2", "--seconds", "0.5", "--seed", "6", "--backend", "numpy", "--force") == 0
    assert sorted(p.name for p in out.iterdir()) == ["song_0000000006", song.name]
    assert not (song / "notes.txt").exists()  # replaced as a whole


def test_a_forced_rewrite_that_fails_keeps_the_old_song(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``write_song(force=True)`` used to delete the old song before renaming the new one in: a failed rename
    lost it."""
    from stemforge.data.synth import render

    tracks, meta = render_song_with_plan(3, 0.2, backend="numpy")
    song = tmp_path / "song_a"
    render.write_song(song, tracks, 44100, meta)
    before = {p.name: p.read_bytes() for p in song.iterdir()}

    def full_disk(*args, **kwargs):  # noqa: ANN002, ANN003
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "rename", full_disk)
        with pytest.raises(StemforgeError, match=r"song_a: cannot write the song \(No space left on device\)$"):
            render.write_song(song, tracks, 44100, meta, force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["song_a"]  # no staging folder, nothing moved aside
    assert {p.name: p.read_bytes() for p in song.iterdir()} == before


def test_an_interrupted_song_leaves_nothing_a_dataset_would_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stemforge.data.songs import discover_songs
    from stemforge.data.synth import render

    tracks, meta = render_song_with_plan(3, 0.5, backend="numpy")
    render.write_song(tmp_path / "song_a", tracks, 44100, meta)
    calls = []

    def write_then_die(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003 - soundfile.write's signature
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return sf.write(path, *args, **kwargs)

    monkeypatch.setattr(render.sf, "write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        render.write_song(tmp_path / "song_b", tracks, 44100, meta)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song_a"]  # no song_b, no staging folder left
    (tmp_path / ".song_c.x.part").mkdir()  # what a SIGKILL mid-song leaves: hidden, so skipped
    (tmp_path / ".song_c.x.part" / "drums.wav").write_bytes(b"half")
    assert [s.name for s in discover_songs([tmp_path])] == ["song_a"]
    from stemforge.audio import folder_mode

    assert (tmp_path / "song_a").stat().st_mode & 0o777 == folder_mode()  # not mkdtemp's 0700
