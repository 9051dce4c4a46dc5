"""``recipes/set_remask.py``: a copy of a unet checkpoint with another re-mask or overlap, same weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stemforge.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from stemforge.models.unet import UNetConfig, UNetSeparator

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "set_remask.py"


def run(*args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run([sys.executable, str(RECIPE), *map(str, args)], capture_output=True, text=True, env=env)


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    config = UNetConfig(n_fft=512, hop=128, max_bins=64, depth=3, base_channels=4, remask_fft=2048, remask_hop=512)
    path = tmp_path / "in.safetensors"
    save_checkpoint(UNetSeparator(config).eval(), path, valid_sdr={"vocals": 1.5})
    return path


def test_overlap_alone_changes_the_overlap_only(tmp_path: Path, source: Path) -> None:
    done = run(source, tmp_path / "out.safetensors", "--overlap", 0.15)
    assert done.returncode == 0, done.stderr
    before, after = read_metadata(source), read_metadata(tmp_path / "out.safetensors")
    assert after["config"] == {**before["config"], "overlap": 0.15}
    assert {k: v for k, v in after.items() if k != "config"} == {k: v for k, v in before.items() if k != "config"}
    model, _ = load_checkpoint(tmp_path / "out.safetensors")
    assert model.default_overlap == 0.15 and (model.config.remask_fft, model.config.remask_hop) == (2048, 512)


def test_the_re_mask_alone_keeps_the_overlap(tmp_path: Path, source: Path) -> None:
    assert run(source, tmp_path / "a.safetensors", "--overlap", 0.1).returncode == 0
    done = run(tmp_path / "a.safetensors", tmp_path / "b.safetensors", "--fft", 4096, "--hop", 1024)
    assert done.returncode == 0, done.stderr
    config = read_metadata(tmp_path / "b.safetensors")["config"]
    assert (config["remask_fft"], config["remask_hop"], config["overlap"]) == (4096, 1024, 0.1)


@pytest.mark.parametrize("args,message", [
    (["--overlap", "1.5"], "overlap (1.5) must be a number in [0, 1)"),
    (["--overlap", "nan"], "must be a number in [0, 1)"),
    ([], "nothing to set"),
    (["--fft", "4096"], "--fft and --hop go together"),
])
def test_bad_settings_are_one_line(tmp_path: Path, source: Path, args: list[str], message: str) -> None:
    done = run(source, tmp_path / "out.safetensors", *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("set_remask.py: error:")
    assert not (tmp_path / "out.safetensors").exists()
