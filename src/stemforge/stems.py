"""The stem vocabulary: the one spelling of the four (MUSDB18) and six (Demucs 6-stem) stem names.

Imports nothing, so every layer may use it. A model's outputs are called its ``sources`` (the config field
kept in every checkpoint's metadata); these constants are the default values of those fields.
"""

from __future__ import annotations

#: MUSDB18's four stems, in MUSDB18's (and Demucs') order.
FOUR_STEMS: tuple[str, ...] = ("drums", "bass", "other", "vocals")
#: The four stems plus guitar and piano, in Demucs ``htdemucs_6s`` order.
SIX_STEMS: tuple[str, ...] = (*FOUR_STEMS, "guitar", "piano")

__all__ = ["FOUR_STEMS", "SIX_STEMS"]
