"""Hybrid waveform/spectrogram transformer in the spirit of HTDemucs (Rouard et al., 2023).

Two U-Nets see the same mix, one in each domain, and meet in a cross-domain transformer:

    time branch: mix (B, C, T') standardised -> ``depth`` x [Conv1d k8 s4, GELU, 1x1 conv, GLU] -> (B, T'', D)
    freq branch: STFT complex as channels (B, 2C, F, N) (Nyquist bin dropped, F = n_fft / 2) standardised
                 -> ``depth`` x [Conv2d k(8,1) s(4,1) over frequency, GELU, 1x1 conv, GLU] -> (B, N, D)
    bottleneck:  ``layers`` alternating [self-attention in each branch (RoPE), cross-attention between them]
    decoders:    mirror the encoders with additive skips; time -> stems' waveforms, freq -> stems' spectra
    output:      iSTFT(freq stems) + time stems, summed in the waveform domain.

T' is T padded to a multiple of 4**depth. Outputs are free (no masks), so not ``mask_based``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stemforge.models.base import ModelConfig
from stemforge.models.frontend import Spectrogram, channels_to_complex, complex_to_channels, pad_to_multiple, standardize
from stemforge.models.neural import NeuralStemModel, preset_factory
from stemforge.models.registry import register
from stemforge.models.transformer import TransformerLayer

STRIDE = 4
KERNEL = 8


@dataclasses.dataclass
class HybridConfig(ModelConfig):
    n_fft: int = 4096
    hop: int = 1024
    depth: int = 4
    base_channels: int = 48  # first encoder width; doubles at every level
    dim: int = 384  # transformer width
    layers: int = 4  # transformer layers; odd-numbered ones are cross-attention
    heads: int = 8
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if (self.n_fft // 2) % (STRIDE**self.depth):
            raise ValueError(f"n_fft / 2 ({self.n_fft // 2}) must divide by {STRIDE}**depth")


class _Encoder(nn.Module):
    """Strided convolution (k8 s4) + GELU + 1x1 convolution + GLU, in 1-D (time) or 2-D (over frequency)."""

    def __init__(self, cin: int, cout: int, two_d: bool) -> None:
        super().__init__()
        if two_d:
            self.conv = nn.Conv2d(cin, cout, (KERNEL, 1), (STRIDE, 1), (KERNEL // 2 - STRIDE // 2, 0))
            self.rewrite = nn.Conv2d(cout, 2 * cout, 1)
        else:
            self.conv = nn.Conv1d(cin, cout, KERNEL, STRIDE, KERNEL // 2 - STRIDE // 2)
            self.rewrite = nn.Conv1d(cout, 2 * cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(self.rewrite(F.gelu(self.conv(x))), dim=1)


class _Decoder(nn.Module):
    """Mirror of ``_Encoder``: 3-tap convolution + GLU, then transposed strided convolution (+ GELU if inner)."""

    def __init__(self, cin: int, cout: int, two_d: bool, last: bool) -> None:
        super().__init__()
        self.last = last
        if two_d:
            self.rewrite = nn.Conv2d(cin, 2 * cin, (3, 1), padding=(1, 0))
            self.conv = nn.ConvTranspose2d(cin, cout, (KERNEL, 1), (STRIDE, 1), (KERNEL // 2 - STRIDE // 2, 0))
        else:
            self.rewrite = nn.Conv1d(cin, 2 * cin, 3, padding=1)
            self.conv = nn.ConvTranspose1d(cin, cout, KERNEL, STRIDE, KERNEL // 2 - STRIDE // 2)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.glu(self.rewrite(x + skip), dim=1))
        return y if self.last else F.gelu(y)


class HybridTransformer(NeuralStemModel):
    architecture = "hybrid"
    config_class = HybridConfig
    mask_based = False
    default_segment = 7.8

    def __init__(self, config: HybridConfig) -> None:
        super().__init__(config)
        self.config: HybridConfig = config
        self.spectrogram = Spectrogram(config.n_fft, config.hop)
        c, s, depth = config.channels, len(config.sources), config.depth
        widths = [config.base_channels * 2**i for i in range(depth)]
        self.time_encoders = nn.ModuleList(_Encoder(w_in, w, False) for w_in, w in zip([c] + widths, widths))
        self.freq_encoders = nn.ModuleList(_Encoder(w_in, w, True) for w_in, w in zip([2 * c] + widths, widths))
        outs_time = [s * c] + widths[:-1]
        outs_freq = [s * 2 * c] + widths[:-1]
        self.time_decoders = nn.ModuleList(
            _Decoder(widths[i], outs_time[i], False, i == 0) for i in reversed(range(depth))
        )
        self.freq_decoders = nn.ModuleList(
            _Decoder(widths[i], outs_freq[i], True, i == 0) for i in reversed(range(depth))
        )
        deepest = widths[-1]
        freq_flat = deepest * (config.n_fft // 2) // STRIDE**depth
        self.time_in, self.time_out = nn.Linear(deepest, config.dim), nn.Linear(config.dim, deepest)
        self.freq_in, self.freq_out = nn.Linear(freq_flat, config.dim), nn.Linear(config.dim, freq_flat)
        self.time_layers = nn.ModuleList(
            TransformerLayer(config.dim, config.heads, dropout=config.dropout, cross=i % 2 == 1) for i in range(config.layers)
        )
        self.freq_layers = nn.ModuleList(
            TransformerLayer(config.dim, config.heads, dropout=config.dropout, cross=i % 2 == 1) for i in range(config.layers)
        )

    def analyse(self, mix: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], Any]:
        spec = self.spectrogram(mix)[..., :-1, :]  # drop Nyquist: F = n_fft / 2 divides by the strides
        wave = pad_to_multiple(mix.float(), STRIDE**self.config.depth)
        return (wave, complex_to_channels(spec)), mix.shape[-1]

    def network(self, wave: torch.Tensor, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """wave: (B, C, T'), spec: (B, 2C, F, N) -> stems' waves (B, S, C, T'), stems' spectra (B, S, 2C, F, N)."""
        s = len(self.config.sources)
        xt, mean_t, std_t = standardize(wave, (1, 2))
        xf, mean_f, std_f = standardize(spec, (1, 2, 3))
        skips_t, skips_f = [], []
        for enc_t, enc_f in zip(self.time_encoders, self.freq_encoders):
            xt, xf = enc_t(xt), enc_f(xf)
            skips_t.append(xt)
            skips_f.append(xf)
        b, ct, tt = xt.shape
        _, cf, ff, n = xf.shape
        ht = self.time_in(xt.transpose(1, 2))  # (B, T'', D)
        hf = self.freq_in(xf.permute(0, 3, 1, 2).reshape(b, n, cf * ff))  # (B, N, D)
        for layer_t, layer_f in zip(self.time_layers, self.freq_layers):
            if layer_t.cross:
                ht, hf = layer_t(ht, hf), layer_f(hf, ht)
            else:
                ht, hf = layer_t(ht), layer_f(hf)
        xt = self.time_out(ht).transpose(1, 2)
        xf = self.freq_out(hf).reshape(b, n, cf, ff).permute(0, 2, 3, 1)
        for dec_t, dec_f in zip(self.time_decoders, self.freq_decoders):
            xt, xf = dec_t(xt, skips_t.pop()), dec_f(xf, skips_f.pop())
        wave_out = xt.reshape(b, s, -1, xt.shape[-1]) * std_t.unsqueeze(1) + mean_t.unsqueeze(1)
        spec_out = xf.reshape(b, s, -1, *xf.shape[-2:]) * std_f.unsqueeze(1) + mean_f.unsqueeze(1)
        return wave_out, spec_out

    def synthesise(self, outputs: tuple[torch.Tensor, torch.Tensor], context: Any) -> torch.Tensor:
        length = context
        wave_out, spec_out = outputs
        spec = F.pad(channels_to_complex(spec_out), (0, 0, 0, 1))  # Nyquist bin back, as zero
        return self.spectrogram.inverse(spec, length) + wave_out[..., :length].float()


PRESETS: dict[str, dict[str, Any]] = {
    # Time tokens at T / 4**depth; depth 4 keeps attention over ~170 tokens per second (HTDemucs' rate).
    # CPU presets: 50 % STFT overlap (exact inverse still) halves the spectrogram branch's work.
    "tiny": dict(n_fft=2048, hop=1024, depth=4, base_channels=8, dim=64, layers=2, heads=4),
    "base": dict(n_fft=4096, hop=2048, depth=4, base_channels=12, dim=96, layers=2, heads=4),
    # HTDemucs' widths (48 channels, dim 384, 4 levels here instead of 4 + shared 5th).
    "large": dict(n_fft=4096, hop=1024, depth=4, base_channels=48, dim=384, layers=4, heads=8),
}

register("hybrid", "transformer", "HTDemucs-like hybrid: time and spectrogram U-Nets with a cross-domain transformer")(
    preset_factory(HybridTransformer, PRESETS)
)
