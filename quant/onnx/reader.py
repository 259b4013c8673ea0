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
   a Transpose, Unsqueeze or Squeeze that keeps the order of each input's values (it only
   moves unit axes, or the batch axis of N x F features) changes only how the ONNX tensor
   views the IR tensor (:class:`_Tensor`);
4. run the graph passes (:data:`.passes.GRAPH_PASSES`: BatchNorm and per-channel folding,
   Pad folding, Transpose folding, dead-layer removal) and check the result.

The IR computes on channels-first maps. Before the walk, :func:`_input_layout` looks at what
reads the data input: a Keras (tf2onnx) model declares N x H x W x C (or N x L x C) and
transposes it to channels first at once; that Transpose (with the Unsqueeze tf2onnx puts
before it in a Conv1D model, and a Keras Normalization's constant Mul / Add before either)
becomes the model's ``input_layout`` (``NHWC``, ``NWC``), and the data is transposed on its
way in instead. A per-channel scale and shift right on the input (that Normalization, a
BatchNorm of the input) becomes the host's input normalization
(:func:`.passes.affine.hoist_input_affine`). A 1-D model (Conv1d, Conv1D, MaxPool1d...)
runs as a 2-D one of height 1: an N x C x L tensor is held as the IR map C x 1 x L.

:func:`save_onnx` (from :mod:`.write`) writes a standard opset-13 graph for an IR model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from dynfix.errors import DynfixError
from ..ir import Add, Affine, Flatten, Layer, Model, is_placeholder
from ..layers.base import ONNX_IMPORTS
from . import file
from .qonnx_graph import strip_file
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
#: What may read a held-back transform, and where it folds (:data:`.passes.HELD`); and the
#: reader's own ``batch`` kind: N x F features whose batch axis a Transpose (or Unsqueeze)
#: moved, which only per-feature operators may read until the batch axis is first again
#: (Keras's BatchNormalization on features, written between two Transposes [1, 0]).
TAKES = {**HELD, "batch": (frozenset({"Transpose", "Unsqueeze", "Squeeze",
                                      "BatchNormalization", "Mul", "Add", "Sub", "Div",
                                      "Relu", "Clip", "LeakyRelu"}),
                           "around per-feature operators (a BatchNormalization, Mul, Add, "
                           "ReLU...) on N x F features, transposed back to N x F after them")}

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


def _auto_pads(mode: str, sizes, kernel, stride, dilation, what: str
               ) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of ``auto_pad`` ``mode`` for a window over H x W
    ``sizes``."""
    if mode == "VALID":
        return (0, 0, 0, 0)
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        raise DynfixError(f"{what}: auto_pad {mode!r} is not supported here")
    begin, end = [], []
    for size, k, s, d in zip(sizes, kernel, stride, dilation):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        lo = total // 2 if mode == "SAME_UPPER" else total - total // 2
        begin.append(lo)
        end.append(total - lo)
    return (begin[0], begin[1], end[0], end[1])


def _per_channel(c: np.ndarray, shape: tuple[int, ...], what: str, batch: int = 0,
                 channel: int = 1) -> np.ndarray:
    """A constant that broadcasts to ``shape`` (its batch axis at ``batch``) as one value
    per channel (axis ``channel``)."""
    full = tuple(1 if i == batch else d for i, d in enumerate(shape))
    if not _broadcasts(c.shape, full):
        rest = [i for i in range(len(shape)) if i != batch]
        why = "varies along the batch axis of" if c.ndim == len(shape) and _broadcasts(
            tuple(c.shape[i] for i in rest), tuple(full[i] for i in rest)) \
            else "does not broadcast to"  # e.g. (N, C, H, W), N > 1
        raise DynfixError(f"{what}: constant of shape {c.shape} {why} the data "
                          f"{list(shape)}")
    cb = np.moveaxis(np.broadcast_to(c, full), channel, 0).reshape(shape[channel], -1)
    if not np.all(cb == cb[:, :1]):
        raise DynfixError(f"{what}: only per-channel constants are supported")
    return cb[:, 0].astype(np.float64)


def _broadcasts(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Does shape ``a`` broadcast to ``b`` (without growing it)?"""
    try:
        return np.broadcast_shapes(a, b) == b
    except ValueError:
        return False


#: In :attr:`_Tensor.axes`: the batch axis.
BATCH = -1


@dataclass
class _Tensor:
    """A data-path tensor: the IR tensor that holds it (a layer, a held-back transform or
    the input), its ONNX ``shape`` (with the batch axis), the IR tensor's ``dims`` (without
    it: ``(F,)`` or ``(C, H, W)``) and how the one views the other: ``axes[i]`` is what
    ONNX axis ``i`` is, :data:`BATCH`, an IR axis (an index into ``dims``) or None (a unit
    axis the IR tensor does not have). An N x C x H x W tensor has axes
    ``(BATCH, 0, 1, 2)``, a 1-D N x C x L one ``(BATCH, 0, 2)`` (``dims`` C x 1 x L), the
    N x H x W x C input of an NHWC model ``(BATCH, 1, 2, 0)``. IR axes of size 1 may be
    missing from ``axes``; every other one is there once.

    ``held``: the kind of held-back transform it carries (``pad``, ``perm``, ``cols`` or
    ``batch``, :data:`TAKES`), left by node ``origin``; ``perm``: the transpose it
    carries (over the IR tensor's axes, batch first) relative to the tensor the passes will
    leave.
    """

    ir: str
    shape: tuple[int, ...]
    dims: tuple[int, ...] = ()
    axes: tuple[int | None, ...] = ()
    held: str | None = None
    origin: str = ""
    perm: tuple[int, ...] | None = None

    @property
    def batch(self) -> int:
        """The batch size (the ONNX batch axis's static size)."""
        return self.shape[self.axes.index(BATCH)]

    def in_order(self) -> bool:
        """Batch first and the IR axes in order: each input's values come in the IR
        tensor's order (the ONNX tensor only adds or drops unit axes)."""
        ir = [a for a in self.axes if a is not None and a != BATCH]
        return self.axes[0] == BATCH and ir == sorted(ir)


def _view_of(dims: tuple[int, ...], rank: int, batch: int) -> tuple[tuple, tuple]:
    """The ONNX shape and axes of a new IR tensor ``dims`` read as a rank-``rank`` ONNX
    tensor: N x F, N x C x L (dims C x 1 x L) or N x C x H x W."""
    if len(dims) == 1:
        return (batch, dims[0]), (BATCH, 0)
    if rank == 3 and len(dims) == 3 and dims[1] == 1:
        return (batch, dims[0], dims[2]), (BATCH, 0, 2)
    return (batch,) + tuple(dims), (BATCH,) + tuple(range(len(dims)))


def _align(x: _Tensor, shape: tuple[int, ...]) -> tuple | None:
    """The axes of ``x`` reshaped to ``shape`` when that only adds or drops unit axes after
    the batch axis (which stays first); None otherwise."""
    if x.axes[0] != BATCH or not shape or shape[0] != x.shape[0]:
        return None
    src, out, i = x.shape, [BATCH], 1
    for d in shape[1:]:
        while i < len(src) and src[i] != d and src[i] == 1:
            i += 1                              # a unit axis of x dropped
        if i < len(src) and src[i] == d:
            out.append(x.axes[i])
            i += 1
        elif d == 1:
            out.append(None)                    # a unit axis added
        else:
            return None
    if any(d != 1 for d in src[i:]):
        return None
    return tuple(out)


def _input_layout(nodes, name: str, shape: tuple[int, ...], consts, fixed=lambda t: False
                  ) -> tuple[str, tuple[int, ...], tuple[int, ...]]:
    """The model's input layout, the IR input's dims and the input's axes (see
    :class:`_Tensor`). A channels-last input is one every reader transposes to channels
    first at once (Shape nodes aside): N x H x W x C read by Transposes [0, 3, 1, 2], or
    N x L x C read by Transposes [0, 2, 1] or by Unsqueezes of axis 1 that such Transposes
    [0, 3, 1, 2] read (tf2onnx's Conv1D), possibly through Mul / Add / Sub / Div by
    constants first (a Keras Normalization or Rescaling, per channel on the last axis).
    ``consts(node, pos)``: a constant input's value, or None; ``fixed(tensor)``: whether a
    tensor is a constant."""
    readers: dict[str, list] = {}
    for _, node in nodes:
        for t in set(node.input):
            readers.setdefault(t, []).append(node)

    def reads(t: str) -> list:
        return [n for n in readers.get(t, []) if n.op_type != "Shape"]

    def scales(node, t: str) -> bool:
        return (node.op_type in ("Mul", "Add", "Sub", "Div") and len(node.input) == 2
                and t in node.input and any(fixed(i) for i in node.input if i != t))

    def ends(t: str) -> list:
        """The nodes that read ``t``, through such constant scales and shifts."""
        return [e for n in reads(t) for e in
                (ends(n.output[0]) if scales(n, t) and reads(n.output[0]) else [n])]

    def transposes(node, perm: list[int]) -> bool:
        return node.op_type == "Transpose" and attrs(node).ints("perm", []) == perm

    def unsqueezes_1(node) -> bool:
        if node.op_type != "Unsqueeze":
            return False
        at = attrs(node)
        axes = at.ints("axes") if "axes" in at else consts(node, 1)
        return axes is not None and [int(a) % 4 for a in axes] == [1] and bool(
            reads(node.output[0])) and all(transposes(n, [0, 3, 1, 2])
                                            for n in reads(node.output[0]))

    first = ends(name)
    rank = len(shape)
    if rank == 4 and first and all(transposes(n, [0, 3, 1, 2]) for n in first):
        return "NHWC", (shape[3], shape[1], shape[2]), (BATCH, 1, 2, 0)
    if rank == 3 and first and all(transposes(n, [0, 2, 1]) or unsqueezes_1(n)
                                   for n in first):
        return "NWC", (shape[2], 1, shape[1]), (BATCH, 2, 0)
    if rank == 3:
        return "NCW", (shape[1], 1, shape[2]), (BATCH, 0, 2)
    return "NCHW", tuple(shape[1:]), (BATCH,) + tuple(range(rank - 1))


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
        """Enter ``layer`` (reading ``xs``) in the graph, with its output shape; its ONNX
        view is its first input's where the shape is the same, else the plain one of the
        same rank (N x F, N x C x L, N x C x H x W)."""
        layer.check_params()
        layer.check()
        dims = tuple(int(d) for d in layer.infer(*(x.dims for x in xs)))
        layer.out_shape = dims
        self.g.layers[layer.name] = layer
        self.g.origin[layer.name] = self.here
        x = xs[0]
        if dims == x.dims:
            return _Tensor(layer.name, x.shape, dims, x.axes)
        shape, axes = _view_of(dims, len(x.shape), x.batch)
        return _Tensor(layer.name, shape, dims, axes)

    def add(self, cls: type[Layer], node: onnx.NodeProto, xs: list[_Tensor], what: str,
            suffix: str = "", **kw) -> _Tensor:
        """A new layer reading ``xs``; an element-wise kind's output keeps the held-back
        transform of its input, and so does any layer on features whose batch axis a
        Transpose moved (only per-feature ones may read them, :data:`TAKES`)."""
        base = node.name or f"{node.op_type.lower()}{self.count}"
        self.count += 1
        t = self.place(cls(self.unique(base + suffix), tuple(x.ir for x in xs), **kw), xs)
        if cls.elementwise or xs[0].held == "batch":
            return replace(xs[0], ir=t.ir, shape=t.shape, dims=t.dims, axes=t.axes)
        return t

    def hold(self, node: onnx.NodeProto, layer: Layer, x: _Tensor, held: str | None,
             perm: tuple[int, ...] | None = None, view: tuple | None = None) -> None:
        """Bind the node's output to held-back transform ``layer`` (named after the node)
        reading ``x``; ``held`` None: it cancels what ``x`` held. ``view``: the output's
        ONNX shape and axes, if not the plain ones."""
        t = self.place(layer, [x])
        if view is not None:
            t = replace(t, shape=view[0], axes=view[1])
        self.bind(node, replace(t, held=held, origin=self.here if held else "", perm=perm))

    def bind(self, node: onnx.NodeProto, t: _Tensor) -> None:
        """Make ``t`` the value of the node's output."""
        self.data[node.output[0]] = t

    def affine(self, node, x: _Tensor, scale, shift, what: str) -> None:
        """y = scale * x + shift per channel: an Affine layer, which the affine pass folds
        into the layer before where it can (:mod:`.passes.affine`, from the float64 values
        kept here)."""
        c = x.dims[0]
        scale = np.broadcast_to(np.asarray(scale, np.float64), (c,))
        shift = np.broadcast_to(np.asarray(shift, np.float64), (c,))
        if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(shift))):
            raise DynfixError(f"{what}: has NaN/Inf parameters")
        t = self.add(Affine, node, [x], what, scale=scale.astype(np.float32),
                     shift=shift.astype(np.float32))
        self.g.exact[t.ir] = (scale, shift)
        self.bind(node, t)

    def known(self, node: onnx.NodeProto, pos: int) -> list[int] | None:
        """Before the walk: a node's constant integer input (an initializer or a Constant
        node's value), or None."""
        if len(node.input) <= pos or not node.input[pos]:
            return None
        t = node.input[pos]
        if t in self.inits:
            v = self.const(t, f"{self.name}: node {node.name}")
        else:
            made = [n for n in self.graph.node if t in n.output and n.op_type == "Constant"]
            at = attrs(made[0], f"{self.name}: node {made[0].name}") if made else {}
            v = at.get("value", np.asarray(at.get("value_ints", [])) if "value_ints" in at
                       else None)
        if not isinstance(v, np.ndarray) or v.dtype.kind not in "iu":
            return None
        return [int(a) for a in v.reshape(-1)]

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
        name = stem if is_placeholder(self.graph.name) else self.graph.name
        made = {n.output[0] for _, n in nodes if n.op_type == "Constant" and n.output}
        layout, dims, axes = _input_layout(nodes, self.input_name, in_shape, self.known,
                                           lambda t: t in self.inits or t in made)
        self.g = ImportGraph(self.name, name, self.input_name, dims, layout)
        self.count = 0
        self.taken.add(self.input_name)
        self.data[self.input_name] = _Tensor(self.input_name, in_shape, dims, axes)
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
        if node.input[0] not in self.data and op not in BINARY_OPS | {"Sum", "Concat"}:
            raise DynfixError(f"{what}: the data tensor must be its first input")
        for t in data_in:
            x = self.data[t]
            if x.held and op not in TAKES[x.held][0] | PASS_THROUGH:
                raise DynfixError(f"{what}: reads the output of {x.origin}, which dynfix "
                                  f"folds only {TAKES[x.held][1]}")
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
                              f"which dynfix folds only {TAKES[x.held][1]}")
        if x.ir == self.input_name:
            raise DynfixError(f"{self.name}: the graph has no layers")
        self.g.output = x.ir
        for graph_pass in GRAPH_PASSES:
            graph_pass(self.g)
        model = self.g.model()
        for layer in model.layers[:-1]:
            if layer.host:
                kind = type(layer).__name__
                raise DynfixError(f"{self.name}: {kind} {layer.name!r} is not the last "
                                  f"layer; only a trailing {kind} is supported")
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
        channel = x.axes.index(0) if 0 in x.axes else 1     # the features of (F, N) too
        if c.size > 1 and 0 not in x.axes:
            self.channels_on_axis_1(x, what)
        v = _per_channel(c, x.shape, what, x.axes.index(BATCH), channel)
        return x, v[:1] if c.size == 1 else v, data_first

    def channels_on_axis_1(self, x: _Tensor, what: str) -> None:
        """A per-channel operator needs the channels (the IR tensor's first axis) on ONNX
        axis 1."""
        if len(x.axes) < 2 or x.axes[1] != 0:
            raise DynfixError(f"{what}: works per channel on ONNX axis 1, which holds "
                              f"{'the batch' if x.axes[1:2] == (BATCH,) else 'no channels'} "
                              f"of this {list(x.shape)} tensor")

    def view(self, node: onnx.NodeProto, x: _Tensor, shape: tuple[int, ...],
             axes: tuple, what: str) -> None:
        """The node's output is ``x`` seen as ONNX ``shape`` with ``axes`` (its values in
        the same order: a Transpose, Unsqueeze or Squeeze that moves only unit axes, or the
        batch axis of N x F features)."""
        held, origin = x.held, x.origin
        if axes[0] != BATCH:
            if len(x.dims) != 1:
                raise DynfixError(f"{what}: moves the batch axis of a {list(x.shape)} map; "
                                  f"dynfix folds that only for N x F features")
            if held not in (None, "batch"):
                raise DynfixError(f"{what}: moves the batch axis of the output of {origin}, "
                                  f"which dynfix folds only {TAKES[held][1]}")
            held, origin = "batch", origin if held else self.here
        elif held == "batch":
            held, origin = None, ""
        self.bind(node, replace(x, shape=tuple(shape), axes=tuple(axes), held=held,
                                origin=origin))

    def spatial(self, x: _Tensor, what: str, op: str) -> int:
        """1 or 2: the window of a Conv / pool reads a 1-D (N x C x L) or 2-D
        (N x C x H x W) view of a C x H x W IR map; DynfixError if it does neither."""
        rank = len(x.shape)
        if rank not in (3, 4):
            raise DynfixError(f"{what}: only 1-D and 2-D {op} are supported (of an N x C x "
                              f"L or N x C x H x W tensor), this one reads a {rank}-D tensor")
        d = x.dims
        # ONNX spatial axis -> the IR axis it must hold (or a unit axis, if that IR axis
        # has size 1): H and W of an N x C x H x W view, W of an N x C x L view (H = 1)
        want = {2: 1, 3: 2} if rank == 4 else {2: 2}
        ok = len(d) == 3 and x.axes[:2] == (BATCH, 0) and (rank == 4 or d[1] == 1) and all(
            x.axes[o] == a or (x.axes[o] is None and d[a] == 1) for o, a in want.items())
        if not ok:
            raise DynfixError(f"{what}: reads a {list(x.shape)} tensor whose axes do not "
                              f"map onto dynfix's channels-first maps (it holds "
                              f"{'x'.join(map(str, d))}); only N x C x L and N x C x H x W "
                              f"views are supported here")
        return rank - 2

    def window(self, node: onnx.NodeProto, x: _Tensor, kernel, what: str, op: str
               ) -> dict:
        """A Conv's or a pool's window as the 2-D IR layer takes it (``kernel``,
        ``stride``, ``pads`` as top, left, bottom, right; ``dilation``): a 1-D window
        over N x C x L is one of height 1 over the map C x 1 x L."""
        nd = self.spatial(x, what, op)
        at = attrs(node, what)
        kernel = tuple(int(k) for k in kernel)
        if len(kernel) != nd:
            raise DynfixError(f"{what}: a {len(kernel)}-D window {list(kernel)} on a "
                              f"{nd}-D input of shape {list(x.shape)}")

        def lift(v: list[int]) -> list[int]:
            return [1] + list(v) if nd == 1 else list(v)

        kernel = tuple(lift(kernel))
        if min(kernel) < 1:
            raise DynfixError(f"{what}: window {list(kernel)} must be positive")
        stride = _pair(lift(at.ints("strides", [1] * nd)), what, "strides")
        dil = _pair(lift(at.ints("dilations", [1] * nd)), what, "dilations")
        mode = at.text("auto_pad", "NOTSET")
        if mode == "NOTSET":
            p = at.ints("pads", [0] * (2 * nd))
            if len(p) != 2 * nd or min(p) < 0:
                raise DynfixError(f"{what}: pads must be {2 * nd} non-negative integers, "
                                  f"got {p}")
            pads = (0, p[0], 0, p[1]) if nd == 1 else tuple(p)
        else:
            pads = _auto_pads(mode, x.dims[1:], kernel, stride, dil, what)
        return dict(kernel=kernel, stride=stride, pads=pads, dilation=dil)

    def to_shape(self, node, x: _Tensor, shape: tuple[int, ...], what: str):
        """A reshape of the data: a no-op, a flatten to N x F, one that only adds or drops
        unit axes (a view of the same IR tensor), or unsupported."""
        shape = tuple(int(d) for d in shape)
        axes = _align(x, shape) if x.held in (None, "perm", "cols") else None
        if shape == x.shape:
            self.alias(node, x)
        elif len(shape) == 2 and x.axes[0] == BATCH and shape[0] == x.shape[0] \
                and len(x.dims) > 1:
            if not x.held and not x.in_order():
                raise DynfixError(f"{what}: flattens a {list(x.shape)} tensor whose axes are "
                                  f"not in the channels-first order")
            t = self.add(Flatten, node, [x], what)
            if x.perm and np.any(flat_order(_untransposed((1,) + x.dims, x.perm), x.perm)
                                 != np.arange(shape[1])):
                t = replace(t, held="cols", origin=x.origin)
            self.bind(node, t)
        elif axes is not None:
            self.view(node, x, shape, axes, what)
        else:
            after = f" (after {x.origin})" if x.held else ""
            raise DynfixError(f"{what}: reshaping {list(x.shape)} to {list(shape)}{after} "
                              f"is not supported; only flattening to N x F and adding or "
                              f"removing axes of size 1")

    def op_Transpose(self, node, what):
        """One that keeps each input's values in order (it moves unit axes, or the batch
        axis of N x F features) is a view of the same tensor (the channels-first
        transpose of an NHWC model's input among them); any other that keeps the batch
        axis first is held back, folded into the Flatten/Reshape + Gemm/MatMul after it."""
        x, at = self.x(node), attrs(node, what)
        rank = len(x.shape)
        perm = at.ints("perm", list(range(rank))[::-1])
        if sorted(perm) != list(range(rank)):
            raise DynfixError(f"{what}: perm {perm} is not a permutation of {rank} axes")
        if perm == sorted(perm):
            self.alias(node, x)
            return
        axes = tuple(x.axes[p] for p in perm)
        shape = tuple(x.shape[p] for p in perm)
        order = [a for a in axes if a is not None and a != BATCH]
        if order == sorted(order) and (axes[0] == BATCH or len(x.dims) == 1):
            self.view(node, x, shape, axes, what)
            return
        if axes[0] != BATCH:
            raise DynfixError(f"{what}: moves the batch axis (perm {perm}); dynfix folds "
                              f"only transposes that keep it first (or that move it around "
                              f"N x F features)")
        # over the IR axes: the missing unit ones first, then the others in their new order
        new = [a for a in range(len(x.dims)) if a not in order] + order
        q = (0,) + tuple(a + 1 for a in new)
        full = compose(x.perm, q) if x.perm else q
        layer = HeldTranspose(self.unique(node.name or f"transpose{self.count}"), (x.ir,),
                              perm=q)
        view = (shape, tuple(a if a in (None, BATCH) else new.index(a) for a in axes))
        if full == tuple(range(len(q))):
            self.hold(node, layer, x, None, view=view)
        else:
            self.hold(node, layer, x, "perm", perm=full, view=view)

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
        if value != 0 or rank not in (3, 4) or any(pads[i] for i in (0, 1, rank, rank + 1)) \
                or min(pads) < 0:
            raise DynfixError(f"{what}: only a zero Pad of H and W of an N x C x H x W tensor "
                              f"(or of L of an N x C x L one) is supported (folded into the "
                              f"Conv after it); this one pads {list(x.shape)} by {pads} with "
                              f"{value}")
        self.spatial(x, what, "Pads")
        more = (pads[2], pads[3], pads[6], pads[7]) if rank == 4 else (0, pads[2], 0, pads[5])
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
    proto = strip_file(file.read(path), path.name)   # QONNX Quant nodes: folded
    with np.errstate(all="ignore"):  # overflows surface as NaN/Inf, which validate rejects
        return _Importer(proto, path).run()
