"""ONNX writer: an IR model as a standard opset-13 graph (the bundled model, tests, tools).

Each layer becomes one node named after the layer, reading the tensors the layer reads (the
graph is the IR's DAG), whose output tensor has the layer's name; parameters are initializers
named ``<layer>.<param>``. A standalone ``Affine`` is written as a BatchNormalization with
mean 0, variance 1 and epsilon 0, a ``Clip`` as Clip with its finite bounds as ``min`` /
``max`` inputs, so that reading the file back gives the same IR (a Clip(0, +inf) reads back
as the ReLU it is). The batch dimension is symbolic (``N``).

The graph input has the data's own layout (``Model.input_layout``): a Transpose to channels
first (NHWC, NWC) and an Unsqueeze of a 1-D signal to N x C x 1 x L (NCW, NWC) come before
the layers, as an exporter writes them, and read back as the same layout. The host's input
normalization (``Model.input_affine``) follows them as a BatchNormalization (mean 0, variance
1, epsilon 0) on the channels-first input, which reads back as the same normalization.
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


def _layout_nodes(model: Model, init: list[TensorProto]) -> tuple[list[onnx.NodeProto], str]:
    """The nodes that turn the data (in ``model.input_layout``) into the graph's
    channels-first input and normalize it (``model.input_affine``), and the name of the
    tensor the layers then read."""
    lay, x, nodes = model.input_layout, model.input_name, []
    taken = {model.input_name} | {layer.name for layer in model.layers}

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        taken.add(name)
        return name

    if lay in ("NHWC", "NWC"):
        out = fresh(f"{x}_channels_first")
        nodes.append(helper.make_node("Transpose", [x], [out], out,
                                      perm=[0, 3, 1, 2] if lay == "NHWC" else [0, 2, 1]))
        x = out
    if lay in ("NCW", "NWC"):
        out, axes = fresh(f"{x}_2d"), fresh(f"{x}_2d.axes")
        init.append(numpy_helper.from_array(np.array([2], np.int64), axes))
        nodes.append(helper.make_node("Unsqueeze", [x, axes], [out], out))
        x = out
    if model.input_affine is not None:
        out = fresh(f"{x}_normalized")
        scale, shift = model.input_affine
        ins = [x]
        for suffix, arr in (("scale", scale), ("shift", shift), ("mean", np.zeros_like(scale)),
                            ("var", np.ones_like(scale))):
            ins.append(fresh(f"{out}.{suffix}"))
            init.append(numpy_helper.from_array(np.asarray(arr, np.float32), ins[-1]))
        nodes.append(helper.make_node("BatchNormalization", ins, [out], out, epsilon=0.0))
        x = out
    return nodes, x


def to_onnx(model: Model) -> onnx.ModelProto:
    """The IR model as an opset-13 ONNX model (batch dimension symbolic, named ``N``)."""
    init: list[TensorProto] = []
    nodes, x = _layout_nodes(model, init)
    for layer in model.layers:
        for node in _layer_nodes(layer, init):
            node.input[:] = [x if t == model.input_name else t for t in node.input]
            nodes.append(node)
    inp = helper.make_tensor_value_info(model.input_name, TensorProto.FLOAT,
                                        ["N", *model.data_shape])
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
