"""ONNX export and inference backends: onnxruntime output equals PyTorch's, bad input is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stemforge.errors import ModelError
from stemforge.export import OnnxModel, export_onnx, load_backend, load_onnx
from stemforge.models import build

pytest.importorskip("onnxruntime")

ARCHITECTURES = ["unet", "bilstm", "lstm-causal", "bsroformer", "melroformer", "hybrid"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_onnx_equals_torch(name: str, tmp_path: Path) -> None:
    model = build(name).eval()
    path = export_onnx(model, tmp_path / f"{name}.onnx", example_seconds=0.25)
    runtime = OnnxModel(model, path)
    for batch, length in ((1, 1), (2, 4321), (1, 20000)):  # other lengths than the export example
        mix = torch.randn(batch, 2, length)
        with torch.no_grad():
            expected = model(mix)
        got = runtime(mix)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, atol=1e-4), float((got - expected).abs().max())


def test_export_leaves_the_model_alone(tmp_path: Path) -> None:
    model = build("hybrid").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, tmp_path / "h.onnx", example_seconds=0.25)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_onnx_file_alone_rebuilds_the_model(tmp_path: Path) -> None:
    model = build("bsroformer", channels=1, sources=("vocals", "accompaniment")).eval()
    path = export_onnx(model, tmp_path / "m.onnx", example_seconds=0.25)
    loaded = load_onnx(path)
    assert loaded.sources == ["vocals", "accompaniment"] and loaded.channels == 1
    assert loaded.architecture == "bsroformer" and loaded.num_parameters() == model.num_parameters()
    mix = torch.randn(1, 1, 5000)
    with torch.no_grad():
        assert torch.allclose(loaded(mix), model(mix), atol=1e-4)


def test_load_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEMFORGE_CACHE", str(tmp_path))
    model = build("unet").eval()
    assert load_backend(model, "torch") is model
    runtime = load_backend(model, "onnx")
    assert isinstance(runtime, OnnxModel) and len(list(tmp_path.glob("*.onnx"))) == 1
    assert load_backend(model, "onnx").onnx_path == runtime.onnx_path  # cached, not exported twice
    mix = torch.randn(1, 2, 3000)
    with torch.no_grad():
        assert torch.allclose(runtime(mix), model(mix), atol=1e-4)
    runtime.wiener_iterations = 1
    model.wiener_iterations = 1
    with torch.no_grad():
        assert torch.allclose(runtime(mix), model(mix), atol=1e-4)
    with pytest.raises(ModelError, match="unknown backend"):
        load_backend(model, "tensorrt")


def test_classical_models_have_no_onnx_backend() -> None:
    with pytest.raises(ModelError, match="torch backend"):
        load_backend(build("hpss"), "onnx")
    classical = build("hpss")
    assert load_backend(classical, "compile") is classical


def test_bad_onnx_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_onnx(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"definitely not protobuf" * 10)
    with pytest.raises(ModelError, match="not a stemforge ONNX export"):
        load_onnx(junk)


@pytest.mark.slow
def test_compiled_backend_matches_eager() -> None:
    model = build("unet").eval()
    mix = torch.randn(1, 2, 6000)
    with torch.no_grad():
        expected = model(mix)
        compiled = load_backend(build("unet").eval(), "compile")
        compiled.load_state_dict(model.state_dict())
        assert torch.allclose(compiled(mix), expected, atol=1e-4)
