"""Spleeter-like U-Net on magnitude spectrograms predicting one soft mask per stem.

    mix (B, C, T) -> |STFT| (B, C, F', N), cropped to ``max_bins`` (F') and padded to a multiple of 2**depth frames
    -> U-Net (5x5 stride-2 convolutions, BatchNorm, LeakyReLU down; transposed convolutions, ReLU up, skips)
    -> logits (B, S, C, F', N) -> softmax over stems -> masks, top bin repeated up to Nyquist -> iSTFT
    [-> the stems re-split by their magnitude ratios in a longer STFT, when the config's ``remask_fft`` is set;
        in its lowest ``refine_bins`` bins the ratios corrected by a small learnt network, ``models.refiner``].

Unlike Spleeter (one U-Net per stem) one network predicts every stem: the masks sum to one by construction,
so the stems sum to the mix (``mask_based``), and 2/4/5 stems cost the same trunk.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from stemforge.dsp.wiener import remask
from stemforge.models.base import ModelConfig
from stemforge.models.frontend import FrequencyNorm, Spectrogram, apply_masks, extend_bins, pad_to_multiple
from stemforge.models.neural import NeuralStemModel, preset_factory
from stemforge.models.refiner import LowBandRefiner
from stemforge.models.registry import register


#: Largest re-mask STFT: a checkpoint's config is untrusted, and its window is allocated per segment.
MAX_REMASK_FFT = 2**16
#: Bounds of the re-mask's refiner (its dilations reach 2**(layers - 2) bins).
MAX_REFINE_WIDTH = 256
MAX_REFINE_LAYERS = 8


@dataclasses.dataclass
class UNetConfig(ModelConfig):
    n_fft: int = 4096
    hop: int = 1024
    max_bins: int = 1024  # bins the network sees (Spleeter: 1024 of 2049, ~11 kHz); must divide by 2**depth
    depth: int = 6
    base_channels: int = 16  # doubles at every level
    dropout: float = 0.0  # on the three deepest decoder levels, as in Spleeter
    # After the masks, the stems re-split by their magnitude ratios in an STFT of this size and hop
    # (``dsp.wiener.remask``; 0: off): the bundled default has it. In eval mode only (separation, validation):
    # training fits the masks themselves, as the shipped weights were trained (through a 24576-point re-mask a
    # training step of batch 4 x 2.96 s took 2.3 times as long on one thread).
    remask_fft: int = 0
    remask_hop: int = 0
    # A learnt correction of the re-mask's ratios in its lowest ``refine_bins`` bins (``models.refiner``; 0: none),
    # trained on the frozen network's stems (``recipes/train_refiner.py``).
    refine_bins: int = 0
    refine_width: int = 32
    refine_layers: int = 5
    # The engine's overlap between segments unless the caller chooses one (``StemModel.default_overlap``): a
    # measured choice per checkpoint (MODEL_CARD.md), as the re-mask is.
    overlap: float = 0.25

    def __post_init__(self) -> None:
        # depth is checked against max_bins' bit length before 2**depth is formed: a checkpoint's config is
        # untrusted, and 2**(10**15) would hang the loader (any such depth fails the divisibility test anyway).
        if (not 0 <= self.depth < self.max_bins.bit_length() or self.max_bins % (2**self.depth)
                or self.max_bins > self.n_fft // 2 + 1):
            raise ValueError(f"max_bins ({self.max_bins}) must divide by 2**depth and fit in n_fft // 2 + 1 bins")
        if (self.remask_fft or self.remask_hop) and not (
                type(self.remask_fft) is int and type(self.remask_hop) is int  # a header may hold anything
                and 0 < self.remask_hop <= self.remask_fft // 2 and self.remask_fft % self.remask_hop == 0
                and self.remask_fft <= MAX_REMASK_FFT):
            raise ValueError(f"remask_fft ({self.remask_fft}) must be a multiple of remask_hop ({self.remask_hop}), "
                             f"at least twice it and at most {MAX_REMASK_FFT}")
        if self.refine_bins and not (
                type(self.refine_bins) is int and type(self.refine_width) is int and type(self.refine_layers) is int
                and self.remask_fft and 0 < self.refine_bins <= self.remask_fft // 2 + 1
                and 0 < self.refine_width <= MAX_REFINE_WIDTH and 0 < self.refine_layers <= MAX_REFINE_LAYERS):
            raise ValueError(f"refine_bins ({self.refine_bins}) needs a re-mask and at most remask_fft // 2 + 1 bins; "
                             f"refine_width 1..{MAX_REFINE_WIDTH}, refine_layers 1..{MAX_REFINE_LAYERS}")
        if type(self.overlap) not in (int, float) or not 0 <= self.overlap < 1:
            raise ValueError(f"overlap ({self.overlap!r}) must be a number in [0, 1)")


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 5, stride=2, padding=2)
        self.norm = nn.BatchNorm2d(cout)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)
        self.norm = nn.BatchNorm2d(cout)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.norm(self.act(self.conv(x))))


class UNetSeparator(NeuralStemModel):
    architecture = "unet"
    config_class = UNetConfig
    mask_based = True
    default_segment = 10.0

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        self.config: UNetConfig = config
        self.default_overlap = float(config.overlap)  # type: ignore[misc]
        self.spectrogram = Spectrogram(config.n_fft, config.hop)
        self.norm = FrequencyNorm(config.max_bins)
        widths = [config.channels] + [config.base_channels * 2**i for i in range(config.depth)]
        self.down = nn.ModuleList(_Down(widths[i], widths[i + 1]) for i in range(config.depth))
        ups = []
        for level in reversed(range(config.depth)):
            cin = widths[level + 1] * (1 if level == config.depth - 1 else 2)
            cout = widths[level] if level > 0 else config.base_channels
            ups.append(_Up(cin, cout, config.dropout if level >= config.depth - 3 else 0.0))
        self.up = nn.ModuleList(ups)
        self.head = nn.Conv2d(config.base_channels + config.channels, len(config.sources) * config.channels, 3, padding=1)
        self.refiner = (LowBandRefiner(len(config.sources), config.refine_width, config.refine_layers)
                        if config.refine_bins else None)

    def padded_length(self, samples: int) -> int:
        # Centred STFT frames (samples // hop + 1), padded by ``analyse`` to a multiple of 2**depth: a 1 s chunk
        # (87 frames) is computed as 128 frames, a third of them zeros, at depth 6.
        stride = 2**self.config.depth
        frames = -(-(samples // self.config.hop + 1) // stride) * stride
        return max(samples, (frames - 1) * self.config.hop)

    def analyse(self, mix: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], Any]:
        spec = self.spectrogram(mix)  # (B, C, F, N)
        frames = spec.shape[-1]
        mag = pad_to_multiple(spec[..., : self.config.max_bins, :].abs(), 2**self.config.depth)
        return (mag,), (spec, frames, mix.shape[-1])

    def network(self, mag: torch.Tensor) -> torch.Tensor:
        """mag: (B, C, F', N') -> mask logits (B, S, C, F', N')."""
        # Channels-last activations: oneDNN's convolutions run about twice as fast on them as on NCHW (CPU).
        x = self.norm(mag).contiguous(memory_format=torch.channels_last)
        skips = [x]
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        skips.pop()  # the deepest output is the decoder's input, not a skip
        for layer in self.up:
            x = layer(x)
            x = torch.cat([x, skips.pop()], dim=1)
        logits = self.head(x)
        b, _, f, n = logits.shape
        return logits.reshape(b, len(self.config.sources), self.config.channels, f, n)

    def synthesise(self, logits: torch.Tensor, context: Any) -> torch.Tensor:
        spec, frames, length = context
        masks = torch.softmax(logits.float()[..., :frames], dim=1)
        masks = extend_bins(masks, spec.shape[-2])
        return self.spectrogram.inverse(apply_masks(masks, spec), length).to(spec.real.dtype)

    def postfilter(self, stems: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        """The config's re-mask (``remask_fft > 0``, eval mode), then the optional Wiener EM: (B, S, C, T) -> same."""
        if self.config.remask_fft and not self.training:
            # The masks sum to one: the stems add up to the mix, whose spectrum is then theirs summed (no STFT).
            stems = remask(stems, None, self.config.remask_fft, self.config.remask_hop, self.refiner,
                           self.config.refine_bins).to(stems.dtype)
        return super().postfilter(stems, mix)


PRESETS: dict[str, dict[str, Any]] = {
    # ~0.3 M parameters: CPU tests and quick experiments.
    "tiny": dict(n_fft=2048, hop=512, max_bins=512, depth=4, base_channels=8),
    # ~5.5 M parameters (22 MB): Spleeter's 6 levels, 12..384 channels, one shared trunk.
    "base": dict(n_fft=4096, hop=1024, max_bins=1024, depth=6, base_channels=12, dropout=0.5),
    # Spleeter's widths (16..512 channels) over 16 kHz.
    "large": dict(n_fft=4096, hop=1024, max_bins=1536, depth=6, base_channels=16, dropout=0.5),
}

register("unet", "cnn", "Spleeter-like U-Net on magnitude spectrograms, soft masks per stem")(
    preset_factory(UNetSeparator, PRESETS)
)
