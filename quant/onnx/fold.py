"""Constant folding for the ONNX loader: the shape and weight arithmetic exporters emit.

PyTorch writes ``x.view(x.size(0), -1)`` as ``Shape -> Gather -> Unsqueeze -> Concat ->
Reshape``; other exporters add ``Constant``, ``ConstantOfShape``, ``Cast``, ``Slice``, small
integer arithmetic, or store weights transposed behind a ``Transpose``. All of these only
compute on constants (or on a tensor's shape, which is static here), so the loader evaluates
them at load time with onnx's own reference evaluator (:mod:`onnx.reference`), which knows
every operator version's semantics (attributes that became inputs, and so on).

:func:`fold` evaluates one node whose inputs are all known constants. Output sizes are bounded
before anything is evaluated, so that a corrupt file cannot make the loader allocate
gigabytes.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from onnx import NodeProto, TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from dynfix.errors import DynfixError

#: Ops whose output size is at most their inputs' (apart from the guarded ones below).
_BOUNDED_OPS = frozenset({"Constant", "Shape", "Size", "Gather", "Unsqueeze", "Squeeze",
                          "Concat", "Cast", "Slice", "Reshape", "Flatten", "Transpose",
                          "Identity", "Neg", "Abs", "Sqrt", "Reciprocal", "Floor", "Ceil",
                          "Not", "Relu", "Clip", "ReduceProd", "ReduceSum", "ReduceMax",
                          "ReduceMin"})
#: Element-wise ops whose output has the broadcast shape of their inputs.
_BROADCAST_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Min", "Max", "Sum", "Equal",
                            "Less", "Greater", "And", "Or", "Where", "Mod"})
#: Ops evaluated at load time when all their inputs are constant.
FOLD_OPS = _BOUNDED_OPS | _BROADCAST_OPS | {"ConstantOfShape", "Expand", "Range"}

#: Largest constant the folder will create (elements); shape tensors are tiny.
MAX_FOLD_ELEMENTS = 1 << 22


def one_line(e: BaseException) -> str:
    """An exception's message as one short line (for DynfixError texts)."""
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


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

    def text(self, key: str, default: str) -> str:
        v = self.get(key, default)
        if not isinstance(v, (bytes, str)):
            self._bad(key, "a string")
        return v.decode(errors="replace") if isinstance(v, bytes) else v


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


def _check_size(shape, what: str) -> None:
    shape = [int(d) for d in shape]
    if any(d < 0 for d in shape):
        raise DynfixError(f"{what}: negative dimension in {shape}")
    if int(np.prod(shape, dtype=object)) > MAX_FOLD_ELEMENTS:
        raise DynfixError(f"{what}: constant of shape {tuple(shape)} is too large to fold")


def _guard(op: str, inputs: list[np.ndarray | None], what: str) -> None:
    """Refuse a fold whose result would be larger than MAX_FOLD_ELEMENTS."""
    given = [x for x in inputs if x is not None]
    if op in _BOUNDED_OPS:
        if op == "Gather" and len(given) == 2:  # at most |data| * |indices| elements
            _check_size([given[0].size, given[1].size], what)
        return
    try:
        if op in _BROADCAST_OPS:
            _check_size(np.broadcast_shapes(*(x.shape for x in given)), what)
        elif op == "ConstantOfShape":
            _check_size(np.asarray(given[0]).reshape(-1), what)
        elif op == "Expand":
            target = [int(d) for d in np.asarray(given[1]).reshape(-1)]
            _check_size(np.broadcast_shapes(given[0].shape, tuple(max(d, 1) for d in target)),
                        what)
        elif op == "Range":
            start, limit, delta = (float(np.asarray(x).reshape(-1)[0]) for x in given[:3])
            count = np.ceil((limit - start) / delta) if delta else np.inf
            _check_size([max(count, 0) if np.isfinite(count) else 1 << 62], what)
    except DynfixError:
        raise
    except (ValueError, TypeError, IndexError, OverflowError) as e:
        raise DynfixError(f"{what}: cannot fold ({one_line(e)})") from None


def _evaluate(node: NodeProto, inputs: list[np.ndarray | None], opset: int) -> np.ndarray:
    """Run one node with onnx's reference evaluator, in a model of the file's opset."""
    names = [f"i{k}" if x is not None else "" for k, x in enumerate(inputs)]
    one = NodeProto()
    one.CopyFrom(node)
    del one.input[:], one.output[:]
    one.input.extend(names)
    one.output.extend(["y"] + [""] * (len(node.output) - 1))
    graph = helper.make_graph(
        [one], "fold", [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None)
                        for n in names if n],
        [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    feeds = {n: x for n, x in zip(names, inputs) if n}
    return np.asarray(ReferenceEvaluator(model).run(None, feeds)[0])


def fold(node: NodeProto, inputs: list[np.ndarray | None], what: str, opset: int,
         shape_of: Callable[[str], tuple[int, ...]] | None = None) -> np.ndarray:
    """Evaluate ``node`` on constant ``inputs`` (None for an omitted optional input).

    For ``Shape`` the input may be a runtime tensor: ``shape_of(name)`` gives its static
    shape (with the batch dimension).
    """
    op = node.op_type
    at = attrs(node, what)  # well-formed, and no tensor attribute with external data
    if op == "Shape":
        if not node.input or not node.input[0]:
            raise DynfixError(f"{what}: missing input")
        shape = inputs[0].shape if inputs[0] is not None else shape_of(node.input[0])
        start, end = at.int("start", 0), at.get("end")
        return np.array(shape, np.int64)[start:None if end is None else at.int("end")]
    if op != "Constant" and (not inputs or inputs[0] is None):
        raise DynfixError(f"{what}: missing input")
    _guard(op, inputs, what)
    try:
        out = _evaluate(node, inputs, opset)
    except DynfixError:
        raise
    except Exception as e:  # the evaluator raises whatever numpy or its checks raise
        raise DynfixError(f"{what}: cannot fold ({type(e).__name__}: {one_line(e)})") \
            from None
    if out.dtype.kind not in "biuf" or out.size > MAX_FOLD_ELEMENTS:
        raise DynfixError(f"{what}: folds to a {out.dtype} constant of shape {out.shape}, "
                          f"which dynfix cannot use")
    return out
