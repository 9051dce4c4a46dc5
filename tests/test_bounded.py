"""models.bounded: a model built from an untrusted config may not outgrow the weights that come with it."""

from __future__ import annotations

import time

import pytest
import torch

from stemforge.errors import ModelError
from stemforge.models import available, build
from stemforge.models.bounded import REGISTRATIONS_EXTRA, REGISTRATIONS_PER_TENSOR, build_within
from stemforge.models.roformer import BandSplitRoFormer as RoFormer


@pytest.mark.parametrize("name", [spec.name for spec in available()])
def test_every_architecture_builds_within_its_own_weights(name):
    reference = build(name)
    state = reference.state_dict()
    model = build_within(lambda: build(name), state.values(), name)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in state.items()}
    assert all(not v.is_meta for v in model.state_dict().values())
    registered = sum(1 for _ in reference.modules()) + len(state)
    assert registered <= REGISTRATIONS_PER_TENSOR * len(state) + REGISTRATIONS_EXTRA


def test_a_config_deeper_than_its_file_is_refused_at_once():
    config = build("bsroformer").config
    deep = type(config).from_dict({**config.to_dict(), "depth": 10**8})  # built for real: hours and gigabytes
    start = time.perf_counter()
    with pytest.raises(ModelError, match="larger than the file's 0 tensors"):
        build_within(lambda: RoFormer(deep), [], "evil.safetensors")
    assert time.perf_counter() - start < 5


def test_a_config_wider_than_its_file_is_refused_before_any_memory_is_taken():
    small = build("bsroformer")
    config = type(small.config).from_dict({**small.config.to_dict(), "dim": 20000})  # ~100 GB of float32
    devices = []

    def factory() -> RoFormer:
        devices.append(torch.empty(0).device.type)
        return RoFormer(config)

    with pytest.raises(ModelError, match="weights, but the file holds"):
        build_within(factory, small.state_dict().values(), "evil.safetensors")
    assert devices == ["meta"]  # never built for real


def test_entries_that_are_not_tensors_are_not_counted():
    state = build("unet", preset="tiny").state_dict()
    with pytest.raises(ModelError):
        build_within(lambda: build("unet", preset="tiny"), ["not a tensor"] * 1000, "x")
    assert build_within(lambda: build("unet", preset="tiny"), [*state.values(), "extra"], "x") is not None
