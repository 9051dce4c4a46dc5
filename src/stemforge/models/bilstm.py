"""Open-Unmix style recurrent separator, with a unidirectional (causal) variant for streaming.

    mix (B, C, T) -> |STFT| (B, C, F, N) -> frames (B, N, C * F') with F' = ``max_bins``
    -> per-bin input norm -> Linear + BatchNorm + tanh (per-frame encoder, hidden H)
    -> LSTM x ``layers`` (bidirectional: H/2 per direction; causal: H forward only)
    -> skip: concat(encoder, LSTM) -> Linear + BatchNorm + ReLU -> Linear + BatchNorm -> logits (B, S, C, F', N)
    -> softmax over stems -> masks (top bin repeated up to Nyquist) on the complex mix -> iSTFT.

Open-Unmix trains one network per stem and multiplies a ReLU output with the mix; here one network predicts
every stem with softmax masks, so the stems sum to the mix (``mask_based``). With ``causal=True`` the output
of frame n depends on frames <= n only (BatchNorm is per-frame at inference).
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings
from typing import Any, Iterator

import torch
from torch import nn

from stemforge.models.base import ModelConfig
from stemforge.models.frontend import FrequencyNorm, Spectrogram, apply_masks, extend_bins
from stemforge.models.neural import NeuralStemModel, preset_factory
from stemforge.models.registry import register


@dataclasses.dataclass
class BiLSTMConfig(ModelConfig):
    n_fft: int = 4096
    hop: int = 1024
    max_bins: int = 1487  # bins the network sees and masks (Open-Unmix: 1487 of 2049, 16 kHz); top mask repeated above
    hidden: int = 512
    layers: int = 3
    causal: bool = False
    dropout: float = 0.0  # between LSTM layers

    def __post_init__(self) -> None:
        if self.max_bins > self.n_fft // 2 + 1:
            raise ValueError(f"max_bins ({self.max_bins}) exceeds the {self.n_fft // 2 + 1} STFT bins")
        if not self.causal and self.hidden % 2:
            raise ValueError("hidden must be even for the bidirectional LSTM")


@contextlib.contextmanager
def _native_cpu_rnn(device: torch.device) -> Iterator[None]:
    """Run the LSTM with ATen's own kernels on CPU: oneDNN's RNN path measured 5-10x slower here."""
    if device.type != "cpu":
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # oneDNN flag changes warn about TF32 on Intel GPUs
        with torch.backends.mkldnn.flags(enabled=False):
            yield


class BiLSTMSeparator(NeuralStemModel):
    architecture = "bilstm"
    config_class = BiLSTMConfig
    mask_based = True
    default_segment = 6.0

    def __init__(self, config: BiLSTMConfig) -> None:
        super().__init__(config)
        self.config: BiLSTMConfig = config
        self.spectrogram = Spectrogram(config.n_fft, config.hop)
        h, c, s = config.hidden, config.channels, len(config.sources)
        self.norm = FrequencyNorm(config.max_bins)
        self.encoder = nn.Sequential(nn.Linear(c * config.max_bins, h, bias=False), nn.BatchNorm1d(h), nn.Tanh())
        self.lstm = nn.LSTM(
            h, h if config.causal else h // 2, num_layers=config.layers, bidirectional=not config.causal,
            batch_first=True, dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.decoder = nn.Sequential(
            nn.Linear(2 * h, h, bias=False), nn.BatchNorm1d(h), nn.ReLU(),
            nn.Linear(h, s * c * config.max_bins, bias=False), nn.BatchNorm1d(s * c * config.max_bins),
        )

    def analyse(self, mix: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], Any]:
        spec = self.spectrogram(mix)  # (B, C, F, N)
        return (spec[..., : self.config.max_bins, :].abs(),), (spec, mix.shape[-1])

    def network(self, mag: torch.Tensor) -> torch.Tensor:
        """mag: (B, C, F', N) -> mask logits (B, S, C, F', N)."""
        b, c, f, n = mag.shape
        x = self.norm(mag).permute(0, 3, 1, 2).reshape(b * n, c * f)  # one row per frame
        encoded = self.encoder(x).reshape(b, n, -1)
        with _native_cpu_rnn(encoded.device):
            recurrent, _ = self.lstm(encoded)
        x = torch.cat([encoded, recurrent], dim=-1).reshape(b * n, -1)
        logits = self.decoder(x).reshape(b, n, len(self.config.sources), c, -1)
        return logits.permute(0, 2, 3, 4, 1)

    def synthesise(self, logits: torch.Tensor, context: Any) -> torch.Tensor:
        spec, length = context
        masks = extend_bins(torch.softmax(logits.float(), dim=1), spec.shape[-2])
        return self.spectrogram.inverse(apply_masks(masks, spec), length)


PRESETS: dict[str, dict[str, Any]] = {
    # ~0.7 M parameters (11 kHz band): tests, quick training runs, streaming demos.
    "tiny": dict(n_fft=4096, hop=1024, max_bins=512, hidden=96, layers=2),
    # ~4 M parameters (16 MB, 16 kHz band): the CPU-friendly workhorse.
    "base": dict(n_fft=4096, hop=1024, max_bins=1487, hidden=192, layers=3, dropout=0.2),
    # Open-Unmix's width over the full band.
    "large": dict(n_fft=4096, hop=1024, max_bins=2049, hidden=512, layers=3, dropout=0.4),
}

register("bilstm", "rnn", "Open-Unmix style BiLSTM on magnitude spectrograms, soft masks per stem")(
    preset_factory(BiLSTMSeparator, PRESETS)
)
register("lstm-causal", "rnn", "causal (unidirectional) LSTM variant of bilstm for streaming")(
    preset_factory(BiLSTMSeparator, PRESETS, causal=True)
)
