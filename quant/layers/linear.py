"""Linear: a fully connected layer on a flat input."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from dynfix.errors import DynfixError
from .base import Compute, EngineRole, Importer, ParamWriter, onnx_import, onnx_node, register


@register
@dataclass
class Linear(Compute):
    """Fully connected layer y = W x + b on a flat input."""

    weight: np.ndarray = field(default=None, repr=False)
    bias: np.ndarray | None = field(default=None, repr=False)

    op: ClassVar[str] = "linear"
    dot_product: ClassVar[bool] = True
    fully_connected: ClassVar[bool] = True
    engine: ClassVar[EngineRole] = EngineRole.GROUP
    groups: ClassVar[int] = 1

    def param_ranks(self):
        return {"weight": 2}

    @property
    def fan_in(self) -> int:
        return int(self.weight.shape[1])

    def infer(self, in_shape):
        if len(in_shape) != 1:
            raise DynfixError(f"layer {self.name!r} (Linear): expects a flat input, got "
                              f"shape {in_shape}; add a Flatten before it")
        if self.weight.shape[1] != in_shape[0]:
            raise DynfixError(f"layer {self.name!r} (Linear): weight takes "
                              f"{self.weight.shape[1]} features, input has {in_shape[0]}")
        return (int(self.weight.shape[0]),)

    def macs(self, in_shape):
        return int(self.weight.shape[0] * self.weight.shape[1])

    def products(self, x, w):
        return x @ w.T

    def input_rows(self, x, group):
        return x.reshape(len(x), -1)

    def input_columns(self, w, channels, block):
        return w.reshape(w.shape[0], channels, block).transpose(1, 0, 2)   # (M, C * block)

    def scale_inputs(self, w, s, block):
        return w * np.repeat(s, block)[None, :]

    def onnx_nodes(self, param: ParamWriter):
        ins = [self.inputs[0], param("weight", self.weight)]
        if self.bias is not None:
            ins.append(param("bias", self.bias))
        return [onnx_node(self, "Gemm", ins, transB=1)]


@onnx_import("Gemm")
def import_gemm(imp: Importer, node, what: str) -> None:
    x, at = imp.x(node), imp.attrs(node, what)
    b = imp.weights(node.input[1], what, rank=2)
    w = b if at.int("transB", 0) else b.T
    alpha, beta = at.float("alpha", 1.0), at.float("beta", 1.0)
    if alpha != 1.0:
        w = (w.astype(np.float64) * alpha).astype(np.float32)
    c = imp.opt(node, 2, what)
    bias = None
    if c is not None:
        try:
            c = np.broadcast_to(c, (1, w.shape[0]))[0]
        except ValueError:
            raise DynfixError(f"{what}: bias of shape {c.shape} does not fit "
                              f"{w.shape[0]} outputs") from None
        bias = (c.astype(np.float64) * beta).astype(np.float32)
    imp.bind(node, imp.add(Linear, node, [x], what, weight=w,
                           bias=bias))


@onnx_import("MatMul")
def import_matmul(imp: Importer, node, what: str) -> None:
    if node.input[0] not in imp.data:
        raise DynfixError(f"{what}: only data x weights products are supported")
    x = imp.x(node)
    if len(x.shape) != 2:
        raise DynfixError(f"{what}: MatMul on a {len(x.shape)}-D tensor; only N x F "
                          f"inputs are supported")
    w = imp.weights(node.input[1], what, rank=2).T
    imp.bind(node, imp.add(Linear, node, [x], what, weight=w,
                           bias=None))
