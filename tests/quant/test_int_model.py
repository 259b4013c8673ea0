"""The integer model against hand-computed cases, the float model, and bad specs."""

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.quant import fixed
from dynfix.quant.float_model import forward
from dynfix.quant.int_model import IntModel
from dynfix.quant.ir import (Affine, AvgPool2d, Conv2d, Flatten, GlobalAvgPool, Linear,
                             MaxPool2d, Model, ReLU, Softmax)
from dynfix.quant.qspec import LayerFormat, QuantSpec


def fmt(name, fan, bw_in, fl_in, bw_w, fl_w, bw_b, fl_b, bw_x, fl_out):
    acc = fixed.acc_bits(fan, bw_in, bw_w, bw_b, fl_in + fl_w - fl_b)
    return LayerFormat(name, bw_w, fl_w, bw_b, fl_b, bw_in, fl_in, bw_x, fl_out, acc)


def linear_model(w, b):
    return Model("lin", "x", (2,), [Linear("fc", ("x",), weight=np.array(w, np.float32),
                                           bias=np.array(b, np.float32))])


def test_linear_hand_computed():
    # x = [0.5, -0.25] at fl 2 -> [2, -1]. Row 0: w [1.5, -0.75] at fl 2 -> [6, -3], bias 0.3
    # at fl 3 -> round(2.4) = 2, shifted left by 2+2-3 = 1 -> 4; acc = 12 + 3 + 4 = 19
    # (binary point 4); fl_out 1 -> shift 3: (19 + 4) >> 3 = 2.
    # Row 1: w [-1.25, 0] -> [-5, 0], bias -0.125 -> -1 -> -2; acc = -12; (-12 + 4) >> 3 = -1
    # (-1.5 rounds half up to -1).
    m = linear_model([[1.5, -0.75], [-1.25, 0.0]], [0.3, -0.125])
    spec = QuantSpec("lin", "manual", "8", 8, 2, {"fc": fmt("fc", 2, 8, 2, 8, 2, 16, 3, 8, 1)})
    im = IntModel(m, spec)
    np.testing.assert_array_equal(im.weights["fc"], [[6, -3], [-5, 0]])
    np.testing.assert_array_equal(im.biases["fc"], [2, -1])
    xq = im.quantize_input(np.array([[0.5, -0.25]], np.float32))
    np.testing.assert_array_equal(xq, [[2, -1]])
    out = im.forward(xq)
    assert set(out) == {"x", "fc"}
    np.testing.assert_array_equal(out["fc"], [[2, -1]])
    assert out["fc"].dtype == np.int64
    np.testing.assert_array_equal(im.dequantize("fc", out["fc"]), [[1.0, -0.5]])


def test_linear_left_shift_and_saturation():
    m = linear_model([[1.5, -0.75], [31.75, 0.0]], [0.3, 0.0])
    # fl_out 6: data shift 4 - 6 = -2; row 0: 19 << 2 = 76 fits 8 bits, saturates 6 bits (31).
    # row 1: w 31.75 at fl 2 = 127; acc 254 << 2 = 1016 -> 127 (8 bit) / 31 (6 bit).
    for bw_x, want in ((8, [76, 127]), (6, [31, 31])):
        spec = QuantSpec("lin", "manual", "8", 8, 2,
                         {"fc": fmt("fc", 2, 8, 2, 8, 2, 16, 3, bw_x, 6)})
        out = IntModel(m, spec).logits(np.array([[0.5, -0.25]], np.float32))
        np.testing.assert_array_equal(out, [want])
    # fl_out -2 at 4 bits: shift 6; 19 -> (19 + 32) >> 6 = 0; 254 -> (254 + 32) >> 6 = 4.
    spec = QuantSpec("lin", "manual", "8", 8, 2, {"fc": fmt("fc", 2, 8, 2, 8, 2, 16, 3, 4, -2)})
    out = IntModel(m, spec).logits(np.array([[0.5, -0.25], [-0.5, 0.25]], np.float32))
    # second sample: acc row 0 = -12 - 3 + 4 = -11 -> (-11 + 32) >> 6 = 0; row 1 = -254 -> -4
    np.testing.assert_array_equal(out, [[0, 4], [0, -4]])


def test_negative_saturation():
    # acc = -2 * 127 = -254 at fl 4, shift 3 -> (-254 + 4) >> 3 = -32 -> saturates to -8 (4 bit)
    m = linear_model([[31.75, 0.0]], [0.0])
    spec = QuantSpec("lin", "manual", "8", 8, 2, {"fc": fmt("fc", 2, 8, 2, 8, 2, 16, 3, 4, 1)})
    out = IntModel(m, spec).logits(np.array([[-0.5, 0.0]], np.float32))
    np.testing.assert_array_equal(out, [[-8]])


def conv_chain(pool):
    w = np.array([[[[1, 2], [-1, 0]]]], np.float32)
    return Model("c", "x", (1, 3, 3), [
        Conv2d("c1", ("x",), weight=w, bias=np.zeros(1, np.float32)),
        ReLU("r", ("c1",)), pool("p", ("r",), kernel=(2, 2), stride=(2, 2)),
        Flatten("f", ("p",))])


def test_conv_relu_pool_hand_computed():
    # x = 1..9 (fl 0). Kernel [[1, 2], [-1, 0]]: out = [[1, 3], [7, 9]]; fl_out -1 -> shift 1
    # rounding half up: [[1, 2], [4, 5]]; relu; maxpool -> 5; avgpool -> (12*2 + 4) // 8 = 3.
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 1, 3, 3)
    spec = QuantSpec("c", "manual", "8", 8, 0, {"c1": fmt("c1", 4, 8, 0, 8, 0, 16, 0, 8, -1)})
    t = IntModel(conv_chain(MaxPool2d), spec).forward(x.astype(np.int64))
    np.testing.assert_array_equal(t["c1"][0, 0], [[1, 2], [4, 5]])
    np.testing.assert_array_equal(t["f"], [[5]])
    t = IntModel(conv_chain(AvgPool2d), spec).forward(x.astype(np.int64))
    np.testing.assert_array_equal(t["f"], [[3]])


def test_conv_padding_and_gap_negative_rounding():
    # 1x1 input, 3x3 kernel with pad 1: only the centre tap sees data. x = 3, w centre = -1,
    # w at fl 1 -> -2, bias -0.5 (fl_b 1 -> -1, bias shift 0): acc = -7 at fl 1 -> fl_out 0:
    # (-7 + 1) >> 1 = -3 (-3.5 rounds half up to -3).
    # A second channel with centre 1 and bias 0: 3 -> (6 + 1) >> 1 = 3. GAP over 1x1 keeps it.
    w = np.zeros((2, 1, 3, 3), np.float32)
    w[0, 0, 1, 1], w[1, 0, 1, 1] = -1.0, 1.0
    m = Model("g", "x", (1, 1, 1), [
        Conv2d("c", ("x",), weight=w, bias=np.array([-0.5, 0.0], np.float32),
               pads=(1, 1, 1, 1)), GlobalAvgPool("g", ("c",))])
    spec = QuantSpec("g", "manual", "8", 8, 0, {"c": fmt("c", 9, 8, 0, 8, 1, 16, 1, 8, 0)})
    t = IntModel(m, spec).forward(np.full((1, 1, 1, 1), 3, np.int64))
    np.testing.assert_array_equal(t["g"].ravel(), [-3, 3])


def test_gap_rounds_half_up():
    # means of [-3, -2] = -2.5 -> -2; [1, 2] = 1.5 -> 2; [-1, -2] = -1.5 -> -1
    m = Model("g", "x", (3, 1, 2), [GlobalAvgPool("g", ("x",))])
    spec = QuantSpec("g", "manual", "8", 8, 0, {})
    x = np.array([[[[-3, -2]], [[1, 2]], [[-1, -2]]]], np.int64)
    np.testing.assert_array_equal(IntModel(m, spec).forward(x)["g"].ravel(), [-2, 2, -1])


def test_affine_and_softmax():
    # scale [0.5, -2] fl_w 1 -> [1, -4]; shift [0.25, 1] fl_b 2 -> [1, 4], bias shift 0+1-2 < 0
    # is not allowed, so fl_b = 1: shift -> [round(0.5), 2] = [1, 2]; x = [3, 1] (fl 0)
    # acc = [3 + 1, -4 + 2] = [4, -2] at fl 1 -> fl_out 1 unchanged.
    m = Model("a", "x", (2,), [Affine("a", ("x",), scale=np.array([0.5, -2], np.float32),
                                      shift=np.array([0.25, 1], np.float32)),
                               Softmax("s", ("a",))])
    spec = QuantSpec("a", "manual", "8", 8, 0, {"a": fmt("a", 1, 8, 0, 8, 1, 16, 1, 8, 1)})
    im = IntModel(m, spec)
    t = im.forward(np.array([[3, 1]], np.int64))
    np.testing.assert_array_equal(t["a"], [[4, -2]])
    np.testing.assert_array_equal(t["s"], [[4, -2]])
    p = im.dequantize("s", t["s"])  # softmax of [2, -1]
    np.testing.assert_allclose(p, [[1 / (1 + np.exp(-3)), np.exp(-3) / (1 + np.exp(-3))]])


def random_net(seed=0):
    rng = np.random.default_rng(seed)
    layers = [
        Conv2d("c1", ("x",), weight=rng.normal(0, 0.3, (4, 1, 3, 3)).astype(np.float32),
               bias=rng.normal(0, 0.1, 4).astype(np.float32), pads=(1, 1, 1, 1)),
        ReLU("r1", ("c1",)), MaxPool2d("p1", ("r1",)), Flatten("f", ("p1",)),
        Linear("fc", ("f",), weight=rng.normal(0, 0.3, (3, 64)).astype(np.float32),
               bias=rng.normal(0, 0.1, 3).astype(np.float32))]
    return Model("net", "x", (1, 8, 8), layers), rng


def test_16_bit_close_to_float():
    m, rng = random_net()
    x = rng.uniform(0, 1, (20, 1, 8, 8)).astype(np.float32)
    spec = QuantSpec("net", "manual", "16", 16, 14, {
        "c1": fmt("c1", 9, 16, 14, 16, 14, 32, 28, 16, 12),
        "fc": fmt("fc", 64, 16, 12, 16, 14, 32, 26, 16, 11)})
    im = IntModel(m, spec)
    trace = forward(m, x)
    out = im.dequantize("fc", im.logits(x))
    # Errors of a few units in the last place of fl 11 (2**-11 ~ 5e-4), never more.
    assert np.abs(out - trace["fc"]).max() < 4e-3
    assert np.abs(out - trace["fc"]).max() > 0  # it really is quantized


def test_spec_mismatch_errors():
    m, _ = random_net()
    good = {"c1": fmt("c1", 9, 8, 7, 8, 7, 16, 14, 8, 5),
            "fc": fmt("fc", 64, 8, 5, 8, 7, 16, 12, 8, 4)}
    IntModel(m, QuantSpec("net", "m", "8", 8, 7, dict(good)))
    with pytest.raises(DynfixError, match="no format for layer.*fc"):
        IntModel(m, QuantSpec("net", "m", "8", 8, 7, {"c1": good["c1"]}))
    with pytest.raises(DynfixError, match="unknown layer.*zz"):
        IntModel(m, QuantSpec("net", "m", "8", 8, 7, dict(good, zz=good["fc"])))
    with pytest.raises(DynfixError, match="fl_in=7.*fl=6"):
        IntModel(m, QuantSpec("net", "m", "8", 8, 6, dict(good)))
    bad = dict(good, fc=fmt("fc", 64, 8, 5, 8, 7, 16, 12, 8, 4))
    bad["fc"].fl_b = 13
    with pytest.raises(DynfixError, match="bias shift"):
        IntModel(m, QuantSpec("net", "m", "8", 8, 7, bad))
    bad = dict(good, fc=fmt("fc", 64, 8, 5, 8, 7, 16, 12, 8, 4))
    bad["fc"].acc_bits = 20
    with pytest.raises(DynfixError, match="acc_bits=20 can overflow"):
        IntModel(m, QuantSpec("net", "m", "8", 8, 7, bad))
    bad = dict(good, fc=fmt("fc", 64, 8, 5, 8, 7, 16, 12, 8, 4))
    bad["fc"].bw_w = 40
    with pytest.raises(DynfixError, match="outside 2..32"):
        IntModel(m, QuantSpec("net", "m", "8", 8, 7, bad))
    with pytest.raises(DynfixError, match="dtype"):
        IntModel(m, QuantSpec("net", "m", "8", 8, 7, dict(good))).forward(
            np.zeros((1, 1, 8, 8), np.float32))


def test_wide_accumulator_exact():
    # acc_bits > 53 takes the int64 path: a = 2**27 - 1; acc = a*a - 1*a = a*(a - 1), which
    # float64 cannot hold exactly (it needs 54 bits). Data shift 0, 32-bit output saturates
    # to 2**31 - 1; at fl_out -24 (shift 24) the rounded value is (a*(a-1) + 2**23) >> 24.
    a = 2 ** 27 - 1
    m = linear_model([[float(a), -1.0]], [0.0])
    for fl_out, want in ((0, 2 ** 31 - 1), (-24, (a * (a - 1) + 2 ** 23) >> 24)):
        f = fmt("fc", 2, 28, 0, 28, 0, 2, 0, 32, fl_out)
        assert f.acc_bits > 53
        out = IntModel(m, QuantSpec("lin", "m", "28", 28, 0, {"fc": f})).forward(
            np.array([[a, a]], np.int64))
        assert int(out["fc"][0, 0]) == want


def test_saturation_count_left_shift():
    from dynfix.quant.int_model import saturation_count
    # shift -2 at 8 bits: 31 << 2 = 124 fits, 32 << 2 = 128 and -33 << 2 = -132 saturate.
    f = fmt("fc", 2, 8, 2, 8, 2, 16, 3, 8, 6)
    assert f.data_shift == -2
    assert saturation_count(np.array([31, 32, -32, -33, 0]), f) == 2
    # shift -9 at 8 bits: any nonzero value saturates (-1 << 9 = -512).
    f = fmt("fc", 2, 8, 2, 8, 2, 16, 3, 8, 13)
    assert saturation_count(np.array([-1, 0, 1]), f) == 2
    # right shift 3: (1019 + 4) >> 3 = 127 fits, 1020 -> 128 saturates; -1028 -> -128 fits,
    # -1029 -> (-1025) >> 3 = -129 saturates.
    f = fmt("fc", 2, 8, 2, 8, 2, 16, 3, 8, 1)
    assert saturation_count(np.array([1019, 1020, -1028, -1029]), f) == 2


def test_float_fast_path_equals_int64_path(monkeypatch):
    """acc_bits <= 53 runs in float64 BLAS; it must equal the pure int64 computation."""
    import dynfix.quant.int_model as im_mod
    m, rng = random_net(5)
    x = rng.uniform(0, 1, (30, 1, 8, 8)).astype(np.float32)
    spec = QuantSpec("net", "manual", "16", 16, 14, {
        "c1": fmt("c1", 9, 16, 14, 16, 14, 32, 28, 16, 12),
        "fc": fmt("fc", 64, 16, 12, 16, 14, 32, 26, 16, 11)})
    im = IntModel(m, spec)
    xq = im.quantize_input(x)
    fast = im.forward(xq)
    monkeypatch.setattr(im_mod, "EXACT_FLOAT_BITS", 0)
    slow = im.forward(xq)
    for name in fast:
        np.testing.assert_array_equal(fast[name], slow[name])


# ----------------------------------------------------------------------------- graphs

from dynfix.quant.int_model import MapFormat, add_sum, narrow  # noqa: E402
from dynfix.quant.ir import Add, Clip  # noqa: E402
from dynfix.quant.qspec import AddFormat  # noqa: E402


def test_add_arithmetic_worked_example():
    # docs/arithmetic.md, "Add": q_a = 6 at fl 3 (0.75), q_b = -21 at fl 4 (-1.3125):
    # F = 4, s = (6 << 1) - 21 = -9; sum_bits = max(8 + 1, 8 + 0) + 1 = 10.
    f = AddFormat("s", (8, 8), (3, 4), 8, 2)
    assert (f.fl_sum, f.align, f.sum_bits) == (4, (1, 0), 10)
    s = add_sum(np.array([6, 127]), np.array([-21, 127]), f)
    np.testing.assert_array_equal(s, [-9, 381])
    # fl_out 2: shift 2: (-9 + 2) >> 2 = -2; (381 + 2) >> 2 = 95
    np.testing.assert_array_equal(narrow(s, f), [-2, 95])
    f.fl_out = 3       # shift 1: 381 -> 191 saturates to 127
    np.testing.assert_array_equal(narrow(s, f), [-4, 127])   # -9 -> (-9 + 1) >> 1 = -4
    f.fl_out = 6       # shift -2: -9 << 2 = -36 exact; 381 << 2 saturates
    np.testing.assert_array_equal(narrow(s, f), [-36, 127])
    f.bw_x = 6         # 6 bits hold [-32, 31]: -36 and 1524 saturate
    np.testing.assert_array_equal(narrow(s, f), [-32, 31])


def residual_lin():
    # x (2 values) -> fc (w = diag(1.5, -1), no bias) -> add(fc, x)
    fc = Linear("fc", ("x",), weight=np.array([[1.5, 0], [0, -1]], np.float32))
    return [fc]


@pytest.mark.parametrize("order", [("fc", "x"), ("x", "fc")])
@pytest.mark.parametrize("bw_x,fl_out,want", [
    # input fl 3: x = [0.75, -1.25] -> [6, -10]; [-0.75, 1.25] -> [-6, 10]
    # fc at fl 1 + 3 = 4, data shift 0: [18, 20] and [-18, -20]
    # add at F = 4: fc + (x << 1) = [30, 0] and [-30, 0]
    (8, 2, [[8, 0], [-7, 0]]),      # shift 2: (30 + 2) >> 2 = 8; (-30 + 2) >> 2 = -7
    (4, 2, [[7, 0], [-7, 0]]),      # 8 saturates to 7 at 4 bits
    (8, 6, [[120, 0], [-120, 0]]),  # shift -2: exact left shift
    (6, 6, [[31, 0], [-32, 0]]),    # ... saturating at 6 bits
    (8, 4, [[30, 0], [-30, 0]]),    # shift 0
])
def test_add_in_the_integer_model(order, bw_x, fl_out, want):
    m = Model("r", "x", (2,), residual_lin() + [Add("add", order)])
    fl_in = (4, 3) if order[0] == "fc" else (3, 4)
    spec = QuantSpec("r", "manual", "8", 8, 3, {
        "fc": fmt("fc", 2, 8, 3, 8, 1, 16, 4, 8, 4),
        "add": AddFormat("add", (8, 8), fl_in, bw_x, fl_out)})
    im = IntModel(m, spec)
    xq = im.quantize_input(np.array([[0.75, -1.25], [-0.75, 1.25]], np.float32))
    np.testing.assert_array_equal(xq, [[6, -10], [-6, 10]])
    t = im.forward(xq)
    np.testing.assert_array_equal(t["fc"], [[18, 20], [-18, -20]])
    np.testing.assert_array_equal(t["add"], want)
    assert im.formats["add"] == MapFormat(bw_x, fl_out)


def test_add_spec_errors():
    m = Model("r", "x", (2,), residual_lin() + [Add("add", ("fc", "x"))])
    fc = fmt("fc", 2, 8, 3, 8, 1, 16, 4, 8, 4)
    good = {"fc": fc, "add": AddFormat("add", (8, 8), (4, 3), 8, 4)}
    IntModel(m, QuantSpec("r", "m", "8", 8, 3, good))
    with pytest.raises(DynfixError, match="no format for layer\\(s\\) add"):
        IntModel(m, QuantSpec("r", "m", "8", 8, 3, {"fc": fc}))
    with pytest.raises(DynfixError, match="'add'.*\\[\\(8, 3, 0\\), \\(8, 4, 0\\)\\] do not "
                                          "match the maps it reads \\[\\(8, 4, 0\\), "
                                          "\\(8, 3, 0\\)\\]"):
        IntModel(m, QuantSpec("r", "m", "8", 8, 3, dict(
            good, add=AddFormat("add", (8, 8), (3, 4), 8, 4))))
    with pytest.raises(DynfixError, match="'add'.*'add' but its format is a compute layer's"):
        IntModel(m, QuantSpec("r", "m", "8", 8, 3, dict(good, add=fc)))
    with pytest.raises(DynfixError, match="'fc'.*'linear' but its format is an Add's"):
        IntModel(m, QuantSpec("r", "m", "8", 8, 3, dict(good, fc=good["add"])))
    with pytest.raises(DynfixError, match="bw_x 40 is outside"):
        IntModel(m, QuantSpec("r", "m", "8", 8, 3, dict(
            good, add=AddFormat("add", (8, 8), (4, 3), 40, 4))))
    # fc at fl 60, x at fl 3: x shifts left by 57 -> 8 + 57 + 1 = 66 bits
    wide = fmt("fc", 2, 8, 3, 8, 1, 16, 4, 8, 60)
    with pytest.raises(DynfixError, match="needs a 66-bit sum; at most 62"):
        IntModel(m, QuantSpec("r", "m", "8", 8, 3, {
            "fc": wide, "add": AddFormat("add", (8, 8), (60, 3), 8, 4)}))


def clip_model(lo, hi):
    return Model("c", "x", (4,), [Clip("c", ("x",), lo=lo, hi=hi)])


@pytest.mark.parametrize("lo,hi,bw,fl,x,want", [
    # ReLU6 at fl 4: q = [-20, 8, 95, 127] (7.9375 at most), hi_q = min(127, 96) = 96
    (0.0, 6.0, 8, 4, [-1.25, 0.5, 5.9375, 7.9375], [0, 8, 95, 96]),
    # ReLU6 at fl 5: the format tops out at 3.97 (127), so hi_q = 127: a ReLU
    (0.0, 6.0, 8, 5, [3.0, -1.0, 5.0, 0.5], [96, 0, 127, 16]),
    # bounds rounded inwards: lo_q = ceil(-2.4) = -2, hi_q = floor(2.8) = 2
    (-0.3, 0.35, 8, 3, [-1.0, -0.25, 0.375, 0.25], [-2, -2, 2, 2]),
    # one-sided: lo = -inf is qmin; hi_q = floor(0.5 * 4) = 2; -3 saturates to -8 on input
    (-np.inf, 0.5, 4, 2, [-3.0, -2.0, 1.0, 0.25], [-8, -8, 2, 1]),
    (-1.0, np.inf, 8, 0, [-5.0, -1.0, 3.0, 200.0], [-1, -1, 3, 127]),
])
def test_clip_bounds(lo, hi, bw, fl, x, want):
    im = IntModel(clip_model(lo, hi), QuantSpec("c", "manual", str(bw), bw, fl, {}))
    out = im.forward(im.quantize_input(np.array([x], np.float32)))
    np.testing.assert_array_equal(out["c"], [want])
    assert im.formats["c"] == MapFormat(bw, fl)       # keeps its input's format


def test_clip_with_no_representable_value_is_rejected():
    # [0.1, 0.2] at fl 2: lo_q = ceil(0.4) = 1 > hi_q = floor(0.8) = 0
    with pytest.raises(DynfixError, match="'c' \\(Clip\\): no 8-bit value at fl 2 lies in "
                                          "\\[0.1, 0.2\\]"):
        IntModel(clip_model(0.1, 0.2), QuantSpec("c", "m", "8", 8, 2, {}))
    # lo = 10 above what 8 bits at fl 4 hold (7.94)
    with pytest.raises(DynfixError, match="no 8-bit value"):
        IntModel(clip_model(10.0, 20.0), QuantSpec("c", "m", "8", 8, 4, {}))


def test_grouped_conv_hand_computed():
    # groups=2, 1x1: out 0, 1 read channels 0, 1; out 2, 3 read channels 2, 3.
    # x = [1, 2, 3, 4]; w rows [1, 2], [3, -1], [1, 1], [-2, 0]; bias [0, 1, 0, -1]
    # -> [1 + 4, 3 - 2 + 1, 3 + 4, -6 - 1] = [5, 2, 7, -7]
    w = np.array([[1, 2], [3, -1], [1, 1], [-2, 0]], np.float32).reshape(4, 2, 1, 1)
    m = Model("g", "x", (4, 1, 1), [Conv2d("c", ("x",), weight=w, groups=2,
                                           bias=np.array([0, 1, 0, -1], np.float32))])
    spec = QuantSpec("g", "manual", "8", 8, 0, {"c": fmt("c", 2, 8, 0, 8, 0, 16, 0, 8, 0)})
    out = IntModel(m, spec).forward(np.array([1, 2, 3, 4]).reshape(1, 4, 1, 1))
    np.testing.assert_array_equal(out["c"].reshape(-1), [5, 2, 7, -7])
    # depthwise 2x2 on a 2x2 map: ch0 [[1,2],[3,4]] * [[1,0],[0,1]] = 5;
    # ch1 [[-1,0],[2,5]] * [[2,1],[-1,1]] = -2 + 0 - 2 + 5 = 1; fl_out -1: (5+1)>>1 = 3, 1 -> 1
    w = np.array([[1, 0, 0, 1], [2, 1, -1, 1]], np.float32).reshape(2, 1, 2, 2)
    m = Model("d", "x", (2, 2, 2), [Conv2d("c", ("x",), weight=w, groups=2)])
    spec = QuantSpec("d", "manual", "8", 8, 0, {"c": fmt("c", 4, 8, 0, 8, 0, 16, 0, 8, -1)})
    x = np.array([1, 2, 3, 4, -1, 0, 2, 5]).reshape(1, 2, 2, 2)
    np.testing.assert_array_equal(IntModel(m, spec).forward(x)["c"].reshape(-1), [3, 1])


def test_grouped_conv_accumulator_from_group_fan_in():
    # depthwise 3x3 over 64 channels: fan-in 9 -> 19 bits (docs/arithmetic.md), where a
    # dense 3x3 over 64 channels would need 25
    m = Model("d", "x", (64, 5, 5), [Conv2d("c", ("x",), weight=np.zeros((64, 1, 3, 3),
                                                                         np.float32),
                                            groups=64)])
    f = fmt("c", 9, 8, 0, 8, 0, 16, 0, 8, 0)
    assert f.acc_bits == 19
    IntModel(m, QuantSpec("d", "m", "8", 8, 0, {"c": f}))
    f.acc_bits = 18
    with pytest.raises(DynfixError, match="acc_bits=18 can overflow; this layer needs 19"):
        IntModel(m, QuantSpec("d", "m", "8", 8, 0, {"c": f}))
