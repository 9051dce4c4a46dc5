import sys

import numpy as np
import pytest
import torch

from stemforge.engine import EngineOptions, OverlapAdd, separate_blocks, separate_tensor
from stemforge.errors import StemforgeError
from stemforge.models.base import ModelConfig, StemModel


class Scale(StemModel):
    """Stems are fixed multiples of the mix: a model whose exact output we know."""

    architecture = "test_scale"

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        return torch.stack([mix, -0.5 * mix, 2 * mix], dim=1)


class Position(StemModel):
    """Output depends on where a sample sits in the segment: overlap-add must blend segments, not copy."""

    architecture = "test_position"

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(0.5, 1.5, mix.shape[-1])
        return (mix * ramp)[:, None]


def scale_model(rate: int = 100) -> Scale:
    return Scale(ModelConfig(sources=("a", "b", "c"), sample_rate=rate))


def feed(model: StemModel, x: np.ndarray, options: EngineOptions, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, x.shape[-1] + 1, 6))
    return np.concatenate(list(separate_blocks(model, iter(np.split(x, cuts, axis=-1)), x.shape[0], options)), axis=-1)


@pytest.mark.parametrize("length", [1, 3, 99, 100, 101, 2500])
@pytest.mark.parametrize("segment,overlap,shifts,batch", [
    (1.0, 0.25, 0, 1), (0.37, 0.5, 3, 2), (2.0, 0.0, 1, 4), (0.05, 0.9, 2, 3), (60.0, 0.25, 0, 1), (0.01, 0.0, 0, 7)])
def test_identity_reconstruction(length: int, segment: float, overlap: float, shifts: int, batch: int) -> None:
    x = np.random.default_rng(length).standard_normal((2, 2, length)).astype(np.float32)
    y = feed(scale_model(), x, EngineOptions(segment=segment, overlap=overlap, shifts=shifts, max_shift=0.3, batch_size=batch))
    assert y.shape == (2, 3, 2, length)
    np.testing.assert_allclose(y[:, 0], x, atol=1e-5)
    np.testing.assert_allclose(y[:, 1], -0.5 * x, atol=1e-5)
    np.testing.assert_allclose(y[:, 2], 2 * x, atol=1e-5)


def test_segments_are_cross_faded() -> None:
    # With a position-dependent model, each output sample is a weighted mean of the overlapping segments' gains.
    model = Position(ModelConfig(sources=("a",), sample_rate=100, channels=1))
    x = np.ones((1, 1, 1000), np.float32)
    y = separate_tensor(model, x, EngineOptions(segment=1.0, overlap=0.5))[0, 0, 0]
    assert np.all(y >= 0.5) and np.all(y <= 1.5)
    interior = y[100:900]
    assert interior.std() < 0.2  # blended, not the raw 0.5..1.5 ramp repeating
    assert np.abs(np.diff(interior)).max() < 0.02  # no seams


def test_shifts_are_reproducible_and_differ_from_no_shift() -> None:
    model = Position(ModelConfig(sources=("a",), sample_rate=100, channels=1))
    x = np.random.default_rng(0).standard_normal((1, 1, 700)).astype(np.float32)
    a = separate_tensor(model, x, EngineOptions(segment=1.0, shifts=2, seed=3))
    b = separate_tensor(model, x, EngineOptions(segment=1.0, shifts=2, seed=3))
    c = separate_tensor(model, x, EngineOptions(segment=1.0, shifts=0))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_memory_is_bounded_by_segment_not_length() -> None:
    options = EngineOptions(segment=1.0, overlap=0.25, shifts=2, max_shift=0.5, batch_size=2)
    engine = OverlapAdd(scale_model(rate=1000), groups=1, options=options)
    largest = 0
    emitted = 0
    block = np.ones((1, 2, 700), np.float32)
    for _ in range(500):  # 350 s of input
        for out in engine.push(block):
            emitted += out.shape[-1]
        largest = max(largest, engine.inbuf.shape[-1], engine.output.sums.shape[-1])
    bound = (options.batch_size + 1) * engine.segment + engine.max_shift + block.shape[-1]
    assert largest <= bound
    emitted += sum(out.shape[-1] for out in engine.finish())
    assert emitted == 500 * 700


@pytest.mark.parametrize("bad", [dict(overlap=1.0), dict(overlap=-0.1), dict(segment=0.0), dict(shifts=-1), dict(batch_size=0), dict(precision="fp8")])
def test_invalid_options(bad: dict) -> None:
    with pytest.raises(StemforgeError):
        EngineOptions(**bad).validate()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator (mallopt) is Linux-only")
def test_the_engine_keeps_segment_sized_blocks_in_the_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting the engine asks glibc to keep freed blocks of a segment's size (#18).

    glibc unmapped such blocks on free, so every segment's ~60 MB spectra came back as fresh zeroed pages;
    measured on a 2-minute song, system time fell from 2.4 s to 0.6 s with the allocator tuned.
    """
    from stemforge import engine

    calls = []
    monkeypatch.setattr(engine, "keep_freed_memory", lambda: calls.append(1) or True)
    OverlapAdd(scale_model(), 1, EngineOptions(segment=1.0))
    assert calls == [1]
    monkeypatch.undo()
    assert engine.keep_freed_memory() is True  # glibc accepted both settings
    assert engine.MALLOC_KEEP_BYTES >= 64 << 20  # above a 10 s segment's four-stem spectra


def _small_roformer():
    from stemforge.models.compat.roformer import RoFormer, RoFormerConfig

    torch.manual_seed(0)
    model = RoFormer(RoFormerConfig(sources=("vocals", "other"), dim=32, depth=2, dim_head=16, heads=2, complement=True,
                                    freqs_per_bands=(2,) * 24 + (4,) * 12 + (12,) * 8 + (24,) * 8 + (48,) * 8 + (128, 129)))
    return model.eval()


def test_int8_fast_path_quantises_only_transformer_linears_and_stays_close() -> None:
    """``precision="int8"``: the Transformer blocks' Linear layers become int8 (per-channel weights); the band split,
    mask estimators and norms stay float32, and the output stays above 35 dB SDR against the exact one."""
    from stemforge.engine import int8_transformers

    exact = _small_roformer()
    fast = _small_roformer()
    in_blocks = sum(isinstance(m, torch.nn.Linear) for m in fast.layers.modules())
    assert int8_transformers(fast) == in_blocks > 0
    assert not any(isinstance(m, torch.nn.Linear) for m in fast.layers.modules())
    for kept in (fast.band_split, *fast.mask_estimators):
        assert not any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in kept.modules())
    quantised = [m for m in fast.layers.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert quantised and all(m.weight().qscheme() == torch.per_channel_affine for m in quantised)
    mix = torch.randn(1, 2, 44100, generator=torch.Generator().manual_seed(1)) * 0.3
    with torch.inference_mode():
        want, got = exact(mix), fast(mix)
    sdr = 10 * torch.log10(want.square().sum() / (want - got).square().sum())
    assert sdr > 35, sdr
    assert int8_transformers(torch.nn.Sequential(torch.nn.Linear(4, 4))) == 0  # no Transformer: nothing changes


def test_int8_is_refused_off_the_cpu() -> None:
    with pytest.raises(StemforgeError, match="CPU fast path"):
        EngineOptions(precision="int8", device="cuda").validate()
    EngineOptions(precision="int8").validate()
