"""stemforge: separate music into stems with neural networks and classical DSP.

The public API, loaded on first use (``import stemforge`` imports no torch)::

    from stemforge import Separator, load_model
    model = load_model("htdemucs")          # bundled, preset, zoo name, or a checkpoint file
    origin, stems = Separator(model).separate_audio_file("song.wav")
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from stemforge.errors import StemforgeError

#: Public names imported on first access: name -> module.
_LAZY = {"Separator": "stemforge.separate", "load_model": "stemforge.hub"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stemforge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["Separator", "StemforgeError", "__version__", "load_model"]
