"""``stemforge train`` on the command line: resume keeps the run's settings, a stop signal saves a resumable run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stemforge.cli import main
from stemforge.train.state import load_state
from train_helpers import make_dataset

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("songs"), songs=5)


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--model", "test-tinymask", "--data", str(data), "--out", str(out), "--chunk", "0.25",
            "--batch-size", "2", "--loss", "l1", "--epoch-steps", "5", "--seed", "3", "--warmup", "2",
            "--threads", "1", "--no-progress", *extra]


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text())


def _resuming_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "resuming with" in line]


def test_resume_keeps_the_runs_own_settings_and_reports_each_change(tmp_path, data, capsys):
    run = tmp_path / "run"
    assert main(_args(data, run, "--steps", "6", "--stop-step", "2")) == 0
    capsys.readouterr()
    # No flag: the run's own 6 steps, not the 1000 of TrainConfig's default; nothing reported.
    assert main(["train", "--out", str(run), "--resume", "--no-progress", "--stop-step", "3"]) == 0
    assert _config(run)["steps"] == 6 and _config(run)["data"]["batch_size"] == 2
    assert _resuming_lines(capsys.readouterr().err) == []
    # Each changed setting: one line, naming the flag it came from.
    assert main(["train", "--out", str(run), "--resume", "--no-progress", "--steps", "8", "--batch-size", "3",
                 "--stop-step", "4"]) == 0
    err = capsys.readouterr().err
    assert _resuming_lines(err) == ["warning: resuming with steps 6 -> 8 (from --steps)",
                                    "warning: resuming with data.batch_size 2 -> 3 (from --batch-size)"]
    assert (_config(run)["steps"], _config(run)["data"]["batch_size"]) == (8, 3)
    # A --config file's keys count as given (flags still win); unchanged ones are not reported.
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('steps = 9\nseed = 3\n[optim]\nlr = 0.002\n')
    assert main(["train", "--config", str(recipe), "--out", str(run), "--resume", "--no-progress"]) == 0
    assert _resuming_lines(capsys.readouterr().err) == [
        "warning: resuming with steps 8 -> 9 (from " + str(recipe) + ")",
        "warning: resuming with optim.lr 0.001 -> 0.002 (from " + str(recipe) + ")"]
    assert json.loads((run / "log.jsonl").read_text().splitlines()[-1])["step"] == 9
    # Fewer steps than the run has made: a one-line error, not a silent no-op.
    assert main(["train", "--out", str(run), "--resume", "--steps", "5"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: {run} is at step 9, past the 5 steps asked for; give --steps above 9 to continue it")
    # The weights define the model: changing it on resume is a one-line error.
    assert main(["train", "--out", str(run), "--resume", "--model", "unet", "--steps", "12"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: model cannot change on resume") and len(err.strip().splitlines()) == 1


def _straight_state(tmp_path: Path, data: Path, stop: int, *extra: str) -> tuple[dict, list]:
    run = tmp_path / "straight"
    args = _args(data, run, "--steps", "100000", "--checkpoint-every", "1000", "--stop-step", str(stop), *extra)
    assert main(args) == 0
    return load_state(run / "state.safetensors"), _log(run)


def _log(run: Path) -> list:
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    return [(r["kind"], r["step"], r.get("loss"), r.get("sdr_mean")) for r in rows]


def _wait_for_step(run: Path, step: int, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    log = run / "log.jsonl"
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        if log.is_file() and sum('"kind": "train"' in line for line in log.read_text().splitlines()) >= step:
            return
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"training did not reach step {step} in {timeout} s")


@pytest.mark.parametrize("signum, workers", [(signal.SIGINT, "1"), (signal.SIGTERM, "0")], ids=["SIGINT", "SIGTERM"])
def test_stop_signal_saves_a_run_that_resumes_bit_exactly(tmp_path, data, capsys, signum, workers):
    """SIGINT as a terminal's Ctrl-C sends it (to the process group: data-loader workers too), SIGTERM as ``kill``."""
    run = tmp_path / "run"
    script = (f"import sys; sys.path.insert(0, {str(TESTS)!r}); import train_helpers; from stemforge.cli import main; "
              f"sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", script, *_args(data, run, "--steps", "100000", "--workers",
                                                                    workers, "--checkpoint-every", "1000")],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for_step(run, 3, process)
    if signum == signal.SIGINT:
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    stopped = load_state(run / "state.safetensors")["step"]
    assert stopped >= 3 and stopped % 1000  # saved at the signal, not at a regular checkpoint
    name = signal.Signals(signum).name
    assert f"stopped by {name} after step {stopped}; saved {run / 'state.safetensors'}" in err
    assert f"continue with: stemforge train --out {run} --resume" in err and "Traceback" not in err
    assert err.count(f"{name} received: stopping after the current step") == 1  # not once more per worker
    assert not (run / "model.safetensors").exists()  # the run did not end

    assert main(["train", "--out", str(run), "--resume", "--no-progress", "--stop-step", str(stopped + 2)]) == 0
    assert _resuming_lines(capsys.readouterr().err) == []
    a, log = _straight_state(tmp_path, data, stopped + 2, "--workers", workers)
    b = load_state(run / "state.safetensors")
    assert a["step"] == b["step"] == stopped + 2
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["ema"]["module"]:
        assert torch.equal(a["ema"]["module"][key], b["ema"]["module"][key]), key
    for x, y in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(x["exp_avg"], y["exp_avg"]) and torch.equal(x["exp_avg_sq"], y["exp_avg_sq"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"]) and a["schedule"] == b["schedule"]
    assert log == _log(run)  # no step lost, repeated or torn


def test_every_override_names_its_flag():
    """A setting changed on resume is reported with the flag that changed it: each override key has one."""
    from stemforge.cli import build_parser
    from stemforge.commands.train import FLAGS, overrides

    args = build_parser().parse_args(["train"])
    keys = set(overrides(args))
    assert keys == set(FLAGS)
    options = {option for action in build_parser()._subparsers._group_actions[0].choices["train"]._actions
               for option in action.option_strings}
    assert set(FLAGS.values()) <= options
