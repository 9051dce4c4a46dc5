"""REAPER projects (``stemforge.daw.reaper``), read back with a small RPP reader: tracks, items, sources, positions."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from daw_helpers import make_mix, make_stem_folder, tree
from stemforge import audio
from stemforge.audio import OutputExistsError
from stemforge.daw import SessionError, read_stem_folder, reaper, write_session
from stemforge.daw.session import STEM_COLOURS
from stemforge.stems import FOUR_STEMS

SR = 44100


@dataclasses.dataclass
class Chunk:
    """An RPP chunk: ``<NAME args`` ... ``>``, with its value lines and sub-chunks."""

    name: str
    args: list[str]
    values: list[list[str]] = dataclasses.field(default_factory=list)
    children: list["Chunk"] = dataclasses.field(default_factory=list)

    def value(self, key: str) -> list[str]:
        return next(v[1:] for v in self.values if v[0] == key)

    def all(self, name: str) -> list["Chunk"]:
        return [c for c in self.children if c.name == name]


def tokens(line: str) -> list[str]:
    """Split an RPP line: words, or strings in ", ' or ` quotes (no escapes)."""
    out, i = [], 0
    while i < len(line):
        if line[i].isspace():
            i += 1
        elif line[i] in "\"'`":
            end = line.index(line[i], i + 1)
            out.append(line[i + 1:end])
            i = end + 1
        else:
            end = i
            while end < len(line) and not line[end].isspace():
                end += 1
            out.append(line[i:end])
            i = end
    return out


def read_rpp(text: str) -> Chunk:
    """The root chunk of an RPP file; fails on unbalanced chunks."""
    stack: list[Chunk] = []
    root = None
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("<"):
            words = tokens(line[1:])
            chunk = Chunk(words[0], words[1:])
            if stack:
                stack[-1].children.append(chunk)
            else:
                assert root is None, "two root chunks"
                root = chunk
            stack.append(chunk)
        elif line == ">":
            stack.pop()
        else:
            stack[-1].values.append(tokens(line))
    assert root is not None and not stack, "unbalanced chunks"
    return root


@pytest.fixture
def stem_folder(tmp_path: Path):
    folder = tmp_path / "song"
    stems = make_stem_folder(folder, seconds=0.5, fmt="flac", bits="24")
    make_mix(tmp_path / "song.wav", stems)
    return folder, stems, tmp_path / "song.wav"


def test_project_has_one_track_per_stem_and_the_mix_muted(stem_folder) -> None:
    folder, stems, mix = stem_folder
    project = write_session(read_stem_folder(folder, mix=mix, tempo=128), "reaper", folder)
    assert project == folder / "song.rpp"
    root = read_rpp(project.read_text())
    assert root.name == "REAPER_PROJECT"
    assert root.value("TEMPO") == ["128", "4", "4"]
    assert root.value("SAMPLERATE")[0] == str(SR)
    tracks = root.all("TRACK")
    assert [t.value("NAME") for t in tracks] == [[name] for name in [*FOUR_STEMS, "mix"]]
    assert [t.value("MUTESOLO")[0] for t in tracks] == ["0"] * 4 + ["1"]
    for track in tracks[:4]:
        r, g, b = STEM_COLOURS[track.value("NAME")[0]]
        assert int(track.value("PEAKCOL")[0]) == 0x1000000 | b << 16 | g << 8 | r
    frames = stems["drums"].shape[1]
    for track in tracks:
        (item,) = track.all("ITEM")
        assert float(item.value("POSITION")[0]) == 0
        assert float(item.value("LENGTH")[0]) == pytest.approx(frames / SR, abs=1e-12)
        (source,) = item.all("SOURCE")
        file = source.value("FILE")[0]
        assert not Path(file).is_absolute()
        name = track.value("NAME")[0]
        if name == "mix":
            assert (source.args, file) == (["WAVE"], "../song.wav")
        else:
            assert (source.args, file) == (["FLAC"], f"{name}.flac")
        assert (folder / file).resolve().is_file()


def test_paths_stay_right_when_the_folder_moves(stem_folder, tmp_path: Path) -> None:
    folder, stems, mix = stem_folder
    write_session(read_stem_folder(folder), "reaper", folder)
    moved = Path(shutil.move(folder, tmp_path / "a" / "b" / "song"))
    root = read_rpp((moved / "song.rpp").read_text())
    for track in root.all("TRACK"):
        file = track.all("ITEM")[0].all("SOURCE")[0].value("FILE")[0]
        data, rate = audio.load(moved / file)
        np.testing.assert_allclose(data, stems[track.value("NAME")[0]], atol=2.0 ** -22)


@pytest.mark.parametrize("name", ["my song", 'say "hi"', "it's \"x\"", "`a` 'b' "])
def test_names_with_spaces_and_quotes_read_back(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "stems"
    make_stem_folder(folder, stems=("vocals", "no_vocals"), seconds=0.1)
    session = read_stem_folder(folder)
    session = dataclasses.replace(session, stems=tuple(dataclasses.replace(t, name=f"{t.name} {name}")
                                                       for t in session.stems))
    root = read_rpp(reaper.project_text(session, folder))
    assert [t.value("NAME") for t in root.all("TRACK")] == [[f"vocals {name}"], [f"no_vocals {name}"]]


def test_a_name_rpp_cannot_store_is_an_error() -> None:
    with pytest.raises(SessionError, match="cannot be stored"):
        reaper.quote("a\"b'c`d")
    with pytest.raises(SessionError, match="line break"):
        reaper.quote("a\nb")


def test_an_existing_project_is_refused_and_replaced_with_force(stem_folder) -> None:
    folder, stems, mix = stem_folder
    session = read_stem_folder(folder, mix=mix)
    project = write_session(session, "reaper", folder)
    project.write_text("my edits")
    before = tree(folder)
    with pytest.raises(OutputExistsError, match="already exists"):
        write_session(session, "reaper", folder)
    assert tree(folder) == before and project.read_text() == "my edits"
    write_session(session, "reaper", folder, force=True)
    assert read_rpp(project.read_text()).name == "REAPER_PROJECT"
    assert tree(folder) == before  # replaced in place, no temporary file left
