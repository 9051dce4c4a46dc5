import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
# The parity reference packages (demucs, openunmix, BS-RoFormer) live in .parity/ (README test command, pip --target),
# outside the venv, so their console scripts never land broken on the user's PATH; appended, so the venv wins.
sys.path.append(str(Path(__file__).resolve().parent.parent / ".parity"))


@pytest.fixture(autouse=True)
def _same_numbers_on_any_machine():
    """Every test starts seeded (torch, numpy, random) on one torch CPU thread, and leaves torch as it found it.

    The thread count changes float round-off (reductions split differently), so a numeric verdict must not depend
    on the machine's core count or on a ``threads`` setting leaked by an earlier test (``Separator(threads=...)``
    and ``TrainConfig.threads`` call ``torch.set_num_threads``). One thread is also the fast choice on loaded
    cores: two OpenMP threads competing with other work spin-wait and ran the model tests 10-100x slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test reaches the network: ``separate`` without ``-n`` runs the bundled model, as on an offline machine
    (``tests/test_hub_default.py`` lifts this to test the choice itself)."""
    monkeypatch.setenv("STEMFORGE_OFFLINE", "1")


@pytest.fixture
def deterministic_torch():
    """``torch.use_deterministic_algorithms(True)`` for the test, restored afterwards (training-outcome tests)."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(before)


@pytest.fixture
def song_file(tmp_path: Path) -> Path:
    """A 4 s stereo 44.1 kHz toy song as 16-bit wav."""
    from stemforge.audio import save
    from toy_song import toy_mix

    path = tmp_path / "song.wav"
    save(path, toy_mix(4.0), 44100, bits=16)
    return path
