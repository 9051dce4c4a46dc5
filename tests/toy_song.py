"""A tiny procedural song for tests: four stems with the spectral traits the classical models rely on."""

from __future__ import annotations

import numpy as np


def toy_stems(seconds: float = 4.0, sample_rate: int = 44100, seed: int = 0) -> dict[str, np.ndarray]:
    """{stem: (2, time) float32}: drums (kick/snare/hat hits), bass (low notes), other (chords), vocals (vibrato lead)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    beat = 0.5  # 120 bpm
    drums = np.zeros(n)
    for k, start in enumerate(np.arange(0, seconds, beat / 2)):
        i = int(start * sample_rate)
        length = min(n - i, int(0.15 * sample_rate))
        tt = np.arange(length) / sample_rate
        if k % 4 == 0:
            hit = np.sin(2 * np.pi * (50 + 100 * np.exp(-tt * 30)) * tt) * np.exp(-tt * 25)
        elif k % 4 == 2:
            hit = rng.standard_normal(length) * np.exp(-tt * 30) * 0.6
        else:
            hit = np.diff(rng.standard_normal(length + 1)) * np.exp(-tt * 80) * 0.2
        drums[i:i + length] += hit
    roots = [55.0, 43.65, 49.0, 41.2]
    bar = 4 * beat
    bass = np.zeros(n)
    other = np.zeros(n)
    for b, start in enumerate(np.arange(0, seconds, bar)):
        i, j = int(start * sample_rate), min(n, int((start + bar) * sample_rate))
        tt = t[i:j] - start
        f = roots[b % len(roots)]
        env = np.minimum(1, tt * 50)
        bass[i:j] = env * (np.sin(2 * np.pi * f * tt) + 0.3 * np.sin(4 * np.pi * f * tt))
        for ratio in (4, 5, 6):
            other[i:j] += 0.15 * env * np.sign(np.sin(2 * np.pi * f * ratio * tt)) * np.exp(-tt * 0.5)
    melody = [392.0, 440.0, 493.9, 440.0, 392.0, 349.2, 329.6, 349.2]
    vocals = np.zeros(n)
    for k, start in enumerate(np.arange(0, seconds, beat)):
        i, j = int(start * sample_rate), min(n, int((start + beat * 0.9) * sample_rate))
        tt = t[i:j] - start
        f0 = melody[k % len(melody)] * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * tt))
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        env = np.minimum(1, tt * 20) * np.minimum(1, (tt[-1] - tt) * 20 + 1e-3)
        voice = sum(np.sin(h * phase) / h * np.exp(-((h * f0 - 700) / 900) ** 2) for h in range(1, 12))
        vocals[i:j] = env * voice
    stems = {"drums": drums * 0.5, "bass": bass * 0.3, "other": other, "vocals": vocals * 0.5}
    pans = {"drums": 0.5, "bass": 0.5, "other": 0.3, "vocals": 0.5}
    return {k: np.stack([v * (1 - pans[k]) * 2 * 0.5, v * pans[k] * 2 * 0.5]).astype(np.float32) for k, v in stems.items()}


def toy_mix(seconds: float = 4.0, sample_rate: int = 44100, seed: int = 0) -> np.ndarray:
    return sum(toy_stems(seconds, sample_rate, seed).values())
