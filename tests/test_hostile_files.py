"""Hostile model files: each one is refused with a one-line error through ``stemforge separate -n FILE`` and
runs nothing.

Every payload that could run code would create a canary file (``touch`` through ``os.system``, or
``builtins.open(..., "w")``); the tests assert the canary never appears. The corpus is built here, per test, so
each payload points at its own canary in ``tmp_path``.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import shlex
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from onnx_fixtures import external_data_graph
from stemforge.cli import main
from stemforge.errors import ModelError
from stemforge.models.compat import load_pretrained

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- payloads (pickled by torch.save)


class Shell:
    """Unpickles as ``os.system("touch CANARY")``."""

    def __init__(self, canary: Path) -> None:
        self.command = f"touch {shlex.quote(str(canary))}"

    def __reduce__(self):
        return os.system, (self.command,)


class OpenForWrite:
    """Unpickles as ``builtins.open(CANARY, "w")``: creates the canary without a shell."""

    def __init__(self, canary: Path) -> None:
        self.path = str(canary)

    def __reduce__(self):
        return builtins.open, (self.path, "w")


def _torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


class Nested:
    """``torch.storage._load_from_bytes(inner)``: a second, unrestricted ``torch.load`` of an inner pickle."""

    def __init__(self, inner: object) -> None:
        self.payload = _torch_bytes(inner)

    def __reduce__(self):
        return torch.storage._load_from_bytes, (self.payload,)


class FromTypeV2:
    """``torch._tensor._rebuild_from_type_v2(func, type, args, state)`` calls ``func(*args)``."""

    def __init__(self, inner: object) -> None:
        self.payload = _torch_bytes(inner)

    def __reduce__(self):
        return torch._tensor._rebuild_from_type_v2, (torch.storage._load_from_bytes, torch.Tensor, (self.payload,), {})


class TensorHooks:
    """``torch._utils._rebuild_tensor_v2`` with a nested payload as its backward-hooks argument."""

    def __init__(self, inner: object) -> None:
        self.hook = Nested(inner)

    def __reduce__(self):
        storage = torch.zeros(2).untyped_storage()
        return torch._utils._rebuild_tensor_v2, (storage, 0, (2,), (1,), False, OrderedDict(hook=self.hook))


class ParameterState:
    """``torch._utils._rebuild_parameter_with_state`` with a nested payload in the attribute state it sets."""

    def __init__(self, inner: object) -> None:
        self.state = {"evil": Nested(inner)}

    def __reduce__(self):
        return torch._utils._rebuild_parameter_with_state, (torch.zeros(2), False, OrderedDict(), self.state)


PAYLOADS: dict[str, Callable[[Path], object]] = {
    "direct": Shell,
    "direct-open": OpenForWrite,
    "nested": lambda canary: Nested(Shell(canary)),
    "nested-open": lambda canary: Nested(OpenForWrite(canary)),
    "from-type-v2": lambda canary: FromTypeV2(Shell(canary)),
    "tensor-hooks": lambda canary: TensorHooks(Shell(canary)),
    "parameter-state": lambda canary: ParameterState(Shell(canary)),
}


# ---------------------------------------------------------------- hostile files, one builder per format


def _demucs_th(folder: Path, payload: object) -> Path:
    path = folder / "evil.th"
    torch.save({"klass": None, "args": (), "kwargs": {"evil": payload}, "state": {}, "training_args": {}}, path)
    return path


def _openunmix_pth(folder: Path, payload: object) -> Path:
    path = folder / "vocals.pth"
    torch.save({"fc1.weight": torch.zeros(2, 2), "evil": payload}, path)
    return path


def _roformer_ckpt(folder: Path, payload: object) -> Path:
    path = folder / "evil.ckpt"
    torch.save({"state_dict": {"layers.0.0.x": torch.zeros(1)}, "evil": payload}, path)
    (folder / "evil.yaml").write_text("model: {dim: 8, depth: 1}\naudio: {}\n")
    return path


def _disguised_safetensors(folder: Path, payload: object) -> Path:
    """A pickle under a checkpoint name: the bundled model's torch-free path (``stemforge.lite``) reads it first."""
    path = folder / "evil.safetensors"
    torch.save({"norm.shift": torch.zeros(1), "evil": payload}, path)
    return path


PICKLE_FORMATS = {"th": _demucs_th, "pth": _openunmix_pth, "ckpt": _roformer_ckpt, "safetensors": _disguised_safetensors}


def _torchscript(suffix: str) -> Callable[[Path, Path], Path]:
    """A TorchScript archive (torch.load would hand it to torch.jit.load, which runs its code) under a model name."""

    def build(folder: Path, canary: Path) -> Path:
        path = folder / f"scripted{suffix}"
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
        if suffix == ".ckpt":
            path.with_suffix(".yaml").write_text("model: {dim: 8, depth: 1}\naudio: {}\n")
        return path

    return build


def _yaml_file(tag: str, name: str) -> Callable[[Path, Path], Path]:
    def build(folder: Path, canary: Path) -> Path:
        apply = {"system": f"!!python/object/apply:os.system [{json.dumps('touch ' + shlex.quote(str(canary)))}]",
                 "open": f"!!python/object/apply:builtins.open [{json.dumps(str(canary))}, w]",
                 "new": f"!!python/object/new:subprocess.Popen [[touch, {json.dumps(str(canary))}]]"}[tag]
        path = folder / name
        if name == "bag.yaml":  # a demucs bag of models
            path.write_text(f"models: [{apply}]\n")
        else:  # a RoFormer config next to its checkpoint
            path.write_text(f"model:\n  dim: {apply}\naudio: {{}}\n")
            torch.save({"layers.0.0.x": torch.zeros(1)}, path.with_suffix(".ckpt"))
        return path

    return build


def _onnx_graph(folder: Path, location: str | None) -> Path:
    """A valid MDX-Net-shaped graph whose one initializer is external data at ``location``."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path = external_data_graph(folder, location)
    path.with_suffix(".json").write_text(json.dumps({"n_fft": 14, "hop": 4}))
    return path


def _onnx_outside(kind: str) -> Callable[[Path, Path], Path]:
    def build(folder: Path, canary: Path) -> Path:
        secret = folder.parent / "secret.bin"  # a readable file outside the model's folder
        secret.write_bytes(np.ones(256, np.float32).tobytes())
        if kind == "dotdot":
            return _onnx_graph(folder, "../secret.bin")
        if kind == "absolute":
            return _onnx_graph(folder, str(secret))
        (folder / "weights.bin").symlink_to(secret)
        return _onnx_graph(folder, "weights.bin")

    return build


def _onnx_pickle(folder: Path, canary: Path) -> Path:
    path = folder / "graph.onnx"
    torch.save({"evil": Nested(Shell(canary))}, path)
    path.with_suffix(".json").write_text(json.dumps({"n_fft": 14}))
    return path


def _safetensors_raw(data: bytes) -> Callable[[Path, Path], Path]:
    def build(folder: Path, canary: Path) -> Path:
        path = folder / "evil.safetensors"
        path.write_bytes(data)
        return path

    return build


def _safetensors_header(header: bytes) -> Callable[[Path, Path], Path]:
    return _safetensors_raw(len(header).to_bytes(8, "little") + header)


def _meta_header(meta: object, tensors: dict | None = None) -> bytes:
    return json.dumps({"__metadata__": {"stemforge": json.dumps(meta)}, **(tensors or {})}).encode()


_GOOD_META = {"format": "stemforge-checkpoint/1", "architecture": "unet", "config": {}, "weights_sha256": ""}
_DEEP_UNET = {"sources": ["a"], "sample_rate": 44100, "channels": 2, "n_fft": 2048, "hop": 512, "max_bins": 512,
              "depth": 10**15, "base_channels": 8, "dropout": 0.0}

OTHER_FILES: dict[str, Callable[[Path, Path], Path]] = {
    "th-torchscript": _torchscript(".th"),
    "pth-torchscript": _torchscript(".pth"),
    "ckpt-torchscript": _torchscript(".ckpt"),
    "bag-yaml-system": _yaml_file("system", "bag.yaml"),
    "bag-yaml-open": _yaml_file("open", "bag.yaml"),
    "roformer-yaml-system": _yaml_file("system", "evil.yaml"),
    "roformer-yaml-popen": _yaml_file("new", "evil.yaml"),
    "onnx-dotdot": _onnx_outside("dotdot"),
    "onnx-absolute": _onnx_outside("absolute"),
    "onnx-symlink": _onnx_outside("symlink"),
    "onnx-pickle": _onnx_pickle,
    "safetensors-huge-header": _safetensors_raw((2**62).to_bytes(8, "little") + b"{}"),
    "safetensors-meta-list": _safetensors_header(_meta_header([1, 2])),
    "safetensors-meta-not-json": _safetensors_header(b'{"__metadata__": {"stemforge": "{not json"}}'),
    "safetensors-config-list": _safetensors_header(_meta_header({**_GOOD_META, "config": [1]})),
    "safetensors-dunder-arch": _safetensors_header(_meta_header({**_GOOD_META, "architecture": "__class__"})),
    "safetensors-bad-offsets": _safetensors_header(_meta_header(
        _GOOD_META, {"w": {"dtype": "F32", "shape": [1000000], "data_offsets": [0, 4000000]}})),
    # a complete unet config with a depth whose 2**depth would not fit in memory: read first by the torch-free path,
    # then (its empty weights hashed as recorded) built by the torch path: both once hung computing 2**depth
    "safetensors-unet-depth": _safetensors_header(_meta_header({**_GOOD_META, "config": _DEEP_UNET})),
    "safetensors-unet-depth-hashed": _safetensors_header(_meta_header(
        {**_GOOD_META, "config": _DEEP_UNET, "weights_sha256": hashlib.sha256().hexdigest()})),
    # other architectures' configs with a depth that would take hours and gigabytes to build, their (empty) weights
    # hashed as recorded: refused by models.bounded before the build outgrows the file
    "safetensors-roformer-depth-hashed": _safetensors_header(_meta_header(
        {**_GOOD_META, "architecture": "bsroformer", "config": {"depth": 10**8},
         "weights_sha256": hashlib.sha256().hexdigest()})),
    "safetensors-bilstm-layers-hashed": _safetensors_header(_meta_header(
        {**_GOOD_META, "architecture": "bilstm", "config": {"layers": 10**8},
         "weights_sha256": hashlib.sha256().hexdigest()})),
    "safetensors-onnx-path": _safetensors_header(_meta_header(
        {**_GOOD_META, "architecture": "mdxnet_onnx", "config": {"onnx_path": "/etc/passwd"}})),
}


def _corpus() -> dict[str, Callable[[Path, Path], Path]]:
    corpus: dict[str, Callable[[Path, Path], Path]] = {}
    for fmt, write in PICKLE_FORMATS.items():
        for name, payload in PAYLOADS.items():
            corpus[f"{fmt}-{name}"] = lambda folder, canary, write=write, payload=payload: write(folder, payload(canary))
    corpus.update(OTHER_FILES)
    return corpus


CORPUS = _corpus()


@pytest.fixture()
def wav(tmp_path: Path) -> Path:
    from stemforge.audio import save

    path = tmp_path / "some.wav"
    save(path, np.zeros((2, 4410), np.float32), 44100, bits=16)
    return path


def _build(name: str, tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "model"
    folder.mkdir()
    canary = tmp_path / "canary"
    return CORPUS[name](folder, canary), canary


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_file_is_refused_in_one_line_and_runs_nothing(name, tmp_path, wav, capsys) -> None:
    path, canary = _build(name, tmp_path)
    code = main(["separate", "-q", "-n", str(path), str(wav), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert not canary.exists(), "the payload ran"
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "\x1b" not in err
    assert not (tmp_path / "out").exists()


def test_nested_payload_through_the_real_cli_process(tmp_path, wav) -> None:
    """The same, in a fresh ``stemforge`` process: exit status, stderr and the canary as a user sees them."""
    path, canary = _build("th-nested", tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-m", "stemforge", "separate", "-q", "-n", str(path), str(wav),
                           "-o", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=120)
    assert not canary.exists(), "the payload ran"
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


def test_malformed_demucs_packages_need_no_demucs(tmp_path) -> None:
    (tmp_path / "junk.th").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="cannot read demucs model package"):
        load_pretrained(tmp_path / "junk.th")
    torch.save({"klass": None, "kwargs": {}, "state": {}}, tmp_path / "none.th")
    with pytest.raises(ModelError, match="not supported"):
        load_pretrained(tmp_path / "none.th")
    torch.save({"klass": None, "kwargs": [1], "state": {}}, tmp_path / "list.th")
    with pytest.raises(ModelError, match="malformed"):
        load_pretrained(tmp_path / "list.th")
    (tmp_path / "bag.yaml").write_text("models: ['missing']\n")
    with pytest.raises(ModelError, match="missing"):
        load_pretrained(tmp_path / "bag.yaml")


def test_malformed_settings_are_one_line_errors(tmp_path) -> None:
    """Wrong types or values in a config or sidecar give a ModelError, not a ValueError traceback."""
    folder = tmp_path / "roformer"
    folder.mkdir()
    torch.save({"layers.0.0.a": torch.zeros(1), "layers.0.1.b": torch.zeros(1)}, folder / "m.ckpt")
    (folder / "m.yaml").write_text("model: {dim: 8, depth: 1, sample_rate: fast}\naudio: {}\n")
    with pytest.raises(ModelError, match="malformed contents"):
        load_pretrained(folder / "m.ckpt")
    (folder / "m.yaml").write_text("model: {dim: 8, depth: 1}\naudio: [1, 2]\n")
    with pytest.raises(ModelError, match="malformed contents"):
        load_pretrained(folder / "m.ckpt")
    graph = _onnx_graph(tmp_path / "mdx", None)
    graph.with_suffix(".json").write_text(json.dumps({"n_fft": "big"}))
    with pytest.raises(ModelError, match="malformed contents"):
        load_pretrained(graph)


class OldFraction:
    """Pickles as ``fractions.Fraction(text)``, the form Python < 3.11 wrote (real demucs packages carry it)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __reduce__(self):
        from fractions import Fraction

        return Fraction, (self.text,)


def _package_without_demucs(tmp_path: Path, monkeypatch, segment: object) -> tuple[Path, dict]:
    """A demucs-format HTDemucs package written with a stand-in ``demucs.htdemucs`` module (demucs not needed)."""
    import types

    from stemforge.models.compat.demucs_format import _demucs_config

    kwargs = {"sources": ["drums", "bass", "other", "vocals"], "audio_channels": 2, "channels": 8, "depth": 2,
              "t_layers": 1, "nfft": 4096, "samplerate": 44100, "segment": 2}
    cls, config = _demucs_config("HTDemucs", (), kwargs, tmp_path)
    torch.manual_seed(0)
    state = {k: v.half() if v.is_floating_point() else v for k, v in cls(config).state_dict().items()}
    module = types.ModuleType("demucs.htdemucs")
    klass = type("HTDemucs", (), {"__module__": "demucs.htdemucs"})
    module.HTDemucs = klass
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "demucs", types.ModuleType("demucs"))
        patch.setitem(sys.modules, "demucs.htdemucs", module)
        path = tmp_path / "pkg.th"
        torch.save({"klass": klass, "args": (), "kwargs": {**kwargs, "segment": segment}, "state": state,
                    "training_args": {"seed": 42}}, path)
    return path, state


def test_package_loads_through_stand_ins_without_demucs(tmp_path, monkeypatch) -> None:
    """Class references map to harmless stand-ins; Fractions (new and old pickled forms) and half tensors load."""
    from fractions import Fraction

    from stemforge.models.compat.htdemucs import HTDemucs

    for segment in (Fraction(39, 5), OldFraction("39/5")):
        path, state = _package_without_demucs(tmp_path, monkeypatch, segment)
        model = load_pretrained(path)
        assert isinstance(model, HTDemucs) and model.default_segment == pytest.approx(7.8)
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[key].to(value.dtype)), key
    path, _ = _package_without_demucs(tmp_path, monkeypatch, OldFraction("1e999999999"))  # a power-of-ten bomb
    with pytest.raises(ModelError, match="demucs model package"):
        load_pretrained(path)
