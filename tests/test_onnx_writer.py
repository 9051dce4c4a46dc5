"""``stemforge.onnx_writer`` writes the bytes ``onnx.helper`` writes, and the torch-free runtime never imports onnx."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stemforge import onnx_writer
from stemforge.lite_graph import IR_VERSION, OPSET, PRODUCER, build_graph, build_refiner_graph, read_unet

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

DEFAULT = str(Path(__file__).resolve().parents[1] / "src" / "stemforge" / "assets" / "default.safetensors")


@pytest.mark.parametrize("attributes", [{}, {"alpha": 0.2}, {"axis": 1}, {"axis": -3},
                                        {"pads": [2, 2, 2, 2], "kernel_shape": [5, 5], "alpha": 1e-7},
                                        {"dilations": [1, 300], "strides": [2 ** 40, 0]}])
def test_a_node_is_helpers(attributes: dict) -> None:
    ours = onnx_writer.node("Conv", ["x", "w", "b"], ["y"], "conv.0", **attributes)
    theirs = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv.0", **attributes)
    assert ours == theirs.SerializeToString()


@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3, 5, 5), (1, 200, 1, 1)])
def test_a_tensor_is_numpy_helpers(shape: tuple[int, ...]) -> None:
    array = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    assert onnx_writer.tensor("w", array) == numpy_helper.from_array(array, "w").SerializeToString()


def test_other_attribute_values_are_refused() -> None:
    with pytest.raises(TypeError, match="attribute mode: a float, an int or a list of ints"):
        onnx_writer.node("Pad", ["x"], ["y"], "pad", mode="reflect")


def test_value_info_and_model_are_helpers() -> None:
    shape = ["batch", 2, 512, "frames"]
    info = onnx_writer.value_info("x", shape)
    assert info == helper.make_tensor_value_info("x", TensorProto.FLOAT, shape).SerializeToString()
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="y")]
    weights = [numpy_helper.from_array(np.ones((2, 2), np.float32), "c")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)], outputs,
                              weights)
    theirs = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER)
    theirs.ir_version = IR_VERSION
    ours = onnx_writer.model([onnx_writer.node("Relu", ["x"], ["y"], "y")], "g", [info],
                             [onnx_writer.value_info("y", shape)], [onnx_writer.tensor("c", np.ones((2, 2)))], OPSET,
                             IR_VERSION, PRODUCER)
    assert ours == theirs.SerializeToString()


def test_the_bundled_models_graphs_are_valid_and_canonical() -> None:
    spec, state = read_unet(DEFAULT)
    for graph in (build_graph(spec, state), build_refiner_graph(spec, state)):
        proto = onnx.load_from_string(graph)
        onnx.checker.check_model(proto, full_check=True)  # operators, attributes, shapes
        assert proto.SerializeToString() == graph  # onnx writes these very bytes for what it read


def test_the_torch_free_runtime_imports_neither_onnx_nor_torch() -> None:
    code = ("import sys, numpy as np; from stemforge.lite import LiteUNet; m = LiteUNet(sys.argv[1], threads=1); "
            "m(np.zeros((1, 2, 44100), np.float32)); print(sorted({'onnx', 'torch', 'ml_dtypes'} & set(sys.modules)))")
    run = subprocess.run([sys.executable, "-c", code, DEFAULT], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
