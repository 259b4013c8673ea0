"""Test helper: build ONNX graphs with onnx.helper the way torch.onnx.export writes them.

Node and tensor names follow PyTorch 2.x exports (``/conv1/Conv``, ``conv1.weight``); the
flatten is the ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` chain of
``x.view(x.size(0), -1)``; constants come as ``Constant`` nodes. onnxruntime is the oracle.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class GraphBuilder:
    """Append layers to a chain; ``build()`` returns the ModelProto."""

    def __init__(self, input_shape, opset: int = 13, batch="N", seed: int = 0,
                 input_name: str = "input"):
        self.opset = opset
        self.input_shape = tuple(input_shape)
        self.batch = batch
        self.input_name = input_name
        self.x = input_name
        self.c = input_shape[0]
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self.k = 0

    # -- plumbing
    def _name(self, kind: str) -> str:
        self.k += 1
        return f"/{kind}{self.k}"

    def init(self, name: str, arr) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(self, op: str, inputs, name: str | None = None, outputs=None, **attrs) -> str:
        name = name or self._name(op.lower())
        outputs = outputs or [f"{name}/{op}_output_0"]
        self.nodes.append(helper.make_node(op, list(inputs), outputs, f"{name}/{op}", **attrs))
        return outputs[0]

    def constant(self, arr) -> str:
        return self.node("Constant", [], value=numpy_helper.from_array(np.asarray(arr)))

    def weights(self, *shape, scale=None) -> np.ndarray:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        scale = scale or 1.0 / np.sqrt(fan_in)
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    # -- layers
    def conv(self, cout: int, k=3, stride=1, pads=None, bias=True, dilation=1,
             auto_pad: str | None = None):
        kh, kw = (k, k) if isinstance(k, int) else k
        name = self._name("conv")
        ins = [self.x, self.init(f"{name[1:]}.weight", self.weights(cout, self.c, kh, kw))]
        if bias:
            ins.append(self.init(f"{name[1:]}.bias", self.weights(cout, scale=0.1)))
        at = dict(kernel_shape=[kh, kw], strides=[stride] * 2 if isinstance(stride, int)
                  else list(stride), dilations=[dilation] * 2, group=1)
        if auto_pad:
            at["auto_pad"] = auto_pad
        else:
            at["pads"] = list(pads) if pads is not None else [k // 2] * 4 \
                if isinstance(k, int) else [0] * 4
        self.x = self.node("Conv", ins, name, **at)
        self.c = cout
        return self

    def bn(self, gamma=None):
        """BatchNormalization with random statistics; ``gamma``: its scales (default
        around 1)."""
        name = self._name("bn")
        c = self.c
        g = 1 + 0.3 * self.rng.standard_normal(c) if gamma is None else np.asarray(gamma)
        ins = [self.x] + [self.init(f"{name[1:]}.{p}", a) for p, a in (
            ("weight", g),
            ("bias", 0.2 * self.rng.standard_normal(c)),
            ("running_mean", 0.3 * self.rng.standard_normal(c)),
            ("running_var", 0.5 + self.rng.random(c)))]
        for t in self.inits[-4:]:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32),
                                               t.name))
        self.x = self.node("BatchNormalization", ins, name, epsilon=1e-5)
        return self

    def relu(self):
        self.x = self.node("Relu", [self.x])
        return self

    def _pool_attrs(self, k, s, pads, ceil_mode):
        at = dict(kernel_shape=[k, k] if isinstance(k, int) else list(k),
                  strides=[s, s] if isinstance(s, int) else list(s),
                  pads=list(pads) if pads else [0, 0, 0, 0])
        if ceil_mode:
            at["ceil_mode"] = 1
        return at

    def maxpool(self, k=2, s=2, pads=None, ceil_mode=False):
        self.x = self.node("MaxPool", [self.x], **self._pool_attrs(k, s, pads, ceil_mode))
        return self

    def avgpool(self, k=2, s=2, pads=None, ceil_mode=False, count_include_pad=False):
        self.x = self.node("AveragePool", [self.x], **self._pool_attrs(k, s, pads, ceil_mode),
                           count_include_pad=int(count_include_pad))
        return self

    def gap(self):
        self.x = self.node("GlobalAveragePool", [self.x])
        return self

    def flatten_torch(self):
        """x.view(x.size(0), -1) as PyTorch exports it (dynamic batch)."""
        shape = self.node("Shape", [self.x])
        g = self.node("Gather", [shape, self.constant(np.array(0, np.int64))], axis=0)
        if self.opset >= 13:
            u = self.node("Unsqueeze", [g, self.constant(np.array([0], np.int64))])
        else:
            u = self.node("Unsqueeze", [g], axes=[0])
        cat = self.node("Concat", [u, self.constant(np.array([-1], np.int64))], axis=0)
        self.x = self.node("Reshape", [self.x, cat])
        self.c = self.features()
        return self

    def flatten(self):
        self.x = self.node("Flatten", [self.x], axis=1)
        self.c = self.features()
        return self

    def features(self) -> int:
        """Features of the current (N x ...) tensor, found by running onnxruntime."""
        y = run_ort(self.build(), np.zeros((1,) + self.input_shape, np.float32))
        return int(np.prod(y.shape[1:]))

    def gemm(self, out: int, trans_b=True, bias=True, alpha=1.0, beta=1.0, features=None):
        f = features or self.c
        name = self._name("fc")
        w = self.weights(out, f)
        ins = [self.x, self.init(f"{name[1:]}.weight", w if trans_b else w.T.copy())]
        if bias:
            ins.append(self.init(f"{name[1:]}.bias", self.weights(out, scale=0.1)))
        self.x = self.node("Gemm", ins, name, alpha=alpha, beta=beta, transB=int(trans_b))
        self.c = out
        return self

    def matmul_add(self, out: int):
        f = self.c
        name = self._name("fc")
        mm = self.node("MatMul", [self.x, self.init(f"{name[1:]}.weight",
                                                    self.weights(f, out))], name)
        self.x = self.node("Add", [mm, self.init(f"{name[1:]}.bias",
                                                 self.weights(out, scale=0.1))], name)
        self.c = out
        return self

    def dropout(self):
        self.x = self.node("Dropout", [self.x])
        return self

    def identity(self):
        self.x = self.node("Identity", [self.x])
        return self

    def softmax(self):
        self.x = self.node("Softmax", [self.x], axis=1)
        return self

    def op(self, op: str, *extra_inputs, **attrs):
        """Any other node on the data path."""
        self.x = self.node(op, [self.x, *extra_inputs], **attrs)
        return self

    # -- DAG and edge-CNN patterns (residual adds, grouped convs, Clip, Pad, Transpose)
    def group_conv(self, cout: int, k=3, groups: int = 1, stride=1, pads=None, bias=True):
        """Conv with ``group=groups``: weight (cout, C // groups, kh, kw)."""
        kh, kw = (k, k) if isinstance(k, int) else k
        name = self._name("conv")
        ins = [self.x, self.init(f"{name[1:]}.weight",
                                 self.weights(cout, self.c // groups, kh, kw))]
        if bias:
            ins.append(self.init(f"{name[1:]}.bias", self.weights(cout, scale=0.1)))
        self.x = self.node("Conv", ins, name, kernel_shape=[kh, kw],
                           strides=[stride] * 2 if isinstance(stride, int) else list(stride),
                           pads=list(pads) if pads is not None else [kh // 2, kw // 2] * 2,
                           group=groups)
        self.c = cout
        return self

    def residual(self, other: str, op: str = "Add"):
        """x = op(x, other): a residual Add (or Sum) of two data tensors."""
        self.x = self.node(op, [self.x, other])
        return self

    def clip(self, lo=None, hi=None):
        """Clip as the opset writes it: attributes before 11, optional inputs from 11."""
        if self.opset < 11:
            at = {k: float(v) for k, v in (("min", lo), ("max", hi)) if v is not None}
            self.x = self.node("Clip", [self.x], **at)
            return self
        ins = [self.x] + ["" if v is None else self.constant(np.array(v, np.float32))
                          for v in (lo, hi)]
        while ins[-1] == "":
            ins.pop()
        self.x = self.node("Clip", ins)
        return self

    def pad(self, pads, value=None, mode="constant", axes=None):
        """Pad (N x C x H x W order ``pads``) as the opset writes it."""
        if self.opset < 11:
            at = dict(pads=list(pads), mode=mode)
            if value is not None:
                at["value"] = float(value)
            self.x = self.node("Pad", [self.x], **at)
            return self
        ins = [self.x, self.constant(np.array(pads, np.int64))]
        ins.append("" if value is None else self.constant(np.array(value, np.float32)))
        if axes is not None:
            ins.append(self.constant(np.array(axes, np.int64)))
        while ins[-1] == "":
            ins.pop()
        self.x = self.node("Pad", ins, mode=mode)
        return self

    def transpose(self, perm):
        self.x = self.node("Transpose", [self.x], perm=list(perm))
        return self

    # -- 1-D layers and the reshapes exporters write around them
    def conv1d(self, cout: int, k: int = 3, stride: int = 1, pads=None, bias: bool = True,
               dilation: int = 1, groups: int = 1, auto_pad: str | None = None):
        """Conv with a 1-D kernel (PyTorch's Conv1d): weight (cout, C // groups, k)."""
        name = self._name("conv")
        ins = [self.x, self.init(f"{name[1:]}.weight",
                                 self.weights(cout, self.c // groups, k))]
        if bias:
            ins.append(self.init(f"{name[1:]}.bias", self.weights(cout, scale=0.1)))
        at = dict(kernel_shape=[k], strides=[stride], dilations=[dilation], group=groups)
        if auto_pad:
            at["auto_pad"] = auto_pad
        else:
            at["pads"] = list(pads) if pads is not None else [k // 2] * 2
        self.x = self.node("Conv", ins, name, **at)
        self.c = cout
        return self

    def unsqueeze(self, axes):
        """Unsqueeze as the opset writes it (attribute before 13, input from 13)."""
        return self._with_axes("Unsqueeze", axes)

    def squeeze(self, axes):
        return self._with_axes("Squeeze", axes)

    def _with_axes(self, op: str, axes):
        at = {"axes": list(axes)} if self.opset < 13 else {}
        extra = [] if at else [self.constant(np.array(axes, np.int64))]
        self.x = self.node(op, [self.x, *extra], **at)
        return self

    def sigmoid(self):
        self.x = self.node("Sigmoid", [self.x])
        return self

    def build(self, output_shape=None) -> onnx.ModelProto:
        inp = helper.make_tensor_value_info(self.input_name, TensorProto.FLOAT,
                                            [self.batch, *self.input_shape])
        out = helper.make_tensor_value_info(self.x, TensorProto.FLOAT, output_shape)
        graph = helper.make_graph(self.nodes, "main_graph", [inp], [out],
                                  initializer=self.inits)
        model = helper.make_model(graph, producer_name="pytorch",
                                  opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 7 if self.opset >= 13 else 6
        return model

    def save(self, path) -> str:
        onnx.save(self.build(), str(path))
        return str(path)


def run_ort(model: onnx.ModelProto | str, x: np.ndarray) -> np.ndarray:
    """The onnxruntime output of a one-input, one-output model."""
    import onnxruntime as ort
    src = model if isinstance(model, str) else model.SerializeToString()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return sess.run(None, {name: x})[0]


def max_rel_err(y: np.ndarray, ref: np.ndarray) -> float:
    """max |y - ref| / max |ref|: relative to the output's scale."""
    assert y.shape == ref.shape, (y.shape, ref.shape)
    return float(np.max(np.abs(y.astype(np.float64) - ref)) / max(np.max(np.abs(ref)), 1e-30))


def check_vs_ort(g: GraphBuilder, tmp_path, n: int = 3, seed: int = 1, name: str = "m.onnx",
                 tol: float = 1e-5):
    """Save ``g``, load it with dynfix and compare the float model with onnxruntime on a
    random batch of ``n``; returns the loaded model."""
    from dynfix.quant.float_model import predict
    from dynfix.quant.onnx import load_onnx
    path = g.save(tmp_path / name)
    model = load_onnx(path)
    x = np.random.default_rng(seed).standard_normal((n,) + g.input_shape).astype(np.float32)
    assert max_rel_err(predict(model, x), run_ort(path, x)) <= tol
    return model


def torch_export(net, x, path, opset: int | None = None) -> str:
    """Put ``net`` in eval mode with random BatchNorm running statistics, export it with the
    TorchScript exporter (input ``x``, dynamic batch ``N``) and return the path."""
    import warnings
    import torch
    net.eval()
    for mod in net.modules():
        if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    kw = {} if opset is None else {"opset_version": opset}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), input_names=["x"], dynamo=False,
                          dynamic_axes={"x": {0: "N"}}, **kw)
    return str(path)
