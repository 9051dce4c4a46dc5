"""Hybrid Transformer Demucs (Rouard, Massa, Défossez, ICASSP 2023): HDemucs with a cross-domain
Transformer at the bottleneck, alternating self-attention layers and cross-attention between the
spectral and temporal branches. Parameter names follow demucs' ``.th`` packages (htdemucs, _ft, _6s).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn
from torch.nn import functional as F

from stemforge.models.compat.hdemucs import HDemucsConfig, HybridUNet, LayerScale


def sin_embedding(length: int, dim: int, device: torch.device, max_period: float = 10000.0) -> torch.Tensor:
    """1-D sinusoidal positions: (length, 1, dim), cosines then sines."""
    pos = torch.arange(length, device=device).view(-1, 1, 1)
    half = dim // 2
    index = torch.arange(half, device=device).view(1, 1, -1)
    phase = pos / (max_period ** (index / (half - 1)))
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


def sin_embedding_2d(dim: int, height: int, width: int, device: torch.device, max_period: float = 10000.0) -> torch.Tensor:
    """2-D sinusoidal positions (1, dim, height, width): first half encodes width (time), second height (freq)."""
    half = dim // 2
    div = torch.exp(torch.arange(0.0, half, 2) * -(math.log(max_period) / half))
    pos_w = torch.arange(0.0, width)[:, None] * div  # (W, half/2)
    pos_h = torch.arange(0.0, height)[:, None] * div  # (H, half/2)
    pe = torch.zeros(dim, height, width)
    pe[0:half:2] = torch.sin(pos_w).t()[:, None, :].expand(-1, height, -1)
    pe[1:half:2] = torch.cos(pos_w).t()[:, None, :].expand(-1, height, -1)
    pe[half::2] = torch.sin(pos_h).t()[:, :, None].expand(-1, -1, width)
    pe[half + 1::2] = torch.cos(pos_h).t()[:, :, None].expand(-1, -1, width)
    return pe[None].to(device)


class SequenceGroupNorm(nn.GroupNorm):
    """GroupNorm over (B, T, C) sequences: normalises each item over time and channels together."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head attention with a packed input projection (``in_proj_weight``), batch first.

    Uses ``scaled_dot_product_attention`` so memory stays linear in sequence length where the backend allows.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """query: (B, Tq, D), key (= value): (B, Tk, D) -> (B, Tq, D)."""
        w_q, w_kv = self.in_proj_weight.split([query.shape[-1], 2 * query.shape[-1]])
        b_q, b_kv = self.in_proj_bias.split([query.shape[-1], 2 * query.shape[-1]])
        q = F.linear(query, w_q, b_q)
        k, v = F.linear(key, w_kv, b_kv).chunk(2, dim=-1)
        batch, tq, dim = q.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, t.shape[1], self.heads, dim // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        return self.out_proj(out.transpose(1, 2).reshape(batch, tq, dim))


class TransformerLayer(nn.Module):
    """Pre-norm Transformer layer; self-attention (``cross=False``) or cross-attention to another sequence."""

    def __init__(self, dim: int, heads: int, hidden: int, cross: bool, norm_first: bool, norm_out: bool,
                 layer_scale: bool, gelu: bool, group_norm: int) -> None:
        super().__init__()
        self.cross, self.norm_first = cross, norm_first
        attn = Attention(dim, heads)
        if cross:
            self.cross_attn = attn
        else:
            self.self_attn = attn
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)

        def norm() -> nn.Module:
            return SequenceGroupNorm(group_norm, dim) if group_norm else nn.LayerNorm(dim)

        self.norm1, self.norm2 = norm(), norm()
        if cross:
            self.norm3 = norm()
        self.norm_out = SequenceGroupNorm(int(norm_out), dim) if norm_first and norm_out else None
        self.gamma_1 = LayerScale(dim, 1e-4, True) if layer_scale else nn.Identity()
        self.gamma_2 = LayerScale(dim, 1e-4, True) if layer_scale else nn.Identity()
        self.activation = F.gelu if gelu else F.relu

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.activation(self.linear1(x)))

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, D); other: (B, S, D) for cross-attention -> (B, T, D)."""
        attn = self.cross_attn if self.cross else self.self_attn
        if self.norm_first:
            if self.cross:
                x = x + self.gamma_1(attn(self.norm1(x), self.norm2(other)))
                x = x + self.gamma_2(self._feed_forward(self.norm3(x)))
            else:
                h = self.norm1(x)
                x = x + self.gamma_1(attn(h, h))
                x = x + self.gamma_2(self._feed_forward(self.norm2(x)))
            if self.norm_out is not None:
                x = self.norm_out(x)
        else:
            source = other if self.cross else x
            x = self.norm1(x + self.gamma_1(attn(x, source)))
            x = self.norm2(x + self.gamma_2(self._feed_forward(x)))
        return x


class CrossTransformer(nn.Module):
    """Alternating self / cross attention on the flattened spectral map and the waveform features."""

    def __init__(self, dim: int, cfg: "HTDemucsConfig") -> None:
        super().__init__()
        self.max_period = cfg.t_max_period
        self.weight_pos_embed = cfg.t_weight_pos_embed
        self.classic_parity = 1 if cfg.t_cross_first else 0
        if cfg.t_norm_in:
            self.norm_in, self.norm_in_t = nn.LayerNorm(dim), nn.LayerNorm(dim)
        elif cfg.t_norm_in_group:
            self.norm_in = SequenceGroupNorm(int(cfg.t_norm_in_group), dim)
            self.norm_in_t = SequenceGroupNorm(int(cfg.t_norm_in_group), dim)
        else:
            self.norm_in, self.norm_in_t = nn.Identity(), nn.Identity()
        kw = dict(dim=dim, heads=cfg.t_heads, hidden=int(dim * cfg.t_hidden_scale), norm_first=cfg.t_norm_first,
                  norm_out=cfg.t_norm_out, layer_scale=cfg.t_layer_scale, gelu=cfg.t_gelu, group_norm=int(cfg.t_group_norm))
        self.layers, self.layers_t = nn.ModuleList(), nn.ModuleList()
        for idx in range(cfg.t_layers):
            cross = idx % 2 != self.classic_parity
            self.layers.append(TransformerLayer(cross=cross, **kw))
            self.layers_t.append(TransformerLayer(cross=cross, **kw))

    def forward(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C, Fr, T1) spectral; xt: (B, C, T2) temporal -> same shapes."""
        batch, channels, bins, frames = x.shape
        pos_2d = sin_embedding_2d(channels, bins, frames, x.device, self.max_period)
        pos_2d = pos_2d.permute(0, 3, 2, 1).reshape(1, frames * bins, channels).to(x.dtype)
        x = x.permute(0, 3, 2, 1).reshape(batch, frames * bins, channels)  # time-major tokens
        x = self.norm_in(x) + self.weight_pos_embed * pos_2d
        xt = xt.transpose(1, 2)
        pos = sin_embedding(xt.shape[1], channels, xt.device, self.max_period).transpose(0, 1).to(xt.dtype)
        xt = self.norm_in_t(xt) + self.weight_pos_embed * pos
        for idx, (layer, layer_t) in enumerate(zip(self.layers, self.layers_t)):
            if idx % 2 == self.classic_parity:
                x, xt = layer(x), layer_t(xt)
            else:
                x, xt = layer(x, xt), layer_t(xt, x)
        x = x.reshape(batch, frames, bins, channels).permute(0, 3, 2, 1)
        return x, xt.transpose(1, 2)


@dataclasses.dataclass
class HTDemucsConfig(HDemucsConfig):
    depth: int = 4
    multi_freqs_depth: int = 3
    dconv_comp: float = 8
    dconv_init: float = 1e-3
    bottom_channels: int = 0
    t_layers: int = 5
    t_hidden_scale: float = 4.0
    t_heads: int = 8
    t_norm_in: bool = True
    t_norm_in_group: bool = False
    t_group_norm: bool = False
    t_norm_first: bool = True
    t_norm_out: bool = True
    t_max_period: float = 10000.0
    t_layer_scale: bool = True
    t_gelu: bool = True
    t_weight_pos_embed: float = 1.0
    t_cross_first: bool = False
    segment: float = 10.0
    use_train_segment: bool = True


class HTDemucs(HybridUNet):
    """HTDemucs: (B, C, T) -> (B, S, C, T).

    Like the reference, inputs shorter than the training segment are zero-padded to it (the Transformer
    saw that many tokens in training); longer inputs are processed at their own length.
    """

    architecture = "htdemucs"
    config_class = HTDemucsConfig
    default_segment = 7.8

    def __init__(self, config: HTDemucsConfig) -> None:
        super().__init__(config)
        self.default_segment = float(config.segment)  # type: ignore[misc]
        self._build_unet(config, with_lstm_attn=False)
        dim = int(config.channels_base * config.growth ** (config.depth - 1))
        if config.bottom_channels:
            self.channel_upsampler = nn.Conv1d(dim, config.bottom_channels, 1)
            self.channel_downsampler = nn.Conv1d(config.bottom_channels, dim, 1)
            self.channel_upsampler_t = nn.Conv1d(dim, config.bottom_channels, 1)
            self.channel_downsampler_t = nn.Conv1d(config.bottom_channels, dim, 1)
            dim = config.bottom_channels
        self.crosstransformer = CrossTransformer(dim, config) if config.t_layers > 0 else None
        self._channels_last()

    def _bottleneck(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.crosstransformer is None:
            return x, xt
        bottom = self.config.bottom_channels
        if bottom:
            b, c, f, t = x.shape
            x = self.channel_upsampler(x.reshape(b, c, f * t)).view(b, -1, f, t)
            xt = self.channel_upsampler_t(xt)
        x, xt = self.crosstransformer(x, xt)
        if bottom:
            b, c, f, t = x.shape
            x = self.channel_downsampler(x.reshape(b, c, f * t)).view(b, -1, f, t)
            xt = self.channel_downsampler_t(xt)
        return x, xt

    def training_length(self) -> int:
        return int(self.config.segment * self.config.sample_rate)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix: (batch, channels, time) -> (batch, sources, channels, time)."""
        length = mix.shape[-1]
        if self.config.use_train_segment and length < self.training_length():
            mix = F.pad(mix, (0, self.training_length() - length))
        return self._separate(mix)[..., :length]
