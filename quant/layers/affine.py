"""Affine: a per-channel scale and shift (a BatchNorm that could not be folded)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from dynfix.errors import DynfixError
from .base import Compute, EngineRole, ParamWriter, bias_view, onnx_node, register


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

    def forward(self, x):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x * self.scale.reshape(shape) + self.shift.reshape(shape)).astype(np.float32)

    def onnx_nodes(self, param: ParamWriter):
        """A BatchNormalization with mean 0, variance 1 and epsilon 0 (it reads back as this
        Affine)."""
        c = self.scale.shape[0]
        ins = [self.inputs[0], param("scale", self.scale), param("shift", self.shift),
               param("mean", np.zeros(c)), param("var", np.ones(c))]
        return [onnx_node(self, "BatchNormalization", ins, epsilon=0.0)]
