"""Vectorized numpy kernels the layer kinds share, for float and integer arrays alike.

The float and the integer model of a layer call the same kernel, so both walk identical
windows; the integer model's arithmetic on top of them is ``docs/arithmetic.md``'s.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def pool_out(size: int, k: int, s: int, p0: int, p1: int, ceil: bool = False) -> int:
    """Output length of a window ``k`` at stride ``s`` over ``size`` padded by ``p0``/``p1``;
    in ceil mode the last window must start inside input + begin pad (the
    PyTorch/onnxruntime rule)."""
    span = size + p0 + p1 - k
    if span < 0:
        return 0
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p0:
        out -= 1
    return out


def windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
            pads: tuple[int, int, int, int], fill=0, dilation=(1, 1),
            out_hw: tuple[int, int] | None = None) -> np.ndarray:
    """View of all pooling/convolution windows: (N, C, OH, OW, kh, kw).

    ``fill`` pads (0 for convolution, the dtype's minimum for max-pooling); ``out_hw`` crops
    the window grid (ceil-mode pooling pads the bottom/right as needed).
    """
    t, l, b, r = pads
    kh, kw = kernel
    dh, dw = dilation
    if out_hw is not None:
        oh, ow = out_hw
        need_h = (oh - 1) * stride[0] + (kh - 1) * dh + 1
        need_w = (ow - 1) * stride[1] + (kw - 1) * dw + 1
        b = max(b, need_h - x.shape[2] - t)
        r = max(r, need_w - x.shape[3] - l)
    xp = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=fill)
    ekh, ekw = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    v = sliding_window_view(xp, (ekh, ekw), axis=(2, 3))[:, :, ::stride[0], ::stride[1]]
    v = v[..., ::dh, ::dw]
    if out_hw is not None:
        v = v[:, :, :out_hw[0], :out_hw[1]]
    return v


def conv2d(x: np.ndarray, weight: np.ndarray, stride, pads, dilation=(1, 1),
           groups: int = 1) -> np.ndarray:
    """Convolution without bias; works for float and integer (int64) arrays alike.

    With ``groups`` g, output channels ``j*M/g ..`` see only input channels ``j*C/g ..``:
    one einsum over a group axis (no loop over groups or pixels).
    """
    v = windows(x, weight.shape[2:], stride, pads, 0, dilation)
    if groups == 1:
        return np.einsum("nchwij,mcij->nmhw", v, weight, optimize=True)
    n, c, oh, ow, kh, kw = v.shape
    m = weight.shape[0]
    vg = v.reshape(n, groups, c // groups, oh, ow, kh, kw)
    wg = weight.reshape(groups, m // groups, c // groups, kh, kw)
    y = np.einsum("ngchwij,gmcij->ngmhw", vg, wg, optimize=True)
    return y.reshape(n, m, oh, ow)


def avg_round(s: np.ndarray, n: np.ndarray | int, rounding: str = "half_up") -> np.ndarray:
    """Mean rounded half up: ``floor((2*s + n) / (2*n))`` (arithmetic.md, average pooling);
    with ``rounding`` ``half_even`` a mean exactly halfway (``2*s + n`` a multiple of
    ``2*n``) that rounded up to an odd integer steps down to the even one. Only pools that
    :func:`~dynfix.quant.lower.lower` does not fold get here."""
    n = np.asarray(n, dtype=np.int64)
    biased = 2 * np.asarray(s, np.int64) + n
    up = biased // (2 * n)
    if rounding == "half_even":
        up = up - ((biased % (2 * n) == 0) & (up % 2 != 0))
    return up
