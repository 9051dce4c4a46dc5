"""Training: supervised, unsupervised (MixIT) and fine-tuning of stemforge models."""

from stemforge.train.config import DataConfig, OptimConfig, TrainConfig, load_config
from stemforge.train.loop import Trainer, train

__all__ = ["DataConfig", "OptimConfig", "TrainConfig", "Trainer", "load_config", "train"]
