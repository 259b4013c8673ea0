"""Constant folding for the ONNX loader: the shape-arithmetic ops exporters emit.

PyTorch writes ``x.view(x.size(0), -1)`` as ``Shape -> Gather -> Unsqueeze -> Concat ->
Reshape``; other exporters add ``Constant``, ``ConstantOfShape``, ``Cast``, ``Slice`` and
small integer arithmetic. All of these only compute on constants (or on a tensor's shape,
which is static here), so the loader evaluates them with numpy at load time.

:func:`fold` evaluates one node whose inputs are all known constants. Sizes are bounded so
that a corrupt file cannot make the loader allocate gigabytes.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper

from dynfix.errors import DynfixError

#: Ops evaluated at load time when all their inputs are constant.
FOLD_OPS = frozenset({"Constant", "ConstantOfShape", "Shape", "Gather", "Unsqueeze", "Squeeze",
                      "Concat", "Cast", "Slice", "Reshape", "Mul", "Add", "Sub", "Div",
                      "Identity"})

#: Largest constant the folder will create (elements); shape tensors are tiny.
MAX_FOLD_ELEMENTS = 1 << 22

_ONNX_DTYPES = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64,
                TensorProto.FLOAT16: np.float16, TensorProto.INT64: np.int64,
                TensorProto.INT32: np.int32, TensorProto.INT16: np.int16,
                TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8,
                TensorProto.BOOL: np.bool_}


def node_label(node: NodeProto, index: int) -> str:
    """How error messages name a node: its name, or its position when it has none."""
    return node.name or f"#{index} ({node.op_type})"


class Attrs(dict):
    """A node's attributes with typed getters: a wrong type is a DynfixError, not a crash."""

    where = "node"

    def _bad(self, key: str, kind: str):
        raise DynfixError(f"{self.where}: attribute {key!r} must be {kind}, got "
                          f"{self[key]!r:.40}")

    def int(self, key: str, default: int | None = None) -> int:
        v = self.get(key, default)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            self._bad(key, "an integer")
        return int(v)

    def float(self, key: str, default: float | None = None) -> float:
        v = self.get(key, default)
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)):
            self._bad(key, "a number")
        return float(v)

    def ints(self, key: str, default: list[int] | None = None) -> list[int]:
        v = self.get(key, default)
        if not isinstance(v, (list, tuple)) or not all(
                isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in v):
            self._bad(key, "a list of integers")
        return [int(a) for a in v]


def attrs(node: NodeProto, where: str | None = None) -> Attrs:
    """A node's attributes as Python values (ints, floats, lists, numpy arrays)."""
    out = Attrs()
    out.where = where or f"node {node.name!r}"
    for a in node.attribute:
        try:
            v = tensor_to_array(a.t) if a.type == a.TENSOR else helper.get_attribute_value(a)
        except DynfixError:
            raise
        except Exception as e:  # an attribute with an undefined or mismatched type
            raise DynfixError(f"node {node.name!r}: attribute {a.name!r} is malformed "
                              f"({e})") from None
        if not isinstance(v, (bytes, str, int, float, np.ndarray)):
            try:
                v = list(v)
            except TypeError:  # a graph or other message: kept as is
                pass
        out[a.name] = v
    return out


def tensor_to_array(t: TensorProto) -> np.ndarray:
    """An in-file tensor as a numpy array; malformed tensors raise DynfixError."""
    if t.data_location == TensorProto.EXTERNAL:
        raise DynfixError(f"tensor {t.name!r} refers to external data here, which is not "
                          f"supported for this tensor")
    try:
        return numpy_helper.to_array(t)
    except DynfixError:
        raise
    except Exception as e:  # onnx raises ValueError/TypeError/... for inconsistent tensors
        raise DynfixError(f"tensor {t.name!r} is malformed ({type(e).__name__}: {e})") \
            from None


def _check_size(shape, what: str) -> tuple[int, ...]:
    shape = tuple(int(d) for d in shape)
    if any(d < 0 for d in shape):
        raise DynfixError(f"{what}: negative dimension in {shape}")
    n = 1
    for d in shape:
        n *= d
    if n > MAX_FOLD_ELEMENTS:
        raise DynfixError(f"{what}: constant of shape {shape} is too large to fold")
    return shape


def _ints(a: np.ndarray | list | None) -> list[int]:
    return [] if a is None else [int(v) for v in np.asarray(a).reshape(-1)]


def _axes(node_attrs: Attrs, inputs: list, pos: int) -> list[int] | None:
    """Axes from an attribute (older opsets) or from input ``pos`` (opset 13+)."""
    if "axes" in node_attrs:
        return node_attrs.ints("axes")
    if len(inputs) > pos and inputs[pos] is not None:
        return _ints(inputs[pos])
    return None


def _norm_axis(axis: int, rank: int, what: str) -> int:
    if not -rank <= axis < rank:
        raise DynfixError(f"{what}: axis {axis} out of range for rank {rank}")
    return axis % rank


def reshape_target(in_shape: tuple[int, ...], target: list[int], allowzero: int,
                   what: str) -> tuple[int, ...]:
    """Resolve a Reshape target (0 copies a dimension, one -1 is inferred)."""
    out = []
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            if i >= len(in_shape):
                raise DynfixError(f"{what}: 0 in reshape target {target} has no input dim")
            d = in_shape[i]
        out.append(int(d))
    total = int(np.prod(in_shape, dtype=object))
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise DynfixError(f"{what}: invalid reshape target {target}")
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1], dtype=object))
        if known == 0 or total % known:
            raise DynfixError(f"{what}: cannot reshape {in_shape} to {target}")
        out[out.index(-1)] = total // known
    if int(np.prod(out, dtype=object)) != total:
        raise DynfixError(f"{what}: cannot reshape {in_shape} to {target}")
    return tuple(out)


def _slice(data: np.ndarray, starts, ends, axes, steps, what: str) -> np.ndarray:
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise DynfixError(f"{what}: starts/ends/axes/steps lengths differ")
    idx = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise DynfixError(f"{what}: slice step 0")
        idx[_norm_axis(a, data.ndim, what)] = slice(s, e, st)
    return data[tuple(idx)]


def _arith(op: str, a: np.ndarray, b: np.ndarray, what: str) -> np.ndarray:
    try:
        _check_size(np.broadcast_shapes(a.shape, b.shape), what)
    except ValueError:
        raise DynfixError(f"{what}: shapes {a.shape} and {b.shape} do not broadcast") \
            from None
    if op == "Add":
        return a + b
    if op == "Sub":
        return a - b
    if op == "Mul":
        return a * b
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        if np.any(b == 0):
            raise DynfixError(f"{what}: integer division by zero")
        return (np.trunc(a / b)).astype(np.result_type(a, b))
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / b


def fold(node: NodeProto, inputs: list[np.ndarray | None], what: str,
         shape_of: Callable[[str], tuple[int, ...]] | None = None) -> np.ndarray:
    """Evaluate ``node`` on constant ``inputs`` (None for an omitted optional input).

    For ``Shape`` the input may be a runtime tensor: ``shape_of(name)`` gives its static
    shape (with the batch dimension).
    """
    op = node.op_type
    at = attrs(node, what)
    if op == "Constant":
        if "value_float" in at:
            return np.array(at.float("value_float"), np.float32)
        if "value_int" in at:
            return np.array(at.int("value_int"), np.int64)
        if "value_ints" in at:
            return np.array(at.ints("value_ints"), np.int64)
        if "value_floats" in at:
            v = at["value_floats"]
            if not isinstance(v, list) or not all(isinstance(a, float) for a in v):
                at._bad("value_floats", "a list of numbers")
            return np.array(v, np.float32)
        if isinstance(at.get("value"), np.ndarray):
            return at["value"]
        raise DynfixError(f"{what}: Constant without a numeric value")
    if not node.input or not node.input[0]:
        raise DynfixError(f"{what}: missing input")
    if op == "Shape":
        shape = inputs[0].shape if inputs[0] is not None else shape_of(node.input[0])
        shape = np.array(shape, np.int64)
        start, end = at.int("start", 0), at.get("end")
        return shape[start:None if end is None else at.int("end")]
    if any(x is None for x in inputs[:1]):
        raise DynfixError(f"{what}: missing input")
    x = inputs[0]
    if op == "Identity":
        return x
    if op == "ConstantOfShape":
        shape = _check_size(_ints(x), what)
        value = at.get("value", np.zeros(1, np.float32))
        if not isinstance(value, np.ndarray) or value.size != 1:
            raise DynfixError(f"{what}: value must be a one-element tensor")
        return np.full(shape, value.reshape(()), dtype=value.dtype)
    if op == "Gather":
        if len(inputs) < 2 or inputs[1] is None:
            raise DynfixError(f"{what}: missing indices")
        axis = _norm_axis(at.int("axis", 0), max(x.ndim, 1), what)
        idx = inputs[1].astype(np.int64)
        n = x.shape[axis] if x.ndim else 0
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise DynfixError(f"{what}: Gather index out of range")
        return np.take(x, idx, axis=axis)
    if op == "Unsqueeze":
        axes = _axes(at, inputs, 1)
        if axes is None:
            raise DynfixError(f"{what}: Unsqueeze without axes")
        rank = x.ndim + len(axes)
        axes = sorted(_norm_axis(a, rank, what) for a in axes)
        if len(set(axes)) != len(axes):
            raise DynfixError(f"{what}: repeated axes")
        return np.expand_dims(x, tuple(axes)) if axes else x
    if op == "Squeeze":
        axes = _axes(at, inputs, 1)
        if axes is None:
            return np.squeeze(x)
        axes = tuple(sorted({_norm_axis(a, x.ndim, what) for a in axes}))
        if any(x.shape[a] != 1 for a in axes):
            raise DynfixError(f"{what}: cannot squeeze a dimension that is not 1")
        return np.squeeze(x, axis=axes)
    if op == "Concat":
        parts = [p for p in inputs if p is not None]
        if not parts or any(p.ndim != parts[0].ndim or p.ndim == 0 for p in parts):
            raise DynfixError(f"{what}: Concat inputs must have the same nonzero rank")
        axis = _norm_axis(at.int("axis", 0), parts[0].ndim, what)
        try:
            return np.concatenate(parts, axis=axis)
        except ValueError as e:
            raise DynfixError(f"{what}: {e}") from None
    if op == "Cast":
        dtype = _ONNX_DTYPES.get(at.int("to", -1))
        if dtype is None:
            raise DynfixError(f"{what}: Cast to unsupported type {at.get('to')}")
        with np.errstate(invalid="ignore", over="ignore"):
            return x.astype(dtype)
    if op == "Slice":
        if "starts" in at:  # opset < 10
            return _slice(x, at.ints("starts"), at.ints("ends", []), _axes(at, [], 9),
                          None, what)
        get = lambda i: _ints(inputs[i]) if len(inputs) > i and inputs[i] is not None \
            else None  # noqa: E731
        if get(1) is None or get(2) is None:
            raise DynfixError(f"{what}: Slice without starts/ends")
        return _slice(x, get(1), get(2), get(3), get(4), what)
    if op == "Reshape":
        if "shape" in at:  # opset < 5
            target = at.ints("shape")
        elif len(inputs) > 1 and inputs[1] is not None:
            target = _ints(inputs[1])
        else:
            raise DynfixError(f"{what}: Reshape without a target shape")
        return x.reshape(reshape_target(x.shape, target, at.int("allowzero", 0), what))
    if op in ("Add", "Sub", "Mul", "Div"):
        if len(inputs) < 2 or inputs[1] is None:
            raise DynfixError(f"{what}: missing second operand")
        return _arith(op, x, inputs[1], what)
    raise DynfixError(f"{what}: cannot fold op {op}")
