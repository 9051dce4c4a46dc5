import pytest
import torch

from stemforge.checkpoint import save_checkpoint
from stemforge.errors import ModelError
from stemforge.train import train
from stemforge.train.config import TrainConfig
from stemforge.train.finetune import freeze, start_from, with_sources
from stemforge.train.state import load_state
from train_helpers import TinyMaskConfig, TinyMaskNet, make_dataset

BINS = 65  # n_fft 128


def _model() -> TinyMaskNet:
    torch.manual_seed(0)
    return TinyMaskNet(TinyMaskConfig(sample_rate=8000))


def test_added_stems_keep_old_stems_weights(tmp_path):
    old = _model()
    save_checkpoint(old, tmp_path / "four.safetensors")
    new, _ = start_from(tmp_path / "four.safetensors", ["vocals", "guitar", "drums", "bass", "piano", "other"])
    assert new.sources == ["vocals", "guitar", "drums", "bass", "piano", "other"]
    assert torch.equal(new.encoder[0].weight, old.encoder[0].weight)  # shared trunk copied
    for stem in old.sources:
        i, j = old.sources.index(stem), new.sources.index(stem)
        assert torch.equal(new.head.weight[j * BINS:(j + 1) * BINS], old.head.weight[i * BINS:(i + 1) * BINS])
        assert torch.equal(new.head.bias[j * BINS:(j + 1) * BINS], old.head.bias[i * BINS:(i + 1) * BINS])
    # Same weights, same old-stem outputs (the masks are per-stem sigmoids).
    old.eval(), new.eval()
    mix = torch.randn(1, 2, 2000)
    with torch.no_grad():
        a, b = old(mix), new(mix)
    for stem in old.sources:
        assert torch.allclose(a[:, old.sources.index(stem)], b[:, new.sources.index(stem)], atol=1e-6)


def test_fine_tune_run_with_new_stems_on_a_stem_folder(tmp_path):
    base = _model()
    save_checkpoint(base, tmp_path / "four.safetensors")
    data = make_dataset(tmp_path / "songs", songs=3, stems=("drums", "bass", "other", "vocals", "guitar"))
    sources = ["drums", "bass", "other", "vocals", "guitar"]
    cfg = TrainConfig.from_dict({
        "out": str(tmp_path / "ft"), "init": str(tmp_path / "four.safetensors"), "sources": sources, "steps": 3,
        "epoch_steps": 3, "checkpoint_every": 3, "progress": False, "freeze": ["encoder.*"],
        "data": {"train": [str(data)], "chunk": 0.25, "batch_size": 2},
    })
    train(cfg)
    state = load_state(tmp_path / "ft" / "state.safetensors")["model"]
    assert torch.equal(state["encoder.0.weight"], base.state_dict()["encoder.0.weight"])  # frozen
    assert state["head.weight"].shape[0] == len(sources) * BINS


def test_freeze_pattern_that_matches_nothing_is_an_error():
    with pytest.raises(ModelError, match="matches no parameter"):
        freeze(_model(), ["decoder.*"])
    assert freeze(_model(), ["encoder.*"]) == 2


def test_duplicate_stems_refused():
    with pytest.raises(ModelError, match="duplicate"):
        with_sources(_model(), ["drums", "drums"])


def test_checkpoint_of_model_with_zero_dim_buffers_round_trips(tmp_path):
    from safetensors.torch import load_file

    model = _model()
    model.register_buffer("counter", torch.tensor(7, dtype=torch.long))  # like BatchNorm's num_batches_tracked
    save_checkpoint(model, tmp_path / "m.safetensors")
    state = load_file(str(tmp_path / "m.safetensors"))
    assert state["counter"].item() == 7
