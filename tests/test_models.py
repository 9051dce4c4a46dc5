"""Every neural architecture against the model contract: shapes, gradients, overfitting, presets, options."""

from __future__ import annotations

import pytest
import torch

from model_helpers import SOURCES, overfit, synthetic_stems
from stemforge.errors import ModelError
from stemforge.models import available, build
from stemforge.models.neural import NeuralStemModel

# name -> (learning rate and steps on a 0.5 s clip for the fast test, learning rate and steps on the 3 s mixture for
# the slow one). The LSTMs' slow run needs the higher peak rate under the annealed schedule: at 1e-2, 600 steps gave
# bilstm 14.91 dB and lstm-causal (500 steps) 13.58 dB; at 2e-2 and 600 steps 17.33 / 16.58 dB, loss ratios 8.8 / 8.4.
ARCHITECTURES = {
    "unet": (3e-3, 40, 3e-3, 100),
    "bilstm": (1e-2, 100, 2e-2, 600),
    "lstm-causal": (1e-2, 100, 2e-2, 600),
    "bsroformer": (3e-3, 30, 3e-3, 150),
    "melroformer": (3e-3, 30, 3e-3, 150),
    "hybrid": (1e-2, 60, 1e-2, 300),
}


@pytest.fixture(autouse=True)
def _deterministic(deterministic_torch: None) -> None:
    """Seeding and one thread come from conftest; training outcomes also need deterministic kernels."""


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("channels", [1, 2])
def test_output_shape_any_length(name: str, channels: int) -> None:
    model = build(name, channels=channels).eval()
    with torch.no_grad():
        for length in (1, 333, 4097):
            out = model(torch.randn(2, channels, length))
            assert out.shape == (2, len(SOURCES), channels, length)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_mask_based_stems_sum_to_mix(name: str) -> None:
    model = build(name).eval()
    mix = torch.randn(1, 2, 5000)
    with torch.no_grad():
        out = model(mix)
    if model.mask_based:
        assert torch.allclose(out.sum(1), mix, atol=1e-5)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_gradients_reach_every_parameter(name: str) -> None:
    model = build(name).train()
    stems = synthetic_stems(0.3)
    loss = (model(stems.sum(1)) - stems).abs().mean()
    loss.backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_tiny_preset_learns_one_clip_fast(name: str) -> None:
    lr, steps, _, _ = ARCHITECTURES[name]
    first, last, sdr = overfit(build(name, preset="tiny"), synthetic_stems(0.5), steps, lr)
    assert last < first / 2
    assert sdr > 6.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_tiny_preset_overfits_3s_mixture_above_15db(name: str) -> None:
    _, _, lr, steps = ARCHITECTURES[name]
    first, last, sdr = overfit(build(name, preset="tiny"), synthetic_stems(3.0), steps, lr)
    assert last < first / 5
    assert sdr > 15.0


def test_causal_lstm_ignores_the_future() -> None:
    model = build("lstm-causal").eval()
    mag = torch.rand(1, 2, model.config.max_bins, 40)
    changed = mag.clone()
    changed[..., 25:] = torch.rand(1, 2, model.config.max_bins, 15)
    with torch.no_grad():
        before, after = model.network(mag), model.network(changed)
    assert torch.allclose(before[..., :25], after[..., :25], atol=1e-6)
    assert not torch.allclose(before[..., 25:], after[..., 25:], atol=1e-3)
    bidirectional = build("bilstm").eval()
    with torch.no_grad():
        assert not torch.allclose(bidirectional.network(mag)[..., :25], bidirectional.network(changed)[..., :25], atol=1e-6)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_presets_and_stem_counts(name: str) -> None:
    sizes = [build(name, preset=p).num_parameters() for p in ("tiny", "base", "large")]
    assert sizes[0] < sizes[1] < sizes[2]
    for sources in (("vocals", "accompaniment"), ("vocals", "drums", "bass", "piano", "other")):
        model = build(name, sources=sources).eval()
        assert model.sources == list(sources)
        with torch.no_grad():
            assert model(torch.randn(1, 2, 2048)).shape == (1, len(sources), 2, 2048)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_bad_options_are_one_line_errors(name: str) -> None:
    with pytest.raises(ModelError, match="unknown preset"):
        build(name, preset="huge")
    with pytest.raises(ModelError, match="unknown option"):
        build(name, colour="blue")
    model = build(name)
    with pytest.raises(ModelError, match="expects mix of shape"):
        model(torch.randn(1, 3, 100))


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_wiener_postfilter_option(name: str) -> None:
    model = build(name).eval()
    mix = synthetic_stems(0.5).sum(1)
    model.wiener_iterations = 1
    with torch.no_grad():
        out = model(mix)
    assert out.shape == (1, 4, 2, mix.shape[-1])
    assert torch.allclose(out.sum(1), mix, atol=1e-4)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_bf16_autocast(name: str) -> None:
    model = build(name).eval()
    mix = torch.randn(1, 2, 3000)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(mix)
    assert out.shape == (1, 4, 2, 3000)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_registry_lists_neural_models_with_presets() -> None:
    specs = {spec.name: spec for spec in available()}
    for name in ARCHITECTURES:
        assert getattr(specs[name].factory, "presets") == ("tiny", "base", "large")
        assert isinstance(build(name), NeuralStemModel)


def test_a_test_may_change_the_thread_count() -> None:
    torch.set_num_threads(3)  # as Separator(threads=3) or TrainConfig(threads=3) do
    torch.use_deterministic_algorithms(False)


def test_every_test_starts_on_one_thread_with_deterministic_kernels() -> None:
    # Runs after the test above: conftest restored what it leaked, so training verdicts see the same round-off.
    assert torch.get_num_threads() == 1
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.initial_seed() == 0


def test_unet_convolutions_run_channels_last() -> None:
    """oneDNN's convolutions take about half the CPU time on channels-last activations (issue #18)."""
    model = build("unet", preset="tiny").eval()
    layouts = []
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.register_forward_hook(
                lambda m, args, out: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    with torch.no_grad():
        stems = model(torch.randn(1, 2, 20_000))
    assert layouts and all(layouts)
    assert stems.shape == (1, 4, 2, 20_000)


@pytest.mark.parametrize("depth, hop", [(4, 512), (6, 512), (3, 256)])
def test_unet_padded_length_is_what_analyse_computes_on(depth: int, hop: int) -> None:
    model = build("unet", preset="tiny", depth=depth, hop=hop, n_fft=4 * hop)
    for samples in (1, hop, 44100, 65024, 65025, 100_000):
        padded = model.padded_length(samples)
        (mag,), _ = model.analyse(torch.zeros(1, 2, samples))
        (mag_p,), (_, frames_p, _) = model.analyse(torch.zeros(1, 2, padded))
        assert padded >= samples and mag.shape[-1] == mag_p.shape[-1] == frames_p, (samples, padded)
        if padded > samples:  # and nothing shorter fills the frames
            assert model.analyse(torch.zeros(1, 2, padded - 1))[1][1] < frames_p
    assert build("unet", preset="tiny", depth=6).padded_length(44100) == 65024  # the default's 1 s chunk: 128 frames


def test_unet_remask_applies_in_eval_mode() -> None:
    """``remask_fft`` in the config: in eval mode ``forward`` returns the plain network's stems re-masked
    (``dsp.wiener.remask``); in train mode the masks' own stems (what training fits); bad settings are refused."""
    from stemforge.dsp.wiener import remask

    model = build("unet", preset="tiny", remask_fft=4096, remask_hop=1024)
    plain = build("unet", preset="tiny")
    plain.load_state_dict(model.state_dict())
    mix = torch.randn(1, 2, 30_000, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        model.eval(), plain.eval()
        expected = remask(plain(mix), mix, 4096, 1024)
        got = model(mix)
        assert not torch.allclose(got, plain(mix), atol=1e-3)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    model.train(), plain.train()
    with torch.no_grad():
        torch.testing.assert_close(model(mix), plain(mix), atol=0, rtol=0)
    for fft, hop in [(4096, 4096), (4096, 1000), (4096, 0), (0, 1024), (2**17, 2**15)]:
        with pytest.raises(ModelError, match="remask_fft"):
            build("unet", preset="tiny", remask_fft=fft, remask_hop=hop)
    with pytest.raises(ModelError, match="no re-mask"):  # the causal U-Net: a window of look-ahead
        build("unet-causal", preset="tiny", remask_fft=4096, remask_hop=1024)
