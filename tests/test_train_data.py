"""The training data layer (stemforge.data.training): every format `data check` reads, at any rate, reproducibly."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from data_fixtures import write_stem_mp4
from stemforge.data import training
from stemforge.data.augment import AugmentConfig
from stemforge.errors import StemforgeError
from stemforge.models.registry import build
from stemforge.train import TrainConfig, Trainer
from train_helpers import RATE, make_dataset

MP4_RATE = 48000
BASS_HZ, VOCALS_HZ = 440.0, 1500.0
STEMS = ("drums", "bass", "other", "vocals")


def _stems_48k(seconds: float, seed: int) -> dict[str, np.ndarray]:
    """(frames, 2) float32 per stem at 48 kHz: noise bursts, a 440 Hz tone, a quiet chord, a 1500 Hz tone."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * MP4_RATE)) / MP4_RATE
    mono = {
        "drums": 0.3 * rng.standard_normal(t.size) * (np.mod(t, 0.25) < 0.03),
        "bass": 0.3 * np.sin(2 * np.pi * BASS_HZ * t),
        "other": 0.02 * sum(np.sin(2 * np.pi * f * t) for f in (600.0, 750.0, 900.0)),
        "vocals": 0.2 * np.sin(2 * np.pi * VOCALS_HZ * t),
    }
    return {k: np.stack([v, v], axis=1).astype(np.float32) for k, v in mono.items()}


@pytest.fixture(scope="module")
def mp4_data(tmp_path_factory) -> Path:
    """A MUSDB18-layout folder (train/ subfolder) of three 48 kHz .stem.mp4 files, 2 s each."""
    root = tmp_path_factory.mktemp("musdb")
    (root / "train").mkdir()
    for i in range(3):
        stems = _stems_48k(2.0, i)
        write_stem_mp4(root / "train" / f"song{i}.stem.mp4", [sum(stems.values())] + [stems[s] for s in STEMS],
                       rate=MP4_RATE)
    return root


def _peak_hz(wave: torch.Tensor, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave.double().numpy() * np.hanning(wave.shape[-1])))
    return float(np.argmax(spectrum) * rate / wave.shape[-1])


def test_cli_trains_from_48k_stem_mp4_with_chunks_at_the_model_rate(tmp_path, mp4_data, monkeypatch, capsys):
    from stemforge.cli import main

    seen = []
    loss = Trainer._loss

    def spying_loss(self, stems, pairs):
        seen.append(stems.clone())
        return loss(self, stems, pairs)

    monkeypatch.setattr(Trainer, "_loss", spying_loss)
    args = ["train", "--model", "test-tinymask", "--data", str(mp4_data), "--out", str(tmp_path / "run"),
            "--steps", "3", "--chunk", "0.25", "--batch-size", "2", "--epoch-steps", "3", "--no-progress"]
    assert main(args) == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "model.safetensors").is_file()
    assert "best validation SDR" in capsys.readouterr().out  # one of the three songs was held out and scored
    assert len(seen) == 3
    for batch in seen:
        assert batch.shape == (2, 4, 2, int(0.25 * RATE))  # a 0.25 s chunk at the model's 8 kHz, not 48 kHz
        assert torch.isfinite(batch).all()
        for example in batch:
            # Read at 48 kHz without resampling, the tones would sit 6x lower (73 Hz and 250 Hz).
            assert abs(_peak_hz(example[1, 0], RATE) - BASS_HZ) <= 8
            assert abs(_peak_hz(example[3, 0], RATE) - VOCALS_HZ) <= 8


def test_chunks_are_a_function_of_seed_and_index(mp4_data):
    songs = training.find_training_songs([mp4_data], STEMS)
    assert [s.sample_rate for s in songs] == [MP4_RATE] * 3
    make = lambda seed: training.chunk_dataset(songs, STEMS, 0.25, RATE, 2, seed, remix=0.5,  # noqa: E731
                                               augment=AugmentConfig(sample_rate=RATE))
    a, b, c = make(7), make(7), make(8)
    for index in (0, 5, 1 << 40):
        assert torch.equal(a[index], b[index])  # fresh dataset, same example: what resume relies on
    assert not torch.equal(a[3], a[4]) and not torch.equal(a[3], c[3])
    assert a[3].shape == (4, 2, int(0.25 * RATE))


def test_folders_at_other_rates_and_manifests_are_read(tmp_path):
    make_dataset(tmp_path / "folders", songs=2)
    for song in (tmp_path / "folders").iterdir():  # re-save one song at 22.05 kHz
        for path in song.glob("*.wav"):
            data, _ = sf.read(path)
            n = int(len(data) * 22050 / RATE)
            resampled = np.stack([np.interp(np.arange(n) * RATE / 22050, np.arange(len(data)), ch) for ch in data.T], 1)
            sf.write(path, resampled, 22050, subtype="FLOAT")
        break
    songs = training.find_training_songs([tmp_path / "folders"], STEMS)
    assert sorted(s.sample_rate for s in songs) == [RATE, 22050]
    valid = training.validation_stems(songs, STEMS, 10.0, RATE, 2)
    assert [v.shape for v in valid] == [(4, 2, RATE)] * 2  # 1 s songs, whatever their rate
    manifest = tmp_path / "list.csv"
    song = next(p for p in sorted((tmp_path / "folders").iterdir()))
    manifest.write_text("name,drums,bass,other,vocals\n" + "x," + ",".join(str(song / f"{s}.wav") for s in STEMS) + "\n")
    assert [s.name for s in training.find_training_songs([manifest], STEMS)] == ["x"]


def test_missing_stems_error_or_silence_and_missing_roots(tmp_path):
    make_dataset(tmp_path / "d", songs=2, stems=("drums", "bass", "other"))
    with pytest.raises(StemforgeError, match=r"song 'song00' has no 'vocals' stem"):
        training.find_training_songs([tmp_path / "d"], STEMS)
    songs = training.find_training_songs([tmp_path / "d"], STEMS, missing="silence")
    chunk = training.chunk_dataset(songs, STEMS, 0.25, RATE, 2, 0)[0]
    assert chunk[3].abs().max() == 0 and chunk[1].abs().max() > 0
    with pytest.raises(StemforgeError, match="data folder not found"):
        training.find_training_songs([tmp_path / "nope"], STEMS)


def test_mixit_reads_mixture_files_and_stem_mp4_mixture_stream(tmp_path, mp4_data):
    root = tmp_path / "mixes"
    for i in range(2):
        (root / f"m{i}").mkdir(parents=True)
        sf.write(root / f"m{i}" / "mixture.wav", np.full((RATE, 2), 0.1 * (i + 1), np.float32), RATE, subtype="FLOAT")
    songs = training.find_mixture_songs([root, mp4_data / "train" / "song0.stem.mp4"])
    assert [list(s.sources) for s in songs] == [["mixture"]] * 3
    assert songs[2].sources["mixture"][0].stream == 0  # the mp4's mixture stream, not a sum of its stems
    pairs = training.MixturePairDataset(songs, 400, RATE, 2, seed=1)
    assert pairs[0].shape == (2, 2, 400) and torch.equal(pairs[0], pairs[0])
    levels = {round(float(pairs[i][j].abs().mean()), 3) for i in range(20) for j in range(2)}
    assert {0.1, 0.2} <= levels  # the constant mixtures are read as they are


def test_pitch_and_tempo_are_opt_in_from_the_train_config(tmp_path, mp4_data):
    def first_chunk(**data):
        cfg = TrainConfig.from_dict({"out": str(tmp_path / "r"), "model": "test-tinymask", "progress": False,
                                     "data": {"train": [str(mp4_data)], "chunk": 0.5, "remix": 0.0, **data}})
        trainer = Trainer(cfg)
        trainer._datasets(build("test-tinymask"))
        return trainer.train_set[0]

    plain = first_chunk()
    assert abs(_peak_hz(plain[1, 0], RATE) - BASS_HZ) <= 8
    shifted = first_chunk(pitch_shift=1.0, tempo=1.0)
    assert shifted.shape == plain.shape
    assert abs(_peak_hz(shifted[1, 0], RATE) - BASS_HZ) > 8  # pitch moved: the augmentation is wired in


def test_step_loader_batches_do_not_depend_on_workers_or_start_step(tmp_path):
    make_dataset(tmp_path / "d", songs=3)
    songs = training.find_training_songs([tmp_path / "d"], STEMS)
    dataset = training.chunk_dataset(songs, STEMS, 0.1, RATE, 2, seed=5, augment=AugmentConfig(sample_rate=RATE))
    inline = list(training.step_loader(dataset, 2, 0, 4, workers=0))
    workers = list(training.step_loader(dataset, 2, 0, 4, workers=2))
    resumed = list(training.step_loader(dataset, 2, 2, 4, workers=0))  # a run resumed at step 2
    assert len(inline) == 4 and inline[0].shape == (2, 4, 2, int(0.1 * RATE))
    assert all(torch.equal(a, b) for a, b in zip(inline, workers))
    assert all(torch.equal(a, b) for a, b in zip(inline[2:], resumed))


def test_ranks_split_each_global_batch_disjointly(tmp_path):
    """Distributed training: rank r reads the r-th share of every step's global batch; together, exactly it."""
    B, start, steps = 6, 2, 5
    for world in (1, 2, 3):
        shares = [list(training.StepIndices(B, start, steps, rank, world)) for rank in range(world)]
        for k in range(steps - start):
            per_step = [share[k * B // world:(k + 1) * B // world] for share in shares]
            assert sum(per_step, []) == list(range((start + k) * B, (start + k + 1) * B))
    assert list(training.StepIndices(B, start, steps)) == list(range(start * B, steps * B))  # one process: as before
    assert len(training.StepIndices(B, 0, 1 << 40, 1, 2)) == 3 << 40  # lazy: a long run lists nothing
    with pytest.raises(StemforgeError, match="cannot be split evenly over 4 processes"):
        training.StepIndices(B, 0, 1, 0, 4)
    make_dataset(tmp_path / "d", songs=3)
    songs = training.find_training_songs([tmp_path / "d"], STEMS)
    dataset = training.chunk_dataset(songs, STEMS, 0.1, RATE, 2, seed=5)
    whole = list(training.step_loader(dataset, 4, 0, 2, workers=0))
    halves = [list(training.step_loader(dataset, 4, 0, 2, 0, rank, 2)) for rank in range(2)]
    assert all(torch.equal(whole[k], torch.cat([halves[0][k], halves[1][k]])) for k in range(2))
