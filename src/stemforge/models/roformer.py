"""Band-split RoFormer (Lu et al., 2023) and its Mel-band variant (Wang et al., 2023).

    mix (B, C, T) -> STFT, complex as channels (B, 2C, F, N)
    -> band split: each band's bins (B, N, 2C * width) -> RMSNorm + Linear -> (B, N, K, D)
    -> ``depth`` x [time transformer over N for every band, frequency transformer over K for every frame]
       (rotary position embeddings in both)
    -> per-band mask MLP (RMSNorm, Linear, Tanh, Linear, GLU) -> complex masks (B, S, C, F, N)
    -> masks x mix spectrum -> iSTFT.

``bsroformer`` splits the spectrum into contiguous, non-overlapping bands whose widths follow the mel scale;
``melroformer`` uses overlapping bands (the supports of triangular mel filters) and averages the masks where
bands overlap. Complex masks are unconstrained, so the stems need not sum to the mix (not ``mask_based``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from stemforge.models.base import ModelConfig
from stemforge.models.frontend import Spectrogram, apply_masks, channels_to_complex, complex_to_channels
from stemforge.models.neural import NeuralStemModel, preset_factory
from stemforge.models.registry import register
from stemforge.models.transformer import RMSNorm, TransformerLayer

Band = tuple[int, int]  # [start, end) bin range


def _mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def _mel_points(count: int, bins: int, sample_rate: int) -> list[float]:
    """``count`` points equally spaced in mel from 0 Hz to Nyquist, as fractional bin indices."""
    top = _mel(sample_rate / 2)
    hz = [700.0 * (10 ** (top * i / (count - 1) / 2595.0) - 1.0) for i in range(count)]
    return [h / (sample_rate / 2) * (bins - 1) for h in hz]


def split_bands(bins: int, sample_rate: int, count: int) -> list[Band]:
    """Contiguous, non-overlapping bands covering every bin, widths growing with the mel scale (band-split)."""
    if not 1 <= count <= bins:
        raise ValueError(f"cannot split {bins} bins into {count} bands")
    edges = [0] + [round(p) for p in _mel_points(count + 1, bins, sample_rate)[1:-1]] + [bins]
    for i in range(1, count):  # at least one bin per band, low bands first
        edges[i] = max(edges[i], edges[i - 1] + 1)
    for i in range(count - 1, 0, -1):  # and room for the bands above
        edges[i] = min(edges[i], edges[i + 1] - 1)
    return [(edges[i], edges[i + 1]) for i in range(count)]


def mel_bands(bins: int, sample_rate: int, count: int) -> list[Band]:
    """Overlapping bands: the bins under each of ``count`` triangular mel filters; together they cover every bin."""
    if not 2 <= count <= bins:
        raise ValueError(f"cannot cover {bins} bins with {count} mel bands")
    points = _mel_points(count + 2, bins, sample_rate)
    bands = []
    for k in range(count):
        start = 0 if k == 0 else min(math.floor(points[k]), bins - 1)
        end = bins if k == count - 1 else min(bins, math.ceil(points[k + 2]) + 1)
        bands.append((start, max(end, start + 1)))
    return bands


def _non_overlapping_groups(bands: list[Band]) -> list[list[int]]:
    """Greedy partition of band indices into groups of disjoint bands (one group for a band split)."""
    groups: list[list[int]] = []
    ends: list[int] = []
    for index, (start, end) in enumerate(bands):
        for g, last_end in enumerate(ends):
            if last_end <= start:
                groups[g].append(index)
                ends[g] = end
                break
        else:
            groups.append([index])
            ends.append(end)
    return groups


@dataclasses.dataclass
class RoFormerConfig(ModelConfig):
    n_fft: int = 2048
    hop: int = 512
    bands: int = 48
    band_scheme: str = "split"  # "split" (band-split RoFormer) or "mel" (Mel-band RoFormer)
    dim: int = 128
    depth: int = 6
    heads: int = 8
    mask_mult: int = 4  # hidden width of the mask MLP, in multiples of dim
    mask_glu: bool = True  # GLU output layer as published; off halves the widest layer (CPU presets)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.band_scheme not in ("split", "mel"):
            raise ValueError(f"band_scheme must be 'split' or 'mel', not {self.band_scheme!r}")


@dataclasses.dataclass
class MelRoFormerConfig(RoFormerConfig):
    band_scheme: str = "mel"


class BandSplitRoFormer(NeuralStemModel):
    architecture = "bsroformer"
    config_class = RoFormerConfig
    mask_based = False
    default_segment = 8.0

    def __init__(self, config: RoFormerConfig) -> None:
        super().__init__(config)
        self.config: RoFormerConfig = config
        self.spectrogram = Spectrogram(config.n_fft, config.hop)
        bins = self.spectrogram.bins
        make = split_bands if config.band_scheme == "split" else mel_bands
        self.bands = make(bins, config.sample_rate, config.bands)
        self.groups = _non_overlapping_groups(self.bands)
        counts = torch.zeros(bins)
        for start, end in self.bands:
            counts[start:end] += 1
        self.register_buffer("inverse_counts", (1.0 / counts)[:, None], persistent=False)
        c2, d, s = 2 * config.channels, config.dim, len(config.sources)
        self.band_in = nn.ModuleList(
            nn.Sequential(RMSNorm(c2 * (e - b)), nn.Linear(c2 * (e - b), d)) for b, e in self.bands
        )
        self.time_layers = nn.ModuleList(TransformerLayer(d, config.heads, dropout=config.dropout) for _ in range(config.depth))
        self.freq_layers = nn.ModuleList(TransformerLayer(d, config.heads, dropout=config.dropout) for _ in range(config.depth))
        self.norm_out = RMSNorm(d)
        hidden = d * config.mask_mult
        glu = 2 if config.mask_glu else 1
        self.band_out = nn.ModuleList(
            nn.Sequential(
                nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, glu * s * c2 * (e - b)),
                nn.GLU(dim=-1) if config.mask_glu else nn.Identity(),
            )
            for b, e in self.bands
        )

    def analyse(self, mix: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], Any]:
        spec = self.spectrogram(mix)  # (B, C, F, N)
        return (complex_to_channels(spec),), (spec, mix.shape[-1])

    def network(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 2C, F, N) -> complex masks as channels (B, S, 2C, F, N)."""
        b, c2, f, n = x.shape
        k = len(self.bands)
        frames = x.permute(0, 3, 1, 2)  # (B, N, 2C, F)
        h = torch.stack(
            [proj(frames[..., s:e].reshape(b, n, -1)) for proj, (s, e) in zip(self.band_in, self.bands)], dim=2
        )  # (B, N, K, D)
        d = h.shape[-1]
        for time_layer, freq_layer in zip(self.time_layers, self.freq_layers):
            h = time_layer(h.transpose(1, 2).reshape(b * k, n, d)).reshape(b, k, n, d).transpose(1, 2)
            h = freq_layer(h.reshape(b * n, k, d)).reshape(b, n, k, d)
        h = self.norm_out(h)
        s = len(self.config.sources)
        outs = [
            head(h[:, :, i]).reshape(b, n, s, c2, e - st) for i, (head, (st, e)) in enumerate(zip(self.band_out, self.bands))
        ]
        full = None
        for group in self.groups:  # disjoint bands: concatenate with zero gaps, then add the groups up
            pieces, cursor = [], 0
            for i in group:
                start, end = self.bands[i]
                if start > cursor:
                    pieces.append(h.new_zeros(b, n, s, c2, start - cursor))
                pieces.append(outs[i])
                cursor = end
            if cursor < f:
                pieces.append(h.new_zeros(b, n, s, c2, f - cursor))
            layer = torch.cat(pieces, dim=-1)
            full = layer if full is None else full + layer
        masks = full.permute(0, 2, 3, 4, 1)  # (B, S, 2C, F, N)
        if len(self.groups) > 1:
            masks = masks * self.inverse_counts.to(masks.dtype)
        return masks

    def synthesise(self, masks: torch.Tensor, context: Any) -> torch.Tensor:
        spec, length = context
        return self.spectrogram.inverse(apply_masks(channels_to_complex(masks), spec), length)


class MelBandRoFormer(BandSplitRoFormer):
    architecture = "melroformer"
    config_class = MelRoFormerConfig


PRESETS: dict[str, dict[str, Any]] = {
    # CPU presets: 50 % overlap (hop n_fft / 2, still an exact inverse) halves every per-frame cost.
    "tiny": dict(n_fft=4096, hop=2048, bands=16, dim=32, depth=1, heads=2, mask_mult=1, mask_glu=False),
    "base": dict(n_fft=4096, hop=2048, bands=20, dim=40, depth=2, heads=4, mask_mult=1, mask_glu=False),
    # Close to the published BS-RoFormer / Mel-RoFormer widths (which use dim 384, depth 12).
    "large": dict(n_fft=2048, hop=441, bands=62, dim=256, depth=8, heads=8, mask_mult=4),
}

register("bsroformer", "transformer", "band-split RoFormer: time/frequency transformers with RoPE, complex masks")(
    preset_factory(BandSplitRoFormer, PRESETS)
)
register("melroformer", "transformer", "Mel-band RoFormer: overlapping mel bands, time/frequency RoPE transformers")(
    preset_factory(MelBandRoFormer, PRESETS)
)
