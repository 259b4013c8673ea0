"""Flatten: a C x H x W map as a flat vector in C, H, W order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dynfix.errors import DynfixError
from .base import EngineRole, Importer, Layer, ParamWriter, onnx_import, onnx_node, register


@register
@dataclass
class Flatten(Layer):
    """Flatten to (F,) in C, H, W order (what ONNX Flatten/Reshape to 2-D do)."""

    op: ClassVar[str] = "flatten"
    homogeneous: ClassVar[bool] = True
    commutes_with_relu: ClassVar[bool] = True
    engine: ClassVar[EngineRole] = EngineRole.LAYOUT

    def infer(self, in_shape):
        return (int(np.prod(in_shape)),)

    def forward(self, x):
        return x.reshape(x.shape[0], -1)

    def forward_int(self, x, fmt):
        return x.reshape(x.shape[0], -1)

    def onnx_nodes(self, param: ParamWriter):
        return [onnx_node(self, "Flatten", self.inputs, axis=1)]


@onnx_import("Flatten")
def import_flatten(imp: Importer, node, what: str) -> None:
    x = imp.x(node)
    axis = imp.attrs(node, what).int("axis", 1)
    axis = axis + len(x.shape) if axis < 0 else axis
    if axis != 1:
        raise DynfixError(f"{what}: Flatten with axis={axis}; only axis=1 is supported")
    imp.to_shape(node, x, (x.shape[0], int(np.prod(x.shape[1:]))), what)


@onnx_import("Reshape")
def import_reshape(imp: Importer, node, what: str) -> None:
    x, at = imp.x(node), imp.attrs(node, what)
    if "shape" in at:
        target = at.ints("shape")
    elif len(node.input) > 1 and node.input[1] and node.input[1] not in imp.data:
        target = [int(v) for v in np.asarray(imp.const(node.input[1], what)).reshape(-1)]
    else:
        raise DynfixError(f"{what}: the target shape must be constant")
    imp.to_shape(node, x, imp.reshape_target(x.shape, target, at.int("allowzero", 0), what),
                 what)


@onnx_import("Squeeze")
def import_squeeze(imp: Importer, node, what: str) -> None:
    """Unit axes removed: a flatten (to N x F) or a view of the same tensor."""
    x = imp.x(node)
    axes = imp.const_axes(node, what)
    rank = len(x.shape)
    batch = x.axes.index(-1)
    axes = [a % rank for a in axes if -rank <= a < rank] if axes is not None else \
        [i for i in range(rank) if x.shape[i] == 1 and i != batch]
    if any(x.shape[a] != 1 for a in axes):
        raise DynfixError(f"{what}: squeezes a dimension that is not 1")
    if batch in axes:
        raise DynfixError(f"{what}: squeezes the batch axis")
    shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    if len(shape) == 2 and batch == 0:
        imp.to_shape(node, x, shape, what)
    else:
        imp.view(node, x, shape, tuple(a for i, a in enumerate(x.axes) if i not in axes),
                 what)


@onnx_import("Unsqueeze")
def import_unsqueeze(imp: Importer, node, what: str) -> None:
    """Unit axes added: a view of the same tensor (PyTorch's BatchNorm1d on N x F and
    tf2onnx's Conv1D write them; what reads the result must take that view)."""
    x = imp.x(node)
    raw = imp.const_axes(node, what) or []
    rank = len(x.shape) + len(raw)
    axes = sorted({a % rank for a in raw if -rank <= a < rank})
    if not axes or len(axes) != len(raw):
        raise DynfixError(f"{what}: axes {raw} must be distinct axes of the {rank}-D "
                          f"output")
    shape, view, src = [], [], iter(zip(x.shape, x.axes))
    for i in range(rank):
        d, a = (1, None) if i in axes else next(src)
        shape.append(d)
        view.append(a)
    imp.view(node, x, tuple(shape), tuple(view), what)
