"""Classical DSP separators registered like any model: they need no training and are mask-based.

``classical`` (4 stems): HPSS gives drums; the harmonic part is split by a low-pass into bass and the
rest, which REPET-SIM splits into repeating accompaniment (other) and non-repeating lead (vocals).
Masks are computed on the channel-averaged magnitude and applied to every channel, so the stems sum
to the mixture up to STFT round-off.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from stemforge.dsp.classical import hpss_masks, lowpass_mask, repet_sim_mask
from stemforge.dsp.spectral import istft, stft
from stemforge.models.base import ModelConfig, StemModel
from stemforge.models.registry import register
from stemforge.stems import FOUR_STEMS


@dataclasses.dataclass
class ClassicalConfig(ModelConfig):
    method: str = "classical"  # "classical" (4 stems), "hpss" (drums/other), "repet" (vocals/other)
    n_fft: int = 4096
    hop: int = 1024
    kernel: int = 17
    bass_cutoff: float = 160.0
    bass_rolloff: float = 320.0
    vocal_low: float = 120.0  # below this nothing is vocals


_SOURCES = {"classical": FOUR_STEMS, "hpss": ("drums", "other"), "repet": ("vocals", "other")}


class ClassicalSeparator(StemModel):
    architecture = "classical"
    config_class = ClassicalConfig
    mask_based = True
    trainable = False
    default_segment = 20.0

    def __init__(self, config: ClassicalConfig) -> None:
        if config.method not in _SOURCES:
            raise ValueError(f"unknown classical method {config.method!r}")
        super().__init__(config)
        self.config: ClassicalConfig = config

    def masks(self, mag: np.ndarray) -> np.ndarray:
        """mag: (freq, frames) -> masks (sources, freq, frames), summing to one over sources."""
        cfg = self.config
        freqs = np.linspace(0.0, cfg.sample_rate / 2, mag.shape[0])
        harmonic, percussive = hpss_masks(mag, cfg.kernel, cfg.kernel) if cfg.method != "repet" else (np.ones_like(mag), np.zeros_like(mag))
        if cfg.method == "hpss":
            return np.stack([percussive, harmonic])
        low = lowpass_mask(freqs, cfg.bass_cutoff, cfg.bass_rolloff)[:, None]
        vocal_band = (freqs >= cfg.vocal_low)[:, None]
        if cfg.method == "repet":
            repeating = repet_sim_mask(mag)
            vocals = np.where(vocal_band, 1.0 - repeating, 0.0)
            return np.stack([vocals, 1.0 - vocals])
        bass = harmonic * low
        upper = harmonic * (1.0 - low)
        repeating = repet_sim_mask(mag * harmonic)
        vocals = upper * np.where(vocal_band, 1.0 - repeating, 0.0)
        other = upper - vocals
        return np.stack([percussive, bass, other, vocals])

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix: (batch, channels, time) -> (batch, sources, channels, time)."""
        cfg = self.config
        length = mix.shape[-1]
        spec = stft(mix.float(), cfg.n_fft, cfg.hop)  # (B, C, F, N)
        mag = spec.abs().mean(dim=1).cpu().numpy()  # (B, F, N)
        masks = torch.from_numpy(np.stack([self.masks(m) for m in mag])).to(spec.device, spec.real.dtype)
        stems = masks[:, :, None] * spec[:, None]  # (B, S, C, F, N)
        return istft(stems, length, cfg.n_fft, cfg.hop).to(mix.dtype)


def _factory(method: str):
    def build(**overrides: object) -> ClassicalSeparator:
        return ClassicalSeparator(ClassicalConfig(sources=_SOURCES[method], method=method, **overrides))

    return build


register("classical", "classical", "HPSS drums + low-pass bass + REPET-SIM vocals; no training")(_factory("classical"))
register("hpss", "classical", "median-filter harmonic/percussive split into drums and other")(_factory("hpss"))
register("repet", "classical", "REPET-SIM repetition model: vocals vs accompaniment")(_factory("repet"))
