"""MDX-Net ONNX: our STFT framing around an onnxruntime graph (a small graph exported here)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from onnx_fixtures import external_data_graph
from stemforge.errors import ModelError
from stemforge.models.compat import load_pretrained
from stemforge.models.compat.mdxnet import MDXNetONNX, check_onnx_file

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

N_FFT, DIM_T = 1024, 32


class Gain(nn.Module):
    """Scales each of the 4 spectral channels: a linear graph whose separation we can predict exactly."""

    def __init__(self, gains: list[float]) -> None:
        super().__init__()
        self.register_buffer("gains", torch.tensor(gains).view(1, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gains


class Mixer(nn.Module):
    """A non-linear graph (1x1 conv + tanh gate) to compare onnxruntime against torch."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


def _export(module: nn.Module, path, dim_f: int) -> None:
    example = torch.randn(1, 4, dim_f, DIM_T)
    torch.onnx.export(module.eval(), (example,), str(path), input_names=["input"], output_names=["output"],
                      dynamo=False)
    path.with_suffix(".json").write_text(json.dumps({"n_fft": N_FFT, "hop": 256, "target": "vocals"}))


def test_identity_graph_reconstructs_the_mix(tmp_path) -> None:
    _export(Gain([1.0, 1.0, 1.0, 1.0]), tmp_path / "id.onnx", N_FFT // 2 + 1)
    model = load_pretrained(tmp_path / "id.onnx")
    assert isinstance(model, MDXNetONNX) and model.sources == ["vocals", "instrumental"]
    assert model.default_segment == pytest.approx(256 * (DIM_T - 1) / 44100)
    for length in (1, 5000, 44100):
        mix = torch.randn(2, 2, length) * 0.3
        out = model(mix)
        assert out.shape == (2, 2, 2, length)
        assert torch.allclose(out[:, 0], mix, atol=1e-5)
        assert torch.allclose(out.sum(dim=1), mix, atol=1e-6)


def test_channel_layout_left_right(tmp_path) -> None:
    # Channels are (L re, L im, R re, R im): gains 0.5 on left, 2 on right scale the two channels' waveforms.
    _export(Gain([0.5, 0.5, 2.0, 2.0]), tmp_path / "g.onnx", N_FFT // 2 + 1)
    model = load_pretrained(tmp_path / "g.onnx")
    mix = torch.randn(1, 2, 30000) * 0.3
    target = model(mix)[:, 0]
    assert torch.allclose(target[:, 0], 0.5 * mix[:, 0], atol=1e-5)
    assert torch.allclose(target[:, 1], 2.0 * mix[:, 1], atol=1e-5)


def test_band_limited_graph_and_onnx_matches_torch(tmp_path) -> None:
    dim_f = 128  # graph sees only the lowest 128 bins: the target is low-passed
    module = Mixer()
    _export(module, tmp_path / "m.onnx", dim_f)
    model = load_pretrained(tmp_path / "m.onnx")
    mix = torch.randn(1, 2, 20000) * 0.3
    ours = model(mix)
    spectrum = torch.fft.rfft(ours[0, 0, 0, 2000:-2000])
    cutoff = int(len(spectrum) * (dim_f + 8) / (N_FFT // 2 + 1))
    energy = spectrum.abs() ** 2
    assert energy[cutoff:].sum() < 1e-4 * energy.sum()  # only window leakage above the graph's band
    model.run_graph = lambda spec: module(spec)  # same framing, graph run by torch instead of onnxruntime
    with torch.no_grad():
        assert torch.allclose(model(mix), ours, atol=1e-5)


def test_missing_settings_and_bad_graph(tmp_path) -> None:
    _export(Gain([1.0] * 4), tmp_path / "x.onnx", 64)
    (tmp_path / "x.json").unlink()
    with pytest.raises(ModelError, match="needs its STFT size"):
        load_pretrained(tmp_path / "x.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="not an ONNX graph"):
        load_pretrained(tmp_path / "bad.onnx")


def _external_graph(folder, location: str):
    """A graph whose one initializer (all ones) is external data at ``location``, relative to ``folder``."""
    pytest.importorskip("onnx")
    return external_data_graph(folder, location)


def test_external_data_must_stay_in_the_graph_folder(tmp_path) -> None:
    """Checked by us, whatever the installed onnxruntime checks (older versions read any path)."""
    import numpy as np

    ones = np.ones(256, np.float32).tobytes()
    (tmp_path / "outside.bin").write_bytes(ones)
    inside = _external_graph(tmp_path / "ok", "weights.bin")
    (tmp_path / "ok" / "weights.bin").write_bytes(ones)
    check_onnx_file(inside)  # a graph with its data beside it is fine, and onnxruntime reads that data
    import onnxruntime

    out = onnxruntime.InferenceSession(str(inside), providers=["CPUExecutionProvider"]).run(
        None, {"X": np.zeros((1, 4, 8, 8), np.float32)})[0]
    assert (out == 1).all()
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "weights.bin").symlink_to(tmp_path / "outside.bin")
    for folder, location in [("up", "../outside.bin"), ("abs", str(tmp_path / "outside.bin")),
                             ("link", "weights.bin"), ("mem", "*/_ORT_MEM_ADDR_/*"), ("gone", "missing.bin")]:
        path = _external_graph(tmp_path / folder, location)
        with pytest.raises(ModelError, match="only files inside its own folder"):
            check_onnx_file(path)
        path.with_suffix(".json").write_text(json.dumps({"n_fft": 14, "hop": 4}))
        with pytest.raises(ModelError, match="only files inside its own folder"):
            load_pretrained(path)
