"""The ONNX reader: a file into the imported graph (:mod:`.graph`), which the passes
(:mod:`.passes`) turn into the IR model.

:func:`load_onnx` reads what ``torch.onnx.export``, tf2onnx and tflite2onnx write and what
public model zoos hold (opset 9 and newer; 7 and 8 load where their operators agree; older
files are first upgraded, :mod:`.passes.upgrade`). It works in four steps:

1. read the file (:mod:`.file`; weights in external data files are memory-mapped) and keep
   only the nodes that reach the graph output;
2. check every node's operator before any other work (a node on the data path needs an
   operator dynfix turns into layers, a constant one an operator it can fold): all
   unsupported nodes are reported in one :class:`~dynfix.errors.DynfixError`; then run the
   file passes (:data:`.passes.FILE_PASSES`);
3. walk the nodes in order, folding constant subgraphs as it goes (:mod:`.fold`, with onnx's
   reference evaluator: a Shape needs the data shapes, which the walk infers layer by layer)
   and turning the data path into IR layers. Each operator's import handler lives in the
   module of the layer kind it makes (``quant/layers``, registered with
   :func:`~dynfix.quant.layers.base.onnx_import`; they ask the reader for what they need
   through :class:`~dynfix.quant.layers.base.Importer`). The reader handles only the
   operators that make no layer (:data:`READER_OPS`): Identity, Dropout and Cast pass their
   input on; a zero Pad and a Transpose that keeps the batch axis first become held-back
   transforms, and every node that reads one must be able to take it (:data:`.passes.HELD`);
4. run the graph passes (:data:`.passes.GRAPH_PASSES`: BatchNorm and per-channel folding,
   Pad folding, Transpose folding, dead-layer removal) and check the result.

:func:`save_onnx` (from :mod:`.write`) writes a standard opset-13 graph for an IR model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from dynfix.errors import DynfixError
from ..ir import Add, Affine, Flatten, Layer, Model
from ..layers.base import ONNX_IMPORTS
from . import file
from .fold import FOLD_OPS, attrs, fold, reshape_target, tensor_to_array
from .graph import HeldPad, HeldTranspose, ImportGraph
from .passes import FILE_PASSES, GRAPH_PASSES, HELD
from .passes.transpose import compose, flat_order

#: Operators the reader handles itself: they only pass their input on, or hold back a
#: transform for the node that reads them (see the module docstring).
READER_OPS = frozenset({"Identity", "Dropout", "Cast", "Transpose", "Pad"})
#: Operators allowed on the data path: they become (or disappear into) IR layers. The layer
#: kinds' modules hold the import handlers (``quant/layers``, :func:`.layers.base.onnx_import`).
DATA_OPS = READER_OPS | frozenset(ONNX_IMPORTS)
SUPPORTED_OPS = DATA_OPS | FOLD_OPS
BINARY_OPS = frozenset({"Add", "Sub", "Mul", "Div"})
MIN_INPUTS = {"Conv": 2, "Gemm": 2, "MatMul": 2, "BatchNormalization": 5,
              **{op: 2 for op in BINARY_OPS}}
#: Operators that pass a held-back transform on (besides the readers each one names).
PASS_THROUGH = frozenset({"Identity", "Dropout", "Cast"})

def _live_nodes(graph: onnx.GraphProto, name: str) -> list[tuple[int, onnx.NodeProto]]:
    """The nodes the graph output depends on, in file order, with their file index."""
    outputs = [o.name for o in graph.output]
    if len(outputs) != 1:
        raise DynfixError(f"{name}: the graph has {len(outputs)} outputs; dynfix needs "
                          f"exactly one")
    producer = {}
    for i, node in enumerate(graph.node):
        for out in node.output:
            if out:
                producer.setdefault(out, i)
    live, stack = set(), [outputs[0]]
    while stack:
        i = producer.get(stack.pop())
        if i is not None and i not in live:
            live.add(i)
            stack.extend(t for t in graph.node[i].input if t)
    return [(i, graph.node[i]) for i in sorted(live)]


def _data_path(nodes, data_inputs: set[str]) -> set[int]:
    """File indices of the nodes that compute on the data (a Shape only reads its shape)."""
    data, on = set(data_inputs), set()
    for i, node in nodes:
        if node.op_type != "Shape" and any(t in data for t in node.input if t):
            on.add(i)
            data.update(t for t in node.output if t)
    return on


def _node_problem(node: onnx.NodeProto, on_data: bool) -> str | None:
    """Why a node cannot be imported, judged from its operator and attributes alone."""
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return f"{node.domain}.{op}"
    if op not in (DATA_OPS if on_data else SUPPORTED_OPS):
        return f"{op} on the data path" if op in SUPPORTED_OPS else op
    at = attrs(node)
    if op == "Gemm" and at.int("transA", 0) != 0:
        return "Gemm with transA=1"
    if op in ("MaxPool", "AveragePool") and any(d != 1 for d in at.ints("dilations", [])):
        return f"{op} with dilations={at.ints('dilations')}"
    if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
        return "MaxPool with an Indices output"
    if op == "BatchNormalization" and at.int("training_mode", 0):
        return "BatchNormalization in training mode"
    if op == "Pad" and on_data and at.text("mode", "constant") != "constant":
        return f"Pad with mode={at.text('mode', '')}"
    return None


def _check_supported(nodes, on_data: set[int], name: str) -> None:
    bad = []
    for i, node in nodes:
        problem = _node_problem(node, i in on_data)
        if problem:
            bad.append(f"{node.name or f'<unnamed node #{i}>'} ({problem})")
    if bad:
        raise DynfixError(f"{name}: {len(bad)} unsupported node{'s' * (len(bad) > 1)}: "
                          + ", ".join(bad))


def _pair(v, what: str, attr: str) -> tuple[int, int]:
    v = [int(a) for a in v]
    if len(v) != 2 or min(v) < 1:
        raise DynfixError(f"{what}: {attr} must be two positive integers, got {v}")
    return (v[0], v[1])


def _pads(at: dict, x_shape, kernel, stride, dilation, what) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) from ``pads`` or ``auto_pad``."""
    mode = at.text("auto_pad", "NOTSET")
    if mode == "NOTSET":
        p = at.ints("pads", [0, 0, 0, 0])
        if len(p) != 4 or min(p) < 0:
            raise DynfixError(f"{what}: pads must be four non-negative integers, got {p}")
        return tuple(p)
    if mode == "VALID":
        return (0, 0, 0, 0)
    if mode not in ("SAME_UPPER", "SAME_LOWER") or len(x_shape) != 4:
        raise DynfixError(f"{what}: auto_pad {mode!r} is not supported here")
    begin, end = [], []
    for size, k, s, d in zip(x_shape[2:], kernel, stride, dilation):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        lo = total // 2 if mode == "SAME_UPPER" else total - total // 2
        begin.append(lo)
        end.append(total - lo)
    return (begin[0], begin[1], end[0], end[1])


def _per_channel(c: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    """A constant that broadcasts to ``shape`` as one value per channel (dim 1)."""
    full = (1,) + tuple(shape[1:])
    if not _broadcasts(c.shape, full):
        why = "varies along the batch axis of" if c.ndim == len(shape) and _broadcasts(
            c.shape[1:], full[1:]) else "does not broadcast to"  # e.g. (N, C, H, W), N > 1
        raise DynfixError(f"{what}: constant of shape {c.shape} {why} the data "
                          f"{list(shape)}")
    cb = np.broadcast_to(c, full)[0].reshape(shape[1], -1)
    if not np.all(cb == cb[:, :1]):
        raise DynfixError(f"{what}: only per-channel constants are supported")
    return cb[:, 0].astype(np.float64)


def _broadcasts(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Does shape ``a`` broadcast to ``b`` (without growing it)?"""
    try:
        return np.broadcast_shapes(a, b) == b
    except ValueError:
        return False


@dataclass
class _Tensor:
    """A data-path tensor: the IR tensor that holds it (a layer, a held-back transform or
    the input) and its ONNX shape (``(batch,) +`` that tensor's shape).

    ``held``: the kind of held-back transform it carries (``pad``, ``perm`` or ``cols``,
    :data:`.passes.HELD`), left by node ``origin``; ``perm``: the transpose it carries
    (batch axis included) relative to the tensor the passes will leave.
    """

    ir: str
    shape: tuple[int, ...]
    held: str | None = None
    origin: str = ""
    perm: tuple[int, ...] | None = None


class _Importer:
    """One ONNX graph -> the imported graph -> the IR model (see the module docstring)."""

    def __init__(self, proto: onnx.ModelProto, path: Path):
        self.path, self.name = path, path.name
        self.adopt(proto)
        self.consts: dict[str, np.ndarray] = {}
        self.data: dict[str, _Tensor] = {}
        self.taken: set[str] = set()
        self.here = ""                          # the node being imported, for messages

    def adopt(self, proto: onnx.ModelProto) -> None:
        """Import from ``proto`` (the file, or what the file passes made of it)."""
        self.proto, self.graph = proto, proto.graph
        self.opset = file.opset(proto, self.name)
        self.inits = {t.name: t for t in self.graph.initializer}

    # -- constants
    def is_const(self, name: str) -> bool:
        return name in self.consts or name in self.inits

    def const(self, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            if name not in self.inits:
                raise DynfixError(f"{what}: input {name!r} must be a constant (an initializer)")
            t = self.inits[name]
            arr = (file.external(t, self.path) if t.data_location == TensorProto.EXTERNAL
                   else tensor_to_array(t))
            self.consts[name] = arr
        return self.consts[name]

    def weights(self, name: str, what: str, rank: int | None = None) -> np.ndarray:
        arr = self.const(name, what)
        if arr.dtype.kind != "f":
            raise DynfixError(f"{what}: parameter {name!r} has type {arr.dtype}, expected "
                              f"float")
        if rank is not None and arr.ndim != rank:
            raise DynfixError(f"{what}: parameter {name!r} has shape {arr.shape}, expected "
                              f"rank {rank}")
        return arr if arr.dtype == np.float32 else arr.astype(np.float32)

    def scalar(self, node, pos: int, what: str, default: float) -> float:
        """Optional constant scalar input ``pos`` (Clip's min/max, Pad's value)."""
        if len(node.input) <= pos or not node.input[pos]:
            return default
        v = np.asarray(self.const(node.input[pos], what))
        if v.size != 1 or v.dtype.kind not in "fiu":
            raise DynfixError(f"{what}: input {node.input[pos]!r} must be a numeric scalar")
        return float(v.reshape(-1)[0])

    # -- layers and tensors
    def unique(self, base: str) -> str:
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name

    def place(self, layer: Layer, xs: list[_Tensor]) -> _Tensor:
        """Enter ``layer`` (reading ``xs``) in the graph, with its output shape."""
        layer.check_params()
        layer.check()
        layer.out_shape = tuple(int(d) for d in layer.infer(*(x.shape[1:] for x in xs)))
        self.g.layers[layer.name] = layer
        self.g.origin[layer.name] = self.here
        return _Tensor(layer.name, (xs[0].shape[0],) + layer.out_shape)

    def add(self, cls: type[Layer], node: onnx.NodeProto, xs: list[_Tensor], what: str,
            suffix: str = "", **kw) -> _Tensor:
        """A new layer reading ``xs``; an element-wise kind's output keeps the held-back
        transform of its input."""
        base = node.name or f"{node.op_type.lower()}{self.count}"
        self.count += 1
        t = self.place(cls(self.unique(base + suffix), tuple(x.ir for x in xs), **kw), xs)
        if cls.elementwise:
            return replace(xs[0], ir=t.ir, shape=t.shape)
        return t

    def hold(self, node: onnx.NodeProto, layer: Layer, x: _Tensor, held: str | None,
             perm: tuple[int, ...] | None = None) -> None:
        """Bind the node's output to held-back transform ``layer`` (named after the node)
        reading ``x``; ``held`` None: it cancels what ``x`` held."""
        t = self.place(layer, [x])
        self.bind(node, replace(t, held=held, origin=self.here if held else "", perm=perm))

    def bind(self, node: onnx.NodeProto, t: _Tensor) -> None:
        """Make ``t`` the value of the node's output."""
        self.data[node.output[0]] = t

    def chain(self, node, steps, x: _Tensor, what: str) -> None:
        """Several layers for one node: ``steps`` of (cls, suffix, kwargs), the last one
        keeps the node's name."""
        for cls, suffix, kw in steps:
            x = self.add(cls, node, [x], what, suffix=suffix, **kw)
        self.bind(node, x)

    def affine(self, node, x: _Tensor, scale, shift, what: str) -> None:
        """y = scale * x + shift per channel: an Affine layer, which the affine pass folds
        into the layer before where it can (:mod:`.passes.affine`, from the float64 values
        kept here)."""
        c = x.shape[1]
        scale = np.broadcast_to(np.asarray(scale, np.float64), (c,))
        shift = np.broadcast_to(np.asarray(shift, np.float64), (c,))
        if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(shift))):
            raise DynfixError(f"{what}: has NaN/Inf parameters")
        t = self.add(Affine, node, [x], what, scale=scale.astype(np.float32),
                     shift=shift.astype(np.float32))
        self.g.exact[t.ir] = (scale, shift)
        self.bind(node, t)

    # -- the walk
    def run(self) -> Model:
        nodes = _live_nodes(self.graph, self.name)
        data_inputs = {v.name for v in self.graph.input if v.name not in self.inits}
        _check_supported(nodes, _data_path(nodes, data_inputs), self.name)
        proto = self.proto          # operators checked: now the file passes
        for file_pass in FILE_PASSES:
            proto = file_pass(proto, self.name)
        if proto is not self.proto:
            self.adopt(proto)
            nodes = _live_nodes(self.graph, self.name)
        self.input_name, in_shape = file.input_shape(self.graph, self.name, set(self.inits))
        stem = self.path.stem
        name = self.graph.name if self.graph.name not in ("", "main_graph", "torch_jit",
                                                          "torch-jit-export") else stem
        self.g = ImportGraph(self.name, name, self.input_name, in_shape[1:])
        self.count = 0
        self.taken.add(self.input_name)
        self.data[self.input_name] = _Tensor(self.input_name, in_shape)
        for i, node in nodes:
            self.here = f"node {node.name or f'#{i}'} ({node.op_type})"
            self.step(node, f"{self.name}: {self.here}")
        return self.finish()

    def step(self, node: onnx.NodeProto, what: str) -> None:
        """Import one node: fold it, or turn it into layers."""
        for t in node.input:
            if t and not (t in self.data or self.is_const(t)):
                raise DynfixError(f"{what}: input {t!r} is not produced by an earlier node")
        if not node.output or not node.output[0]:
            raise DynfixError(f"{what}: has no output")
        op = node.op_type
        data_in = [t for t in node.input if t in self.data]
        if op == "Shape" or (op in FOLD_OPS and not data_in):
            vals = [self.const(t, what) if t and t not in self.data else None
                    for t in node.input]
            out = fold(node, vals, what, self.opset, lambda t: self.data[t].shape)
            self.consts[node.output[0]] = out
            return
        if not data_in:
            raise DynfixError(f"{what}: computes on constants only, which dynfix does not "
                              f"fold for this operator")
        need = MIN_INPUTS.get(op, 1)
        if len(node.input) < need or not all(node.input[:need]):
            raise DynfixError(f"{what}: needs {need} inputs")
        if node.input[0] not in self.data and op not in BINARY_OPS | {"Sum"}:
            raise DynfixError(f"{what}: the data tensor must be its first input")
        for t in data_in:
            x = self.data[t]
            if x.held and op not in HELD[x.held][0] | PASS_THROUGH:
                raise DynfixError(f"{what}: reads the output of {x.origin}, which dynfix "
                                  f"folds only {HELD[x.held][1]}")
        if op in READER_OPS:
            getattr(self, f"op_{op}")(node, what)
        else:
            ONNX_IMPORTS.get(op, _op_other)(self, node, what)

    def finish(self) -> Model:
        out = self.graph.output[0].name
        if out not in self.data:
            raise DynfixError(f"{self.name}: the graph output {out!r} is a constant")
        x = self.data[out]
        if x.held:
            raise DynfixError(f"{self.name}: the graph output is the output of {x.origin}, "
                              f"which dynfix folds only {HELD[x.held][1]}")
        if x.ir == self.input_name:
            raise DynfixError(f"{self.name}: the graph has no layers")
        self.g.output = x.ir
        for graph_pass in GRAPH_PASSES:
            graph_pass(self.g)
        model = self.g.model()
        for layer in model.layers[:-1]:
            if layer.host:
                raise DynfixError(f"{self.name}: Softmax {layer.name!r} is not the last "
                                  f"layer; only a trailing Softmax is supported")
        return model

    # -- operators on the data path (x = the data input)
    def x(self, node, pos: int = 0) -> _Tensor:
        return self.data[node.input[pos]]

    def opt(self, node, pos: int, what: str) -> np.ndarray | None:
        return self.weights(node.input[pos], what) if len(node.input) > pos \
            and node.input[pos] else None

    def alias(self, node: onnx.NodeProto, x: _Tensor) -> None:
        self.bind(node, x)

    # -- helpers for the layer kinds' import handlers (layers.base.Importer)
    def attrs(self, node: onnx.NodeProto, what: str):
        return attrs(node, what)

    pair = staticmethod(_pair)
    pads = staticmethod(_pads)
    per_channel = staticmethod(_per_channel)
    reshape_target = staticmethod(reshape_target)

    def const_axes(self, node, what: str, pos: int = 1) -> list[int] | None:
        at = attrs(node, what)
        if "axes" in at:
            return at.ints("axes")
        if len(node.input) > pos and node.input[pos]:
            return [int(a) for a in np.asarray(self.const(node.input[pos], what)).reshape(-1)]
        return None

    def operand(self, node, what: str) -> tuple[_Tensor, np.ndarray, bool]:
        a, b = node.input[0], node.input[1] if len(node.input) > 1 else ""
        data_first = a in self.data
        x = self.data[a if data_first else b]
        c = np.asarray(self.const(b if data_first else a, what))
        if c.dtype.kind != "f":
            raise DynfixError(f"{what}: constant operand is not float")
        return x, _per_channel(c, x.shape, what), data_first

    def to_shape(self, node, x: _Tensor, shape: tuple[int, ...], what: str):
        """A reshape of the data: a no-op, a flatten to N x F, or unsupported."""
        if shape == x.shape:
            self.alias(node, x)
        elif len(shape) == 2 and shape[0] == x.shape[0] and len(x.shape) > 2:
            t = self.add(Flatten, node, [x], what)
            if x.perm and np.any(flat_order(_untransposed(x.shape, x.perm), x.perm)
                                 != np.arange(shape[1])):
                t = replace(t, held="cols", origin=x.origin)
            self.bind(node, t)
        else:
            after = f" (after {x.origin})" if x.held else ""
            raise DynfixError(f"{what}: reshaping {list(x.shape)} to {list(shape)}{after} "
                              f"is not supported; only flattening to N x F")

    def op_Transpose(self, node, what):
        """Held back: folded into the Flatten/Reshape + Gemm/MatMul after it."""
        x, at = self.x(node), attrs(node, what)
        rank = len(x.shape)
        perm = at.ints("perm", list(range(rank))[::-1])
        if sorted(perm) != list(range(rank)):
            raise DynfixError(f"{what}: perm {perm} is not a permutation of {rank} axes")
        if perm[0] != 0:
            raise DynfixError(f"{what}: moves the batch axis (perm {perm}); dynfix folds "
                              f"only transposes that keep it first")
        if perm == sorted(perm):
            self.alias(node, x)
            return
        full = compose(x.perm, tuple(perm)) if x.perm else tuple(perm)
        layer = HeldTranspose(self.unique(node.name or f"transpose{self.count}"), (x.ir,),
                              perm=tuple(perm))
        if full == tuple(range(rank)):
            self.hold(node, layer, x, None)
        else:
            self.hold(node, layer, x, "perm", perm=full)

    def op_Pad(self, node, what):
        """A zero Pad of H and W, held back for the Conv (or AveragePool) that reads it."""
        x, at = self.x(node), attrs(node, what)
        rank = len(x.shape)
        if self.opset < 11:
            pads, value, axes = at.ints("pads", []), at.float("value", 0.0), None
        else:
            if len(node.input) < 2 or not node.input[1]:
                raise DynfixError(f"{what}: needs a pads input")
            pads = [int(v) for v in np.asarray(self.const(node.input[1], what)).reshape(-1)]
            value = self.scalar(node, 2, what, 0.0)
            axes = self.const_axes(node, what, pos=3)
        if axes is not None:
            if any(not -rank <= a < rank for a in axes) or len(pads) != 2 * len(axes):
                raise DynfixError(f"{what}: axes {axes} do not fit pads {pads}")
            full = [0] * (2 * rank)
            for k, a in enumerate(axes):
                full[a % rank], full[a % rank + rank] = pads[k], pads[k + len(axes)]
            pads = full
        if len(pads) != 2 * rank:
            raise DynfixError(f"{what}: pads {pads} do not fit a {rank}-D tensor")
        if value != 0 or rank != 4 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
            raise DynfixError(f"{what}: only a zero Pad of H and W of an N x C x H x W tensor "
                              f"is supported (folded into the Conv after it); this one pads "
                              f"{list(x.shape)} by {pads} with {value}")
        more = (pads[2], pads[3], pads[6], pads[7])
        if not any(more):
            self.alias(node, x)
            return
        layer = HeldPad(self.unique(node.name or f"pad{self.count}"), (x.ir,), pads=more)
        self.hold(node, layer, x, "pad")

    def add_data(self, node, xs: list[_Tensor], what: str) -> None:
        """A sum of data tensors of one shape: Add layers (the last keeps the node's name)."""
        shapes = [list(x.shape) for x in xs]
        if any(s != shapes[0] for s in shapes):
            raise DynfixError(f"{what}: adds data tensors of shapes {shapes}; only equal "
                              f"shapes are supported (no broadcasting)")
        t = xs[0]
        for k, y in enumerate(xs[1:], 1):
            t = self.add(Add, node, [t, y], what, suffix="" if k == len(xs) - 1 else f"_{k}")
        self.bind(node, t)

    def op_Identity(self, node, what):
        self.alias(node, self.x(node))

    def op_Dropout(self, node, what):
        if len(node.output) > 1 and node.output[1]:
            raise DynfixError(f"{what}: the Dropout mask output is not supported")
        if len(node.input) > 2 and node.input[2] and \
                np.any(np.asarray(self.const(node.input[2], what))):
            raise DynfixError(f"{what}: Dropout in training mode is not supported")
        self.alias(node, self.x(node))

    def op_Cast(self, node, what):
        if attrs(node, what).int("to", 0) != TensorProto.FLOAT:
            raise DynfixError(f"{what}: casting the data to another type is not supported")
        self.alias(node, self.x(node))


def _untransposed(shape: tuple[int, ...], perm: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of the tensor whose transpose by ``perm`` has ``shape`` (no batch axis)."""
    base = [0] * len(perm)
    for axis, p in enumerate(perm):
        base[p] = shape[axis]
    return tuple(base[1:])


def _op_other(imp: _Importer, node, what: str) -> None:
    raise DynfixError(f"{what}: this operator is only supported on constants, not on "
                      f"the data path")


def load_onnx(path: str | Path) -> Model:
    """Load an ONNX file into the IR; every user error is one DynfixError line."""
    path = Path(path)
    proto = file.read(path)
    with np.errstate(all="ignore"):  # overflows surface as NaN/Inf, which validate rejects
        return _Importer(proto, path).run()
