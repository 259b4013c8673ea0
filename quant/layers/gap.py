"""GlobalAvgPool: the mean of each channel over H and W."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dynfix.errors import DynfixError
from .base import (EngineRole, Importer, Layer, ParamWriter, onnx_import, onnx_node,
                   register, spatial_input)
from .kernels import avg_round


@register
@dataclass
class GlobalAvgPool(Layer):
    """Mean over H and W; keeps the (C, 1, 1) shape as ONNX does."""

    op: ClassVar[str] = "gap"
    homogeneous: ClassVar[bool] = True
    engine: ClassVar[EngineRole] = EngineRole.REFUSED
    refusal: ClassVar[str] = ("global average pooling is not supported by the engine yet (a "
                              "global one folds into a Linear layer right after it)")

    def infer(self, in_shape):
        c, _, _ = spatial_input(self, in_shape, "GlobalAveragePool")
        return (c, 1, 1)

    def forward(self, x):
        return x.mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(np.float32)

    def forward_int(self, x, fmt):
        n = x.shape[2] * x.shape[3]
        return avg_round(x.sum(axis=(2, 3), keepdims=True), n, fmt.rounding)

    def onnx_nodes(self, param: ParamWriter):
        return [onnx_node(self, "GlobalAveragePool", self.inputs)]


@onnx_import("GlobalAveragePool")
def import_gap(imp: Importer, node, what: str) -> None:
    """Over H and W of an N x C x H x W tensor, or over L of an N x C x L one."""
    x = imp.x(node)
    imp.spatial(x, what, "global pools")
    imp.bind(node, imp.add(GlobalAvgPool, node, [x], what))


@onnx_import("ReduceMean")
def import_reduce_mean(imp: Importer, node, what: str) -> None:
    """A mean over H and W, or L (what exporters write for adaptive_avg_pool2d(x, 1) and
    adaptive_avg_pool1d(x, 1)): over every spatial axis longer than 1."""
    x, at = imp.x(node), imp.attrs(node, what)
    raw = imp.const_axes(node, what)
    rank = len(x.shape)
    ok = rank in (3, 4) and raw is not None and not at.int("noop_with_empty_axes", 0)
    if ok:
        imp.spatial(x, what, "means")
        axes = sorted({a % rank for a in raw if -rank <= a < rank})
        ok = len(axes) == len(raw) and set(axes) <= set(range(2, rank)) and all(
            x.shape[a] == 1 for a in range(2, rank) if a not in axes)
    if not ok:
        raise DynfixError(f"{what}: only a mean over H and W of an N x C x H x W tensor "
                          f"(or over L of an N x C x L one) is supported")
    if at.int("keepdims", 1):
        imp.bind(node, imp.add(GlobalAvgPool, node, [x], what))
        return
    t = imp.add(GlobalAvgPool, node, [x], what, suffix="_gap")
    imp.to_shape(node, t, tuple(d for i, d in enumerate(x.shape) if i not in axes), what)
