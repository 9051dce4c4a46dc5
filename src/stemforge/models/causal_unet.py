"""Causal U-Net: the default U-Net with every convolution causal in time, for low-latency streaming.

Same modules, parameter names and kernel shapes as ``models.unet.UNetSeparator`` (so it warm-starts from the
default model's weights), but the time axis never looks ahead:

* down convolutions (5x5, stride 2): output frame ``j`` reads input frames ``2j - 4 .. 2j`` (zero before 0);
* up convolutions (transposed 5x5, stride 2): output frame ``m`` reads input frames ``<= m // 2``;
* the 3x3 head reads frames ``k - 2 .. k``.

Output frame ``k`` therefore depends on STFT frames ``<= k`` only, and a stem sample depends on the mixture up to
``n_fft - 1`` samples later (the last STFT frame covering it): 2047 samples = 46.4 ms at 44.1 kHz for n_fft 2048.
``stream_state`` / ``stream_frame`` compute the same network one STFT frame at a time, each level at its own
rate (level ``l`` advances every ``2**l`` frames), with a few frames of history per layer; ``stemforge.stream``
wraps them with the STFT / iSTFT framing.
"""

from __future__ import annotations

import dataclasses
from collections import deque

import torch
import torch.nn.functional as F

from stemforge.errors import ModelError
from stemforge.models.frontend import extend_bins
from stemforge.models.neural import preset_factory
from stemforge.models.registry import register
from stemforge.models.unet import PRESETS, UNetConfig, UNetSeparator


def _down(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Causal stride-2 down block: x (B, C, F, N) with N the frames incl. 4 frames of left context."""
    conv = layer.conv
    return layer.act(layer.norm(F.conv2d(x, conv.weight, conv.bias, stride=2, padding=(2, 0))))


def _up_conv(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Transposed stride-2 convolution without time padding: (B, C, F, N) -> (B, C', 2F, 2N + 3)."""
    conv = layer.conv
    return F.conv_transpose2d(x, conv.weight, conv.bias, stride=2, padding=(2, 0), output_padding=(1, 0))


def _up_post(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return layer.drop(layer.norm(layer.act(x)))


@dataclasses.dataclass
class _StreamState:
    """History of one causal U-Net run, one STFT frame at a time (see ``CausalUNetSeparator.stream_frame``).

    Each layer sees a window of a few frames and emits one, so its time taps are folded into the input channels
    and it runs as a 1-D convolution over frequency (``weights``: the folded kernels, made once per state).
    """

    frame: int  # index of the next STFT frame
    weights: dict[str, tuple[torch.Tensor, ...]]  # folded (weight, bias) per layer; (scale, shift) per up norm
    down_in: list[deque]  # per level l < depth: last 5 input frames of down[l], each (C, F_l)
    up_in: list[deque]  # per level l < depth: last 3 input frames of the up layer producing level l
    pending: list[torch.Tensor | None]  # per level: the odd output frame computed with the even one
    skips: list[torch.Tensor | None]  # per level: the skip frame of the current step
    head_in: deque  # last 3 input frames of the head


def _fold_conv(conv: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv2d weight (O, I, kF, kT) -> conv1d weight (O, I * kT, kF) reading a (I * kT, F) window, time minor."""
    w = conv.weight.detach()
    return w.permute(0, 1, 3, 2).reshape(w.shape[0], w.shape[1] * w.shape[3], w.shape[2]).contiguous(), conv.bias.detach()


def _bn_affine(norm: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as (scale, shift), each (C, 1)."""
    scale = norm.weight.detach() / torch.sqrt(norm.running_var + norm.eps)
    return scale[:, None], (norm.bias.detach() - norm.running_mean * scale)[:, None]


def _fold_down(layer: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A down block's convolution with its (eval-mode) BatchNorm folded in, as a conv1d over a 5-frame window."""
    w, b = _fold_conv(layer.conv)
    scale, shift = _bn_affine(layer.norm)
    return (w * scale[:, :, None]).contiguous(), b * scale[:, 0] + shift[:, 0]


def _fold_up(conv: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """ConvTranspose2d weight (I, O, 5, 5) -> conv_transpose1d weight (I * 3, 2 * O, 5) over a 3-frame window.

    Window frames u = 0, 1, 2 are input frames j - 2, j - 1, j. Output frame 2j uses time taps 4, 2, 0 of them;
    frame 2j + 1 taps 5 (none), 3, 1. Both are emitted at once, even frame in the first O channels.
    """
    w = conv.weight.detach()
    i, o, kf, _ = w.shape
    zero = torch.zeros_like(w[..., 0])
    even = torch.stack([w[..., 4], w[..., 2], w[..., 0]], dim=1)  # (I, 3, O, kF)
    odd = torch.stack([zero, w[..., 3], w[..., 1]], dim=1)
    both = torch.cat([even, odd], dim=2).reshape(i * 3, 2 * o, kf).contiguous()
    bias = conv.bias.detach()
    return both, torch.cat([bias, bias])


class CausalUNetSeparator(UNetSeparator):
    """U-Net separator causal in time (see the module docstring); latency ``n_fft - 1`` samples."""

    architecture = "unet_causal"
    config_class = UNetConfig

    def __init__(self, config: UNetConfig) -> None:
        if config.remask_fft:  # a whole long window of look-ahead, and stream_frame could not reproduce it
            raise ModelError(f"{self.architecture} takes no re-mask (remask_fft must be 0, got {config.remask_fft})")
        super().__init__(config)

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency: a stem sample depends on the mixture up to this many samples later."""
        return self.config.n_fft - 1

    def network(self, mag: torch.Tensor) -> torch.Tensor:
        """mag: (B, C, F', N') -> mask logits (B, S, C, F', N'); frame k depends on frames <= k only."""
        x = self.norm(mag)
        skips = [x]
        for layer in self.down:
            x = _down(layer, F.pad(x, (4, 0)))
            skips.append(x)
        skips.pop()
        for layer in self.up:
            frames = x.shape[-1]
            x = _up_post(layer, _up_conv(layer, x)[..., : 2 * frames])
            x = torch.cat([x, skips.pop()], dim=1)
        head = self.head
        logits = F.conv2d(F.pad(x, (2, 0)), head.weight, head.bias, padding=(1, 0))
        b, _, f, n = logits.shape
        return logits.reshape(b, len(self.config.sources), self.config.channels, f, n)

    # ----- frame-by-frame inference ------------------------------------------------------------------------
    def stream_state(self) -> _StreamState:
        """A fresh state for ``stream_frame`` (all history zero, as the offline network's left padding).

        The state holds folded copies of the weights: make a new one after changing them.
        """
        depth = self.config.depth
        weights = {f"down{i}": _fold_down(layer) for i, layer in enumerate(self.down)}
        weights.update({f"up{i}": _fold_up(layer.conv) for i, layer in enumerate(self.up)})
        weights.update({f"upnorm{i}": _bn_affine(layer.norm) for i, layer in enumerate(self.up)})
        weights["head"] = _fold_conv(self.head)
        return _StreamState(frame=0, weights=weights, down_in=[deque(maxlen=5) for _ in range(depth)],
                            up_in=[deque(maxlen=3) for _ in range(depth)], pending=[None] * depth,
                            skips=[None] * depth, head_in=deque(maxlen=3))

    @staticmethod
    def _window(history: deque, size: int, frame: torch.Tensor) -> torch.Tensor:
        """Append ``frame`` (C, F) to ``history``; the last ``size`` frames as (C * size, F), time minor."""
        if not history:
            history.extend([torch.zeros_like(frame)] * (size - 1))
        history.append(frame)
        return torch.stack(tuple(history), dim=1).reshape(-1, frame.shape[-1])

    def stream_frame(self, spec: torch.Tensor, state: _StreamState) -> torch.Tensor:
        """One STFT frame through the causal network and the masks (inference: BatchNorm statistics, no dropout).

        Args:
            spec: (channels, freq) complex, the mixture's next STFT frame (``frontend.Spectrogram`` layout).
            state: from ``stream_state``; advanced in place.

        Returns:
            (sources, channels, freq) complex: the stems' spectra of this frame, equal (to float rounding) to
            frame ``state.frame`` of the offline ``forward`` over the whole signal.
        """
        cfg, depth, k, weights = self.config, self.config.depth, state.frame, state.weights
        x = self.norm(spec[:, : cfg.max_bins].abs().unsqueeze(-1))[..., 0]  # (C, F')
        state.skips[0] = x
        # Down path: level l+1 gets a frame whenever k is a multiple of 2**(l+1).
        bottleneck = None
        h = x
        for level in range(depth):
            window = self._window(state.down_in[level], 5, h)
            if k % (2 ** (level + 1)):
                break
            h = F.leaky_relu(F.conv1d(window, *weights[f"down{level}"], stride=2, padding=2), 0.2)
            if level + 1 < depth:
                state.skips[level + 1] = h
            else:
                bottleneck = h
        # Up path, deepest first: level l has a frame whenever k is a multiple of 2**l.
        feed = bottleneck  # the input frame of the up layer producing the current level, if one arrived now
        for index, level in enumerate(reversed(range(depth))):
            if k % (2 ** level):
                feed = None
                continue
            if (k >> level) % 2 == 0:  # even output frame: its input frame (k >> (level + 1)) arrived this step
                assert feed is not None
                window = self._window(state.up_in[level], 3, feed)
                both = F.conv_transpose1d(window, *weights[f"up{index}"], stride=2, padding=2, output_padding=1)
                out, state.pending[level] = both.chunk(2, dim=0)
            else:
                out, state.pending[level] = state.pending[level], None
            scale, shift = weights[f"upnorm{index}"]
            out = torch.addcmul(shift, torch.relu(out), scale)
            feed = torch.cat([out, state.skips[level]], dim=0)
        logits = F.conv1d(self._window(state.head_in, 3, feed), *weights["head"], padding=1)
        masks = torch.softmax(logits.reshape(len(cfg.sources), cfg.channels, cfg.max_bins).float(), dim=0)
        masks = extend_bins(masks.unsqueeze(-1), spec.shape[-1])[..., 0]  # (S, C, F)
        state.frame += 1
        return masks * spec


register("unet-causal", "cnn", "U-Net causal in time (46 ms latency at n_fft 2048) for real-time streaming")(
    preset_factory(CausalUNetSeparator, PRESETS)
)


def from_unet(model: UNetSeparator) -> CausalUNetSeparator:
    """A causal U-Net with ``model``'s config and weights (a warm start for fine-tuning).

    Args:
        model: a trained ``UNetSeparator``.

    Returns:
        The causal model (a new module; ``model`` is unchanged), in ``model``'s train/eval mode.
    """
    causal = CausalUNetSeparator(dataclasses.replace(model.config))
    causal.load_state_dict(model.state_dict())
    return causal.train(model.training)


__all__ = ["CausalUNetSeparator", "from_unet"]
