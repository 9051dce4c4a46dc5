"""StreamingSeparator: any block size in, the offline separation out, delayed by exactly the reported latency."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stemforge.errors import StemforgeError
from stemforge.models.registry import build
from stemforge.stream import StreamingSeparator, StreamOptions


def _trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Random but not-identity BatchNorm statistics, so the test sees every folded parameter at work."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def causal() -> torch.nn.Module:
    """The low-latency architecture (n_fft 2048 / hop 512, depth 5 as shipped) with random weights."""
    return _trained_like(build("unet-causal", preset="tiny", depth=5))


def _mix(samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 44100
    tone = 0.3 * np.sin(2 * np.pi * 220 * t) * np.array([[1.0], [0.5]])
    return (tone + 0.05 * rng.standard_normal((2, samples))).astype(np.float32)


def _run(stream: StreamingSeparator, mix: np.ndarray, sizes: list[int]) -> dict[str, np.ndarray]:
    """Feed ``mix`` in blocks cycling through ``sizes``; returns the whole output incl. flush."""
    outs, i, j = [], 0, 0
    while i < mix.shape[1]:
        n = sizes[j % len(sizes)]
        out = stream.process(mix[:, i:i + n])
        assert all(v.shape == (2, min(n, mix.shape[1] - i)) for v in out.values())
        outs.append(out)
        i, j = i + n, j + 1
    tail = stream.flush()
    assert all(v.shape == (2, stream.latency_samples) for v in tail.values())
    outs.append(tail)
    return {k: np.concatenate([o[k] for o in outs], axis=-1) for k in stream.sources}


def _assert_equals_offline(stream: StreamingSeparator, out: dict[str, np.ndarray], mix: np.ndarray) -> None:
    ref = stream.offline(mix)
    lat = stream.latency_samples
    for stem in stream.sources:
        assert out[stem].shape[-1] == mix.shape[-1] + lat
        assert not out[stem][:, :lat].any(), "the stream starts with latency_samples of silence"
        np.testing.assert_allclose(out[stem][:, lat:], ref[stem], atol=1e-5, rtol=0)


@pytest.mark.parametrize("sizes", [[64], [1000], [777, 1, 0, 4096, 13], [2048]])
def test_frame_stream_equals_offline(causal, sizes):
    stream = StreamingSeparator(causal)
    assert stream.mode == "frames"
    mix = _mix(44100 // 2 + 123)
    _assert_equals_offline(stream, _run(stream, mix, sizes), mix)


def test_frame_stream_sample_by_sample(causal):
    stream = StreamingSeparator(causal)
    mix = _mix(5000, seed=3)
    _assert_equals_offline(stream, _run(stream, mix, [1]), mix)


@pytest.mark.parametrize("samples", [1, 511, 2047, 2048, 2049])
def test_frame_stream_short_signals(causal, samples):
    """Signals shorter than the latency or one frame: the offline edges (zero-padded STFT) are matched too."""
    stream = StreamingSeparator(causal)
    mix = _mix(samples, seed=samples)
    _assert_equals_offline(stream, _run(stream, mix, [300]), mix)


def test_frame_latency_is_the_window_and_tight(causal):
    """Latency n_fft - 1 = 2047 samples (46.4 ms); an input onset never shows before it, and shows within a hop."""
    stream = StreamingSeparator(causal)
    assert stream.latency_samples == 2047 and stream.latency_seconds < 0.050
    onset = 1023 + 512 * 6
    mix = _mix(onset + 4096)
    mix[:, :onset] = 0
    out = _run(stream, mix, [256])
    total = sum(np.abs(v) for v in out.values()).sum(0)
    assert not total[:onset].any()  # nothing is heard before the input exists
    assert total[onset:onset + 512].any()  # ... and the onset is heard within one hop: the latency is not padded


def test_causal_model_ignores_the_future(causal):
    mix = torch.from_numpy(_mix(30000))[None]
    later = mix.clone()
    later[..., 20000:] += 0.5
    with torch.inference_mode():
        a, b = causal(mix), causal(later)
    assert torch.equal(a[..., :20000 - 2047], b[..., :20000 - 2047])
    assert not torch.equal(a[..., :20000], b[..., :20000])


def test_reset_starts_a_new_stream(causal):
    stream = StreamingSeparator(causal)
    mix = _mix(6000)
    stream.process(_mix(3000, seed=9))
    stream.reset()
    first = _run(stream, mix, [500])
    again = _run(stream, mix, [500])  # flush() resets too
    for stem in stream.sources:
        np.testing.assert_array_equal(first[stem], again[stem])


def test_segment_stream_equals_engine():
    """A non-causal model streams through the engine's overlap-add; latency = segment - 1 (+ batches)."""
    model = _trained_like(build("unet", preset="tiny"))
    options = StreamOptions(segment=0.1, overlap=0.25, batch_size=2)
    stream = StreamingSeparator(model, options)
    assert stream.mode == "segments"
    segment, stride = 4410, 3308
    assert stream.latency_samples == segment - 1 + stride
    mix = _mix(20000)
    for sizes in ([64], [1, 999, 0, 5000]):
        out = _run(stream, mix, sizes)
        _assert_equals_offline(stream, out, mix)


def test_bad_blocks_are_one_line_errors(causal):
    stream = StreamingSeparator(causal)
    with pytest.raises(StemforgeError, match="channels=2"):
        stream.process(np.zeros((1, 10), np.float32))
    with pytest.raises(StemforgeError, match="NaN"):
        stream.process(np.full((2, 10), np.nan, np.float32))
    with pytest.raises(StemforgeError, match="float"):
        stream.process(np.zeros((2, 10), np.int16))
    with pytest.raises(StemforgeError, match="mode"):
        StreamOptions(mode="magic").validate()
    with pytest.raises(StemforgeError, match="not causal"):
        StreamingSeparator(build("unet", preset="tiny"), StreamOptions(mode="frames"))


def test_bundled_lowlatency_model_streams():
    """``-n lowlatency`` loads the shipped causal model; its stream matches its offline run."""
    from stemforge.hub import bundled_checkpoint

    if bundled_checkpoint("lowlatency") is None:
        pytest.skip("this install has no assets/lowlatency.safetensors")
    stream = StreamingSeparator("lowlatency")
    assert stream.mode == "frames" and stream.latency_seconds <= 0.050
    mix = _mix(8000)
    _assert_equals_offline(stream, _run(stream, mix, [512]), mix)
