"""BS-RoFormer / Mel-RoFormer: community .ckpt + YAML load unchanged and match the BS-RoFormer package."""

from __future__ import annotations

import pytest
import torch

from parity_helpers import assert_parity, randomize_, random_audio, require
from stemforge.errors import ModelError
from stemforge.models.compat import load_pretrained
from stemforge.models.compat.roformer import RoFormer, mel_band_membership

# Small random-weight versions of the community configs (same STFT, band layout and key names).
BS_YAML = """\
audio:
  chunk_size: 441000
  num_channels: 2
  sample_rate: 44100
model:
  dim: 32
  depth: 2
  stereo: true
  num_stems: 1
  time_transformer_depth: 1
  freq_transformer_depth: 1
  linear_transformer_depth: 0
  freqs_per_bands: !!python/tuple [2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 12, 12, 12, 12, 12, 12, 12, 12, 24, 24, 24, 24, 24, 24, 24, 24,
    48, 48, 48, 48, 48, 48, 48, 48, 128, 129]
  dim_head: 16
  heads: 2
  attn_dropout: 0.1
  ff_dropout: 0.1
  flash_attn: true
  dim_freqs_in: 1025
  stft_n_fft: 2048
  stft_hop_length: 441
  stft_win_length: 2048
  stft_normalized: false
  mask_estimator_depth: 2
  multi_stft_resolution_loss_weight: 1.0
  multi_stft_resolutions_window_sizes: !!python/tuple [4096, 2048, 1024, 512, 256]
  multi_stft_hop_size: 147
  multi_stft_normalized: false
training:
  instruments: ['vocals', 'other']
  target_instrument: vocals
"""

MEL_YAML = """\
audio:
  chunk_size: 352800
  num_channels: 2
  sample_rate: 44100
model:
  dim: 32
  depth: 2
  stereo: true
  num_stems: 2
  time_transformer_depth: 1
  freq_transformer_depth: 1
  linear_transformer_depth: 0
  num_bands: 60
  dim_head: 16
  heads: 2
  attn_dropout: 0.1
  ff_dropout: 0.1
  flash_attn: true
  dim_freqs_in: 1025
  sample_rate: 44100
  stft_n_fft: 2048
  stft_hop_length: 441
  stft_win_length: 2048
  stft_normalized: false
  mask_estimator_depth: 2
training:
  instruments: ['vocals', 'other']
"""


def _model_kwargs(yaml_text: str) -> dict:
    import yaml

    from stemforge.models.compat.io import config_yaml_loader as _config_yaml_loader

    cfg = yaml.load(yaml_text, Loader=_config_yaml_loader())["model"]
    cfg.pop("linear_transformer_depth")
    return cfg


def _reference(kind: str):
    require("bs_roformer")
    from bs_roformer import BSRoformer, MelBandRoformer

    if kind == "bs":
        model = BSRoformer(**_model_kwargs(BS_YAML))
    else:
        model = MelBandRoformer(**_model_kwargs(MEL_YAML), linear_transformer_depth=0)
    randomize_(model, seed=1, scale=0.05)
    return model.eval()


@pytest.mark.parametrize("kind", ["bs", "mel"])
def test_roformer_parity_on_10s(tmp_path, kind) -> None:
    reference = _reference(kind)
    torch.save(reference.state_dict(), tmp_path / "model.ckpt")
    (tmp_path / "model.yaml").write_text(BS_YAML if kind == "bs" else MEL_YAML)
    model = load_pretrained(tmp_path / "model.ckpt")
    assert isinstance(model, RoFormer) and model.config.bands == kind
    audio = random_audio(10.0)
    with torch.no_grad():
        expected = reference(audio)
        ours = model(audio)
    if kind == "bs":
        # one predicted stem (vocals) plus its complement (other = mix - vocals)
        assert model.sources == ["vocals", "other"]
        assert_parity(ours[:, 0], expected)
        assert torch.allclose(ours.sum(dim=1), audio, atol=1e-5)
    else:
        assert model.sources == ["vocals", "other"]
        assert_parity(ours, expected)


def test_mel_bands_match_librosa() -> None:
    librosa = pytest.importorskip("librosa")
    for rate, n_fft, bands in [(44100, 2048, 60), (44100, 2048, 32), (48000, 4096, 60)]:
        ref = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=bands) > 0
        ref[0, 0] = ref[-1, -1] = True
        assert torch.equal(mel_band_membership(rate, n_fft, bands), torch.from_numpy(ref))


def test_lightning_wrapped_checkpoint_and_short_input(tmp_path) -> None:
    reference = _reference("bs")
    torch.save({"state_dict": {f"model.{k}": v for k, v in reference.state_dict().items()}}, tmp_path / "m.ckpt")
    (tmp_path / "m.yaml").write_text(BS_YAML)
    model = load_pretrained(tmp_path / "m.ckpt")
    assert load_pretrained(tmp_path / "m.yaml").state_dict().keys() == model.state_dict().keys()  # config path works too
    for length in (1, 999):
        out = model(torch.randn(1, 2, length))
        assert out.shape == (1, 2, 2, length) and torch.isfinite(out).all()


def test_missing_yaml_and_bad_config(tmp_path) -> None:
    torch.save({"layers.0.0.x": torch.zeros(1)}, tmp_path / "lonely.ckpt")
    with pytest.raises(ModelError, match="needs its YAML"):
        load_pretrained(tmp_path / "lonely.ckpt")
    (tmp_path / "lonely.yaml").write_text("model: {dim: 8, depth: 1, linear_transformer_depth: 1}\naudio: {}\n")
    with pytest.raises(ModelError, match="linear_transformer_depth"):
        load_pretrained(tmp_path / "lonely.ckpt")


def _rotary_reference(rotary, t: torch.Tensor) -> torch.Tensor:
    """rotary_embedding_torch's formula (what bs_roformer runs): t cos + rotate_half(t) sin, pairs interleaved."""
    pos = torch.arange(t.shape[-2], dtype=torch.float32)
    angles = torch.repeat_interleave(pos[:, None] * rotary.freqs.detach(), 2, dim=-1)
    pairs = t.unflatten(-1, (-1, 2))
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)
    return t * angles.cos() + rotated * angles.sin()


def test_rotary_is_one_complex_product_equal_to_the_reference() -> None:
    """The rotation touches a full-size tensor once (it was 7 full- or half-size temporaries: muls, neg, stack,
    add: a third of BS-RoFormer's CPU time) and equals the reference formula, also on strided views."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from stemforge.models.compat.roformer import Rotary

    rotary = Rotary(16)
    qkv = torch.randn(3, 2, 4, 50, 16, generator=torch.Generator().manual_seed(0))
    q = qkv.permute(1, 2, 0, 3, 4)[:, :, 1]  # a strided view, as the attention passes it
    big = []

    class Sizes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor) and out.numel() * out.element_size() >= q.numel() * 2 and \
                    func not in (torch.ops.aten.view_as_real.default, torch.ops.aten.view_as_complex.default,
                                 torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default):
                big.append(func)
            return out

    with torch.no_grad(), Sizes():
        got = rotary(q)
    assert len(big) <= 1, big
    torch.testing.assert_close(got, _rotary_reference(rotary, q), atol=2e-6, rtol=0)
    odd = torch.randn(1, 1, 7, 17)[..., 1:]  # odd storage offset: copied into whole pairs first
    torch.testing.assert_close(rotary(odd), _rotary_reference(rotary, odd), atol=2e-6, rtol=0)
    half = q.to(torch.bfloat16)  # no complex bf16: the reference formula itself
    torch.testing.assert_close(rotary(half), _rotary_reference(rotary, half).to(torch.bfloat16), atol=0, rtol=0)
