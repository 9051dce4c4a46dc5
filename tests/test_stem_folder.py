"""``stemforge.stem_folder``: one rule for a stem folder, checked from headers, shared by DAW sessions and remix."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemforge import audio, stem_folder
from stemforge.daw.session import SessionError, read_stem_folder
from stemforge.remix import RemixError, check_folder
from stemforge.stems import FOUR_STEMS, SIX_STEMS

SR = 44100


def write(folder: Path, names=FOUR_STEMS, seconds: float = 0.2, rate: int = SR, channels: int = 2,
          ext: str = "wav") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        sf.write(folder / f"{name}.{ext}", 0.1 * rng.standard_normal((int(seconds * rate), channels)), rate)
    return folder


@pytest.mark.parametrize("found, expected", [
    (set(FOUR_STEMS), FOUR_STEMS),
    ({*FOUR_STEMS, "guitar"}, FOUR_STEMS),  # one file off either way: the odd one out is the extra file
    ({*FOUR_STEMS, "guitar", "piano"}, SIX_STEMS),
    ({"drums", "piano"}, SIX_STEMS),
    ({"vocals", "no_vocals", "drums"}, ("vocals", "no_vocals")),
    (set(), FOUR_STEMS),
])
def test_expected_stems(found: set[str], expected: tuple[str, ...]) -> None:
    assert stem_folder.expected_stems(found) == expected


def test_a_good_folder_is_read_from_headers_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write(tmp_path / "song")
    write(folder, ["mixture"], seconds=0.3, rate=48000, channels=1)  # the original may differ in all three
    (folder / "notes.txt").write_text("not audio")
    (folder / ".hidden.wav").write_bytes(b"")
    (folder / "sub").mkdir()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded audio while checking")

    monkeypatch.setattr(audio._SoundFileReader, "blocks", no_decoding)
    found = stem_folder.check_stem_folder(folder)
    assert list(found.stems) == list(FOUR_STEMS)
    assert (found.sample_rate, found.channels, found.frames) == (SR, 2, int(0.2 * SR))
    assert found.paths["bass"] == folder / "bass.wav"
    assert (found.mixture.path.name, found.mixture.sample_rate, found.mixture.channels) == ("mixture.wav", 48000, 1)
    named, mixture = stem_folder.find_stem_files(folder, stems=[*FOUR_STEMS, "mixture"])
    assert mixture is None and list(named) == [*FOUR_STEMS, "mixture"]  # named as a stem, it is one


def _spoil(folder: Path, what: str) -> None:
    write(folder)
    if what == "missing":
        (folder / "bass.wav").unlink()
    elif what == "extra":
        write(folder, ["guitar"])
    elif what == "twice":
        write(folder, ["bass"], ext="flac")
    elif what == "length":
        write(folder, ["bass"], seconds=0.3)
    elif what == "rate":
        write(folder, ["bass"], rate=48000)
    elif what == "channels":
        write(folder, ["bass"], channels=1)


@pytest.mark.parametrize("what, message", [
    ("missing", "missing bass (expected drums, bass, other, vocals, and optionally mixture.*)"),
    ("extra", "unexpected guitar.wav (expected drums, bass, other, vocals"),
    ("twice", "stem 'bass' is there twice (bass.flac, bass.wav); keep one"),
    ("length", "stems differ in length: {f}/drums.wav is 8820 frames (0.200 s) long, {f}/bass.wav 13230 frames"),
    ("rate", "stems differ in sample rate: {f}/drums.wav is at 44100 Hz, {f}/bass.wav at 48000 Hz"),
    ("channels", "stems differ in channel count: {f}/drums.wav has 2, {f}/bass.wav 1"),
])
def test_session_and_remix_refuse_the_same_folders_with_the_same_line(tmp_path: Path, what: str,
                                                                       message: str) -> None:
    folder = tmp_path / "song"
    _spoil(folder, what)
    message = message.format(f=folder)
    with pytest.raises(stem_folder.StemFolderError) as checked:
        stem_folder.check_stem_folder(folder)
    with pytest.raises(SessionError) as session:
        read_stem_folder(folder)
    with pytest.raises(RemixError) as remix:
        check_folder(folder)
    for exc in (checked, session, remix):
        assert message in str(exc.value) and "\n" not in str(exc.value), str(exc.value)
    assert str(remix.value) == str(checked.value)
    assert str(session.value).startswith(str(checked.value))  # plus a hint on naming the stems, where it helps


def test_a_session_takes_the_folders_mixture_as_its_mix(tmp_path: Path) -> None:
    folder = write(tmp_path / "song")
    write(folder, ["mixture"], seconds=0.5)
    session = read_stem_folder(folder)
    assert [t.name for t in session.stems] == list(FOUR_STEMS)
    assert session.mix.path == folder / "mixture.wav" and session.mix.muted and session.mix.frames == int(0.5 * SR)
    other = write(tmp_path / "mix")
    assert read_stem_folder(folder, mix=other / "drums.wav").mix.path == other / "drums.wav"  # --mix wins


def test_no_folder_no_stems_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(stem_folder.StemFolderError, match="nowhere: no such stem folder"):
        stem_folder.check_stem_folder(tmp_path / "nowhere")
    with pytest.raises(stem_folder.StemFolderError, match="no stems asked for"):
        stem_folder.check_stem_folder(write(tmp_path / "a"), stems=[])
    folder = write(tmp_path / "b")
    (folder / "bass.wav").write_bytes(b"RIFF not really a wav file")
    with pytest.raises(audio.AudioError, match="bass.wav: not a readable audio file"):
        stem_folder.check_stem_folder(folder)


def test_the_checker_imports_no_torch(tmp_path: Path) -> None:
    import os
    import subprocess

    import stemforge

    env = {**os.environ, "PYTHONPATH": str(Path(stemforge.__file__).parents[1])}  # this checkout's source
    code = "import sys, stemforge.stem_folder; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path, env=env)
