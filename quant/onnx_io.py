"""ONNX import into the model IR, and an ONNX writer for IR models.

:func:`load_onnx` reads what ``torch.onnx.export`` writes and what public model zoos hold
(opset 9 and newer; 7 and 8 load where their operators agree). It works in three steps:

1. read the file (weights held in external data files are memory-mapped, not copied) and
   keep only the nodes that reach the graph output;
2. check every node's operator before any other work: all unsupported nodes are reported in
   one :class:`~dynfix.errors.DynfixError`;
3. walk the nodes in order, folding constant subgraphs (:mod:`.onnx_fold`) and turning the
   data path into IR layers. BatchNormalization and per-channel Add/Sub/Mul/Div fold into the
   Conv/Linear before them (else they become an ``Affine`` layer); MatMul + Add becomes one
   Linear; Identity, Dropout and no-op reshapes disappear.

:func:`save_onnx` (from :mod:`.onnx_write`) writes a standard opset-13 graph for an IR model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from dynfix.errors import DynfixError
from .ir import (Affine, AvgPool2d, Conv2d, Flatten, GlobalAvgPool, Layer, Linear, MaxPool2d,
                 Model, ReLU, Softmax)
from .ir import _check_param_shapes as check_param_shapes
from .onnx_fold import FOLD_OPS, attrs, fold, node_label, reshape_target, tensor_to_array
from .onnx_write import WRITE_OPSET, save_onnx, to_onnx  # noqa: F401  (re-exported)

#: Operators that become (or disappear into) IR layers.
LAYER_OPS = frozenset({"Conv", "Gemm", "MatMul", "Relu", "MaxPool", "AveragePool",
                       "GlobalAveragePool", "GlobalMaxPool", "Flatten", "BatchNormalization",
                       "Dropout", "Softmax", "ReduceMean"})
SUPPORTED_OPS = LAYER_OPS | FOLD_OPS
BINARY_OPS = frozenset({"Add", "Sub", "Mul", "Div"})
MIN_INPUTS = {"Conv": 2, "Gemm": 2, "MatMul": 2, "BatchNormalization": 5,
              **{op: 2 for op in BINARY_OPS}}
MIN_OPSET = 7

_EXT_DTYPES = {TensorProto.FLOAT: "<f4", TensorProto.DOUBLE: "<f8", TensorProto.FLOAT16: "<f2",
               TensorProto.INT64: "<i8", TensorProto.INT32: "<i4"}


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


# ----------------------------------------------------------------------------- reading

def _read(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise DynfixError(f"model file {str(path)!r} does not exist")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError, onnx ValueError/OSError
        raise DynfixError(f"cannot read {path.name}: not a valid ONNX file "
                          f"({_one_line(e)})") from None
    if not proto.graph.node:
        raise DynfixError(f"{path.name}: the ONNX graph has no nodes (not an ONNX model?)")
    _check_names(proto.graph, path.name)
    return proto


def _check_names(graph: onnx.GraphProto, name: str) -> None:
    """Protobuf hands out invalid UTF-8 in string fields as bytes: reject such files."""
    texts = [graph.name]
    for node in graph.node:
        texts += [node.name, node.op_type, node.domain, *node.input, *node.output]
        texts += [a.name for a in node.attribute]
    texts += [t.name for t in graph.initializer]
    texts += [v.name for v in (*graph.input, *graph.output)]
    if not all(isinstance(t, str) for t in texts):
        raise DynfixError(f"{name}: corrupt ONNX file (a name is not valid UTF-8 text)")


def _opset(proto: onnx.ModelProto, name: str) -> int:
    versions = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise DynfixError(f"{name}: the model declares no ai.onnx opset")
    if versions[0] < MIN_OPSET:
        raise DynfixError(f"{name}: opset {versions[0]} is too old; dynfix reads opset "
                          f"{MIN_OPSET} and newer (re-export with a newer exporter)")
    return int(versions[0])


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


def _node_problem(node: onnx.NodeProto) -> str | None:
    """Why a node cannot be imported, judged from its operator and attributes alone."""
    op = node.op_type
    if node.domain not in ("", "ai.onnx") or op not in SUPPORTED_OPS:
        return f"{op}" if node.domain in ("", "ai.onnx") else f"{node.domain}.{op}"
    at = attrs(node)
    if op == "Conv" and at.int("group", 1) != 1:
        return f"Conv with group={at.int('group')}"
    if op == "Gemm" and at.int("transA", 0) != 0:
        return "Gemm with transA=1"
    if op in ("MaxPool", "AveragePool") and any(d != 1 for d in at.ints("dilations", [])):
        return f"{op} with dilations={at.ints('dilations')}"
    if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
        return "MaxPool with an Indices output"
    if op == "BatchNormalization" and at.int("training_mode", 0):
        return "BatchNormalization in training mode"
    return None


def _check_supported(nodes, name: str) -> None:
    bad = []
    for i, node in nodes:
        problem = _node_problem(node)
        if problem:
            bad.append(f"{node.name or f'<unnamed node #{i}>'} ({problem})")
    if bad:
        raise DynfixError(f"{name}: {len(bad)} unsupported node{'s' * (len(bad) > 1)}: "
                          + ", ".join(bad))


def _input_shape(graph: onnx.GraphProto, name: str, inits: set[str]):
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise DynfixError(f"{name}: the graph has {len(inputs)} data inputs; dynfix needs "
                          f"exactly one")
    vi = inputs[0]
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or tt.elem_type != TensorProto.FLOAT:
        raise DynfixError(f"{name}: input {vi.name!r} is not a float32 tensor")
    if not tt.HasField("shape"):
        raise DynfixError(f"{name}: input {vi.name!r} has no shape; dynfix needs a static "
                          f"N x C x H x W (or N x F) input")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    shown = "x".join("?" if d is None else str(d) for d in dims)
    if len(dims) < 2 or any(d is None or d < 1 for d in dims[1:]):
        raise DynfixError(f"{name}: input {vi.name!r} has shape {shown}; dynfix needs a "
                          f"static N x C x H x W (or N x F) input, only N may be symbolic")
    batch = dims[0] if dims[0] and dims[0] > 0 else 1
    return vi.name, (batch,) + tuple(int(d) for d in dims[1:])


@dataclass
class _Tensor:
    """A data-path tensor: the layer that made it (-1: the input), its version, its shape."""

    layer: int
    version: int
    shape: tuple[int, ...]  # with the batch dimension


class _Importer:
    """One ONNX graph -> IR layers (see the module docstring)."""

    def __init__(self, proto: onnx.ModelProto, path: Path):
        self.path, self.name = path, path.name
        self.graph = proto.graph
        self.opset = _opset(proto, self.name)
        self.inits = {t.name: t for t in self.graph.initializer}
        self.consts: dict[str, np.ndarray] = {}
        self.data: dict[str, _Tensor] = {}
        self.layers: list[Layer] = []
        self.versions: list[int] = []
        self.taken: set[str] = set()

    # -- constants
    def is_const(self, name: str) -> bool:
        return name in self.consts or name in self.inits

    def const(self, name: str, what: str) -> np.ndarray:
        if name not in self.consts:
            if name not in self.inits:
                raise DynfixError(f"{what}: input {name!r} must be a constant (an initializer)")
            t = self.inits[name]
            arr = (self._external(t) if t.data_location == TensorProto.EXTERNAL
                   else tensor_to_array(t))
            self.consts[name] = arr
        return self.consts[name]

    def _external(self, t: TensorProto) -> np.ndarray:
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        what = f"{self.name}: tensor {t.name!r}"
        if not loc or Path(loc).is_absolute() or ".." in Path(loc).parts:
            raise DynfixError(f"{what}: invalid external data location {loc!r}")
        dtype = _EXT_DTYPES.get(t.data_type)
        if dtype is None:
            raise DynfixError(f"{what}: external data of type {t.data_type} not supported")
        file = self.path.parent / loc
        shape = tuple(int(d) for d in t.dims)
        try:
            offset = int(info.get("offset", 0))
            count = int(np.prod(shape, dtype=np.int64))
            size = file.stat().st_size
            if min(shape, default=1) < 0 or offset < 0 \
                    or offset + count * np.dtype(dtype).itemsize > size:
                raise DynfixError(f"{what}: external data in {loc!r} is truncated")
            if count == 0:
                return np.zeros(shape, dtype)
            return np.memmap(file, dtype=dtype, mode="r", offset=offset, shape=shape)
        except DynfixError:
            raise
        except (OSError, ValueError) as e:
            raise DynfixError(f"{what}: cannot read external data {loc!r} "
                              f"({_one_line(e)})") from None

    def weights(self, name: str, what: str, rank: int | None = None) -> np.ndarray:
        arr = self.const(name, what)
        if arr.dtype.kind != "f":
            raise DynfixError(f"{what}: parameter {name!r} has type {arr.dtype}, expected "
                              f"float")
        if rank is not None and arr.ndim != rank:
            raise DynfixError(f"{what}: parameter {name!r} has shape {arr.shape}, expected "
                              f"rank {rank}")
        return arr if arr.dtype == np.float32 else arr.astype(np.float32)

    # -- layers
    def unique(self, base: str) -> str:
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name

    def latest(self, x: _Tensor, what: str) -> bool:
        """Check ``x`` is the newest data tensor (graphs must be chains); True if a layer."""
        last = len(self.layers) - 1
        if x.layer != last or (last >= 0 and x.version != self.versions[last]):
            raise DynfixError(f"{what}: reads a tensor that another branch also reads; only "
                              f"sequential chains are supported (no residual/concat yet)")
        return last >= 0

    def add(self, cls: type[Layer], node: onnx.NodeProto, x: _Tensor, what: str,
            suffix: str = "", **kw) -> None:
        self.latest(x, what)
        prev = self.layers[-1].name if self.layers else self.input_name
        base = node.name or f"{node.op_type.lower()}{len(self.layers)}"
        layer = cls(self.unique(base + suffix), (prev,), **kw)
        check_param_shapes(layer)
        shape = tuple(int(d) for d in layer.infer(x.shape[1:]))
        layer.out_shape = shape
        self.layers.append(layer)
        self.versions.append(0)
        self.data[node.output[0]] = _Tensor(len(self.layers) - 1, 0, (x.shape[0],) + shape)

    def alias(self, node: onnx.NodeProto, x: _Tensor) -> None:
        self.data[node.output[0]] = x

    def affine(self, node, x: _Tensor, scale: np.ndarray, shift: np.ndarray, what: str):
        """Apply y = scale * x + shift per channel: fold into the layer before, or add one."""
        c = x.shape[1]
        scale = np.broadcast_to(np.asarray(scale, np.float64), (c,))
        shift = np.broadcast_to(np.asarray(shift, np.float64), (c,))
        if not (np.all(np.isfinite(scale)) and np.all(np.isfinite(shift))):
            raise DynfixError(f"{what}: has NaN/Inf parameters")
        prev = self.layers[-1] if self.latest(x, what) else None
        if isinstance(prev, (Conv2d, Linear)):
            w = prev.weight.astype(np.float64)
            prev.weight = (w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32)
            b = 0.0 if prev.bias is None else prev.bias.astype(np.float64)
            prev.bias = (b * scale + shift).astype(np.float32)
        elif isinstance(prev, Affine):
            prev.scale = (prev.scale.astype(np.float64) * scale).astype(np.float32)
            prev.shift = (prev.shift.astype(np.float64) * scale + shift).astype(np.float32)
        else:
            self.add(Affine, node, x, what, scale=scale.astype(np.float32),
                     shift=shift.astype(np.float32))
            return
        self.versions[-1] += 1
        self.data[node.output[0]] = _Tensor(x.layer, self.versions[-1], x.shape)

    # -- the walk
    def run(self) -> Model:
        nodes = _live_nodes(self.graph, self.name)
        _check_supported(nodes, self.name)
        self.input_name, in_shape = _input_shape(self.graph, self.name, set(self.inits))
        self.taken.add(self.input_name)
        self.data[self.input_name] = _Tensor(-1, 0, in_shape)
        for i, node in nodes:
            what = f"{self.name}: node {node_label(node, i)} ({node.op_type})"
            for t in node.input:
                if t and not (t in self.data or self.is_const(t)):
                    raise DynfixError(f"{what}: input {t!r} is not produced by an earlier "
                                      f"node")
            if not node.output or not node.output[0]:
                raise DynfixError(f"{what}: has no output")
            data_in = [t for t in node.input if t in self.data]
            if node.op_type in FOLD_OPS and (not data_in or node.op_type == "Shape"):
                vals = [self.const(t, what) if t and t not in self.data else None
                        for t in node.input]
                out = fold(node, vals, what, lambda t: self.data[t].shape)
                self.consts[node.output[0]] = np.asarray(out)
                continue
            if not data_in:
                raise DynfixError(f"{what}: computes on constants only, which dynfix does "
                                  f"not fold for this operator")
            need = MIN_INPUTS.get(node.op_type, 1)
            if len(node.input) < need or not all(node.input[:need]):
                raise DynfixError(f"{what}: needs {need} inputs")
            if node.input[0] not in self.data and node.op_type not in BINARY_OPS:
                raise DynfixError(f"{what}: the data tensor must be its first input")
            getattr(self, f"op_{node.op_type}", self.op_other)(node, what)
        return self.finish()

    def finish(self) -> Model:
        out = self.graph.output[0].name
        if out not in self.data:
            raise DynfixError(f"{self.name}: the graph output {out!r} is a constant")
        x = self.data[out]
        if not self.latest(x, f"{self.name}: graph output {out!r}"):
            raise DynfixError(f"{self.name}: the graph has no layers")
        for layer in self.layers[:-1]:
            if isinstance(layer, Softmax):
                raise DynfixError(f"{self.name}: Softmax {layer.name!r} is not the last "
                                  f"layer; only a trailing Softmax is supported")
        stem = self.path.stem
        name = self.graph.name if self.graph.name not in ("", "main_graph", "torch_jit",
                                                          "torch-jit-export") else stem
        return Model(name, self.input_name, self.data[self.input_name].shape[1:], self.layers)

    # -- operators on the data path (x = the data input)
    def x(self, node, pos: int = 0) -> _Tensor:
        return self.data[node.input[pos]]

    def opt(self, node, pos: int, what: str) -> np.ndarray | None:
        return self.weights(node.input[pos], what) if len(node.input) > pos \
            and node.input[pos] else None

    def op_Conv(self, node, what):
        x, at = self.x(node), attrs(node, what)
        w = self.weights(node.input[1], what, rank=4)
        bias = self.opt(node, 2, what)
        ks = tuple(at.ints("kernel_shape", list(w.shape[2:])))
        if ks != w.shape[2:]:
            raise DynfixError(f"{what}: kernel_shape {list(ks)} disagrees with weights "
                              f"{w.shape}")
        stride = _pair(at.ints("strides", [1, 1]), what, "strides")
        dil = _pair(at.ints("dilations", [1, 1]), what, "dilations")
        pads = _pads(at, x.shape, w.shape[2:], stride, dil, what)
        self.add(Conv2d, node, x, what, weight=w, bias=bias, stride=stride, pads=pads,
                 dilation=dil)

    def op_Gemm(self, node, what):
        x, at = self.x(node), attrs(node, what)
        b = self.weights(node.input[1], what, rank=2)
        w = b if at.int("transB", 0) else b.T
        alpha, beta = at.float("alpha", 1.0), at.float("beta", 1.0)
        if alpha != 1.0:
            w = (w.astype(np.float64) * alpha).astype(np.float32)
        c = self.opt(node, 2, what)
        bias = None
        if c is not None:
            try:
                c = np.broadcast_to(c, (1, w.shape[0]))[0]
            except ValueError:
                raise DynfixError(f"{what}: bias of shape {c.shape} does not fit "
                                  f"{w.shape[0]} outputs") from None
            bias = (c.astype(np.float64) * beta).astype(np.float32)
        self.add(Linear, node, x, what, weight=w, bias=bias)

    def op_MatMul(self, node, what):
        if node.input[0] not in self.data:
            raise DynfixError(f"{what}: only data x weights products are supported")
        x = self.x(node)
        if len(x.shape) != 2:
            raise DynfixError(f"{what}: MatMul on a {len(x.shape)}-D tensor; only N x F "
                              f"inputs are supported")
        w = self.weights(node.input[1], what, rank=2)
        self.add(Linear, node, x, what, weight=w.T, bias=None)

    def op_Relu(self, node, what):
        self.add(ReLU, node, self.x(node), what)

    def _pool(self, node, what, cls, **extra):
        x, at = self.x(node), attrs(node, what)
        ks = tuple(at.ints("kernel_shape", []))
        if len(ks) != 2 or min(ks) < 1:
            raise DynfixError(f"{what}: only 2-D pooling windows are supported, got "
                              f"kernel_shape {list(ks)}")
        stride = _pair(at.ints("strides", [1, 1]), what, "strides")
        pads = _pads(at, x.shape, ks, stride, (1, 1), what)
        self.add(cls, node, x, what, kernel=ks, stride=stride, pads=pads,
                 ceil_mode=bool(at.int("ceil_mode", 0)), **extra)

    def op_MaxPool(self, node, what):
        self._pool(node, what, MaxPool2d)

    def op_AveragePool(self, node, what):
        cip = bool(attrs(node, what).int("count_include_pad", 0))
        self._pool(node, what, AvgPool2d, count_include_pad=cip)

    def op_GlobalAveragePool(self, node, what):
        self.add(GlobalAvgPool, node, self.x(node), what)

    def op_GlobalMaxPool(self, node, what):
        x = self.x(node)
        if len(x.shape) != 4:
            raise DynfixError(f"{what}: expects an N x C x H x W input")
        self.add(MaxPool2d, node, x, what, kernel=x.shape[2:], stride=(1, 1))

    def op_ReduceMean(self, node, what):
        """A mean over H and W (what exporters write for adaptive_avg_pool2d(x, 1))."""
        x, at = self.x(node), attrs(node, what)
        axes = _const_axes(self, node, what)
        rank = len(x.shape)
        if rank != 4 or axes is None or sorted(a % rank for a in axes if -rank <= a < rank) \
                != [2, 3] or at.int("noop_with_empty_axes", 0):
            raise DynfixError(f"{what}: only a mean over H and W of an N x C x H x W tensor "
                              f"is supported")
        self.add(GlobalAvgPool, node, x, what)
        if not at.int("keepdims", 1):
            self.add(Flatten, node, self.data[node.output[0]], what, suffix="_flatten")

    def _to_shape(self, node, x: _Tensor, shape: tuple[int, ...], what: str):
        """A reshape of the data: a no-op, a flatten to N x F, or unsupported."""
        if shape == x.shape:
            self.alias(node, x)
        elif len(shape) == 2 and shape[0] == x.shape[0] and len(x.shape) > 2:
            self.add(Flatten, node, x, what)
        else:
            raise DynfixError(f"{what}: reshaping {list(x.shape)} to {list(shape)} is not "
                              f"supported; only flattening to N x F")

    def op_Flatten(self, node, what):
        x = self.x(node)
        axis = attrs(node, what).int("axis", 1)
        axis = axis + len(x.shape) if axis < 0 else axis
        if axis != 1:
            raise DynfixError(f"{what}: Flatten with axis={axis}; only axis=1 is supported")
        self._to_shape(node, x, (x.shape[0], int(np.prod(x.shape[1:]))), what)

    def op_Reshape(self, node, what):
        x, at = self.x(node), attrs(node, what)
        if "shape" in at:
            target = at.ints("shape")
        elif len(node.input) > 1 and node.input[1] and node.input[1] not in self.data:
            target = [int(v) for v in np.asarray(self.const(node.input[1], what)).reshape(-1)]
        else:
            raise DynfixError(f"{what}: the target shape must be constant")
        shape = reshape_target(x.shape, target, at.int("allowzero", 0), what)
        self._to_shape(node, x, shape, what)

    def op_Squeeze(self, node, what):
        x = self.x(node)
        axes = _const_axes(self, node, what)
        rank = len(x.shape)
        axes = [a % rank for a in axes if -rank <= a < rank] if axes is not None else \
            [i for i in range(1, rank) if x.shape[i] == 1]
        if any(x.shape[a] != 1 for a in axes):
            raise DynfixError(f"{what}: squeezes a dimension that is not 1")
        self._to_shape(node, x, tuple(d for i, d in enumerate(x.shape) if i not in axes),
                       what)

    def op_Unsqueeze(self, node, what):
        raise DynfixError(f"{what}: adding dimensions to the data is not supported")

    def op_BatchNormalization(self, node, what):
        x, at = self.x(node), attrs(node, what)
        if len(node.input) < 5:
            raise DynfixError(f"{what}: needs scale, B, mean and var inputs")
        s, b, m, v = (self.weights(t, what).astype(np.float64).reshape(-1)
                      for t in node.input[1:5])
        eps = at.float("epsilon", 1e-5)
        c = x.shape[1]
        if not all(len(a) == c for a in (s, b, m, v)):
            raise DynfixError(f"{what}: parameters do not have {c} channels")
        if not all(np.all(np.isfinite(a)) for a in (s, b, m, v)):
            raise DynfixError(f"{what}: has NaN/Inf parameters")
        if np.any(v + eps <= 0):
            raise DynfixError(f"{what}: variance + epsilon is not positive")
        scale = s / np.sqrt(v + eps)
        self.affine(node, x, scale, b - m * scale, what)

    def _binary(self, node, what):
        a, b = node.input[0], node.input[1] if len(node.input) > 1 else ""
        if a in self.data and b in self.data:
            raise DynfixError(f"{what}: {node.op_type} of two data tensors (residual "
                              f"connection) is not supported yet")
        data_first = a in self.data
        x = self.data[a if data_first else b]
        c = np.asarray(self.const(b if data_first else a, what))
        if c.dtype.kind != "f":
            raise DynfixError(f"{what}: constant operand is not float")
        v = _per_channel(c, x.shape, what)
        op = node.op_type
        if op == "Add":
            self.affine(node, x, 1.0, v, what)
        elif op == "Sub":
            self.affine(node, x, 1.0 if data_first else -1.0, -v if data_first else v, what)
        elif op == "Mul":
            self.affine(node, x, v, 0.0, what)
        elif data_first:  # Div
            if np.any(v == 0):
                raise DynfixError(f"{what}: division by zero")
            self.affine(node, x, 1.0 / v, 0.0, what)
        else:
            raise DynfixError(f"{what}: dividing a constant by the data is not supported")

    op_Add = op_Sub = op_Mul = op_Div = _binary

    def op_Identity(self, node, what):
        self.alias(node, self.x(node))

    def op_Dropout(self, node, what):
        if len(node.output) > 1 and node.output[1]:
            raise DynfixError(f"{what}: the Dropout mask output is not supported")
        self.alias(node, self.x(node))

    def op_Cast(self, node, what):
        if attrs(node, what).int("to", 0) != TensorProto.FLOAT:
            raise DynfixError(f"{what}: casting the data to another type is not supported")
        self.alias(node, self.x(node))

    def op_Softmax(self, node, what):
        x = self.x(node)
        axis = attrs(node, what).int("axis", 1 if self.opset < 13 else -1)
        if len(x.shape) != 2 or axis not in (1, -1):
            raise DynfixError(f"{what}: only a Softmax over the classes of an N x F tensor "
                              f"is supported")
        self.add(Softmax, node, x, what)

    def op_other(self, node, what):
        raise DynfixError(f"{what}: this operator is only supported on constants, not on "
                          f"the data path")


def _pair(v, what: str, attr: str) -> tuple[int, int]:
    v = [int(a) for a in v]
    if len(v) != 2 or min(v) < 1:
        raise DynfixError(f"{what}: {attr} must be two positive integers, got {v}")
    return (v[0], v[1])


def _pads(at: dict, x_shape, kernel, stride, dilation, what) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) from ``pads`` or ``auto_pad``."""
    mode = at.get("auto_pad", b"NOTSET")
    mode = mode.decode(errors="replace") if isinstance(mode, bytes) else str(mode)
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
    try:
        if np.broadcast_shapes(c.shape, full) != full:
            raise ValueError
        cb = np.broadcast_to(c, full)[0].reshape(shape[1], -1)
    except ValueError:
        raise DynfixError(f"{what}: constant of shape {c.shape} does not broadcast to the "
                          f"data {list(shape)}") from None
    if not np.all(cb == cb[:, :1]):
        raise DynfixError(f"{what}: only per-channel constants are supported")
    return cb[:, 0].astype(np.float64)


def _const_axes(imp: _Importer, node, what) -> list[int] | None:
    at = attrs(node, what)
    if "axes" in at:
        return at.ints("axes")
    if len(node.input) > 1 and node.input[1]:
        return [int(a) for a in np.asarray(imp.const(node.input[1], what)).reshape(-1)]
    return None


def load_onnx(path: str | Path) -> Model:
    """Load an ONNX file into the IR; every user error is one DynfixError line."""
    path = Path(path)
    proto = _read(path)
    with np.errstate(all="ignore"):  # overflows surface as NaN/Inf, which validate rejects
        return _Importer(proto, path).run()
