"""Add: the element-wise sum of two tensors (a residual connection).

Its integer form is not a plain layer's: the sum gets a format of its own
(``qspec.AddFormat``), the integer model aligns both inputs onto it and requantizes
(``int_model.add_sum``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dynfix.errors import DynfixError
from .base import EngineRole, Layer, ParamWriter, onnx_node, register


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
