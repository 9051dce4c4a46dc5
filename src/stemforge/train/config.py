"""Typed training configuration, read from a JSON or TOML file and/or command-line flags.

A file has top-level keys for ``TrainConfig`` and the tables ``[data]`` and ``[optim]``; flags given on the command
line override the file. The resolved config is written to ``RUN/config.json`` so every run records its recipe.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from stemforge.errors import StemforgeError

MODES = ("supervised", "mixit", "both")


class ConfigError(StemforgeError):
    """A training config file or option is invalid."""


@dataclasses.dataclass
class DataConfig:
    """Where examples come from and how they are cut and augmented."""

    train: list[str] = dataclasses.field(default_factory=list)  # any layout `data check` reads, at any rate
    valid: list[str] = dataclasses.field(default_factory=list)  # held-out roots; empty: hold out valid_fraction
    valid_fraction: float = 0.1
    split_seed: int = 0  # which tracks are held out; separate from the run's seed so stages share one split
    valid_seconds: float = 30.0  # scored per validation track, from its start
    unsupervised: list[str] = dataclasses.field(default_factory=list)  # roots read as mixtures only (MixIT)
    chunk: float = 3.0  # seconds per training example ("segment" is the inference word; old configs' key is read)
    batch_size: int = 8
    workers: int = 0
    remix: float = 0.5  # probability that an example draws each stem from a different random track
    gain_db: float = 3.0  # per-stem random gain in [-gain_db, +gain_db]
    channel_swap: bool = True
    missing_stems: str = "error"  # "error" or "silence" (a track without a stem file gets a silent stem)
    polarity_flip: float = 0.5  # per-stem probability of inverting the polarity
    time_shift: float = 0.05  # per-stem random delay, uniform in [0, time_shift] seconds
    pitch_shift: float = 0.0  # per-chunk probability of a +-2 semitone pitch shift (opt-in: costs CPU time)
    tempo: float = 0.0  # per-chunk probability of a 0.88-1.12x tempo change (opt-in: costs CPU time)


@dataclasses.dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to ``min_lr_ratio * lr``; gradient-norm clipping."""

    lr: float = 1e-3
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.999
    warmup_steps: int = 100
    min_lr_ratio: float = 0.01
    grad_clip: float = 5.0  # 0 disables clipping


@dataclasses.dataclass
class TrainConfig:
    """One training run. ``init`` fine-tunes from a checkpoint; ``sources`` then may add new stems."""

    out: str = "runs/run"
    model: str = "unet"
    preset: str = "tiny"
    model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    sources: list[str] = dataclasses.field(default_factory=list)  # empty: the model's (or checkpoint's) own
    init: str = ""  # checkpoint to start from (ours or a user's)
    freeze: list[str] = dataclasses.field(default_factory=list)  # fnmatch patterns of parameter names to freeze
    steps: int = 1000
    epoch_steps: int = 250  # validation (and best-checkpoint selection) every this many steps
    checkpoint_every: int = 100
    seed: int = 0
    device: str = "cpu"
    amp: bool = False  # bf16 autocast (CUDA only)
    threads: int = 0  # torch CPU threads; 0 leaves torch's default
    ema_decay: float = 0.999  # 0 disables EMA
    loss: dict[str, float] = dataclasses.field(default_factory=lambda: {"l1": 1.0})
    mode: str = "supervised"  # "supervised", "mixit" (mixtures only) or "both"
    mixit_weight: float = 1.0  # weight of the MixIT loss in mode "both"
    snr_max: float = 30.0  # MixIT soft SNR cap (dB)
    stop_step: int = 0  # stop (checkpointed) after this step while keeping the schedule of ``steps``; 0: at ``steps``
    validate_first: bool = False  # also score the untrained model at step 0 (a baseline in the log)
    time_limit: float = 0.0  # minutes of training after which the run checkpoints and stops; 0: no limit
    progress: bool = True
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)

    def validate(self) -> None:
        """Raise ``ConfigError`` with a one-line message on inconsistent settings."""
        if self.mode not in MODES:
            raise ConfigError(f"unknown training mode {self.mode!r}; choices: {', '.join(MODES)}")
        if self.steps < 1 or self.epoch_steps < 1 or self.checkpoint_every < 1:
            raise ConfigError("steps, epoch_steps and checkpoint_every must be >= 1")
        if self.optim.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be >= 0, got {self.optim.warmup_steps}")
        if self.data.batch_size < 1 or self.data.chunk <= 0:
            raise ConfigError("batch_size must be >= 1 and chunk > 0 seconds")
        if self.mode in ("supervised", "both") and not self.data.train:
            raise ConfigError("no training data: give at least one --data DIR")
        if self.mode == "mixit" and not (self.data.unsupervised or self.data.train):
            raise ConfigError("MixIT needs mixtures: give --data DIR or --unsupervised DIR")
        if self.mode == "supervised" and self.data.unsupervised:  # the loop would quietly add MixIT batches
            raise ConfigError("unsupervised mixtures (--unsupervised) need --mode mixit or both, not supervised")
        if self.data.missing_stems not in ("error", "silence"):
            raise ConfigError("missing_stems must be 'error' or 'silence'")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError("ema_decay must be in [0, 1)")
        if self.amp and not self.device.startswith("cuda"):
            raise ConfigError("--amp (bf16 autocast) needs --device cuda")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build from nested dicts; unknown keys are an error naming the key."""
        data = dict(data)
        sections = {"data": DataConfig, "optim": OptimConfig}
        nested = {name: _build(kind, data.pop(name, {}) or {}, name) for name, kind in sections.items()}
        return _build(cls, {**data, **nested}, "")


#: Keys older configs (recipes, a run's config.json) used, read under their new name: ``[data] segment`` -> ``chunk``.
_OLD_KEYS = {"data": {"segment": "chunk"}}


def _build(kind: type, values: dict[str, Any], section: str) -> Any:
    names = {f.name for f in dataclasses.fields(kind)}
    for old, new in _OLD_KEYS.get(section, {}).items():
        if old in values:
            if new in values:
                raise ConfigError(f"[{section}] has both {old!r} and {new!r}; {old!r} is the old name of {new!r}")
            values = {(new if k == old else k): v for k, v in values.items()}
    for key in values:
        if key not in names:
            where = f"[{section}] " if section else ""
            raise ConfigError(f"unknown config key {where}{key!r}; known: {', '.join(sorted(names))}")
    return kind(**values)


def _read(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"cannot parse config {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} is not a table of settings")
    return data


def load_config(path: str | Path) -> TrainConfig:
    """Read a ``.json`` or ``.toml`` config file."""
    return TrainConfig.from_dict(_read(path))


def config_overrides(path: str | Path) -> dict[str, Any]:
    """The settings a config file names, and only those, as ``merge`` overrides.

    Args:
        path: a ``.json`` or ``.toml`` training config.

    Returns:
        ``{"steps": 5, "data.batch_size": 3, ...}``: the ``[data]`` and ``[optim]`` tables flattened to dotted keys;
        settings the file leaves out are absent (so ``merge`` onto a stored run keeps the run's own values).

    Raises:
        ConfigError: the file is missing, unparsable or names an unknown setting.
    """
    data = _read(path)
    TrainConfig.from_dict(data)  # unknown keys and bad tables are an error here, naming the key
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("data", "optim") and isinstance(value, dict):
            flat.update({f"{key}.{name}": v for name, v in value.items()})
        else:
            flat[key] = value
    return flat


def flatten(config: TrainConfig) -> dict[str, Any]:
    """Every setting of ``config`` under its ``merge`` key (``"steps"``, ``"data.batch_size"``, ...).

    Args:
        config: a training config.

    Returns:
        One entry per setting, the ``[data]`` and ``[optim]`` ones under dotted keys.
    """
    flat = config.to_dict()
    for section in ("data", "optim"):
        flat.update({f"{section}.{name}": value for name, value in flat.pop(section).items()})
    return flat


def merge(config: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """Apply ``{"steps": 10, "data.batch_size": 4}``-style overrides (None values are skipped)."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {"data": {}, "optim": {}}
    for key, value in overrides.items():
        if value is None:
            continue
        section, _, name = key.rpartition(".")
        (nested[section] if section else top)[name] = value
    merged = config.to_dict()
    merged.update(top)
    for section, values in nested.items():
        merged[section].update(values)
    return TrainConfig.from_dict(merged)
