"""A tiny ONNX graph whose one initializer may live in an external-data file (MDX-Net and hostile-file tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def external_data_graph(folder: Path, location: str | None) -> Path:
    """Write ``folder/graph.onnx``: ``Y = X + B`` on (1, 4, 8, 8), ``B`` all ones.

    Args:
        folder: where the graph goes (created).
        location: ``B``'s external-data location, relative to ``folder`` as ONNX reads it; None keeps ``B`` inline.

    Returns:
        The graph's path.
    """
    from onnx import TensorProto, helper, numpy_helper

    shape = [1, 4, 8, 8]
    init = numpy_helper.from_array(np.ones(shape, np.float32), "B")
    if location is not None:
        init.ClearField("raw_data")
        init.data_location = TensorProto.EXTERNAL
        entry = init.external_data.add()
        entry.key, entry.value = "location", location
    graph = helper.make_graph([helper.make_node("Add", ["X", "B"], ["Y"])], "g",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, shape)], [init])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(exist_ok=True)
    path = folder / "graph.onnx"
    path.write_bytes(model.SerializeToString())
    return path
