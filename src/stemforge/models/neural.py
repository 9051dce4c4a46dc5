"""Common skeleton of the trained separators: analysis -> network -> synthesis, plus presets.

Every neural model splits ``forward`` in three so the middle part can be exported on its own (ONNX):

    inputs, context = model.analyse(mix)      # STFT, padding: outside the exported graph
    outputs = model.network(*inputs)          # the learned part, real tensors in and out
    stems = model.synthesise(outputs, context)  # masks applied, iSTFT, crop

``forward`` chains the three and, when ``wiener_iterations > 0``, refines the stems with the multichannel
Wiener EM post-filter (an inference option, not part of the learned model).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar

import torch

from stemforge.errors import ModelError
from stemforge.models.base import ModelConfig, StemModel

NetworkOutput = torch.Tensor | tuple[torch.Tensor, ...]


class NeuralStemModel(StemModel):
    """Base class of the trained separators; subclasses implement ``analyse``, ``network``, ``synthesise``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        #: EM iterations of the multichannel Wiener post-filter at inference; 0 disables it.
        self.wiener_iterations = 0

    @property
    def stft_size(self) -> tuple[int, int]:
        """(n_fft, hop) of the model's STFT; the Wiener post-filter works in the same resolution."""
        return self.config.n_fft, self.config.hop  # type: ignore[attr-defined]

    def analyse(self, mix: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], Any]:
        """mix: (batch, channels, time) -> (network inputs, context for ``synthesise``)."""
        raise NotImplementedError

    def network(self, *inputs: torch.Tensor) -> NetworkOutput:
        """The learned part: real tensors in, real tensors out (exported to ONNX)."""
        raise NotImplementedError

    def synthesise(self, outputs: NetworkOutput, context: Any) -> torch.Tensor:
        """Network outputs -> stems (batch, sources, channels, time)."""
        raise NotImplementedError

    def check_input(self, mix: torch.Tensor) -> None:
        if mix.dim() != 3 or mix.shape[1] != self.channels or mix.shape[-1] < 1:
            raise ModelError(
                f"{self.architecture} expects mix of shape (batch, {self.channels}, time >= 1), got {tuple(mix.shape)}"
            )

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix: (batch, channels, time) -> (batch, sources, channels, time)."""
        self.check_input(mix)
        inputs, context = self.analyse(mix)
        stems = self.synthesise(self.network(*inputs), context)
        return self.postfilter(stems, mix)

    def postfilter(self, stems: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        """Optional multichannel Wiener EM refinement of ``stems`` (batch, sources, channels, time)."""
        if self.wiener_iterations <= 0:
            return stems
        from stemforge.dsp.wiener import wiener_refine

        n_fft, hop = self.stft_size
        return wiener_refine(stems, mix, self.wiener_iterations, n_fft, hop).to(stems.dtype)


PRESET_NAMES = ("tiny", "base", "large")


def preset_factory(
    model_class: type[NeuralStemModel], presets: dict[str, dict[str, Any]], **fixed: Any
) -> Callable[..., NeuralStemModel]:
    """A registry factory ``(preset="tiny", **overrides) -> model`` over named config presets.

    ``fixed`` entries are applied between the preset and the overrides (e.g. ``causal=True`` for a variant).
    Unknown presets or config fields give a one-line ``ModelError``.
    """
    config_class = model_class.config_class
    fields = {f.name for f in dataclasses.fields(config_class)}

    def build(preset: str = "tiny", **overrides: Any) -> NeuralStemModel:
        if preset not in presets:
            raise ModelError(f"unknown preset {preset!r} for {model_class.architecture}; choose from {', '.join(presets)}")
        unknown = set(overrides) - fields
        if unknown:
            raise ModelError(f"unknown option(s) for {model_class.architecture}: {', '.join(sorted(unknown))}")
        values = {**presets[preset], **fixed, **overrides}
        if "sources" in values:
            values["sources"] = tuple(values["sources"])
        try:
            return model_class(config_class(**values))
        except (ValueError, TypeError) as exc:
            raise ModelError(f"invalid {model_class.architecture} configuration: {exc}") from exc

    build.presets = tuple(presets)  # type: ignore[attr-defined]
    return build
