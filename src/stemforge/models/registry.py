"""Name -> model factory registry, so the CLI and API can build any model by name."""

from __future__ import annotations

import dataclasses
from typing import Callable

from stemforge.errors import ModelError
from stemforge.models.base import StemModel


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it and what to say about it in ``stemforge models``."""

    name: str
    family: str  # "classical", "cnn", "rnn", "transformer", "pretrained"
    description: str
    factory: Callable[..., StemModel]


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, family: str, description: str) -> Callable[[Callable[..., StemModel]], Callable[..., StemModel]]:
    """Decorator registering ``factory(**kwargs) -> StemModel`` under ``name``."""

    def wrap(factory: Callable[..., StemModel]) -> Callable[..., StemModel]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name, family, description, factory)
        return factory

    return wrap


def _ensure_loaded() -> None:
    # Importing the package registers every built-in model.
    import stemforge.models  # noqa: F401


def available() -> list[ModelSpec]:
    _ensure_loaded()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def build(name: str, **kwargs: object) -> StemModel:
    """Build a registered model; unknown names get a one-line error listing the known ones."""
    _ensure_loaded()
    spec = _REGISTRY.get(name)
    if spec is None:
        known = ", ".join(sorted(_REGISTRY))
        raise ModelError(f"unknown model {name!r}; known models: {known}")
    return spec.factory(**kwargs)
