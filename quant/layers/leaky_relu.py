"""LeakyReLU: ``x`` for ``x >= 0``, ``alpha * x`` below (``0 < alpha < 1``).

The integer model multiplies a negative value by the slope's fixed-point form
``a * 2**-s`` (:func:`slope_fixed`: an 8-bit ``a``) and rounds half up, in the map's own
format (``docs/arithmetic.md``, "LeakyReLU"); the engine does the same in its requantizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dynfix.errors import DynfixError
from .base import (EngineRole, Importer, Layer, ParamWriter, onnx_import, onnx_node,
                   register)

#: Bits of the slope's integer ``a`` (unsigned).
SLOPE_BITS = 8
#: Largest slope shift ``s``: slopes below ``2**-(SLOPE_SHIFT_MAX - SLOPE_BITS + 1)`` lose
#: bits of ``a`` (a slope below ``2**-(SLOPE_SHIFT_MAX + 1)`` becomes 0, a ReLU).
SLOPE_SHIFT_MAX = 20


def slope_fixed(alpha: float) -> tuple[int, int]:
    """``(a, s)`` with ``a * 2**-s`` the nearest to ``alpha`` (0 < alpha < 1) that an
    unsigned :data:`SLOPE_BITS`-bit ``a`` holds: ``a`` in ``[2**(SLOPE_BITS-1),
    2**SLOPE_BITS)`` unless ``s`` reaches :data:`SLOPE_SHIFT_MAX`."""
    s = min(SLOPE_SHIFT_MAX, SLOPE_BITS - 1 - int(np.floor(np.log2(alpha))))
    a = int(np.floor(np.ldexp(alpha, s) + 0.5))
    if a >= 1 << SLOPE_BITS:            # rounded up to the next power of two
        a, s = a >> 1, s - 1
    return a, s


def leak(v: np.ndarray, a: int, s: int) -> np.ndarray:
    """The integer LeakyReLU of real-zero-based integers ``v`` (int64): ``v`` where
    ``v >= 0``, else ``(v * a + 2**(s-1)) >> s`` (round half up; ``a = 1, s = 0``: the
    identity, what the engine's slope stage does in a group without a LeakyReLU)."""
    v = np.asarray(v, np.int64)
    return np.where(v >= 0, v, (v * a + ((1 << s) >> 1)) >> s)


@register
@dataclass
class LeakyReLU(Layer):
    """``max(x, 0) + alpha * min(x, 0)`` with ``0 < alpha < 1``."""

    alpha: float = 0.01

    op: ClassVar[str] = "leaky_relu"
    elementwise: ClassVar[bool] = True
    homogeneous: ClassVar[bool] = True
    commutes_with_relu: ClassVar[bool] = True
    engine: ClassVar[EngineRole] = EngineRole.SLOPE

    def check(self):
        a = self.alpha
        if isinstance(a, bool) or not isinstance(a, (int, float, np.number)) \
                or not 0 < float(a) < 1:
            raise DynfixError(f"layer {self.name!r} (LeakyRelu): alpha must lie in (0, 1), "
                              f"got {a!r}")

    def infer(self, in_shape):
        return in_shape

    def slope(self) -> tuple[int, int]:
        """The slope as the integer model and the engine apply it, ``(a, s)``."""
        return slope_fixed(float(self.alpha))

    def forward(self, x):
        return np.where(x >= 0, x, np.float32(self.alpha) * x).astype(np.float32)

    def forward_int(self, x, fmt):
        return leak(np.asarray(x, np.int64) - fmt.zp, *self.slope()) + fmt.zp

    def onnx_nodes(self, param: ParamWriter):
        return [onnx_node(self, "LeakyRelu", self.inputs, alpha=float(self.alpha))]


@onnx_import("LeakyRelu")
def import_leaky_relu(imp: Importer, node, what: str) -> None:
    alpha = imp.attrs(node, what).float("alpha", 0.01)
    imp.bind(node, imp.add(LeakyReLU, node, [imp.x(node)], what,
                           alpha=float(alpha)))
