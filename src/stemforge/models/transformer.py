"""Transformer building blocks shared by the RoFormers and the hybrid model.

Pre-norm layers (RMSNorm), multi-head attention through ``scaled_dot_product_attention`` with optional
rotary position embeddings (RoPE), GELU feed-forward. Sequences are (batch, length, dim) throughout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RMSNorm(nn.Module):
    """x: (..., dim) -> x / rms(x) * gain. Written out (not ``nn.RMSNorm``) so every ONNX opset exports it."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.gain = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.gain


def rotary(x: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding of x: (batch, heads, length, head_dim) along ``length`` (head_dim even).

    Pairs of features (i, i + head_dim / 2) are rotated by angle position * base^(-2i / head_dim), so the
    attention score between two positions depends on their distance only (Su et al., RoFormer, 2021).
    """
    half = x.shape[-1] // 2
    inv_freq = base ** (-torch.arange(half, device=x.device, dtype=torch.float32) / half)
    positions = torch.arange(x.shape[-2], device=x.device, dtype=torch.float32)
    angles = positions[:, None] * inv_freq[None, :]  # (length, half)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Attention(nn.Module):
    """Multi-head attention; self-attention when ``context`` is None, else cross-attention to ``context``."""

    def __init__(self, dim: int, heads: int, use_rotary: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads or (dim // heads) % 2:
            raise ValueError(f"dim ({dim}) must split into {heads} heads of even size")
        self.heads = heads
        self.use_rotary = use_rotary
        self.dropout = dropout
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_kv = nn.Linear(dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, N, D), context: (B, M, D) or None -> (B, N, D)."""
        q = self._split(self.to_q(x))
        k, v = (self._split(t) for t in self.to_kv(x if context is None else context).chunk(2, dim=-1))
        if self.use_rotary:
            q, k = rotary(q), rotary(k)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        b, h, n, dh = y.shape
        return self.out(y.transpose(1, 2).reshape(b, n, h * dh))


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__(nn.Linear(dim, dim * mult), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim * mult, dim))


class TransformerLayer(nn.Module):
    """Pre-norm residual layer: attention (self, or cross to ``context``) then feed-forward. x: (B, N, D)."""

    def __init__(self, dim: int, heads: int, use_rotary: bool = True, dropout: float = 0.0, cross: bool = False) -> None:
        super().__init__()
        self.cross = cross
        self.norm_attn = RMSNorm(dim)
        self.norm_context = RMSNorm(dim) if cross else None
        self.attn = Attention(dim, heads, use_rotary=use_rotary and not cross, dropout=dropout)
        self.norm_ff = RMSNorm(dim)
        self.ff = FeedForward(dim, dropout=dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm_context is not None:
            if context is None:
                raise ValueError("a cross-attention layer needs a context sequence")
            context = self.norm_context(context)
        x = x + self.attn(self.norm_attn(x), context)
        return x + self.ff(self.norm_ff(x))
