import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stemforge import audio
from stemforge.cli import main
from stemforge.errors import StemforgeError

SR = 44100


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "stemforge", *args], capture_output=True, text=True, env=env, timeout=300)


def test_separate_end_to_end(tmp_path: Path, song_file: Path) -> None:
    result = run_cli("separate", str(song_file), "-o", str(tmp_path / "out"), "-n", "classical", "--segment", "2")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "out" / "classical" / "song"
    assert sorted(p.name for p in folder.iterdir()) == ["bass.wav", "drums.wav", "other.wav", "vocals.wav"]
    assert "4 stems" in result.stdout


def test_default_model_and_formats(tmp_path: Path, song_file: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["separate", str(song_file), "-o", str(tmp_path), "--two-stems", "vocals", "--format", "mp3",
                 "--mp3-bitrate", "128", "-q"]) == 0
    files = sorted(p.name for p in tmp_path.rglob("*.mp3"))
    assert files == ["no_vocals.mp3", "vocals.mp3"]
    assert main(["separate", str(song_file), "-o", str(tmp_path / "f"), "--format", "flac", "--bits", "24",
                 "--stems", "drums,bass", "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "f").rglob("*.flac")) == ["bass.flac", "drums.flac"]


BAD_FILES = {
    "missing.wav": None,
    "empty.wav": b"",
    "lyrics.wav": b"la la la\n" * 100,
    "junk.mp3": bytes(range(256)) * 20,
}


@pytest.mark.parametrize("name,message", [("missing.wav", "no such file"), ("empty.wav", "empty"),
                                          ("lyrics.wav", "not a readable audio file"), ("junk.mp3", "not a readable audio file")])
def test_bad_inputs_get_one_line_errors(tmp_path: Path, name: str, message: str) -> None:
    path = tmp_path / name
    if BAD_FILES[name] is not None:
        path.write_bytes(BAD_FILES[name])
    result = run_cli("separate", str(path), "-o", str(tmp_path / "out"), "-n", "classical", "-q")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    assert all(len(line) < 300 for line in result.stderr.splitlines())


def test_zero_sample_file(tmp_path: Path) -> None:
    import soundfile as sf

    sf.write(tmp_path / "zero.wav", np.zeros((0, 2), np.float32), SR)
    assert main(["separate", str(tmp_path / "zero.wav"), "-o", str(tmp_path), "-q"]) == 1


def test_directory_inputs(tmp_path: Path, song_file: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "readme.txt").write_text("no audio here")
    assert main(["separate", str(empty), "-o", str(tmp_path / "out"), "-q"]) == 1
    assert "no audio files" in capsys.readouterr().err
    album = tmp_path / "album"
    (album / "cd1").mkdir(parents=True)
    song_file.rename(album / "cd1" / "track.wav")
    assert main(["separate", str(album), "-o", str(tmp_path / "out"), "-n", "hpss", "-q"]) == 0
    assert (tmp_path / "out" / "hpss" / "track" / "drums.wav").exists()


def test_one_bad_file_does_not_stop_the_batch(tmp_path: Path, song_file: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.flac"
    bad.write_text("not flac")
    code = main(["separate", str(bad), str(song_file), "-o", str(tmp_path / "out"), "-n", "hpss", "-q"])
    assert code == 1
    assert (tmp_path / "out" / "hpss" / "song" / "drums.wav").exists()
    err = capsys.readouterr().err
    assert "bad.flac" in err and "1 of 2 inputs failed" in err


def test_existing_output_needs_force(tmp_path: Path, song_file: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["separate", str(song_file), "-o", str(tmp_path), "-n", "hpss", "-q"]
    assert main(args) == 0
    assert main(args) == 1
    assert "--force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0


def test_unwritable_output(tmp_path: Path, song_file: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    assert main(["separate", str(song_file), "-o", str(blocker / "out"), "-n", "hpss", "-q"]) == 1
    assert "cannot write output" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [(["-n", "nope"], "unknown model"), (["--overlap", "1.5"], "overlap"),
                                          (["--format", "flac", "--bits", "32f"], "flac cannot store"),
                                          (["--device", "cuda"], "CUDA")])
def test_bad_options(tmp_path: Path, song_file: Path, capsys: pytest.CaptureFixture, args: list[str], message: str) -> None:
    import torch

    if args[-1] == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["separate", str(song_file), "-o", str(tmp_path), "-q", *args]) == 1
    assert message in capsys.readouterr().err


def test_models_lists_registry(capsys: pytest.CaptureFixture) -> None:
    assert main(["models", "--no-speed"]) == 0  # the old flag still parses
    out = capsys.readouterr().out
    assert "classical" in out and "drums,bass,other,vocals" in out and "44100" in out


def test_models_measures_speed_only_when_asked(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from stemforge.commands import models as command

    calls = []
    monkeypatch.setattr(command, "measure_speed", lambda *args, **kwargs: calls.append(args) or 12.5)
    assert main(["models"]) == 0
    assert calls == [] and "speed" not in capsys.readouterr().out.splitlines()[0]
    assert main(["models", "--speed"]) == 0
    header, first = capsys.readouterr().out.splitlines()[:2]
    assert header.split()[-1] == "speed" and first.split()[-1] == "12.5x" and len(calls) >= 2


def test_models_json(capsys: pytest.CaptureFixture) -> None:
    import json

    assert main(["models", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in records}
    assert {"unet", "classical", "hpss"} <= set(by_name)
    unet = by_name["unet"]
    assert unet["stems"] == ["drums", "bass", "other", "vocals"] and unet["sample_rate"] == 44100
    assert unet["parameters"] > 0 and unet["x_real_time"] is None and by_name["hpss"]["stems"] == ["drums", "other"]


def test_parser_does_not_import_torch() -> None:
    """`stemforge --help` must not pay for torch (or scipy, or the optional extras)."""
    code = ("import sys\n"
            "import stemforge.cli\n"
            "stemforge.cli.build_parser().format_help()\n"
            "print(sorted(m for m in ('torch', 'scipy', 'matplotlib', 'pedalboard', 'fluidsynth') if m in sys.modules))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("flags,shown", [([], {"warning", "error"}), (["-q"], {"error"}),
                                         (["-v"], {"debug", "info", "warning", "error"})])
def test_log_levels(flags: list[str], shown: set[str], monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture) -> None:
    import logging
    import warnings

    from stemforge.commands import models as command

    def rows(speed: bool = False) -> list:
        log = logging.getLogger("stemforge.models")
        log.debug("a debug line")
        log.info("an info line")
        log.warning("a warning\nover two lines")
        log.error("an error line")
        warnings.warn("a Python warning", UserWarning)
        return []

    monkeypatch.setattr(command, "model_rows", rows)
    handlers_before, showwarning_before = list(logging.getLogger("stemforge").handlers), warnings.showwarning
    assert main([*flags, "models", "--json"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert {line.split(":", 1)[0] for line in err} == shown
    if "warning" in shown:
        assert "warning: a warning over two lines" in err and "warning: a Python warning" in err
    assert "error: an error line" in err
    stemforge_logger = logging.getLogger("stemforge")  # main() leaves the logging set-up as it found it
    assert stemforge_logger.propagate and stemforge_logger.level == logging.NOTSET
    assert stemforge_logger.handlers == handlers_before and warnings.showwarning is showwarning_before


# ---------------------------------------------------------------- packaging, extras, start-up, logging

ROOT = Path(__file__).resolve().parents[1]


def test_packaging_metadata() -> None:
    """SPDX `license` needs setuptools >= 77; synth/report/web/live/cluster are extras the `test` extra pulls in; MIT LICENSE file."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "setuptools>=77" in project["build-system"]["requires"]
    deps = " ".join(project["project"]["dependencies"])
    for optional in ("pedalboard", "pyfluidsynth", "matplotlib"):
        assert optional not in deps
    assert "platformdirs" in deps
    extras = project["project"]["optional-dependencies"]
    assert any(d.startswith("pedalboard") for d in extras["synth"]) and any(d.startswith("pyfluidsynth") for d in extras["synth"])
    assert any(d.startswith("matplotlib") for d in extras["report"])
    pulled = next(d for d in extras["test"] if d.startswith("stemforge["))
    assert {"synth", "report", "web", "live", "cluster"} <= set(pulled[len("stemforge["):-1].split(","))
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "Copyright (c) 2026 the stemforge developers" in licence


def test_missing_synth_extra_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    import stemforge.data.synth.mixing  # noqa: F401 - imported before pedalboard disappears, as in a real session

    monkeypatch.setitem(sys.modules, "pedalboard", None)
    out = tmp_path / "songs"
    assert main(["data", "synth", "--out", str(out), "--songs", "1", "--seconds", "1", "--backend", "numpy"]) == 1
    err = capsys.readouterr().err
    assert "pip install 'stemforge[synth]'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # refused before anything was written
    from stemforge.data.synth import mixing
    from stemforge.extras import MissingExtraError

    with pytest.raises(MissingExtraError, match=r"stemforge\[synth\]"):  # the library path says so too
        mixing.random_chain(np.random.default_rng(0), "drums").dynamics(reverb=True)


def test_missing_soundfont_support_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from stemforge.data.synth import soundfont
    from stemforge.data.synth.render import resolve_backend

    monkeypatch.setitem(sys.modules, "fluidsynth", None)
    soundfont.available.cache_clear()
    try:
        with pytest.raises(StemforgeError, match=r"pip install 'stemforge\[synth\]'"):
            resolve_backend("soundfont")
    finally:
        soundfont.available.cache_clear()


def test_missing_report_extra_fails_before_evaluating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    import stemforge.evaluate

    def evaluate_not_reached(*args, **kwargs):
        raise AssertionError("evaluation started although the plots could not be drawn")

    monkeypatch.setattr(stemforge.evaluate, "evaluate", evaluate_not_reached)
    assert main(["evaluate", "--data", str(tmp_path), "-m", "classical", "-o", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "pip install 'stemforge[report]'" in err and "--no-plots" in err and len(err.strip().splitlines()) == 1
    from stemforge.report import write_plots

    with pytest.raises(StemforgeError, match=r"stemforge\[report\]"):
        write_plots([], tmp_path)


def test_separate_runs_without_the_extras(tmp_path: Path, song_file: Path) -> None:
    """The README's main command needs none of pedalboard, pyfluidsynth, matplotlib."""
    code = ("import sys\n"
            "for name in ('pedalboard', 'fluidsynth', 'matplotlib'):\n"
            "    sys.modules[name] = None\n"
            "from stemforge.cli import main\n"
            f"sys.exit(main(['separate', {str(song_file)!r}, '-o', {str(tmp_path / 'out')!r}, '-q']))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "out").rglob("*.wav"))) == 4


def test_evaluate_metric_choices_match_the_library() -> None:
    from stemforge.commands import evaluate as command
    from stemforge.evaluate import METRICS

    assert command.METRICS == METRICS
