"""``stemforge.lite_graph``: a U-Net checkpoint read without torch (verified as the torch path verifies it) and
built into a valid ONNX graph; anything else is left to torch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lite_helpers import randomized_unet
from stemforge import lite, lite_graph
from stemforge.checkpoint import save_checkpoint, weights_sha256
from stemforge.hub import bundled_checkpoint
from stemforge.models import build


def test_the_runtime_keeps_its_public_names() -> None:
    """``stemforge.lite`` stays the one import path: the reader's names there are the reader's own objects."""
    for name in ("FORMAT", "HEADER_KEY", "ARCHITECTURE", "CONFIG_FIELDS", "BN_EPS", "UNetSpec", "Unsupported",
                 "read_unet", "build_graph", "weights_sha256"):
        assert getattr(lite, name) is getattr(lite_graph, name), name


def test_weights_hash_is_the_checkpoints(tmp_path: Path) -> None:
    """Hashed as ``checkpoint.weights_sha256`` hashes torch tensors, 0-d BatchNorm counters included."""
    model, path = randomized_unet(tmp_path)
    from safetensors.numpy import load_file

    state = load_file(str(path))
    assert state["down.0.norm.num_batches_tracked"].shape == ()
    assert lite_graph.weights_sha256(state) == weights_sha256(model.state_dict())
    bundled = bundled_checkpoint()
    assert lite_graph.weights_sha256(load_file(str(bundled))) == json.loads(
        __import__("safetensors").safe_open(str(bundled), "np").metadata()["stemforge"])["weights_sha256"]


def test_other_checkpoints_are_left_to_torch(tmp_path: Path) -> None:
    """Anything short of a well-formed, untampered U-Net checkpoint raises Unsupported (the torch path takes it)."""
    _, path = randomized_unet(tmp_path)
    lite_graph.read_unet(path)  # the untouched file is accepted
    bilstm = build("bilstm", preset="tiny").eval()
    save_checkpoint(bilstm, tmp_path / "bilstm.safetensors")
    tampered = tmp_path / "tampered.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x40  # a weight byte: the hash no longer matches
    tampered.write_bytes(bytes(data))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    _, odd_hop = randomized_unet(tmp_path, name="odd.safetensors", hop=96)  # hop does not divide n_fft
    for bad, reason in [(tmp_path / "bilstm.safetensors", "not a stemforge unet"), (tampered, "sha256"),
                        (garbage, "not readable"), (tmp_path / "missing.safetensors", "not readable"),
                        (odd_hop, "settings")]:
        with pytest.raises(lite_graph.Unsupported, match=reason):
            lite_graph.read_unet(bad)


def assert_refused_on_both_paths(path: Path, out: Path, change: dict, runtime_says: str, loader_says: str) -> None:
    """A copy of ``path`` whose header's config has ``change``: the numpy runtime leaves it to torch, whose loader
    refuses it in one line."""
    import json

    from safetensors.numpy import load_file, save_file

    from stemforge.checkpoint import load_checkpoint, read_metadata
    from stemforge.errors import ModelError

    meta = read_metadata(path)
    meta["config"].update(change)
    save_file(load_file(str(path)), str(out), metadata={lite_graph.HEADER_KEY: json.dumps(meta)})
    with pytest.raises(lite_graph.Unsupported, match=runtime_says):
        lite_graph.read_unet(out)
    with pytest.raises(ModelError, match=loader_says) as caught:
        load_checkpoint(out)
    assert "\n" not in str(caught.value)


def test_hostile_remask_settings_are_refused_on_both_paths(tmp_path: Path) -> None:
    """A header asking for a 2**40-point re-mask STFT (a window allocated per segment) is refused before any
    allocation: the numpy runtime leaves the file to torch, whose loader says what is wrong in one line."""
    _, path = randomized_unet(tmp_path)
    for fft, hop in [(2**40, 2**38), (2048, 2048), (2048, 0), (2048, 600), (2048.0, 512), ("2048", 512)]:
        assert_refused_on_both_paths(path, tmp_path / f"remask{fft}_{hop}.safetensors",
                                     dict(remask_fft=fft, remask_hop=hop), "re-mask", "remask_fft")


def test_hostile_refiner_settings_are_refused_on_both_paths(tmp_path: Path) -> None:
    """A header asking for a refiner of 10**9 layers or channels (built before any weight is read), one wider than
    its STFT, one without a re-mask, or settings of the wrong type: refused on both paths, in one line."""
    _, path = randomized_unet(tmp_path, remask_fft=2048, remask_hop=512, refine_bins=40, refine_width=6,
                              refine_layers=3)
    assert lite_graph.read_unet(path)[0].refine_bins == 40
    for i, change in enumerate([dict(refine_layers=10**9), dict(refine_width=10**9), dict(refine_bins=1026),
                                dict(remask_fft=0, remask_hop=0), dict(refine_bins="40"), dict(refine_width=6.0)]):
        assert_refused_on_both_paths(path, tmp_path / f"refine{i}.safetensors", change, "refiner settings",
                                     "refine_bins")


def test_graph_is_valid_onnx(tmp_path: Path) -> None:
    """The in-memory graph passes onnx's checker and folds the encoder's BatchNorm (no BatchNormalization node)."""
    onnx = pytest.importorskip("onnx")
    _, path = randomized_unet(tmp_path)
    graph = onnx.load_from_string(lite_graph.build_graph(*lite_graph.read_unet(path)))
    onnx.checker.check_model(graph, full_check=True)
    ops = [node.op_type for node in graph.graph.node]
    assert "BatchNormalization" not in ops and ops.count("Conv") == 3 + 1 and ops.count("ConvTranspose") == 3


def test_refiner_graph_is_valid_onnx(tmp_path: Path) -> None:
    """The refiner's graph passes onnx's checker: one Conv per layer, ReLU between them, dilations 1, 2, 4 ..."""
    onnx = pytest.importorskip("onnx")
    _, path = randomized_unet(tmp_path, remask_fft=2048, remask_hop=512, refine_bins=40, refine_width=6,
                              refine_layers=4)
    graph = onnx.load_from_string(lite_graph.build_refiner_graph(*lite_graph.read_unet(path)))
    onnx.checker.check_model(graph, full_check=True)
    convs = [node for node in graph.graph.node if node.op_type == "Conv"]
    assert len(convs) == 4 and sum(node.op_type == "Relu" for node in graph.graph.node) == 3
    dilations = [next(a.ints for a in node.attribute if a.name == "dilations") for node in convs]
    assert [list(d) for d in dilations] == [[1, 1], [1, 2], [1, 4], [1, 1]]
