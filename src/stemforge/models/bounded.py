"""Building a model whose shape comes from a file we do not trust, without letting the file choose its size.

A checkpoint's config (ours, a demucs package's kwargs, a RoFormer YAML) decides how many layers and how wide they
are. A hostile or broken one can ask for ``depth: 100000000``: the loader then spends hours registering layers (or
allocates and initialises tens of gigabytes) before its weights are compared with the file's. So the model is first
built on PyTorch's ``meta`` device (shapes only, no memory, no initialisation), counting the modules, parameters and
buffers it registers, and stopped as soon as it outgrows the tensors the file actually holds; only a skeleton that
fits the file is then built for real. Nothing in PyTorch bounds a build this way, hence this module.
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import Callable, Iterable, Iterator, TypeVar

import torch
from torch import nn
from torch.nn.modules import module as torch_module

from stemforge.errors import ModelError

Model = TypeVar("Model", bound=nn.Module)

#: Registrations (modules + parameters + buffers) allowed per tensor in the file, plus a fixed allowance for
#: parameter-free modules (activations, containers) and computed buffers. Our architectures register at most
#: about 2.5 per tensor (tests/test_bounded.py checks every preset).
REGISTRATIONS_PER_TENSOR = 4
REGISTRATIONS_EXTRA = 64
#: Elements the skeleton may hold beyond the file's: buffers computed at construction (windows, rotary tables).
ELEMENTS_EXTRA = 10_000_000


class _TooLarge(Exception):
    pass


@contextlib.contextmanager
def _registration_budget(limit: int) -> Iterator[None]:
    """Raise ``_TooLarge`` in this thread once more than ``limit`` modules/parameters/buffers are registered."""
    thread = threading.get_ident()
    count = 0

    def hook(*_: object) -> None:
        nonlocal count
        if threading.get_ident() == thread:
            count += 1
            if count > limit:
                raise _TooLarge

    handles = [torch_module.register_module_module_registration_hook(hook),
               torch_module.register_module_parameter_registration_hook(hook),
               torch_module.register_module_buffer_registration_hook(hook)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def build_within(factory: Callable[[], Model], tensors: Iterable[torch.Tensor], what: str) -> Model:
    """Build ``factory()`` only if the model it describes is no larger than the weights that come with it.

    Args:
        factory: builds the model from the untrusted config (called twice: on the meta device, then for real).
        tensors: the weights read from the file (any number, any shapes; entries that are not tensors are skipped).
        what: the file, for the error message.

    Returns:
        ``factory()``, built normally (on the default device).

    Raises:
        ModelError: the config asks for more modules, parameters or buffers than the file's tensors can fill, or
            for more weights than the file holds.
    """
    tensors = [t for t in tensors if isinstance(t, torch.Tensor)]
    limit = REGISTRATIONS_PER_TENSOR * len(tensors) + REGISTRATIONS_EXTRA
    available = sum(t.numel() for t in tensors)
    try:
        with _registration_budget(limit), torch.device("meta"):
            skeleton = factory()
    except _TooLarge:
        raise ModelError(f"{what}: its config describes a model larger than the file's {len(tensors)} tensors can fill "
                         f"(over {limit} modules, parameters and buffers; corrupt or hostile)") from None
    needed = sum(math.prod(t.shape) for t in skeleton.state_dict().values())
    if needed > available + ELEMENTS_EXTRA:
        raise ModelError(f"{what}: its config describes a model of {needed:,} weights, but the file holds "
                         f"{available:,} (corrupt or hostile)")
    del skeleton
    return factory()
