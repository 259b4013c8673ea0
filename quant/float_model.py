"""Float reference: a vectorized numpy forward pass (float32, NCHW) that exposes every layer.

The float model defines accuracy. It evaluates the model's DAG in topological order with a
dict of tensors. :func:`forward` returns a trace, the output of every layer by name (or of
the ones asked for), which the quantizer's data phase compares against; :func:`predict`
frees each tensor after its last consumer.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dynfix.errors import DynfixError
from .ir import (Add, Affine, AvgPool2d, Clip, Conv2d, Flatten, GlobalAvgPool, Layer, Linear,
                 MaxPool2d, Model, ReLU, Softmax)


def windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
            pads: tuple[int, int, int, int], fill=0, dilation=(1, 1),
            out_hw: tuple[int, int] | None = None) -> np.ndarray:
    """View of all pooling/convolution windows: (N, C, OH, OW, kh, kw).

    Shared by the float and the integer model so both walk identical windows.
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


def pool_divisor(layer: AvgPool2d, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """Per-output-cell divisor of an average pool, (OH, OW)."""
    if layer.count_include_pad:
        # Cells inside the padded extent count; cells past it (ceil mode) do not.
        h, w = in_hw
        t, l, b, r = layer.pads
        ones = np.ones((1, 1, h + t + b, w + l + r), dtype=np.int64)
        cnt = windows(ones, layer.kernel, layer.stride, (0, 0, 0, 0), 0,
                      out_hw=out_hw).sum(axis=(-1, -2))
    else:
        ones = np.ones((1, 1) + tuple(in_hw), dtype=np.int64)
        cnt = windows(ones, layer.kernel, layer.stride, layer.pads, 0,
                      out_hw=out_hw).sum(axis=(-1, -2))
    return cnt[0, 0]


def apply_layer(layer: Layer, x: np.ndarray, *more: np.ndarray) -> np.ndarray:
    """One layer of the float model on a batch (``more``: an Add's second input)."""
    if isinstance(layer, Add):
        return (x + more[0]).astype(np.float32, copy=False)
    if isinstance(layer, Clip):
        return np.clip(x, layer.lo, layer.hi).astype(np.float32, copy=False)
    if isinstance(layer, Conv2d):
        y = conv2d(x, layer.weight, layer.stride, layer.pads, layer.dilation, layer.groups)
        if layer.bias is not None:
            y = y + layer.bias[None, :, None, None]
        return y.astype(np.float32)
    if isinstance(layer, Linear):
        y = x @ layer.weight.T
        if layer.bias is not None:
            y = y + layer.bias
        return y.astype(np.float32)
    if isinstance(layer, ReLU):
        return np.maximum(x, 0)
    if isinstance(layer, AvgPool2d):
        out_hw = layer.out_shape[1:]
        s = windows(x, layer.kernel, layer.stride, layer.pads, 0, out_hw=out_hw)
        s = s.sum(axis=(-1, -2), dtype=np.float64)
        return (s / pool_divisor(layer, x.shape[2:], out_hw)).astype(np.float32)
    if isinstance(layer, MaxPool2d):
        return windows(x, layer.kernel, layer.stride, layer.pads, -np.inf,
                       out_hw=layer.out_shape[1:]).max(axis=(-1, -2))
    if isinstance(layer, GlobalAvgPool):
        return x.mean(axis=(2, 3), keepdims=True, dtype=np.float64).astype(np.float32)
    if isinstance(layer, Flatten):
        return x.reshape(x.shape[0], -1)
    if isinstance(layer, Affine):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return (x * layer.scale.reshape(shape) + layer.shift.reshape(shape)).astype(np.float32)
    if isinstance(layer, Softmax):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise DynfixError(f"layer {layer.name!r}: op {layer.op!r} has no float implementation")


def check_input(model: Model, x: np.ndarray) -> np.ndarray:
    """Validate a batch against the model's input shape; returns it as float32."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise DynfixError(f"input has dtype {x.dtype}; expected a numeric array")
    want = tuple(model.input_shape)
    if x.shape == want:
        x = x[None]
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise DynfixError(f"input has shape {tuple(x.shape)}; model {model.name!r} takes "
                          f"N x {' x '.join(map(str, want))}")
    if x.shape[0] == 0:
        raise DynfixError("input batch is empty")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise DynfixError("input has NaN/Inf values")
    return x


def forward(model: Model, x: np.ndarray, keep: set[str] | None = None
            ) -> dict[str, np.ndarray]:
    """Run a batch through the model; returns every tensor by name (the trace): the input
    and each layer's output. With ``keep``, only those tensors (and the output) are
    returned, and every other one is freed after its last consumer."""
    x = check_input(model, x)
    tensors = {model.input_name: x}
    last = model.last_use() if keep is not None else {}
    out = model.output_name
    for i, layer in enumerate(model.layers):
        tensors[layer.name] = apply_layer(layer, *(tensors[t] for t in layer.inputs))
        if keep is not None:
            for t in set(layer.inputs):
                if last[t] == i and t not in keep and t != out:
                    del tensors[t]
    return tensors


def predict(model: Model, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Model outputs for a batch (the last layer), computed in chunks to bound memory."""
    x = check_input(model, x)
    out = model.output_name
    outs = [forward(model, x[i:i + batch], keep=set())[out]
            for i in range(0, x.shape[0], batch)]
    return np.concatenate(outs)
