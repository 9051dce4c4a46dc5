"""The training loop: AdamW, warm-up + cosine schedule, clipping, EMA, bf16 autocast, checkpoints, resume.

A run directory holds::

    config.json        the resolved TrainConfig
    log.jsonl          one JSON object per step ("train") and per validation ("valid")
    log.csv, valid.csv the same as tables
    last.safetensors   the current (raw) weights, a normal stemforge checkpoint
    state.safetensors  what resume needs besides: weights, optimizer, schedule, EMA, step, best score, RNG states
                       (tensors plus a JSON header, no pickle: resuming a shared run folder runs no code)
    best.safetensors   the shipped weights (EMA when enabled) with the best mean validation SDR so far
    model.safetensors  the shipped weights at the end of training

``resume`` continues bit for bit: every batch is a pure function of (seed, step), and the RNG states are restored.
With ``ddp`` (under ``torchrun``) each process trains on its share of every step's batch
(``stemforge.train.distributed``); rank 0 alone writes the run folder, and the state holds every rank's RNG.
It keeps the run's own settings (``config.json``); each one the resuming config changes is logged on one line.
SIGINT or SIGTERM (Ctrl-C, a job scheduler) stops the run after the step in progress and saves a resumable state.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from stemforge.checkpoint import load_checkpoint, save_checkpoint
from stemforge.data import training as train_data
from stemforge.data.augment import AugmentConfig
from stemforge.errors import StemforgeError
from stemforge.models.base import StemModel
from stemforge.models.registry import build
from stemforge.stems import FOUR_STEMS
from stemforge.train import distributed
from stemforge.train.config import ConfigError, TrainConfig, flatten, merge
from stemforge.train.ema import EMA
from stemforge.train.finetune import freeze, start_from
from stemforge.train.losses import build_loss
from stemforge.train.mixit import mixit_loss, mixture_of_mixtures
from stemforge.train.state import load_state, save_state
from stemforge.train.validation import overall, playing, validate

#: Stems a MixIT model is scored against when its outputs carry no stem names.
DEFAULT_STEMS = list(FOUR_STEMS)
#: The resume state inside a run folder; ``state.pt`` is the pickle older versions wrote (never loaded).
STATE_FILE, LEGACY_STATE_FILE = "state.safetensors", "state.pt"
#: Settings of how one invocation runs, not of the run: a resume takes them from its own config, unannounced.
PER_INVOCATION = ("out", "progress", "stop_step", "time_limit")
#: Settings that define the model being trained; a resume cannot change them (the weights come from the run).
FIXED_ON_RESUME = ("model", "preset", "model_options", "sources", "init", "freeze")
#: Signals that stop a run cleanly (after the step in progress, with a resumable state saved).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

logger = logging.getLogger(__name__)


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Multiplier of the base learning rate: linear warm-up over ``warmup`` steps, then cosine to ``min_ratio``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _log_step(line: str) -> int | None:
    """The step of one ``log.jsonl`` row, or None for a torn or foreign line."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    step = row.get("step") if isinstance(row, dict) else None
    return step if type(step) is int else None


def _replace_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a kill now cannot tear the log further."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as fh:
        fh.write(text)
    os.replace(tmp, path)


def stored_config(out: str | os.PathLike[str]) -> TrainConfig:
    """The config a run in ``out`` was started (or last resumed) with, read from ``out/config.json``.

    Args:
        out: the run folder.

    Returns:
        The run's own settings.

    Raises:
        StemforgeError: nothing resumable in ``out`` (no state or config), only an old pickled state, or an unreadable
            ``config.json`` (one line each).
    """
    out = Path(out)
    path = out / "config.json"
    if not (out / STATE_FILE).is_file() and (out / LEGACY_STATE_FILE).is_file():
        raise StemforgeError(f"{out} holds a {LEGACY_STATE_FILE} from an older stemforge; it is a pickle and is "
                             f"never loaded (it could run code): start a new run from its weights with "
                             f"--init {out / 'last.safetensors'}")
    if not (out / STATE_FILE).is_file() or not path.is_file():
        raise StemforgeError(f"nothing to resume in {out} (no {STATE_FILE} / config.json)")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, AttributeError) as exc:
        raise StemforgeError(f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc


def resume_changes(stored: TrainConfig, config: TrainConfig, origins: dict[str, str] | None = None) -> list[str]:
    """One line per setting ``config`` changes from the run's ``stored`` one (``PER_INVOCATION`` ones aside).

    Args:
        stored: the run's own config (``stored_config``).
        config: the config to resume with.
        origins: where a changed setting came from, by ``merge`` key (``{"steps": "--steps"}``), quoted per line.

    Returns:
        Lines like ``resuming with steps 20 -> 40 (from --steps)``; empty when nothing changes.

    Raises:
        ConfigError: ``config`` changes a setting that defines the model (``FIXED_ON_RESUME``).
    """
    old, new = flatten(stored), flatten(config)
    lines = []
    for key, value in new.items():
        if key in PER_INVOCATION or old.get(key) == value:
            continue
        if key in FIXED_ON_RESUME:
            raise ConfigError(f"{key} cannot change on resume ({old.get(key)!r} -> {value!r}): the run's weights "
                              f"define it; start a new run with --init {Path(config.out) / 'last.safetensors'}")
        source = (origins or {}).get(key)
        line = f"resuming with {key} {_show(old.get(key))} -> {_show(value)}"
        lines.append(f"{line} (from {source})" if source else line)
    return lines


def _fit_warmup(config: TrainConfig) -> TrainConfig:
    """``config`` with a warm-up shorter than the run: one of ``steps`` or more never reaches the peak learning rate
    (nor decays); it is cut to a tenth of the run, with a warning. (The default warm-up of 100 steps meets a quick
    ``--steps 20`` trial all the time, so this is a warning rather than an error.)"""
    warmup = config.optim.warmup_steps
    if config.steps < 1 or warmup < config.steps:
        return config
    fitted = config.steps // 10
    logger.warning(f"a warm-up of {warmup} steps does not fit in a run of {config.steps} steps: warming up over "
                   f"{fitted} steps instead (choose with --warmup, below --steps)")
    return dataclasses.replace(config, optim=dataclasses.replace(config.optim, warmup_steps=fitted))


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


class Trainer:
    """Owns one run: ``Trainer(config).fit()`` trains from scratch; ``Trainer(config, resume=True)`` continues.

    On resume ``config`` is the config to continue with: build it with ``resume_config(out, overrides)`` to keep
    the run's own settings except the overridden ones. Each setting that differs from the run's is logged
    (a warning, one line each, naming its origin from ``origins`` when given).

    ``ddp=True`` (in a process started by ``torchrun``) joins the other processes of the run: the model trains as
    DistributedDataParallel, ``data.batch_size`` is the global batch, and rank 0 alone writes the run folder.
    """

    def __init__(self, config: TrainConfig, resume: bool = False, origins: dict[str, str] | None = None,
                 ddp: bool = False) -> None:
        self.out = Path(config.out)
        if resume:
            for line in resume_changes(stored_config(self.out), config, origins):
                logger.warning(line)
        # Refusals first: a run refused for a bad setting prints its error alone, without a warm-up warning.
        config.validate()
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            raise StemforgeError("--device cuda was asked for but no CUDA device is available")
        if not resume and any((self.out / name).exists() for name in (STATE_FILE, LEGACY_STATE_FILE)):
            raise StemforgeError(f"{self.out} already holds a run; use --resume to continue it or choose another --out")
        config = _fit_warmup(config)
        self.config = config
        self.resume = resume
        if config.threads:
            torch.set_num_threads(config.threads)
        self.stop_signal: int | None = None
        self.group = distributed.join(config.device) if ddp else distributed.SINGLE
        if config.data.batch_size % self.group.world_size:
            self.group.close(clean=False)
            raise ConfigError(f"--batch-size {config.data.batch_size} is the global batch and must split evenly over "
                              f"the {self.group.world_size} processes; give a multiple of {self.group.world_size}")
        self.device = self.group.device(config.device)

    # ----- setup -------------------------------------------------------------------------------------------
    def _build_model(self) -> StemModel:
        cfg = self.config
        if self.resume:
            model, _ = load_checkpoint(self.out / "last.safetensors")
        elif cfg.init:
            model, _ = start_from(cfg.init, cfg.sources)
        else:
            options = dict(cfg.model_options)
            if cfg.sources:
                options["sources"] = tuple(cfg.sources)
            model = build(cfg.model, preset=cfg.preset, **options) if cfg.preset else build(cfg.model, **options)
        if not model.trainable:
            raise ConfigError(f"model {model.architecture!r} has no trainable weights")
        if cfg.freeze:
            freeze(model, cfg.freeze)
        return model.to(self.device).train()

    def _datasets(self, model: StemModel) -> None:
        cfg, dcfg = self.config, self.config.data
        rate, channels = model.sample_rate, model.channels
        chunk = int(round(dcfg.chunk * rate))
        padded = model.padded_length(chunk)
        if padded > 1.1 * chunk:  # the zeros are computed, and enter BatchNorm's statistics, but teach nothing
            logger.warning(f"chunk = {dcfg.chunk:g} s: the model pads each example with {1 - chunk / padded:.0%} zeros; "
                           f"chunk = {math.ceil(padded / rate * 1e4) / 1e4:.4f} s costs the same and trains on all of it")
        supervised = cfg.mode in ("supervised", "both")
        self.stems = model.sources if supervised else DEFAULT_STEMS
        valid_songs: list[train_data.Song] = []
        self.train_set = self.mixit_set = None
        if dcfg.train:
            songs = train_data.find_training_songs(dcfg.train, self.stems, dcfg.missing_stems if supervised else "silence")
            if dcfg.valid:
                valid_songs = train_data.find_training_songs(dcfg.valid, self.stems, "silence")
            else:
                songs, valid_songs = train_data.split_songs(songs, dcfg.valid_fraction, dcfg.split_seed)
            augment = AugmentConfig(gain_db=(-dcfg.gain_db, dcfg.gain_db), channel_swap_probability=0.5 * dcfg.channel_swap,
                                    polarity_flip_probability=dcfg.polarity_flip, max_shift_seconds=dcfg.time_shift,
                                    pitch_shift_probability=dcfg.pitch_shift, tempo_probability=dcfg.tempo, sample_rate=rate)
            if supervised:
                self.train_set = train_data.chunk_dataset(songs, self.stems, dcfg.chunk, rate, channels, cfg.seed,
                                                          dcfg.remix, augment)
            if cfg.mode in ("mixit", "both") and not dcfg.unsupervised:
                self.mixit_set = train_data.MixturePairDataset(songs, chunk, rate, channels, cfg.seed + 1)
        if dcfg.unsupervised:
            mixtures = train_data.find_mixture_songs(dcfg.unsupervised)
            self.mixit_set = train_data.MixturePairDataset(mixtures, chunk, rate, channels, cfg.seed + 1)
        self.valid = train_data.validation_stems(valid_songs, self.stems, dcfg.valid_seconds, rate, channels)
        self.valid_playing = playing(self.valid, self.stems)  # a stem silent in every dev song has no mean to add

    def _batches(self, start: int) -> Iterator[tuple[torch.Tensor | None, torch.Tensor | None]]:
        cfg = self.config
        bs, workers = cfg.data.batch_size, cfg.data.workers
        rank, world = self.group.rank, self.group.world_size
        sup = unsup = None
        if self.train_set:
            sup = iter(train_data.step_loader(self.train_set, bs, start, cfg.steps, workers, rank, world))
        if self.mixit_set:
            unsup = iter(train_data.step_loader(self.mixit_set, bs, start, cfg.steps, workers, rank, world))
        for _ in range(start, cfg.steps):
            yield (next(sup) if sup else None), (next(unsup) if unsup else None)

    # ----- one step ----------------------------------------------------------------------------------------
    def _loss(self, stems: torch.Tensor | None, pairs: torch.Tensor | None) -> torch.Tensor:
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp)
        total = torch.zeros((), device=self.device)
        if stems is not None:
            stems = stems.to(self.device, non_blocking=True)
            with autocast:
                estimate = self.net(stems.sum(1))
            total = total + self.loss_fn(estimate.float(), stems)
        if pairs is not None:
            pairs = pairs.to(self.device, non_blocking=True)
            mom, mixtures = mixture_of_mixtures(pairs[:, :1], pairs[:, 1:])
            with autocast:
                estimate = self.net(mom)
            weight = self.config.mixit_weight if stems is not None else 1.0
            total = total + weight * mixit_loss(estimate.float(), mixtures, self.config.snr_max)[0]
        return total

    # ----- saving ------------------------------------------------------------------------------------------
    def _shipped(self) -> StemModel:
        return self.ema.module if self.ema else self.model

    def _save(self, step: int) -> None:
        rng = self.group.gather(_rng_state())  # a collective: every rank saves at the same steps
        if not self.group.is_main:
            return
        meta = {"training": {"step": step, "run": str(self.out), "seed": self.config.seed}}
        save_checkpoint(self.model, self.out / "last.safetensors", **meta)
        state = {
            "step": step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
            "best": self.best, "rng": rng[0],
        }
        if self.group.distributed:
            state.update(world_size=self.group.world_size, rng_ranks=rng)
        save_state(state, self.out / STATE_FILE)

    def _restore(self) -> int:
        path = self.out / STATE_FILE
        state = load_state(path)
        try:
            step = state["step"]
            if type(step) is not int or step < 0:
                raise ValueError(f"bad step {step!r:.40}")
            if step > self.config.steps:
                raise StemforgeError(f"{self.out} is at step {step}, past the {self.config.steps} steps asked for; "
                                     f"give --steps above {step} to continue it")
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            if self.ema and state["ema"] is not None:
                self.ema.load_state_dict(state["ema"])
            best = state["best"]
            if best is not None and not (isinstance(best, dict) and isinstance(best.get("sdr_mean"), float)):
                raise ValueError("bad best score")
            self.best = best
            _set_rng_state(self._own_rng(state))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise StemforgeError(f"training state does not match this run: {path}: {reason}") from exc
        if self.group.is_main:
            self._truncate_logs(step)
        return step

    def _own_rng(self, state: dict[str, Any]) -> dict[str, Any]:
        """This rank's RNG state from a saved state; a different world size continues, but not bit for bit."""
        world = state.get("world_size", 1)
        if type(world) is not int or world < 1:
            raise ValueError(f"bad world_size {world!r:.40}")
        if world != self.group.world_size:
            if self.group.is_main:
                logger.warning(f"{self.out} was trained by {world} process(es) and resumes on "
                               f"{self.group.world_size}: it continues, but not bit for bit (each process draws "
                               "its own random numbers)")
            return state["rng"]
        return state["rng_ranks"][self.group.rank] if world > 1 else state["rng"]

    def _truncate_logs(self, step: int) -> None:
        """Drop log rows of steps after the checkpoint (they are redone identically) and any torn row that a
        run killed mid-write left behind."""
        path = self.out / "log.jsonl"
        if path.is_file():
            lines = path.read_text(errors="replace").splitlines()
            rows = [line for line, row_step in zip(lines, map(_log_step, lines)) if row_step is not None and row_step <= step]
            _replace_text(path, "".join(row + "\n" for row in rows))
        for name in ("log.csv", "valid.csv"):
            table = self.out / name
            if table.is_file():
                with table.open(newline="", errors="replace") as fh:
                    rows = list(csv.reader(fh))
                kept = rows[:1] + [r for r in rows[1:] if len(r) == len(rows[0]) and r[0].isdigit() and int(r[0]) <= step]
                buffer = io.StringIO()
                csv.writer(buffer).writerows(kept)
                _replace_text(table, buffer.getvalue())

    def _log(self, row: dict[str, Any]) -> None:
        if not self.group.is_main:
            return
        with (self.out / "log.jsonl").open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        flat = {k: v for k, v in row.items() if k != "kind" and not isinstance(v, dict)}
        if row["kind"] == "valid":
            flat.update({f"sdr_{k}": v for k, v in row["sdr"].items()})
        table = self.out / ("valid.csv" if row["kind"] == "valid" else "log.csv")
        new = not table.is_file()
        with table.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(flat))
            if new:
                writer.writeheader()
            writer.writerow(flat)

    def _validate(self, step: int) -> None:
        if not self.valid or not self.group.is_main:  # the other ranks wait in their next step's gradient sync
            return
        model = self._shipped()
        scores = validate(model, self.valid, self.stems, str(self.device))
        mean = overall(scores, self.valid_playing)
        self.last_scores = scores
        self._log({"kind": "valid", "step": step, "epoch": step // self.config.epoch_steps, "sdr_mean": mean, "sdr": scores})
        if self.best is None or mean > self.best["sdr_mean"]:
            self.best = {"step": step, "sdr_mean": mean, "sdr": scores}
            save_checkpoint(model, self.out / "best.safetensors", **self._ship_meta(step, scores))

    def _ship_meta(self, step: int, scores: dict[str, float] | None) -> dict[str, Any]:
        cfg = self.config
        meta: dict[str, Any] = {"training": {"step": step, "steps": cfg.steps, "seed": cfg.seed, "mode": cfg.mode,
                                             "loss": cfg.loss, "ema_decay": cfg.ema_decay, "data": cfg.data.train + cfg.data.unsupervised,
                                             "init": cfg.init or None}}
        if scores is not None:
            meta["metrics"] = {"valid_sdr": scores, "sdr": "energy-ratio SDR (dB), mean over validation tracks"}
        return meta

    # ----- the loop ----------------------------------------------------------------------------------------
    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        if os.getpid() != self._pid:  # a forked data-loader worker: the training process decides, and stops it
            return
        if self.stop_signal is not None:  # asked twice: stop at once, without saving
            raise KeyboardInterrupt
        self.stop_signal = signum
        logger.warning(f"{signal.Signals(signum).name} received: stopping after the current step and saving the run "
                       f"(send it again to stop at once, unsaved)")

    def _catch_stop_signals(self) -> dict[int, Any]:
        """Route SIGINT / SIGTERM to ``_on_stop_signal``; returns the handlers to put back (none off the main thread,
        where Python cannot set handlers)."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        self._pid = os.getpid()
        return {signum: signal.signal(signum, self._on_stop_signal) for signum in STOP_SIGNALS}

    def fit(self) -> dict[str, Any]:
        """Train to ``config.steps`` (or until ``time_limit`` minutes, or ``stop_step``).

        SIGINT or SIGTERM stops the run after the step in progress (a second one stops at once): the state is saved
        (atomically) at that step, so ``--resume`` continues exactly as if nothing had happened.

        Returns:
            ``{"step", "best", "out"}``: the last step, the best validation scores (or None), the run folder; after a
            stop signal also ``"interrupted"`` (the signal's name, e.g. ``"SIGINT"``) and ``"state"`` (the saved
            state's path), and no ``model.safetensors`` is written. Under ``ddp`` every rank returns the same
            summary but for ``"rank"`` (only rank 0's ``"best"`` is filled in).
        """
        try:
            summary = self._fit()
        except BaseException:
            self.group.close(clean=False)
            raise
        self.group.close()
        return {**summary, "rank": self.group.rank}

    def _fit(self) -> dict[str, Any]:
        from tqdm import tqdm

        cfg = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        if not self.resume:
            random.seed(cfg.seed)
            np.random.seed(cfg.seed)
            torch.manual_seed(cfg.seed)
        self.model = self._build_model()
        self._datasets(self.model)
        self.loss_fn = build_loss(cfg.loss)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ConfigError("every parameter is frozen; nothing to train")
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(params, lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, o.warmup_steps, cfg.steps, o.min_lr_ratio))
        self.ema = EMA(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.best: dict[str, Any] | None = None
        self.last_scores: dict[str, float] | None = None
        start = self._restore() if self.resume else 0
        if self.group.rank > 0 and not self.resume:  # each rank its own dropout (the weights come from rank 0)
            torch.manual_seed(int(np.random.SeedSequence([cfg.seed, self.group.rank]).generate_state(1)[0]))
        self.net = self.group.wrap(self.model, self.device)
        if self.group.is_main:
            _replace_text(self.out / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")

        bar = tqdm(total=cfg.steps, initial=start, desc="train", unit="step", dynamic_ncols=True,
                   disable=not (cfg.progress and self.group.is_main))
        tic = time.perf_counter()
        step = start
        if start == 0 and cfg.validate_first:
            self._validate(0)
        batches = self._batches(start)
        previous = self._catch_stop_signals()
        stopped = 0  # the signal that stops the run, once every rank knows of it
        try:
            while True:
                stopped = self.group.max([self.stop_signal or 0])[0]
                if stopped:
                    break
                try:
                    stems, pairs = next(batches)
                except StopIteration:
                    break
                except Exception:
                    if self.stop_signal is None:
                        raise
                    stopped = self.stop_signal
                    break  # a loader worker stopped by the same Ctrl-C: the step had not begun; drop it
                loss = self._loss(stems, pairs)
                loss_value = self.group.mean(loss.detach())  # the global batch's loss, the same on every rank
                if not math.isfinite(loss_value):
                    raise StemforgeError(f"loss became {loss_value} at step {step}; lower the learning rate")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(params, o.grad_clip if o.grad_clip > 0 else float("inf"))
                self.optimizer.step()
                self.schedule.step()
                if self.ema:
                    self.ema.update(self.model)
                step += 1
                self._log({"kind": "train", "step": step, "loss": loss_value, "lr": self.optimizer.param_groups[0]["lr"],
                           "grad_norm": float(grad_norm), "seconds": round(time.perf_counter() - tic, 3)})
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.4f}")
                if step % cfg.epoch_steps == 0 or step == cfg.steps:
                    self._validate(step)
                out_of_time = cfg.time_limit > 0 and time.perf_counter() - tic > 60.0 * cfg.time_limit
                if cfg.time_limit > 0:  # clocks differ: every rank stops when the first runs out
                    out_of_time = bool(self.group.max([int(out_of_time)])[0])
                out_of_time = out_of_time or step == cfg.stop_step
                if out_of_time and step % cfg.epoch_steps and step != cfg.steps:
                    self._validate(step)
                if step % cfg.checkpoint_every == 0 or step == cfg.steps or out_of_time:
                    self._save(step)
                if out_of_time:
                    break
            if not stopped:  # a signal during the step that ended the run (its last, or out of time)
                stopped = self.group.max([self.stop_signal or 0])[0]
            interrupted = bool(stopped) and step < cfg.steps
            if interrupted:
                self._save(step)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            bar.close()
        if interrupted:
            return {"step": step, "best": self.best, "out": str(self.out),
                    "interrupted": signal.Signals(stopped).name, "state": str(self.out / STATE_FILE)}
        if self.group.is_main:
            save_checkpoint(self._shipped(), self.out / "model.safetensors", **self._ship_meta(step, self.last_scores))
        return {"step": step, "best": self.best, "out": str(self.out)}


def train(config: TrainConfig, resume: bool = False, origins: dict[str, str] | None = None,
          ddp: bool = False) -> dict[str, Any]:
    """Run (or resume) training as configured; see ``Trainer`` and ``Trainer.fit``.

    Args:
        config: the run's config; on resume the config to continue with (see ``resume_config``).
        resume: continue the run in ``config.out`` from its saved state.
        origins: on resume, where each overridden setting came from (``{"steps": "--steps"}``), for the log lines.
        ddp: this process is one of several started by ``torchrun`` (``stemforge.train.distributed``).

    Returns:
        The summary of ``Trainer.fit``.
    """
    return Trainer(config, resume, origins, ddp).fit()


def resume_config(out: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The config to resume the run in ``out`` with: its own settings, changed only where ``overrides`` says.

    Per-invocation settings (``progress``, ``stop_step``, ``time_limit``) start from their defaults, not from the
    run: a run stopped by ``stop_step`` or a time limit then continues.

    Args:
        out: the run folder.
        overrides: ``merge``-style changes (``{"steps": 40}``); None values are skipped.

    Returns:
        The config (``out`` is the folder given).
    """
    defaults = TrainConfig()
    base = dataclasses.replace(stored_config(out), out=str(out), progress=defaults.progress,
                               stop_step=defaults.stop_step, time_limit=defaults.time_limit)
    return merge(base, overrides or {})
