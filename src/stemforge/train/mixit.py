"""Mixture invariant training (MixIT, Wisdom et al. 2020): learn to separate from mixtures alone.

Two mixtures are summed into a mixture of mixtures (MoM); the model separates the MoM into M sources; the loss
is the best, over every way of assigning each estimated source to one of the mixtures, of the negative
thresholded SNR between each mixture and the sum of the sources assigned to it. The same search assigns
M outputs to R reference stems, which is how an unsupervised model is scored against true stems.

Shapes: ``estimates: (batch, M, channels, time)``, ``references: (batch, R, channels, time)``.
"""

from __future__ import annotations

import itertools

import torch

from stemforge.errors import StemforgeError

#: Above this many assignments (R ** M) the exhaustive search is refused rather than run for hours.
MAX_ASSIGNMENTS = 1 << 16


def assignments(num_outputs: int, num_references: int) -> torch.Tensor:
    """All (R ** M, R, M) one-hot mixing matrices: each output goes to exactly one reference."""
    count = num_references**num_outputs
    if count > MAX_ASSIGNMENTS:
        raise StemforgeError(
            f"MixIT with {num_outputs} outputs and {num_references} references needs {count} assignments "
            f"(limit {MAX_ASSIGNMENTS}); use fewer outputs"
        )
    index = torch.tensor(list(itertools.product(range(num_references), repeat=num_outputs)), dtype=torch.long)
    return torch.nn.functional.one_hot(index, num_references).transpose(1, 2).float()  # (K, R, M)


def negative_snr(estimate: torch.Tensor, reference: torch.Tensor, snr_max: float = 30.0, eps: float = 1e-8) -> torch.Tensor:
    """Negative SNR in dB, soft-capped at ``snr_max`` (tau = 10^(-snr_max/10)); (..., C, T) x2 -> (...)."""
    ref_energy = reference.float().square().sum((-2, -1))
    err_energy = (reference.float() - estimate.float()).square().sum((-2, -1))
    tau = 10.0 ** (-snr_max / 10.0)
    return -10.0 * torch.log10((ref_energy + eps) / (err_energy + tau * ref_energy + eps))


@torch.no_grad()
def best_assignment(estimates: torch.Tensor, references: torch.Tensor, snr_max: float = 30.0, eps: float = 1e-8) -> torch.Tensor:
    """The (batch, R, M) mixing matrix minimising the summed negative SNR, for each batch item.

    Error energies of all R ** M assignments come from inner products (one Gram matrix per item), so the
    search costs O(M^2 T + R^M R M^2) instead of R^M remixes of the waveforms.
    """
    est = estimates.detach().double().flatten(2)  # (B, M, L)
    ref = references.detach().double().flatten(2)  # (B, R, L)
    mats = assignments(est.shape[1], ref.shape[1]).to(est.device, est.dtype)  # (K, R, M)
    ref_energy = ref.square().sum(-1)  # (B, R)
    cross = torch.einsum("brl,bml->brm", ref, est)  # (B, R, M)
    gram = torch.einsum("bml,bnl->bmn", est, est)  # (B, M, M)
    err = (
        ref_energy[:, None]
        - 2.0 * torch.einsum("krm,brm->bkr", mats, cross)
        + torch.einsum("krm,bmn,krn->bkr", mats, gram, mats)
    ).clamp_min(0.0)  # (B, K, R)
    tau = 10.0 ** (-snr_max / 10.0)
    loss = -10.0 * torch.log10((ref_energy[:, None] + eps) / (err + tau * ref_energy[:, None] + eps))
    best = loss.sum(-1).argmin(dim=1)  # (B,)
    return mats[best].to(estimates.dtype if estimates.is_floating_point() else torch.float32)


def remix(estimates: torch.Tensor, mixing: torch.Tensor) -> torch.Tensor:
    """estimates (B, M, C, T), mixing (B, R, M) -> (B, R, C, T): the sum of the outputs assigned to each reference."""
    return torch.einsum("brm,bmct->brct", mixing.to(estimates.dtype), estimates)


def mixit_loss(estimates: torch.Tensor, references: torch.Tensor, snr_max: float = 30.0) -> tuple[torch.Tensor, torch.Tensor]:
    """MixIT loss (scalar, mean negative SNR in dB over batch and references) and the chosen (B, R, M) mixing."""
    if estimates.dim() != 4 or references.dim() != 4 or estimates.shape[0] != references.shape[0] or estimates.shape[2:] != references.shape[2:]:
        raise ValueError(f"MixIT needs (B, M, C, T) and (B, R, C, T); got {tuple(estimates.shape)} and {tuple(references.shape)}")
    mixing = best_assignment(estimates, references, snr_max)
    return negative_snr(remix(estimates.float(), mixing.float()), references, snr_max).mean(), mixing


def mixture_of_mixtures(stems_a: torch.Tensor, stems_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two stem batches (B, S, C, T) -> (MoM input (B, C, T), the two mixtures as references (B, 2, C, T)).

    Only the mixtures are used: the stems are summed first, so the true stems never reach the loss.
    """
    mixtures = torch.stack([stems_a.sum(1), stems_b.sum(1)], dim=1)
    return mixtures.sum(1), mixtures
