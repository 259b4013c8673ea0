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

from dynfix.errors import DynfixError
from dynfix.fileio import atomic_write_bytes
from .ir import (Add, Affine, AvgPool2d, Clip, Conv2d, Flatten, GlobalAvgPool, Layer, Linear,
                 MaxPool2d, Model, ReLU, Softmax)

WRITE_OPSET = 13


def _layer_nodes(layer: Layer, init: list[TensorProto]) -> list[onnx.NodeProto]:
    def param(suffix: str, arr: np.ndarray) -> str:
        name = f"{layer.name}.{suffix}"
        init.append(numpy_helper.from_array(np.ascontiguousarray(arr, np.float32), name))
        return name

    n, y, x = layer.name, layer.name, layer.inputs[0]
    if isinstance(layer, Conv2d):
        ins = [x, param("weight", layer.weight)]
        if layer.bias is not None:
            ins.append(param("bias", layer.bias))
        return [helper.make_node("Conv", ins, [y], n, kernel_shape=list(layer.kernel),
                                 strides=list(layer.stride), pads=list(layer.pads),
                                 dilations=list(layer.dilation), group=int(layer.groups))]
    if isinstance(layer, Linear):
        ins = [x, param("weight", layer.weight)]
        if layer.bias is not None:
            ins.append(param("bias", layer.bias))
        return [helper.make_node("Gemm", ins, [y], n, transB=1)]
    if isinstance(layer, ReLU):
        return [helper.make_node("Relu", [x], [y], n)]
    if isinstance(layer, Clip):
        bounds = [param(k, np.array(v)) if np.isfinite(v) else ""
                  for k, v in (("min", layer.lo), ("max", layer.hi))]
        while bounds and not bounds[-1]:
            bounds.pop()
        return [helper.make_node("Clip", [x, *bounds], [y], n)]
    if isinstance(layer, Add):
        return [helper.make_node("Add", list(layer.inputs), [y], n)]
    if isinstance(layer, AvgPool2d):
        return [helper.make_node("AveragePool", [x], [y], n, kernel_shape=list(layer.kernel),
                                 strides=list(layer.stride), pads=list(layer.pads),
                                 ceil_mode=int(layer.ceil_mode),
                                 count_include_pad=int(layer.count_include_pad))]
    if isinstance(layer, MaxPool2d):
        return [helper.make_node("MaxPool", [x], [y], n, kernel_shape=list(layer.kernel),
                                 strides=list(layer.stride), pads=list(layer.pads),
                                 ceil_mode=int(layer.ceil_mode))]
    if isinstance(layer, GlobalAvgPool):
        return [helper.make_node("GlobalAveragePool", [x], [y], n)]
    if isinstance(layer, Flatten):
        return [helper.make_node("Flatten", [x], [y], n, axis=1)]
    if isinstance(layer, Affine):
        c = layer.scale.shape[0]
        ins = [x, param("scale", layer.scale), param("shift", layer.shift),
               param("mean", np.zeros(c)), param("var", np.ones(c))]
        return [helper.make_node("BatchNormalization", ins, [y], n, epsilon=0.0)]
    if isinstance(layer, Softmax):
        return [helper.make_node("Softmax", [x], [y], n, axis=1)]
    raise DynfixError(f"layer {layer.name!r}: op {layer.op!r} cannot be written as ONNX")


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
