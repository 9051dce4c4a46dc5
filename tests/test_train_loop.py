import json

import pytest
import torch

from stemforge.checkpoint import load_checkpoint
from stemforge.errors import StemforgeError
from stemforge.train import TrainConfig, Trainer, load_config, train
from stemforge.train.config import ConfigError, merge
from stemforge.train.loop import lr_factor
from stemforge.train.state import load_state
from train_helpers import make_dataset


def _config(tmp_path, data, name="run", **overrides) -> TrainConfig:
    base = TrainConfig.from_dict({
        "out": str(tmp_path / name), "model": "test-tinymask", "preset": "tiny", "steps": 8, "epoch_steps": 4,
        "checkpoint_every": 2, "seed": 3, "ema_decay": 0.9, "progress": False, "loss": {"l1": 1.0, "sdr": 0.01},
        "data": {"train": [str(data)], "chunk": 0.25, "batch_size": 2, "valid_fraction": 0.2, "valid_seconds": 0.5},
        "optim": {"lr": 3e-3, "warmup_steps": 2},
    })
    return merge(base, overrides)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("songs"), songs=5)


def test_run_writes_logs_checkpoints_and_validation(tmp_path, data):
    summary = train(_config(tmp_path, data))
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == list(range(1, 9))
    valid = [r for r in rows if r["kind"] == "valid"]
    assert [r["step"] for r in valid] == [4, 8] and set(valid[0]["sdr"]) == {"drums", "bass", "other", "vocals"}
    assert summary["best"]["sdr_mean"] == max(r["sdr_mean"] for r in valid)
    best, meta = load_checkpoint(run / "best.safetensors")
    assert meta["training"]["step"] == summary["best"]["step"]
    assert (run / "log.csv").read_text().startswith("step,loss,lr,grad_norm")
    shipped, _ = load_checkpoint(run / "model.safetensors")
    assert shipped.sources == ["drums", "bass", "other", "vocals"]


class Killed(Exception):
    pass


def test_resume_after_kill_is_bit_exact(tmp_path, data, monkeypatch):
    train(_config(tmp_path, data, "straight"))
    log = Trainer._log

    def dying_log(self, row):
        log(self, row)
        if row["kind"] == "train" and row["step"] == 5:
            raise Killed  # the process dies after step 5; the last checkpoint is at step 4

    monkeypatch.setattr(Trainer, "_log", dying_log)
    with pytest.raises(Killed):
        train(_config(tmp_path, data, "killed"))
    monkeypatch.setattr(Trainer, "_log", log)
    assert load_state(tmp_path / "killed" / "state.safetensors")["step"] == 4
    with (tmp_path / "killed" / "log.jsonl").open("a") as fh:
        fh.write('{"kind": "train", "step": 6, "lo')  # killed in the middle of writing a row
    with (tmp_path / "killed" / "log.csv").open("a") as fh:
        fh.write("6,0.1")
    train(_config(tmp_path, data, "killed"), resume=True)

    a = load_state(tmp_path / "straight" / "state.safetensors")
    b = load_state(tmp_path / "killed" / "state.safetensors")
    assert a["step"] == b["step"] == 8
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key in a["ema"]["module"]:
        assert torch.equal(a["ema"]["module"][key], b["ema"]["module"][key]), key
    exp_a = [s["exp_avg"] for s in a["optimizer"]["state"].values()]
    exp_b = [s["exp_avg"] for s in b["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(exp_a, exp_b))
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert (a["rng"]["numpy"][1] == b["rng"]["numpy"][1]).all() and a["rng"]["python"] == b["rng"]["python"]
    assert a["schedule"] == b["schedule"] and a["best"] == b["best"]

    def losses(name):
        rows = [json.loads(x) for x in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        return [(r["kind"], r["step"], r.get("loss"), r.get("sdr_mean")) for r in rows]

    assert losses("straight") == losses("killed")  # the log has no duplicated, torn or missing steps
    assert (tmp_path / "straight" / "log.csv").read_text().count("\n") == (tmp_path / "killed" / "log.csv").read_text().count("\n")


def test_mixit_mode_learns_from_mixtures_only(tmp_path, data):
    cfg = _config(tmp_path, data, steps=30, epoch_steps=30, checkpoint_every=30, mode="mixit",
                  sources=["s1", "s2", "s3", "s4"], **{"optim.lr": 1e-2})
    first = Trainer(cfg)
    summary = first.fit()
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    train_losses = [r["loss"] for r in rows if r["kind"] == "train"]
    assert sum(train_losses[-5:]) < sum(train_losses[:5])
    # Outputs are unnamed; validation assigns them to the true stems.
    assert set(summary["best"]["sdr"]) == {"drums", "bass", "other", "vocals"}


def test_both_mode_and_frozen_parameters(tmp_path, data):
    cfg = _config(tmp_path, data, steps=3, mode="both", freeze=["encoder.*"])
    trainer = Trainer(cfg)
    trainer.fit()
    initial = load_state(tmp_path / "run" / "state.safetensors")["model"]
    torch.manual_seed(cfg.seed)
    from stemforge.models.registry import build

    fresh = build("test-tinymask")
    assert torch.equal(initial["encoder.0.weight"], fresh.state_dict()["encoder.0.weight"])
    assert not torch.equal(initial["head.weight"], fresh.state_dict()["head.weight"])


def test_config_file_flags_and_errors(tmp_path, data):
    path = tmp_path / "recipe.toml"
    path.write_text('model = "test-tinymask"\nsteps = 5\n[data]\ntrain = ["x"]\nbatch_size = 3\n[optim]\nlr = 0.01\n')
    cfg = merge(load_config(path), {"steps": 7, "data.chunk": 1.5, "seed": None})
    assert (cfg.steps, cfg.data.batch_size, cfg.data.chunk, cfg.optim.lr) == (7, 3, 1.5, 0.01)
    path.write_text("[data]\nbogus = 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_config(path)
    with pytest.raises(StemforgeError, match="already holds a run"):
        cfg = _config(tmp_path, data, steps=1)
        train(cfg)
        Trainer(cfg)
    with pytest.raises(StemforgeError, match="nothing to resume"):
        Trainer(_config(tmp_path, data, "empty"), resume=True)
    with pytest.raises(StemforgeError, match="data folder not found"):
        train(_config(tmp_path, tmp_path / "missing", "x"))


def test_schedule_warms_up_then_decays():
    factors = [lr_factor(s, 10, 100, 0.01) for s in range(100)]
    assert factors[0] == 0.1 and factors[9] == 1.0
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert abs(factors[-1] - 0.01) < 1e-3


def test_cli_trains_and_resumes(tmp_path, data, capsys):
    from stemforge.cli import main

    args = ["train", "--model", "test-tinymask", "--data", str(data), "--out", str(tmp_path / "cli"), "--steps", "2",
            "--chunk", "0.25", "--batch-size", "2", "--loss", "l1", "--loss", "mrstft=0.5", "--no-progress",
            "--epoch-steps", "2"]
    assert main(args) == 0
    assert "best validation SDR" in capsys.readouterr().out
    cfg = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert cfg["loss"] == {"l1": 1.0, "mrstft": 0.5} and cfg["steps"] == 2
    assert main(args[:-2] + ["--steps", "3", "--resume"]) == 0  # extend the run by one step
    assert json.loads((tmp_path / "cli" / "log.jsonl").read_text().splitlines()[-1])["step"] == 3
    assert main(["train", "--model", "test-tinymask", "--out", str(tmp_path / "x"), "--no-progress"]) == 1
    assert "error: no training data" in capsys.readouterr().err


def test_stop_step_keeps_the_schedule_and_resumes(tmp_path, data):
    cfg = _config(tmp_path, data, stop_step=3, epoch_steps=100)
    summary = train(cfg)
    assert summary["step"] == 3
    state = load_state(tmp_path / "run" / "state.safetensors")
    assert state["step"] == 3
    assert state["schedule"]["last_epoch"] == 3  # schedule of an 8-step run, stopped early
    summary = train(_config(tmp_path, data, epoch_steps=100), resume=True)
    assert summary["step"] == 8


class Shell:
    def __init__(self, canary) -> None:
        self.command = f"touch {canary}"

    def __reduce__(self):
        import os

        return os.system, (self.command,)


def test_hostile_state_in_a_run_folder_runs_nothing(tmp_path, data, capsys):
    """A shared run folder whose state is a pickle (old format, or planted) is never unpickled on --resume."""
    from stemforge.cli import main

    train(_config(tmp_path, data, steps=2, epoch_steps=2))
    run, canary = tmp_path / "run", tmp_path / "canary"
    assert (run / "state.safetensors").is_file() and not (run / "state.pt").exists()
    (run / "state.safetensors").unlink()
    torch.save({"step": 2, "evil": Shell(canary)}, run / "state.pt")
    with pytest.raises(StemforgeError, match="state.pt from an older stemforge"):
        train(_config(tmp_path, data, steps=4), resume=True)
    assert main(["train", "--resume", "--out", str(run), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # a planted file under the new name: a pickle is not a safetensors file
    (run / "state.pt").rename(run / "state.safetensors")
    with pytest.raises(StemforgeError, match="not a stemforge training state"):
        train(_config(tmp_path, data, steps=4), resume=True)
    assert not canary.exists()


def test_state_with_wrong_values_is_a_clear_error(tmp_path, data):
    from stemforge.train.state import save_state

    train(_config(tmp_path, data, steps=2, epoch_steps=2))
    state = load_state(tmp_path / "run" / "state.safetensors")
    state["optimizer"]["param_groups"] = "nonsense"
    save_state(state, tmp_path / "run" / "state.safetensors")
    with pytest.raises(StemforgeError, match="training state does not match this run"):
        train(_config(tmp_path, data, steps=4), resume=True)


@pytest.mark.parametrize("setting", ["batch_size", "device", "out"])
def test_a_refused_run_prints_its_error_without_a_warm_up_warning(tmp_path, data, caplog, monkeypatch, setting):
    overrides = {"optim.warmup_steps": 100}
    if setting == "batch_size":
        overrides["data.batch_size"] = 0
    elif setting == "device":
        overrides["device"] = "cuda"
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    else:
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "state.safetensors").write_bytes(b"")
    with caplog.at_level("WARNING", logger="stemforge"), pytest.raises(StemforgeError) as refused:
        Trainer(_config(tmp_path, data, steps=20, **overrides))
    assert {"batch_size": "batch_size", "device": "no CUDA device", "out": "already holds a run"}[setting] in str(refused.value)
    assert not [r for r in caplog.records if "warm-up" in r.getMessage()]


def test_warmup_longer_than_the_run_is_cut_with_a_warning(tmp_path, data, caplog):
    cfg = _config(tmp_path, data, steps=20, epoch_steps=20, checkpoint_every=20, **{"optim.warmup_steps": 100})
    with caplog.at_level("WARNING", logger="stemforge"):
        train(cfg)
    warnings = [r.getMessage() for r in caplog.records if "warm-up" in r.getMessage()]
    assert warnings == ["a warm-up of 100 steps does not fit in a run of 20 steps: warming up over 2 steps instead "
                        "(choose with --warmup, below --steps)"]
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["optim"]["warmup_steps"] == 2  # what ran is what the run records (and resumes with)
    lrs = [json.loads(x)["lr"] for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines() if '"train"' in x]
    # logged after each step: the rate of the next one, at its peak after the 2 warm-up steps, then decaying
    assert max(lrs) == lrs[0] == pytest.approx(cfg.optim.lr)
    assert lrs[-1] < 0.05 * cfg.optim.lr
    caplog.clear()
    with caplog.at_level("WARNING", logger="stemforge"):
        Trainer(_config(tmp_path, data, "fits", steps=20, **{"optim.warmup_steps": 19}))
    assert not [r for r in caplog.records if "warm-up" in r.getMessage()]
    with pytest.raises(ConfigError, match="warmup_steps must be >= 0"):
        Trainer(_config(tmp_path, data, "negative", **{"optim.warmup_steps": -1}))


def test_chunk_is_the_training_word_and_old_configs_still_read(tmp_path):
    """"segment" is the inference word; a training example is a "chunk". Recipes and run folders written with
    ``[data] segment`` still load (as ``chunk``), and ``--segment`` stays an alias of ``--chunk``."""
    path = tmp_path / "old.toml"
    path.write_text('model = "test-tinymask"\n[data]\ntrain = ["x"]\nsegment = 1.25\n')
    assert load_config(path).data.chunk == 1.25
    assert TrainConfig.from_dict({"data": {"segment": 0.5}}).data.chunk == 0.5
    path.write_text('[data]\nsegment = 1.0\nchunk = 2.0\n')
    with pytest.raises(ConfigError, match="old name"):
        load_config(path)
    from stemforge.cli import build_parser

    args = build_parser().parse_args(["train", "--segment", "0.75"])
    assert args.chunk == 0.75


def test_unsupervised_mixtures_in_a_supervised_run_are_an_error(tmp_path):
    """The loop builds a MixIT stream whenever unsupervised roots are set; a "supervised" run given them would
    quietly train on MixIT batches too (issue #12's comparison with and without real mixtures relies on it not)."""
    cfg = TrainConfig.from_dict({"mode": "supervised", "data": {"train": ["x"], "unsupervised": ["y"]}})
    with pytest.raises(ConfigError, match="need --mode mixit or both"):
        cfg.validate()
    TrainConfig.from_dict({"mode": "both", "data": {"train": ["x"], "unsupervised": ["y"]}}).validate()


def test_a_chunk_mostly_padding_gets_a_warning_naming_one_without(tmp_path, data, caplog):
    cfg = _config(tmp_path, data, model="unet", steps=2, epoch_steps=2, checkpoint_every=2)  # tiny: 16-frame multiples
    with caplog.at_level("WARNING", logger="stemforge"):
        train(cfg)
    warnings = [r.getMessage() for r in caplog.records if "zeros" in r.getMessage()]
    assert warnings == ["chunk = 0.25 s: the model pads each example with 31% zeros; chunk = 0.3600 s costs the same "
                        "and trains on all of it"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="stemforge"):
        train(merge(cfg, {"out": str(tmp_path / "unpadded"), "data.chunk": 0.36}))
    assert not [r for r in caplog.records if "zeros" in r.getMessage()]
