"""Band-Split RoFormer (Lu et al., ICASSP 2024) and Mel-Band RoFormer (Wang et al., 2023).

The complex STFT (stereo folded into frequency) is split into frequency bands (fixed widths, or
overlapping mel bands), each band projected to ``dim`` features; axial Transformers with rotary positions
alternate over time and over bands; per-band MLPs predict complex masks applied to the mixture STFT.
Module and parameter names follow the community checkpoints (lucidrains' BS-RoFormer layout, as used
by the widely shared ``.ckpt`` + YAML configs), so their state dicts load unchanged.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from stemforge.dsp.spectral import inverse_stft
from stemforge.models.base import ModelConfig, StemModel


class RMSNorm(nn.Module):
    """x / ||x|| * sqrt(dim) * gamma over the last axis."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = dim ** 0.5
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One pass over x for both factors (the scale folds into the (dim,) gain first).
        return F.normalize(x, dim=-1) * (self.gamma * self.scale)


class Rotary(nn.Module):
    """Rotary position embedding on interleaved pairs; ``freqs`` is stored in the checkpoints."""

    def __init__(self, dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        self.freqs = nn.Parameter(freqs, requires_grad=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t: (..., seq, dim_head) -> same, each position rotated by its angle.

        Each interleaved pair (a, b) is the complex number a + ib multiplied by e^(i angle): one complex
        multiplication per pair instead of the reference's cos/sin products, negation, stack and sum (the same
        rotation; for a float32 input it is about a third of BS-RoFormer's CPU time saved).
        """
        pos = torch.arange(t.shape[-2], device=t.device, dtype=self.freqs.dtype)
        angles = pos[:, None] * self.freqs  # (seq, dim_head / 2)
        if t.dtype not in (torch.float32, torch.float64):  # no complex type to match (bf16, fp16): real products
            angles = torch.repeat_interleave(angles, 2, dim=-1)
            pairs = t.unflatten(-1, (-1, 2))
            rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
            return (t * angles.cos() + rotated * angles.sin()).to(t.dtype)
        turn = torch.polar(torch.ones_like(angles), angles).to(torch.complex64 if t.dtype == torch.float32
                                                                  else torch.complex128)
        pairs = t.unflatten(-1, (-1, 2))
        if pairs.stride(-1) != 1 or t.storage_offset() % 2 or any(stride % 2 for stride in pairs.stride()[:-1]):
            pairs = pairs.contiguous()  # view_as_complex needs whole, adjacent pairs at even offsets
        return torch.view_as_real(torch.view_as_complex(pairs) * turn).flatten(-2)


class Attention(nn.Module):
    """Gated multi-head self-attention with rotary positions: (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, heads: int, dim_head: int, rotary_embed: Rotary) -> None:
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.rotary_embed = rotary_embed
        self.norm = RMSNorm(dim)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_gates = nn.Linear(dim, heads)
        self.to_out = nn.Sequential(nn.Linear(inner, dim, bias=False), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        batch, length, _ = x.shape
        q, k, v = self.to_qkv(x).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k = self.rotary_embed(q), self.rotary_embed(k)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out * self.to_gates(x).transpose(1, 2)[..., None].sigmoid()
        return self.to_out(out.transpose(1, 2).reshape(batch, length, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4) -> None:
        super().__init__()
        inner = int(dim * mult)
        self.net = nn.Sequential(RMSNorm(dim), nn.Linear(dim, inner), nn.GELU(), nn.Dropout(0.0),
                                 nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Transformer(nn.Module):
    """Pre-norm residual stack of (attention, feed-forward) pairs; optional output RMSNorm."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, rotary: Rotary, norm_output: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([Attention(dim, heads, dim_head, rotary), FeedForward(dim)]) for _ in range(depth)
        )
        self.norm = RMSNorm(dim) if norm_output else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return self.norm(x)


class BandSplit(nn.Module):
    """(B, T, sum(band widths)) -> (B, T, bands, dim): RMSNorm + Linear per band."""

    def __init__(self, dim: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.widths = widths
        self.to_features = nn.ModuleList(nn.Sequential(RMSNorm(w), nn.Linear(w, dim)) for w in widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([net(part) for part, net in zip(x.split(self.widths, dim=-1), self.to_features)], dim=-2)


def _mlp(dim_in: int, dim_out: int, hidden: int, linear_layers: int) -> nn.Sequential:
    """``linear_layers`` Linear layers with Tanh between (BS- and Mel- releases count "depth" differently)."""
    dims = (dim_in, *((hidden,) * (linear_layers - 1)), dim_out)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class MaskEstimator(nn.Module):
    """(B, T, bands, dim) -> (B, T, sum(band widths)): per-band MLP + GLU."""

    def __init__(self, dim: int, widths: tuple[int, ...], linear_layers: int, expansion: int = 4) -> None:
        super().__init__()
        self.to_freqs = nn.ModuleList(
            nn.Sequential(_mlp(dim, w * 2, dim * expansion, linear_layers), nn.GLU(dim=-1)) for w in widths
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([mlp(band) for band, mlp in zip(x.unbind(dim=-2), self.to_freqs)], dim=-1)


def mel_band_membership(sample_rate: int, n_fft: int, n_bands: int) -> torch.Tensor:
    """(bands, n_fft // 2 + 1) bool: which STFT bins each Slaney-scale mel triangle touches.

    Same construction as librosa's ``filters.mel`` (fmin 0, fmax Nyquist); only the support matters, and
    the first bin of the first band and the last bin of the last band are always included.
    """
    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asanyarray(f, dtype=np.float64)
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        mels = f / f_sp
        min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2.0), n_bands + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)).astype(np.float32)
    member = torch.from_numpy(weights > 0)
    member[0, 0] = True
    member[-1, -1] = True
    return member


DEFAULT_FREQS_PER_BANDS = (2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)


@dataclasses.dataclass
class RoFormerConfig(ModelConfig):
    sources: tuple[str, ...] = ("vocals",)
    #: "bs" (fixed band widths) or "mel" (overlapping mel bands).
    bands: str = "bs"
    dim: int = 384
    depth: int = 12
    time_transformer_depth: int = 1
    freq_transformer_depth: int = 1
    freqs_per_bands: tuple[int, ...] = DEFAULT_FREQS_PER_BANDS
    num_bands: int = 60
    dim_head: int = 64
    heads: int = 8
    n_fft: int = 2048
    hop_length: int = 441
    win_length: int = 2048
    normalized: bool = False
    #: Linear layers per band MLP in the mask estimators (read from the checkpoint's keys).
    mask_linear_layers: int = 2
    mlp_expansion_factor: int = 4
    num_stems: int = 1
    #: When the network predicts fewer stems than ``sources``, the last source is mix minus the others.
    complement: bool = False
    #: Checkpoint layout: index of the time transformer inside each layer (1 when a linear slot precedes it).
    layer_offset: int = 0
    transformer_norm_output: bool = False
    final_norm: bool = True
    segment: float = 8.0


class RoFormer(StemModel):
    """BS-/Mel-RoFormer: mix (B, C, T) -> (B, S, C, T)."""

    architecture = "compat_roformer"
    config_class = RoFormerConfig
    mask_based = False
    trainable = False
    default_segment = 8.0

    def __init__(self, config: RoFormerConfig) -> None:
        super().__init__(config)
        self.default_segment = float(config.segment)  # type: ignore[misc]
        c = config
        stereo = c.channels
        time_rotary, freq_rotary = Rotary(c.dim_head), Rotary(c.dim_head)
        self.layers = nn.ModuleList()
        for _ in range(c.depth):
            pair = [Transformer(c.dim, c.time_transformer_depth, c.heads, c.dim_head, time_rotary, c.transformer_norm_output),
                    Transformer(c.dim, c.freq_transformer_depth, c.heads, c.dim_head, freq_rotary, c.transformer_norm_output)]
            self.layers.append(nn.ModuleList([nn.Identity()] * c.layer_offset + pair))
        self.final_norm = RMSNorm(c.dim) if c.final_norm else nn.Identity()
        bins = c.n_fft // 2 + 1
        if c.bands == "mel":
            member = mel_band_membership(c.sample_rate, c.n_fft, c.num_bands)
            indices = torch.arange(bins).expand(c.num_bands, -1)[member]
            indices = (indices[:, None] * stereo + torch.arange(stereo)).reshape(-1)
            self.register_buffer("freq_indices", indices, persistent=False)
            self.register_buffer("bands_per_freq", member.sum(dim=0), persistent=False)
            widths = tuple(2 * int(n) * stereo for n in member.sum(dim=1))
        else:
            if sum(c.freqs_per_bands) != bins:
                raise ValueError(f"freqs_per_bands sum to {sum(c.freqs_per_bands)}, STFT has {bins} bins")
            widths = tuple(2 * f * stereo for f in c.freqs_per_bands)
        self.band_split = BandSplit(c.dim, widths)
        self.mask_estimators = nn.ModuleList(
            MaskEstimator(c.dim, widths, c.mask_linear_layers, c.mlp_expansion_factor) for _ in range(c.num_stems)
        )

    def estimate_masks(self, x: torch.Tensor) -> torch.Tensor:
        """The network between the STFT and the mask application: band split, the time and frequency
        Transformers, the mask estimators (``forward`` wraps it; ``benchmarks/onnx_spike.py`` exports it alone).

        Args:
            x: the spectrogram's real and imaginary parts, (batch, frames, sum of band input widths).

        Returns:
            Real masks, (batch, sources, frames, sum of band mask widths).
        """
        c = self.config
        batch, frames = x.shape[:2]
        x = self.band_split(x)  # (B, N, bands, D)
        for layer in self.layers:
            time_tf, freq_tf = layer[c.layer_offset], layer[c.layer_offset + 1]
            bands = x.shape[2]
            x = x.transpose(1, 2).reshape(batch * bands, frames, -1)
            x = time_tf(x).view(batch, bands, frames, -1).transpose(1, 2).reshape(batch * frames, bands, -1)
            x = freq_tf(x).view(batch, frames, bands, -1)
        x = self.final_norm(x)
        return torch.stack([est(x) for est in self.mask_estimators], dim=1)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix: (batch, channels, time) -> (batch, sources, channels, time)."""
        c = self.config
        batch, channels, length = mix.shape
        audio = mix.float()
        window = torch.hann_window(c.win_length, device=mix.device)
        stft_kw = dict(n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length, normalized=c.normalized, window=window)
        # Reflect padding needs more than n_fft / 2 samples; zero-extend tiny inputs.
        padded = max(length, c.n_fft // 2 + 1)
        audio = F.pad(audio, (0, padded - length))
        spec = torch.stft(audio.reshape(-1, padded), return_complex=True, **stft_kw)  # (B*C, F, N)
        bins, frames = spec.shape[-2:]
        spec = spec.view(batch, channels, bins, frames).permute(0, 2, 1, 3).reshape(batch, bins * channels, frames)
        x = torch.view_as_real(spec)  # (B, F*C, N, 2) frequency-major, channel-minor
        if c.bands == "mel":
            x = x[:, self.freq_indices]
        masks = self.estimate_masks(x.permute(0, 2, 1, 3).reshape(batch, frames, -1))  # (B, S, N, sum widths)
        masks = torch.view_as_complex(masks.float().view(batch, c.num_stems, frames, -1, 2).contiguous()).transpose(2, 3)
        if c.bands == "mel":
            summed = torch.zeros(batch, c.num_stems, bins * channels, frames, dtype=masks.dtype, device=masks.device)
            index = self.freq_indices.view(1, 1, -1, 1).expand(batch, c.num_stems, -1, frames)
            summed.scatter_add_(2, index, masks)
            denom = self.bands_per_freq.repeat_interleave(channels).clamp(min=1).to(summed.real.dtype)
            masks = summed / denom[:, None]
        stems = spec[:, None] * masks  # (B, S, F*C, N)
        stems = stems.view(batch, c.num_stems, bins, channels, frames).transpose(2, 3).reshape(-1, bins, frames)
        waves = inverse_stft(stems, c.n_fft, c.hop_length, window, padded, c.normalized) if c.win_length == c.n_fft \
            else torch.istft(stems, length=padded, **stft_kw)
        waves = waves.view(batch, c.num_stems, channels, padded)[..., :length]
        waves = waves.to(mix.dtype)
        if c.complement:
            waves = torch.cat([waves, (mix - waves.sum(dim=1))[:, None]], dim=1)
        return waves
