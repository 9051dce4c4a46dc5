"""Realistic synthetic songs: recorded instruments and kits, human voices, genres, mastering; split held out.

Needs the Debian packages fluid-soundfont-gm, musescore-general-soundfont, hydrogen-drumkits,
avldrums.lv2-soundfont, festival, festvox-kallpc16k, festvox-italp16k, festvox-itapc16k, festvox-czech-dita,
flite and libfluidsynth3 (skipped without them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from stemforge.commands import data as data_command
from stemforge.data.synth import EVALUATION_SEED_BASE, realistic, voices
from stemforge.data.synth.master import loudness
from stemforge.errors import StemforgeError

pytestmark = pytest.mark.skipif(realistic.missing_packages(False) is not None or realistic.missing_packages(True) is not None,
                                reason=f"realistic songs need: {realistic.missing_packages(False) or realistic.missing_packages(True)}")
SR = 44100


@pytest.fixture(autouse=True)
def voice_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEMFORGE_CACHE", str(tmp_path_factory.getbasetemp() / "voice-cache"))
    voices._syllable.cache_clear()
    voices.syllable_at.cache_clear()


def _vocal_share_above(x: np.ndarray, hz: float) -> float:
    freqs, power = signal.welch(x.mean(0), SR, nperseg=4096)
    return float(power[freqs > hz].sum() / max(power.sum(), 1e-20))


@pytest.mark.parametrize("seed", [200_000_026, pytest.param(EVALUATION_SEED_BASE + 15, marks=pytest.mark.slow)])
# both sing from the start; the evaluation song (another SoundFont, kit and voices) runs in the slow pass
def test_realistic_song_is_deterministic_mastered_and_sums(seed: int) -> None:
    tracks, meta = realistic.render_realistic_song(seed, 5.0)
    again, _ = realistic.render_realistic_song(seed, 5.0)
    assert list(tracks) == ["drums", "bass", "other", "vocals"]
    for name, audio in tracks.items():
        assert audio.shape == (2, 5 * SR) and audio.dtype == np.float32
        assert audio.tobytes() == again[name].tobytes()
    mixture = sum(tracks.values())
    assert np.max(np.abs(mixture)) < 1.0
    assert -16.0 < loudness(mixture, SR) < -6.0  # mastered into the -14..-8 LUFS range (short songs drift a little)
    assert np.sqrt(np.mean(tracks["vocals"] ** 2)) > 1e-3 and _vocal_share_above(tracks["vocals"], 4000) > 1e-3
    evaluation = seed >= EVALUATION_SEED_BASE
    assert meta["split"] == ("evaluation" if evaluation else "train")
    assert meta["soundfont"] == ("MuseScore_General.sf3" if evaluation else "FluidR3_GM.sf2")
    assert meta["plan"]["genre"] in (realistic.EVALUATION_GENRES if evaluation else realistic.TRAIN_GENRES)
    sung = {meta["rendering"][p]["voice"] for p in meta["rendering"]
            if p in ("lead_vocal", "double_vocal", "harmony_vocal", "backing_vocals")}
    assert sung and sung <= set(realistic.EVALUATION_VOICES if evaluation else realistic.TRAIN_VOICES)
    json.dumps(meta)  # the record is JSON


def test_drums_come_from_recorded_kits_of_the_right_split() -> None:
    kits = {False: set(), True: set()}
    for evaluation in (False, True):
        for i in range(8):
            seed = (EVALUATION_SEED_BASE if evaluation else 200_000_000) + i
            plan = realistic.compose_realistic(seed, 4.0)
            if not plan.drum_hits:
                continue
            rng = np.random.default_rng([seed, 13])
            audio, record = realistic._render_drums(plan, rng, 4 * SR, SR, evaluation)
            assert np.abs(audio).max() > 0.01
            kits[evaluation].add(next(iter(record.values())).split(":")[0])
    assert kits[False] and kits[True] and not kits[False] & kits[True]
    assert not set(realistic.TRAIN_KITS + realistic.TRAIN_ELECTRONIC_KITS) & set(
        realistic.EVALUATION_KITS + realistic.EVALUATION_ELECTRONIC_KITS)


def test_cli_realistic_writes_songs_whose_stems_sum_to_the_mixture(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    data_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "synth", "--realistic", "--out", str(tmp_path), "--songs", "1",
                              "--seconds", "2", "--seed", "200000026"])  # voices cached by the test above
    assert args.func(args) == 0
    song = tmp_path / "song_0200000026"
    mixture, rate = sf.read(song / "mixture.wav", dtype="float32")
    total = sum(sf.read(song / f"{n}.wav", dtype="float32")[0] for n in ("drums", "bass", "other", "vocals"))
    assert rate == SR and np.max(np.abs(mixture - total)) <= 1e-6
    assert json.loads((song / "song.json").read_text())["generator"] == "stemforge.data.synth.realistic"


def test_missing_packages_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(realistic, "missing_packages", lambda evaluation=False: "no Hydrogen drum kits found")
    with pytest.raises(StemforgeError, match="realistic songs need packages that are missing: no Hydrogen"):
        realistic.render_realistic_song(1, 2.0)
    with pytest.raises(StemforgeError, match="song length must be positive"):
        realistic.render_realistic_song(1, 0.0)
