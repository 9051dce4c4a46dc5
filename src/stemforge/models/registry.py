"""The one model registry: architectures (classes, keyed by ``StemModel.architecture``) and presets beside them.

* Architectures: every ``StemModel`` subclass registers its ``architecture`` name on definition
  (``models.base.ARCHITECTURES``); the published ones in ``models.compat`` are listed in ``COMPAT_ARCHITECTURES``
  by module path and imported only when asked for, so reading a checkpoint's metadata needs no compat import.
* Presets: named factories (``@register("unet", "cnn", ...)``) that build an architecture with given settings;
  ``build(name)`` makes one, ``available()`` lists them.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

from stemforge.errors import ModelError
from stemforge.models.base import ARCHITECTURES, StemModel

#: Published architectures, imported by path on first use: architecture name -> "module:Class".
COMPAT_ARCHITECTURES: dict[str, str] = {
    "htdemucs": "stemforge.models.compat.htdemucs:HTDemucs",
    "hdemucs": "stemforge.models.compat.hdemucs:HDemucs",
    "demucs_bag": "stemforge.models.compat.bag:BagOfModels",
    "openunmix": "stemforge.models.compat.openunmix:OpenUnmix",
    "compat_roformer": "stemforge.models.compat.roformer:RoFormer",
    "mdxnet_onnx": "stemforge.models.compat.mdxnet:MDXNetONNX",
}

#: Architectures whose weights cannot live in a stemforge checkpoint (an ONNX graph; a bag of other models).
NOT_CHECKPOINTABLE = frozenset({"mdxnet_onnx", "demucs_bag"})


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


#: The built-in families; importing one registers its presets and architectures. Imported by path (like
#: ``COMPAT_ARCHITECTURES``) because they import this module: the registry stays below them.
BUILT_IN_FAMILIES = ("stemforge.models.bilstm", "stemforge.models.causal_unet", "stemforge.models.classical", "stemforge.models.hybrid",
                     "stemforge.models.roformer", "stemforge.models.unet")


def _ensure_loaded() -> None:
    for module in BUILT_IN_FAMILIES:
        importlib.import_module(module)


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


def architecture_class(architecture: str) -> type[StemModel] | None:
    """The ``StemModel`` subclass whose ``architecture`` is ``architecture``, importing it if needed.

    Args:
        architecture: a built-in architecture (``"unet"``) or a published one (``"htdemucs"``).

    Returns:
        The class, or None if no architecture has that name.
    """
    cls = ARCHITECTURES.get(architecture)
    if cls is None and architecture in COMPAT_ARCHITECTURES:
        module, name = COMPAT_ARCHITECTURES[architecture].split(":")
        cls = getattr(importlib.import_module(module), name)
    if cls is None:
        _ensure_loaded()  # the built-in families register on import
        cls = ARCHITECTURES.get(architecture)
    return cls


def architectures() -> list[str]:
    """Every architecture name: built-in (registered on import) and published (imported lazily), sorted."""
    _ensure_loaded()
    return sorted(set(ARCHITECTURES) | set(COMPAT_ARCHITECTURES))
