"""Our own implementations of published separation architectures, with loaders for their original files.

``load_pretrained(path)`` reads any supported file (format table in ``loaders.FORMATS``) and returns a ready
``StemModel`` (eval mode, CPU) that the separation engine runs like any other model.
"""

from __future__ import annotations

from stemforge.models.compat.loaders import load_pretrained

__all__ = ["load_pretrained"]
