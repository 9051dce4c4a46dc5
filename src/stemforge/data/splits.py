"""Fixed data splits: the evaluation songs every test and benchmark shares, and training seeds.

Evaluation songs use seeds from ``EVALUATION_SEED_BASE`` on, which also select held-out instrument
presets (see ``stemforge.data.synth.instruments.EVALUATION_PRESETS``); training seeds stay below it, so
the two never overlap. ``evaluation_songs`` renders the set once into a cache folder and reuses it.
The bundled default model was trained on seeds ``stemforge.data.synth.DEFAULT_MODEL_TRAINING_SEEDS``;
``data synth`` without ``--seed`` starts at ``DEFAULT_SYNTH_SEED``, clear of those and of the evaluation split.
"""

from __future__ import annotations

import json
from pathlib import Path

from stemforge.audio import OutputExistsError, staged_folder
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
    split version), so different settings never mix. The set is built hidden and published whole
    (``stemforge.audio.staged_folder``); two processes racing both finish, with the first one's copy kept.

    Args:
        root: the cache directory.
        count: number of songs.
        seconds: length of each song.
        sample_rate: in Hz.
        backend: synthesis backend ("auto" resolves to what is installed).

    Returns:
        The song folders, each holding ``mixture.wav`` and one 32-bit float wav (2, time) per stem.

    Raises:
        OutputExistsError: the cache folder exists but is incomplete (not made by us); remove it.
    """
    backend = resolve_backend(backend)
    name = f"eval-v{SPLIT_VERSION}-{backend}-{count}x{seconds:g}s-{sample_rate}"
    folder = Path(root) / name
    songs = [folder / f"song_{seed:010d}" for seed in evaluation_seeds(count)]
    if (folder / "complete.json").is_file():
        return songs
    try:
        with staged_folder(folder, noun="evaluation songs") as staging:
            for seed in evaluation_seeds(count):
                tracks, metadata = render_song_with_plan(seed, seconds, sample_rate, FOUR_STEMS, backend)
                write_song(staging / f"song_{seed:010d}", tracks, sample_rate, metadata, bits="32f")
            (staging / "complete.json").write_text(json.dumps({"seeds": evaluation_seeds(count), "seconds": seconds,
                                                               "sample_rate": sample_rate, "backend": backend}) + "\n")
    except OutputExistsError as exc:
        if not (folder / "complete.json").is_file():  # not another process that finished first (its copy is
            # identical) but a folder we did not make: leave it alone
            raise OutputExistsError(f"{folder}: exists but holds no complete evaluation set (no complete.json); "
                                    "remove it to render the set again") from exc
    return songs


def evaluation_dataset(root: Path | str, segment_seconds: float | None = None, count: int = EVALUATION_COUNT,
                       seconds: float = EVALUATION_SECONDS, sample_rate: int = 44100,
                       backend: str = "auto") -> StemFolderDataset:
    """The evaluation songs as a dataset (whole songs by default)."""
    songs = evaluation_songs(root, count, seconds, sample_rate, backend)
    return StemFolderDataset(songs, segment_seconds=segment_seconds, sample_rate=sample_rate)
