"""The fl search: hand-derived choices on constructed data, the baselines, bit specs, errors."""

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.quant.bits import layer_widths, parse_bits
from dynfix.quant import fixed
from dynfix.quant.float_model import forward
from dynfix.quant.int_model import IntModel
from dynfix.quant.ir import Clip, Conv2d, Flatten, Linear, MaxPool2d, Model, ReLU
from dynfix.quant.search import search, search_model

from quant_helpers import digits_like_net

# One outlier (1.0) and forty small values (0.1): at 4 bits the overflow-free fl is 2, but
# clipping the outlier pays. L1 error by fl (hand-computed, values * 2**fl rounded half up,
# saturated to [-8, 7]): fl 2: 0 + 40*0.1 = 4.0; fl 3: 0.125 + 40*0.025 = 1.125;
# fl 4: 0.5625 + 40*0.025 = 1.5625; fl 5: 0.78125 + 40*0.00625 = 1.03125 (best);
# fl 6: 0.890625 + 0.25 = 1.140625; fl 7: 0.9453 + 40*0.0453 = 2.758.
SKEWED = np.array([1.0] + [0.1] * 40, np.float32)


def one_linear(w=1.0, b=0.0):
    return Linear("fc", ("x",), weight=np.array([[w]], np.float32),
                  bias=np.array([b], np.float32))


def test_greedy_weight_window_beats_overflow_free_start():
    m = Model("t", "x", (41,), [Linear("fc", ("x",), weight=SKEWED[None, :].copy())])
    spec = search(m, np.ones((3, 41), np.float32), "4", "greedy-paper")
    assert spec.layers["fc"].fl_w == 5


def test_greedy_data_phase_hand_derived():
    # Input: the SKEWED values, one per sample -> fl 5 (table above): 1.0 -> 7, 0.1 -> 3.
    # Weight 1.0 at 4 bits: fl 2 (q = 4, exact). acc = [28, 12] at fl 7; the output is
    # compared with the float [1.0, 0.1 x 40]: fl 7: 2.758, fl 6: 1.1406, fl 5: 1.03125,
    # fl 4: 1.75, fl 3: 1.75, fl 2: 4.75, fl 1: 5.0 -> fl_out 5; 28 >> 2 = 7 is exact, so
    # nothing saturates.
    m = Model("t", "x", (1,), [one_linear()])
    spec = search(m, SKEWED[:, None], "4", "greedy-paper")
    f = spec.layers["fc"]
    assert (spec.input_fl, f.fl_w, f.fl_in, f.fl_out, f.saturated) == (5, 2, 5, 5, 0)
    assert f.bw_b == 8 and f.fl_b <= f.fl_in + f.fl_w


def test_compared_after_relu():
    # x = [-4, 0.5] at 8 bits: input fl 4 (exact), w = 1 at fl 6. Pre-ReLU the map needs
    # fl <= 5 for -4; after ReLU only 0.5 matters (overflow-free fl 7, exact). -4 saturates.
    m = Model("t", "x", (1,), [one_linear(), ReLU("r", ("fc",))])
    spec = search(m, np.array([[-4.0], [0.5]], np.float32), "8", "greedy-paper")
    f = spec.layers["fc"]
    assert (spec.input_fl, f.fl_w, f.fl_out, f.saturated) == (4, 6, 7, 1)
    assert f.sqnr_db == float("inf")


def two_layers():
    return Model("t", "x", (1,), [one_linear(1.0), ReLU("r", ("fc",)),
                                  Linear("fc2", ("r",), weight=np.array([[0.25]], np.float32))])


def test_range_rule():
    # Ristretto at 4 bits: data fl = 4 - ceil(log2 max); weights one bit less.
    # input max 1.0 -> 4; fc w 1.0 -> 3; fc out max 1.0 -> 4; fc2 w 0.25 -> 5; out 0.25 -> 6.
    spec = search(two_layers(), np.array([[1.0], [0.5]], np.float32), "4", "range")
    a, b = spec.layers["fc"], spec.layers["fc2"]
    assert (spec.input_fl, a.fl_w, a.fl_out, b.fl_w, b.fl_out) == (4, 3, 4, 5, 6)


def test_static_one_fl_per_kind():
    # Whole-network maxima: data 1.0 -> fl 4 everywhere, weights 1.0 -> fl 3 for both.
    spec = search(two_layers(), np.array([[1.0], [0.5]], np.float32), "4", "static")
    a, b = spec.layers["fc"], spec.layers["fc2"]
    assert (spec.input_fl, a.fl_out, b.fl_out) == (4, 4, 4)
    assert (a.fl_w, b.fl_w) == (3, 3)


def test_16_bit_class_agreement_and_sqnr():
    m, x = digits_like_net()
    spec = search(m, x[:100], "16")
    im = IntModel(m, spec)
    agree = np.mean(im.logits(x[100:]).argmax(1) == forward(m, x[100:])["fc"].argmax(1))
    assert agree >= 0.99
    assert all(f.sqnr_db > 50 for f in spec.layers.values())
    spec8 = search(m, x[:100], "8")
    assert all(f.sqnr_db < 50 for f in spec8.layers.values())


def test_mixed_bits_and_overrides():
    m, x = digits_like_net()
    assert parse_bits("8/4") == (8, 8, 4) and parse_bits("8 / 4 / 2") == (8, 4, 2)
    assert layer_widths(m, "8/4/2")[1]["c1"].bw_w == 4
    in_bw, w = layer_widths(m, "8/4")
    assert in_bw == 8 and (w["c1"].bw_w, w["fc"].bw_w) == (8, 4)
    assert (w["c1"].bw_b, w["fc"].bw_b) == (16, 12)  # bw_in + bw_w
    in_bw, w = layer_widths(m, "16", {"x": {"bw_x": 8}, "c1": {"bw_x": 6, "bw_b": 20},
                                      "fc": {"bw_w": 3}})
    assert in_bw == 8 and (w["c1"].bw_in, w["c1"].bw_x, w["c1"].bw_b) == (8, 6, 20)
    assert (w["fc"].bw_in, w["fc"].bw_w, w["fc"].bw_b) == (6, 3, 9)
    spec = search(m, x, "16", overrides={"c1": {"bw_x": 6}})
    assert spec.layers["fc"].bw_in == 6
    assert spec.layers["c1"].bw_b == 32  # 16 + 16 capped at 32


@pytest.mark.parametrize("bits", ["1", "33", "8/40", "8/4/2/1", "8/4/1", "abc", "", "8/", "8//4"])
def test_bad_bits(bits):
    m, x = digits_like_net()
    with pytest.raises(DynfixError, match="bits spec"):
        search(m, x, bits)


@pytest.mark.parametrize("calib,match", [
    (np.zeros((5, 1, 8, 7), np.float32), "calibration data: input has shape"),
    (np.zeros((0, 1, 8, 8), np.float32), "calibration data: input batch is empty"),
    (np.array([["a"] * 64]).reshape(1, 1, 8, 8), "calibration data has dtype"),
    (np.full((2, 1, 8, 8), np.nan, np.float32), "calibration data: .*NaN"),
])
def test_bad_calib(calib, match):
    m, _ = digits_like_net()
    with pytest.raises(DynfixError, match=match):
        search(m, calib, "8")


@pytest.mark.parametrize("ov,match", [({"zz": {"bw_x": 8}}, "no compute layer 'zz'"),
                                      ({"c1": {"bw_q": 8}}, "unknown key"),
                                      ({"c1": {"bw_w": 40}}, "outside 2..32"),
                                      ({"x": {"bw_w": 8}}, "unknown key")])
def test_bad_overrides(ov, match):
    m, x = digits_like_net()
    with pytest.raises(DynfixError, match=match):
        search(m, x, "8", overrides=ov)


def test_unknown_method():
    m, x = digits_like_net()
    with pytest.raises(DynfixError, match="unknown method"):
        search(m, x, "8", "minmax")


def test_bundled_digits_targets():
    """The issue's done-when figures on the bundled model (digits test split)."""
    load = pytest.importorskip("dynfix.quant.load")
    from dynfix.quant.datasets import load_digits
    m = load.load_model("digits")
    calib, _ = load_digits("calib")
    xt, yt = load_digits("test")
    fpred = forward(m, xt)[m.layers[-1].name].argmax(1)
    facc = np.mean(fpred == yt)
    r16, r8 = search_model(m, calib, "16"), search_model(m, calib, "8")
    p16 = IntModel(r16.model, r16.spec).logits(xt).argmax(1)
    p8 = IntModel(r8.model, r8.spec).logits(xt).argmax(1)
    assert np.mean(p16 == fpred) >= 0.99
    assert abs(np.mean(p16 == yt) - facc) <= 0.002
    assert np.mean(p8 == yt) >= facc - 0.005


# ----------------------------------------------------------------------------- graphs

from graph_nets import calib, res_dw_model  # noqa: E402
from dynfix.quant.ir import Add  # noqa: E402
from dynfix.quant.qspec import AddFormat, LayerFormat  # noqa: E402


def test_greedy_add_hand_derived():
    # x -> fc (w = 1) -> add(fc, x) on the SKEWED values at 4 bits. Input fl 5 and fc fl_out
    # 5 as in test_greedy_data_phase_hand_derived: x -> [7, 3], fc -> [7, 3]. The Add sums at
    # F = 5: [14, 6]; its float output is [2.0, 0.2 x 40], overflow-free start fl 1, window
    # 0..6. L1 error by fl_out (shift 5 - fl, rounded half up, saturated to [-8, 7]):
    # 0: 2 + 8 = 10; 1: 1.5 + 8 = 9.5; 2: [2, 1] 1.5 + 2 = 3.5; 3: [4, 2] 1.5 + 2 = 3.5;
    # 4: [7, 3] 1.5625 + 0.5 = 2.0625 (best); 5: [7 (sat), 6] 1.78125 + 0.5 = 2.28125;
    # 6: [7, 7] (both saturate) 1.890625 + 3.625 = 5.515625.
    m = Model("t", "x", (1,), [one_linear(), Add("add", ("fc", "x"))])
    spec = search(m, SKEWED[:, None], "4", "greedy-paper")
    f = spec.layers["add"]
    assert isinstance(f, AddFormat)
    assert (spec.input_fl, spec.layers["fc"].fl_out) == (5, 5)
    assert (f.bw_in, f.fl_in, f.bw_x, f.fl_out, f.saturated) == ((4, 4), (5, 5), 4, 4, 0)


def test_residual_depthwise_net_formats_follow_the_graph():
    m = res_dw_model(1)
    x = calib(300, 11)
    r = search_model(m, x[:200], "8")
    spec = r.spec
    assert list(spec.layers) == ["c0", "c1", "c2", "add1", "c3", "c4", "proj", "add2", "dw",
                                 "pw", "fc"]
    L = spec.layers
    assert all(isinstance(L[a], AddFormat) for a in ("add1", "add2"))
    assert all(isinstance(f, LayerFormat) for n, f in L.items() if not n.startswith("add"))
    assert L["add1"].fl_in == (L["c2"].fl_out, L["c0"].fl_out)    # c2 and r0 (c0's format)
    assert L["c3"].fl_in == L["proj"].fl_in == L["add1"].fl_out    # both read a1
    assert L["add2"].fl_in == (L["c4"].fl_out, L["proj"].fl_out)
    assert L["dw"].fl_in == L["add2"].fl_out
    # depthwise: the accumulator is sized for a fan-in of 9 (8-bit x, w; 16-bit bias)
    assert L["dw"].acc_bits == fixed.acc_bits(9, 8, 8, 16, L["dw"].bias_shift)
    assert all(f.sqnr_db > 15 for f in L.values())
    im = IntModel(r.model, spec)
    ref = forward(m, x[200:])["fc"].astype(np.float64)
    y = im.dequantize("fc", im.logits(x[200:]))
    assert np.mean(y.argmax(1) == ref.argmax(1)) >= 0.95
    assert 10 * np.log10((ref ** 2).sum() / ((ref - y) ** 2).sum()) > 20
    # the baselines also give a valid spec; range is worse on the output
    errors = {}
    for method in ("greedy", "greedy-paper", "range", "static"):
        s = r if method == "greedy" else search_model(m, x[:200], "8", method)
        im = IntModel(s.model, s.spec)
        errors[method] = np.abs(im.dequantize("fc", im.logits(x[200:])) - ref).sum()
    assert errors["greedy"] <= errors["range"]
    assert errors["greedy-paper"] <= errors["range"]


def test_static_shares_one_data_fl_with_adds():
    m = res_dw_model(2)
    spec = search(m, calib(100, 3), "8", "static")
    fls = {f.fl_out for f in spec.layers.values()} | {spec.input_fl}
    assert len(fls) == 1


def test_widths_of_adds_and_grouped_convs():
    m = res_dw_model(0)
    in_bw, w = layer_widths(m, "8/4")
    assert (w["dw"].bw_w, w["c0"].bw_w, w["fc"].bw_w) == (8, 8, 4)   # grouped: conv weights
    assert (w["add1"].bw_x, w["add1"].bw_w, w["add1"].bw_b) == (8, 0, 0)
    in_bw, w = layer_widths(m, "8", {"add1": {"bw_x": 6}, "c2": {"bw_x": 12}})
    assert w["add1"].bw_x == 6 and w["c3"].bw_in == w["proj"].bw_in == 6
    assert w["c3"].bw_b == 14 and w["c1"].bw_in == 8
    spec = search(m, calib(60), "8", overrides={"add1": {"bw_x": 6}, "c2": {"bw_x": 12}})
    assert spec.layers["add1"].bw_in == (12, 8) and spec.layers["add1"].bw_x == 6
    assert spec.layers["proj"].bw_in == 6
    with pytest.raises(DynfixError, match="'add1': unknown key\\(s\\) bw_w; allowed: bw_x"):
        layer_widths(m, "8", {"add1": {"bw_w": 4}})
    with pytest.raises(DynfixError, match="no compute layer 'r6'"):
        layer_widths(m, "8", {"r6": {"bw_x": 4}})


def test_clip_in_the_tail_is_compared_after_clipping():
    # x in [0, 10] -> fc (w = 1) -> ReLU6: the stored map holds at most 6, not 10.
    m = Model("t", "x", (1,), [one_linear(), Clip("r6", ("fc",), lo=0.0, hi=6.0)])
    x = np.linspace(0, 10, 41, dtype=np.float32)[:, None]
    # range rule (no sign bit for data) on max 6: fl = 8 - ceil(log2 6) = 5 (on 10 it is 4)
    assert search(m, x, "8", "range").layers["fc"].fl_out == 5
    # greedy (the inputs are multiples of 0.25, exact at fl >= 2): after the clip, fl 3 and
    # fl 4 are both exact and the tie goes to the overflow-free start for 6, fl 4; compared
    # before the clip, fl 4 would saturate the values above 7.94 and fl 3 would win.
    spec = search(m, x, "8", "greedy-paper")
    assert spec.layers["fc"].fl_out == 4
    im = IntModel(m, spec)
    y = im.dequantize("r6", im.logits(x))
    assert y.max() == 6.0 and y.min() == 0.0


def test_a_relu_after_an_average_pool_keeps_the_conv_map_signed():
    """Conv -> AveragePool -> ReLU: the mean of a signed map is signed, so the conv's output
    is not a ReLU's input and must not be stored unsigned (a max pool commutes with the
    ReLU; an average does not). Stored unsigned, every negative value of the conv would be
    saturated to 0 before the pool averages it."""
    from dynfix.quant.ir import AvgPool2d
    from dataclasses import replace
    from dynfix.quant.search import method_options, never_negative, segments
    rng = np.random.default_rng(3)
    conv = Conv2d("conv", ("x",), weight=rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32),
                  bias=np.zeros(4, np.float32), pads=(1, 1, 1, 1))
    pool = AvgPool2d("pool", ("conv",), kernel=(2, 2), stride=(2, 2))
    layers = [conv, pool, ReLU("relu", ("pool",)), Flatten("flat", ("relu",)),
              Linear("fc", ("flat",), weight=rng.normal(0, 0.3, (3, 64)).astype(np.float32),
                     bias=np.zeros(3, np.float32))]
    m = Model("t", "x", (1, 8, 8), layers)
    seg = segments(m)[0]
    assert [t.name for t in seg.tail] == ["pool", "relu", "flat"]
    assert not never_negative(seg)
    assert never_negative(replace(seg, tail=[MaxPool2d("pool", ("conv",)), seg.tail[1]]))
    x = rng.normal(0, 1, (40, 1, 8, 8)).astype(np.float32)
    options = method_options("greedy-paper", {"unsigned": True})
    result = search_model(m, x, "8", "greedy-paper", options=options)
    spec = result.spec
    assert spec.layers["conv"].zp_out == 0
    im = IntModel(m, spec)
    got = im.dequantize("pool", im.forward(im.quantize_input(x))["pool"])
    want = forward(m, x)["pool"]
    assert np.mean(np.abs(got - want)) < 0.05
