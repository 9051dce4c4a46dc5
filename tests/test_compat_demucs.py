"""HTDemucs / HDemucs: demucs .th packages (and bags) load unchanged and match demucs' own outputs."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from parity_helpers import assert_parity, randomize_, random_audio, require
from stemforge.errors import ModelError
from stemforge.models.compat import load_pretrained
from stemforge.models.compat.bag import BagOfModels
from stemforge.models.compat.hdemucs import HDemucs
from stemforge.models.compat.htdemucs import HTDemucs

# Every test here compares against (or writes packages with) the reference package; without it, skip the module.
# The checks that need no demucs (malformed and hostile packages) live in test_hostile_files.py.
require("demucs.htdemucs")

SOURCES4 = ["drums", "bass", "other", "vocals"]
SOURCES6 = ["drums", "bass", "other", "vocals", "guitar", "piano"]


def _save_package(tmp_path, klass, name: str, seed: int = 0, **kwargs):
    """Build a demucs model with random weights, write it as demucs writes release packages, reload it with demucs."""
    require("demucs.htdemucs")
    from demucs.states import get_state, load_model

    torch.manual_seed(seed)
    model = klass(**kwargs)
    randomize_(model, seed=seed, scale=0.05)
    package = {"klass": klass, "args": (), "kwargs": kwargs, "state": get_state(model, None, half=True),
               "training_args": {}}
    path = tmp_path / f"{name}.th"
    torch.save(package, path)
    return path, load_model(str(path)).eval()


def _htdemucs_kwargs(sources, **extra):
    # The released htdemucs hyper-parameters (demucs config "htdemucs" + dconv_mode 3), with fewer channels.
    kw = dict(sources=sources, channels=16, depth=4, t_layers=5, dconv_mode=3, segment=Fraction(10), nfft=4096)
    kw.update(extra)
    return kw


@pytest.mark.parametrize("sources,bottom", [(SOURCES4, 0), (SOURCES6, 64)])
def test_htdemucs_parity_on_10s(tmp_path, sources, bottom) -> None:
    from demucs.htdemucs import HTDemucs as RefHTDemucs

    path, reference = _save_package(tmp_path, RefHTDemucs, "htdemucs", **_htdemucs_kwargs(sources, bottom_channels=bottom))
    model = load_pretrained(path)
    assert isinstance(model, HTDemucs) and model.sources == sources
    audio = random_audio(10.0)
    with torch.no_grad():
        expected = reference(audio)
        ours = model(audio)
    assert ours.shape == expected.shape == (1, len(sources), 2, audio.shape[-1])
    assert expected.std() > 1e-3
    assert_parity(ours, expected)
    # The spectral branch's 2-D convolutions keep NHWC weights (oneDNN's own layout: no reorder per call).
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)


def test_htdemucs_parity_with_small_dconv_chunks(tmp_path, monkeypatch) -> None:
    """Frequency rows go through the DConvs in chunks (to bound memory); any chunk size gives demucs' output."""
    from demucs.htdemucs import HTDemucs as RefHTDemucs
    from stemforge.models.compat import hdemucs

    path, reference = _save_package(tmp_path, RefHTDemucs, "htdemucs", **_htdemucs_kwargs(SOURCES4))
    model = load_pretrained(path)
    audio = random_audio(10.0)
    calls = []
    original = hdemucs.DConv.forward
    monkeypatch.setattr(hdemucs.DConv, "forward",
                        lambda self, x, **kw: calls.append(x.shape[0]) or original(self, x, **kw))
    monkeypatch.setattr(hdemucs, "DCONV_CHUNK_ELEMENTS", 50_000)  # a few rows per call, with a ragged last chunk
    with torch.no_grad():
        expected = reference(audio)
        ours = model(audio)
    assert max(calls) < 512 and len(calls) > 50  # the chunked path really ran
    assert_parity(ours, expected)


def test_htdemucs_inverse_fft_gets_every_bin(tmp_path, monkeypatch) -> None:
    """The decoder's output is de-normalised once into a buffer with the zero Nyquist bin, viewed as complex, so
    the inverse FFT gets every bin (no zero-padded copy of its own) of one spectrum per source and channel."""
    from demucs.htdemucs import HTDemucs as RefHTDemucs
    from stemforge.dsp import spectral

    path, reference = _save_package(tmp_path, RefHTDemucs, "inplace", **_htdemucs_kwargs(SOURCES4, channels=8,
                                                                                         segment=Fraction(3)))
    model = load_pretrained(path)
    seen = []
    irfft = torch.fft.irfft

    def spy(x, *args, **kwargs):
        seen.append(tuple(x.shape))
        return irfft(x, *args, **kwargs)

    monkeypatch.setattr(spectral.torch.fft, "irfft", spy)
    audio = random_audio(3.0)
    with torch.no_grad():
        expected, ours = reference(audio), model(audio)
    assert_parity(ours, expected)
    assert len(seen) == 1 and seen[0][0] == 4 * 2 and seen[0][-1] == 4096 // 2 + 1, seen
    pair = torch.cat([audio, 0.5 * audio.flip(-1)])  # a batch of two goes through the same buffer layout
    with torch.no_grad():
        both, second = model(pair), reference(pair[1:])
    assert_parity(both[:1], expected)
    assert_parity(both[1:], second)


@pytest.mark.parametrize("threads", [1, 2])
def test_pointwise_convolutions_are_matrix_products(threads) -> None:
    """1x1 convolutions run as one matrix product on the input's own layout (channels-last 4-D, strided 3-D):
    same values as the module, and neither PyTorch's reference convolution nor oneDNN is called for them."""
    from torch.profiler import profile

    from stemforge.models.compat.hdemucs import conv

    gen = torch.Generator().manual_seed(0)
    conv2 = torch.nn.Conv2d(6, 10, 1).to(memory_format=torch.channels_last)
    conv1 = torch.nn.Conv1d(6, 10, 1)
    x4 = torch.randn(2, 6, 5, 7, generator=gen).contiguous(memory_format=torch.channels_last)
    x3 = torch.randn(3, 7, 6, generator=gen).transpose(1, 2)  # channels with stride 1, as folded DConv rows
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad(), profile() as prof:
            y4, y3 = conv(conv2, x4), conv(conv1, x3)
    finally:
        torch.set_num_threads(previous)
    with torch.no_grad():
        assert torch.allclose(y4, conv2(x4), atol=1e-6) and torch.allclose(y3, conv1(x3), atol=1e-6)
        wide = torch.nn.Conv1d(6, 10, 3, padding=1)
        assert torch.equal(conv(wide, x3), wide(x3))  # any other convolution is the module itself
    assert y4.is_contiguous(memory_format=torch.channels_last)
    assert not [e.name for e in prof.events() if "conv" in e.name]


def test_dconv_folds_layer_scale_and_writes_chunks_in_place() -> None:
    """A DConv layer's GroupNorm -> GLU -> LayerScale runs as two passes (the scale folded into the GroupNorm's
    affine of the GLU's gated half: no full-size multiplication), and folded frequency rows are written straight
    into the result, chunk by chunk (no copy of a chunk's output); same values as the modules one after another."""
    from torch.profiler import profile

    from stemforge.models.compat import hdemucs

    torch.manual_seed(0)
    dconv = hdemucs.DConv(16, compress=4, depth=2, init=0.5).eval()
    with torch.no_grad():
        for module in dconv.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.normal_(1, 0.2), module.bias.normal_(0, 0.2)
    x = torch.randn(1, 16, 12, 40).contiguous(memory_format=torch.channels_last)  # (B, C, Fr, T), as the encoder

    def reference(rows: torch.Tensor) -> torch.Tensor:
        for layer in dconv.layers:
            y = rows
            for module in layer:
                y = module(y)
            rows = rows + y
        return rows

    rows = x.permute(0, 2, 1, 3).reshape(-1, 16, 40)
    expected = reference(rows).view(1, 12, 16, 40).permute(0, 2, 1, 3)
    step = 5  # rows per DConv call: 12 rows in chunks of 5, 5 and 2
    original = hdemucs.DCONV_CHUNK_ELEMENTS
    hdemucs.DCONV_CHUNK_ELEMENTS = step * 16 * 40
    try:
        with torch.no_grad(), profile(record_shapes=True) as prof:
            got = hdemucs._dconv_over_time(dconv, x, True)
    finally:
        hdemucs.DCONV_CHUNK_ELEMENTS = original
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    full_size_muls = [e.input_shapes for e in prof.events()
                      if e.name == "aten::mul" and any(len(shape) > 1 for shape in e.input_shapes)]
    assert not full_size_muls, full_size_muls
    # Copies called from Python itself (a chunk's output assigned into the result), not inside another operator.
    chunk_copies = [e.input_shapes for e in prof.events() if e.name == "aten::copy_" and e.cpu_parent is None]
    assert not chunk_copies, chunk_copies


@pytest.mark.skipif(not getattr(torch, "_nnpack_available", lambda: False)(),
                    reason="this PyTorch has no NNPACK (or the CPU lacks AVX2)")
def test_spectral_rewrites_run_as_winograd_convolutions() -> None:
    """The spectral decoder's 3x3 GLU rewrites run through NNPACK (Winograd) instead of oneDNN, with the layout
    changes as 2-D transposes: same values as the modules within float32 rounding, output still channels-last;
    with autograd on (training) the modules themselves run."""
    from torch.nn import functional as F
    from torch.profiler import profile

    from stemforge.models.compat import hdemucs

    torch.manual_seed(0)
    layer = hdemucs.DecoderLayer(8, 4, freq=True, dconv=False, norm=False, context=1).eval()
    layer.to(memory_format=torch.channels_last)
    x = torch.randn(2, 8, 16, 30).contiguous(memory_format=torch.channels_last)
    skip = torch.randn(2, 8, 16, 30).contiguous(memory_format=torch.channels_last)
    nchw = hdemucs._transpose_layout(x, channels_last=False)
    assert nchw.is_contiguous() and torch.equal(nchw, x)
    back = hdemucs._transpose_layout(nchw, channels_last=True)
    assert back.is_contiguous(memory_format=torch.channels_last) and torch.equal(back, x)
    with torch.no_grad():
        expected = F.glu(layer.rewrite(x + skip), dim=1)
        with profile() as prof:
            _, got = layer(x, skip, 64)
    names = [e.name for e in prof.events()]
    assert names.count("aten::_nnpack_spatial_convolution") == 1 and "aten::mkldnn_convolution" not in names
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    with profile() as prof:
        _, trained = layer(x, skip, 64)  # autograd on: the module's own convolution, differentiable
    assert "aten::_nnpack_spatial_convolution" not in [e.name for e in prof.events()] and trained.requires_grad
    assert torch.allclose(trained.detach(), expected, atol=1e-5, rtol=1e-5)


def test_htdemucs_shorter_than_segment_is_padded_like_demucs(tmp_path) -> None:
    from demucs.htdemucs import HTDemucs as RefHTDemucs

    path, reference = _save_package(tmp_path, RefHTDemucs, "short", **_htdemucs_kwargs(SOURCES4, segment=Fraction(2)))
    model = load_pretrained(path)
    for length in (1, 12345):
        audio = random_audio(length / 44100, seed=length)
        with torch.no_grad():
            expected, ours = reference(audio), model(audio)
        assert ours.shape == (1, 4, 2, length)
        assert_parity(ours, expected)


def test_hdemucs_parity_on_10s(tmp_path) -> None:
    from demucs.hdemucs import HDemucs as RefHDemucs

    # hdemucs_mmi layout (depth 6: last two levels with BLSTM + local attention, group norm), fewer channels.
    kwargs = dict(sources=SOURCES4, channels=8, depth=6, dconv_mode=3, segment=10)
    path, reference = _save_package(tmp_path, RefHDemucs, "hdemucs", **kwargs)
    model = load_pretrained(path)
    assert isinstance(model, HDemucs)
    audio = random_audio(10.0)
    with torch.no_grad():
        expected, ours = reference(audio), model(audio)
    assert expected.std() > 1e-3
    assert_parity(ours, expected)


def test_bag_of_models_matches_apply_model(tmp_path) -> None:
    from demucs.apply import BagOfModels as RefBag, apply_model
    from demucs.htdemucs import HTDemucs as RefHTDemucs
    import hashlib

    refs, names = [], []
    for seed in range(2):
        path, ref = _save_package(tmp_path, RefHTDemucs, f"sig{seed}", seed=seed,
                                  **_htdemucs_kwargs(SOURCES4, channels=8, segment=Fraction(3)))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
        path.rename(tmp_path / f"sig{seed}-{digest}.th")
        refs.append(ref)
        names.append(f"sig{seed}")
    weights = [[1.0, 0.0, 1.0, 0.5], [0.0, 1.0, 1.0, 0.5]]
    (tmp_path / "bag.yaml").write_text(f"models: {names}\nweights: {weights}\nsegment: 2\n")
    bag = load_pretrained(tmp_path / "bag.yaml")
    assert isinstance(bag, BagOfModels) and bag.default_segment == 2
    audio = random_audio(2.0)
    with torch.no_grad():
        expected = apply_model(RefBag(refs, weights, 2), audio, shifts=0, split=False, progress=False)
        ours = bag(audio)
    assert_parity(ours, expected)


def test_bad_packages(tmp_path) -> None:
    path, _ = _save_package(tmp_path, __import__("demucs.htdemucs", fromlist=["HTDemucs"]).HTDemucs, "x",
                            **_htdemucs_kwargs(SOURCES4, channels=8, depth=2, t_layers=1))
    path.rename(tmp_path / "x-00000000.th")
    with pytest.raises(ModelError, match="sha256"):
        load_pretrained(tmp_path / "x-00000000.th")


def test_converted_to_stemforge_checkpoint(tmp_path) -> None:
    """A loaded package can be saved as a (pickle-free) stemforge checkpoint and reloaded unchanged."""
    from demucs.htdemucs import HTDemucs as RefHTDemucs

    from stemforge.checkpoint import load_checkpoint, save_checkpoint

    path, _ = _save_package(tmp_path, RefHTDemucs, "conv", **_htdemucs_kwargs(SOURCES4, channels=8, segment=Fraction(1)))
    model = load_pretrained(path)
    save_checkpoint(model, tmp_path / "conv.safetensors", source=str(path.name))
    again, meta = load_checkpoint(tmp_path / "conv.safetensors")
    assert meta["architecture"] == "htdemucs" and again.default_segment == 1.0
    audio = random_audio(1.0)
    with torch.no_grad():
        assert torch.equal(again(audio), model(audio))
