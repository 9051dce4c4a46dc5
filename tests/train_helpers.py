"""A tiny trainable mask model and a tiny MUSDB-layout dataset for the training tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch import nn

from stemforge.dsp.spectral import istft, stft
from stemforge.models.base import ModelConfig, StemModel
from stemforge.models.registry import register

RATE = 8000
STEMS = ("drums", "bass", "other", "vocals")


@dataclasses.dataclass
class TinyMaskConfig(ModelConfig):
    n_fft: int = 128
    hop: int = 32
    hidden: int = 32
    dropout: float = 0.1


class TinyMaskNet(StemModel):
    """Per-frame MLP on the channel-mean magnitude -> one sigmoid mask per stem (head laid out source-major)."""

    architecture = "test-tinymask"
    config_class = TinyMaskConfig
    mask_based = False
    default_segment = 1.0

    def __init__(self, config: TinyMaskConfig) -> None:
        super().__init__(config)
        bins = config.n_fft // 2 + 1
        self.encoder = nn.Sequential(nn.Linear(bins, config.hidden), nn.ReLU(), nn.Dropout(config.dropout))
        self.head = nn.Linear(config.hidden, len(config.sources) * bins)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix: (batch, channels, time) -> (batch, sources, channels, time)."""
        cfg = self.config
        spec = stft(mix, cfg.n_fft, cfg.hop)  # (B, C, F, N)
        mag = spec.abs().mean(1).transpose(1, 2)  # (B, N, F)
        logits = self.head(self.encoder(torch.log1p(mag)))  # (B, N, S*F)
        masks = torch.sigmoid(logits.unflatten(-1, (len(cfg.sources), -1))).permute(0, 2, 3, 1)  # (B, S, F, N)
        return istft(masks[:, :, None] * spec[:, None], mix.shape[-1], cfg.n_fft, cfg.hop)


try:
    @register("test-tinymask", "test", "tiny per-frame mask MLP for the training tests")
    def build_tiny(preset: str = "tiny", **overrides: object) -> TinyMaskNet:
        return TinyMaskNet(TinyMaskConfig(sample_rate=RATE, **overrides))
except ValueError:  # already registered by another test module
    pass


def make_dataset(root: Path, songs: int = 5, seconds: float = 1.0, seed: int = 0, stems=STEMS) -> Path:
    """Songs whose stems are easy to tell apart: low sine (bass), clicks (drums), mid chords (other), high tone (vocals)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    for song in range(songs):
        folder = root / f"song{song:02d}"
        folder.mkdir(parents=True)
        audio = {
            "bass": 0.3 * np.sin(2 * np.pi * rng.uniform(50, 110) * t),
            "drums": 0.5 * rng.standard_normal(t.size) * (np.mod(t, 0.25) < 0.03),
            "other": 0.2 * sum(np.sin(2 * np.pi * f * t) for f in rng.uniform(300, 700, 3)),
            "vocals": 0.2 * np.sin(2 * np.pi * rng.uniform(1200, 2000) * t + 3 * np.sin(2 * np.pi * 5 * t)),
            "guitar": 0.2 * np.sign(np.sin(2 * np.pi * rng.uniform(200, 300) * t)),
        }
        mix = 0
        for stem in stems:
            wav = np.stack([audio[stem], audio[stem] * rng.uniform(0.5, 1.0)]).astype(np.float32)
            sf.write(folder / f"{stem}.wav", wav.T, RATE, subtype="FLOAT")
            mix = mix + wav
        sf.write(folder / "mixture.wav", np.asarray(mix).T, RATE, subtype="FLOAT")
    return root


if __name__ == "__main__":  # the stemforge CLI with the tiny test model registered (torchrun runs it per rank)
    import sys

    from stemforge.cli import main

    sys.exit(main(sys.argv[1:]))
