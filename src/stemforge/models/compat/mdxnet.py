"""MDX-Net (KUIELAB, MDX'21; the UVR community ONNX models): a network on fixed-size complex spectrogram
chunks, run by onnxruntime; the STFT framing around the graph is ours.

A chunk is ``hop * (dim_t - 1)`` samples; its STFT (``n_fft``, ``hop``, Hann, centred) is cut to the first
``dim_f`` bins and laid out as 4 channels (left re, left im, right re, right im). The graph returns the
target's spectrogram in the same layout; bins above ``dim_f`` are zero. As in the reference demixer, chunks
overlap by ``n_fft`` samples and only their centres (``n_fft // 2`` trimmed each side) are kept.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.nn import functional as F

from stemforge.errors import ModelError
from stemforge.dsp.spectral import inverse_stft
from stemforge.models.base import ModelConfig, StemModel


@dataclasses.dataclass
class MDXNetConfig(ModelConfig):
    sources: tuple[str, ...] = ("vocals", "instrumental")
    onnx_path: str = ""
    n_fft: int = 6144
    hop: int = 1024
    dim_f: int = 2048
    dim_t: int = 256
    #: Output gain applied to the target (UVR's "compensate"); 1.0 = none.
    compensate: float = 1.0


def _graph_tensors(graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        yield from _attribute_tensors(node.attribute)


def _attribute_tensors(attributes: Any) -> Iterator[Any]:
    for attribute in attributes:
        if attribute.HasField("t"):
            yield attribute.t
        yield from attribute.tensors
        if attribute.HasField("sparse_tensor"):
            yield from (attribute.sparse_tensor.values, attribute.sparse_tensor.indices)
        for sparse in attribute.sparse_tensors:
            yield from (sparse.values, sparse.indices)
        if attribute.HasField("g"):
            yield from _graph_tensors(attribute.g)
        for graph in attribute.graphs:
            yield from _graph_tensors(graph)


def check_onnx_file(path: str | Path) -> None:
    """Refuse an ONNX file that is not a protobuf graph, or whose external data lies outside its folder.

    onnxruntime reads external tensor data from the ``location`` each tensor names; a hostile graph could name
    ``../../home/user/.ssh/id_rsa``, an absolute path, a symlink out of the folder, or onnxruntime's in-memory
    address syntax. Only regular files inside the graph's own folder are accepted (recent onnxruntime versions
    check this too; older ones do not).

    Args:
        path: the ``.onnx`` file.

    Raises:
        ModelError: one line saying what is wrong.
    """
    try:
        import onnx
    except ImportError as exc:
        raise ModelError("reading ONNX graphs needs the onnx package (pip install 'stemforge[mdx]')") from exc
    path = Path(path)
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ModelError(f"not an ONNX graph: {path}") from exc
    folder = path.resolve().parent
    tensors = list(_graph_tensors(model.graph))
    for function in model.functions:
        tensors += _attribute_tensors(a for node in function.node for a in node.attribute)
    for tensor in tensors:
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        target = (folder / location).resolve()
        if (not location or Path(location).is_absolute() or ".." in Path(location).parts
                or not target.is_relative_to(folder) or not target.is_file()):
            shown = "".join(ch if ch.isprintable() else "?" for ch in location)[:100]
            raise ModelError(f"ONNX graph {path} reads external data from {shown!r}: only files inside its own folder are allowed")


class MDXNetONNX(StemModel):
    """mix (B, 2, T) -> (B, 2, 2, T): the graph's target and its complement (mix - target)."""

    architecture = "mdxnet_onnx"
    config_class = MDXNetConfig
    mask_based = False
    trainable = False

    def __init__(self, config: MDXNetConfig, providers: list[str] | None = None) -> None:
        super().__init__(config)
        import onnxruntime as ort

        if config.channels != 2:
            raise ModelError("MDX-Net graphs are stereo")
        check_onnx_file(config.onnx_path)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(config.onnx_path, options, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelError(f"cannot load ONNX graph {config.onnx_path}: {str(exc).splitlines()[0]}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.default_segment = self.chunk_size / config.sample_rate  # type: ignore[misc]

    @property
    def chunk_size(self) -> int:
        return self.config.hop * (self.config.dim_t - 1)

    def _spec(self, chunks: torch.Tensor) -> torch.Tensor:
        """chunks: (N, 2, chunk) -> (N, 4, dim_f, dim_t) real."""
        c = self.config
        window = torch.hann_window(c.n_fft, device=chunks.device)
        z = torch.stft(chunks.reshape(-1, chunks.shape[-1]), c.n_fft, c.hop, window=window, center=True, return_complex=True)
        x = torch.view_as_real(z).permute(0, 3, 1, 2)  # (N*2, 2, F, T)
        return x.reshape(-1, 4, x.shape[-2], x.shape[-1])[:, :, : c.dim_f]

    def _ispec(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 4, dim_f, dim_t) -> (N, 2, chunk)."""
        c = self.config
        bins = c.n_fft // 2 + 1
        x = F.pad(x, (0, 0, 0, bins - x.shape[-2]))
        x = x.reshape(-1, 2, bins, x.shape[-1]).permute(0, 2, 3, 1).contiguous()
        window = torch.hann_window(c.n_fft, device=x.device)
        wave = inverse_stft(torch.view_as_complex(x), c.n_fft, c.hop, window, self.chunk_size)
        return wave.reshape(-1, 2, self.chunk_size)

    def run_graph(self, spec: torch.Tensor) -> torch.Tensor:
        """(N, 4, dim_f, dim_t) -> same, through onnxruntime one chunk at a time (graphs often fix batch 1)."""
        outs = [self.session.run(None, {self.input_name: s[None].detach().cpu().numpy().astype(np.float32)})[0]
                for s in spec]
        return torch.from_numpy(np.concatenate(outs)).to(spec.device)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix: (batch, 2, time) -> (batch, 2 sources, 2, time)."""
        c = self.config
        batch, channels, length = mix.shape
        trim = c.n_fft // 2
        step = self.chunk_size - 2 * trim
        if step <= 0:
            raise ModelError(f"MDX-Net chunk ({self.chunk_size} samples) must exceed n_fft ({c.n_fft})")
        pad = step - length % step
        padded = F.pad(mix.float(), (trim, pad + trim))
        chunks = padded.unfold(-1, self.chunk_size, step)  # (B, 2, n, chunk)
        count = chunks.shape[2]
        chunks = chunks.permute(0, 2, 1, 3).reshape(-1, channels, self.chunk_size)
        target = self._ispec(self.run_graph(self._spec(chunks)))[..., trim:-trim]  # (B*n, 2, step)
        target = target.reshape(batch, count, channels, step).permute(0, 2, 1, 3).reshape(batch, channels, -1)
        target = (target[..., :length] * c.compensate).to(mix.dtype)
        return torch.stack([target, mix - target], dim=1)


def mdxnet_config_from(path: Path, settings: dict[str, Any]) -> MDXNetConfig:
    """Config from the graph's input shape plus sidecar settings (n_fft and target are not in the graph)."""
    import onnxruntime as ort

    check_onnx_file(path)
    try:
        shape = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0].shape
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot load ONNX graph {path}: {str(exc).splitlines()[0]}") from exc
    if len(shape) != 4 or shape[1] != 4:
        raise ModelError(f"{path} is not an MDX-Net graph (input shape {shape}, expected (batch, 4, dim_f, dim_t))")
    if "n_fft" not in settings:
        raise ModelError(f"MDX-Net graph {path.name} needs its STFT size: put {path.with_suffix('.json').name} next to it "
                         'with e.g. {"n_fft": 6144, "target": "vocals"}')
    dim_f = settings.get("dim_f", shape[2] if isinstance(shape[2], int) else None)
    dim_t = settings.get("dim_t", shape[3] if isinstance(shape[3], int) else None)
    if dim_f is None or dim_t is None:
        raise ModelError(f"MDX-Net graph {path.name} has dynamic dim_f/dim_t: give them in {path.with_suffix('.json').name}")
    target = str(settings.get("target", "vocals"))
    complement = str(settings.get("complement", "instrumental" if target == "vocals" else f"no_{target}"))
    return MDXNetConfig(sources=(target, complement), sample_rate=int(settings.get("sample_rate", 44100)),
                        onnx_path=str(path), n_fft=int(settings["n_fft"]), hop=int(settings.get("hop", 1024)),
                        dim_f=int(dim_f), dim_t=int(dim_t), compensate=float(settings.get("compensate", 1.0)))
