"""``stemforge.lite``: the torch-free U-Net runtime gives the torch model's and engine's numbers, and refuses the rest."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from lite_helpers import randomized_unet
from stemforge import lite, lite_graph
from stemforge.checkpoint import FORMAT
from stemforge.dsp.spectral import istft, stft
from stemforge.dsp import overlap
from stemforge.dsp.wiener import REMASK_FLOOR
from stemforge.engine import EngineOptions, OverlapAdd
from stemforge.models.base import ModelConfig, StemModel
from stemforge.models.refiner import ACTIVE, LOG_FLOOR, feature_planes
from stemforge.models.unet import MAX_REFINE_LAYERS, MAX_REFINE_WIDTH, MAX_REMASK_FFT, UNetConfig, UNetSeparator

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def test_constants_agree_with_the_torch_side() -> None:
    assert lite.FORMAT == FORMAT
    assert lite.CONFIG_FIELDS == {f.name for f in dataclasses.fields(UNetConfig)}
    assert lite.SEGMENT == UNetSeparator.default_segment
    assert lite.REMASK_FLOOR == REMASK_FLOOR and lite_graph.MAX_REMASK_FFT == MAX_REMASK_FFT
    assert (lite_graph.MAX_REFINE_WIDTH, lite_graph.MAX_REFINE_LAYERS) == (MAX_REFINE_WIDTH, MAX_REFINE_LAYERS)
    assert lite_graph.REFINE_LOG_FLOOR == LOG_FLOOR and lite_graph.REFINE_ACTIVE == ACTIVE
    assert all(lite_graph.refine_planes(n) == feature_planes(n) for n in (2, 4, 6))
    assert lite.OVERLAP == StemModel.default_overlap == UNetConfig().overlap == lite_graph.UNetSpec.overlap
    bn = torch.nn.BatchNorm2d(1)
    assert lite.BN_EPS == bn.eps
    # One cross-fade for both overlap-adds (comparing values would compare the function with itself).
    assert lite.triangle_weights is overlap.triangle_weights


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


@pytest.mark.parametrize("refine", [0, 40])
@pytest.mark.parametrize("channels,length,threads", [(2, 4000, 1), (2, 4000, 2), (1, 777, 2), (2, 1, 2), (3, 3000, 2)])
def test_remask_equals_the_torch_model(tmp_path: Path, channels: int, length: int, threads: int, refine: int) -> None:
    """A checkpoint whose config re-masks its stems in a longer STFT (with a refiner of its lowest bins or not):
    the numpy re-mask gives ``forward``'s stems, stems split over two threads or not, for two segments in a row
    (buffers reused), and they sum to the mix."""
    model, path = randomized_unet(tmp_path, channels, remask_fft=2048, remask_hop=512, refine_bins=refine,
                                  refine_width=6, refine_layers=3)
    plain = UNetSeparator(dataclasses.replace(model.config, remask_fft=0, remask_hop=0, refine_bins=0)).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    runtime = lite.LiteUNet(path, threads=threads)
    mix = np.random.default_rng(1).standard_normal((2, channels, length)).astype(np.float32) * 0.3
    mix[1, :, length // 2:] = 0  # a song's last segment, zero-padded: the refiner's level leaves the silence out
    with torch.inference_mode():
        expected = model(torch.from_numpy(mix)).numpy()
        unmasked = plain(torch.from_numpy(mix)).numpy()
    runtime(mix * 0.5)
    got = runtime(mix)
    assert got.shape == expected.shape == (2, 4, channels, length)
    if length > 1:
        assert np.abs(expected - unmasked).max() > 0.01  # the re-mask changes the stems
    if refine and length > 1:  # and the refiner changes the re-mask
        unrefined = UNetSeparator(dataclasses.replace(model.config, refine_bins=0)).eval()
        unrefined.load_state_dict(model.state_dict(), strict=False)
        with torch.inference_mode():
            assert np.abs(expected - unrefined(torch.from_numpy(mix)).numpy()).max() > 0.01
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(1), mix, atol=1e-5)


@pytest.mark.parametrize("generation", [0, 1, 2])
def test_old_checkpoints_without_later_fields_still_run(tmp_path: Path, generation: int) -> None:
    """A checkpoint written before ``remask_fft`` (generation 0), ``refine_bins`` (1) or ``overlap`` (2) existed,
    without those config fields, loads on both paths, unmasked, with the overlap every model had then."""
    import json

    from safetensors.numpy import load_file, save_file

    from stemforge.checkpoint import load_checkpoint, read_metadata

    model, path = randomized_unet(tmp_path)
    meta = read_metadata(path)
    for field in set().union(*lite_graph.LATER_FIELDS[generation:]):
        del meta["config"][field]
    old = tmp_path / "old.safetensors"
    save_file(load_file(str(path)), str(old), metadata={lite.HEADER_KEY: json.dumps(meta)})
    loaded, _ = load_checkpoint(old)
    assert loaded.config.remask_fft == 0 and loaded.default_overlap == lite.LiteUNet(old).spec.overlap == 0.25
    mix = np.random.default_rng(2).standard_normal((1, 2, 3000)).astype(np.float32) * 0.3
    with torch.inference_mode():
        expected = model(torch.from_numpy(mix)).numpy()
    np.testing.assert_allclose(lite.LiteUNet(old)(mix), expected, atol=1e-5)


def test_the_checkpoints_overlap_is_the_default_on_both_paths(tmp_path: Path) -> None:
    """A config's ``overlap`` is the engine's default on the torch path and the runtime's (#18); an explicit
    overlap on the torch path overrides it."""
    from stemforge.separate import LiteSeparator, Separator, open_separator

    model, path = randomized_unet(tmp_path, overlap=0.15)
    assert model.default_overlap == 0.15
    mix = np.random.default_rng(5).standard_normal((2, 44100 * 23)).astype(np.float32) * 0.3  # three segments
    runtime = open_separator(path)
    assert isinstance(runtime, LiteSeparator)
    assert runtime.overlap == Separator(path).overlap == 0.15 and Separator(path, overlap=0.25).overlap == 0.25
    got = np.stack(list(runtime.separate_array(mix, 44100).values()))
    expected = np.stack(list(Separator(path).separate_array(mix, 44100).values()))
    np.testing.assert_allclose(got, expected, atol=1e-4)  # float32 rounding over 10 s segments: 4e-5 at 0.25 too
    usual = np.stack(list(Separator(path, overlap=0.25).separate_array(mix, 44100).values()))
    assert np.abs(usual - expected).max() > 1e-3  # the cuts moved
    np.testing.assert_allclose(usual, np.stack(list(Separator(randomized_unet(tmp_path, name="b.safetensors")[1])
                                                     .separate_array(mix, 44100).values())), atol=1e-6)


@pytest.mark.parametrize("overlap", [1.0, -0.1, "0.2", True, float("nan")])
def test_a_bad_overlap_in_a_config_is_refused_on_both_paths(tmp_path: Path, overlap: object) -> None:
    import json

    from safetensors.numpy import load_file, save_file

    from stemforge.checkpoint import load_checkpoint, read_metadata
    from stemforge.errors import ModelError

    _, path = randomized_unet(tmp_path)
    meta = read_metadata(path)
    meta["config"]["overlap"] = overlap
    bad = tmp_path / "bad.safetensors"
    save_file(load_file(str(path)), str(bad), metadata={lite.HEADER_KEY: json.dumps(meta)})
    with pytest.raises(lite.Unsupported, match="overlap"):
        lite.LiteUNet(bad)
    with pytest.raises(ModelError, match="overlap"):
        load_checkpoint(bad)


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


def test_without_onnxruntime_it_is_unsupported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An install without it takes the torch path (``open_separator`` catches ``Unsupported``), never an ImportError."""
    import sys

    _, path = randomized_unet(tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if it were not installed
    with pytest.raises(lite.Unsupported, match="onnxruntime is not installed"):
        lite.LiteUNet(path)


def test_without_onnx_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The graph is written by ``stemforge.onnx_writer``: the ``onnx`` package is not needed."""
    import sys

    _, path = randomized_unet(tmp_path)
    monkeypatch.setitem(sys.modules, "onnx", None)
    out = lite.LiteUNet(path, threads=1)(np.zeros((1, 2, 4410), np.float32))
    assert out.shape[-1] == 4410 and np.isfinite(out).all()


def test_numpy_1_is_unsupported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy 1.x (allowed by the package) computes float32 FFTs in float64 and has no ``out=`` for them."""
    _, path = randomized_unet(tmp_path)
    monkeypatch.setattr(np, "__version__", "1.26.4")
    with pytest.raises(lite.Unsupported, match="numpy 1.26.4 is older than 2.0"):
        lite.LiteUNet(path)


def test_remask_of_silence_is_silence_without_warnings(tmp_path: Path) -> None:
    """Silent input: every re-mask bin is 0 / 0, split equally, and numpy says nothing about it."""
    import warnings

    _, path = randomized_unet(tmp_path, remask_fft=2048, remask_hop=512)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = lite.LiteUNet(path, threads=1)(np.zeros((1, 2, 5000), np.float32))
    assert np.array_equal(out, np.zeros_like(out))
