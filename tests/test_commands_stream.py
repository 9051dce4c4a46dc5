"""``stemforge stream``: raw PCM through a real stdin/stdout pipe, and files, equal to the offline separation."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge.checkpoint import save_checkpoint
from stemforge.cli import main
from stemforge.models.registry import build
from stemforge.stream import StreamingSeparator

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A causal U-Net (random weights, the shipped architecture) as a checkpoint file."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "causal.safetensors"
    save_checkpoint(build("unet-causal", preset="tiny", depth=5).eval(), path)
    return path


def _mix(samples: int = 20000) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (0.2 * rng.standard_normal((2, samples))).astype(np.float32)


def _cli(args: list[str], stdin: bytes) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "stemforge", *args], input=stdin, capture_output=True, env=env,
                          timeout=120)


def test_stdin_to_stdout_pipe_equals_offline(checkpoint):
    mix = _mix()
    done = _cli(["stream", "-", "-o", "-", "-n", str(checkpoint), "--block", "300"], mix.T.astype("<f4").tobytes())
    assert done.returncode == 0, done.stderr.decode()
    offline = StreamingSeparator(checkpoint).offline(mix)
    out = np.frombuffer(done.stdout, dtype="<f4").reshape(-1, 8).T  # 4 stems x 2 channels per frame
    assert out.shape == (8, mix.shape[1])
    for i, stem in enumerate(["drums", "bass", "other", "vocals"]):
        np.testing.assert_allclose(out[2 * i:2 * i + 2], offline[stem], atol=1e-5, rtol=0)


def test_int16_pcm_one_stem(checkpoint, monkeypatch, capsysbinary):
    mix = _mix(9000)
    pcm = np.round(mix.T * 32768).clip(-32768, 32767).astype("<i2")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(pcm.tobytes())))
    assert main(["stream", "-", "-o", "-", "-n", str(checkpoint), "--pcm", "s16", "--stems", "vocals"]) == 0
    offline = StreamingSeparator(checkpoint).offline(pcm.T.astype(np.float32) / 32768)["vocals"]
    out = np.frombuffer(capsysbinary.readouterr().out, dtype="<i2").reshape(-1, 2).T.astype(np.float32) / 32768
    assert out.shape == offline.shape
    assert np.abs(out - offline).max() <= 1.5 / 32768  # the 16-bit rounding, nothing more


def test_file_to_stem_files(checkpoint, tmp_path, capsys):
    mix = _mix()
    song = tmp_path / "song.wav"
    sf.write(song, mix.T, 44100, subtype="FLOAT")
    out = tmp_path / "stems"
    assert main(["stream", str(song), "-o", str(out), "-n", str(checkpoint), "--bits", "32f"]) == 0
    offline = StreamingSeparator(checkpoint).offline(mix)
    for stem, ref in offline.items():
        data, rate = sf.read(out / f"{stem}.wav", dtype="float32", always_2d=True)
        assert rate == 44100
        np.testing.assert_allclose(data.T, ref, atol=1e-5, rtol=0)
    # Never overwritten without being asked.
    assert main(["stream", str(song), "-o", str(out), "-n", str(checkpoint)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_bad_arguments_are_one_line_errors(checkpoint, tmp_path, capsys):
    assert main(["stream", "-", "-o", "-", "-n", str(checkpoint), "--block", "0"]) == 1
    assert main(["stream", str(tmp_path / "missing.wav"), "-o", str(tmp_path), "-n", str(checkpoint)]) == 1
    assert main(["stream", "-", "-o", "-", "-n", str(checkpoint), "--stems", "kazoo"]) == 1
    assert main(["stream", "-", "-o", "-", "-n", str(checkpoint), "--rate", "0"]) == 1  # not "the model's rate"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err)
    assert "kazoo" in err[2] and "no such file" in err[1] and "--rate 0" in err[3]
