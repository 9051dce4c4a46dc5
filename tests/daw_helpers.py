"""Stem folders for the DAW session tests: stems whose left and right channels differ, so a panner that mixes
them, a fade or a gain shows up in a render."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stemforge import audio
from stemforge.stems import FOUR_STEMS
from toy_song import toy_stems


def stem_arrays(seconds: float = 0.5, sample_rate: int = 44100, channels: int = 2) -> dict[str, np.ndarray]:
    """{stem: (channels, time) float32}: the toy song's stems, each channel delayed and scaled differently."""
    stems = toy_stems(seconds, sample_rate)
    out = {}
    for k, (name, x) in enumerate(stems.items()):
        mono = x.sum(axis=0)
        chans = [np.roll(mono, 37 * c * (k + 1)) * (0.8 - 0.15 * c) for c in range(channels)]
        out[name] = (0.5 * np.stack(chans)).astype(np.float32)
    return out


def make_stem_folder(folder: Path, stems: tuple[str, ...] = FOUR_STEMS, seconds: float = 0.5,
                     sample_rate: int = 44100, channels: int = 2, fmt: str = "wav", bits: str = "32f") -> dict[str, np.ndarray]:
    """Write ``folder/<stem>.<fmt>`` for each stem name; returns the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = stem_arrays(seconds, sample_rate, channels)
    names = list(arrays)
    written = {}
    for i, stem in enumerate(stems):
        x = arrays[names[i % len(names)]]
        audio.save(folder / f"{stem}.{fmt}", x, sample_rate, bits=bits if fmt != "mp3" else 16)
        written[stem] = x
    return written


def make_mix(path: Path, stems: dict[str, np.ndarray], sample_rate: int = 44100) -> np.ndarray:
    """The sum of ``stems`` saved as ``path`` (float wav)."""
    mix = sum(stems.values()).astype(np.float32)
    audio.save(path, mix, sample_rate, bits="32f")
    return mix


def tree(folder: Path) -> list[str]:
    """Every path under ``folder`` (hidden ones too), relative, sorted."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))
