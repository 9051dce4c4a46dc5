"""The DAW-independent session model (``stemforge.daw.session``): which stems a folder should hold, mp3 stems,
the mix track's name, and replacing a session without ever losing the old one."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from daw_helpers import make_mix, make_stem_folder, tree
from stemforge.daw import session as model
from stemforge.errors import AudioError
from stemforge.stems import FOUR_STEMS, SIX_STEMS


@pytest.mark.parametrize("found, expected", [
    ({"drums", "bass"}, FOUR_STEMS),
    ({"drums", "piano"}, SIX_STEMS),
    ({"no_vocals"}, ("vocals", "no_vocals")),
    ({"bass", "no_bass", "x"}, ("bass", "no_bass")),
    (set(), FOUR_STEMS),
])
def test_expected_stems(found: set[str], expected: tuple[str, ...]) -> None:
    assert model.expected_stems(found) == expected


def test_mp3_stems_make_a_session(tmp_path: Path) -> None:
    """``separate --mp3`` output: lengths come through PyAV, and agree."""
    folder = tmp_path / "song"
    make_stem_folder(folder, seconds=0.3, fmt="mp3")
    session = model.read_stem_folder(folder)
    assert {t.frames for t in session.stems} == {round(0.3 * 44100)}
    assert [t.name for t in session.stems] == list(FOUR_STEMS)


def test_a_stem_called_mix_keeps_the_original_mix_apart(tmp_path: Path) -> None:
    folder = tmp_path / "song"
    stems = make_stem_folder(folder, stems=("mix", "rest"), seconds=0.1)
    make_mix(tmp_path / "song.wav", stems)
    session = model.read_stem_folder(folder, stems=["mix", "rest"], mix=tmp_path / "song.wav")
    assert [t.name for t in session.tracks] == ["mix", "rest", "original mix"]
    assert [t.muted for t in session.tracks] == [False, False, True]


def test_the_mix_inside_the_stem_folder_is_not_an_extra_stem(tmp_path: Path) -> None:
    folder = tmp_path / "song"
    stems = make_stem_folder(folder, seconds=0.1)
    make_mix(folder / "mix.wav", stems)
    with pytest.raises(model.SessionError, match="unexpected mix.wav"):
        model.read_stem_folder(folder)
    assert model.read_stem_folder(folder, mix=folder / "mix.wav").mix.path == folder / "mix.wav"


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_a_failed_replacement_puts_the_old_session_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        kind: str) -> None:
    target = tmp_path / ("song" if kind == "folder" else "song.rpp")
    staged = model.staging_path(target, directory=kind == "folder")
    if kind == "folder":
        target.mkdir()
        (target / "song.ardour").write_text("old")
        (staged / "song.ardour").write_text("new")
    else:
        target.write_text("old")
        staged.write_text("new")

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:  # the last step, moving the new session into place, fails
        patch.setattr(model.os, "rename", full_disk) if kind == "folder" else patch.setattr(model, "_claim", full_disk)
        with pytest.raises(AudioError, match="cannot write the session \\(No space left on device\\)"):
            model.publish_tree(staged, target, force=True)
    old = target / "song.ardour" if kind == "folder" else target
    assert old.read_text() == "old"
    model.remove(staged)
    assert tree(tmp_path) == (["song", "song/song.ardour"] if kind == "folder" else ["song.rpp"])


@pytest.mark.parametrize("daw", ["ardour", "reaper"])
def test_a_folder_we_cannot_write_to_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, daw: str) -> None:
    from stemforge.daw import write_session

    folder = tmp_path / "song"
    make_stem_folder(folder, seconds=0.1)
    session = model.read_stem_folder(folder)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)  # where stemforge.audio.staging_path makes its names
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(AudioError, match=r"song(\.rpp)?: cannot write the session \(Permission denied\)$"):
        write_session(session, daw, folder)


@pytest.mark.parametrize("directory", [True, False])
def test_staged_output_publishes_on_success_and_leaves_nothing_on_error(tmp_path: Path, directory: bool) -> None:
    target = tmp_path / ("session" if directory else "project.rpp")
    with pytest.raises(KeyboardInterrupt):
        with model.staged_output(target, directory=directory) as staged:
            assert staged.parent == tmp_path and staged.exists() and staged.name.startswith(".")
            raise KeyboardInterrupt  # an interruption half-way through
    assert list(tmp_path.iterdir()) == []

    with model.staged_output(target, directory=directory) as staged:
        if directory:
            (staged / "a.txt").write_text("new")
        else:
            staged.write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
    assert (target / "a.txt" if directory else target).read_text() == "new"

    with pytest.raises(model.OutputExistsError):  # published without force over an existing target: refused,
        with model.staged_output(target, directory=directory):  # and the staged copy is removed
            pass
    assert [p.name for p in tmp_path.iterdir()] == [target.name]
