"""A small learnt correction of the re-mask's ratios in the low band (``dsp.wiener.remask``'s ``adjust``).

The re-mask splits the mix by the stems' magnitude ratios ``|Y_j| / sum_k |Y_k|`` in a long STFT; its gain on the
bundled U-Net comes mostly from below 500 Hz, where the network's 2048-point STFT cannot resolve bass notes.
``LowBandRefiner`` sees, for the lowest ``bins`` bins of that long STFT, the stems' log magnitudes and ratios and
the mix's log magnitude, and the bin's place in the band, and adds a correction to the ratio's logits:

    mask_j = softmax_j(log |Y_j| + refiner(features)_j)

Its last convolution starts at zero, so an untrained refiner is exactly the plain re-mask. Convolutions run over
(frames, bins) with dilations 1, 2, 4, ... along frequency (a bass note's partials lie tens of bins apart).
"""

from __future__ import annotations

import torch
from torch import nn

def feature_planes(sources: int) -> int:
    """The refiner's input planes: per stem its log magnitude and its ratio, then the mix's log magnitude and the
    bin's place in the band. No stereo width: a refiner given |L - R| learnt that a centred bin is bass, and lost
    1.7 dB of bass on songs whose bass was wide (MODEL_CARD.md)."""
    return 2 * sources + 2


#: The log magnitudes' floor, relative to the excerpt's mean mix magnitude in the band.
LOG_FLOOR = 1e-4
#: Frames quieter than this fraction of the loudest (band magnitude summed) are left out of the mean.
ACTIVE = 1e-3


def active_mean(mixmag: torch.Tensor) -> torch.Tensor:
    """mixmag: (batch, frames, bins) -> (batch, 1, 1) mean magnitude over the frames that sound.

    A segment's reference level: the engine's last segment of a song is zero-padded (half of it, for a 20 s
    song), and a plain mean would shift every log magnitude of that segment.
    """
    frame = mixmag.sum(-1)  # (B, N)
    active = frame > ACTIVE * frame.amax(-1, keepdim=True)
    mean = (frame * active).sum(-1) / (active.sum(-1) * mixmag.shape[-1]).clamp_min(1)
    return mean.clamp_min(1e-8)[:, None, None]


def features(mag: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The refiner's input planes.

    Args:
        mag: (batch, sources, frames, bins) the stems' magnitudes summed over channels (floored above zero).
        x: (batch, channels, frames, bins) complex, the mixture's spectrum.

    Returns:
        (batch, 2 * sources + 2, frames, bins) float32.
    """
    mixmag = x.abs().sum(1)  # (B, N, K)
    scale = active_mean(mixmag)
    floor = LOG_FLOOR * scale
    logmag = torch.log((mag + floor[:, None]) / scale[:, None])
    ratio = mag / mag.sum(1, keepdim=True)
    logmix = torch.log((mixmag + floor) / scale)
    place = torch.linspace(0, 1, mag.shape[-1], device=mag.device, dtype=mag.dtype).expand_as(mixmag)
    return torch.cat([logmag, ratio, logmix[:, None], place[:, None]], 1)


class LowBandRefiner(nn.Module):
    """(mag, x) of the band -> logit corrections (batch, sources, frames, bins); zero before training."""

    def __init__(self, sources: int, width: int, layers: int) -> None:
        super().__init__()
        convs: list[nn.Module] = []
        cin = feature_planes(sources)
        for i in range(layers - 1):
            dilation = 2**i
            convs += [nn.Conv2d(cin, width, 3, padding=(1, dilation), dilation=(1, dilation)), nn.ReLU()]
            cin = width
        self.body = nn.Sequential(*convs)
        self.head = nn.Conv2d(cin, sources, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, mag: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """mag: (B, S, N, K), x: (B, C, N, K) complex -> (B, S, N, K) corrections of the logits log |Y_j|."""
        return self.head(self.body(features(mag, x)))

    def masks(self, mag: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The corrected ratios: (B, S, N, K), summing to one over the stems."""
        return torch.softmax(torch.log(mag) + self(mag, x), 1)
