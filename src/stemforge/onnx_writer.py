"""The few ONNX messages ``lite_graph`` builds, written straight into protobuf's wire format.

Written by hand, on purpose: the torch-free runtime used ``onnx.helper`` only to serialise two small graphs (seven
operator types), and importing the ``onnx`` package took 1.05 s of a 1.8 s ``stemforge separate`` of a one-second
file (ml_dtypes 0.7's extension, which onnx imports, alone 0.98 s), while the first separated audio is meant to come
within 1 s (issue #18). onnxruntime reads the bytes; ``tests/test_onnx_writer.py`` checks them byte for byte against
``onnx.helper``'s for every message kind, and both graphs of the bundled model against onnx's checker and its own
serialisation of what it read (they were also byte for byte what ``onnx.helper`` wrote before). Field numbers are onnx.proto's (proto2: repeated
integers unpacked, as onnx writes them). Nothing here imports onnx or torch.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import numpy as np

FLOAT = 1  # TensorProto.DataType.FLOAT
_ATTRIBUTE_FLOAT, _ATTRIBUTE_INT, _ATTRIBUTE_INTS = 1, 2, 7  # AttributeProto.AttributeType
_VARINT, _FIXED32, _LENGTH = 0, 5, 2  # wire types


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # a negative int64 is ten bytes of two's complement, as protobuf writes it
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3 | _VARINT) + _varint(value)


def _message(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | _LENGTH) + _varint(len(data)) + data


def _text(field: int, text: str) -> bytes:
    return _message(field, text.encode())


def _attribute(name: str, value: float | int | Sequence[int]) -> bytes:
    """AttributeProto: name 1, f 2, i 3, ints 8, type 20."""
    if isinstance(value, float):
        body = _varint(2 << 3 | _FIXED32) + struct.pack("<f", value)
        kind = _ATTRIBUTE_FLOAT
    elif isinstance(value, int):
        body, kind = _int(3, value), _ATTRIBUTE_INT
    elif isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
        body, kind = b"".join(_int(8, v) for v in value), _ATTRIBUTE_INTS
    else:
        raise TypeError(f"attribute {name}: a float, an int or a list of ints, not {value!r}")
    return _text(1, name) + body + _int(20, kind)


def node(op: str, inputs: Sequence[str], outputs: Sequence[str], name: str,
         **attributes: float | int | Sequence[int]) -> bytes:
    """NodeProto (input 1, output 2, name 3, op_type 4, attribute 5), attributes in name order as onnx.helper.

    Args:
        op: the operator (``Conv``, ``Relu``...), default domain.
        inputs, outputs: value names.
        name: the node's name.
        **attributes: floats, ints or lists of ints.

    Returns:
        The serialised message.
    """
    return (b"".join(_text(1, i) for i in inputs) + b"".join(_text(2, o) for o in outputs) + _text(3, name)
            + _text(4, op) + b"".join(_message(5, _attribute(k, attributes[k])) for k in sorted(attributes)))


def tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto (dims 1, data_type 2, name 8, raw_data 9) of a float32 array, as ``numpy_helper.from_array``.

    Args:
        name: the initializer's name.
        array: any shape; stored as little-endian float32.

    Returns:
        The serialised message.
    """
    data = np.asarray(array, dtype="<f4")  # not ascontiguousarray: it makes a 0-d array 1-d; tobytes() is C order
    return (b"".join(_int(1, d) for d in data.shape) + _int(2, FLOAT) + _text(8, name)
            + _message(9, data.tobytes()))


def value_info(name: str, shape: Sequence[int | str]) -> bytes:
    """ValueInfoProto of a float32 tensor: an int is a fixed dimension (dim_value), a string a named one (dim_param).

    Args:
        name: the graph input's or output's name.
        shape: its dimensions.

    Returns:
        The serialised message.
    """
    dims = b"".join(_message(1, _int(1, d) if isinstance(d, int) else _text(2, d)) for d in shape)
    tensor_type = _int(1, FLOAT) + _message(2, dims)  # TypeProto.Tensor: elem_type 1, shape 2
    return _text(1, name) + _message(2, _message(1, tensor_type))


def model(nodes: Iterable[bytes], name: str, inputs: Iterable[bytes], outputs: Iterable[bytes],
          initializers: Iterable[bytes], opset: int, ir_version: int, producer: str) -> bytes:
    """ModelProto (ir_version 1, producer_name 2, graph 7, opset_import 8) around one GraphProto (node 1, name 2,
    initializer 5, input 11, output 12), default domain only.

    Args:
        nodes, inputs, outputs, initializers: messages from ``node``, ``value_info`` and ``tensor``.
        name: the graph's name.
        opset: the default domain's operator set version.
        ir_version: the ONNX IR version.
        producer: the producer name.

    Returns:
        The serialised model, for ``onnxruntime.InferenceSession``.
    """
    graph = (b"".join(_message(1, n) for n in nodes) + _text(2, name)
             + b"".join(_message(5, t) for t in initializers)
             + b"".join(_message(11, i) for i in inputs) + b"".join(_message(12, o) for o in outputs))
    opset_id = _text(1, "") + _int(2, opset)  # OperatorSetIdProto: domain 1, version 2
    return _int(1, ir_version) + _text(2, producer) + _message(7, graph) + _message(8, opset_id)
