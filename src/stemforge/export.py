"""Inference backends: ONNX export of a model's network, an onnxruntime-backed model, and ``torch.compile``.

Only the learned part (``NeuralStemModel.network``) goes into the ONNX graph; the STFT, padding and mask
application stay in torch (``analyse`` / ``synthesise``), so ``OnnxModel`` keeps the model contract:

    OnnxModel.forward(mix: (batch, channels, time)) -> (batch, sources, channels, time)

and the separation engine can use it unchanged. ``load_backend(model, "torch" | "onnx" | "compile")`` is the
one entry point the CLI uses (``separate --backend``).

Exports for ``--backend onnx`` are cached per user (``onnx_cache_dir()``: ``$STEMFORGE_CACHE/onnx`` or the
platform's user cache folder, never a shared temp folder), each graph with its sha256 beside it. A cached
graph is used only if its bytes hash to the recorded value and onnxruntime loads those very bytes; anything
else (a swapped, truncated or hand-edited graph) is exported again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from stemforge.errors import ModelError
from stemforge.models.base import ARCHITECTURES, StemModel
from stemforge.models.neural import NeuralStemModel

BACKENDS = ("torch", "onnx", "compile")
OPSET = 17
_META_KEY = "stemforge"

logger = logging.getLogger(__name__)


class _Network(torch.nn.Module):
    """The exported graph: ``model.network`` as a module of its own."""

    def __init__(self, model: NeuralStemModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> Any:
        return self.model.network(*inputs)


def _import_onnx() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ModelError("the ONNX backend needs onnx and onnxruntime: pip install 'stemforge[onnx]'") from exc
    return onnx, onnxruntime


def _require_neural(model: StemModel) -> NeuralStemModel:
    if not isinstance(model, NeuralStemModel):
        raise ModelError(f"model {model.architecture!r} has no network to export (only neural models run on ONNX); use the torch backend")
    return model


def _io_names(model: NeuralStemModel, example: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], list[str], list[str]]:
    with torch.no_grad():
        inputs, _ = model.analyse(example)
        outputs = model.network(*inputs)
    count = len(outputs) if isinstance(outputs, tuple) else 1
    return inputs, [f"input_{i}" for i in range(len(inputs))], [f"output_{i}" for i in range(count)]


def export_onnx(model: StemModel, path: str | os.PathLike[str], example_seconds: float = 2.0, opset: int = OPSET) -> Path:
    """Export ``model.network`` to ``path`` (ONNX, batch and time axes dynamic); returns the path.

    The file's metadata carries the architecture and config so ``load_onnx`` rebuilds the torch side alone.
    """
    onnx, _ = _import_onnx()
    # Exported from a CPU copy: the caller's model keeps its device and training mode.
    neural = copy.deepcopy(_require_neural(model)).cpu().eval()
    example = torch.randn(1, neural.channels, max(1, int(example_seconds * neural.sample_rate)))
    inputs, input_names, output_names = _io_names(neural, example)
    # Every axis after the feature axes may change length: batch, and the time/frame axis (last).
    dynamic = {name: {0: "batch", t.dim() - 1: f"{name}_time"} for name, t in zip(input_names, inputs)}
    dynamic.update({name: {0: "batch", -1: f"{name}_time"} for name in output_names})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Network(neural), inputs, str(path), input_names=input_names, output_names=output_names,
            dynamic_axes=_fix_negative_axes(dynamic, neural, inputs), opset_version=opset, dynamo=False,
        )
    graph = onnx.load(str(path))
    meta = {"architecture": neural.architecture, "config": neural.config.to_dict()}
    graph.metadata_props.add(key=_META_KEY, value=json.dumps(meta))
    onnx.save(graph, str(path))
    return path


def _fix_negative_axes(dynamic: dict[str, dict[int, str]], model: NeuralStemModel, inputs: tuple[torch.Tensor, ...]) -> dict[str, dict[int, str]]:
    """The legacy exporter wants non-negative axis indices; output ranks come from one forward pass."""
    with torch.no_grad():
        outputs = model.network(*inputs)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    fixed = {}
    for name, axes in dynamic.items():
        if name.startswith("output_"):
            rank = outputs[int(name.split("_")[1])].dim()
            axes = {(a if a >= 0 else rank + a): label for a, label in axes.items()}
        fixed[name] = axes
    return fixed


class OnnxModel(StemModel):
    """A ``StemModel`` whose network runs in onnxruntime (CPU) and whose STFT/masking runs in torch."""

    def __init__(self, model: NeuralStemModel, onnx_path: str | os.PathLike[str], threads: int | None = None,
                 graph: bytes | None = None) -> None:
        """Args:
            model: the torch model whose ``network`` the graph is.
            onnx_path: the graph file (kept as ``onnx_path``; read unless ``graph`` is given).
            threads: onnxruntime intra-op threads (default: torch's thread count).
            graph: the graph's bytes, already read and checked by the caller (so the file is not read again).
        """
        _, ort = _import_onnx()
        super().__init__(model.config)
        self.architecture = model.architecture  # instance attribute: the class itself stays unregistered
        self.mask_based = model.mask_based
        self.default_segment = model.default_segment
        self.default_overlap = model.default_overlap
        self.torch_model = model.eval()
        self.onnx_path = Path(onnx_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(graph if graph is not None else str(self.onnx_path), options,
                                            providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    @property
    def wiener_iterations(self) -> int:
        return self.torch_model.wiener_iterations

    @wiener_iterations.setter
    def wiener_iterations(self, value: int) -> None:
        self.torch_model.wiener_iterations = value

    def num_parameters(self) -> int:
        return self.torch_model.num_parameters()

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix: (batch, channels, time) -> (batch, sources, channels, time)."""
        model = self.torch_model
        model.check_input(mix)
        with torch.no_grad():
            inputs, context = model.analyse(mix)
            feeds = {name: t.detach().float().cpu().numpy() for name, t in zip(self.input_names, inputs)}
            results = [torch.from_numpy(r).to(mix.device) for r in self.session.run(None, feeds)]
            outputs = results[0] if len(results) == 1 else tuple(results)
            return model.postfilter(model.synthesise(outputs, context), mix)


def load_onnx(path: str | os.PathLike[str], threads: int | None = None) -> OnnxModel:
    """An ``OnnxModel`` from an exported file alone (the torch side is rebuilt from the stored config)."""
    onnx, _ = _import_onnx()
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"ONNX model not found: {path}")
    try:
        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        meta = json.loads(props[_META_KEY])
        cls = ARCHITECTURES[meta["architecture"]]
        model = cls(cls.config_class.from_dict(meta["config"]))
    except Exception as exc:  # noqa: BLE001 - any failure here means a file we cannot use
        raise ModelError(f"not a stemforge ONNX export (corrupt or wrong format): {path}") from exc
    return OnnxModel(_require_neural(model), path, threads)


def onnx_cache_dir() -> Path:
    """Where ``--backend onnx`` keeps its exports: private to the user, not a shared temp folder.

    Returns:
        ``$STEMFORGE_CACHE/onnx`` if that variable is set, else ``<user cache dir>/stemforge/onnx``
        (``~/.cache/stemforge/onnx`` on Linux, from platformdirs).
    """
    env = os.environ.get("STEMFORGE_CACHE")
    if env:
        return Path(env).expanduser() / "onnx"
    import platformdirs

    return platformdirs.user_cache_path("stemforge") / "onnx"


def _cache_path(model: NeuralStemModel) -> Path:
    """Exports are cached per weights + config, so a model is exported once per machine."""
    from stemforge.checkpoint import weights_sha256

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    key = hashlib.sha256((weights_sha256(state) + json.dumps(model.config.to_dict(), sort_keys=True)).encode()).hexdigest()
    return onnx_cache_dir() / f"{model.architecture}-{key[:16]}.onnx"


def _hash_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _export_to_cache(model: NeuralStemModel, path: Path) -> bytes:
    """Export into ``path`` and its hash file, each written to a temporary file and renamed; returns the graph."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporaries = []
    try:
        for suffix in (".onnx", ".sha256"):
            fd, name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=suffix, dir=path.parent)
            os.close(fd)
            temporaries.append(name)
        tmp_graph, tmp_hash = temporaries
        export_onnx(model, tmp_graph)
        graph = Path(tmp_graph).read_bytes()
        Path(tmp_hash).write_text(hashlib.sha256(graph).hexdigest() + "\n")
        os.replace(tmp_graph, path)
        os.replace(tmp_hash, _hash_path(path))
    finally:
        for name in temporaries:
            if os.path.exists(name):
                os.unlink(name)
    return graph


def _cached_graph(path: Path) -> bytes | None:
    """The cached graph's bytes if they match the recorded sha256, else None (with the reason logged)."""
    try:
        graph = path.read_bytes()
        recorded = _hash_path(path).read_text().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        logger.warning("cannot read cached ONNX graph %s (%s); exporting it again", path, exc.strerror)
        return None
    if hashlib.sha256(graph).hexdigest() != recorded:
        logger.warning("cached ONNX graph %s does not match its recorded sha256; exporting it again", path)
        return None
    return graph


def onnx_backend(model: StemModel, threads: int | None = None) -> OnnxModel:
    """``model`` running in onnxruntime, from the user's export cache (exported on first use or when the cached
    graph is missing, fails its hash check or fails to load).

    Args:
        model: a neural model (classical models have no network to export).
        threads: onnxruntime intra-op threads (default: torch's thread count).

    Returns:
        An ``OnnxModel`` with the model's Wiener setting.

    Raises:
        ModelError: the model has no network, or a freshly exported graph does not load.
    """
    neural = _require_neural(model)
    path = _cache_path(neural)
    graph = _cached_graph(path)
    onnx_model = None
    if graph is not None:
        try:
            onnx_model = OnnxModel(neural, path, threads, graph=graph)
            logger.debug("using cached ONNX graph %s", path)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types for a bad graph
            logger.warning("cached ONNX graph %s does not load (%s); exporting it again", path,
                           str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if onnx_model is None:
        logger.debug("exporting %s to %s", neural.architecture, path)
        graph = _export_to_cache(neural, path)
        try:
            onnx_model = OnnxModel(neural, path, threads, graph=graph)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"the ONNX export of {neural.architecture} does not load in onnxruntime: "
                             f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    onnx_model.wiener_iterations = neural.wiener_iterations
    return onnx_model


def compile_model(model: StemModel) -> StemModel:
    """``torch.compile`` the network of conv/transformer models; recurrent and classical models stay eager
    (compiling LSTMs or numpy code brings nothing on CPU)."""
    if not isinstance(model, NeuralStemModel) or model.architecture in ("bilstm",):
        return model
    try:
        model.network = torch.compile(model.network, dynamic=True)  # type: ignore[method-assign]
    except Exception as exc:  # noqa: BLE001 - compilation is an optimisation: fall back to eager
        warnings.warn(f"torch.compile unavailable ({exc}); running eagerly")
    return model


def load_backend(model: StemModel, backend: str) -> StemModel:
    """``model`` ready to run on ``backend``: "torch" (as is), "onnx" (onnxruntime CPU) or "compile"."""
    if backend == "torch":
        return model
    if backend == "compile":
        return compile_model(model)
    if backend == "onnx":
        return onnx_backend(model)
    raise ModelError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
