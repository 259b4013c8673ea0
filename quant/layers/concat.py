"""Concat: maps (or feature vectors) joined along the channel axis.

All inputs of a Concat share one map format, the Concat's: in the engine they are one map in
memory, each input's producer writing its channels at their offset (``docs/engine.md``,
"Concat"). The quantizer ties their formats (``quant/search.py``, :func:`tied_maps`), so
the integer model's Concat is a pure concatenation of the integers, like the float one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dynfix.errors import DynfixError
from .base import EngineRole, Importer, Layer, ParamWriter, onnx_import, onnx_node, register


@register
@dataclass
class Concat(Layer):
    """The inputs' channels one after another: C1 x H x W, C2 x H x W, ... give
    (C1 + C2 + ...) x H x W (flat inputs: F1 + F2 + ... features)."""

    op: ClassVar[str] = "concat"
    arity: ClassVar[int] = 0                    # two or more
    commutes_with_relu: ClassVar[bool] = True
    engine: ClassVar[EngineRole] = EngineRole.CONCAT

    def check(self):
        if len(self.inputs) < 2:
            raise DynfixError(f"layer {self.name!r} (Concat) needs two or more inputs, got "
                              f"{list(self.inputs)}")

    def infer(self, *shapes):
        rest = {tuple(s[1:]) for s in shapes}
        if len(rest) != 1:
            got = ", ".join(f"{t!r} is {tuple(s)}" for t, s in zip(self.inputs, shapes))
            raise DynfixError(f"layer {self.name!r} (Concat): its inputs differ in more than "
                              f"their channels: {got}")
        return (sum(int(s[0]) for s in shapes),) + tuple(shapes[0][1:])

    def offsets(self, shapes) -> list[int]:
        """The first channel of each input in the output (``shapes``: the inputs')."""
        return [int(v) for v in np.cumsum([0] + [int(s[0]) for s in shapes])[:-1]]

    def forward(self, *xs):
        return np.concatenate(xs, axis=1).astype(np.float32, copy=False)

    def forward_int(self, x, fmt):
        """``x``: the inputs' integers (a list), all in ``fmt``; the output keeps it."""
        return np.concatenate(x, axis=1)

    def onnx_nodes(self, param: ParamWriter):
        return [onnx_node(self, "Concat", self.inputs, axis=1)]


@onnx_import("Concat")
def import_concat(imp: Importer, node, what: str) -> None:
    """Data tensors joined along ONNX axis 1, their channels (N x C x H x W, N x C x L as
    a map of height 1, or N x F features); one input is the tensor itself. (A Concat of
    constants, PyTorch's shape arithmetic, is folded before it gets here.)"""
    ins = [t for t in node.input if t]
    consts = [t for t in ins if t not in imp.data]
    if consts:
        raise DynfixError(f"{what}: concatenates constant input(s) {consts} with data; only "
                          f"data tensors are supported")
    xs = [imp.data[t] for t in ins]
    rank = len(xs[0].shape)
    axis = imp.attrs(node, what).int("axis", 1)
    if (axis + rank if axis < 0 else axis) != 1 or any(len(x.shape) != rank for x in xs):
        raise DynfixError(f"{what}: concatenates along axis {axis} of a {rank}-D tensor; "
                          f"only the channel axis (1) is supported")
    for x in xs:
        imp.channels_on_axis_1(x, what)
    if len(xs) == 1:
        imp.alias(node, xs[0])
        return
    imp.bind(node, imp.add(Concat, node, xs, what))
