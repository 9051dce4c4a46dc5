"""Recorded drum kits (Hydrogen): drumkit.xml parsing, velocity layers, hits placed from the real samples.

Needs the Debian package ``hydrogen-drumkits`` (skipped without it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemforge.data.synth import drums
from stemforge.data.synth.kits import HYDROGEN_DRUMKITS, HydrogenKit, _sample, installed_kits, parse_drumkit
from stemforge.errors import StemforgeError

pytestmark = pytest.mark.skipif("Millo_MultiLayered2" not in installed_kits(),
                                reason="needs the Debian package hydrogen-drumkits")


def test_layered_kit_maps_gm_notes_and_picks_layers_by_velocity() -> None:
    kit = HydrogenKit("Millo_MultiLayered2", 44100)
    for note in (drums.KICK, drums.SNARE, drums.CLOSED_HAT, drums.OPEN_HAT, drums.CRASH, drums.RIDE):
        assert note in kit.mapping, note
    assert len(kit.mapping[drums.KICK].layers) == 5  # bd_01 .. bd_05
    soft, loud = kit.layer(drums.KICK, 0.1), kit.layer(drums.KICK, 0.95)
    assert soft is not None and loud is not None and soft.path != loud.path
    assert soft.path.name == "bd_01.flac" and loud.path.name == "bd_05.flac"


def test_render_places_the_recorded_sample_at_each_hit() -> None:
    kit = HydrogenKit("Millo_MultiLayered2", 44100)
    hits = [drums.DrumHit(0.5, drums.SNARE, 0.9), drums.DrumHit(1.25, drums.KICK, 0.3)]
    out = kit.render(hits, 2 * 44100)
    assert out.shape == (2, 88200) and out.dtype == np.float32
    assert not np.any(out[:, : int(0.5 * 44100)])  # silence before the first hit
    snare = _sample(kit.layer(drums.SNARE, 0.9).path, 44100)
    raw, rate = sf.read(kit.layer(drums.SNARE, 0.9).path, dtype="float32", always_2d=True)
    assert rate == 44100 and np.allclose(snare[0, :1000], raw[:1000, 0])
    start = int(0.5 * 44100)
    segment = out[:, start:start + 2000]
    # Up to the kick, the output is exactly the recorded snare times one gain.
    gain = float(np.dot(segment[0], snare[0, :2000]) / np.dot(snare[0, :2000], snare[0, :2000]))
    assert gain > 0 and np.allclose(segment, gain * snare[:, :2000], atol=1e-6)


def test_old_style_kit_without_layers_and_a_broken_kit(tmp_path: Path) -> None:
    kit = HydrogenKit("HardElectro1", 44100)  # <filename> directly under <instrument>
    assert drums.KICK in kit.mapping and len(kit.mapping[drums.KICK].layers) == 1
    (tmp_path / "drumkit.xml").write_text("<drumkit_info><instrumentList><instrument>")
    with pytest.raises(StemforgeError, match="cannot read drum kit"):
        parse_drumkit(tmp_path)
    (tmp_path / "drumkit.xml").write_text("<drumkit_info><instrumentList/></drumkit_info>")
    with pytest.raises(StemforgeError, match="no playable instruments"):
        HydrogenKit(str(tmp_path), 44100)
    assert HYDROGEN_DRUMKITS.is_dir()
