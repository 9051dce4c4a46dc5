"""Human voices: recorded speech (Festival / flite) re-pitched and re-timed with WORLD onto a melody.

Needs the Debian packages ``festival``, ``festvox-kallpc16k`` and ``flite`` and the Python package ``pyworld``
(skipped without them).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from stemforge.data.synth import voices
from stemforge.data.synth.composition import Note

pytestmark = pytest.mark.skipif(voices.missing_engines() is not None or not voices.voice_available("kal"),
                                reason=f"needs festival, festvox-kallpc16k, flite and pyworld: {voices.missing_engines()}")
SR = 44100


@pytest.fixture(autouse=True)
def voice_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path_factory.getbasetemp() / "voice-cache"  # shared by this module's tests: speak once
    monkeypatch.setenv("STEMFORGE_CACHE", str(folder))
    voices._syllable.cache_clear()
    voices.syllable_at.cache_clear()
    return folder


def _melody() -> list[Note]:
    return [Note(0.3, 0.6, 62, 0.9, "la"), Note(1.0, 0.4, 64, 0.8, "si"), Note(1.5, 1.2, 67, 0.9, "so"),
            Note(3.0, 0.5, 65, 0.8, "sha")]


def test_spelling_per_language() -> None:
    assert voices.syllable_text("shi", "en") == "shee"
    assert voices.syllable_text("la", "en") == "lah"
    assert voices.syllable_text("shi", "it") == "sci"
    assert voices.syllable_text("ka", "it") == "ca"
    assert voices.syllable_text("o", "cs") == "o"
    assert not set(voices.TRAIN_VOICES) & set(voices.EVALUATION_VOICES)


def test_sung_line_is_deterministic_on_pitch_and_full_band() -> None:
    voices.prepare_voice("kal", [n.syllable for n in _melody()])  # one Festival run
    singer = voices.Singer("kal", vibrato_depth=0.2)
    first = voices.sing(_melody(), 4 * SR, SR, singer, np.random.default_rng(3))
    again = voices.sing(_melody(), 4 * SR, SR, singer, np.random.default_rng(3))
    assert first.tobytes() == again.tobytes()
    assert first.shape == (4 * SR,) and np.isfinite(first).all() and np.abs(first).max() > 0.01
    assert np.abs(first[: int(0.15 * SR)]).max() < 1e-3  # nothing before the first syllable's consonant
    # The long note (G4 = 392 Hz, 1.5 s - 2.7 s) is sung at its pitch (median over its middle within 60 cents).
    pw = voices._pyworld()
    middle = first[int(1.8 * SR): int(2.5 * SR)].astype(np.float64)
    f0, _ = pw.dio(middle, SR, frame_period=5.0, f0_floor=100.0, f0_ceil=800.0)
    assert abs(1200 * np.log2(np.median(f0[f0 > 0]) / 392.0)) < 60
    # Full band: energy above 4 kHz and above 8 kHz (the recording itself stops at 8 kHz: kal is 16 kHz speech).
    freqs, power = signal.welch(first, SR, nperseg=4096)
    assert power[freqs > 4000].sum() / power.sum() > 2e-3
    assert power[freqs > 8000].sum() / power.sum() > 3e-4


def test_syllables_are_spoken_once_and_cached_without_pickle(voice_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    voices.prepare_voice("kal", ["la", "si"])
    files = sorted((voice_cache / "voices" / f"v{voices.CACHE_VERSION}" / "kal").glob("*.npz"))
    assert {"la.npz", "si.npz"} <= {f.name for f in files}
    with np.load(files[0], allow_pickle=False) as data:
        assert {"f0", "log_sp", "ap", "fs"} <= set(data.files)

    def no_engine(*args: object, **kwargs: object) -> None:
        raise AssertionError("the speech engine ran again for cached syllables")

    monkeypatch.setattr(subprocess, "run", no_engine)
    voices.prepare_voice("kal", ["la", "si"])
    voices._syllable.cache_clear()
    f0, log_sp, ap = voices.syllable_at("kal", "la", SR)
    assert log_sp.shape[1] == ap.shape[1] == 1025 and len(f0) == log_sp.shape[0]
    assert (f0 > 0).sum() > 10  # "lah" is voiced


def test_a_rushed_double_on_the_first_beat_starts_at_zero() -> None:
    # A double singing 20 ms early on a note at 0 s once indexed frame -4 (a crash while rendering training songs).
    notes = [Note(0.0, 0.5, 60, 0.9, "la"), Note(0.6, 0.4, 62, 0.9, "si")]
    voices.prepare_voice("kal", ["la", "si"])
    out = voices.sing(notes, SR, SR, voices.Singer("kal", timing_ms=-20.0), np.random.default_rng(0))
    assert out.shape == (SR,) and np.abs(out[: SR // 2]).max() > 0.01
