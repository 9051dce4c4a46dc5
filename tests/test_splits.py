"""The fixed evaluation split: cached, deterministic, disjoint from training seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stemforge.errors import StemforgeError


def test_evaluation_split_is_cached_deterministic_and_disjoint_from_training(tmp_path: Path) -> None:
    from stemforge.data.splits import evaluation_dataset, evaluation_seeds, evaluation_songs, training_seeds
    from stemforge.data.synth import EVALUATION_SEED_BASE

    first = evaluation_songs(tmp_path / "a", count=2, seconds=1.5, backend="numpy")
    again = evaluation_songs(tmp_path / "a", count=2, seconds=1.5, backend="numpy")
    other = evaluation_songs(tmp_path / "b", count=2, seconds=1.5, backend="numpy")
    assert first == again and len(first) == 2
    for a, b in zip(first, other):
        assert (a / "mixture.wav").read_bytes() == (b / "mixture.wav").read_bytes()
        assert json.loads((a / "song.json").read_text())["split"] == "evaluation"
    ds = evaluation_dataset(tmp_path / "a", count=2, seconds=1.5, backend="numpy")
    assert len(ds) == 2 and ds[0].shape == (4, 2, int(1.5 * 44100))
    assert not set(evaluation_seeds()) & set(training_seeds(1000))
    assert min(evaluation_seeds()) == EVALUATION_SEED_BASE
    with pytest.raises(StemforgeError):
        training_seeds(10, start=EVALUATION_SEED_BASE - 5)


def test_a_cache_folder_we_did_not_make_is_left_alone_with_one_line(tmp_path: Path) -> None:
    """An incomplete folder under the cache's name (no complete.json) is refused by name, not crashed into."""
    from stemforge.data.splits import evaluation_songs

    songs = evaluation_songs(tmp_path, count=1, seconds=0.2, backend="numpy")
    folder = songs[0].parent
    (folder / "complete.json").unlink()
    with pytest.raises(StemforgeError, match=rf"{folder.name}: exists but holds no complete evaluation set .*remove"):
        evaluation_songs(tmp_path, count=1, seconds=0.2, backend="numpy")
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no staging folder left behind
    assert [p.name for p in folder.iterdir()] == [songs[0].name]
