"""Test helper: a small residual + depthwise-separable network, built three independent ways.

:func:`res_dw_layers` gives the weights; :func:`res_dw_model` the dynfix IR built from them
directly (no importer); :func:`res_dw_onnx` the same network as an ONNX graph written with
``onnx.helper`` (onnxruntime is the oracle); :func:`res_dw_numpy` the same network as plain
numpy with loop convolutions. The network has the MLPerf Tiny ingredients: residual Adds
(one through a 1x1 projection on a branch, ResNet style), a depthwise convolution, ReLU6
(Clip 0..6), global average pooling, and a Linear head.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dynfix.quant.ir import (Add, Clip, Conv2d, Flatten, GlobalAvgPool, Linear, Model, ReLU)

INPUT_SHAPE = (3, 8, 8)

# name, op, inputs, attributes (conv: cout, k, stride, groups)
TOPOLOGY = [
    ("c0", "conv", ["x"], dict(cout=8, k=3, stride=1, groups=1)),
    ("r0", "relu", ["c0"], {}),
    ("c1", "conv", ["r0"], dict(cout=8, k=3, stride=1, groups=1)),
    ("r1", "relu", ["c1"], {}),
    ("c2", "conv", ["r1"], dict(cout=8, k=3, stride=1, groups=1)),
    ("add1", "add", ["c2", "r0"], {}),
    ("a1", "relu", ["add1"], {}),
    ("c3", "conv", ["a1"], dict(cout=16, k=3, stride=2, groups=1)),
    ("r3", "relu", ["c3"], {}),
    ("c4", "conv", ["r3"], dict(cout=16, k=3, stride=1, groups=1)),
    ("proj", "conv", ["a1"], dict(cout=16, k=1, stride=2, groups=1)),     # a branch
    ("add2", "add", ["c4", "proj"], {}),
    ("a2", "relu", ["add2"], {}),
    ("dw", "conv", ["a2"], dict(cout=16, k=3, stride=1, groups=16)),     # depthwise
    ("r6", "clip", ["dw"], {}),
    ("pw", "conv", ["r6"], dict(cout=16, k=1, stride=1, groups=1)),
    ("r6b", "clip", ["pw"], {}),
    ("gap", "gap", ["r6b"], {}),
    ("flat", "flatten", ["gap"], {}),
    ("fc", "linear", ["flat"], dict(cout=10)),
]


def res_dw_layers(seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Weights by layer: He-scaled so activations stay in a similar range."""
    rng = np.random.default_rng(seed)
    chans = {"x": INPUT_SHAPE[0]}
    params = {}
    for name, op, ins, at in TOPOLOGY:
        c = chans[ins[0]]
        if op == "conv":
            cin = c // at["groups"]
            w = rng.standard_normal((at["cout"], cin, at["k"], at["k"]))
            w *= np.sqrt(2.0 / (cin * at["k"] ** 2))
            params[name] = {"weight": w.astype(np.float32),
                            "bias": (0.1 * rng.standard_normal(at["cout"])).astype(np.float32)}
            chans[name] = at["cout"]
        elif op == "linear":
            w = rng.standard_normal((at["cout"], c)) * np.sqrt(1.0 / c)
            params[name] = {"weight": w.astype(np.float32),
                            "bias": (0.1 * rng.standard_normal(at["cout"])).astype(np.float32)}
        else:
            chans[name] = c
    return params


def res_dw_model(seed: int = 0) -> Model:
    """The network as dynfix IR."""
    p = res_dw_layers(seed)
    layers = []
    for name, op, ins, at in TOPOLOGY:
        ins = tuple(ins)
        if op == "conv":
            pad = at["k"] // 2
            layers.append(Conv2d(name, ins, **p[name], stride=(at["stride"],) * 2,
                                 pads=(pad,) * 4, groups=at["groups"]))
        elif op == "linear":
            layers.append(Linear(name, ins, **p[name]))
        elif op == "clip":
            layers.append(Clip(name, ins, lo=0.0, hi=6.0))
        else:
            cls = {"relu": ReLU, "add": Add, "gap": GlobalAvgPool, "flatten": Flatten}[op]
            layers.append(cls(name, ins))
    return Model("resdw", "x", INPUT_SHAPE, layers)


def res_dw_onnx(seed: int = 0) -> onnx.ModelProto:
    """The network as an ONNX graph (opset 13), written node by node with onnx.helper."""
    p = res_dw_layers(seed)
    nodes, inits = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    lo, hi = init("clip.min", np.float32(0.0)), init("clip.max", np.float32(6.0))
    for name, op, ins, at in TOPOLOGY:
        if op == "conv":
            pad = at["k"] // 2
            nodes.append(helper.make_node(
                "Conv", ins + [init(f"{name}.weight", p[name]["weight"]),
                               init(f"{name}.bias", p[name]["bias"])], [name],
                kernel_shape=[at["k"]] * 2, strides=[at["stride"]] * 2, pads=[pad] * 4,
                group=at["groups"]))
        elif op == "linear":
            nodes.append(helper.make_node(
                "Gemm", ins + [init(f"{name}.weight", p[name]["weight"]),
                               init(f"{name}.bias", p[name]["bias"])], [name], transB=1))
        elif op == "clip":
            nodes.append(helper.make_node("Clip", ins + [lo, hi], [name]))
        else:
            kind = {"relu": "Relu", "add": "Add", "gap": "GlobalAveragePool",
                    "flatten": "Flatten"}[op]
            nodes.append(helper.make_node(kind, ins, [name]))
    graph = helper.make_graph(
        nodes, "resdw", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                       ["N", *INPUT_SHAPE])],
        [helper.make_tensor_value_info("fc", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


def loop_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int,
              groups: int) -> np.ndarray:
    """Grouped convolution by its definition: per group, per output pixel, a dot product."""
    n, c, h, wd = x.shape
    m, cg, k, _ = w.shape
    xp = np.zeros((n, c, h + 2 * pad, wd + 2 * pad))
    xp[:, :, pad:pad + h, pad:pad + wd] = x
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    y = np.zeros((n, m, oh, ow))
    mg = m // groups
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        ws = w[g * mg:(g + 1) * mg]
        for i in range(oh):
            for j in range(ow):
                patch = xs[:, :, i * stride:i * stride + k, j * stride:j * stride + k]
                y[:, g * mg:(g + 1) * mg, i, j] = np.tensordot(patch, ws,
                                                               axes=([1, 2, 3], [1, 2, 3]))
    return y + b[None, :, None, None]


def res_dw_numpy(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """The network written out by hand in float64 numpy."""
    p = res_dw_layers(seed)

    def conv(v, name, stride, pad, groups=1):
        return loop_conv(v, p[name]["weight"], p[name]["bias"], stride, pad, groups)

    relu = lambda v: np.maximum(v, 0)                    # noqa: E731
    x = x.astype(np.float64)
    r0 = relu(conv(x, "c0", 1, 1))
    a1 = relu(conv(relu(conv(r0, "c1", 1, 1)), "c2", 1, 1) + r0)
    c4 = conv(relu(conv(a1, "c3", 2, 1)), "c4", 1, 1)
    a2 = relu(c4 + conv(a1, "proj", 2, 0))
    r6 = np.clip(conv(a2, "dw", 1, 1, groups=16), 0, 6)
    r6b = np.clip(conv(r6, "pw", 1, 0), 0, 6)
    feat = r6b.mean(axis=(2, 3))
    return feat @ p["fc"]["weight"].T + p["fc"]["bias"]


def calib(n: int = 200, seed: int = 1) -> np.ndarray:
    """Inputs in [0, 1), like normalized images."""
    return np.random.default_rng(seed).uniform(0, 1, (n,) + INPUT_SHAPE).astype(np.float32)
