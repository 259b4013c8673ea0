"""Test helper: hand-built QONNX graphs (onnx.helper), the way Brevitas' ``export_qonnx``
writes fixed-point quantizers: a ``Quant`` node (domain ``qonnx.custom_op.general``) on
the input, on every weight and bias initializer and after every ReLU; scale ``2**-fl``,
zero point 0. Weights are drawn as integers first (``QGraph.ints``), then perturbed by less
than half a step, so the expected integers are known without the code under test.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_graphs import GraphBuilder

DOMAIN = "qonnx.custom_op.general"


class QGraph(GraphBuilder):
    """Append nodes to a chain; ``build()`` returns the ModelProto (batch 1, opset 13 plus
    the QONNX domain, version 2 when it holds a Trunc: its six-input form)."""

    def __init__(self, input_shape, seed: int = 0):
        super().__init__(input_shape, seed=seed, batch=1)
        self.ints: dict[str, np.ndarray] = {}      # weight name -> its expected integers
        self.version = 1                            # of the QONNX domain (Trunc: 2)

    def _n(self, kind: str) -> str:
        self.k += 1
        return f"{kind}{self.k}"

    def quant(self, x: str, bits: int, scale: float, signed: bool = True, narrow=False,
              rounding: str = "ROUND", zeropt: float = 0.0, name: str | None = None) -> str:
        """A Quant node on tensor ``x``; returns its output."""
        name = name or self._n("Quant")
        ins = [x, self.init(f"{name}.scale", np.float32(scale)),
               self.init(f"{name}.zeropt", np.float32(zeropt)),
               self.init(f"{name}.bitwidth", np.float32(bits))]
        out = f"{name}_out"
        self.nodes.append(helper.make_node("Quant", ins, [out], name, domain=DOMAIN,
                                           signed=int(signed), narrow=int(narrow),
                                           rounding_mode=rounding))
        return out

    def trunc(self, x: str, scale: float, in_bits: int, out_scale: float, out_bits: int,
              signed: bool = False, rounding: str = "HALF_UP") -> str:
        """A Trunc node (QONNX v2, as Brevitas writes after an average pool) on ``x``."""
        name = self._n("Trunc")
        ins = [x, self.init(f"{name}.scale", np.float32(scale)),
               self.init(f"{name}.zeropt", np.float32(0.0)),
               self.init(f"{name}.in_bits", np.float32(in_bits)),
               self.init(f"{name}.out_scale", np.float32(out_scale)),
               self.init(f"{name}.out_bits", np.float32(out_bits))]
        out = f"{name}_out"
        self.version = 2
        self.nodes.append(helper.make_node("Trunc", ins, [out], name, domain=DOMAIN,
                                           signed=int(signed), narrow=0,
                                           rounding_mode=rounding))
        self.x = out
        return out

    def bipolar(self, x: str, scale: float) -> str:
        name = self._n("BipolarQuant")
        out = f"{name}_out"
        self.nodes.append(helper.make_node(
            "BipolarQuant", [x, self.init(f"{name}.scale", np.float32(scale))], [out], name,
            domain=DOMAIN))
        return out

    def qweight(self, name: str, shape, bits: int, fl, narrow=False, scale=None) -> str:
        """A float initializer whose ``bits``-bit Quant at ``2**-fl`` (or ``scale``) has
        known integers: draws the integers, adds noise under half a step. ``fl`` may list
        one fl per output channel (axis 0): a per-channel scale of shape M x 1 x ..."""
        lo = -(1 << (bits - 1)) + int(narrow)
        q = self.rng.integers(lo, (1 << (bits - 1)), size=shape)
        s = np.asarray(scale or 2.0 ** -np.asarray(fl, np.float64))
        if s.ndim == 1:
            s = s.reshape((-1,) + (1,) * (len(shape) - 1))
        w = (q + self.rng.uniform(-0.4, 0.4, size=shape)) * s
        self.ints[name] = q
        return self.quant(self.init(name, w.astype(np.float32)), bits, s, narrow=narrow,
                          name=f"{name}_quant")

    def node(self, op: str, ins, **attrs) -> str:
        name = self._n(op)
        out = f"{name}_out"
        self.nodes.append(helper.make_node(op, list(ins), [out], name, **attrs))
        self.x = out
        return out

    def build(self) -> onnx.ModelProto:
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                            [1, *self.input_shape])
        out = helper.make_tensor_value_info(self.x, TensorProto.FLOAT, None)
        graph = helper.make_graph(self.nodes, "qnet", [inp], [out], initializer=self.inits)
        model = helper.make_model(graph, producer_name="test",
                                  opset_imports=[helper.make_opsetid("", 13),
                                                 helper.make_opsetid(DOMAIN, self.version)])
        model.ir_version = 8
        return model


def cnn(seed: int = 0, scale_w=None, per_channel: bool = False) -> QGraph:
    """Input Quant (8-bit signed, fl 5), Conv 1->4 3x3 (8-bit weights fl 6, 16-bit bias fl
    11), ReLU, Quant (unsigned 8-bit fl 4, HALF_UP), MaxPool 2, Flatten, Gemm 64->10 (4-bit
    narrow weights fl 3, 16-bit bias fl 7), output unquantized. ``scale_w``: the Conv
    weights' scale instead of 2**-6 (a non-power-of-two model); ``per_channel``: the Conv
    weights at fl 6, 8, 5, 7 per output channel, its bias at fl 5 + those (Brevitas'
    ``Int16Bias``: input scale x weight scale)."""
    g = QGraph((1, 8, 8), seed)
    g.x = g.quant("input", 8, 2.0 ** -5, name="in_quant")
    fl_w = [6, 8, 5, 7] if per_channel else 6
    w = g.qweight("conv.weight", (4, 1, 3, 3), 8, fl_w, scale=scale_w)
    b = g.qweight("conv.bias", (4,), 16, 5 + np.asarray(fl_w) if per_channel else 11)
    g.node("Conv", [g.x, w, b], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    g.node("Relu", [g.x])
    g.x = g.quant(g.x, 8, 2.0 ** -4, signed=False, rounding="HALF_UP", name="act_quant")
    g.node("MaxPool", [g.x], kernel_shape=[2, 2], strides=[2, 2])
    g.node("Flatten", [g.x], axis=1)
    w = g.qweight("fc.weight", (10, 64), 4, 3, narrow=True)
    b = g.qweight("fc.bias", (10,), 16, 7)
    g.node("Gemm", [g.x, w, b], transB=1)
    return g


def mlp(seed: int = 0, binary: bool = False) -> QGraph:
    """Input Quant (unsigned 8-bit fl 8, inputs in [0, 1)), MatMul 12->8 + Add (4-bit
    weights fl 2, or BipolarQuant weights of scale 1/4; 12-bit bias fl 10), ReLU, Quant
    (unsigned 4-bit fl 2, HALF_UP), Gemm 8->3 (ternary: 2-bit narrow weights fl 1, no
    bias), output Quant (signed 16-bit fl 3: no rounding, the exact sum)."""
    g = QGraph((12,), seed)
    g.x = g.quant("input", 8, 2.0 ** -8, signed=False, name="in_quant")
    if binary:
        w = g.bipolar(g.init("fc1.weight", g.rng.standard_normal((12, 8)).astype(np.float32)),
                      0.25)
    else:
        w = g.qweight("fc1.weight", (12, 8), 4, 2)
    g.node("MatMul", [g.x, w])
    g.node("Add", [g.x, g.qweight("fc1.bias", (8,), 12, 10)])
    g.node("Relu", [g.x])
    g.x = g.quant(g.x, 4, 0.25, signed=False, rounding="HALF_UP", name="act_quant")
    g.node("Gemm", [g.x, g.qweight("fc2.weight", (3, 8), 2, 1, narrow=True)], transB=1)
    g.x = g.quant(g.x, 16, 2.0 ** -3, name="out_quant")
    return g


def pooled(global_pool: bool, out_bits: int = 8) -> QGraph:
    """Input Quant (8-bit signed, fl 5), Conv 1->4 3x3 (8-bit weights fl 6, 16-bit bias fl
    11), ReLU, Quant (unsigned 8-bit fl 4, HALF_UP), then an AveragePool 2x2 or a
    GlobalAveragePool (16 cells) with a Trunc back to the map's format (``out_bits`` wide),
    Flatten, Gemm -> 3 (8-bit weights fl 7, 16-bit bias fl 11), output unquantized."""
    g = QGraph((1, 4, 4), 0)
    g.x = g.quant("input", 8, 2.0 ** -5, name="in_quant")
    w = g.qweight("conv.weight", (4, 1, 3, 3), 8, 6)
    g.node("Conv", [g.x, w, g.qweight("conv.bias", (4,), 16, 11)], kernel_shape=[3, 3],
           pads=[1, 1, 1, 1])
    g.node("Relu", [g.x])
    g.x = g.quant(g.x, 8, 2.0 ** -4, signed=False, rounding="HALF_UP", name="act_quant")
    if global_pool:
        g.node("GlobalAveragePool", [g.x])
        g.trunc(g.x, 2.0 ** -8, 12, 2.0 ** -4, out_bits)
    else:
        g.node("AveragePool", [g.x], kernel_shape=[2, 2], strides=[2, 2])
        g.trunc(g.x, 2.0 ** -6, 10, 2.0 ** -4, out_bits)
    g.node("Flatten", [g.x], axis=1)
    n = 4 if global_pool else 16
    g.node("Gemm", [g.x, g.qweight("fc.weight", (3, n), 8, 7),
                    g.qweight("fc.bias", (3,), 16, 11)], transB=1)
    return g


def run_qonnx(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The model's output on ``x`` under qonnx's own executor (its Quant semantics), one
    input at a time (the graph's batch is 1)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.infer_shapes import InferShapes
    mw = ModelWrapper(model).transform(InferShapes())
    inp, out = mw.graph.input[0].name, mw.graph.output[0].name
    return np.concatenate([execute_onnx(mw, {inp: x[i:i + 1]})[out]
                           for i in range(len(x))])


def _act_quants(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The Quant and Trunc nodes on the data path (their input is no initializer)."""
    consts = {t.name for t in model.graph.initializer}
    return [n for n in model.graph.node
            if n.op_type in ("Quant", "Trunc") and n.input[0] not in consts]


def rounding_as_dynfix(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose activation Quants and Truncs round as dynfix does, half up
    (``floor(v + 1/2)``, then saturate; no QONNX rounding mode is that for negative ties):
    half an output step added in front of each, and its ``rounding_mode`` ``FLOOR``.
    Brevitas writes ``ROUND`` (half to even)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    acts = {n.output[0] for n in _act_quants(model)}
    nodes = []
    for n in model.graph.node:
        if n.output[0] in acts:
            step = consts[n.input[4 if n.op_type == "Trunc" else 1]].astype(np.float32)
            half = numpy_helper.from_array(step / 2, f"{n.name}.half_step")
            model.graph.initializer.append(half)
            nodes.append(helper.make_node("Add", [n.input[0], half.name],
                                          [f"{n.name}.half_up"], f"{n.name}.half_up"))
            n.input[0] = f"{n.name}.half_up"
            for a in n.attribute:
                if a.name == "rounding_mode":
                    a.s = b"FLOOR"
        nodes.append(n)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def without_act_quants(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with its activation Quants and Truncs bypassed (their readers read
    their input): the float function, with the weights still fake-quantized."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    skip = {n.output[0]: n.input[0] for n in _act_quants(model)}
    nodes = [n for n in model.graph.node if n.output[0] not in skip]
    for n in nodes:
        for i, t in enumerate(n.input):
            n.input[i] = skip.get(t, t)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    for out in model.graph.output:
        out.name = skip.get(out.name, out.name)
    return model
