"""The hub: one ``load_model`` for every kind of model, close-name suggestions, the format table, the lists."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

from stemforge import hub
from stemforge.cli import main
from stemforge.errors import ModelError
from stemforge.hub import catalogue


def test_public_api_at_the_top() -> None:
    import stemforge
    from stemforge import Separator, load_model

    assert load_model is hub.load_model and Separator.__module__ == "stemforge.separate"
    assert {"Separator", "load_model"} <= set(dir(stemforge)) and {"Separator", "load_model"} <= set(stemforge.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        stemforge.nope  # noqa: B018


def test_load_model_resolves_presets_checkpoints_and_default(tmp_path: Path) -> None:
    from stemforge.checkpoint import save_checkpoint
    from stemforge.models import build

    assert hub.load_model("hpss").architecture == "classical" and not hub.load_model("hpss").training
    unet = build("unet").eval()
    save_checkpoint(unet, tmp_path / "mine.safetensors")
    model, name = hub.resolve(tmp_path / "mine.safetensors")
    assert name == "mine" and model.architecture == "unet"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), unet.state_dict().values()))
    default, name = hub.resolve()
    assert name == ("default" if hub.bundled_checkpoint() else "classical") and not default.training
    with pytest.raises(ModelError, match="architecture without trained weights"):
        hub.load_model("unet")


def test_unknown_name_suggests_close_names_and_names_the_downloadable_ones() -> None:
    with pytest.raises(hub.UnknownModelError) as info:
        hub.load_model("htdemux")
    error = info.value
    assert error.suggestions[0] == "htdemucs" and "mdx_kara_2" in error.downloadable
    message = str(error)
    assert "did you mean 'htdemucs'" in message and "downloadable: htdemucs," in message and "\n" not in message
    assert "ready to run: default, lowlatency, classical" in message and "architectures to train first: " in message
    with pytest.raises(hub.UnknownModelError) as info:
        hub.load_model("zzzzqqqq")
    assert info.value.suggestions == [] and "did you mean" not in str(info.value)


def test_unknown_name_on_the_command_line(capsys, tmp_path: Path) -> None:
    song = tmp_path / "song.wav"
    import numpy as np
    import soundfile as sf

    sf.write(song, np.zeros((4410, 2), dtype=np.float32), 44100)
    assert main(["separate", str(song), "-o", str(tmp_path / "out"), "-n", "umxhg"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown model 'umxhg'")
    assert "did you mean 'umxhq'" in err[0] and "mel_roformer_kim" in err[0]
    assert main(["models", "download", "umxhg"]) == 1
    assert "did you mean umxhq" in capsys.readouterr().err


def test_zoo_labels_are_architecture_names() -> None:
    """Each catalogue entry's architecture is the registry key of the class it loads as."""
    from stemforge.models.registry import COMPAT_ARCHITECTURES, architecture_class

    for entry in catalogue.list_checkpoints():
        assert entry.architecture in COMPAT_ARCHITECTURES, entry.name
        assert architecture_class(entry.architecture).architecture == entry.architecture


def test_a_new_format_is_one_module_and_one_line(tmp_path: Path, monkeypatch) -> None:
    """The CONTRIBUTING.md example: a module with detect/load, one FORMATS line, and every entry point reads it."""
    from stemforge.models.compat import loaders

    module = types.ModuleType("toy_format")
    module.detect = lambda path: path.suffix == ".toy"
    module.load = lambda path, **options: hub.load_model("hpss")
    monkeypatch.setitem(sys.modules, "toy_format", module)
    monkeypatch.setattr(loaders, "FORMATS", (*loaders.FORMATS, ("toy", "toy_format")))
    (tmp_path / "m.toy").write_bytes(b"toy")
    assert loaders.detect_format(tmp_path / "m.toy") == "toy"
    assert hub.load_model(tmp_path / "m.toy").sources == ["drums", "other"]
    with pytest.raises(ModelError, match="unknown checkpoint format 'nope'"):
        loaders.format_module("nope")


def test_every_format_module_has_detect_and_load() -> None:
    from stemforge.models.compat import loaders

    assert [name for name, _ in loaders.FORMATS] == ["openunmix", "roformer", "demucs", "mdxnet"]
    for name, _ in loaders.FORMATS:
        module = loaders.format_module(name)
        assert callable(module.detect) and callable(module.load) and module.__doc__


def _lines(capsys) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_models_lists_three_separate_tables_within_100_columns(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("STEMFORGE_CACHE", str(tmp_path))
    assert main(["models"]) == 0
    lines = _lines(capsys)
    assert max(map(len, lines)) <= 100
    tables = [block.splitlines() for block in "\n".join(lines).split("\n\n")]
    headers = [t[0].split("  ")[0] for t in tables[:3]]
    assert headers == ["trained models (run now)", "downloadable checkpoints", "architectures (train first)"]
    names = [{row.split()[0] for row in t[1:]} for t in tables[:3]]
    assert {"classical", "hpss"} <= names[0] and not {"unet", "htdemucs"} & names[0]
    assert {"htdemucs", "umxl", "mdx_kara_2"} <= names[1] and "unet" not in names[1]
    assert {"unet", "bilstm", "hybrid"} <= names[2] and "classical" not in names[2]
    assert main(["models", "list", "-v"]) == 0
    table = _lines(capsys)
    assert max(len(line) for line in table[: len(catalogue.CATALOGUE) + 1]) <= 100
    assert any("licence: CC BY-NC-SA 4.0" in line for line in table)  # the licence moved to -v


def test_downloaded_checkpoints_move_to_the_trained_table(capsys, tmp_path: Path, monkeypatch) -> None:
    entry = catalogue.find("umxl")
    folder = tmp_path / "umxl"
    folder.mkdir()
    for file in entry.files:
        (folder / file.name).write_bytes(b"x")
    monkeypatch.setenv("STEMFORGE_CACHE", str(tmp_path))
    assert main(["models"]) == 0
    trained, downloadable = "\n".join(_lines(capsys)).split("\n\n")[:2]
    assert "\numxl " in trained and "\numxl " not in downloadable


def test_format_table_cuts_the_widest_columns() -> None:
    from stemforge.commands.models import format_table

    rows = [("name", "long", "b"), ("x", "y" * 150, "z" * 30)]
    lines = format_table(rows, width=60)
    assert max(map(len, lines)) <= 60 and lines[1].startswith("x     yyy") and "..." in lines[1]
    assert format_table([("a", "b")]) == ["a  b"]


def test_contributing_worked_example_runs(tmp_path: Path, monkeypatch) -> None:
    """The format module in CONTRIBUTING.md, saved as it is written and added with its one line, loads a file."""
    import re

    from stemforge.models import build
    from stemforge.models.compat import loaders

    text = (Path(__file__).resolve().parents[1] / "CONTRIBUTING.md").read_text()
    module_code, line = re.findall(r"```python\n(.*?)```", text, flags=re.S)[:2]
    (tmp_path / "sep_format.py").write_text(module_code)
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = eval(line.strip().rstrip(","))  # noqa: S307 - our own documentation: ("sep", "<module path>")
    monkeypatch.setattr(loaders, "FORMATS", (*loaders.FORMATS, (entry[0], "sep_format")))
    unet = build("unet").eval()
    torch.save({"config": unet.config.to_dict(), "state": unet.state_dict()}, tmp_path / "x.sep")
    loaded = hub.load_model(tmp_path / "x.sep")
    assert type(loaded) is type(unet) and entry == ("sep", "stemforge.models.compat.sep_format")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), unet.state_dict().values()))
    torch.save({"config": unet.config.to_dict(), "state": {"w": torch.zeros(1)}}, tmp_path / "bad.sep")
    with pytest.raises(ModelError, match="does not match its config"):
        hub.load_model(tmp_path / "bad.sep")


def test_library_errors_in_library_words_cli_in_its_flags(capsys, tmp_path: Path, monkeypatch) -> None:
    """The library's message names Python calls; the CLI prints the same advice with its own commands and flags."""
    monkeypatch.setenv("STEMFORGE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(hub.NotDownloadedError) as info:
        hub.load_model("umxl")
    assert "stemforge.hub.download('umxl')" in str(info.value) and "-n" not in str(info.value)
    assert "stemforge models" not in str(info.value)
    with pytest.raises(hub.UntrainedModelError) as info:
        hub.load_model("unet")
    assert "-n" not in str(info.value) and "stemforge.train" in str(info.value)
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "song.wav", np.zeros((4410, 2), dtype=np.float32), 44100)
    for name, advice in (("umxl", "run 'stemforge models download umxl'"), ("unet", "-n path/to/model.safetensors")):
        assert main(["separate", str(tmp_path / "song.wav"), "-o", str(tmp_path / "out"), "-n", name]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and advice in err[0], err


def test_bundled_models_load_by_name(monkeypatch, capsys) -> None:
    """``lowlatency`` (catalogue.BUNDLED) loads from the package's assets and is listed as ready to run; a bundled
    name whose file this install lacks is a one-line error, not a fall-through to 'unknown model'."""
    import json

    if hub.bundled_checkpoint("lowlatency") is not None:
        model, name = hub.resolve("lowlatency")
        assert name == "lowlatency" and model.architecture == "unet_causal" and not model.training
        assert "lowlatency" in hub.model_names()["runnable"]
        assert main(["models", "--json"]) == 0
        rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
        assert rows["lowlatency"]["kind"] == "trained" and rows["lowlatency"]["family"] == "unet_causal"
    monkeypatch.setitem(catalogue.BUNDLED, "ghost", "ghost.safetensors")
    with pytest.raises(ModelError, match="bundled model 'ghost' is not in this install"):
        hub.load_model("ghost")
    assert "ghost" not in hub.model_names()["runnable"]
