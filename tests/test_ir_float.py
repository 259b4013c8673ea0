"""IR shape inference and the float reference against direct (loop) definitions."""

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.quant.float_model import forward
from dynfix.quant.ir import Conv2d, Flatten, Linear, MaxPool2d, Model, ReLU


def direct_conv(x, w, b, stride, pads):
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    t, l, bo, r = pads
    xp = np.zeros((n, c, h + t + bo, wd + l + r))
    xp[:, :, t:t + h, l:l + wd] = x
    oh = (h + t + bo - kh) // stride[0] + 1
    ow = (wd + l + r - kw) // stride[1] + 1
    y = np.zeros((n, m, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride[0]:i * stride[0] + kh, j * stride[1]:j * stride[1] + kw]
            y[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return y


@pytest.mark.parametrize("stride,pads", [((1, 1), (1, 1, 1, 1)), ((2, 2), (0, 1, 2, 0)),
                                         ((2, 1), (0, 0, 0, 0))])
def test_conv_matches_direct(stride, pads):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    m = Model("t", "x", (3, 7, 6), [Conv2d("c", ("x",), weight=w, bias=b, stride=stride,
                                           pads=pads)])
    y = forward(m, x)["c"]
    ref = direct_conv(x, w, b, stride, pads)
    assert y.shape == ref.shape == (2,) + m.output_shape
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_chain_shapes_and_macs():
    rng = np.random.default_rng(2)
    layers = [
        Conv2d("c1", ("x",), weight=rng.standard_normal((8, 1, 3, 3)).astype(np.float32),
               bias=np.zeros(8, np.float32), pads=(1, 1, 1, 1)),
        ReLU("r1", ("c1",)),
        MaxPool2d("p1", ("r1",), kernel=(2, 2), stride=(2, 2)),
        Flatten("f", ("p1",)),
        Linear("fc", ("f",), weight=rng.standard_normal((10, 128)).astype(np.float32)),
    ]
    m = Model("t", "x", (1, 8, 8), layers)
    s = m.summary()
    assert [r["output_shape"] for r in s["layers"]] == [[8, 8, 8], [8, 8, 8], [8, 4, 4],
                                                         [128], [10]]
    assert s["total_macs"] == 8 * 64 * 9 + 1280
    assert s["total_params"] == 72 + 8 + 1280
    x = rng.standard_normal((3, 1, 8, 8)).astype(np.float32)
    trace = forward(m, x)
    pooled = trace["p1"]
    r = trace["r1"]
    np.testing.assert_array_equal(pooled[:, :, 1, 2], r[:, :, 2:4, 4:6].max(axis=(2, 3)))


def test_nan_weights_rejected():
    w = np.ones((2, 4), np.float32)
    w[1, 2] = np.nan
    with pytest.raises(DynfixError, match="NaN"):
        Model("t", "x", (4,), [Linear("fc", ("x",), weight=w)])


def test_wrong_input_shape_rejected():
    m = Model("t", "x", (4,), [Linear("fc", ("x",), weight=np.ones((2, 4), np.float32))])
    with pytest.raises(DynfixError, match="shape"):
        forward(m, np.ones((3, 5), np.float32))
