"""Clip: clamp to [lo, hi] (ReLU6 is Clip(0, 6))."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dynfix.errors import DynfixError
from .. import fixed
from .base import EngineRole, Importer, Layer, ParamWriter, onnx_import, onnx_node, register
from .relu import ReLU


@register
@dataclass
class Clip(Layer):
    """Clamp to [lo, hi]; ReLU6 is Clip(0, 6). An infinite bound leaves that side open."""

    lo: float = 0.0
    hi: float = 6.0

    op: ClassVar[str] = "clip"
    elementwise: ClassVar[bool] = True
    scalars: ClassVar[tuple[str, ...]] = ("lo", "hi")
    engine: ClassVar[EngineRole] = EngineRole.CLAMP

    def check(self):
        for which, v in (("lo", self.lo), ("hi", self.hi)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) \
                    or np.isnan(v):
                raise DynfixError(f"layer {self.name!r} (Clip): {which} must be a number, "
                                  f"got {v!r}")
        if self.lo > self.hi:
            raise DynfixError(f"layer {self.name!r} (Clip): lo={self.lo} is above "
                              f"hi={self.hi}")

    def infer(self, in_shape):
        return in_shape

    def never_negative(self) -> bool:
        return float(self.lo) >= 0

    def bounds(self, fmt) -> tuple[int, int]:
        """The integer bounds in its input's format ``fmt`` (bw, fl, zp):
        ``[max(qmin, ceil(lo * 2^fl) + zp), min(qmax, floor(hi * 2^fl) + zp)]``, the
        representable values inside [lo, hi]."""
        lo = max(float(fixed.qmin(fmt.bw)),
                 float(np.ceil(np.ldexp(float(self.lo), fmt.fl))) + fmt.zp)
        hi = min(float(fixed.qmax(fmt.bw)),
                 float(np.floor(np.ldexp(float(self.hi), fmt.fl))) + fmt.zp)
        if lo > hi:
            raise DynfixError(f"layer {self.name!r} (Clip): no {fmt.bw}-bit value at fl "
                              f"{fmt.fl} lies in [{self.lo}, {self.hi}]")
        return int(lo), int(hi)

    def check_format(self, fmt) -> None:
        """At least one value of ``fmt`` lies in [lo, hi]."""
        self.bounds(fmt)

    def clamp(self, fmt):
        return self.bounds(fmt)

    def forward(self, x):
        return np.clip(x, self.lo, self.hi).astype(np.float32, copy=False)

    def forward_int(self, x, fmt):
        return np.clip(x, *self.bounds(fmt))

    def onnx_nodes(self, param: ParamWriter):
        """Clip with its finite bounds as ``min`` / ``max`` inputs (a Clip(0, +inf) reads
        back as the ReLU it is)."""
        bounds = [param(k, np.array(v)) if np.isfinite(v) else ""
                  for k, v in (("min", self.lo), ("max", self.hi))]
        while bounds and not bounds[-1]:
            bounds.pop()
        return [onnx_node(self, "Clip", [self.inputs[0], *bounds])]


_FLT_MAX = float(np.finfo(np.float32).max)


@onnx_import("Clip")
def import_clip(imp: Importer, node, what: str) -> None:
    """Clamp to [min, max] (attributes before opset 11, optional inputs from 11); a
    [0, +inf) Clip is the ReLU it is, an unbounded one vanishes."""
    x, at = imp.x(node), imp.attrs(node, what)
    if imp.opset < 11:
        lo, hi = at.float("min", -np.inf), at.float("max", np.inf)
    else:
        lo, hi = imp.scalar(node, 1, what, -np.inf), imp.scalar(node, 2, what, np.inf)
    lo = -np.inf if lo <= -_FLT_MAX else lo  # old exporters write the float limits
    hi = np.inf if hi >= _FLT_MAX else hi
    if np.isnan(lo) or np.isnan(hi) or lo > hi:
        raise DynfixError(f"{what}: clips to [{lo}, {hi}]; dynfix needs min <= max")
    if lo == -np.inf and hi == np.inf:
        imp.alias(node, x)
    elif lo == 0 and hi == np.inf:
        imp.bind(node, imp.add(ReLU, node, [x], what))
    else:
        imp.bind(node, imp.add(Clip, node, [x], what, lo=float(lo),
                               hi=float(hi)))
