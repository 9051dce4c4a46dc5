"""The one interface every separator implements, neural or classical.

A model maps a batch of mixtures to a batch of stems at its own sample rate:

    forward(mix: (batch, channels, time)) -> (batch, sources, channels, time)

The output has exactly the input's time length. Models must accept any length >= 1 sample;
the separation engine normally feeds fixed-length segments (see ``stemforge.separate``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from stemforge.stems import FOUR_STEMS


@dataclasses.dataclass
class ModelConfig:
    """Fields every model config has; architectures subclass this with their own fields."""

    sources: tuple[str, ...] = FOUR_STEMS
    sample_rate: int = 44100
    channels: int = 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Rebuild from ``to_dict`` output; unknown keys are an error so stale checkpoints fail loudly."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(data) - set(names)
        if unknown:
            raise ValueError(f"unknown config fields for {cls.__name__}: {sorted(unknown)}")
        kwargs = {}
        for key, value in data.items():
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)


#: architecture name -> model class, filled as subclasses are defined; checkpoints rebuild models from it.
ARCHITECTURES: dict[str, type["StemModel"]] = {}


class StemModel(nn.Module):
    """Base class of all separators.

    Subclasses set ``config`` (a ``ModelConfig`` subclass instance) and implement ``forward``.
    ``mask_based`` is True when the stems sum back to the mixture by construction (masks that sum to one
    applied to a linear transform); the engine and tests rely on it.
    """

    architecture: ClassVar[str] = "base"
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    mask_based: ClassVar[bool] = False
    trainable: ClassVar[bool] = True
    #: The segment length (seconds) the model was trained on or works best with.
    default_segment: ClassVar[float] = 10.0
    #: The fraction of a segment shared with the next one when the caller does not choose (Demucs' 0.25).
    default_overlap: ClassVar[float] = 0.25

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.architecture != "base":
            ARCHITECTURES[cls.architecture] = cls

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    @property
    def sources(self) -> list[str]:
        return list(self.config.sources)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return self.config.channels

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def padded_length(self, samples: int) -> int:
        """The input length the network works on for ``samples`` of input (models whose strided layers need a
        multiple of some size pad zeros up to it): a training chunk of this length costs the same and has no zeros.

        Args:
            samples: input length in samples.

        Returns:
            The padded length in samples, ``>= samples`` (this default: ``samples``, no padding).
        """
        return samples

    def forward(self, mix: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """mix: (batch, channels, time) -> (batch, sources, channels, time)."""
        raise NotImplementedError
