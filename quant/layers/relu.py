"""ReLU: max(x, 0)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .. import fixed

from .base import EngineRole, Importer, Layer, ParamWriter, onnx_import, onnx_node, register


@register
@dataclass
class ReLU(Layer):
    op: ClassVar[str] = "relu"
    elementwise: ClassVar[bool] = True
    homogeneous: ClassVar[bool] = True
    commutes_with_relu: ClassVar[bool] = True
    engine: ClassVar[EngineRole] = EngineRole.CLAMP

    def infer(self, in_shape):
        return in_shape

    def never_negative(self) -> bool:
        return True

    def clamp(self, fmt):
        return fmt.zp, fixed.qmax(fmt.bw)       # the integer of the real 0 .. the top

    def forward(self, x):
        return np.maximum(x, 0)

    def forward_int(self, x, fmt):
        return np.maximum(x, fmt.zp)                # the integer of the real 0

    def onnx_nodes(self, param: ParamWriter):
        return [onnx_node(self, "Relu", self.inputs)]


@onnx_import("Relu")
def import_relu(imp: Importer, node, what: str) -> None:
    imp.bind(node, imp.add(ReLU, node, [imp.x(node)], what))
