"""Hybrid Demucs (Défossez, "Hybrid Spectrogram and Waveform Source Separation", 2021) and its layers.

Two U-Nets share a bottleneck: one on the complex-as-channels spectrogram (frequency axis convolved),
one on the waveform; decoders output per-source spectrograms (iSTFT'd) and waveforms that are summed.
Module and parameter names follow demucs' released ``.th`` packages so their state dicts load unchanged.
Shapes: B batch, C channels, Fr frequency bins, T frames/samples.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
from torch import nn
from torch.nn import functional as F

from stemforge.dsp.spectral import inverse_stft
from stemforge.models.base import ModelConfig, StemModel


# ------------------------------------------------------------------ small building blocks


class LayerScale(nn.Module):
    """Per-channel learnt scale (CaiT): x (B, C, T) or (..., C) when ``channel_last``."""

    def __init__(self, channels: int, init: float = 0.0, channel_last: bool = False) -> None:
        super().__init__()
        self.channel_last = channel_last
        self.scale = nn.Parameter(torch.full((channels,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x if self.channel_last else self.scale[:, None] * x


class FrequencyEmbedding(nn.Module):
    """Learnt embedding of the frequency index, stored divided by ``scale`` (a learning-rate boost)."""

    def __init__(self, num_embeddings: int, dim: int, scale: float = 10.0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, dim)
        self.scale = scale

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.embedding(index) * self.scale


def _frame(x: torch.Tensor, width: int, stride: int) -> torch.Tensor:
    """x: (..., T) -> (..., frames, width), zero-padded so frames = ceil(T / stride)."""
    frames = math.ceil(x.shape[-1] / stride)
    x = F.pad(x, (0, (frames - 1) * stride + width - x.shape[-1]))
    return x.unfold(-1, width, stride)


class BLSTM(nn.Module):
    """Bidirectional LSTM over time on overlapping windows of ``max_steps`` (bounded cost), with skip."""

    def __init__(self, dim: int, layers: int = 2, max_steps: int = 200) -> None:
        super().__init__()
        self.max_steps = max_steps
        self.lstm = nn.LSTM(bidirectional=True, num_layers=layers, hidden_size=dim, input_size=dim)
        self.linear = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, T) -> (B, C, T)."""
        batch, channels, length = x.shape
        width, stride = self.max_steps, self.max_steps // 2
        framed = length > width
        y = x
        if framed:
            frames = _frame(x, width, stride)  # (B, C, N, W)
            count = frames.shape[2]
            y = frames.permute(0, 2, 1, 3).reshape(-1, channels, width)
        y = self.linear(self.lstm(y.permute(2, 0, 1))[0]).permute(1, 2, 0)
        if framed:
            y = y.reshape(batch, count, channels, width)
            keep = stride // 2
            parts = [y[:, 0, :, :-keep]]
            parts += [y[:, k, :, keep:-keep] for k in range(1, count - 1)]
            parts.append(y[:, count - 1, :, keep:])
            y = torch.cat(parts, dim=-1)[..., :length]
        return x + y


class LocalState(nn.Module):
    """Local self-attention with learnt exponential decay of attention over time distance."""

    def __init__(self, channels: int, heads: int = 4, ndecay: int = 4) -> None:
        super().__init__()
        self.heads, self.ndecay = heads, ndecay
        self.content = nn.Conv1d(channels, channels, 1)
        self.query = nn.Conv1d(channels, channels, 1)
        self.key = nn.Conv1d(channels, channels, 1)
        self.query_decay = nn.Conv1d(channels, heads * ndecay, 1)
        self.proj = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, T) -> (B, C, T)."""
        batch, channels, length = x.shape
        heads = self.heads
        index = torch.arange(length, device=x.device, dtype=x.dtype)
        distance = (index[:, None] - index[None, :]).abs()
        queries = self.query(x).view(batch, heads, -1, length)
        keys = self.key(x).view(batch, heads, -1, length)
        dots = torch.einsum("bhct,bhcs->bhts", keys, queries) / keys.shape[2] ** 0.5
        decays = torch.arange(1, self.ndecay + 1, device=x.device, dtype=x.dtype)
        decay_q = torch.sigmoid(self.query_decay(x).view(batch, heads, -1, length)) / 2
        decay_kernel = -decays.view(-1, 1, 1) * distance / self.ndecay ** 0.5
        dots = dots + torch.einsum("fts,bhfs->bhts", decay_kernel, decay_q)
        dots = dots.masked_fill(torch.eye(length, device=x.device, dtype=torch.bool), -100)
        weights = torch.softmax(dots, dim=2)
        content = self.content(x).view(batch, heads, -1, length)
        result = torch.einsum("bhts,bhct->bhcs", weights, content).reshape(batch, -1, length)
        return x + self.proj(result)


class DConv(nn.Module):
    """Residual branch of dilated 1-D convolutions (optionally with BLSTM and local attention)."""

    def __init__(self, channels: int, compress: float = 4, depth: int = 2, init: float = 1e-4,
                 lstm: bool = False, attn: bool = False, kernel: int = 3) -> None:
        super().__init__()
        hidden = int(channels / compress)
        dilate = depth > 0
        self.layers = nn.ModuleList()
        for d in range(abs(depth)):
            dilation = 2 ** d if dilate else 1
            mods: list[nn.Module] = [
                nn.Conv1d(channels, hidden, kernel, dilation=dilation, padding=dilation * (kernel // 2)),
                nn.GroupNorm(1, hidden), nn.GELU(),
            ]
            if lstm:
                mods.append(BLSTM(hidden))
            if attn:
                mods.append(LocalState(hidden))
            mods += [nn.Conv1d(hidden, 2 * channels, 1), nn.GroupNorm(1, 2 * channels), nn.GLU(1),
                     LayerScale(channels, init)]
            self.layers.append(nn.Sequential(*mods))

    def forward(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, T) -> (B, C, T); written into ``out`` (same shape, any strides) when given.

        Each layer's closing GroupNorm -> GLU -> LayerScale takes two passes instead of three: the scale multiplies
        the GLU's gated half, so it is folded into that half's GroupNorm affine (``_norm_glu_scale``). The last
        residual sum is written straight into ``out`` (a chunk of ``_dconv_over_time``'s result) instead of being
        copied there.
        """
        last = len(self.layers) - 1
        for index, layer in enumerate(self.layers):
            *body, norm, _, scale = layer  # every layer __init__ builds ends GroupNorm(affine), GLU(1), LayerScale
            y = x
            for module in body:
                y = conv(module, y) if isinstance(module, nn.Conv1d) else module(y)
            y = _norm_glu_scale(norm, scale.scale, y)
            x = torch.add(x, y, out=out) if out is not None and index == last else x + y
        return x


def _norm_glu_scale(norm: nn.GroupNorm, scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``scale[:, None] * glu(norm(x), dim=1)`` in two passes over ``x`` instead of three.

    GLU(a, b) = a * sigmoid(b), so scaling its output scales ``a``: the scale goes into the affine weight and bias of
    the normalised channels that become ``a`` (the first half). Exact up to float32 rounding.

    Args:
        norm: the GroupNorm (affine) over the 2C channels of ``x``.
        scale: (C,) LayerScale.
        x: (B, 2C, T).

    Returns:
        (B, C, T).
    """
    half = scale.shape[0]
    weight = torch.cat([norm.weight[:half] * scale, norm.weight[half:]])
    bias = torch.cat([norm.bias[:half] * scale, norm.bias[half:]])
    return F.glu(F.group_norm(x, norm.num_groups, weight, bias, norm.eps), dim=1)


def _pointwise(module: nn.Module) -> bool:
    """Whether ``module`` is a 1x1 (or size-1) convolution: one matrix product per position."""
    return (isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups == 1
            and all(k == 1 for k in module.kernel_size) and all(s == 1 for s in module.stride)
            and all(p == 0 for p in module.padding))


def conv(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)``, with 1x1 convolutions run as one matrix product on the input's own memory layout.

    PyTorch sends a 1x1 convolution with one thread to its reference path, which first broadcasts the bias into
    the output (slowly, for channels-last outputs) and runs a plain GEMM; with several threads oneDNN reorders
    inputs that are not in its layout. A matrix product over the channel axis reads either layout directly: a
    channels-last (B, C, H, W) input is a (B, H, W, C) matrix (the output stays channels-last), and a
    (B, C, T) input of any strides is a batch of (C, T) matrices. Same sums, in another order (float32 rounding).

    Args:
        module: any module; only 1x1 ``nn.Conv1d`` / ``nn.Conv2d`` take the matrix-product path.
        x: (B, C, T) or (B, C, H, W).

    Returns:
        (B, C_out, T) or (B, C_out, H, W), as ``module(x)``.
    """
    if not _pointwise(module) or x.dim() != module.weight.dim() or torch.is_autocast_enabled(x.device.type):
        return module(x)
    weight = module.weight.view(module.out_channels, module.in_channels)
    if x.dim() == 4:
        return F.linear(x.permute(0, 2, 3, 1), weight, module.bias).permute(0, 3, 1, 2)
    if module.bias is None:
        return torch.matmul(weight, x)
    return torch.baddbmm(module.bias.view(1, -1, 1), weight.expand(x.shape[0], -1, -1), x)


def _norm(enabled: bool, groups: int, channels: int) -> nn.Module:
    return nn.GroupNorm(groups, channels) if enabled else nn.Identity()


class EncoderLayer(nn.Module):
    """Strided conv (over frequency when ``freq``, else time) + norm + GELU + DConv + 1x1 GLU rewrite."""

    def __init__(self, chin: int, chout: int, kernel_size: int = 8, stride: int = 4, norm_groups: int = 1,
                 empty: bool = False, freq: bool = True, dconv: bool = True, norm: bool = True,
                 context: int = 0, dconv_kw: dict | None = None, pad: bool = True, rewrite: bool = True) -> None:
        super().__init__()
        self.freq, self.stride, self.empty = freq, stride, empty
        self.kernel_size = kernel_size
        padding = kernel_size // 4 if pad else 0
        if freq:
            self.conv: nn.Module = nn.Conv2d(chin, chout, (kernel_size, 1), (stride, 1), (padding, 0))
        else:
            self.conv = nn.Conv1d(chin, chout, kernel_size, stride, padding)
        if empty:
            return
        conv_cls = nn.Conv2d if freq else nn.Conv1d
        self.norm1 = _norm(norm, norm_groups, chout)
        self.rewrite = conv_cls(chout, 2 * chout, 1 + 2 * context, 1, context) if rewrite else None
        if rewrite:
            self.norm2 = _norm(norm, norm_groups, 2 * chout)
        self.dconv = DConv(chout, **(dconv_kw or {})) if dconv else None

    def forward(self, x: torch.Tensor, inject: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, Fr, T) when ``freq`` else (B, C, T) (a 4-D input is flattened to channels)."""
        if not self.freq:
            if x.dim() == 4:
                x = x.reshape(x.shape[0], -1, x.shape[-1])
            if x.shape[-1] % self.stride:
                x = F.pad(x, (0, self.stride - x.shape[-1] % self.stride))
        y = self.conv(x)
        if self.empty:
            return y
        if inject is not None:
            y = y + (inject[:, :, None] if inject.dim() == 3 and y.dim() == 4 else inject)
        y = F.gelu(self.norm1(y))
        if self.dconv is not None:
            y = _dconv_over_time(self.dconv, y, self.freq)
        if self.rewrite is not None:
            y = F.glu(self.norm2(conv(self.rewrite, y)), dim=1)
        return y


DCONV_CHUNK_ELEMENTS = 1 << 21  # folded rows per DConv call are capped to about this many input values


def _dconv_over_time(dconv: DConv, y: torch.Tensor, freq: bool) -> torch.Tensor:
    """Run a DConv along time; frequency rows of a 4-D input are folded into the batch.

    Every folded row is independent (convolutions along time, GroupNorm per row), so the rows go through in
    chunks: same result, but the DConv's wide hidden activations exist for one chunk at a time, which is what
    bounds the peak memory of a spectrogram branch's first layers.
    """
    if not freq:
        return dconv(y)
    batch, channels, bins, frames = y.shape
    rows = y.permute(0, 2, 1, 3).reshape(-1, channels, frames)
    step = max(1, DCONV_CHUNK_ELEMENTS // (channels * frames))
    if step >= rows.shape[0]:
        out = dconv(rows)
    else:
        out = torch.empty_like(rows)
        for start in range(0, rows.shape[0], step):
            dconv(rows[start:start + step], out=out[start:start + step])
    return out.view(batch, bins, channels, frames).permute(0, 2, 1, 3)


class DecoderLayer(nn.Module):
    """Mirror of ``EncoderLayer``: skip add + GLU rewrite + DConv + transposed conv (+ GELU unless last)."""

    def __init__(self, chin: int, chout: int, last: bool = False, kernel_size: int = 8, stride: int = 4,
                 norm_groups: int = 1, empty: bool = False, freq: bool = True, dconv: bool = True,
                 norm: bool = True, context: int = 1, dconv_kw: dict | None = None, pad: bool = True,
                 context_freq: bool = True, rewrite: bool = True) -> None:
        super().__init__()
        self.pad = kernel_size // 4 if pad else 0
        self.last, self.freq, self.chin, self.empty = last, freq, chin, empty
        if freq:
            self.conv_tr: nn.Module = nn.ConvTranspose2d(chin, chout, (kernel_size, 1), (stride, 1))
        else:
            self.conv_tr = nn.ConvTranspose1d(chin, chout, kernel_size, stride)
        self.norm2 = _norm(norm, norm_groups, chout)
        if empty:
            return
        self.rewrite: nn.Module | None = None
        if rewrite:
            if not freq:
                self.rewrite = nn.Conv1d(chin, 2 * chin, 1 + 2 * context, 1, context)
            elif context_freq:
                self.rewrite = nn.Conv2d(chin, 2 * chin, 1 + 2 * context, 1, context)
            else:
                self.rewrite = nn.Conv2d(chin, 2 * chin, (1, 1 + 2 * context), 1, (0, context))
            self.norm1 = _norm(norm, norm_groups, 2 * chin)
        self.dconv = DConv(chin, **(dconv_kw or {})) if dconv else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (output, pre-transposed-conv activations) — the latter feeds an empty time decoder."""
        if self.freq and x.dim() == 3:
            x = x.view(x.shape[0], self.chin, -1, x.shape[-1])
        if self.empty:
            y = x
        else:
            y = x + skip
            if self.rewrite is not None:
                y = rewrite_glu(self.rewrite, self.norm1, y)
            if self.dconv is not None:
                y = _dconv_over_time(self.dconv, y, self.freq)
        z = self.norm2(self.conv_tr(y))
        if self.freq:
            if self.pad:
                z = z[..., self.pad:-self.pad, :]
        else:
            z = z[..., self.pad:self.pad + length]
        if not self.last:
            z = F.gelu(z)
        return z, y


@functools.cache
def _nnpack_available() -> bool:
    return bool(getattr(torch, "_nnpack_available", lambda: False)())


def _winograd(module: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``module(x)`` can run as NNPACK's Winograd convolution: a 3x3, stride-1, padding-1, undilated,
    ungrouped ``nn.Conv2d`` on a float32 CPU tensor, outside autocast and autograd, where this PyTorch has NNPACK
    (it needs AVX2 on x86)."""
    if not (isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3) and module.stride == (1, 1)
            and module.padding == (1, 1) and module.dilation == (1, 1) and module.groups == 1
            and module.padding_mode == "zeros" and module.bias is not None and x.dim() == 4
            and x.device.type == "cpu" and x.dtype == module.weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
            and not (torch.is_grad_enabled() and (x.requires_grad or module.weight.requires_grad))):
        return False
    return _nnpack_available()


def _transpose_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """(B, C, H, W) between the NCHW and channels-last layouts, one (C, H*W) <-> (H*W, C) matrix transpose per item.

    PyTorch copies a 2-D transpose in cache-sized blocks; its generic layout conversion
    (``contiguous(memory_format=...)``) is about 4x slower (92 against 22 ms for 16.5 M values, one thread).
    """
    batch, channels, height, width = x.shape
    out = torch.empty_like(x, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    for b in range(batch):
        if channels_last:
            out[b].permute(1, 2, 0).view(height * width, channels).copy_(x[b].view(channels, -1).t())
        else:
            out[b].view(channels, -1).copy_(x[b].permute(1, 2, 0).reshape(height * width, channels).t())
    return out


def rewrite_glu(rewrite: nn.Module, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``glu(norm(rewrite(x)), dim=1)``: a decoder's GLU rewrite, the spectral 3x3 ones by Winograd's algorithm.

    The four 3x3 rewrites of the spectral decoder are nearly half of HTDemucs' convolution time; oneDNN runs them as
    direct convolutions (near this CPU's float32 rate), NNPACK's Winograd transform needs about half the
    multiplications (120 against 185 ms for the largest, one thread; its error against a float64 convolution
    ~1e-5 of the largest output, against oneDNN's ~1e-6). NNPACK wants NCHW, so a channels-last input is
    transposed to it, and the GLU's (half-size) output back.

    Args:
        rewrite: the rewrite convolution (any; only those ``_winograd`` accepts take NNPACK).
        norm: the normalisation after it (``nn.Identity`` where the layer has none).
        x: (B, C, H, W) or (B, C, T).

    Returns:
        (B, C, H, W) (channels-last when ``x`` is) or (B, C, T).
    """
    if not _winograd(rewrite, x):
        return F.glu(norm(rewrite(x)), dim=1)
    channels_last = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    nchw = _transpose_layout(x, channels_last=False) if channels_last else x.contiguous()
    y = torch._nnpack_spatial_convolution(nchw, rewrite.weight.contiguous(), rewrite.bias, [1, 1], [1, 1])
    y = F.glu(norm(y), dim=1)
    return _transpose_layout(y, channels_last=True) if channels_last else y


# ------------------------------------------------------------------ spectrogram front end


def reflect_pad(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Reflect padding that also works when the signal is shorter than the padding (zero-extends first)."""
    length = x.shape[-1]
    widest = max(left, right)
    if length <= widest:
        extra = widest - length + 1
        extra_right = min(right, extra)
        extra_left = extra - extra_right
        x = F.pad(x, (extra_left, extra_right))
        left, right = left - extra_left, right - extra_right
    return F.pad(x, (left, right), mode="reflect")


def hybrid_spectrogram(x: torch.Tensor, n_fft: int, reflect: bool = True) -> torch.Tensor:
    """x: (B, C, T) -> (B, C, n_fft // 2, ceil(T / hop)) normalised STFT, frames aligned with the waveform.

    Pads 1.5 hops on both sides (plus up to a full hop) so frame k covers samples around k * hop, then drops
    the Nyquist bin and the two outermost frames each side.
    """
    hop = n_fft // 4
    frames = math.ceil(x.shape[-1] / hop)
    pad = hop // 2 * 3
    right = pad + frames * hop - x.shape[-1]
    x = reflect_pad(x, pad, right) if reflect else F.pad(x, (pad, right))
    *lead, length = x.shape
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    z = torch.stft(x.reshape(-1, length), n_fft, hop, window=window, normalized=True, center=True,
                   pad_mode="reflect", return_complex=True)
    z = z.view(*lead, *z.shape[-2:])[..., :-1, :]
    return z[..., 2:2 + frames]


def hybrid_inverse_spectrogram(z: torch.Tensor, length: int, reflect: bool = True) -> torch.Tensor:
    """Inverse of ``hybrid_spectrogram``: z (..., n_fft // 2, frames) -> (..., length).

    ``z`` may also carry the (zero) Nyquist bin, (..., n_fft // 2 + 1, frames), as ``spectrum_from_channels``
    returns it: with every bin present the inverse FFT needs no zero-padded copy.
    """
    n_fft = 2 * (z.shape[-2] - z.shape[-2] % 2)  # n_fft // 2 bins, or n_fft // 2 + 1 with the Nyquist bin
    hop = n_fft // 4
    pad = hop // 2 * 3
    total = hop * math.ceil(length / hop) + (2 * pad if reflect else 0)
    *lead, bins, frames = z.shape
    window = torch.hann_window(n_fft, device=z.device, dtype=z.real.dtype)
    # As demucs: the Nyquist bin and two frames each side are zeros (inverse_stft adds them without a padded copy).
    x = inverse_stft(z.reshape(-1, bins, frames), n_fft, hop, window, total, normalized=True, zero_frames=(2, 2))
    x = x.view(*lead, total)
    return x[..., pad:pad + length] if reflect else x[..., :length]


def complex_as_channels(z: torch.Tensor) -> torch.Tensor:
    """(B, C, Fr, T) complex -> (B, 2C, Fr, T) real, channels ordered (c0 re, c0 im, c1 re, ...)."""
    batch, channels, bins, frames = z.shape
    return torch.view_as_real(z).permute(0, 1, 4, 2, 3).reshape(batch, channels * 2, bins, frames)


def spectrum_from_channels(m: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """(B, S, 2C, Fr, T) real channels -> (B, S, C, Fr + 1, T) complex spectrum ``m * scale + shift``, plus a zero
    Nyquist bin, without reordering the decoder's output.

    The de-normalised values are written once, in the decoder's own channels-last order, into a buffer with room
    for the Nyquist bin: real and imaginary parts are already adjacent there, so the complex spectrum is a view
    of it, and the inverse FFT gets every bin (instead of a multiply, an add, an interleaving copy and the inverse
    FFT's own zero-padded copy).

    Args:
        m: (B, S, 2C, Fr, T) real, channels ordered (c0 re, c0 im, c1 re, ...), any memory layout
            (channels-last, as the spectral decoder leaves it, makes the write one contiguous pass).
        scale: broadcastable to (B, 1, 1, 1, 1) (the input's standard deviation).
        shift: broadcastable to (B, 1, 1, 1, 1) (the input's mean).

    Returns:
        (B, S, C, Fr + 1, T) complex, the last bin zero; a view of (Fr + 1, T, B, S, C) memory, so its leading
        three axes flatten to one without a copy.
    """
    batch, sources, channels, bins, frames = m.shape
    buffer = m.new_empty(bins + 1, frames, batch, sources, channels)
    buffer[bins] = 0
    torch.addcmul(shift.reshape(-1, 1, 1), m.permute(3, 4, 0, 1, 2), scale.reshape(-1, 1, 1), out=buffer[:bins])
    spec = torch.view_as_complex(buffer.view(bins + 1, frames, batch, sources, channels // 2, 2))
    return spec.permute(2, 3, 4, 0, 1)


# ------------------------------------------------------------------ the hybrid U-Net


@dataclasses.dataclass
class HDemucsConfig(ModelConfig):
    """Subset of demucs' constructor arguments that changes the network (names as in the packages)."""

    channels_base: int = 48
    channels_time: int | None = None
    growth: float = 2
    nfft: int = 4096
    cac: bool = True
    depth: int = 6
    rewrite: bool = True
    hybrid: bool = True
    hybrid_old: bool = False
    freq_emb: float = 0.2
    emb_scale: float = 10
    kernel_size: int = 8
    time_stride: int = 2
    stride: int = 4
    context: int = 1
    context_enc: int = 0
    norm_starts: int = 4
    norm_groups: int = 4
    dconv_mode: int = 1
    dconv_depth: int = 2
    dconv_comp: float = 4
    dconv_attn: int = 4
    dconv_lstm: int = 4
    dconv_init: float = 1e-4
    segment: float = 40.0


class HybridUNet(StemModel):
    """Shared encoder/decoder construction for HDemucs and HTDemucs (bottleneck differs)."""

    mask_based = False
    trainable = False

    def _build_unet(self, cfg: HDemucsConfig, with_lstm_attn: bool) -> int:
        """Create encoder/decoder stacks; returns the frequency-branch channel count at the bottleneck."""
        self.encoder, self.decoder = nn.ModuleList(), nn.ModuleList()
        self.tencoder, self.tdecoder = nn.ModuleList(), nn.ModuleList()
        self.freq_emb: FrequencyEmbedding | None = None
        chin = cfg.channels
        chin_z = chin * 2 if cfg.cac else chin
        chout = cfg.channels_time or cfg.channels_base
        chout_z = cfg.channels_base
        freqs = cfg.nfft // 2
        for index in range(cfg.depth):
            freq = freqs > 1
            kernel, stride = cfg.kernel_size, cfg.stride
            if not freq:
                kernel, stride = cfg.time_stride * 2, cfg.time_stride
            pad, last_freq = True, False
            if freq and freqs <= cfg.kernel_size:
                kernel, pad, last_freq = freqs, False, True
            dconv_kw = {"depth": cfg.dconv_depth, "compress": cfg.dconv_comp, "init": cfg.dconv_init}
            if with_lstm_attn:
                dconv_kw.update(lstm=index >= cfg.dconv_lstm, attn=index >= cfg.dconv_attn)
            kw = dict(kernel_size=kernel, stride=stride, freq=freq, pad=pad, norm=index >= cfg.norm_starts,
                      rewrite=cfg.rewrite, norm_groups=cfg.norm_groups, dconv_kw=dconv_kw)
            kwt = dict(kw, freq=False, kernel_size=cfg.kernel_size, stride=cfg.stride, pad=True)
            if last_freq:
                chout_z = max(chout, chout_z)
                chout = chout_z
            self.encoder.append(EncoderLayer(chin_z, chout_z, dconv=bool(cfg.dconv_mode & 1), context=cfg.context_enc, **kw))
            if cfg.hybrid and freq:
                self.tencoder.append(EncoderLayer(chin, chout, dconv=bool(cfg.dconv_mode & 1), context=cfg.context_enc,
                                                  empty=last_freq, **kwt))
            if index == 0:
                chin = cfg.channels * len(cfg.sources)
                chin_z = chin * 2 if cfg.cac else chin
            self.decoder.insert(0, DecoderLayer(chout_z, chin_z, dconv=bool(cfg.dconv_mode & 2), last=index == 0,
                                                context=cfg.context, **kw))
            if cfg.hybrid and freq:
                self.tdecoder.insert(0, DecoderLayer(chout, chin, dconv=bool(cfg.dconv_mode & 2), empty=last_freq,
                                                     last=index == 0, context=cfg.context, **kwt))
            chin, chin_z = chout, chout_z
            chout, chout_z = int(cfg.growth * chout), int(cfg.growth * chout_z)
            if freq:
                freqs = 1 if freqs <= cfg.kernel_size else freqs // cfg.stride
            if index == 0 and cfg.freq_emb:
                self.freq_emb = FrequencyEmbedding(freqs, chin_z, scale=cfg.emb_scale)
        return chin_z

    def _bottleneck(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, xt

    def _channels_last(self) -> None:
        """Keep the spectral branch's 2-D convolution weights channels-last (NHWC).

        oneDNN then runs every 2-D convolution in NHWC and passes NHWC activations on, instead of reordering
        each input and output between PyTorch's NCHW and its own layout (about 3 % of HTDemucs' CPU time). Loading
        a state dict copies into these tensors and keeps their layout; the values are unchanged.
        """
        self.to(memory_format=torch.channels_last)

    def encode_decode(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network between the normalised inputs and the de-normalisation: both branches' encoders, the
        bottleneck and the decoders (``_separate`` wraps it; ``benchmarks/onnx_spike.py`` exports it alone).

        Args:
            x: the normalised spectrogram, (batch, 2 * channels, bins, frames) complex-as-channels.
            xt: the normalised waveform, (batch, channels, time) (ignored by a non-hybrid model).

        Returns:
            (x, xt): the spectral branch's output (batch, sources * 2 * channels, bins, frames) and the waveform
            branch's (batch, sources * channels, time).
        """
        cfg: HDemucsConfig = self.config  # type: ignore[assignment]
        saved, saved_t, lengths, lengths_t = [], [], [], []
        for idx, encode in enumerate(self.encoder):
            lengths.append(x.shape[-1])
            inject = None
            if cfg.hybrid and idx < len(self.tencoder):
                lengths_t.append(xt.shape[-1])
                tenc = self.tencoder[idx]
                xt = tenc(xt)
                if tenc.empty:
                    inject = xt
                else:
                    saved_t.append(xt)
            x = encode(x, inject)
            if idx == 0 and self.freq_emb is not None:
                emb = self.freq_emb(torch.arange(x.shape[-2], device=x.device)).t()
                x = x + cfg.freq_emb * emb[None, :, :, None].to(x.dtype)
            saved.append(x)
        x, xt = self._bottleneck(x, xt)
        offset = cfg.depth - len(self.tdecoder)
        for idx, decode in enumerate(self.decoder):
            x, pre = decode(x, saved.pop(-1), lengths.pop(-1))
            if cfg.hybrid and idx >= offset:
                tdec = self.tdecoder[idx - offset]
                length_t = lengths_t.pop(-1)
                if tdec.empty:
                    xt, _ = tdec(pre[:, :, 0], None, length_t)
                else:
                    xt, _ = tdec(xt, saved_t.pop(-1), length_t)
        return x, xt

    def _separate(self, mix: torch.Tensor) -> torch.Tensor:
        """mix: (B, C, T) -> (B, S, C, T), run at exactly the given length."""
        cfg: HDemucsConfig = self.config  # type: ignore[assignment]
        length = mix.shape[-1]
        reflect = not cfg.hybrid_old
        z = hybrid_spectrogram(mix, cfg.nfft, reflect=reflect)
        x = complex_as_channels(z) if cfg.cac else z.abs()
        batch, _, bins, frames = x.shape
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) / (1e-5 + std)
        xt = mix
        if cfg.hybrid:
            meant = mix.mean(dim=(1, 2), keepdim=True)
            stdt = mix.std(dim=(1, 2), keepdim=True)
            xt = (mix - meant) / (1e-5 + stdt)
        x, xt = self.encode_decode(x, xt)
        sources = len(cfg.sources)
        # float32 from here on: complex views and the iSTFT need it (the network may have run under bf16 autocast).
        if not cfg.cac:
            raise NotImplementedError  # rejected by the loader; only complex-as-channels models are released
        spec = spectrum_from_channels(x.float().view(batch, sources, -1, bins, frames), std, mean)
        out = hybrid_inverse_spectrogram(spec, length, reflect=reflect)
        if cfg.hybrid:
            out = out + xt.float().view(batch, sources, -1, length) * stdt[:, None] + meant[:, None]
        return out


class HDemucs(HybridUNet):
    """Hybrid Demucs v3 (``hdemucs_mmi``, the MDX'21 hybrid models): (B, C, T) -> (B, S, C, T)."""

    architecture = "hdemucs"
    config_class = HDemucsConfig
    default_segment = 40.0

    def __init__(self, config: HDemucsConfig) -> None:
        super().__init__(config)
        self.default_segment = float(config.segment)  # type: ignore[misc]
        self._build_unet(config, with_lstm_attn=True)
        self._channels_last()

    def _bottleneck(self, x: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # HDemucs decodes from zeros: the encoder reaches the decoder only through the skip connections.
        return torch.zeros_like(x), xt

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix: (batch, channels, time) -> (batch, sources, channels, time)."""
        return self._separate(mix)
