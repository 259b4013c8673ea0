"""Flatten: a C x H x W map as a flat vector in C, H, W order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import EngineRole, Layer, ParamWriter, onnx_node, register


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
