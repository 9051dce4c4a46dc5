"""Drum grooves (General MIDI percussion notes on a 16th grid) and a synthesized drum kit.

``groove`` turns a style and the song's sections into timed hits; ``DrumKit`` renders each GM note once
per song (kit parameters drawn from the song's generator) and the renderer adds scaled copies.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import signal

STYLES = ("rock", "pop", "funk", "electronic", "swing", "half_time")

KICK, SIDE_STICK, SNARE, CLAP, CLOSED_HAT, OPEN_HAT = 36, 37, 38, 39, 42, 46
LOW_TOM, MID_TOM, HIGH_TOM, CRASH, RIDE = 45, 47, 50, 49, 51

#: style -> {GM note: 16-step pattern of velocities (0 = no hit)} for one 4/4 bar.
PATTERNS: dict[str, dict[int, list[float]]] = {
    "rock": {
        KICK: [1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0],
        SNARE: [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        CLOSED_HAT: [0.9, 0, 0.6, 0, 0.9, 0, 0.6, 0, 0.9, 0, 0.6, 0, 0.9, 0, 0.6, 0],
    },
    "pop": {
        KICK: [1, 0, 0, 0, 0, 0, 0, 0.7, 1, 0, 0, 0, 0, 0, 0, 0],
        CLAP: [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        SNARE: [0, 0, 0, 0, 0.8, 0, 0, 0, 0, 0, 0, 0, 0.8, 0, 0, 0],
        CLOSED_HAT: [0.8, 0.4, 0.6, 0.4] * 4,
    },
    "funk": {
        KICK: [1, 0, 0, 0.7, 0, 0, 0.8, 0, 0, 0, 1, 0, 0, 0.6, 0, 0],
        SNARE: [0, 0, 0, 0, 1, 0, 0, 0.3, 0, 0.3, 0, 0, 1, 0, 0, 0.4],
        CLOSED_HAT: [0.9, 0.5, 0.7, 0.5] * 4,
        OPEN_HAT: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.7, 0],
    },
    "electronic": {
        KICK: [1, 0, 0, 0] * 4,
        CLAP: [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        OPEN_HAT: [0, 0, 0.8, 0] * 4,
        CLOSED_HAT: [0.5, 0.3, 0, 0.3] * 4,
    },
    "swing": {
        KICK: [0.6, 0, 0, 0, 0, 0, 0, 0, 0.5, 0, 0, 0, 0, 0, 0, 0],
        SIDE_STICK: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0.7, 0, 0, 0],
        RIDE: [0.9, 0, 0, 0, 0.8, 0, 0.6, 0, 0.9, 0, 0, 0, 0.8, 0, 0.6, 0],
        CLOSED_HAT: [0, 0, 0, 0, 0.6, 0, 0, 0, 0, 0, 0, 0, 0.6, 0, 0, 0],
    },
    "half_time": {
        KICK: [1, 0, 0, 0, 0, 0, 0, 0.6, 0, 0, 1, 0, 0, 0, 0, 0],
        SNARE: [0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
        CLOSED_HAT: [0.9, 0, 0.6, 0] * 4,
    },
}


@dataclasses.dataclass
class DrumHit:
    time: float
    note: int
    velocity: float


def groove(rng: np.random.Generator, style: str, beat: float, beats_per_bar: int,
           sections: list[tuple[str, int, int]]) -> list[DrumHit]:
    """Hits for the whole song: the style's bar pattern, crashes on section starts, fills before them."""
    pattern = PATTERNS[style]
    steps = beats_per_bar * 4
    swing = style == "swing" or rng.random() < 0.15
    humanize = float(rng.uniform(0.002, 0.008))
    hits: list[DrumHit] = []
    for name, start_bar, bars in sections:
        for bar in range(start_bar, start_bar + bars):
            t_bar = bar * beats_per_bar * beat
            sparse = name in ("intro", "outro") and rng.random() < 0.5
            fill = bar == start_bar + bars - 1 and rng.random() < 0.6
            for note, velocities in pattern.items():
                for step in range(steps):
                    vel = velocities[step % 16]
                    if fill and step >= steps - 4:
                        continue
                    if vel <= 0 or (sparse and note not in (KICK, CLOSED_HAT, RIDE)):
                        continue
                    offset = step * beat / 4
                    if swing and step % 2 == 1:
                        offset += beat / 12  # shuffle: off-16ths late by a triplet
                    t = t_bar + offset + float(rng.normal(0, humanize))
                    hits.append(DrumHit(max(0.0, t), note, float(np.clip(vel * rng.uniform(0.8, 1.05), 0.05, 1))))
            if bar == start_bar and name in ("chorus", "verse", "bridge"):
                hits.append(DrumHit(t_bar, CRASH, float(rng.uniform(0.7, 1.0))))
            if fill:
                toms = [HIGH_TOM, HIGH_TOM, MID_TOM, LOW_TOM] if rng.random() < 0.6 else [SNARE] * 4
                for i, note in enumerate(toms):
                    t = t_bar + (steps - 4 + i) * beat / 4
                    hits.append(DrumHit(t, note, float(rng.uniform(0.6, 0.95))))
    hits.sort(key=lambda h: (h.time, h.note))
    return hits


def _env(n: int, sr: int, decay: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (decay * sr)).astype(np.float32)


class DrumKit:
    """One synthesized kit per song: each GM note is rendered once, as a (2, n) stereo sample."""

    def __init__(self, rng: np.random.Generator, sample_rate: int, evaluation: bool = False) -> None:
        sr = sample_rate
        self.sample_rate = sr
        noise = rng.standard_normal(sr * 3).astype(np.float32)
        span = (0.8, 1.25) if not evaluation else (0.7, 1.4)
        tune = float(rng.uniform(*span))
        samples: dict[int, np.ndarray] = {}

        # Kick: sine with a fast downward pitch sweep plus a click.
        kick_decay = float(rng.uniform(0.1, 0.25))
        n = int(7 * kick_decay * sr)
        t = np.arange(n) / sr
        f0 = 48 * tune
        freq = f0 + 110 * tune * np.exp(-t / 0.03)
        kick = np.sin(2 * np.pi * np.cumsum(freq) / sr) * _env(n, sr, kick_decay)
        kick[: int(0.004 * sr)] += noise[: int(0.004 * sr)] * 0.4
        samples[KICK] = np.tanh(1.5 * kick)

        # Snare: tuned body + band-passed noise.
        snare_decay = float(rng.uniform(0.05, 0.12))
        n = int(7 * snare_decay * sr)  # long enough to decay by 60 dB: no audible cut-off
        t = np.arange(n) / sr
        body = np.sin(2 * np.pi * 185 * tune * t) * _env(n, sr, 0.05)
        sos = signal.butter(2, [1500, 9000], btype="bandpass", fs=sr, output="sos")
        snare_noise = signal.sosfilt(sos, noise[:n]) * _env(n, sr, snare_decay)
        samples[SNARE] = 0.6 * body + 1.2 * snare_noise

        # Clap: three quick noise bursts then a tail.
        n = int(0.45 * sr)
        sos = signal.butter(2, [900, 5000], btype="bandpass", fs=sr, output="sos")
        env = np.zeros(n, np.float32)
        for k in range(3):
            start = int(k * 0.011 * sr)
            env[start:] += _env(n - start, sr, 0.006 if k < 2 else 0.06)
        samples[CLAP] = signal.sosfilt(sos, noise[n: 2 * n]) * env * 1.5

        n = int(0.08 * sr)
        t = np.arange(n) / sr
        samples[SIDE_STICK] = (np.sin(2 * np.pi * 1700 * tune * t) + 0.8 * noise[:n]) * _env(n, sr, 0.012)

        # Cymbals: high-passed noise mixed with inharmonic square partials (metallic).
        def metal(duration: float, decay: float, cutoff: float, offset: int) -> np.ndarray:
            n = int(min(duration, 7 * decay) * sr)
            t = np.arange(n) / sr
            partials = sum(np.sign(np.sin(2 * np.pi * f * tune * t)) for f in (205.3, 369.6, 304.4, 522.7, 800.0, 540.0))
            sos = signal.butter(4, cutoff, btype="highpass", fs=sr, output="sos")
            raw = 0.5 * noise[offset: offset + n] + 0.15 * partials
            return signal.sosfilt(sos, raw) * _env(n, sr, decay)

        samples[CLOSED_HAT] = metal(0.3, float(rng.uniform(0.015, 0.04)), 7000, 100) * 0.8
        samples[OPEN_HAT] = metal(1.2, 0.18, 6500, 2000) * 0.7
        samples[CRASH] = metal(2.5, 0.7, 4000, 5000) * 0.8
        ride = metal(2.0, 0.5, 5000, 9000) * 0.4
        n_ride = ride.shape[0]
        ride += (np.sin(2 * np.pi * 2900 * tune * np.arange(n_ride) / sr) * _env(n_ride, sr, 0.3) * 0.2)
        samples[RIDE] = ride

        for note, f in ((LOW_TOM, 90), (MID_TOM, 125), (HIGH_TOM, 170)):
            n = int(1.2 * sr)
            t = np.arange(n) / sr
            freq = f * tune * (1 + 0.4 * np.exp(-t / 0.05))
            samples[note] = np.sin(2 * np.pi * np.cumsum(freq) / sr) * _env(n, sr, 0.18) + 0.1 * noise[:n] * _env(n, sr, 0.02)

        # Stereo placement as a drummer sees the kit: hats right, toms left to right, cymbals wide.
        pans = {KICK: 0.0, SNARE: 0.05, CLAP: 0.0, SIDE_STICK: 0.05, CLOSED_HAT: 0.35, OPEN_HAT: 0.35,
                CRASH: -0.45, RIDE: 0.5, HIGH_TOM: 0.25, MID_TOM: -0.05, LOW_TOM: -0.35}
        if rng.random() < 0.5:  # audience perspective flips the kit
            pans = {k: -v for k, v in pans.items()}
        self.samples: dict[int, np.ndarray] = {}
        for note, mono in samples.items():
            angle = (pans[note] + 1) * np.pi / 4
            mono = mono.astype(np.float32)
            self.samples[note] = np.stack([mono * np.cos(angle), mono * np.sin(angle)]).astype(np.float32)

    def render(self, hits: list[DrumHit], length: int) -> np.ndarray:
        """hits -> (2, length) stereo drum track (open hats are choked by the next closed hat)."""
        out = np.zeros((2, length), np.float32)
        sr = self.sample_rate
        choke_times = [h.time for h in hits if h.note == CLOSED_HAT]
        choke_index = 0
        for hit in hits:
            start = int(round(hit.time * sr))
            if start >= length:
                continue
            sample = self.samples[hit.note]
            n = min(sample.shape[1], length - start)
            if hit.note == OPEN_HAT:
                while choke_index < len(choke_times) and choke_times[choke_index] <= hit.time:
                    choke_index += 1
                if choke_index < len(choke_times):
                    n = min(n, max(1, int((choke_times[choke_index] - hit.time) * sr)))
            out[:, start: start + n] += hit.velocity ** 1.5 * sample[:, :n]
        return out
