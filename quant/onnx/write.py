"""ONNX writer: an IR model as a standard opset-13 graph (the bundled model, tests, tools).

Each layer becomes one node named after the layer, reading the tensors the layer reads (the
graph is the IR's DAG), whose output tensor has the layer's name; parameters are initializers
named ``<layer>.<param>``. A standalone ``Affine`` is written as a BatchNormalization with
mean 0, variance 1 and epsilon 0, a ``Clip`` as Clip with its finite bounds as ``min`` /
``max`` inputs, so that reading the file back gives the same IR (a Clip(0, +inf) reads back
as the ReLU it is). The batch dimension is symbolic (``N``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dynfix.fileio import atomic_write_bytes
from ..ir import Layer, Model

WRITE_OPSET = 13


def _layer_nodes(layer: Layer, init: list[TensorProto]) -> list[onnx.NodeProto]:
    """The layer's own nodes (:meth:`~dynfix.quant.layers.Layer.onnx_nodes`), its arrays
    added to ``init``."""
    def param(suffix: str, arr: np.ndarray) -> str:
        name = f"{layer.name}.{suffix}"
        init.append(numpy_helper.from_array(np.ascontiguousarray(arr, np.float32), name))
        return name

    return layer.onnx_nodes(param)


def to_onnx(model: Model) -> onnx.ModelProto:
    """The IR model as an opset-13 ONNX model (batch dimension symbolic, named ``N``)."""
    nodes: list[onnx.NodeProto] = []
    init: list[TensorProto] = []
    for layer in model.layers:
        nodes += _layer_nodes(layer, init)
    inp = helper.make_tensor_value_info(model.input_name, TensorProto.FLOAT,
                                        ["N", *model.input_shape])
    out = helper.make_tensor_value_info(model.layers[-1].name, TensorProto.FLOAT,
                                        ["N", *model.output_shape])
    graph = helper.make_graph(nodes, model.name, [inp], [out], initializer=init)
    proto = helper.make_model(graph, producer_name="dynfix",
                              opset_imports=[helper.make_opsetid("", WRITE_OPSET)])
    proto.ir_version = 7
    onnx.checker.check_model(proto)
    return proto


def save_onnx(model: Model, path: str | Path) -> None:
    """Write ``model`` as a standard opset-13 ONNX file (atomically)."""
    atomic_write_bytes(path, to_onnx(model).SerializeToString())
