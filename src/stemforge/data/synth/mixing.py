"""Per-track and per-stem production: pan, EQ, compression, reverb (pedalboard), level.

All processing happens on each stem separately, so the mixture stays the exact sum of the stems.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import signal

from stemforge.extras import require

SYNTH_PURPOSE = "synthetic song rendering (stemforge data synth)"


def _pedalboard():  # noqa: ANN202 - the module
    """pedalboard, imported on first use: it is the optional ``synth`` extra."""
    return require("pedalboard", "synth", SYNTH_PURPOSE)


def pan(mono: np.ndarray, position: float) -> np.ndarray:
    """mono: (time,) -> (2, time) with constant-power panning; position in [-1 (left), 1 (right)]."""
    angle = (float(position) + 1) * np.pi / 4
    return np.stack([mono * np.float32(np.cos(angle)), mono * np.float32(np.sin(angle))]).astype(np.float32)


@dataclasses.dataclass
class Chain:
    """Effect settings drawn for one track or stem; ``to_dict`` goes into the song JSON."""

    low_shelf_db: float
    high_shelf_db: float
    peak_hz: float
    peak_db: float
    compressor_threshold_db: float
    compressor_ratio: float
    reverb_room: float
    reverb_wet: float
    highpass_hz: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in dataclasses.asdict(self).items()}

    def eq_sos(self, sample_rate: int) -> np.ndarray:
        """High-pass, low shelf, peak and high shelf as one second-order-sections cascade."""
        return np.concatenate([
            signal.butter(2, self.highpass_hz, btype="highpass", fs=sample_rate, output="sos"),
            _biquad("lowshelf", 200.0, self.low_shelf_db, 0.707, sample_rate),
            _biquad("peak", self.peak_hz, self.peak_db, 1.0, sample_rate),
            _biquad("highshelf", min(6000.0, 0.4 * sample_rate), self.high_shelf_db, 0.707, sample_rate),
        ])

    def dynamics(self, reverb: bool) -> "pedalboard.Pedalboard":  # noqa: F821 - optional import
        pedalboard = _pedalboard()
        effects = [pedalboard.Compressor(threshold_db=self.compressor_threshold_db, ratio=self.compressor_ratio,
                                         attack_ms=8, release_ms=120)]
        if reverb and self.reverb_wet > 0:
            effects.append(pedalboard.Reverb(room_size=self.reverb_room, wet_level=self.reverb_wet,
                                             dry_level=1.0, width=1.0, damping=0.5))
        return pedalboard.Pedalboard(effects)


def _biquad(kind: str, freq: float, gain_db: float, q: float, sample_rate: int) -> np.ndarray:
    """RBJ audio-EQ-cookbook shelf/peak filter as one (1, 6) second-order section."""
    a_gain = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / sample_rate
    alpha = np.sin(w0) / (2 * q)
    cos = np.cos(w0)
    if kind == "peak":
        b = [1 + alpha * a_gain, -2 * cos, 1 - alpha * a_gain]
        a = [1 + alpha / a_gain, -2 * cos, 1 - alpha / a_gain]
    else:
        sq = 2 * np.sqrt(a_gain) * alpha
        sign = 1 if kind == "lowshelf" else -1
        b = [a_gain * ((a_gain + 1) - sign * (a_gain - 1) * cos + sq),
             sign * 2 * a_gain * ((a_gain - 1) - sign * (a_gain + 1) * cos),
             a_gain * ((a_gain + 1) - sign * (a_gain - 1) * cos - sq)]
        a = [(a_gain + 1) + sign * (a_gain - 1) * cos + sq,
             -sign * 2 * ((a_gain - 1) + sign * (a_gain + 1) * cos),
             (a_gain + 1) + sign * (a_gain - 1) * cos - sq]
    b = np.array(b) / a[0]
    a = np.array(a) / a[0]
    return np.concatenate([b, a])[None, :]


#: stem -> (highpass Hz range, reverb wet range): bass and kick stay dry, vocals and pads get space.
_STEM_STYLE = {
    "drums": ((20, 40), (0.02, 0.12)),
    "bass": ((25, 40), (0.0, 0.0)),
    "vocals": ((80, 140), (0.12, 0.3)),
    "other": ((60, 120), (0.06, 0.22)),
    "guitar": ((70, 120), (0.05, 0.2)),
    "piano": ((40, 80), (0.06, 0.2)),
}


def random_chain(rng: np.random.Generator, stem: str, reverb: bool = True) -> Chain:
    hp, wet = _STEM_STYLE.get(stem, _STEM_STYLE["other"])
    return Chain(
        low_shelf_db=float(rng.uniform(-3, 3)),
        high_shelf_db=float(rng.uniform(-4, 3)),
        peak_hz=float(np.exp(rng.uniform(np.log(300), np.log(4000)))),
        peak_db=float(rng.uniform(-4, 4)),
        compressor_threshold_db=float(rng.uniform(-24, -10)),
        compressor_ratio=float(rng.uniform(1.5, 5.0)),
        reverb_room=float(rng.uniform(0.2, 0.85)),
        reverb_wet=float(rng.uniform(*wet)) if reverb else 0.0,
        highpass_hz=float(rng.uniform(*hp)),
    )


def process(stereo: np.ndarray, chain: Chain, sample_rate: int, dynamics: bool = True) -> np.ndarray:
    """stereo: (2, time) -> (2, time) through EQ (scipy) then compressor/reverb (pedalboard).

    Silent input stays exactly silent. ``dynamics=False`` applies only the EQ (cheap, per instrument).
    """
    if not np.any(stereo):
        return stereo
    out = signal.sosfilt(chain.eq_sos(sample_rate), stereo, axis=-1).astype(np.float32)
    if dynamics:
        out = chain.dynamics(reverb=chain.reverb_wet > 0)(out, sample_rate, reset=True)
    return np.ascontiguousarray(out[:, : stereo.shape[1]], dtype=np.float32)


def rms_db(x: np.ndarray) -> float:
    """RMS level in dBFS; -inf for silence."""
    flat = np.ascontiguousarray(x, dtype=np.float32).ravel()
    power = float(np.dot(flat, flat)) / max(flat.size, 1)
    return 10 * np.log10(power) if power > 0 else float("-inf")


def set_level(x: np.ndarray, target_db: float) -> np.ndarray:
    """Scale ``x`` to ``target_db`` RMS; silence stays silence (no division by zero)."""
    level = rms_db(x)
    if not np.isfinite(level):
        return x
    return (x * np.float32(10 ** ((target_db - level) / 20))).astype(np.float32)
