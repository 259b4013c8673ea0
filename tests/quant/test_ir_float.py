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


# ----------------------------------------------------------------------------- graphs

from graph_nets import (calib, loop_conv, res_dw_model, res_dw_numpy,  # noqa: E402
                        res_dw_onnx)
from dynfix.quant.float_model import predict  # noqa: E402
from dynfix.quant.ir import Add, Clip, GlobalAvgPool  # noqa: E402


@pytest.mark.parametrize("c,m,groups", [(4, 4, 4), (4, 8, 4), (6, 4, 2), (3, 6, 3)])
def test_grouped_conv_matches_loops(c, m, groups):
    rng = np.random.default_rng(groups + m)
    w = rng.standard_normal((m, c // groups, 3, 3)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    x = rng.standard_normal((2, c, 6, 5)).astype(np.float32)
    model = Model("t", "x", (c, 6, 5), [Conv2d("c", ("x",), weight=w, bias=b, stride=(2, 2),
                                               pads=(1, 1, 1, 1), groups=groups)])
    y = forward(model, x)["c"]
    ref = loop_conv(x, w, b, 2, 1, groups)
    assert y.shape == ref.shape == (2,) + model.output_shape == (2, m, 3, 3)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    # MACs: only C // groups input channels per output value
    assert model.summary()["total_macs"] == m * 3 * 3 * (c // groups) * 9


def test_residual_depthwise_net_matches_numpy_and_onnxruntime():
    pytest.importorskip("onnxruntime")
    from onnx_graphs import run_ort
    m = res_dw_model()
    x = calib(16)
    y = predict(m, x)
    np.testing.assert_allclose(y, res_dw_numpy(x), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(y, run_ort(res_dw_onnx(), x), rtol=1e-4, atol=1e-4)
    # the trace holds every tensor; intermediate ones agree with onnxruntime too
    trace = forward(m, x)
    assert set(trace) == {"x"} | {layer.name for layer in m.layers}
    assert 0 <= trace["r6"].min() and trace["r6"].max() <= 6 and trace["r6"].max() > 0


def test_forward_keep_frees_other_tensors():
    m = res_dw_model()
    x = calib(4)
    full = forward(m, x)
    part = forward(m, x, keep={"add1"})
    assert set(part) == {"add1", "fc"}
    np.testing.assert_array_equal(part["add1"], full["add1"])
    np.testing.assert_array_equal(part["fc"], full["fc"])


def test_graph_helpers():
    m = res_dw_model()
    assert not m.is_chain()
    assert [c.name for c in m.consumers("a1")] == ["c3", "proj"]
    assert [c.name for c in m.consumers("r0")] == ["c1", "add1"]
    assert m.consumers("fc") == [] and m.output_name == "fc"
    assert m.shape("x") == (3, 8, 8) and m.shape("proj") == (16, 4, 4)
    assert m.in_shapes("add2") == ((16, 4, 4), (16, 4, 4))
    assert m.in_shapes(m.layer("dw")) == ((16, 4, 4),)
    assert m.producer("x") is None and m.producer("c0").name == "c0"
    assert m.last_use()["a1"] == [layer.name for layer in m.layers].index("proj")
    s = m.summary()
    assert s["chain"] is False and s["input_name"] == "x"
    rows = {r["name"]: r for r in s["layers"]}
    assert rows["add2"]["inputs"] == ["c4", "proj"] and rows["add2"]["macs"] == 0
    assert rows["dw"]["macs"] == 16 * 4 * 4 * 1 * 9 and rows["dw"]["params"] == 16 * 9 + 16
    assert rows["gap"]["output_shape"] == [16, 1, 1]


def test_info_table_shows_inputs_only_for_graphs():
    from dynfix.commands.info import format_table
    table = format_table(res_dw_model().summary())
    assert "inputs" in table.splitlines()[1]
    assert any(line.split()[0] == "add2" and line.rstrip().endswith("c4, proj")
               for line in table.splitlines()[3:])
    chain = Model("t", "x", (4,), [Linear("fc", ("x",), weight=np.ones((2, 4), np.float32)),
                                   ReLU("r", ("fc",))])
    assert "inputs" not in format_table(chain.summary())


def test_add_clip_float():
    x = np.array([[-3.0, 0.5, 7.0, 2.0]], np.float32)
    m = Model("t", "x", (4,), [Clip("c6", ("x",), lo=0.0, hi=6.0),
                               Clip("hi", ("c6",), lo=-np.inf, hi=1.0),
                               Add("a", ("c6", "hi"))])
    t = forward(m, x)
    np.testing.assert_array_equal(t["c6"], [[0, 0.5, 6, 2]])
    np.testing.assert_array_equal(t["hi"], [[0, 0.5, 1, 1]])
    np.testing.assert_array_equal(t["a"], [[0, 1, 7, 3]])
    assert t["a"].dtype == np.float32
    # one tensor feeding both inputs of an Add
    m2 = Model("t", "x", (4,), [Add("twice", ("x", "x"))])
    np.testing.assert_array_equal(predict(m2, x), 2 * x)


def lin(name, inp, n=4):
    return Linear(name, (inp,), weight=np.eye(n, dtype=np.float32))


@pytest.mark.parametrize("layers,match", [
    ([lin("a", "x"), lin("a", "a")], "'a' is used twice"),
    ([lin("x", "x")], "'x' is used twice.*model input"),
    ([lin("a", "nope")], "layer 'a' reads 'nope'.*no such tensor"),
    ([lin("a", "b"), lin("b", "a")], "layer 'a' reads 'b'.*defined later.*cycle"),
    ([lin("a", "a")], "layer 'a' reads 'a'.*cycle"),
    ([lin("a", "x"), Add("s", ("a",))], "'s' \\(add\\) takes 2 input\\(s\\), got 1"),
    ([lin("a", "x"), Add("s", ("a", "x", "x"))], "takes 2 input"),
    ([lin("a", "x"), ReLU("r", ("a", "x"))], "'r' \\(relu\\) takes 1 input"),
    ([Linear("a", ("x",), weight=np.ones((3, 4), np.float32)), Add("s", ("a", "x"))],
     "'s' \\(Add\\): input shapes differ: 'a' is \\(3,\\), 'x' is \\(4,\\)"),
    ([lin("a", "x"), lin("b", "x"), Add("s", ("a", "x"))], "layer\\(s\\) \\['b'\\].*never used"),
    ([Clip("c", ("x",), lo=1.0, hi=0.5)], "'c' \\(Clip\\): lo=1.0 is above hi=0.5"),
    ([Clip("c", ("x",), lo=float("nan"))], "'c' \\(Clip\\): lo must be a number"),
])
def test_validate_errors(layers, match):
    with pytest.raises(DynfixError, match=match):
        Model("t", "x", (4,), layers)


def test_grouped_conv_validation():
    w = np.ones((6, 2, 3, 3), np.float32)
    ok = Model("t", "x", (4, 5, 5), [Conv2d("c", ("x",), weight=w, groups=2)])
    assert ok.output_shape == (6, 3, 3)
    with pytest.raises(DynfixError, match="groups=3 does not divide its 4 input channels"):
        Model("t", "x", (4, 5, 5), [Conv2d("c", ("x",), weight=np.ones((6, 1, 3, 3),
                                                                     np.float32), groups=3)])
    with pytest.raises(DynfixError, match="groups=4 does not divide its 6 output channels"):
        Model("t", "x", (4, 5, 5), [Conv2d("c", ("x",), weight=w, groups=4)])
    with pytest.raises(DynfixError, match="2 input channels per group, input has 4 per group"):
        Model("t", "x", (8, 5, 5), [Conv2d("c", ("x",), weight=w, groups=2)])
    with pytest.raises(DynfixError, match="groups must be a positive integer"):
        Model("t", "x", (4, 5, 5), [Conv2d("c", ("x",), weight=w, groups=0)])
    with pytest.raises(DynfixError, match="expects a C x H x W input"):
        Model("t", "x", (4,), [GlobalAvgPool("g", ("x",))])
