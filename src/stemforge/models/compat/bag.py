"""Bags of models (demucs ``htdemucs_ft``, ``mdx`` ...): per-source weighted average of several models."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
from torch import nn

from stemforge.errors import ModelError
from stemforge.models.base import ModelConfig, StemModel


@dataclasses.dataclass
class BagConfig(ModelConfig):
    weights: tuple[tuple[float, ...], ...] = ()
    segment: float | None = None


def apply_bag_segment(model: StemModel, segment: float) -> None:
    """A bag yaml's ``segment`` replaces a member's, except it may only shorten an HTDemucs' (as in demucs)."""
    cfg = model.config
    if hasattr(cfg, "segment") and (not getattr(cfg, "use_train_segment", False) or segment <= cfg.segment):
        cfg.segment = float(segment)
        model.default_segment = float(segment)  # type: ignore[misc]


class BagOfModels(StemModel):
    """mix (B, C, T) -> (B, S, C, T) = sum_i w_i[s] model_i(mix)[s] / sum_i w_i[s].

    Every member sees the same segment, so running the bag per segment equals demucs' per-model application.
    A bag-level ``segment`` (from the yaml) shortens HTDemucs members' training segment, as demucs does.
    """

    architecture = "demucs_bag"
    config_class = BagConfig
    trainable = False

    def __init__(self, models: Sequence[StemModel], weights: Sequence[Sequence[float]] | None = None,
                 segment: float | None = None) -> None:
        first = models[0]
        for other in models:
            if other.sources != first.sources or other.sample_rate != first.sample_rate or other.channels != first.channels:
                raise ModelError("models in a bag must share sources, sample rate and channels")
        if weights is None:
            weights = [[1.0] * len(first.sources) for _ in models]
        if len(weights) != len(models) or any(len(w) != len(first.sources) for w in weights):
            raise ModelError("bag weights must be one row per model with one weight per source")
        config = BagConfig(sources=tuple(first.sources), sample_rate=first.sample_rate, channels=first.channels,
                           weights=tuple(tuple(float(x) for x in w) for w in weights), segment=segment)
        super().__init__(config)
        self.models = nn.ModuleList(models)
        if segment is not None:
            for model in models:
                apply_bag_segment(model, segment)
        self.register_buffer("weights", torch.tensor(config.weights, dtype=torch.float32), persistent=False)
        self.default_segment = min(float(getattr(m, "default_segment", 10.0)) for m in models)  # type: ignore[misc]
        for model in models:
            if getattr(model.config, "use_train_segment", False):
                self.default_segment = min(self.default_segment, float(model.config.segment))  # type: ignore[misc]

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """mix: (batch, channels, time) -> (batch, sources, channels, time)."""
        out = None
        for model, weight in zip(self.models, self.weights):
            part = model(mix) * weight.to(mix.dtype)[None, :, None, None]
            out = part if out is None else out + part
        return out / self.weights.sum(dim=0).to(mix.dtype)[None, :, None, None]
