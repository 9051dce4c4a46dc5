"""``stemforge.lite``: the torch-free U-Net runtime gives the torch model's and engine's numbers, and refuses the rest."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stemforge import lite
from stemforge.checkpoint import FORMAT, save_checkpoint, weights_sha256
from stemforge.dsp.spectral import istft, stft
from stemforge.engine import EngineOptions, OverlapAdd, triangle_weights
from stemforge.hub import bundled_checkpoint
from stemforge.models import build
from stemforge.models.base import ModelConfig, StemModel
from stemforge.models.unet import UNetConfig, UNetSeparator

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def randomized_unet(tmp_path: Path, channels: int = 2, name: str = "unet.safetensors", **config: object) -> tuple[UNetSeparator, Path]:
    """A small U-Net with random weights and BatchNorm statistics (far from the identity), saved as a checkpoint."""
    settings = dict(n_fft=512, hop=128, max_bins=64, depth=3, base_channels=4, channels=channels)
    model = build("unet", preset="tiny", **{**settings, **config}).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name_, tensor in model.state_dict().items():
            if tensor.dtype != torch.float32:
                tensor.fill_(7)  # num_batches_tracked: hashed, never used
            elif name_.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * (0.3 if "conv" in name_ or "head" in name_ else 1.0))
    path = tmp_path / name
    save_checkpoint(model, path)
    return model, path


def test_constants_agree_with_the_torch_side() -> None:
    assert lite.FORMAT == FORMAT
    assert lite.CONFIG_FIELDS == {f.name for f in dataclasses.fields(UNetConfig)}
    assert lite.SEGMENT == UNetSeparator.default_segment
    assert lite.OVERLAP == EngineOptions().overlap
    bn = torch.nn.BatchNorm2d(1)
    assert lite.BN_EPS == bn.eps
    for length in (1, 2, 7, 441000):
        np.testing.assert_array_equal(lite.triangle_weights(length), triangle_weights(length))


def test_weights_hash_is_the_checkpoints(tmp_path: Path) -> None:
    """Hashed as ``checkpoint.weights_sha256`` hashes torch tensors, 0-d BatchNorm counters included."""
    model, path = randomized_unet(tmp_path)
    from safetensors.numpy import load_file

    state = load_file(str(path))
    assert state["down.0.norm.num_batches_tracked"].shape == ()
    assert lite.weights_sha256(state) == weights_sha256(model.state_dict())
    bundled = bundled_checkpoint()
    assert lite.weights_sha256(load_file(str(bundled))) == json.loads(
        __import__("safetensors").safe_open(str(bundled), "np").metadata()["stemforge"])["weights_sha256"]


@pytest.mark.parametrize("length", [1, 127, 128, 12345])
def test_stft_and_istft_equal_dsp_spectral(length: int) -> None:
    x = np.random.default_rng(length).standard_normal((3, 2, length)).astype(np.float32)
    window = lite.hann_window(512)
    np.testing.assert_allclose(window, torch.hann_window(512, periodic=True).numpy(), atol=1e-6)
    ours = lite.stft(x, 512, 128, window)
    theirs = stft(torch.from_numpy(x), 512, 128).numpy()
    assert ours.shape == theirs.transpose(0, 1, 3, 2).shape and ours.dtype == np.complex64
    np.testing.assert_allclose(ours, theirs.transpose(0, 1, 3, 2), atol=2e-5 * np.abs(theirs).max())
    back = lite.istft(ours.reshape(-1, *ours.shape[-2:]), length, 512, 128, window).reshape(x.shape)
    reference = istft(torch.from_numpy(theirs), length, 512, 128).numpy()
    np.testing.assert_allclose(back, reference, atol=1e-5)
    np.testing.assert_allclose(back, x, atol=1e-5)  # and the exact inverse


@pytest.mark.parametrize("channels,length,threads", [(2, 4000, 1), (2, 4000, 2), (1, 777, 2), (3, 1, 2), (2, 257, 1)])
def test_network_and_masks_equal_the_torch_model(tmp_path: Path, channels: int, length: int, threads: int) -> None:
    """Random weights and BatchNorm statistics, odd lengths, mono and three channels, channels and stems split
    over two threads or not: within 1e-5 of ``forward``, for two segments in a row (buffers reused)."""
    model, path = randomized_unet(tmp_path, channels)
    runtime = lite.LiteUNet(path, threads=threads)
    assert runtime.lanes == threads
    mix = np.random.default_rng(0).standard_normal((2, channels, length)).astype(np.float32) * 0.3
    with torch.inference_mode():
        expected = model(torch.from_numpy(mix)).numpy()
    first = runtime(mix * 0.5)
    got = runtime(mix)
    assert not np.allclose(first, got)
    assert got.shape == expected.shape == (2, 4, channels, length) and got.dtype == np.float32
    assert np.abs(expected).max() > 0.05  # not a trivial output
    np.testing.assert_allclose(got, expected, atol=1e-5)


class Ramp(StemModel):
    """Stems that depend on where a sample sits in the segment, so the cross-fade weights show in the output."""

    architecture = "test_lite_ramp"

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(0.5, 1.5, mix.shape[-1])
        return torch.stack([mix * ramp * (i + 1) for i in range(len(self.sources))], dim=1)


def ramp_numpy(mix: np.ndarray) -> np.ndarray:
    ramp = torch.linspace(0.5, 1.5, mix.shape[-1]).numpy()
    return np.stack([mix * ramp * (i + 1) for i in range(4)], axis=1)


@pytest.mark.parametrize("total,block", [(1, 5), (999, 37), (1000, 1000), (2345, 101), (2345, 4096)])
def test_overlap_add_equals_the_engine(total: int, block: int) -> None:
    """Same segments, same weights, same output blocks (lengths included) as ``engine.OverlapAdd``."""
    mix = np.random.default_rng(total).standard_normal((2, 2, total)).astype(np.float32)
    engine = OverlapAdd(Ramp(ModelConfig()).eval(), 2, EngineOptions(segment=400 / 44100))
    ours = lite.OverlapAdd(ramp_numpy, 2, 2, 4, 400)
    expected, got = [], []
    for i in range(0, total, block):
        expected += list(engine.push(mix[..., i:i + block]))
        got += list(ours.push(mix[..., i:i + block]))
    expected += list(engine.finish())
    got += list(ours.finish())
    assert [b.shape for b in got] == [b.shape for b in expected]
    np.testing.assert_allclose(np.concatenate(got, -1), np.concatenate(expected, -1), atol=1e-6)
    assert np.concatenate(got, -1).shape[-1] == total


def test_other_checkpoints_are_left_to_torch(tmp_path: Path) -> None:
    """Anything short of a well-formed, untampered U-Net checkpoint raises Unsupported (the torch path takes it)."""
    _, path = randomized_unet(tmp_path)
    lite.read_unet(path)  # the untouched file is accepted
    bilstm = build("bilstm", preset="tiny").eval()
    save_checkpoint(bilstm, tmp_path / "bilstm.safetensors")
    tampered = tmp_path / "tampered.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x40  # a weight byte: the hash no longer matches
    tampered.write_bytes(bytes(data))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    _, odd_hop = randomized_unet(tmp_path, name="odd.safetensors", hop=96)  # hop does not divide n_fft
    for bad, reason in [(tmp_path / "bilstm.safetensors", "not a stemforge unet"), (tampered, "sha256"),
                        (garbage, "not readable"), (tmp_path / "missing.safetensors", "not readable"),
                        (odd_hop, "settings")]:
        with pytest.raises(lite.Unsupported, match=reason):
            lite.read_unet(bad)


def test_graph_is_valid_onnx(tmp_path: Path) -> None:
    """The in-memory graph passes onnx's checker and folds the encoder's BatchNorm (no BatchNormalization node)."""
    import onnx

    _, path = randomized_unet(tmp_path)
    graph = onnx.load_from_string(lite.build_graph(*lite.read_unet(path)))
    onnx.checker.check_model(graph, full_check=True)
    ops = [node.op_type for node in graph.graph.node]
    assert "BatchNormalization" not in ops and ops.count("Conv") == 3 + 1 and ops.count("ConvTranspose") == 3


@pytest.mark.parametrize("missing", ["onnxruntime", "onnx"])
def test_without_onnxruntime_or_onnx_it_is_unsupported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    """An install without them takes the torch path (``open_separator`` catches ``Unsupported``), never an ImportError."""
    import sys

    _, path = randomized_unet(tmp_path)
    monkeypatch.setitem(sys.modules, missing, None)  # import fails as if it were not installed
    with pytest.raises(lite.Unsupported, match=f"{missing} is not installed"):
        lite.LiteUNet(path)


def test_numpy_1_is_unsupported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy 1.x (allowed by the package) computes float32 FFTs in float64 and has no ``out=`` for them."""
    _, path = randomized_unet(tmp_path)
    monkeypatch.setattr(np, "__version__", "1.26.4")
    with pytest.raises(lite.Unsupported, match="numpy 1.26.4 is older than 2.0"):
        lite.LiteUNet(path)
