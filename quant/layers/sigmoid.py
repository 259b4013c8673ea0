"""Sigmoid: a trailing sigmoid (a binary or multi-label classifier's output), run on the
host in float like a trailing Softmax: the engine's output is its input, the logits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import HostOutput, Importer, ParamWriter, onnx_import, onnx_node, register


def sigmoid(v: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-v))``, written with tanh so that no value overflows."""
    return 0.5 * (1.0 + np.tanh(0.5 * v))


@register
@dataclass
class Sigmoid(HostOutput):
    """Trailing sigmoid: kept in the float model, run on the host. A single output is a
    binary classifier's: class 1 when the sigmoid is above 0.5, i.e. when its input, the
    logit, is positive (:func:`dynfix.quant.fidelity.top1`)."""

    op: ClassVar[str] = "sigmoid"
    refusal: ClassVar[str] = "sigmoid before the end is not supported by the engine"

    def forward(self, x):
        return sigmoid(x).astype(np.float32)

    def onnx_nodes(self, param: ParamWriter):
        return [onnx_node(self, "Sigmoid", self.inputs)]


@onnx_import("Sigmoid")
def import_sigmoid(imp: Importer, node, what: str) -> None:
    imp.bind(node, imp.add(Sigmoid, node, [imp.x(node)], what))
