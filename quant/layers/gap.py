"""GlobalAvgPool: the mean of each channel over H and W."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dynfix.errors import DynfixError
from .base import (KINDS, EngineRole, Importer, Layer, ParamWriter, onnx_import, onnx_node,
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
        return avg_round(x.sum(axis=(2, 3), keepdims=True), n)

    def onnx_nodes(self, param: ParamWriter):
        return [onnx_node(self, "GlobalAveragePool", self.inputs)]


@onnx_import("GlobalAveragePool")
def import_gap(imp: Importer, node, what: str) -> None:
    imp.bind(node, imp.add(GlobalAvgPool, node, [imp.x(node)], what))


@onnx_import("ReduceMean")
def import_reduce_mean(imp: Importer, node, what: str) -> None:
    """A mean over H and W (what exporters write for adaptive_avg_pool2d(x, 1))."""
    x, at = imp.x(node), imp.attrs(node, what)
    axes = imp.const_axes(node, what)
    rank = len(x.shape)
    if rank != 4 or axes is None or sorted(a % rank for a in axes if -rank <= a < rank) \
            != [2, 3] or at.int("noop_with_empty_axes", 0):
        raise DynfixError(f"{what}: only a mean over H and W of an N x C x H x W tensor "
                          f"is supported")
    steps = [(GlobalAvgPool, "", {})]
    if not at.int("keepdims", 1):
        steps = [(GlobalAvgPool, "_gap", {}), (KINDS["flatten"], "", {})]
    imp.chain(node, steps, x, what)
