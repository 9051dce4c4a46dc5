"""``stemforge session`` and ``separate --session`` at the command line: sessions, and one-line errors that leave
nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daw_helpers import make_mix, make_stem_folder, tree
from stemforge import audio
from stemforge.cli import main
from stemforge.stems import FOUR_STEMS
from toy_song import toy_mix

SR = 44100


def run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("daw, made", [("reaper", "song.rpp"), ("ardour", "song/song.ardour")])
def test_session_of_a_stem_folder(tmp_path: Path, capsys, daw: str, made: str) -> None:
    folder = tmp_path / "song"
    stems = make_stem_folder(folder, seconds=0.2)
    make_mix(tmp_path / "mix.wav", stems)
    code, out, err = run(capsys, "session", str(folder), "--daw", daw, "--mix", str(tmp_path / "mix.wav"))
    assert (code, err) == (0, "")
    assert (folder / made).is_file()
    assert str(folder / Path(made).parts[0]) in out


def test_two_stems_and_a_chosen_name_and_stem_list(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "song"
    make_stem_folder(folder, stems=("vocals", "no_vocals"), seconds=0.2)
    assert run(capsys, "session", str(folder), "--daw", "reaper")[0] == 0
    assert "no_vocals.wav" in (folder / "song.rpp").read_text()
    code, _, err = run(capsys, "session", str(folder), "--daw", "reaper", "--stems", "vocals", "--name", "v")
    assert code == 1 and "unexpected no_vocals.wav" in err  # --stems names every stem the folder may hold
    code, _, err = run(capsys, "session", str(folder), "--daw", "reaper", "--stems", "no_vocals,vocals", "--name", "v")
    assert (code, err) == (0, "")
    assert (folder / "v.rpp").read_text().index("no_vocals") < (folder / "v.rpp").read_text().index('"vocals"')


def _mismatched(folder: Path, what: str) -> None:
    make_stem_folder(folder, seconds=0.2)
    if what == "missing":
        (folder / "bass.wav").unlink()
    elif what == "extra":
        audio.save(folder / "guitarr.wav", toy_mix(0.2), SR)
    elif what == "twice":
        audio.save(folder / "bass.flac", toy_mix(0.2), SR)
    elif what == "length":
        audio.save(folder / "bass.wav", toy_mix(0.3), SR)
    elif what == "rate":
        audio.save(folder / "bass.wav", toy_mix(0.2), 48000)
    elif what == "channels":
        audio.save(folder / "bass.wav", toy_mix(0.2)[:1], SR)
    elif what == "unreadable":
        (folder / "bass.wav").write_bytes(b"RIFF not really a wav file")


@pytest.mark.parametrize("what, message", [
    ("missing", "missing bass"),
    ("extra", "unexpected guitarr.wav"),
    ("twice", "stem 'bass' is there twice (bass.flac, bass.wav)"),
    ("length", "stems differ in length"),
    ("rate", "stems differ in sample rate"),
    ("channels", "stems differ in channel count"),
    ("unreadable", "bass.wav: not a readable audio file"),
])
@pytest.mark.parametrize("daw", ["ardour", "reaper"])
def test_bad_stem_folders_get_one_line_and_nothing_written(tmp_path: Path, capsys, what: str, message: str,
                                                           daw: str) -> None:
    folder = tmp_path / "song"
    _mismatched(folder, what)
    before = tree(tmp_path)
    code, out, err = run(capsys, "session", str(folder), "--daw", daw)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert tree(tmp_path) == before


@pytest.mark.parametrize("args, message", [
    (["--tempo", "0"], "--tempo 0: give beats per minute between 1 and 999"),
    (["--name", "../x"], "session name '../x': use a plain file name"),
    (["--mix", "nope.wav"], "nope.wav: no such file"),
])
def test_bad_options_get_one_line(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    folder = tmp_path / "song"
    make_stem_folder(folder, seconds=0.2)
    before = tree(tmp_path)
    code, _, err = run(capsys, "session", str(folder), "--daw", "reaper", *args)
    assert code == 1 and err.count("\n") == 1 and message in err, err
    assert tree(tmp_path) == before
    code, _, err = run(capsys, "session", str(tmp_path / "nowhere"), "--daw", "reaper")
    assert code == 1 and "no such stem folder" in err


@pytest.mark.parametrize("daw, made", [("reaper", "song.rpp"), ("ardour", "song")])
def test_an_existing_session_is_an_error_unless_forced(tmp_path: Path, capsys, daw: str, made: str) -> None:
    folder = tmp_path / "song"
    make_stem_folder(folder, seconds=0.2)
    assert run(capsys, "session", str(folder), "--daw", daw)[0] == 0
    before = tree(tmp_path)
    code, _, err = run(capsys, "session", str(folder), "--daw", daw)
    assert code == 1 and err == f"error: {folder / made}: already exists (use --force to replace it)\n"
    assert tree(tmp_path) == before
    assert run(capsys, "session", str(folder), "--daw", daw, "--force")[0] == 0
    assert tree(tmp_path) == before


def test_separate_writes_the_session_beside_the_stems(tmp_path: Path, capsys) -> None:
    song = audio.save(tmp_path / "track one.wav", toy_mix(1.0), SR)
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "separate", str(song), "-o", str(out), "-n", "hpss", "--segment", "1", "-q",
                            "--session", "reaper", "--json")
    assert code == 0, err
    folder = out / "hpss" / "track one"
    project = folder / "track one.rpp"
    assert json.loads(stdout)["inputs"][0]["session"] == str(project)
    text = project.read_text()
    for stem in ("drums", "other"):  # hpss: harmonic/percussive
        assert f'FILE "{stem}.wav"' in text
    assert 'FILE "../../../track one.wav"' in text and "MUTESOLO 1 0 0" in text
    # A second run refuses before separating: no stems are rewritten, the project is left alone.
    before = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    code, _, err = run(capsys, "separate", str(song), "-o", str(out), "-n", "hpss", "--segment", "1", "-q",
                       "--session", "reaper")
    assert code == 1 and f"session {project} already exists" in err
    assert {p: p.stat().st_mtime_ns for p in folder.iterdir()} == before
