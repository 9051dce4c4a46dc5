"""Open-Unmix: our implementation loads published-format per-target .pth files and matches the reference."""

from __future__ import annotations

import pytest
import torch

from parity_helpers import assert_parity, randomize_, random_audio, require
from stemforge.errors import ModelError
from stemforge.models.compat import load_pretrained
from stemforge.models.compat.openunmix import OpenUnmix


def _reference_umxhq(tmp_path, hidden_size: int = 512):
    require("openunmix")
    from openunmix import utils
    from openunmix.model import OpenUnmix as RefUnmix, Separator

    max_bin = int(utils.bandwidth_to_max_bin(rate=44100.0, n_fft=4096, bandwidth=16000))
    targets = {}
    for seed, name in enumerate(["vocals", "drums", "bass", "other"]):
        net = RefUnmix(nb_bins=2049, nb_channels=2, hidden_size=hidden_size, max_bin=max_bin)
        randomize_(net, seed=seed)
        net.eval()
        torch.save(net.state_dict(), tmp_path / f"{name}-{seed:08x}.pth")
        targets[name] = net
    separator = Separator(targets, niter=1, n_fft=4096, n_hop=1024, nb_channels=2, wiener_win_len=300).eval()
    return separator


def test_umxhq_parity_on_10s(tmp_path) -> None:
    torch.manual_seed(0)
    reference = _reference_umxhq(tmp_path)
    model = load_pretrained(tmp_path)
    assert isinstance(model, OpenUnmix)
    assert model.sources == ["vocals", "drums", "bass", "other"]
    assert model.config.max_bin == 1487 and model.config.hidden_size == 512
    audio = random_audio(10.0)
    with torch.no_grad():
        expected = reference(audio)
        ours = model(audio)
    assert ours.shape == expected.shape == (1, 4, 2, audio.shape[-1])
    assert_parity(ours, expected)


def test_single_target_file_and_short_input(tmp_path) -> None:
    reference = _reference_umxhq(tmp_path, hidden_size=32)
    model = load_pretrained(next(tmp_path.glob("vocals-*.pth")), niter=0)
    assert model.sources == ["vocals"]
    for length in (1, 100, 5000):
        out = model(torch.randn(2, 2, length))
        assert out.shape == (2, 1, 2, length)
        assert torch.isfinite(out).all()
    del reference


def test_not_an_openunmix_file(tmp_path) -> None:
    bad = tmp_path / "vocals.pth"
    torch.save({"something": torch.zeros(3)}, bad)
    with pytest.raises(ModelError, match="not an Open-Unmix"):
        load_pretrained(bad)
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(ModelError, match="cannot read"):
        load_pretrained(tmp_path / "junk.pth")
