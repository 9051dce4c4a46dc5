"""``stemforge train --ddp``: real 2-process torchrun runs on the CPU (gloo on 127.0.0.1, a free port).

Two processes sharing a global batch train the weights one process trains on that batch (up to float round-off),
rank 0 alone writes the run folder, and ``--resume`` at the same world size continues bit for bit.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stemforge.cli import main
from stemforge.train.state import load_state
from train_helpers import make_dataset

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
N = 3  # steps before the stop / resume


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("songs"), songs=4)


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _args(data: Path, out: Path, dropout: float, *extra: str) -> list[str]:
    return ["train", "--model", "test-tinymask", "--model-option", f"dropout={dropout}", "--data", str(data),
            "--out", str(out), "--chunk", "0.25", "--batch-size", "4", "--loss", "l1", "--epoch-steps", "100",
            "--seed", "3", "--warmup", "2", "--ema", "0.9", "--threads", "1", "--no-progress", "--steps", str(2 * N),
            *extra]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node=2`` (its module, in this interpreter) running the CLI with the test model."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]), "OMP_NUM_THREADS": "1",
           "GLOO_SOCKET_IFNAME": "lo"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
               "--master_addr=127.0.0.1", f"--master_port={_free_port()}", str(TESTS / "train_helpers.py"), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _train_rows(run: Path) -> list[dict]:
    return [row for row in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if row["kind"] == "train"]


def _train_steps(run: Path) -> list[int]:
    return [row["step"] for row in _train_rows(run)]


def _losses(run: Path) -> list[float]:
    return [row["loss"] for row in _train_rows(run)]


def test_two_processes_train_what_one_does(tmp_path, data, capsys):
    """N steps on 2 processes (each 2 of the 4 examples a step) == N steps of one process on all 4 (within 1e-5)."""
    ddp = _torchrun(*_args(data, tmp_path / "ddp", 0.0, "--stop-step", str(N)), "--ddp")
    assert ddp.stdout.count("trained to step") == 1  # rank 0 speaks for the run
    assert main(_args(data, tmp_path / "one", 0.0, "--stop-step", str(N))) == 0
    two, one = _weights(tmp_path / "ddp" / "last.safetensors"), _weights(tmp_path / "one" / "last.safetensors")
    assert two.keys() == one.keys()
    assert max((two[k] - one[k]).abs().max().item() for k in one) < 1e-5
    # Rank 0 alone logs: each step once, with the global batch's loss.
    assert _train_steps(tmp_path / "ddp") == list(range(1, N + 1))
    assert _losses(tmp_path / "ddp") == pytest.approx(_losses(tmp_path / "one"), rel=1e-5)
    state = load_state(tmp_path / "ddp" / "state.safetensors")
    assert state["world_size"] == 2 and len(state["rng_ranks"]) == 2 and state["step"] == N
    # One process may continue a 2-process run: it says that this is not bit for bit.
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "ddp"), "--resume", "--no-progress"]) == 0
    assert "was trained by 2 process(es) and resumes on 1: it continues, but not bit for bit" in capsys.readouterr().err
    assert _train_steps(tmp_path / "ddp") == list(range(1, 2 * N + 1))


@pytest.mark.slow
def test_resume_at_the_same_world_size_is_bit_exact(tmp_path, data):
    """N steps + resume N == 2N in one go, bit for bit, on 2 processes; with dropout, so every rank must get its
    own random state back (each draws its own masks)."""
    _torchrun(*_args(data, tmp_path / "resumed", 0.1, "--stop-step", str(N)), "--ddp")
    state = load_state(tmp_path / "resumed" / "state.safetensors")
    assert not torch.equal(state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"])
    halfway = _weights(tmp_path / "resumed" / "last.safetensors")
    _torchrun("train", "--out", str(tmp_path / "resumed"), "--resume", "--no-progress", "--ddp")
    _torchrun(*_args(data, tmp_path / "whole", 0.1), "--ddp")
    for name in ("last", "model"):  # the raw weights and the shipped (EMA) ones
        resumed = _weights(tmp_path / "resumed" / f"{name}.safetensors")
        whole = _weights(tmp_path / "whole" / f"{name}.safetensors")
        assert all(torch.equal(resumed[k], whole[k]) for k in whole), name
    assert not all(torch.equal(whole[k], halfway[k]) for k in halfway)  # the second half did train
    assert _train_steps(tmp_path / "resumed") == _train_steps(tmp_path / "whole") == list(range(1, 2 * N + 1))


def test_ddp_outside_torchrun_says_how_to_launch(tmp_path, data, capsys, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert main(_args(data, tmp_path / "run", 0.0, "--ddp")) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --ddp runs one process per device under torchrun")
    assert "torchrun --nproc_per_node=N -m stemforge train --ddp" in err[0]
    assert not (tmp_path / "run").exists()
