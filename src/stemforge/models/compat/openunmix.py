"""Open-Unmix (Stöter et al., JOSS 2019): one BiLSTM magnitude-mask network per target, then EM Wiener.

Per target: |STFT| -> crop to ``max_bin`` -> standardise -> fc1+BN+tanh -> 3-layer BiLSTM with a skip
connection -> fc2+BN+ReLU -> fc3+BN -> de-standardise -> ReLU mask on the mixture magnitude. Parameter
names follow the published per-target ``.pth`` state dicts (umxhq, umxl, umx, umxse), so they load unchanged.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn
from torch.nn import functional as F

from stemforge.dsp.spectral import inverse_stft
from stemforge.dsp.wiener import wiener
from stemforge.models.base import ModelConfig, StemModel


#: Regulariser of Open-Unmix's Wiener filter (``openunmix.filtering.wiener``'s default).
WIENER_EPS = 1e-10


@dataclasses.dataclass
class OpenUnmixConfig(ModelConfig):
    sources: tuple[str, ...] = ("vocals", "drums", "bass", "other")
    n_fft: int = 4096
    hop: int = 1024
    hidden_size: int = 512
    nb_layers: int = 3
    max_bin: int = 1487
    unidirectional: bool = False
    niter: int = 1
    softmask: bool = False
    residual: bool = False
    wiener_win_len: int = 300


class OpenUnmixTarget(nn.Module):
    """One target's network: magnitude (batch, channels, bins, frames) -> same shape, masked magnitude."""

    def __init__(self, bins: int, channels: int, hidden_size: int, nb_layers: int, max_bin: int, unidirectional: bool) -> None:
        super().__init__()
        self.bins, self.max_bin, self.hidden_size = bins, max_bin, hidden_size
        self.fc1 = nn.Linear(max_bin * channels, hidden_size, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden_size)
        self.lstm = nn.LSTM(
            input_size=hidden_size,
            hidden_size=hidden_size if unidirectional else hidden_size // 2,
            num_layers=nb_layers,
            bidirectional=not unidirectional,
            dropout=0.4 if nb_layers > 1 else 0.0,
        )
        self.fc2 = nn.Linear(hidden_size * 2, hidden_size, bias=False)
        self.bn2 = nn.BatchNorm1d(hidden_size)
        self.fc3 = nn.Linear(hidden_size, bins * channels, bias=False)
        self.bn3 = nn.BatchNorm1d(bins * channels)
        # Stored already negated (mean) and inverted (scale), as in the published files.
        self.input_mean = nn.Parameter(torch.zeros(max_bin))
        self.input_scale = nn.Parameter(torch.ones(max_bin))
        self.output_scale = nn.Parameter(torch.ones(bins))
        self.output_mean = nn.Parameter(torch.ones(bins))

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        """magnitude: (batch, channels, bins, frames) -> (batch, channels, bins, frames)."""
        batch, channels, bins, frames = magnitude.shape
        x = magnitude.permute(3, 0, 1, 2)  # (frames, batch, channels, bins)
        mix = x
        x = (x[..., : self.max_bin] + self.input_mean) * self.input_scale
        x = self.bn1(self.fc1(x.reshape(frames * batch, -1)))
        x = torch.tanh(x.reshape(frames, batch, self.hidden_size))
        x = torch.cat([x, self.lstm(x)[0]], dim=-1)
        x = F.relu(self.bn2(self.fc2(x.reshape(frames * batch, -1))))
        x = self.bn3(self.fc3(x)).reshape(frames, batch, channels, bins)
        x = x * self.output_scale + self.output_mean
        return (F.relu(x) * mix).permute(1, 2, 3, 0)


class OpenUnmix(StemModel):
    """Open-Unmix separator: mix (batch, channels, time) -> (batch, sources, channels, time)."""

    architecture = "openunmix"
    config_class = OpenUnmixConfig
    mask_based = False
    trainable = False
    default_segment = 30.0

    def __init__(self, config: OpenUnmixConfig) -> None:
        super().__init__(config)
        bins = config.n_fft // 2 + 1
        self.target_models = nn.ModuleDict({
            name: OpenUnmixTarget(bins, config.channels, config.hidden_size, config.nb_layers, config.max_bin, config.unidirectional)
            for name in (config.sources[:-1] if config.residual else config.sources)
        })

    def _window(self, ref: torch.Tensor) -> torch.Tensor:
        return torch.hann_window(self.config.n_fft, device=ref.device, dtype=ref.dtype)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix: (batch, channels, time) -> (batch, sources, channels, time)."""
        cfg = self.config
        length = mix.shape[-1]
        # Reflect padding (as the reference STFT) needs more than n_fft / 2 samples: zero-extend tiny inputs.
        audio = F.pad(mix, (0, max(0, cfg.n_fft // 2 + 1 - length))).float()
        batch, channels, padded = audio.shape
        window = self._window(audio)
        spec = torch.stft(audio.reshape(-1, padded), cfg.n_fft, cfg.hop, window=window, center=True,
                          pad_mode="reflect", return_complex=True)
        spec = spec.reshape(batch, channels, *spec.shape[-2:])  # (B, C, F, N)
        magnitude = spec.abs()
        estimates = torch.stack([net(magnitude).float() for net in self.target_models.values()], dim=-1)  # (B, C, F, N, S)
        estimates = estimates.permute(0, 4, 1, 2, 3)  # (B, S, C, F, N)
        frames = spec.shape[-1]
        step = cfg.wiener_win_len or frames
        # One Wiener filter per song and window of frames, with Open-Unmix's settings (openunmix.filtering).
        sources = torch.cat([
            torch.cat([wiener(estimates[b:b + 1, ..., pos: pos + step], spec[b:b + 1, ..., pos: pos + step], cfg.niter,
                              use_softmask=cfg.softmask, eps=WIENER_EPS, residual=cfg.residual)
                       for pos in range(0, frames, step)], dim=-1)
            for b in range(batch)
        ])  # (B, S [+1], C, F, N)
        waves = inverse_stft(sources.reshape(-1, *sources.shape[-2:]), cfg.n_fft, cfg.hop, window, padded)
        return waves.reshape(batch, sources.shape[1], channels, padded)[..., :length].to(mix.dtype)
