import pytest
import torch

from stemforge.errors import StemforgeError
from stemforge.train.losses import LOSSES, build_loss, l1_waveform, multi_resolution_stft, sdr_loss
from train_helpers import TinyMaskConfig, TinyMaskNet


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(2, 4, 2, 4000, generator=g)
    return ref + 0.3 * torch.randn(ref.shape, generator=g), ref


def test_l1_equals_mean_abs_error():
    est, ref = _pair()
    assert torch.allclose(l1_waveform(est, ref), (est - ref).abs().mean())
    assert l1_waveform(ref, ref) == 0


def test_sdr_loss_matches_energy_ratio():
    est, ref = _pair()
    expected = -(10 * torch.log10(ref.flatten(2).square().sum(-1) / (ref - est).flatten(2).square().sum(-1))).mean()
    assert torch.allclose(sdr_loss(est, ref, floor=0.0), expected, atol=1e-4)
    # 0.3 noise on unit-variance references: SDR = 10 log10(1 / 0.09) = 10.46 dB.
    assert abs(sdr_loss(est, ref).item() + 10.46) < 0.1


def test_sdr_loss_bounds_a_silent_stem():
    ref = torch.ones(1, 2, 1, 100)
    ref[:, 1] = 0  # silent stem, estimated with a little leakage
    est = ref.clone()
    est[:, 1] = 0.1
    # Offset d = 1e-3 * mean energy = 0.05: perfect stem 0 scores 10 log10(100.05 / 0.05) = 33 dB, not infinity;
    # silent stem 1 with error energy 1 scores 10 log10(0.05 / 1.05) = -13.2 dB, not -70 dB.
    expected = -(10 * torch.log10(torch.tensor([100.05 / 0.05, 0.05 / 1.05]))).mean()
    assert torch.allclose(sdr_loss(est, ref), expected, atol=1e-4)


def test_mrstft_zero_at_perfect_estimate_and_grows_with_error():
    est, ref = _pair()
    assert multi_resolution_stft(ref, ref).item() < 1e-5
    assert multi_resolution_stft(est, ref) < multi_resolution_stft(ref + 1.0 * (est - ref) / 0.3, ref)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_finite_on_silent_references(name):
    ref = torch.zeros(1, 4, 2, 2000)
    est = torch.zeros(1, 4, 2, 2000, requires_grad=True)
    loss = LOSSES[name](est, ref)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(est.grad).all()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_a_few_steps_of_each_loss_reduce_it(name):
    torch.manual_seed(0)
    model = TinyMaskNet(TinyMaskConfig(sample_rate=8000, dropout=0.0))
    stems = torch.randn(2, 4, 2, 4000) * torch.tensor([1.0, 0.5, 0.2, 0.1])[None, :, None, None]
    loss_fn = build_loss({name: 1.0})
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = loss_fn(model(stems.sum(1)), stems)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_build_loss_weights_and_errors():
    est, ref = _pair()
    combined = build_loss({"l1": 2.0, "sdr": 0.5})
    assert torch.allclose(combined(est, ref), 2 * l1_waveform(est, ref) + 0.5 * sdr_loss(est, ref))
    with pytest.raises(StemforgeError, match="unknown loss 'bogus'"):
        build_loss({"bogus": 1.0})
