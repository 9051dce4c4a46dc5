"""Recorded drum kits: Hydrogen drumkits (``hydrogen-drumkits``) with velocity layers, played from GM drum hits.

A Hydrogen kit is a folder with ``drumkit.xml`` (instruments, each with velocity layers or one sample) and its
sample files (FLAC/WAV). ``HydrogenKit`` maps General MIDI drum notes to the kit's instruments by name (kick,
snare, hats, toms, cymbals), picks the layer whose velocity range holds each hit, and adds the sample at the
hit's time. ``drumkit.xml`` is parsed as plain data (``xml.etree``, no entities are resolved beyond the
XML built-ins); samples are decoded by libsndfile. Nothing in a kit folder can run code.
"""

from __future__ import annotations

import dataclasses
import functools
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf
import soxr

from stemforge.data.synth import drums
from stemforge.errors import StemforgeError

HYDROGEN_DRUMKITS = Path("/usr/share/hydrogen/data/drumkits")

#: GM note -> instrument-name keywords tried in order (lower case; first kit instrument matching wins).
GM_NAME_KEYWORDS: dict[int, tuple[tuple[str, ...], ...]] = {
    drums.KICK: (("kick",), ("bassdrum",), ("bass drum",), ("bd",)),
    drums.SNARE: (("snare rock",), ("snare",), ("sd",)),
    drums.SIDE_STICK: (("stick",), ("rim",), ("snare",)),
    drums.CLAP: (("clap",), ("snare",)),
    drums.CLOSED_HAT: (("hat", "closed"), ("hh", "closed"), ("closed hh",), ("hat", "cl"), ("hat",), ("hh",)),
    drums.OPEN_HAT: (("hat", "open"), ("open hh",), ("hat", "op"), ("hh", "open"), ("hat",), ("hh",)),
    drums.CRASH: (("crash",), ("cymbal",), ("splash",), ("ride",)),
    drums.RIDE: (("ride",), ("cymbal",), ("hat",), ("hh",)),
    drums.LOW_TOM: (("floor tom",), ("tom low",), ("low tom",), ("tom",)),
    drums.MID_TOM: (("tom mid",), ("middle tom",), ("tom 2",), ("tom",)),
    drums.HIGH_TOM: (("tom hi",), ("high tom",), ("tom 1",), ("tom",)),
}


@dataclasses.dataclass(frozen=True)
class Layer:
    """One recorded sample of an instrument, played for velocities in [low, high]."""

    path: Path
    low: float
    high: float
    gain: float


@dataclasses.dataclass(frozen=True)
class Instrument:
    name: str
    volume: float
    layers: tuple[Layer, ...]


def _float(element: ElementTree.Element | None, default: float) -> float:
    try:
        return float(element.text) if element is not None and element.text else default
    except ValueError:
        return default


def parse_drumkit(folder: Path) -> list[Instrument]:
    """``folder/drumkit.xml`` -> the instruments with at least one existing sample file.

    Args:
        folder: a Hydrogen drumkit folder.

    Returns:
        Instruments in the kit's order; each layer's path is resolved inside ``folder``.
    """
    xml = folder / "drumkit.xml"
    try:
        root = ElementTree.parse(xml).getroot()
    except (OSError, ElementTree.ParseError) as exc:
        raise StemforgeError(f"cannot read drum kit {xml}: {exc}") from None
    namespace = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    instruments = []
    for inst in root.iter(f"{namespace}instrument"):
        name = (inst.findtext(f"{namespace}name") or "").strip()
        layers = []
        # Hydrogen >= 0.9.7 nests layers in <instrumentComponent>; older kits put <layer> or <filename> directly.
        for layer in inst.iter(f"{namespace}layer"):
            file = (layer.findtext(f"{namespace}filename") or "").strip()
            if file:
                layers.append(Layer(folder / Path(file).name, _float(layer.find(f"{namespace}min"), 0.0),
                                    _float(layer.find(f"{namespace}max"), 1.0), _float(layer.find(f"{namespace}gain"), 1.0)))
        direct = (inst.findtext(f"{namespace}filename") or "").strip()
        if not layers and direct:
            layers.append(Layer(folder / Path(direct).name, 0.0, 1.0, 1.0))
        layers = [layer for layer in layers if layer.path.is_file()]
        if name and layers:
            instruments.append(Instrument(name, _float(inst.find(f"{namespace}volume"), 1.0), tuple(layers)))
    return instruments


def installed_kits() -> list[str]:
    """Names of the Hydrogen kits installed here (folders with a drumkit.xml), sorted."""
    if not HYDROGEN_DRUMKITS.is_dir():
        return []
    return sorted(p.name for p in HYDROGEN_DRUMKITS.iterdir() if (p / "drumkit.xml").is_file())


@functools.lru_cache(maxsize=64)
def _sample(path: Path, sample_rate: int) -> np.ndarray:
    """A kit sample -> (2, time) float32 at ``sample_rate`` (mono samples are duplicated)."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises its own error types
        raise StemforgeError(f"cannot read drum sample {path}: {exc}") from None
    if rate != sample_rate:
        data = soxr.resample(data, rate, sample_rate)
    data = data[:, :2] if data.shape[1] >= 2 else np.repeat(data, 2, axis=1)
    return np.ascontiguousarray(data.T, dtype=np.float32)


class HydrogenKit:
    """A Hydrogen drum kit mapped to General MIDI drum notes.

    Args:
        name: kit folder name under ``/usr/share/hydrogen/data/drumkits`` (or a full path).
        sample_rate: output rate; samples are resampled once and cached.
    """

    def __init__(self, name: str, sample_rate: int) -> None:
        folder = Path(name) if Path(name).is_absolute() else HYDROGEN_DRUMKITS / name
        self.name = folder.name
        self.sample_rate = sample_rate
        self.instruments = parse_drumkit(folder)
        if not self.instruments:
            raise StemforgeError(f"drum kit {folder} has no playable instruments")
        self.mapping: dict[int, Instrument] = {}
        for note, options in GM_NAME_KEYWORDS.items():
            for keywords in options:
                match = next((i for i in self.instruments if all(k in i.name.lower() for k in keywords)), None)
                if match is not None:
                    self.mapping[note] = match
                    break

    def layer(self, note: int, velocity: float) -> Layer | None:
        """The layer of ``note``'s instrument whose velocity range holds ``velocity`` (None: no such drum)."""
        inst = self.mapping.get(note)
        if inst is None:
            return None
        for layer in inst.layers:
            if layer.low - 1e-6 <= velocity <= layer.high + 1e-6:
                return layer
        return min(inst.layers, key=lambda l: min(abs(velocity - l.low), abs(velocity - l.high)))

    def render(self, hits: Iterable[drums.DrumHit], length: int) -> np.ndarray:
        """Hits -> (2, length) float32: each hit's velocity layer, scaled by velocity, added at its time.

        Args:
            hits: drum hits (time s, GM note, velocity in [0, 1]).
            length: output length in samples.

        Returns:
            (2, length) float32 stereo drums.
        """
        out = np.zeros((2, length), np.float32)
        for hit in hits:
            layer = self.layer(hit.note, float(hit.velocity))
            if layer is None:
                continue
            start = int(round(hit.time * self.sample_rate))
            if start >= length or start < 0:
                continue
            sample = _sample(layer.path, self.sample_rate)
            n = min(sample.shape[1], length - start)
            gain = np.float32(layer.gain * self.mapping[hit.note].volume * (0.25 + 0.75 * float(hit.velocity)))
            out[:, start:start + n] += gain * sample[:, :n]
        return out


def kit_notes_covered(kit: HydrogenKit) -> set[int]:
    """The GM notes a kit can play (kick and snare are what a groove needs)."""
    return set(kit.mapping)


def velocity_in_layers(kit: HydrogenKit, note: int) -> int:
    """Number of velocity layers behind ``note`` (1 for single-sample kits, 0 when unmapped)."""
    inst = kit.mapping.get(note)
    return 0 if inst is None else len(inst.layers)

