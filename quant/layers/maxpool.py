"""MaxPool2d: the largest value of each window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import EngineRole, Importer, ParamWriter, onnx_import, onnx_node, register
from .kernels import windows
from .pool import Pool2d, pool_args


@register
@dataclass
class MaxPool2d(Pool2d):
    """Max pooling; ``pads`` is (top, left, bottom, right), padded cells never win."""

    op: ClassVar[str] = "maxpool"
    commutes_with_relu: ClassVar[bool] = True
    engine: ClassVar[EngineRole] = EngineRole.POOL

    def forward(self, x):
        return windows(x, self.kernel, self.stride, self.pads, -np.inf,
                       out_hw=self.out_shape[1:]).max(axis=(-1, -2))

    def forward_int(self, x, fmt):
        lo = np.iinfo(np.int64).min
        return windows(x, self.kernel, self.stride, self.pads, lo,
                       out_hw=self.out_shape[1:]).max(axis=(-1, -2))

    def onnx_nodes(self, param: ParamWriter):
        return [onnx_node(self, "MaxPool", self.inputs, **self.onnx_attrs())]


@onnx_import("MaxPool")
def import_maxpool(imp: Importer, node, what: str) -> None:
    x = imp.x(node)
    imp.bind(node, imp.add(MaxPool2d, node, [x], what, **pool_args(imp, node, what, x)))


@onnx_import("GlobalMaxPool")
def import_global_maxpool(imp: Importer, node, what: str) -> None:
    x = imp.x(node)
    imp.spatial(x, what, "global pools")
    imp.bind(node, imp.add(MaxPool2d, node, [x], what, kernel=x.dims[1:], stride=(1, 1)))
