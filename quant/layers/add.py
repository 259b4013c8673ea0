"""Add: the element-wise sum of two tensors (a residual connection).

Its integer form is not a plain layer's: the sum gets a format of its own
(``qspec.AddFormat``), the integer model aligns both inputs onto it and requantizes
(``int_model.add_sum``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dynfix.errors import DynfixError
from .base import EngineRole, Importer, Layer, ParamWriter, onnx_import, onnx_node, register


@register
@dataclass
class Add(Layer):
    """Element-wise sum of two tensors of equal shape (a residual connection)."""

    op: ClassVar[str] = "add"
    arity: ClassVar[int] = 2
    formatted: ClassVar[bool] = True
    engine: ClassVar[EngineRole] = EngineRole.RESIDUAL

    def infer(self, a, b):
        if tuple(a) != tuple(b):
            raise DynfixError(f"layer {self.name!r} (Add): input shapes differ: "
                              f"{self.inputs[0]!r} is {tuple(a)}, {self.inputs[1]!r} is "
                              f"{tuple(b)}")
        return a

    def forward(self, a, b):
        return (a + b).astype(np.float32, copy=False)

    def onnx_nodes(self, param: ParamWriter):
        return [onnx_node(self, "Add", self.inputs)]


@onnx_import("Add")
def import_add(imp: Importer, node, what: str) -> None:
    """Two data tensors: an Add layer; the data and a per-channel constant: a shift
    (folded into the layer before, or an Affine)."""
    a, b = node.input[0], node.input[1] if len(node.input) > 1 else ""
    if a in imp.data and b in imp.data:
        imp.add_data(node, [imp.data[a], imp.data[b]], what)
        return
    x, v, _ = imp.operand(node, what)
    imp.affine(node, x, 1.0, v, what)


@onnx_import("Sum")
def import_sum(imp: Importer, node, what: str) -> None:
    ins = [t for t in node.input if t]
    xs = [imp.data[t] for t in ins if t in imp.data]
    consts = [np.asarray(imp.const(t, what)) for t in ins if t not in imp.data]
    if not consts and len(xs) == 1:
        imp.alias(node, xs[0])
    elif not consts:
        imp.add_data(node, xs, what)
    elif len(xs) == 1 and all(c.dtype.kind == "f" for c in consts):
        shift = sum(imp.per_channel(c, xs[0].shape, what) for c in consts)
        imp.affine(node, xs[0], 1.0, shift, what)
    else:
        raise DynfixError(f"{what}: Sum of several data tensors and constants is not "
                          f"supported")
