"""ONNX export and inference backends: onnxruntime output equals PyTorch's, bad input is refused."""

from __future__ import annotations

import hashlib
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
    assert isinstance(runtime, OnnxModel) and len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
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


def test_onnx_cache_is_per_user_not_tmp(monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    import platformdirs

    from stemforge.export import onnx_cache_dir

    monkeypatch.delenv("STEMFORGE_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    folder = onnx_cache_dir()
    assert folder == platformdirs.user_cache_path("stemforge") / "onnx"
    assert folder.is_relative_to(Path.home()) and not folder.is_relative_to(tempfile.gettempdir())
    from stemforge.export import _cache_path

    assert _cache_path(build("unet")).parent == folder


def _cached(tmp_path: Path) -> Path:
    (graph,) = tmp_path.rglob("*.onnx")
    return graph


def test_poisoned_cached_graph_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """A different valid graph under the cached name (here: the same network with zeroed weights) is not run."""
    monkeypatch.setenv("STEMFORGE_CACHE", str(tmp_path))
    model = build("unet").eval()
    load_backend(model, "onnx")
    cached = _cached(tmp_path)
    poison = build("unet").eval()
    with torch.no_grad():
        for p in poison.parameters():
            p.zero_()
    export_onnx(poison, cached, example_seconds=0.25)  # a valid graph with the same name, other outputs
    mix = torch.randn(1, 2, 3000)
    with caplog.at_level("WARNING", logger="stemforge.export"):
        runtime = load_backend(model, "onnx")
    with torch.no_grad():
        expected = model(mix)
        assert torch.allclose(runtime(mix), expected, atol=1e-4)
    assert "does not match its recorded sha256" in caplog.text
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == cached.with_name(cached.name + ".sha256").read_text().strip()


def test_truncated_cached_graph_is_reexported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEMFORGE_CACHE", str(tmp_path))
    model = build("unet").eval()
    load_backend(model, "onnx")
    cached = _cached(tmp_path)
    data = cached.read_bytes()
    cached.write_bytes(data[: len(data) // 2])
    runtime = load_backend(model, "onnx")
    mix = torch.randn(1, 2, 3000)
    with torch.no_grad():
        assert torch.allclose(runtime(mix), model(mix), atol=1e-4)
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == cached.with_name(cached.name + ".sha256").read_text().strip()


def test_graph_that_fails_to_load_is_reexported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even with a matching recorded hash (e.g. written by an older onnxruntime-incompatible run) a graph
    onnxruntime refuses is exported again rather than breaking the backend for good."""
    monkeypatch.setenv("STEMFORGE_CACHE", str(tmp_path))
    model = build("unet").eval()
    load_backend(model, "onnx")
    cached = _cached(tmp_path)
    junk = b"not an onnx graph"
    cached.write_bytes(junk)
    cached.with_name(cached.name + ".sha256").write_text(hashlib.sha256(junk).hexdigest())
    runtime = load_backend(model, "onnx")
    assert cached.read_bytes() != junk and runtime.session is not None
