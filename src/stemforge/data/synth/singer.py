"""A formant singer: harmonic glottal source shaped by moving vowel formants, plus consonant noise.

Each note carries a syllable (onset consonant + vowel). The consonant is placed just before the beat,
as singers do; voiced consonants keep the source on with their own formant loci, unvoiced ones switch
it off and add band-limited noise bursts. Formants glide between targets (coarticulation), pitch glides
between notes (portamento) with delayed vibrato, slow drift and jitter; phrases start with a breath.

Control signals run at ``HOP`` samples per frame; the source is additive (harmonics up to ~6 kHz), so
the spectral envelope is exact at every harmonic and rendering stays vectorized.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import signal

HOP = 128

#: vowel -> (formant frequencies Hz, bandwidths Hz, gains dB)
VOWEL_FORMANTS: dict[str, tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]] = {
    "a": ((800, 1150, 2800, 3500, 4950), (80, 90, 120, 130, 140), (0, -4, -20, -36, -60)),
    "e": ((400, 1700, 2600, 3200, 4950), (60, 80, 120, 150, 200), (0, -20, -18, -30, -60)),
    "i": ((290, 2100, 2800, 3500, 4950), (50, 90, 120, 130, 200), (0, -16, -20, -28, -60)),
    "o": ((450, 800, 2830, 3500, 4950), (70, 80, 100, 130, 135), (0, -9, -16, -28, -55)),
    "u": ((325, 700, 2530, 3500, 4950), (50, 60, 170, 180, 200), (0, -12, -30, -40, -64)),
}
#: voiced consonant -> (formant loci Hz, source level while it sounds)
VOICED_CONSONANTS: dict[str, tuple[tuple[float, ...], float]] = {
    "m": ((250, 1100, 2300, 3300, 4500), 0.25), "n": ((250, 1500, 2500, 3300, 4500), 0.25),
    "l": ((350, 1100, 2700, 3300, 4500), 0.45), "w": ((300, 700, 2300, 3300, 4500), 0.45),
    "r": ((350, 1200, 1600, 3300, 4500), 0.45), "y": ((280, 2200, 3000, 3500, 4500), 0.45),
    "b": ((200, 900, 2300, 3300, 4500), 0.08), "d": ((200, 1700, 2600, 3300, 4500), 0.08),
    "g": ((200, 2000, 2500, 3300, 4500), 0.08), "v": ((300, 1200, 2400, 3300, 4500), 0.25),
    "z": ((300, 1600, 2600, 3300, 4500), 0.2),
}
#: consonant -> (noise band Hz, level, duration s, burst: True for plosive release after a closure)
NOISE_CONSONANTS: dict[str, tuple[tuple[float, float], float, float, bool]] = {
    "s": ((4500, 11000), 0.35, 0.10, False), "sh": ((2000, 7000), 0.35, 0.11, False),
    "f": ((1500, 9000), 0.12, 0.09, False), "h": ((600, 3500), 0.10, 0.08, False),
    "v": ((1500, 8000), 0.06, 0.07, False), "z": ((4000, 10000), 0.15, 0.08, False),
    "t": ((3000, 9000), 0.5, 0.02, True), "k": ((1500, 4500), 0.5, 0.025, True),
    "p": ((400, 2500), 0.5, 0.015, True), "b": ((400, 2500), 0.2, 0.01, True),
    "d": ((2500, 7000), 0.2, 0.01, True), "g": ((1200, 4000), 0.2, 0.015, True),
}


@dataclasses.dataclass(frozen=True)
class Voice:
    """One singer: formant scale (shorter vocal tract = higher), vibrato, breathiness."""

    formant_scale: float = 1.0
    vibrato_rate: float = 5.5
    vibrato_depth: float = 0.35  # semitones
    breathiness: float = 0.04
    tilt: float = 1.0  # source roll-off exponent over harmonics

    @staticmethod
    def random(rng: np.random.Generator, pitch_low: float) -> "Voice":
        return Voice(
            formant_scale=float(rng.uniform(0.95, 1.05) * (1.12 if pitch_low >= 55 else 1.0)),
            vibrato_rate=float(rng.uniform(4.8, 6.2)),
            vibrato_depth=float(rng.uniform(0.2, 0.5)),
            breathiness=float(rng.uniform(0.004, 0.015)),
            tilt=float(rng.uniform(0.7, 1.0)),
        )


def split_onset(syllable: str) -> tuple[str, str]:
    """'shi' -> ('sh', 'i'); 'o' -> ('', 'o')."""
    vowel = syllable[-1] if syllable and syllable[-1] in VOWEL_FORMANTS else "a"
    return syllable[:-1], vowel


def monophonic_lines(notes: list) -> list[list]:
    """Split possibly overlapping notes into lines in which notes never overlap (one per singer)."""
    lines: list[list] = []
    for note in sorted(notes, key=lambda n: (n.start, -n.pitch)):
        for line in lines:
            last = line[-1]
            if last.start + last.duration <= note.start + 1e-6:
                line.append(note)
                break
        else:
            lines.append([note])
    return lines


def _one_pole(x: np.ndarray, frames: float, initial: float | np.ndarray | None = None) -> np.ndarray:
    """Exponential smoothing along the last axis with a time constant of ``frames`` frames."""
    a = float(np.exp(-1.0 / max(frames, 1e-3)))
    zi_base = x[..., :1] if initial is None else np.asarray(initial)[..., None] * np.ones_like(x[..., :1])
    y, _ = signal.lfilter([1 - a], [1, -a], x, axis=-1, zi=zi_base * a)
    return y


def render_line(notes: list, length: int, sample_rate: int, voice: Voice, rng: np.random.Generator) -> np.ndarray:
    """A monophonic sung line -> (length,) mono float32."""
    sr = sample_rate
    frames = length // HOP + 2
    frame_rate = sr / HOP
    pitch = np.full(frames, np.nan)
    amp = np.zeros(frames)
    vib_depth = np.zeros(frames)
    formants = np.zeros((5, frames))
    gains_db = np.full((5, frames), -60.0)
    noise_events: list[tuple[float, str, float]] = []  # (time s, consonant, level)
    breath_events: list[float] = []
    bw_table = np.array(VOWEL_FORMANTS["a"][1], dtype=float)
    last_end = -10.0
    default_vowel = VOWEL_FORMANTS["a"]
    formants[:] = np.array(default_vowel[0])[:, None]
    for note in notes:
        onset, vowel = split_onset(note.syllable)
        vf, _, vg = VOWEL_FORMANTS[vowel]
        c_dur = 0.0
        if onset in VOICED_CONSONANTS or onset in NOISE_CONSONANTS:
            c_dur = 0.06 if onset in VOICED_CONSONANTS else NOISE_CONSONANTS[onset][2] + 0.02
        if note.start - last_end > 0.5 and note.start > 0.3:
            breath_events.append(note.start - c_dur - 0.3)
        v0 = int((note.start) * frame_rate)
        v1 = int((note.start + note.duration) * frame_rate)
        c0 = max(0, int((note.start - c_dur) * frame_rate))
        v1 = min(v1, frames)
        if v1 <= v0:
            continue
        pitch[c0:v1] = note.pitch
        amp[v0:v1] = note.velocity
        formants[:, v0:v1] = np.array(vf)[:, None]
        gains_db[:, v0:v1] = np.array(vg)[:, None]
        n_vib = v1 - v0
        ramp = np.clip((np.arange(n_vib) / frame_rate - 0.15) / 0.3, 0, 1)
        vib_depth[v0:v1] = voice.vibrato_depth * ramp
        if onset in VOICED_CONSONANTS and c0 < v0:
            loci, level = VOICED_CONSONANTS[onset]
            amp[c0:v0] = level * note.velocity
            formants[:, c0:v0] = np.array(loci)[:, None]
            gains_db[:, c0:v0] = np.array(vg)[:, None] - 6
        if onset in NOISE_CONSONANTS:
            band, level, dur, burst = NOISE_CONSONANTS[onset]
            t = note.start - (dur + 0.01 if not burst else dur)
            noise_events.append((max(0.0, t), onset, level * note.velocity))
            if burst and onset in ("p", "t", "k"):
                amp[c0:v0] = 0.0  # closure: silence before the release
        last_end = note.start + note.duration
    # Fill pitch through rests (hold last note) so portamento starts from the previous note.
    valid = ~np.isnan(pitch)
    if not valid.any():
        return np.zeros(length, np.float32)
    idx = np.where(valid, np.arange(frames), 0)
    np.maximum.accumulate(idx, out=idx)
    pitch = pitch[idx]
    first = int(np.argmax(valid))
    pitch[:first] = pitch[first]

    pitch = _one_pole(pitch, 0.035 * frame_rate)  # portamento
    t_frames = np.arange(frames) / frame_rate
    drift = _one_pole(rng.standard_normal(frames), 0.3 * frame_rate) * 0.25 + rng.standard_normal(frames) * 0.02
    vib = _one_pole(vib_depth, 0.05 * frame_rate) * np.sin(2 * np.pi * voice.vibrato_rate * t_frames + rng.uniform(0, 6))
    f0 = 440.0 * 2 ** ((pitch + vib + drift - 69) / 12)
    amp = _one_pole(amp, 0.012 * frame_rate)
    formants = _one_pole(formants, 0.02 * frame_rate) * voice.formant_scale
    gains = 10 ** (_one_pole(gains_db, 0.02 * frame_rate) / 20)
    # Shimmer: slow loudness wobble.
    amp = amp * (1 + 0.05 * _one_pole(rng.standard_normal(frames), 0.05 * frame_rate))

    out = np.zeros(length, np.float32)
    active = amp > 1e-3
    # Render contiguous active regions (phrases) only.
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2]):
        a = max(0, a - 1)
        b = min(frames - 1, b + 1)
        s0, s1 = a * HOP, b * HOP  # whole frames; the part past ``length`` is cut when adding
        if s1 <= s0 or s0 >= length:
            continue
        n = s1 - s0
        ramp = np.arange(HOP, dtype=np.float32) / HOP

        def upsample(control: np.ndarray) -> np.ndarray:
            """Frame-rate values at frames a..b -> per-sample linear ramps, (n,) float32."""
            c = control.astype(np.float32)
            return (c[:-1, None] + (c[1:] - c[:-1])[:, None] * ramp[None, :]).ravel()

        f0_s = upsample(f0[a: b + 1]).astype(np.float64)
        phase = 2 * np.pi * np.cumsum(f0_s) / sr + rng.uniform(0, 6.28)
        z = np.exp(1j * phase).astype(np.complex64)
        zk = np.ones(n, np.complex64)
        max_k = int(min(44, 6000 / float(f0[a: b + 1].min())))
        # Spectral envelope at each harmonic for each frame: (k, frames).
        ks = np.arange(1, max_k + 1)[:, None]
        fk = ks * f0[a: b + 1][None, :]
        env = np.zeros_like(fk)
        for j in range(5):
            bw = bw_table[j]
            env += gains[j, a: b + 1][None, :] / np.sqrt(1 + ((fk - formants[j, a: b + 1][None, :]) / (bw / 2)) ** 2)
        env *= ks ** -voice.tilt * amp[a: b + 1][None, :]
        env[fk > 0.45 * sr] = 0
        seg = np.zeros(n, np.float32)
        for k in range(max_k):
            zk *= z
            seg += upsample(env[k]) * zk.imag
        # Breathy aspiration follows the voiced amplitude.
        aspiration = signal.sosfilt(signal.butter(2, [1200, 5000], btype="bandpass", fs=sr, output="sos"),
                                    rng.standard_normal(n)).astype(np.float32)
        seg += voice.breathiness * aspiration * upsample(amp[a: b + 1])
        keep = min(n, length - s0)
        out[s0: s0 + keep] += seg[:keep]

    for t, consonant, level in noise_events:
        band, _, dur, burst = NOISE_CONSONANTS[consonant]
        n = int((dur + 0.02) * sr)
        s0 = int(t * sr)
        if s0 >= length:
            continue
        n = min(n, length - s0)
        env = np.ones(n, np.float32)
        fade = max(1, min(n // 2, int(0.015 * sr)))
        if burst:
            env = np.exp(-np.arange(n) / (0.3 * dur * sr + 1)).astype(np.float32)
        else:
            env[:fade] = np.linspace(0, 1, fade)
            env[-fade:] = np.linspace(1, 0, fade)
        hi = min(band[1], 0.45 * sr)
        sos = signal.butter(2, [band[0], hi], btype="bandpass", fs=sr, output="sos")
        out[s0: s0 + n] += (level * 0.3 * env * signal.sosfilt(sos, rng.standard_normal(n))).astype(np.float32)
    for t in breath_events:
        n = int(0.28 * sr)
        s0 = int(max(0.0, t) * sr)
        n = min(n, length - s0)
        if n <= 0:
            continue
        sos = signal.butter(2, [700, 4000], btype="bandpass", fs=sr, output="sos")
        env = np.sin(np.linspace(0, np.pi, n)) ** 2
        out[s0: s0 + n] += (0.02 * env * signal.sosfilt(sos, rng.standard_normal(n))).astype(np.float32)
    return out
