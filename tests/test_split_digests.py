"""``benchmarks/split_digests.py``: a split's digests are recorded, and a changed or missing song is reported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "split_digests.py"


def run(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env)


def split(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for n in range(3):
        for stem in ("bass", "mixture"):
            (root / f"song{n}").mkdir(parents=True, exist_ok=True)
            sf.write(root / f"song{n}" / f"{stem}.wav", rng.standard_normal((1000, 2)) * 0.1, 44100, subtype="FLOAT")
    return root


def test_the_same_audio_checks_and_a_change_is_named(tmp_path: Path) -> None:
    valid, record = split(tmp_path / "valid"), tmp_path / "digests.json"
    assert run("--write", record, valid).returncode == 0
    done = run("--check", record, valid)
    assert done.returncode == 0 and "valid: 3 songs, same audio" in done.stdout
    sf.write(valid / "song0" / "bass.wav", sf.read(valid / "song0" / "bass.wav")[0], 44100, subtype="DOUBLE")
    assert run("--check", record, valid).returncode == 0  # same samples in another encoding: same audio
    wav, _ = sf.read(valid / "song1" / "bass.wav", dtype="float32")
    wav[500, 0] += 1e-3
    sf.write(valid / "song1" / "bass.wav", wav, 44100, subtype="FLOAT")
    done = run("--check", record, valid)
    assert done.returncode == 1 and "1 differ, 0 missing (first: song1)" in done.stdout


def test_missing_songs_splits_and_files_fail(tmp_path: Path) -> None:
    valid, record = split(tmp_path / "valid"), tmp_path / "digests.json"
    assert run("--write", record, valid).returncode == 0
    for wav in (valid / "song2").iterdir():
        wav.unlink()
    (valid / "song2").rmdir()
    done = run("--check", record, valid)
    assert done.returncode == 1 and "0 differ, 1 missing" in done.stdout
    other = split(tmp_path / "other")
    assert run("--check", record, other).returncode == 1
    (valid / "song0" / "bass.wav").write_bytes(b"RIFFjunk")
    for args, message in ((["--check", tmp_path / "none.json", valid], "no such file"),
                          (["--check", record, valid], "bass.wav: not readable audio"),
                          (["--check", record, tmp_path / "nowhere"], "not a folder"),
                          (["--write", record], "the following arguments are required")):
        done = run(*args)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
