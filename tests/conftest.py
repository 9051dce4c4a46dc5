import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def song_file(tmp_path: Path) -> Path:
    """A 4 s stereo 44.1 kHz toy song as 16-bit wav."""
    from stemforge.audio import save
    from toy_song import toy_mix

    path = tmp_path / "song.wav"
    save(path, toy_mix(4.0), 44100, bits=16)
    return path
