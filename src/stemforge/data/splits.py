"""Fixed data splits: the evaluation songs every test and benchmark shares, and training seeds.

Evaluation songs use seeds from ``EVALUATION_SEED_BASE`` on, which also select held-out instrument
presets (see ``stemforge.data.synth.instruments.EVALUATION_PRESETS``); training seeds stay below it, so
the two never overlap. ``evaluation_songs`` renders the set once into a cache folder and reuses it.
The bundled default model was trained on seeds ``stemforge.data.synth.DEFAULT_MODEL_TRAINING_SEEDS``;
``data synth`` without ``--seed`` starts at ``DEFAULT_SYNTH_SEED``, clear of those and of the evaluation split.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from stemforge.data.datasets import StemFolderDataset
from stemforge.data.synth import EVALUATION_SEED_BASE, FOUR_STEMS, render_song_with_plan, write_song
from stemforge.data.synth.render import resolve_backend
from stemforge.errors import StemforgeError

#: The standard evaluation set: 8 songs of 30 s.
EVALUATION_COUNT = 8
EVALUATION_SECONDS = 30.0
SPLIT_VERSION = 1


def evaluation_seeds(count: int = EVALUATION_COUNT) -> list[int]:
    return [EVALUATION_SEED_BASE + i for i in range(count)]


def training_seeds(count: int, start: int = 0) -> list[int]:
    """``count`` training seeds from ``start``; an error if they would reach the evaluation seeds."""
    if start < 0 or count < 0 or start + count > EVALUATION_SEED_BASE:
        raise StemforgeError(f"training seeds must lie in [0, {EVALUATION_SEED_BASE}); got start={start} count={count}")
    return list(range(start, start + count))


def evaluation_songs(root: Path | str, count: int = EVALUATION_COUNT, seconds: float = EVALUATION_SECONDS,
                     sample_rate: int = 44100, backend: str = "auto") -> list[Path]:
    """Folders of the evaluation songs (MUSDB layout), rendered into ``root`` on first use, then reused.

    The cache folder name records everything that changes the audio (count, length, rate, backend,
    split version), so different settings never mix.
    """
    backend = resolve_backend(backend)
    name = f"eval-v{SPLIT_VERSION}-{backend}-{count}x{seconds:g}s-{sample_rate}"
    folder = Path(root) / name
    songs = [folder / f"song_{seed:010d}" for seed in evaluation_seeds(count)]
    if (folder / "complete.json").is_file():
        return songs
    Path(root).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        for seed in evaluation_seeds(count):
            tracks, metadata = render_song_with_plan(seed, seconds, sample_rate, FOUR_STEMS, backend)
            write_song(staging / f"song_{seed:010d}", tracks, sample_rate, metadata, bits="32f")
        (staging / "complete.json").write_text(json.dumps({"seeds": evaluation_seeds(count), "seconds": seconds,
                                                           "sample_rate": sample_rate, "backend": backend}) + "\n")
        try:
            os.replace(staging, folder)
        except OSError:  # another process finished first; its copy is identical
            if not (folder / "complete.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return songs


def evaluation_dataset(root: Path | str, segment_seconds: float | None = None, count: int = EVALUATION_COUNT,
                       seconds: float = EVALUATION_SECONDS, sample_rate: int = 44100,
                       backend: str = "auto") -> StemFolderDataset:
    """The evaluation songs as a dataset (whole songs by default)."""
    songs = evaluation_songs(root, count, seconds, sample_rate, backend)
    return StemFolderDataset(songs, segment_seconds=segment_seconds, sample_rate=sample_rate)
