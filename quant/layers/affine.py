"""Affine: a per-channel scale and shift (a BatchNorm that could not be folded)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from dynfix.errors import DynfixError
from .base import (Compute, EngineRole, Importer, ParamWriter, bias_view, onnx_import, onnx_node,
                   register)


@register
@dataclass
class Affine(Compute):
    """Per-channel y = scale * x + shift (a BatchNorm that could not be folded). Quantized as
    a compute layer with one product per output: the scale is its weight, the shift its
    bias."""

    scale: np.ndarray = field(default=None, repr=False)
    shift: np.ndarray = field(default=None, repr=False)

    op: ClassVar[str] = "affine"
    weight_param: ClassVar[str] = "scale"
    bias_param: ClassVar[str] = "shift"
    groups: ClassVar[int] = 1
    engine: ClassVar[EngineRole] = EngineRole.REFUSED
    refusal: ClassVar[str] = "unfolded BatchNorm/affine is not supported by the engine"

    @property
    def fan_in(self) -> int:
        return 1

    def infer(self, in_shape):
        if in_shape[0] != self.scale.shape[0]:
            raise DynfixError(f"layer {self.name!r} (BatchNormalization): has "
                              f"{self.scale.shape[0]} channels, input has {in_shape[0]}")
        return in_shape

    def macs(self, in_shape):
        return int(np.prod(in_shape))

    def products(self, x, w):
        return x * bias_view(w, x.ndim)

    def onnx_nodes(self, param: ParamWriter):
        """A BatchNormalization with mean 0, variance 1 and epsilon 0 (it reads back as this
        Affine)."""
        c = self.scale.shape[0]
        ins = [self.inputs[0], param("scale", self.scale), param("shift", self.shift),
               param("mean", np.zeros(c)), param("var", np.ones(c))]
        return [onnx_node(self, "BatchNormalization", ins, epsilon=0.0)]


@onnx_import("BatchNormalization")
def import_batchnorm(imp: Importer, node, what: str) -> None:
    """Inference BatchNorm as ``scale * x + shift``: folded into the layer before when only
    it reads that layer's output, else an Affine."""
    x, at = imp.x(node), imp.attrs(node, what)
    if len(node.input) < 5:
        raise DynfixError(f"{what}: needs scale, B, mean and var inputs")
    imp.channels_on_axis_1(x, what)
    s, b, m, v = (imp.weights(t, what).astype(np.float64).reshape(-1)
                  for t in node.input[1:5])
    eps = at.float("epsilon", 1e-5)
    c = x.shape[1]
    if not all(len(a) == c for a in (s, b, m, v)):
        raise DynfixError(f"{what}: parameters do not have {c} channels")
    if not all(np.all(np.isfinite(a)) for a in (s, b, m, v)):
        raise DynfixError(f"{what}: has NaN/Inf parameters")
    if np.any(v + eps <= 0):
        raise DynfixError(f"{what}: variance + epsilon is not positive")
    scale = s / np.sqrt(v + eps)
    imp.affine(node, x, scale, b - m * scale, what)


@onnx_import("Sub", "Mul", "Div")
def import_scaling(imp: Importer, node, what: str) -> None:
    """The data and a per-channel constant: one more per-channel affine map."""
    if all(t in imp.data for t in node.input[:2]):
        raise DynfixError(f"{what}: {node.op_type} of two data tensors is not "
                          f"supported (only Add, a residual connection)")
    x, v, data_first = imp.operand(node, what)
    op = node.op_type
    if op == "Sub":
        imp.affine(node, x, 1.0 if data_first else -1.0, -v if data_first else v, what)
    elif op == "Mul":
        imp.affine(node, x, v, 0.0, what)
    elif data_first:  # Div
        if np.any(v == 0):
            raise DynfixError(f"{what}: division by zero")
        imp.affine(node, x, 1.0 / v, 0.0, what)
    else:
        raise DynfixError(f"{what}: dividing a constant by the data is not supported")
