"""Synthetic multitrack songs: procedural composition rendered to drums/bass/other/vocals stems."""

from stemforge.data.synth.render import (
    EVALUATION_SEED_BASE,
    FOUR_STEMS,
    SIX_STEMS,
    is_evaluation_seed,
    render_song,
    render_song_with_plan,
    write_song,
)

__all__ = [
    "EVALUATION_SEED_BASE", "FOUR_STEMS", "SIX_STEMS", "is_evaluation_seed", "render_song",
    "render_song_with_plan", "write_song",
]
