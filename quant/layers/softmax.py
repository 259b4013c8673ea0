"""Softmax: a trailing softmax, run on the host in float (it keeps the class)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dynfix.errors import DynfixError
from .base import HostOutput, Importer, ParamWriter, onnx_import, onnx_node, register


def softmax(v: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (the float model's and the host's)."""
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@register
@dataclass
class Softmax(HostOutput):
    """Trailing softmax: kept in the float model, run on the host (it keeps the class)."""

    op: ClassVar[str] = "softmax"
    refusal: ClassVar[str] = "softmax before the end is not supported by the engine"

    def forward(self, x):
        return softmax(x)

    def onnx_nodes(self, param: ParamWriter):
        return [onnx_node(self, "Softmax", self.inputs, axis=1)]


@onnx_import("Softmax")
def import_softmax(imp: Importer, node, what: str) -> None:
    x = imp.x(node)
    axis = imp.attrs(node, what).int("axis", 1 if imp.opset < 13 else -1)
    if len(x.shape) != 2 or axis not in (1, -1):
        raise DynfixError(f"{what}: only a Softmax over the classes of an N x F tensor "
                          f"is supported")
    imp.bind(node, imp.add(Softmax, node, [x], what))
