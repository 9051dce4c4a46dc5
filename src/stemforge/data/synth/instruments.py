"""Pitched instruments synthesized with numpy: additive, FM, filtered-saw, organ and overdriven voices.

Each preset is a named parameter set of one algorithm. Notes are rendered once per (pitch, length) and
cached, since songs repeat chords constantly; velocity is applied as gain. Presets in
``EVALUATION_PRESETS`` are held out of training songs so the evaluation split hears unseen timbres.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy import signal


@dataclasses.dataclass(frozen=True)
class Preset:
    """How an instrument sounds: ``algorithm`` picks the synthesis function, ``params`` tune it."""

    family: str
    algorithm: str
    params: tuple[tuple[str, Any], ...] = ()

    def param(self, name: str, default: Any) -> Any:
        return dict(self.params).get(name, default)


def _p(**kwargs: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(kwargs.items()))


PRESETS: dict[str, Preset] = {
    # bass
    "finger_bass": Preset("bass", "additive", _p(tilt=1.6, decay=1.2, slope=0.35, harmonics=14, attack=0.004, cutoff=1800)),
    "pick_bass": Preset("bass", "additive", _p(tilt=1.1, decay=0.9, slope=0.5, harmonics=20, attack=0.002, cutoff=3500)),
    "synth_bass": Preset("bass", "saw", _p(voices=1, detune=0.0, cutoff=700, env_cutoff=2500, env_decay=0.12, attack=0.003, release=0.04)),
    "sub_bass": Preset("bass", "additive", _p(tilt=3.0, decay=3.0, slope=0.1, harmonics=3, attack=0.01, cutoff=400)),
    "fm_bass": Preset("bass", "fm", _p(ratio=1.0, index=2.5, index_decay=0.15, decay=1.0, attack=0.002)),
    # other: keys
    "grand_piano": Preset("piano", "additive", _p(tilt=1.2, decay=2.5, slope=0.25, harmonics=24, attack=0.002, inharmonic=0.0004, hammer=0.3)),
    "bright_piano": Preset("piano", "additive", _p(tilt=0.9, decay=1.8, slope=0.35, harmonics=30, attack=0.001, inharmonic=0.0007, hammer=0.5)),
    "electric_piano": Preset("piano", "fm", _p(ratio=1.0, index=1.8, index_decay=0.4, decay=1.6, attack=0.002, tremolo=0.0)),
    "upright_piano": Preset("piano", "additive", _p(tilt=1.4, decay=1.4, slope=0.45, harmonics=20, attack=0.003, inharmonic=0.001, hammer=0.4)),
    # other: guitars
    "clean_guitar": Preset("guitar", "additive", _p(tilt=1.0, decay=1.0, slope=0.6, harmonics=24, attack=0.001, pluck=0.18, cutoff=5000)),
    "acoustic_guitar": Preset("guitar", "additive", _p(tilt=0.8, decay=1.4, slope=0.5, harmonics=30, attack=0.001, pluck=0.12, hammer=0.2)),
    "overdrive_guitar": Preset("guitar", "drive", _p(drive=6.0, cutoff=3200, decay=3.0)),
    "muted_guitar": Preset("guitar", "additive", _p(tilt=1.3, decay=0.15, slope=0.8, harmonics=16, attack=0.001, pluck=0.25, cutoff=2500)),
    # other: sustained
    "warm_pad": Preset("pad", "saw", _p(voices=3, detune=0.012, cutoff=1400, attack=0.35, release=0.5)),
    "bright_pad": Preset("pad", "saw", _p(voices=3, detune=0.018, cutoff=3500, attack=0.2, release=0.6)),
    "string_section": Preset("strings", "saw", _p(voices=4, detune=0.008, cutoff=2800, attack=0.25, release=0.35, vibrato=0.004)),
    "chamber_strings": Preset("strings", "saw", _p(voices=2, detune=0.005, cutoff=2200, attack=0.15, release=0.3, vibrato=0.006)),
    "drawbar_organ": Preset("organ", "organ", _p(drawbars=(1.0, 0.8, 0.6, 0.0, 0.4, 0.0, 0.2), leslie=6.0)),
    "jazz_organ": Preset("organ", "organ", _p(drawbars=(0.8, 1.0, 0.0, 0.5, 0.0, 0.3, 0.0), leslie=1.0)),
    # other: synths
    "saw_lead": Preset("synth", "saw", _p(voices=2, detune=0.006, cutoff=1200, env_cutoff=5000, env_decay=0.25, attack=0.005, release=0.1)),
    "square_pluck": Preset("synth", "square", _p(cutoff=900, env_cutoff=6000, env_decay=0.08, attack=0.002, release=0.08)),
    "bell_synth": Preset("synth", "fm", _p(ratio=3.5, index=3.0, index_decay=0.6, decay=1.5, attack=0.001)),
}
BASS_PRESETS = {k: v.family for k, v in PRESETS.items() if v.family == "bass"}
OTHER_PRESETS = {k: v.family for k, v in PRESETS.items() if v.family != "bass"}
#: Held out of training songs; only evaluation songs use them.
EVALUATION_PRESETS = frozenset({"fm_bass", "upright_piano", "muted_guitar", "chamber_strings", "jazz_organ", "bell_synth"})


def preset_pool(presets: dict[str, str], evaluation: bool) -> list[str]:
    """Preset names a song may use: held-out ones for evaluation songs, the rest for training songs.

    Evaluation songs also keep one training preset per family when a family has no held-out one.
    """
    if not evaluation:
        return [name for name in presets if name not in EVALUATION_PRESETS]
    held_out = [name for name in presets if name in EVALUATION_PRESETS]
    families = {presets[name] for name in held_out}
    extra = [name for name in presets if presets[name] not in families]
    return held_out + extra


def midi_to_hz(pitch: float) -> float:
    return 440.0 * 2.0 ** ((pitch - 69) / 12)


def _adsr(n: int, sr: int, attack: float, release: float, sustain_samples: int) -> np.ndarray:
    """Attack ramp, hold until ``sustain_samples``, then a release ramp to zero."""
    env = np.ones(n, np.float32)
    a = max(1, min(n, int(attack * sr)))
    env[:a] = np.linspace(0, 1, a, dtype=np.float32)
    r = n - sustain_samples
    if r > 0:
        env[sustain_samples:] *= np.linspace(1, 0, r, dtype=np.float32)
    return env


def _additive(p: Preset, f0: float, n: int, held: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n, dtype=np.float32) / sr
    out = np.zeros(n, np.float32)
    tilt, decay, slope = p.param("tilt", 1.0), p.param("decay", 1.0), p.param("slope", 0.3)
    inharmonic, pluck = p.param("inharmonic", 0.0), p.param("pluck", 0.0)
    for k in range(1, int(p.param("harmonics", 16)) + 1):
        fk = f0 * k * np.sqrt(1 + inharmonic * k * k)
        if fk > 0.45 * sr:
            break
        amp = k ** -tilt
        if pluck:
            amp *= abs(np.sin(np.pi * k * pluck)) + 0.05
        out += np.float32(amp) * np.sin(np.float32(2 * np.pi * fk) * t + np.float32(rng.uniform(0, 6.28))) \
            * np.exp(-t * np.float32((1 + slope * (k - 1)) / decay))
    hammer = p.param("hammer", 0.0)
    if hammer:
        m = min(n, int(0.01 * sr))
        out[:m] += hammer * rng.standard_normal(m).astype(np.float32) * np.linspace(1, 0, m, dtype=np.float32)
    cutoff = p.param("cutoff", 0)
    if cutoff:
        out = signal.sosfilt(signal.butter(2, cutoff, fs=sr, output="sos"), out).astype(np.float32)
    return out * _adsr(n, sr, p.param("attack", 0.002), 0.05, held)


def _fm(p: Preset, f0: float, n: int, held: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n, dtype=np.float32) / sr
    index = p.param("index", 2.0) * np.exp(-t / p.param("index_decay", 0.3))
    mod = np.sin(np.float32(2 * np.pi * f0 * p.param("ratio", 1.0)) * t)
    out = np.sin(np.float32(2 * np.pi * f0) * t + index * mod) * np.exp(-t / p.param("decay", 1.0))
    return out.astype(np.float32) * _adsr(n, sr, p.param("attack", 0.002), 0.05, held)


def _oscillator(shape: str, f0: float, n: int, sr: int, detune: float, vibrato: float, phase: float) -> np.ndarray:
    t = np.arange(n, dtype=np.float64) / sr
    freq = f0 * (1 + detune) * (1 + vibrato * np.sin(2 * np.pi * 5.2 * t))
    ph = (np.cumsum(freq) / sr + phase) % 1.0
    if shape == "square":
        return np.where(ph < 0.5, 1.0, -1.0).astype(np.float32)
    return (2 * ph - 1).astype(np.float32)


def _subtractive(p: Preset, f0: float, n: int, held: int, sr: int, rng: np.random.Generator, shape: str) -> np.ndarray:
    voices = int(p.param("voices", 1))
    detune = p.param("detune", 0.0)
    raw = np.zeros(n, np.float32)
    for v in range(voices):
        offset = (v - (voices - 1) / 2) * detune
        raw += _oscillator(shape, f0, n, sr, offset, p.param("vibrato", 0.0), float(rng.uniform()))
    raw /= voices
    cutoff = p.param("cutoff", 2000)
    out = signal.sosfilt(signal.butter(2, min(cutoff, 0.45 * sr), fs=sr, output="sos"), raw).astype(np.float32)
    env_cutoff = p.param("env_cutoff", 0)
    if env_cutoff:  # filter envelope: crossfade from a bright to the dark version
        bright = signal.sosfilt(signal.butter(2, min(env_cutoff, 0.45 * sr), fs=sr, output="sos"), raw)
        mix = np.exp(-np.arange(n) / (p.param("env_decay", 0.1) * sr)).astype(np.float32)
        out = out * (1 - mix) + bright.astype(np.float32) * mix
    return out * _adsr(n, sr, p.param("attack", 0.01), p.param("release", 0.1), held)


def _organ(p: Preset, f0: float, n: int, held: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n, dtype=np.float32) / sr
    ratios = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 8.0)
    leslie = p.param("leslie", 6.0)
    out = np.zeros(n, np.float32)
    for ratio, level in zip(ratios, p.param("drawbars", (1.0,) * 7)):
        if level and f0 * ratio < 0.45 * sr:
            out += np.float32(level) * np.sin(np.float32(2 * np.pi * f0 * ratio) * t
                                              + np.float32(0.002 * ratio) * np.sin(np.float32(2 * np.pi * leslie) * t))
    out *= 1 + 0.15 * np.sin(np.float32(2 * np.pi * leslie) * t)
    return out * _adsr(n, sr, 0.005, 0.03, held) * np.float32(0.3)


def _drive(p: Preset, f0: float, n: int, held: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    raw = _oscillator("saw", f0, n, sr, 0.0, 0.0, 0.0) + 0.6 * _oscillator("saw", f0 * 1.4983, n, sr, 0.0, 0.0, 0.3)
    raw *= np.exp(-np.arange(n) / (p.param("decay", 3.0) * sr)).astype(np.float32)
    driven = np.tanh(p.param("drive", 5.0) * raw)
    sos = signal.butter(2, p.param("cutoff", 3000), fs=sr, output="sos")
    return signal.sosfilt(sos, driven).astype(np.float32) * _adsr(n, sr, 0.002, 0.03, held) * np.float32(0.5)


def render_note(preset_name: str, pitch: int, held: int, release: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One note of ``preset_name``: (held + release,) mono float32, unit velocity."""
    p = PRESETS[preset_name]
    f0 = midi_to_hz(pitch)
    n = held + release
    if p.algorithm == "additive":
        return _additive(p, f0, n, held, sample_rate, rng)
    if p.algorithm == "fm":
        return _fm(p, f0, n, held, sample_rate, rng)
    if p.algorithm in ("saw", "square"):
        return _subtractive(p, f0, n, held, sample_rate, rng, p.algorithm)
    if p.algorithm == "organ":
        return _organ(p, f0, n, held, sample_rate, rng)
    if p.algorithm == "drive":
        return _drive(p, f0, n, held, sample_rate, rng)
    raise ValueError(f"unknown synthesis algorithm {p.algorithm!r}")


def render_part(preset_name: str, notes: list, length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """notes (objects with start, duration, pitch, velocity) -> (length,) mono float32 track."""
    release_seconds = {"pad": 0.6, "strings": 0.4}.get(PRESETS[preset_name].family, 0.08)
    release = int(release_seconds * sample_rate)
    cache: dict[tuple[int, int], np.ndarray] = {}
    out = np.zeros(length, np.float32)
    for note in notes:
        start = int(round(note.start * sample_rate))
        if start >= length:
            continue
        held = max(1, int(round(note.duration * sample_rate)))
        key = (note.pitch, held)
        if key not in cache:
            cache[key] = render_note(preset_name, note.pitch, held, release, sample_rate, rng)
        wave = cache[key]
        n = min(wave.shape[0], length - start)
        out[start: start + n] += np.float32(note.velocity) * wave[:n]
    return out
