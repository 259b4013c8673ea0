"""System tests: whole networks on the generated Verilog under Icarus (cocotb, the bulk
harness :func:`dynfix.sim.simulate.simulate`), compared bit for bit with the integer model;
the engine's cycle counters against the cycle model."""

from __future__ import annotations


import numpy as np
import pytest

from dynfix.hw.config import EngineConfig, Multiplier
from dynfix.quant.datasets import load_digits
from dynfix.quant.int_model import IntModel

from hw_models import (digits_8bit, rect_pool_net, residual_net, resize_net, small_net,
                       view_net)
from sim_helpers import check, simulate

pytestmark = pytest.mark.usefixtures("icarus")


def test_digits_bit_exact(tmp_path):
    model, spec = digits_8bit()
    x, _ = load_digits("test")
    check(*simulate(model, spec, EngineConfig(tn=9, tm=1), x[:2], tmp_path))


def test_digits_straddling_groups_bit_exact(tmp_path):
    """tm = 4 output channels on 3 lanes: groups start at lanes 0, 1, 2, 0 of successive
    words and straddle two; the FC's last group holds 2 channels (write-back masks)."""
    model, spec = digits_8bit()
    x, _ = load_digits("test")
    cm, ref, res = simulate(model, spec, EngineConfig(tn=3, tm=4), x[:2], tmp_path)
    assert cm.config.wb_words == 2
    check(cm, ref, res)


def test_digits_ecp5_dsp_bit_exact(tmp_path):
    """Every product on an instantiated MULT18X18D with its registers (``ecp5_dsp``) under
    Icarus with dynfix's cell model: bit-exact, the cycle model exact (the latency is the
    generic array's)."""
    model, spec = digits_8bit()
    x, _ = load_digits("test")
    cfg = EngineConfig(tn=3, tm=4, multiplier=Multiplier.ECP5)
    cm, ref, res = simulate(model, spec, cfg, x[:2],
                            tmp_path)
    text = (tmp_path / "gen" / "dynfix_engine.v").read_text()
    assert text.count("MULT18X18D #(") == 12
    check(cm, ref, res)


def test_digits_lut_products_bit_exact(tmp_path):
    """More products than MULT18X18D cells: the last 7 of 12 (row-major: row 1's last lane,
    rows 2 and 3) in LUTs (``lut_products``), the rest on cells, under Icarus: bit-exact,
    the cycle model exact (a LUT product has the cell's latency)."""
    model, spec = digits_8bit()
    x, _ = load_digits("test")
    cm, ref, res = simulate(model, spec, EngineConfig(tn=3, tm=4, multiplier=Multiplier.ECP5,
                                                      lut_products=7), x[:3], tmp_path)
    text = (tmp_path / "gen" / "dynfix_engine.v").read_text()
    assert text.count("MULT18X18D #(") == cm.config.dsp_blocks == 5
    check(cm, ref, res)


def test_small_net_im2col_bit_exact(tmp_path):
    """The host streams the first conv's windows (stride 2, asymmetric padding): 45 window
    channels on 4 lanes; a one-lane-per-convolver engine (k=1)."""
    model, spec, calib = small_net()
    cm, ref, res = simulate(model, spec, EngineConfig(tn=4, tm=2, im2col=1),
                            calib[2:3] * 2, tmp_path)
    assert cm.input_window is not None and cm.input_shape == (45, 4, 3)
    check(cm, ref, res)


@pytest.mark.parametrize("cfg", [EngineConfig(tn=4, tm=2),
                                 EngineConfig(tn=3, tm=4, multiplier=Multiplier.ICE40_DUAL)],
                         ids=["packed", "straddling-dual"])
def test_residual_net_bit_exact(tmp_path, cfg):
    """Residual Adds fused into their convs (identity and 1x1-projection shortcuts, ReLU and
    ReLU6 after the Adds): bit-exact, cycle model exact. With tm = 4 on 3 lanes the shortcut
    of a group straddles two words (two slot reads per pixel)."""
    model, spec, calib = residual_net()
    cm, ref, res = simulate(model, spec, cfg, calib[:2] * 2, tmp_path)
    assert cm.config.residual and [p.name for p in cm.plans if p.add] == ["c2", "c4"]
    assert cm.config.sc_slots == (2 if cfg.tm == 4 else 1)
    check(cm, ref, res)
    im = IntModel(model, spec)
    trace = im.forward(im.quantize_input(calib[:2] * 2))
    assert np.any(trace["add2"] < 0) and np.any(trace["add2"] > 0)   # the ReLU6 bites
    assert np.any(trace["a2"] == cm.plans[-2].entry["add_hi"])


@pytest.mark.parametrize("cfg", [EngineConfig(tn=4, tm=2),
                                 EngineConfig(tn=3, tm=4, multiplier=Multiplier.ICE40_DUAL),
                                 EngineConfig(tn=2, tm=4),
                                 pytest.param(EngineConfig(tn=9, tm=3),
                                              marks=pytest.mark.slow)],
                         ids=["tm-divides-lanes", "straddling-dual", "lanes-divide-tm",
                              "dw-window"])
def test_residual_depthwise_net_bit_exact(tmp_path, cfg):
    """tests/graph_nets.py's network: residual Adds (one through a projection branch), a
    depthwise 3x3 conv, ReLU6, a global average pool folded into the head. The depthwise
    groups read 1, 2 or 2 words per tap pixel from a moving word offset, or (9 lanes, tm
    = 3) run on the depthwise window, three groups per word (``-m slow``: the default run
    has that engine on the same network range-filled, test_range_filled_net_bit_exact, and
    Icarus simulates depthwise-window engines slowly)."""
    from graph_nets import calib, res_dw_model
    from dynfix.quant.search import search

    model = res_dw_model()
    x = calib(32)
    spec = search(model, x, bits="8")
    cm, ref, res = simulate(model, spec, cfg, x[:1], tmp_path)
    assert [p.kind for p in cm.plans].count("dwconv") == 1 and cm.config.depthwise
    assert [p.window for p in cm.plans if p.kind == "dwconv"] == [3 if cfg.tn == 9 else 0]
    assert cm.config.dw_window == (3 if cfg.tn == 9 else 0)
    # The folded global average pool's weights are stored once for its 16 pixels.
    assert cm.plans[-1].shared and cm.config.w_share and cm.plans[-1].kernel == (4, 4)
    check(cm, ref, res)


def test_range_filled_net_bit_exact(tmp_path):
    """The residual/depthwise network range-filled (quant/fill.py) and given to the engine as
    the user has it with the spec's parameters: rescaled weights and biases, both ReLU6
    bounds scaled to the format's top (``Q.params.npz``), host input and output scales.
    The depthwise window engine clamps at the filled bounds, as the integer model does."""
    from graph_nets import calib, res_dw_model
    from dynfix.quant import fill
    from dynfix.quant.float_model import forward
    from dynfix.quant.int_model import is_compute
    from dynfix.quant.lower import lower
    from dynfix.quant.search import search

    model, x = res_dw_model(), calib(32)
    low = lower(model)
    names = [low.input_name] + [l.name for l in low.layers if is_compute(l)]
    stored = {n: n for n in names} | {"dw": "r6", "pw": "r6b"}
    kinds = {n: "signed" for n in names}             # greedy-paper stores every map signed
    f = fill.fill_ranges(low, forward(low, x), stored, kinds, dict.fromkeys(names, 8), "mse")
    spec = search(f.model, x * f.input_scale, bits="8", method="greedy-paper")
    spec.input_scale, spec.output_scale = f.input_scale, f.output_scale
    spec.params = {**{a.name: {"weight": b.weight, "bias": b.bias}
                      for a, b in zip(low.layers, f.model.layers)
                      if is_compute(a) and not np.array_equal(a.weight, b.weight)},
                   **fill.changed_clips(low, f.model)}
    assert {"r6", "r6b"} <= set(spec.params) and f.output_scale != 1
    cm, ref, res = simulate(model, spec, EngineConfig(tn=9, tm=3), x[:1], tmp_path)
    assert cm.config.dw_window == 3
    check(cm, ref, res)
    # The ReLU6 after dw clamps at 6 * c (here beyond the map's top: the saturation), not
    # at the model's own 6.
    im = IntModel(model, spec)
    clamp = next(p.entry["clamp_hi"] for p in cm.plans if p.name == "dw")
    fl = im.formats["dw"].fl
    hi = float(spec.params["r6"]["hi"])
    assert clamp == min(127, int(np.floor(np.ldexp(hi, fl)))) != min(127, 6 << fl)


@pytest.mark.parametrize("cfg", [EngineConfig(tn=4, tm=2), EngineConfig(tn=3, tm=4)],
                         ids=["window", "straddling"])
def test_average_pools_bit_exact(tmp_path, cfg):
    """Average pools of 4 cells a window run as depthwise convs with unit weights and a data
    shift of 2: 2x2 stride 2 after a ReLU (an unsigned map: its offset is folded), 2x2 stride
    1 with counted top-left padding; on the 2x2 depthwise window (4 lanes) or as per-group
    words (3 lanes, straddling groups)."""
    from dynfix.quant.ir import AvgPool2d, Conv2d, Flatten, Linear, Model, ReLU
    from dynfix.quant.search import search

    rng = np.random.default_rng(0)

    def w(*shape):
        return (rng.standard_normal(shape) * np.sqrt(2 / np.prod(shape[1:]))).astype(np.float32)

    layers = [Conv2d("c0", ("x",), weight=w(6, 3, 3, 3), bias=w(6, 1)[:, 0],
                     pads=(1, 1, 1, 1)),
              ReLU("r0", ("c0",)),
              AvgPool2d("ap", ("r0",), kernel=(2, 2), stride=(2, 2)),
              Conv2d("c1", ("ap",), weight=w(8, 6, 3, 3), bias=w(8, 1)[:, 0],
                     pads=(1, 1, 1, 1)),
              AvgPool2d("ap2", ("c1",), kernel=(2, 2), stride=(1, 1), pads=(1, 1, 0, 0),
                        count_include_pad=True),
              Flatten("f", ("ap2",)), Linear("fc", ("f",), weight=w(5, 128), bias=w(5, 1)[:, 0])]
    model = Model("avgnet", "x", (3, 8, 8), layers)
    x = rng.standard_normal((32, 3, 8, 8)).astype(np.float32)
    spec = search(model, x, bits="8")
    cm, ref, res = simulate(model, spec, cfg, x[:2], tmp_path)
    avg = [(p.name, p.avg, p.window) for p in cm.plans if p.avg]
    k = 2 if cfg.tn == 4 else 0
    assert avg == [("ap", 4, k), ("ap2", 4, k)]
    check(cm, ref, res)


def test_grouped_conv_runs_dense(tmp_path):
    """A grouped conv (groups=2, 4 channels per group) runs as the dense conv with zero
    weights across groups; bit-exact."""
    from dynfix.quant.ir import Conv2d, Flatten, Linear, Model, ReLU
    from dynfix.quant.search import search

    rng = np.random.default_rng(2)
    model = Model("grouped", "x", (8, 4, 4), [
        Conv2d("g", ("x",), weight=rng.standard_normal((6, 4, 3, 3)).astype(np.float32) * 0.3,
               bias=rng.standard_normal(6).astype(np.float32) * 0.1, pads=(1, 1, 1, 1),
               groups=2),
        ReLU("r", ("g",)), Flatten("f", ("r",)),
        Linear("fc", ("f",), weight=rng.standard_normal((3, 96)).astype(np.float32) * 0.2)])
    x = rng.standard_normal((16, 8, 4, 4)).astype(np.float32)
    cm, ref, res = simulate(model, search(model, x, bits="8"), EngineConfig(tn=4, tm=3),
                            x[:2], tmp_path)
    assert cm.plans[0].kind == "conv" and not cm.config.depthwise
    check(cm, ref, res)


def test_small_net_bit_exact(tmp_path):
    model, spec, calib = small_net()
    check(*simulate(model, spec, EngineConfig(tn=9, tm=3), calib[:2] * 1.5, tmp_path))


def check_api_run(q, x, tmp_path):
    """Generate ``q`` (a QuantizeResult) on a 4-lane, 2-row engine and simulate 3 images of
    ``x``: bit-exact with the integer model, and the cycle model counts the engine's
    cycles. Returns the GenerateResult."""
    import dynfix
    g = dynfix.generate(q, tmp_path / "gen", config={"tn": 4, "tm": 2})
    s = dynfix.simulate(g, data=x, images=3)
    assert s.n == 3 and s.mismatches == 0
    np.testing.assert_array_equal(s.outputs, q.logits(x[:3]))
    assert s.layer_cycles[0] == [layer["cycles"] for layer in g.report["estimate"]["layers"]]
    return g


def test_relu6_and_clip_net_bit_exact(tmp_path):
    """Conv + ReLU6 + Conv + Clip + Linear through the API: both clamps bite on both sides in
    the simulated images, and the engine equals the integer model and the cycle model."""
    import dynfix
    from dynfix.quant.ir import Clip, Conv2d, Flatten, Linear, Model

    rng = np.random.default_rng(11)

    def weight(*shape):
        return rng.standard_normal(shape).astype(np.float32) * 0.4

    model = Model("clipnet", "x", (3, 6, 6), [
        Conv2d("c1", ("x",), weight=weight(5, 3, 3, 3), bias=weight(5), pads=(1, 1, 1, 1)),
        Clip("six", ("c1",), lo=0.0, hi=6.0),
        Conv2d("c2", ("six",), weight=weight(4, 5, 3, 3), bias=weight(4)),
        Clip("k2", ("c2",), lo=-0.5, hi=1.25),
        Flatten("f", ("k2",)),
        Linear("fc", ("f",), weight=weight(3, 64), bias=weight(3))])
    x = (rng.standard_normal((16, 3, 6, 6)) * 3).astype(np.float32)
    # Signed maps: an unsigned ReLU6 output would do the Clip's lower side in the data
    # shift's saturation, and the test wants the Clip to bite on both sides; no range fill,
    # which puts a Clip's bound on the format's top (the saturation does it then).
    q = dynfix.quantize(model, calib=x, bits="8", options={"unsigned": False, "fill": False})
    check_api_run(q, x, tmp_path)
    im = IntModel(model, q.spec)
    ref = im.forward(im.quantize_input(x[:3]))
    for before, after in (("c1", "six"), ("c2", "k2")):
        clipped = ref[before] != ref[after]
        assert np.any(clipped & (ref[before] > 0)) and np.any(clipped & (ref[before] < 0))


def test_leaky_relu_net_bit_exact(tmp_path):
    """Conv + LeakyReLU (slope 0.1) + MaxPool + Conv + Clip + LeakyReLU (0.01) + Linear
    through the API, the second conv's map unsigned-free (a LeakyReLU keeps negatives):
    the engine's slope stage equals the integer model, both slopes bite on negative values,
    the cycle model still counts the engine's cycles, and Verilator's lint passes."""
    import dynfix
    from dynfix.quant.ir import Clip, Conv2d, Flatten, LeakyReLU, Linear, MaxPool2d, Model

    rng = np.random.default_rng(12)

    def weight(*shape):
        return rng.standard_normal(shape).astype(np.float32) * 0.4

    model = Model("leakynet", "x", (3, 8, 8), [
        Conv2d("c1", ("x",), weight=weight(5, 3, 3, 3), bias=weight(5), pads=(1, 1, 1, 1)),
        LeakyReLU("l1", ("c1",), alpha=0.1),
        MaxPool2d("p1", ("l1",)),
        Conv2d("c2", ("p1",), weight=weight(4, 5, 3, 3), bias=weight(4)),
        Clip("k2", ("c2",), lo=-1.5, hi=3.0),
        LeakyReLU("l2", ("k2",), alpha=0.01),
        Flatten("f", ("l2",)),
        Linear("fc", ("f",), weight=weight(3, 16), bias=weight(3))])
    x = (rng.standard_normal((16, 3, 8, 8)) * 2).astype(np.float32)
    q = dynfix.quantize(model, calib=x, bits="8")
    g = check_api_run(q, x, tmp_path)
    assert g.report["engine"]["slope"] == 1
    from dynfix.hw.lint import lint
    rc, out = lint(tmp_path / "gen" / "dynfix_engine.v")     # the slope stage: lint-clean
    assert rc == 0, out
    im = IntModel(model, q.spec)
    ref = im.forward(im.quantize_input(x[:3]))
    for before, after in (("c1", "l1"), ("k2", "l2")):
        zp = im.formats[before].zp
        neg = ref[before] < zp
        assert np.any(neg & (ref[after] != ref[before]))      # the slope bites
        assert np.all(ref[after][~neg] == ref[before][~neg])


@pytest.mark.parametrize("cfg", [EngineConfig(tn=4, tm=2), EngineConfig(tn=3, tm=4)],
                         ids=["packed", "straddling"])
def test_resize_view_bit_exact(tmp_path, cfg):
    """conv -> Resize x2 -> 3x3 conv with padding 1: the second conv reads the first one's
    stored map (unsigned: after a ReLU) as a view twice its size (no pass of its own, no
    map for the Resize), its windows cross the view's border into the padding; bit-exact,
    the cycle model exact, Verilator's lint clean."""
    model, spec, calib = resize_net()
    cm, ref, res = simulate(model, spec, cfg, calib[:2] * 1.5, tmp_path)
    assert cm.config.resize and [p.resize for p in cm.plans] == [(1, 1), (2, 2), (1, 1)]
    c2 = cm.plans[1]
    assert c2.input == "r1" and c2.in_shape == (6, 8, 10) and c2.stored_shape == (6, 4, 5)
    assert spec.layers["c1"].zp_out and c2.entry["pad_q"] == spec.layers["c1"].zp_out
    check(cm, ref, res)
    from dynfix.hw.lint import lint
    rc, out = lint(tmp_path / "gen" / "dynfix_engine.v")
    assert rc == 0, out


def test_resize_views_everywhere_bit_exact(tmp_path):
    """tests/hw_models.py's view_net: views read by two groups (one with a residual Add),
    by a strided and pooled conv (odd row steps), a depthwise conv (a view resized on W
    only), an average pool and a Linear; bit-exact, the cycle model exact."""
    model, spec, calib = view_net()
    cm, ref, res = simulate(model, spec, EngineConfig(tn=3, tm=4), calib[:2] * 1.5, tmp_path)
    assert [p.name for p in cm.plans if p.resize != (1, 1)] == ["b", "e", "c", "d", "ap", "fc"]
    check(cm, ref, res)


def test_rectangular_pools_bit_exact(tmp_path):
    """Max pools of 2 x 3 and 1 x 2 windows (a MaxPool1d's): the sequencer's pooling rows
    count to their own field (``rect_pool``); bit-exact, the cycle model exact."""
    model, spec, calib = rect_pool_net()
    cm, ref, res = simulate(model, spec, EngineConfig(tn=3, tm=4), calib[:2] * 1.5, tmp_path)
    assert cm.config.rect_pool and [p.pool_hw for p in cm.plans] == [(2, 3), (1, 2), (1, 1)]
    check(cm, ref, res)


def test_resize_of_a_concat_bit_exact(tmp_path):
    """A Resize of a Concat's map (3 + 3 channels: on 4 lanes its second input starts at
    the next word, a spread layout): the conv after it reads the Concat's padded map as a
    view twice its size; bit-exact, the cycle model exact. (A Resize read by a Concat is
    refused: tests/hw/test_compiler_graph.py.)"""
    from dynfix.quant.ir import Concat, Flatten, Linear, Model, ReLU, Resize
    from dynfix.quant.search import search
    from hw_models import conv
    rng = np.random.default_rng(6)
    layers = [conv(rng, "a", "x", 3, 2, 3, 3, pads=(1, 1, 1, 1)), ReLU("ra", ("a",)),
              conv(rng, "b", "x", 3, 2, 1, 1), Concat("cat", ("ra", "b")),
              Resize("up", ("cat",)), conv(rng, "c", "up", 3, 6, 3, 3, pads=(1, 1, 1, 1)),
              Flatten("f", ("c",)),
              Linear("fc", ("f",), weight=rng.standard_normal((2, 3 * 8 * 12)).astype(
                  np.float32) * 0.1)]
    model = Model("catup", "x", (2, 4, 6), layers)
    x = rng.standard_normal((16, 2, 4, 6)).astype(np.float32)
    cm, ref, res = simulate(model, search(model, x, bits="8"), EngineConfig(tn=4, tm=2),
                            x[:2], tmp_path)
    (c,) = [p for p in cm.plans if p.name == "c"]
    assert c.input == "cat" and c.resize == (2, 2) and c.in_shape == (7, 8, 12)
    assert c.spread == (0, 1, 2, 4, 5, 6)
    check(cm, ref, res)
