"""GlobalAvgPool: the mean of each channel over H and W."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import EngineRole, Layer, ParamWriter, onnx_node, register, spatial_input
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
