"""On-the-fly augmentation of stems before they are mixed: stems (sources, channels, time) in and out.

Every transform is applied per stem (so remixing stays consistent: the mixture is always the sum of
the augmented stems) and draws only from the generator it is given, so a dataset item is reproducible.
Nothing divides by a signal level: silent stems stay exactly silent and never produce NaN or inf.

Pitch shift and tempo change use a phase vocoder (``torch.stft``) and soxr resampling, in one pass
when both are drawn. They are the only costly transforms (about 1 s CPU for 4 stereo stems of 6 s),
hence low default probabilities. They need a little more input than the output chunk, which
``Augment.input_length`` tells the dataset.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import soxr
import torch


@dataclasses.dataclass
class AugmentConfig:
    """Probabilities and ranges; a probability of 0 disables a transform."""

    gain_db: tuple[float, float] = (-6.0, 3.0)  # per stem, always applied
    channel_swap_probability: float = 0.5  # per stem
    polarity_flip_probability: float = 0.5  # per stem
    max_shift_seconds: float = 0.05  # per stem time shift, uniform in [0, max]
    pitch_shift_probability: float = 0.1  # per chunk, same shift for every stem (keeps harmony)
    pitch_shift_semitones: float = 2.0  # uniform in [-x, x]
    tempo_probability: float = 0.1  # per chunk (pitch and tempo cost ~0.1 s CPU per stem-second pair)
    tempo_range: tuple[float, float] = (0.88, 1.12)  # playback-rate factor (1.1 = 10% faster)
    sample_rate: int = 44100


def time_stretch(x: torch.Tensor, rate: float, n_fft: int = 2048, hop: int = 512) -> torch.Tensor:
    """Phase-vocoder time stretch: x (..., time) -> (..., round(time / rate)); rate > 1 is faster.

    Pitch is unchanged. Silence maps to silence (magnitudes are zero, phases stay finite).
    """
    if abs(rate - 1.0) < 1e-6:
        return x
    shape = x.shape
    flat = x.reshape(-1, shape[-1])
    window = torch.hann_window(n_fft, device=x.device, dtype=flat.dtype)
    spec = torch.stft(flat, n_fft, hop, window=window, center=True, return_complex=True)  # (B, F, N)
    frames = spec.shape[-1]
    steps = torch.arange(0, frames - 1, rate, device=x.device, dtype=torch.float64)
    idx = steps.floor().long()
    frac = (steps - idx).to(flat.dtype)
    mag = spec.abs()
    mag = mag[..., idx] * (1 - frac) + mag[..., idx + 1] * frac
    phase = spec.angle()
    expected = torch.linspace(0, math.pi * hop, spec.shape[-2], device=x.device, dtype=flat.dtype)[:, None]
    delta = phase[..., 1:] - phase[..., :-1] - expected
    delta = delta - 2 * math.pi * torch.round(delta / (2 * math.pi))
    advance = (delta + expected)[..., idx]
    out_phase = torch.cumsum(torch.cat([phase[..., :1], advance[..., :-1]], dim=-1), dim=-1)
    stretched = torch.polar(mag, out_phase)
    length = int(round(shape[-1] / rate))
    wave = torch.istft(stretched, n_fft, hop, window=window, center=True, length=length)
    return wave.reshape(*shape[:-1], length)


def resample(x: torch.Tensor, factor: float) -> torch.Tensor:
    """x (..., time) -> (..., ~time * factor) with soxr (band-limited), on CPU numpy."""
    shape = x.shape
    flat = x.reshape(-1, shape[-1]).cpu().numpy().T  # (time, channels)
    out = soxr.resample(np.ascontiguousarray(flat), 1000.0, 1000.0 * factor, quality="HQ")
    return torch.from_numpy(np.ascontiguousarray(out.T, dtype=np.float32)).reshape(*shape[:-1], -1).to(x.device)


def pitch_shift(x: torch.Tensor, semitones: float) -> torch.Tensor:
    """x (..., time) -> (..., time) shifted by ``semitones`` with the same duration."""
    factor = 2.0 ** (semitones / 12.0)
    stretched = time_stretch(x, 1.0 / factor)  # longer by `factor`
    out = resample(stretched, 1.0 / factor)  # back to the original length, pitch up by `factor`
    return _fit(out, x.shape[-1])


def change_tempo_and_pitch(x: torch.Tensor, tempo: float, semitones: float) -> torch.Tensor:
    """x (..., time) -> (..., ~time / tempo): faster by ``tempo`` and shifted by ``semitones``.

    One phase-vocoder pass (the costly part) plus one resampling, whichever of the two is asked for.
    """
    factor = 2.0 ** (semitones / 12.0)
    stretched = time_stretch(x, tempo / factor)
    return stretched if factor == 1.0 else resample(stretched, 1.0 / factor)


def widen(stem: torch.Tensor, frames: int) -> torch.Tensor:
    """stem (2, time) -> (2, time): the right channel delayed by ``frames`` (zeros in front, its end cut).

    A centred source moves off the centre, as a stereo synth bass or a Haas-widened part sits in real mixes;
    ``frames = 0`` returns it unchanged.
    """
    if stem.dim() != 2 or stem.shape[0] != 2:
        raise ValueError(f"widen needs a stereo stem (2, time), got {tuple(stem.shape)}")
    if frames < 0:
        raise ValueError(f"widen needs a delay of 0 frames or more, got {frames}")
    out = stem.clone()
    out[1] = 0
    if frames < stem.shape[-1]:
        out[1, frames:] = stem[1, : stem.shape[-1] - frames]
    return out


def _fit(x: torch.Tensor, length: int) -> torch.Tensor:
    if x.shape[-1] >= length:
        return x[..., :length]
    return torch.nn.functional.pad(x, (0, length - x.shape[-1]))


class Augment:
    """stems (sources, channels, time_in) -> (sources, channels, chunk) with random transforms.

    ``time_in`` should be ``input_length(chunk)``; shorter input is zero-padded at the end.
    """

    def __init__(self, config: AugmentConfig | None = None) -> None:
        self.config = config or AugmentConfig()

    def input_length(self, chunk: int) -> int:
        """Frames to read so that tempo change and time shifts still fill ``chunk`` frames."""
        c = self.config
        tempo = max(c.tempo_range) if c.tempo_probability > 0 else 1.0
        shift = int(math.ceil(c.max_shift_seconds * c.sample_rate))
        return int(math.ceil(chunk * max(tempo, 1.0))) + shift + 1

    def __call__(self, stems: torch.Tensor, rng: np.random.Generator, chunk: int | None = None) -> torch.Tensor:
        c = self.config
        sources, channels, _ = stems.shape
        shift_max = int(math.ceil(c.max_shift_seconds * c.sample_rate))
        if chunk is None:
            chunk = max(1, stems.shape[-1] - shift_max - 1)
            if c.tempo_probability > 0:
                chunk = max(1, int((stems.shape[-1] - shift_max - 1) / max(max(c.tempo_range), 1.0)))
        x = stems.float()
        tempo = float(rng.uniform(*c.tempo_range)) if rng.random() < c.tempo_probability else 1.0
        semitones = 0.0
        if rng.random() < c.pitch_shift_probability:
            semitones = float(rng.uniform(-c.pitch_shift_semitones, c.pitch_shift_semitones))
        if tempo != 1.0 or semitones != 0.0:
            x = change_tempo_and_pitch(x, tempo, semitones)
        x = _fit(x, chunk + shift_max)
        out = torch.empty(sources, channels, chunk, dtype=torch.float32, device=x.device)
        for s in range(sources):
            shift = int(rng.integers(0, shift_max + 1)) if shift_max else 0
            stem = x[s, :, shift: shift + chunk]
            gain = 10.0 ** (float(rng.uniform(*c.gain_db)) / 20.0)
            if rng.random() < c.polarity_flip_probability:
                gain = -gain
            if channels == 2 and rng.random() < c.channel_swap_probability:
                stem = stem.flip(0)
            out[s] = stem * gain
        return out
