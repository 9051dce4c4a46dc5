"""Synthetic multitrack songs: procedural composition rendered to drums/bass/other/vocals stems."""

from stemforge.data.synth.render import (
    DEFAULT_MODEL_TRAINING_SEEDS,
    DEFAULT_SYNTH_SEED,
    EVALUATION_SEED_BASE,
    default_model_training_overlap,
    is_evaluation_seed,
    render_song,
    render_song_with_plan,
    write_song,
)
from stemforge.stems import FOUR_STEMS, SIX_STEMS  # re-exported: the one vocabulary lives in stemforge.stems

__all__ = [
    "DEFAULT_MODEL_TRAINING_SEEDS", "DEFAULT_SYNTH_SEED", "EVALUATION_SEED_BASE", "FOUR_STEMS", "SIX_STEMS",
    "default_model_training_overlap", "is_evaluation_seed", "render_song", "render_song_with_plan", "write_song",
]
