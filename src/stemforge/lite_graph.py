"""A plain U-Net checkpoint read without torch and built into an ONNX graph (``stemforge.lite``'s network).

``read_unet`` reads a stemforge ``unet`` checkpoint through safetensors' numpy loader (tensors and a JSON header, no
pickle) and checks its weights against the ``weights_sha256`` in its header exactly as ``stemforge.checkpoint``
checks them; anything it does not recognise in full raises ``Unsupported`` (the torch path then takes the file
and reports what is wrong). ``build_graph`` turns the weights into ``UNetSeparator.network`` as an ONNX graph
(``stemforge.onnx_writer``, without the ``onnx`` package): BatchNorm folded into the encoder's convolutions; the
decoder's BatchNorm, which follows its ReLU, is a per-channel scale and shift. The graph is returned as bytes for
onnxruntime; it never touches the disk. Nothing here imports torch or onnx.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

import numpy as np

from stemforge import onnx_writer

#: ``stemforge.checkpoint.FORMAT`` and its header key (tests check they agree).
FORMAT = "stemforge-checkpoint/1"
HEADER_KEY = "stemforge"
ARCHITECTURE = "unet"
#: ``models.unet.UNetConfig``'s fields (tests check they agree): a checkpoint with others takes the torch path.
CONFIG_FIELDS = frozenset({"sources", "sample_rate", "channels", "n_fft", "hop", "max_bins", "depth",
                           "base_channels", "dropout", "remask_fft", "remask_hop", "refine_bins", "refine_width",
                           "refine_layers", "overlap"})
#: Fields added later, in order: a checkpoint written before a group lacks it and every later one (their defaults:
#: 0 turns the re-mask and its refiner off; the overlap was 0.25 for every model).
LATER_FIELDS = (frozenset({"remask_fft", "remask_hop"}), frozenset({"refine_bins", "refine_width", "refine_layers"}),
                frozenset({"overlap"}))
#: The field sets of checkpoints this runtime reads: today's, and each older generation's.
_KNOWN_FIELDS = tuple(CONFIG_FIELDS.difference(*LATER_FIELDS[i:]) for i in range(len(LATER_FIELDS) + 1))
#: ``models.unet.MAX_REMASK_FFT``, ``MAX_REFINE_WIDTH``, ``MAX_REFINE_LAYERS``, ``dsp.wiener.REMASK_FLOOR`` and
#: ``models.refiner.LOG_FLOOR`` and ``ACTIVE`` (tests check they agree).
MAX_REMASK_FFT = 2**16
MAX_REFINE_WIDTH = 256
MAX_REFINE_LAYERS = 8
REMASK_FLOOR = 1e-10
REFINE_LOG_FLOOR = 1e-4
REFINE_ACTIVE = 1e-3


def refine_planes(sources: int) -> int:
    """``models.refiner.feature_planes`` (tests check they agree): the refiner's input planes."""
    return 2 * sources + 2


#: torch.nn.BatchNorm2d's epsilon, the encoder's LeakyReLU slope, and the U-Net's kernel sizes.
BN_EPS = 1e-5
LEAKY_SLOPE = 0.2
KERNEL, HEAD_KERNEL = 5, 3
OPSET, IR_VERSION, PRODUCER = 17, 8, "stemforge.lite"

#: numpy dtype -> the name ``checkpoint.weights_sha256`` hashes (``str(torch_tensor.dtype)``).
_TORCH_DTYPE_NAMES = {"float32": "torch.float32", "float64": "torch.float64", "float16": "torch.float16",
                      "int64": "torch.int64", "int32": "torch.int32", "int16": "torch.int16", "int8": "torch.int8",
                      "uint8": "torch.uint8", "bool": "torch.bool"}


class Unsupported(Exception):
    """This checkpoint (or these options) needs the torch path; the message says why (logged at debug level)."""


@dataclasses.dataclass(frozen=True)
class UNetSpec:
    """The settings of a ``unet`` checkpoint that the runtime needs (``models.unet.UNetConfig`` less dropout)."""

    sources: tuple[str, ...]
    sample_rate: int
    channels: int
    n_fft: int
    hop: int
    max_bins: int
    depth: int
    base_channels: int
    remask_fft: int = 0  # 0: no re-mask (``models.unet.UNetConfig``)
    remask_hop: int = 0
    refine_bins: int = 0  # 0: no refiner (``models.refiner``)
    refine_width: int = 32
    refine_layers: int = 5
    overlap: float = 0.25  # the engine's overlap between segments (``models.unet.UNetConfig``)

    @property
    def widths(self) -> list[int]:
        """Channels at each encoder level, input first (as ``UNetSeparator``)."""
        return [self.channels] + [self.base_channels * 2**i for i in range(self.depth)]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Every weight's name and shape in a checkpoint of this U-Net (``UNetSeparator.state_dict()``)."""
        widths, out = self.widths, {"norm.shift": (self.max_bins, 1), "norm.scale": (self.max_bins, 1)}

        def level(prefix: str, weight: tuple[int, ...], channels: int) -> None:
            out[f"{prefix}.conv.weight"], out[f"{prefix}.conv.bias"] = weight, (channels,)
            for name in ("weight", "bias", "running_mean", "running_var"):
                out[f"{prefix}.norm.{name}"] = (channels,)
            out[f"{prefix}.norm.num_batches_tracked"] = ()

        for i in range(self.depth):
            level(f"down.{i}", (widths[i + 1], widths[i], KERNEL, KERNEL), widths[i + 1])
        for j, lvl in enumerate(reversed(range(self.depth))):
            cin = widths[lvl + 1] * (1 if lvl == self.depth - 1 else 2)
            cout = widths[lvl] if lvl > 0 else self.base_channels
            level(f"up.{j}", (cin, cout, KERNEL, KERNEL), cout)
        outputs = len(self.sources) * self.channels
        out["head.weight"] = (outputs, self.base_channels + self.channels, HEAD_KERNEL, HEAD_KERNEL)
        out["head.bias"] = (outputs,)
        if self.refine_bins:  # models.refiner.LowBandRefiner: Conv, ReLU pairs (body.0, body.2, ...) and a head
            cin = refine_planes(len(self.sources))
            for i in range(self.refine_layers - 1):
                out[f"refiner.body.{2 * i}.weight"] = (self.refine_width, cin, HEAD_KERNEL, HEAD_KERNEL)
                out[f"refiner.body.{2 * i}.bias"] = (self.refine_width,)
                cin = self.refine_width
            out["refiner.head.weight"] = (len(self.sources), cin, HEAD_KERNEL, HEAD_KERNEL)
            out["refiner.head.bias"] = (len(self.sources),)
        return out


# Two hashes on purpose: checkpoint.weights_sha256 takes torch tensors (bfloat16 has no numpy twin) and this path must
# not import torch; tests/test_lite_graph.py::test_weights_hash_is_the_checkpoints holds them equal.
def weights_sha256(state: dict[str, np.ndarray]) -> str:
    """``stemforge.checkpoint.weights_sha256`` of numpy arrays: names, dtypes, shapes and bytes, in name order.

    Args:
        state: weight name -> array (as safetensors' numpy loader returns them).

    Returns:
        The hex digest a checkpoint of these weights records.

    Raises:
        Unsupported: a dtype without a torch twin here.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        array = np.asarray(state[name])  # not ascontiguousarray: it turns 0-d arrays into 1-d ones
        dtype = _TORCH_DTYPE_NAMES.get(array.dtype.name)
        if dtype is None or array.dtype.byteorder == ">":
            raise Unsupported(f"weight {name} has dtype {array.dtype}")
        digest.update(name.encode())
        digest.update(dtype.encode())
        digest.update(str(tuple(array.shape)).encode())
        digest.update(array.tobytes())  # C order whatever the strides
    return digest.hexdigest()


def read_unet(path: str | os.PathLike[str]) -> tuple[UNetSpec, dict[str, np.ndarray]]:
    """A ``unet`` checkpoint's settings and weights, without torch, verified as ``checkpoint.load_checkpoint`` does.

    Args:
        path: a stemforge ``.safetensors`` checkpoint.

    Returns:
        (its settings, weight name -> float32 / int64 array).

    Raises:
        Unsupported: anything short of a well-formed ``unet`` checkpoint whose weights match their hash (the torch
            path then loads it, or reports what is wrong in its own one-line error).
    """
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as handle:
            header = handle.metadata() or {}
            state = {name: handle.get_tensor(name) for name in handle.keys()}
        meta = json.loads(header[HEADER_KEY])
    except Exception as exc:  # any failure: the torch path reads the file again and says what is wrong
        raise Unsupported(f"{path}: not readable here ({type(exc).__name__})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("architecture") != ARCHITECTURE:
        raise Unsupported(f"{path}: not a stemforge {ARCHITECTURE} checkpoint")
    config = meta.get("config")
    if not isinstance(config, dict) or set(config) not in _KNOWN_FIELDS:
        raise Unsupported(f"{path}: config fields differ from this runtime's U-Net")
    try:
        spec = UNetSpec(sources=tuple(str(s) for s in config["sources"]),
                        **{f: config[f] for f in ("sample_rate", "channels", "n_fft", "hop", "max_bins", "depth",
                                                  "base_channels", "remask_fft", "remask_hop", "refine_bins",
                                                  "refine_width", "refine_layers", "overlap") if f in config})
    except TypeError as exc:
        raise Unsupported(f"{path}: malformed config") from exc
    remask = (spec.remask_fft, spec.remask_hop)
    if remask != (0, 0) and not (all(type(v) is int for v in remask) and 0 < spec.remask_hop <= spec.remask_fft // 2
                                 and spec.remask_fft % spec.remask_hop == 0 and spec.remask_fft <= MAX_REMASK_FFT):
        raise Unsupported(f"{path}: re-mask settings outside what this runtime reproduces")
    refine = (spec.refine_bins, spec.refine_width, spec.refine_layers)
    if spec.refine_bins and not (all(type(v) is int for v in refine) and spec.remask_fft
                                 and 0 < spec.refine_bins <= spec.remask_fft // 2 + 1
                                 and 0 < spec.refine_width <= MAX_REFINE_WIDTH
                                 and 0 < spec.refine_layers <= MAX_REFINE_LAYERS):
        raise Unsupported(f"{path}: refiner settings outside what this runtime reproduces")
    if type(spec.overlap) not in (int, float) or not 0 <= spec.overlap < 1:
        raise Unsupported(f"{path}: overlap outside what this runtime reproduces")
    ints = (spec.sample_rate, spec.channels, spec.n_fft, spec.hop, spec.max_bins, spec.depth, spec.base_channels)
    if (not all(type(v) is int and v > 0 for v in ints) or not spec.sources or spec.n_fft % spec.hop
            or spec.hop > spec.n_fft // 2 or spec.depth >= spec.max_bins.bit_length()  # before 2**depth: see UNetConfig
            or spec.max_bins % 2**spec.depth or spec.max_bins > spec.n_fft // 2 + 1):
        raise Unsupported(f"{path}: settings outside what this runtime reproduces")
    expected = spec.shapes()
    if set(state) != set(expected) or any(state[k].shape != v for k, v in expected.items()):
        raise Unsupported(f"{path}: weights do not match the U-Net its config describes")
    if any(state[k].dtype != (np.int64 if k.endswith("num_batches_tracked") else np.float32) for k in state):
        raise Unsupported(f"{path}: weights are not float32")
    if weights_sha256(state) != meta.get("weights_sha256"):
        raise Unsupported(f"{path}: weights do not match their recorded sha256")
    return spec, state


def _batchnorm(state: dict[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Inference BatchNorm at ``prefix`` as ``x * scale + shift``, per channel (float64 for folding)."""
    variance = state[f"{prefix}.running_var"].astype(np.float64)
    scale = state[f"{prefix}.weight"].astype(np.float64) / np.sqrt(variance + BN_EPS)
    shift = state[f"{prefix}.bias"] - state[f"{prefix}.running_mean"].astype(np.float64) * scale
    return scale, shift


def build_graph(spec: UNetSpec, state: dict[str, np.ndarray]) -> bytes:
    """``UNetSeparator.network`` after its ``FrequencyNorm`` as a serialised ONNX graph (opset 17).

    Args:
        spec: the U-Net's settings.
        state: its weights (``read_unet``).

    Returns:
        The graph, input ``x`` (batch, channels, max_bins, frames) with frames a multiple of 2**depth, output
        ``logits`` (batch, sources * channels, max_bins, frames).
    """
    nodes: list[bytes] = []
    weights: list[bytes] = []

    def const(name: str, array: np.ndarray) -> str:
        weights.append(onnx_writer.tensor(name, array))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(onnx_writer.node(op, inputs, [output], output, **attrs))
        return output

    pads, stride = [KERNEL // 2] * 4, [2, 2]
    x, skips = "x", ["x"]
    for i in range(spec.depth):  # Conv -> BatchNorm (folded) -> LeakyReLU
        p = f"down.{i}"
        scale, shift = _batchnorm(state, f"{p}.norm")
        weight = state[f"{p}.conv.weight"] * scale[:, None, None, None]
        bias = state[f"{p}.conv.bias"] * scale + shift
        x = node("Conv", [x, const(f"{p}.w", weight), const(f"{p}.b", bias)], f"{p}.conv",
                 kernel_shape=[KERNEL, KERNEL], strides=stride, pads=pads)
        x = node("LeakyRelu", [x], f"{p}.out", alpha=LEAKY_SLOPE)
        skips.append(x)
    skips.pop()  # the deepest output is the decoder's input, not a skip
    for j in range(spec.depth):  # ConvTranspose -> ReLU -> BatchNorm (scale, shift) -> concat with the skip
        p = f"up.{j}"
        scale, shift = _batchnorm(state, f"{p}.norm")
        x = node("ConvTranspose", [x, const(f"{p}.w", state[f"{p}.conv.weight"]), const(f"{p}.b", state[f"{p}.conv.bias"])],
                 f"{p}.conv", kernel_shape=[KERNEL, KERNEL], strides=stride, pads=pads, output_padding=[1, 1])
        x = node("Relu", [x], f"{p}.relu")
        x = node("Mul", [x, const(f"{p}.scale", scale.reshape(1, -1, 1, 1))], f"{p}.scaled")
        x = node("Add", [x, const(f"{p}.shift", shift.reshape(1, -1, 1, 1))], f"{p}.norm")
        x = node("Concat", [x, skips.pop()], f"{p}.out", axis=1)
    node("Conv", [x, const("head.w", state["head.weight"]), const("head.b", state["head.bias"])], "logits",
         kernel_shape=[HEAD_KERNEL, HEAD_KERNEL], pads=[HEAD_KERNEL // 2] * 4)
    outputs = len(spec.sources) * spec.channels
    return onnx_writer.model(
        nodes, "stemforge-unet", [onnx_writer.value_info("x", ["batch", spec.channels, spec.max_bins, "frames"])],
        [onnx_writer.value_info("logits", ["batch", outputs, spec.max_bins, "frames"])], weights, OPSET, IR_VERSION,
        PRODUCER)


def build_refiner_graph(spec: UNetSpec, state: dict[str, np.ndarray]) -> bytes:
    """``models.refiner.LowBandRefiner`` after its ``features`` as a serialised ONNX graph (opset 17).

    Args:
        spec: the U-Net's settings (``refine_bins`` > 0).
        state: its weights (``read_unet``).

    Returns:
        The graph, input ``features`` (batch, refine_planes(sources), frames, refine_bins), output ``delta`` (batch,
        sources, frames, refine_bins): the corrections of the logits ``log |Y_j|``.
    """
    nodes: list[bytes] = []
    weights: list[bytes] = []
    x = "features"
    for i in range(spec.refine_layers):
        last = i == spec.refine_layers - 1
        prefix = "refiner.head" if last else f"refiner.body.{2 * i}"
        dilation = 1 if last else 2**i
        weights.append(onnx_writer.tensor(f"{prefix}.w", state[f"{prefix}.weight"]))
        weights.append(onnx_writer.tensor(f"{prefix}.b", state[f"{prefix}.bias"]))
        out = "delta" if last else f"{prefix}.conv"
        nodes.append(onnx_writer.node("Conv", [x, f"{prefix}.w", f"{prefix}.b"], [out], out,
                                      kernel_shape=[HEAD_KERNEL, HEAD_KERNEL], dilations=[1, dilation],
                                      pads=[1, dilation, 1, dilation]))
        if not last:
            x = f"{prefix}.relu"
            nodes.append(onnx_writer.node("Relu", [out], [x], x))
    sources = len(spec.sources)
    return onnx_writer.model(
        nodes, "stemforge-refiner",
        [onnx_writer.value_info("features", ["batch", refine_planes(sources), "frames", spec.refine_bins])],
        [onnx_writer.value_info("delta", ["batch", sources, "frames", spec.refine_bins])], weights, OPSET, IR_VERSION,
        PRODUCER)
