"""AvgPool2d: the mean of each window (not a max pool: the mean of a signed map is signed,
so a ReLU after it does not commute with it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import EngineRole, Importer, ParamWriter, onnx_import, onnx_node, register
from .kernels import avg_round, windows
from .pool import Pool2d, pool_args


@register
@dataclass
class AvgPool2d(Pool2d):
    """Average pooling; with ``count_include_pad`` the divisor counts padded cells."""

    count_include_pad: bool = False

    op: ClassVar[str] = "avgpool"
    engine: ClassVar[EngineRole] = EngineRole.AVERAGE

    def divisor(self, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
        """Per-output-cell divisor, (OH, OW)."""
        if self.count_include_pad:
            # Cells inside the padded extent count; cells past it (ceil mode) do not.
            h, w = in_hw
            t, l, b, r = self.pads
            ones = np.ones((1, 1, h + t + b, w + l + r), dtype=np.int64)
            cnt = windows(ones, self.kernel, self.stride, (0, 0, 0, 0), 0,
                          out_hw=out_hw).sum(axis=(-1, -2))
        else:
            ones = np.ones((1, 1) + tuple(in_hw), dtype=np.int64)
            cnt = windows(ones, self.kernel, self.stride, self.pads, 0,
                          out_hw=out_hw).sum(axis=(-1, -2))
        return cnt[0, 0]

    def forward(self, x):
        out_hw = self.out_shape[1:]
        s = windows(x, self.kernel, self.stride, self.pads, 0, out_hw=out_hw)
        s = s.sum(axis=(-1, -2), dtype=np.float64)
        return (s / self.divisor(x.shape[2:], out_hw)).astype(np.float32)

    def forward_int(self, x, fmt):
        """The mean of each window, rounded in the map's rounding mode (``fmt.rounding``:
        half up, or half to even after a layer that rounds so)."""
        out_hw = self.out_shape[1:]
        # A padded cell the divisor counts is a real 0 (the integer zp); one it does not
        # count adds nothing.
        pad = fmt.zp if self.count_include_pad else 0
        s = windows(x, self.kernel, self.stride, self.pads, pad, out_hw=out_hw)
        return avg_round(s.sum(axis=(-1, -2)), self.divisor(x.shape[2:], out_hw),
                         fmt.rounding)

    def onnx_nodes(self, param: ParamWriter):
        return [onnx_node(self, "AveragePool", self.inputs, **self.onnx_attrs(),
                          count_include_pad=int(self.count_include_pad))]


@onnx_import("AveragePool")
def import_avgpool(imp: Importer, node, what: str) -> None:
    x = imp.x(node)
    kw = pool_args(imp, node, what, x)
    kw["count_include_pad"] = bool(imp.attrs(node, what).int("count_include_pad", 0))
    imp.bind(node, imp.add(AvgPool2d, node, [x], what, **kw))

