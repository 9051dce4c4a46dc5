import itertools

import pytest
import torch

from stemforge.errors import StemforgeError
from stemforge.train.mixit import assignments, best_assignment, mixit_loss, mixture_of_mixtures, negative_snr, remix


def _sources(batch: int = 2, count: int = 4, length: int = 3000, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, count, 2, length, generator=torch.Generator().manual_seed(seed))


def test_assignments_are_all_one_hot_mixings():
    mats = assignments(3, 2)
    assert mats.shape == (8, 2, 3)
    assert torch.equal(mats.sum(1), torch.ones(8, 3))  # every output goes to exactly one reference
    assert len({tuple(m.flatten().tolist()) for m in mats}) == 8


def test_mixit_finds_known_permutation():
    sources = _sources()
    # Mixture 0 = sources 0 and 2, mixture 1 = sources 1 and 3.
    mixtures = torch.stack([sources[:, 0] + sources[:, 2], sources[:, 1] + sources[:, 3]], dim=1)
    order = torch.tensor([3, 0, 2, 1])  # the model outputs the sources shuffled
    estimates = sources[:, order]
    loss, mixing = mixit_loss(estimates, mixtures)
    expected = torch.zeros(2, 4)
    for out, src in enumerate(order.tolist()):
        expected[0 if src in (0, 2) else 1, out] = 1
    assert torch.equal(mixing, expected.expand(2, 2, 4))
    # Perfect reconstruction hits the soft SNR cap: loss = -snr_max.
    assert abs(loss.item() + 30.0) < 1e-3


def test_mixit_loss_equals_brute_force_minimum():
    estimates = _sources(seed=1) * torch.rand(2, 4, 1, 1, generator=torch.Generator().manual_seed(2))
    mixtures = _sources(count=2, seed=3)
    loss, _ = mixit_loss(estimates, mixtures)
    per_item = []
    for b in range(2):
        options = []
        for assign in itertools.product(range(2), repeat=4):
            mixing = torch.zeros(1, 2, 4)
            for out, ref in enumerate(assign):
                mixing[0, ref, out] = 1
            options.append(negative_snr(remix(estimates[b : b + 1], mixing), mixtures[b : b + 1]).mean())
        per_item.append(min(options))
    assert abs(loss.item() - torch.stack(per_item).mean().item()) < 1e-4


def test_mixit_gradient_flows_and_mom_sums_mixtures():
    stems_a, stems_b = _sources(seed=4), _sources(seed=5)
    mom, mixtures = mixture_of_mixtures(stems_a, stems_b)
    assert torch.allclose(mom, stems_a.sum(1) + stems_b.sum(1), atol=1e-5)
    estimates = _sources(seed=6).requires_grad_()
    loss, _ = mixit_loss(estimates, mixtures)
    loss.backward()
    assert torch.isfinite(estimates.grad).all() and estimates.grad.abs().sum() > 0


def test_too_many_assignments_is_a_clear_error():
    with pytest.raises(StemforgeError, match="assignments"):
        best_assignment(_sources(count=20, length=10), _sources(count=4, length=10))
