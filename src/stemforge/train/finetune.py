"""Fine-tuning: start from any checkpoint, optionally change its stems, freeze parts of it.

Changing stems (e.g. adding guitar and piano to a 4-stem model) rebuilds the architecture with the new source list
and copies every weight across. Tensors whose size depends on the number of sources are matched by their one
differing dimension, laid out source-major (``k`` entries per source): the old stems' blocks are copied to their
new positions, blocks of new stems keep their fresh initialisation. A tensor that does not fit this rule is an
error naming it, never a silent partial load.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path
from typing import Sequence

import torch

from stemforge.checkpoint import load_checkpoint
from stemforge.errors import ModelError
from stemforge.models.base import StemModel


def with_sources(model: StemModel, sources: Sequence[str]) -> StemModel:
    """A copy of ``model`` predicting ``sources``; weights of stems it already had are kept exactly."""
    sources = list(sources)
    if len(set(sources)) != len(sources):
        raise ModelError(f"duplicate stem names in {sources}")
    if sources == model.sources:
        return model
    config = dataclasses.replace(model.config, sources=tuple(sources))
    new = type(model)(config)
    transfer_weights(model, new)
    return new


def transfer_weights(old: StemModel, new: StemModel) -> list[str]:
    """Copy ``old``'s weights into ``new`` (which may have other stems); returns the names of per-source tensors."""
    old_sources, new_sources = old.sources, new.sources
    old_state = old.state_dict()
    per_source = []
    with torch.no_grad():
        for name, target in new.state_dict().items():
            if name not in old_state:
                raise ModelError(f"cannot fine-tune: the checkpoint has no tensor {name!r}")
            source = old_state[name]
            if source.shape == target.shape:
                target.copy_(source)
                continue
            dim = _source_dim(source.shape, target.shape, len(old_sources), len(new_sources))
            if dim is None:
                raise ModelError(
                    f"cannot change stems: tensor {name!r} has shape {tuple(source.shape)} -> {tuple(target.shape)}, "
                    "which is not one block per stem"
                )
            block = source.shape[dim] // len(old_sources)
            for new_index, stem in enumerate(new_sources):
                if stem in old_sources:
                    old_index = old_sources.index(stem)
                    target.narrow(dim, new_index * block, block).copy_(source.narrow(dim, old_index * block, block))
            per_source.append(name)
    return per_source


def _source_dim(old: torch.Size, new: torch.Size, old_count: int, new_count: int) -> int | None:
    if len(old) != len(new):
        return None
    differing = [d for d in range(len(old)) if old[d] != new[d]]
    if len(differing) != 1:
        return None
    dim = differing[0]
    if old[dim] % old_count or new[dim] % new_count or old[dim] // old_count != new[dim] // new_count:
        return None
    return dim


def freeze(model: StemModel, patterns: Sequence[str]) -> int:
    """Stop gradients to parameters whose name matches any fnmatch pattern; returns how many were frozen."""
    names = [name for name, _ in model.named_parameters()]
    frozen = 0
    for pattern in patterns:
        matched = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        if not matched:
            raise ModelError(f"--freeze {pattern!r} matches no parameter (names look like {names[0]!r})")
        for name in matched:
            model.get_parameter(name).requires_grad_(False)
        frozen += len(matched)
    return frozen


def start_from(checkpoint: str | Path, sources: Sequence[str] = ()) -> tuple[StemModel, dict]:
    """Load a checkpoint for fine-tuning (train mode), with ``sources`` replacing its stems when given."""
    model, meta = load_checkpoint(checkpoint)
    if sources:
        model = with_sources(model, sources)
    return model.train(), meta
