"""``recipes/train_refiner.py``: ``--widen-bass`` widens every other training song's bass, and the recipe runs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from stemforge.checkpoint import load_checkpoint, save_checkpoint
from stemforge.models.unet import UNetConfig, UNetSeparator
from stemforge.separate import Separator

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "train_refiner.py"
STEMS = ("drums", "bass", "other", "vocals")
RATE = 44100


def recipe():  # noqa: ANN201 - the recipe as a module (recipes are scripts, not a package)
    spec = importlib.util.spec_from_file_location("train_refiner_recipe", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def songs(root: Path, count: int, seconds: float = 1.0) -> Path:
    rng = np.random.default_rng(0)
    for n in range(count):
        folder = root / f"song{n}"
        folder.mkdir(parents=True)
        for stem in STEMS:
            sf.write(folder / f"{stem}.wav", 0.1 * rng.standard_normal((int(seconds * RATE), 2)), RATE)
    return root


def checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    config = UNetConfig(n_fft=512, hop=128, max_bins=64, depth=3, base_channels=4, remask_fft=2048, remask_hop=512)
    save_checkpoint(UNetSeparator(config).eval(), path)
    return path


def test_widen_bass_changes_every_other_song_and_nothing_else(tmp_path: Path) -> None:
    module = recipe()
    model, _ = load_checkpoint(checkpoint(tmp_path / "net.safetensors"))
    separator = Separator(model, threads=1)
    folder = str(songs(tmp_path / "train", 4))
    plain = module.bands(separator, model, [folder], 1.0, 40)
    wide = module.bands(separator, model, [folder], 1.0, 40, widen_ms=15.0, seed=3)
    again = module.bands(separator, model, [folder], 1.0, 40, widen_ms=15.0, seed=3)
    for name in ("target", "mix"):
        a, b = getattr(plain, name), getattr(wide, name)
        assert torch.equal(a[0::2], b[0::2]), name  # even songs as rendered
        assert not torch.equal(a[1::2], b[1::2]), name  # odd songs widened
        assert torch.equal(b, getattr(again, name)), name  # the same delays for the same seed


def test_the_recipe_trains_and_records_the_widening(tmp_path: Path) -> None:
    net = checkpoint(tmp_path / "net.safetensors")
    train, dev = songs(tmp_path / "train", 3), songs(tmp_path / "dev", 2)
    out = tmp_path / "refined.safetensors"
    args = [sys.executable, str(RECIPE), str(net), str(out), "--train", str(train), "--dev", str(dev), "--bins", "40",
            "--width", "4", "--layers", "2", "--steps", "3", "--batch", "2", "--seconds", "1"]
    run = subprocess.run([*args, "--widen-bass", "15"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    model, meta = load_checkpoint(out)
    assert model.config.refine_bins == 40 and model.refiner is not None
    record = meta["refiner"] if isinstance(meta["refiner"], dict) else json.loads(meta["refiner"])
    assert record["widen_bass_ms"] == 15.0 and record["songs"] == 3
    bad = subprocess.run([*args, "--widen-bass", "-1", "--force"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--widen-bass must be between 0 and 1000 ms" in bad.stderr.strip().splitlines()[-1]
