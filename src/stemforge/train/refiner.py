"""Training the re-mask's low-band refiner (``models.refiner``) on a frozen network's stems.

The refiner only changes the lowest ``bins`` bins of the re-mask's long STFT, so a song is reduced once to what
training needs there (``band_example``): the network's stem magnitudes and the mix's spectrum in the band, the
true stems' spectra in the band, and, per stem, the error the plain re-mask leaves above the band and the stem's
energy. The loss is then the songs' SDR itself, computed in the STFT domain (a Hann window at hop n_fft / 3 or
n_fft / 4 is a tight frame: energies there are the waveform's times a constant, which the ratio cancels):

    SDR_j = 10 log10(energy_j / (error above the band_j + sum_band |T_j - mask_j X|^2))

Training on these cached bands takes a second or less per step; running the network every step would take minutes.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Iterable

import torch

from stemforge.dsp.spectral import stft
from stemforge.dsp.wiener import REMASK_FLOOR
from stemforge.models.refiner import LowBandRefiner


@dataclasses.dataclass
class BandSet:
    """Songs reduced to the refiner's band (stacked over songs; every song the same length).

    mag: (songs, sources, frames, bins) the network's stems' magnitudes summed over channels (floored);
    mix: (songs, channels, frames, bins) complex; target: (songs, sources, channels, frames, bins) complex;
    above: (songs, sources) the plain re-mask's squared error above the band; energy: (songs, sources) each
    true stem's energy (full band); plays: (songs, sources) bool, the stems that play (scored).
    """

    mag: torch.Tensor
    mix: torch.Tensor
    target: torch.Tensor
    above: torch.Tensor
    energy: torch.Tensor
    plays: torch.Tensor

    def __len__(self) -> int:
        return self.mag.shape[0]

    def take(self, index: torch.Tensor) -> "BandSet":
        return BandSet(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))

    @staticmethod
    def gather(parts: Iterable["BandSet"], count: int) -> "BandSet":
        """Up to ``count`` sets (of one song each, say) in one, filled into tensors allocated once.

        Not ``torch.cat`` of a list: a few MB kept per song between the hundreds of MB each song's separation
        allocates and frees fragmented glibc's heap, and the process grew by 40-80 MB a song.
        """
        out: BandSet | None = None
        filled = 0
        for part in parts:
            if out is None:
                out = BandSet(*(torch.empty((count, *getattr(part, f.name).shape[1:]),
                                            dtype=getattr(part, f.name).dtype)
                                for f in dataclasses.fields(BandSet)))
            for f in dataclasses.fields(BandSet):
                getattr(out, f.name)[filled:filled + len(part)] = getattr(part, f.name)
            filled += len(part)
        if out is None:
            raise ValueError("no songs")
        return out.take(torch.arange(filled)) if filled < count else out


def band_example(stems: torch.Tensor, mix: torch.Tensor, truth: torch.Tensor, n_fft: int, hop: int,
                 bins: int, plays: torch.Tensor) -> BandSet:
    """One song reduced to the band.

    Args:
        stems: (sources, channels, time) the network's stems (without a re-mask).
        mix: (channels, time) the mixture.
        truth: (sources, channels, time) the true stems.
        n_fft, hop: the re-mask's STFT.
        bins: the refiner's band (the lowest ``bins`` bins).
        plays: (sources,) bool, which true stems play.

    Returns:
        A ``BandSet`` of one song.
    """
    y = stft(stems.float(), n_fft, hop).transpose(-1, -2)  # (S, C, N, F), frame-major as dsp.wiener.remask
    x = stft(mix.float(), n_fft, hop).transpose(-1, -2)  # (C, N, F)
    t = stft(truth.float(), n_fft, hop).transpose(-1, -2)  # (S, C, N, F)
    mag = y.abs().clamp_min(REMASK_FLOOR).sum(1)  # (S, N, F)
    ratio = mag / mag.sum(0, keepdim=True)
    above = (t[..., bins:] - ratio[:, None, :, bins:] * x[None, ..., bins:]).abs().square().sum((1, 2, 3))
    return BandSet(mag=mag[None, ..., :bins].contiguous(), mix=x[None, ..., :bins].contiguous(),
                   target=t[None, ..., :bins].contiguous(), above=above[None].double(),
                   energy=t.abs().square().sum((1, 2, 3))[None].double(), plays=plays[None].bool())


def band_sdr(masks: torch.Tensor, songs: BandSet) -> torch.Tensor:
    """masks: (songs, sources, frames, bins) -> (songs, sources) SDR in dB with these masks in the band."""
    band = (songs.target - masks[:, :, None] * songs.mix[:, None]).abs().square().sum((2, 3, 4))
    error = songs.above + band.double()
    return 10 * torch.log10(songs.energy.clamp_min(1e-20) / error.clamp_min(1e-20))


def mean_sdr(refiner: LowBandRefiner, songs: BandSet, batch: int = 8) -> torch.Tensor:
    """(sources,) mean SDR over the songs in which each stem plays."""
    scores = []
    with torch.no_grad():
        for start in range(0, len(songs), batch):
            part = songs.take(torch.arange(start, min(start + batch, len(songs))))
            scores.append(band_sdr(refiner.masks(part.mag, part.mix), part))
    plays = songs.plays
    return torch.where(plays, torch.cat(scores), 0.0).sum(0) / plays.sum(0).clamp_min(1)


def train_refiner(refiner: LowBandRefiner, train: BandSet, dev: BandSet, steps: int, batch: int = 8,
                  lr: float = 1e-3, seed: int = 0, every: int = 100,
                  log: Callable[[str], None] = print) -> tuple[dict[str, torch.Tensor], int, float]:
    """Adam with a one-cycle schedule on the negative mean SDR of random songs; the best step on dev is kept.

    Args:
        refiner: trained in place (its last state stays in it).
        train, dev: songs reduced to the band (``band_example``).
        steps: optimiser steps; dev is scored every ``every`` steps and at step 0 (the plain re-mask).
        batch: songs per step.
        lr: peak learning rate.
        seed: batch order.
        log: one line per evaluation.

    Returns:
        (the best state on dev, its step, its mean dev SDR over the stems).
    """
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(refiner.parameters(), lr=lr)
    total = max(steps, 2)
    warm_up = max(1, round(0.05 * total)) + 0.5  # OneCycleLR divides by each phase's length: neither may be 0
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, lr, total_steps=total, pct_start=warm_up / total)
    score = float(mean_sdr(refiner, dev).mean())
    best = ({k: v.clone() for k, v in refiner.state_dict().items()}, 0, score)
    log(f"step 0 dev {score:.4f} (the plain re-mask)")
    losses, tic = [], time.perf_counter()
    for step in range(1, steps + 1):
        part = train.take(torch.randint(0, len(train), (batch,), generator=generator))
        sdr = band_sdr(refiner.masks(part.mag, part.mix), part)
        loss = -torch.where(part.plays, sdr, 0.0).sum() / part.plays.sum().clamp_min(1)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
        if step % every == 0 or step == steps:
            per_stem = mean_sdr(refiner, dev)
            score = float(per_stem.mean())
            if score > best[2] and math.isfinite(score):
                best = ({k: v.clone() for k, v in refiner.state_dict().items()}, step, score)
            log(f"step {step} train {-sum(losses) / len(losses):.3f} dev {score:.4f} "
                f"({' '.join(f'{v:.3f}' for v in per_stem.tolist())}) {time.perf_counter() - tic:.0f} s")
            losses = []
    return best
