"""Lowering (quant/lower.py): a global average pool folded into the Linear after it.

The float function is unchanged, the expanded weight is W / (H*W) repeated over the map, the
cases that are not "global mean -> Flatten -> Linear" are left alone, and the integer model
and the quantizer (Q.yaml round trip included) work on the lowered graph.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dynfix.quant import fixed
from dynfix.quant.float_model import predict
from dynfix.quant.int_model import IntModel, has_format
from dynfix.quant.ir import (Add, AvgPool2d, Conv2d, Flatten, GlobalAvgPool, Linear, Model,
                             ReLU)
from dynfix.quant.lower import lower
from dynfix.quant.qspec import LayerFormat, QuantSpec
from dynfix.quant.qspec_io import load_qspec, params_path, save_qspec
from dynfix.quant.search import search_model
from graph_nets import calib, res_dw_model


def rand(rng, *shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def head_model(pool: str, hw=(5, 6), seed=0) -> Model:
    """conv (3 -> 4 channels, 3x3, pad 1) -> ReLU -> pool -> Flatten -> Linear (7 outputs)
    on a 3 x H x W input; ``pool`` is 'gap' or 'avg' (an AvgPool2d over the whole map, with
    stride, ceil mode and count_include_pad set, which must not matter)."""
    rng = np.random.default_rng(seed)
    h, w = hw
    p = (GlobalAvgPool("pool", ("r",)) if pool == "gap" else
         AvgPool2d("pool", ("r",), kernel=(h, w), stride=(3, 2), ceil_mode=True,
                   count_include_pad=True))
    return Model("head", "x", (3, h, w), [
        Conv2d("c", ("x",), weight=rand(rng, 4, 3, 3, 3, scale=0.5), bias=rand(rng, 4),
               pads=(1, 1, 1, 1)),
        ReLU("r", ("c",)), p, Flatten("flat", ("pool",)),
        Linear("fc", ("flat",), weight=rand(rng, 7, 4), bias=rand(rng, 7))])


def assert_same_function(m: Model, low: Model, x: np.ndarray) -> None:
    a, b = predict(m, x).astype(np.float64), predict(low, x).astype(np.float64)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max())


# -- (a) the float function is unchanged ------------------------------------------------------

@pytest.mark.parametrize("pool", ["gap", "avg"])
def test_float_outputs_unchanged(pool):
    m = head_model(pool)
    low = lower(m)
    assert [l.name for l in low.layers] == ["c", "r", "flat", "fc"]      # the pool is gone
    assert low.layer("flat").inputs == ("r",) and low.layer("fc").out_shape == (7,)
    x = np.random.default_rng(1).standard_normal((16, 3, 5, 6)).astype(np.float32)
    assert_same_function(m, low, x)


def test_float_outputs_unchanged_residual_depthwise_net():
    m = res_dw_model(3)
    low = lower(m)
    assert "gap" not in [l.name for l in low.layers]
    assert low.layer("fc").weight.shape == (10, 16 * 4 * 4)
    assert_same_function(m, low, calib(32, 7))


# -- (b) the expanded weight ------------------------------------------------------------------

def test_expanded_weight_by_hand():
    # W = [[1, 2], [-4, 0.5]] over a 2-channel 1 x 2 map (H*W = 2): each weight halves and
    # appears once per position, channel by channel (flatten is C, H, W order).
    w = np.array([[1.0, 2.0], [-4.0, 0.5]], np.float32)
    b = np.array([0.25, -1.0], np.float32)
    m = Model("t", "x", (2, 1, 2), [GlobalAvgPool("g", ("x",)), Flatten("f", ("g",)),
                                    Linear("fc", ("f",), weight=w, bias=b)])
    low = lower(m)
    fc = low.layer("fc")
    np.testing.assert_array_equal(fc.weight, [[0.5, 0.5, 1.0, 1.0], [-2.0, -2.0, 0.25, 0.25]])
    assert fc.weight.dtype == np.float32
    np.testing.assert_array_equal(fc.bias, b)
    assert [(l.name, l.inputs) for l in low.layers] == [("f", ("x",)), ("fc", ("f",))]
    np.testing.assert_array_equal(m.layer("fc").weight, w)       # the original is untouched


def test_expanded_weight_matches_repeat():
    m = head_model("gap")
    w = m.layer("fc").weight.astype(np.float64)
    hw = 5 * 6
    want = np.zeros((7, 4 * hw))
    for c in range(4):                                  # columns c*H*W .. c*H*W + H*W - 1
        want[:, c * hw:(c + 1) * hw] = (w[:, c] / hw)[:, None]
    np.testing.assert_allclose(lower(m).layer("fc").weight, want, rtol=1e-7)


# -- (c) what is left alone -------------------------------------------------------------------

def left_alone_models() -> dict[str, Model]:
    rng = np.random.default_rng(2)

    def conv():
        return Conv2d("c", ("x",), weight=rand(rng, 4, 3, 1, 1))

    def fc(name="fc", src="flat", features=4):
        return Linear(name, (src,), weight=rand(rng, 5, features))

    models = [
        Model("last", "x", (3, 4, 4), [conv(), GlobalAvgPool("g", ("c",))]),
        Model("two", "x", (3, 4, 4), [                 # the pool feeds two layers
            conv(), GlobalAvgPool("g", ("c",)), Flatten("flat", ("g",)), fc(),
            Flatten("flat2", ("g",)), fc("fc2", "flat2"), Add("sum", ("fc", "fc2"))]),
        Model("flat_two", "x", (3, 4, 4), [            # its Flatten feeds two layers
            conv(), GlobalAvgPool("g", ("c",)), Flatten("flat", ("g",)), fc(),
            fc("fc2"), Add("sum", ("fc", "fc2"))]),
        Model("conv_after", "x", (3, 4, 4), [          # a Conv reads the pool
            conv(), GlobalAvgPool("g", ("c",)),
            Conv2d("c2", ("g",), weight=rand(rng, 4, 4, 1, 1)), Flatten("flat", ("c2",)),
            fc()]),
        Model("partial", "x", (3, 4, 4), [             # 2 x 2 windows on a 4 x 4 map
            conv(), AvgPool2d("p", ("c",), kernel=(2, 2), stride=(2, 2)),
            Flatten("flat", ("p",)), fc(features=16)]),
        Model("padded", "x", (3, 4, 4), [              # a whole-map window, but padded
            conv(), AvgPool2d("p", ("c",), kernel=(4, 4), stride=(4, 4), pads=(1, 1, 1, 1),
                              count_include_pad=True),
            Flatten("flat", ("p",)), fc()]),
    ]
    return {m.name: m for m in models}


@pytest.mark.parametrize("name", ["last", "two", "flat_two", "conv_after", "partial",
                                  "padded"])
def test_left_alone(name):
    m = left_alone_models()[name]
    assert lower(m) is m


# -- (d) idempotence --------------------------------------------------------------------------

def test_idempotent():
    m = res_dw_model()
    low = lower(m)
    assert low is not m and lower(low) is low
    chain = Model("chain", "x", (4,), [Linear("fc", ("x",), weight=np.eye(4, dtype=np.float32))])
    assert lower(chain) is chain


# -- (e) the integer model and the quantizer on the lowered graph -----------------------------

def test_integer_fold_hand_computed():
    # One channel, 2 x 2 map x = [1, 2, 3, 4] at fl 0, W = 1: W' = 1/4 per position, fl_w 2
    # -> integers [1, 1, 1, 1]; acc = 10 at fl 2; fl_out 1 -> (10 + 1) >> 1 = 5, i.e. 2.5,
    # the exact mean (rounding the mean first, as before the fold, gave 3). Negated:
    # acc = -10 -> (-10 + 1) >> 1 = -5, i.e. -2.5.
    m = Model("t", "x", (1, 2, 2), [GlobalAvgPool("g", ("x",)), Flatten("f", ("g",)),
                                    Linear("fc", ("f",), weight=np.ones((1, 1), np.float32),
                                           bias=np.zeros(1, np.float32))])
    acc = fixed.acc_bits(4, 8, 8, 16, 0)
    spec = QuantSpec("t", "manual", "8", 8, 0,
                     {"fc": LayerFormat("fc", 8, 2, 16, 2, 8, 0, 8, 1, acc)})
    im = IntModel(m, spec)
    np.testing.assert_array_equal(im.weights["fc"], [[1, 1, 1, 1]])
    x = np.array([[1, 2, 3, 4], [-1, -2, -3, -4]], np.int64).reshape(2, 1, 2, 2)
    t = im.forward(x)
    assert "g" not in t and "g" not in im.formats
    np.testing.assert_array_equal(t["fc"], [[5], [-5]])


def test_int_model_same_on_original_and_lowered():
    m = res_dw_model(1)
    x = calib(100, 4)
    r = search_model(m, x[:60], "8")
    low = lower(m)
    a = IntModel(m, r.spec).logits(x[60:])
    np.testing.assert_array_equal(IntModel(low, r.spec).logits(x[60:]), a)
    np.testing.assert_array_equal(IntModel(r.model, r.spec).logits(x[60:]), a)
    assert r.model.layer("fc").weight.shape == (10, 256)     # the search's model is lowered
    f = r.spec.layers["fc"]                                  # fan-in 256 = 16 x 4 x 4
    assert f.acc_bits >= fixed.acc_bits(256, 8, 8, 16, f.bias_shift)


def test_linear_format_is_for_the_expanded_weight():
    # greedy-paper picks fl_w at most one below the overflow-free fl of max|W'|, so the
    # largest integer weight is at least 32; had fl_w been picked for W, whose values are
    # 16 times those of W' = W / 16, no integer of W' could exceed 127 / 16 < 8.
    m = res_dw_model(1)
    spec = search_model(m, calib(60, 4), "8", "greedy-paper").spec
    assert np.abs(IntModel(m, spec).weights["fc"]).max() >= 32


def test_qyaml_round_trip_on_original_model(tmp_path):
    m = res_dw_model(2)
    x = calib(90, 6)
    r = search_model(m, x[:60], "8")               # greedy: adjusted (lowered) parameters
    assert "fc" in r.spec.params and r.spec.params["fc"]["weight"].shape == (10, 256)
    save_qspec(r.spec, tmp_path / "Q.yaml")
    assert params_path(tmp_path / "Q.yaml").is_file()
    back = load_qspec(tmp_path / "Q.yaml", m)      # the original model, pool and all
    assert list(back.layers) == list(r.spec.layers)
    # the same layers have a format in the original and the lowered graph (pools have none)
    assert [l.name for l in m.layers if has_format(l)] == \
        [l.name for l in lower(m).layers if has_format(l)] == list(back.layers)
    np.testing.assert_array_equal(back.params["fc"]["weight"], r.spec.params["fc"]["weight"])
    np.testing.assert_array_equal(IntModel(m, back).logits(x[60:]),
                                  IntModel(r.model, r.spec).logits(x[60:]))


# -- (f) an MLPerf Tiny model quantizes after lowering ----------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))


def test_resnet8_quantizes_lowered(tmp_path):
    import mlperf_tiny as mt
    from dynfix.quant.load import load_model
    m = load_model(str(mt.build("resnet8", tmp_path)))
    low = lower(m)
    assert not any(l.op in ("avgpool", "gap") for l in low.layers)
    assert low.layer(m.layers[-2].name).weight.shape == (10, 64 * 8 * 8)
    x = mt.sample_inputs("resnet8", 24, 1)
    r = search_model(m, x[:16], "8", "greedy-paper")
    fc = r.spec.layers[m.layers[-2].name]
    assert fc.acc_bits >= fixed.acc_bits(4096, 8, 8, 16, fc.bias_shift)
    f = predict(m, x[16:])
    im = IntModel(m, r.spec)
    q = im.dequantize(im.output_name, im.logits(x[16:]))
    assert q.shape == f.shape == (8, 10) and np.all(np.isfinite(q))
