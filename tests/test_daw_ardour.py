"""Ardour 7 sessions (``stemforge.daw.ardour``): the folder we write, and Ardour's own headless tools reading it.

The last two tests need Debian's ``ardour`` package (``ardour7-lua``, ``ardour7-export``; CI installs it): Ardour
loads the session and lists the tracks and regions we wrote, and renders it to a WAV equal to the sum of the
unmuted stems.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from daw_helpers import make_mix, make_stem_folder, tree
from stemforge import audio
from stemforge.audio import OutputExistsError
from stemforge.daw import ardour, read_stem_folder, write_session
from stemforge.daw.session import STEM_COLOURS
from stemforge.errors import AudioError
from stemforge.stems import FOUR_STEMS

SR = 44100
ARDOUR_LUA = shutil.which("ardour7-lua")
ARDOUR_EXPORT = shutil.which("ardour7-export")
needs_ardour = pytest.mark.skipif(not (ARDOUR_LUA and ARDOUR_EXPORT),
                                  reason="Ardour 7's headless tools (Debian package 'ardour') are not installed")

LIST_TRACKS = """
AudioEngine:set_backend("None (Dummy)", "", "")
AudioEngine:start(false)
local s = load_session(arg[1], arg[2])
assert(s, "cannot load the session")
print("SESSION", s:name(), s:nominal_sample_rate())
print("TEMPO", Temporal.TempoMap.read():tempo_at(Temporal.timepos_t(0)):note_types_per_minute())
for t in s:get_tracks():iter() do
  print("TRACK", t:name(), tostring(t:muted()), t:presentation_info_ptr():color())
  for r in t:to_track():playlist():region_list():iter() do
    local ar = r:to_audioregion()
    print("REGION", t:name(), r:position():samples(), r:length():samples(), ar:n_channels())
    for c = 0, ar:n_channels() - 1 do
      print("SOURCE", t:name(), c, r:source(c):name())
    end
  end
end
close_session()
"""


@pytest.fixture
def stem_folder(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray], Path]:
    folder = tmp_path / "song"
    stems = make_stem_folder(folder, seconds=0.5)
    mix = make_mix(tmp_path / "song.wav", stems)
    return folder, stems, tmp_path / "song.wav"


def ardour_env(tmp_path: Path) -> dict[str, str]:
    """Ardour writes its configuration under HOME: give it a throw-away one."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}


def test_session_folder_holds_the_xml_and_one_float_file_per_channel(stem_folder) -> None:
    folder, stems, mix = stem_folder
    session = read_stem_folder(folder, mix=mix, tempo=96)
    target = write_session(session, "ardour", folder)
    assert target == folder / "song"
    files = sorted(p.name for p in (target / "interchange" / "song" / "audiofiles").iterdir())
    assert files == sorted(f"{name}%{side}.wav" for name in [*FOUR_STEMS, "mix"] for side in "LR")
    for name, x in stems.items():
        for c, side in enumerate("LR"):
            data, rate = sf.read(target / "interchange" / "song" / "audiofiles" / f"{name}%{side}.wav", dtype="float32")
            info = sf.info(target / "interchange" / "song" / "audiofiles" / f"{name}%{side}.wav")
            assert (rate, info.subtype, data.ndim) == (SR, "FLOAT", 1)
            np.testing.assert_array_equal(data, x[c])  # float32 stems are copied exactly
    root = ET.parse(target / "song.ardour").getroot()
    assert (root.get("name"), root.get("sample-rate"), root.get("version")) == ("song", str(SR), "7002")
    # Sources are named by file name only: Ardour finds them in interchange/song/audiofiles, wherever it is.
    assert all("/" not in s.get("name") for s in root.iter("Source"))
    routes = {r.get("name"): r for r in root.find("Routes")}
    assert list(routes) == ["Master", *FOUR_STEMS, "mix"]
    for name, route in routes.items():
        muted = route.find("Controllable[@name='mute']").get("value")
        assert muted == ("1" if name == "mix" else "0")
    colour = int(routes["vocals"].find("PresentationInfo").get("color"))
    assert colour == (STEM_COLOURS["vocals"][0] << 24 | STEM_COLOURS["vocals"][1] << 16 | STEM_COLOURS["vocals"][2] << 8 | 0xFF)
    tempo = root.find("TempoMap/Tempos/Tempo")
    assert tempo.get("npm") == "96"
    # Regions start at 0 and last the stems' length (Ardour 7 writes time as superclock ticks).
    for region in root.find("Playlists").iter("Region"):
        assert region.get("position") == "a0"
        assert region.get("length") == f"a{stems['drums'].shape[1] * ardour.SUPERCLOCK_RATE // SR}@a0"


@pytest.mark.parametrize("rate", [44100, 48000, 37800, 11025, 96000, 22222])
def test_superclock_positions_give_the_same_samples_back(rate: int) -> None:
    """Ardour 7 keeps time in superclock ticks (282240000 a second); a length that does not divide evenly must
    still come back as the same number of samples, whether Ardour rounds down or to the nearest tick."""
    for frames in [1, 2, 3, 999, rate - 1, 12_345_678]:
        ticks = int(ardour.superclock(frames, rate)[1:])
        assert ticks * rate // ardour.SUPERCLOCK_RATE == frames
        assert round(ticks * rate / ardour.SUPERCLOCK_RATE) == frames


def test_mix_is_converted_to_the_session_rate_and_layout(tmp_path: Path) -> None:
    folder = tmp_path / "song"
    stems = make_stem_folder(folder, seconds=0.5)
    mono = sum(stems.values())[:1]
    mono48k = audio.resample(mono, SR, 48000)
    mix = audio.save(tmp_path / "mix48k.wav", mono48k, 48000, bits="32f")
    target = write_session(read_stem_folder(folder, mix=mix), "ardour", folder)
    left, rate = sf.read(target / "interchange" / "song" / "audiofiles" / "mix%L.wav", dtype="float32")
    right, _ = sf.read(target / "interchange" / "song" / "audiofiles" / "mix%R.wav", dtype="float32")
    assert rate == SR
    np.testing.assert_array_equal(left, right)  # mono goes to both channels
    expected = audio.resample(mono48k, 48000, SR)[0]  # streamed in blocks, equal to resampling the whole signal
    assert len(left) == len(expected)
    assert np.abs(left - expected).max() < 1e-5


def test_an_existing_session_is_refused_and_replaced_with_force(stem_folder) -> None:
    folder, stems, mix = stem_folder
    session = read_stem_folder(folder, mix=mix)
    target = write_session(session, "ardour", folder)
    (target / "mine.txt").write_text("the user's notes")
    before = tree(folder)
    with pytest.raises(OutputExistsError, match="already exists"):
        write_session(session, "ardour", folder)
    assert tree(folder) == before
    write_session(read_stem_folder(folder), "ardour", folder, force=True)
    assert not (target / "mine.txt").exists()
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    assert [r.get("name") for r in ET.parse(target / "song.ardour").getroot().find("Routes")] == ["Master", *FOUR_STEMS]


def test_a_failure_part_way_leaves_nothing(stem_folder, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, stems, mix = stem_folder
    session = read_stem_folder(folder, mix=mix)
    before = tree(folder)
    copy = ardour._copy_audio
    calls = []

    def failing(track, *args):
        calls.append(track.name)
        if len(calls) == 3:
            raise AudioError(f"{track.path}: disk full")
        return copy(track, *args)

    monkeypatch.setattr(ardour, "_copy_audio", failing)
    with pytest.raises(AudioError, match="disk full"):
        write_session(session, "ardour", folder)
    assert calls == ["drums", "bass", "other"]
    assert tree(folder) == before


@needs_ardour
def test_ardour_lua_loads_the_session_and_lists_our_tracks_and_regions(stem_folder, tmp_path: Path) -> None:
    folder, stems, mix = stem_folder
    target = write_session(read_stem_folder(folder, mix=mix, tempo=96), "ardour", folder)
    moved = shutil.move(target, tmp_path / "elsewhere" / "song")  # relative paths: the folder may move
    script = tmp_path / "list.lua"
    script.write_text(LIST_TRACKS)
    result = subprocess.run([ARDOUR_LUA, str(script), str(moved), "song"], capture_output=True, text=True,
                            timeout=120, env=ardour_env(tmp_path))
    lines = [line.split() for line in result.stdout.splitlines()
             if line.split()[:1] in (["SESSION"], ["TEMPO"], ["TRACK"], ["REGION"], ["SOURCE"])]
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert lines[0] == ["SESSION", "song", str(SR)]
    assert float(lines[1][1]) == pytest.approx(96, abs=1e-6)
    tracks = [line[1:] for line in lines if line[0] == "TRACK"]
    assert [t[0] for t in tracks] == [*FOUR_STEMS, "mix"]
    assert [t[1] for t in tracks] == ["false"] * 4 + ["true"]
    for name, _, colour in tracks[:4]:
        r, g, b = STEM_COLOURS[name]
        assert int(colour) == (r << 24 | g << 16 | b << 8 | 0xFF)
    frames = stems["drums"].shape[1]
    regions = [line[1:] for line in lines if line[0] == "REGION"]
    assert regions == [[name, "0", str(frames), "2"] for name in [*FOUR_STEMS, "mix"]]
    sources = [line[1:] for line in lines if line[0] == "SOURCE"]
    assert sources == [[name, str(c), f"{name}%{side}.wav"] for name in [*FOUR_STEMS, "mix"] for c, side in enumerate("LR")]


@needs_ardour
@pytest.mark.parametrize("channels", [2, 1, 6])
def test_ardour_export_renders_the_sum_of_the_unmuted_stems(tmp_path: Path, channels: int) -> None:
    """Ardour's gain staging is unity as we write the session: faders, trims and the master's volume at 1, a
    stereo track's panner at full width, no region fades (by default Ardour fades each region in and out over
    64 samples, which alone puts the render 0.5 off at the edges) and the muted mix left out."""
    folder = tmp_path / "song"
    stems = make_stem_folder(folder, seconds=0.5, channels=channels)
    make_mix(tmp_path / "song.wav", {"loud": 3 * sum(stems.values())})  # muted: must not be heard
    target = write_session(read_stem_folder(folder, mix=tmp_path / "song.wav"), "ardour", folder)
    render = tmp_path / "render.wav"
    result = subprocess.run([ARDOUR_EXPORT, "-b", "float", "-o", str(render), str(target), "song"],
                            capture_output=True, text=True, timeout=120, env=ardour_env(tmp_path))
    assert result.returncode == 0 and render.exists(), result.stdout[-2000:] + result.stderr[-2000:]
    out, rate = sf.read(render, dtype="float32", always_2d=True)
    expected = sum(stems.values()).T
    assert rate == SR
    assert out.shape == expected.shape
    assert np.abs(out - expected).max() < 1e-3
