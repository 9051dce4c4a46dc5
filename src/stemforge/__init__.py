"""stemforge: separate music into stems with neural networks and classical DSP."""

__version__ = "0.1.0"

from stemforge.errors import StemforgeError

__all__ = ["StemforgeError", "__version__"]
