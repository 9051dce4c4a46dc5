"""Optional dependencies ("extras"): import one, or fail with a one-line error naming the extra to install.

``pip install stemforge`` runs ``separate``; ``data synth`` needs the ``synth`` extra (pedalboard,
pyfluidsynth) and ``evaluate``'s plots the ``report`` extra (matplotlib).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from stemforge.errors import StemforgeError


class MissingExtraError(StemforgeError):
    """An optional dependency a command needs is not installed."""


def install_hint(extra: str) -> str:
    """The pip command that installs ``extra``.

    Args:
        extra: name of the extra in pyproject.toml, e.g. "synth".

    Returns:
        ``pip install 'stemforge[extra]'``.
    """
    return f"pip install 'stemforge[{extra}]'"


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional dependency.

    Args:
        module: the module to import, e.g. "pedalboard".
        extra: the extra that installs it, e.g. "synth".
        purpose: what needs it, for the message, e.g. "stemforge data synth".

    Returns:
        The imported module.

    Raises:
        MissingExtraError: the module cannot be imported; the message names the extra to install.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{purpose} needs {module.split('.')[0]}, which is not installed ({exc}): "
                                f"{install_hint(extra)}") from None
