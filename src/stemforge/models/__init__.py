"""Separation models: one interface (``StemModel``), a registry, and the built-in families."""

from stemforge.models.base import ModelConfig, StemModel
from stemforge.models.registry import available, build, register

# Importing each family module registers its models.
from stemforge.models import bilstm, causal_unet, classical, hybrid, roformer, unet  # noqa: F401,E402

__all__ = ["ModelConfig", "StemModel", "available", "build", "register"]
