"""Compiler checks and rejections, memory packing, and the generator: deterministic,
path-free, lint-clean output written atomically, through the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from dynfix.cli import main
from dynfix.errors import DynfixError
from dynfix.hw.compiler import (bias_units, clamp_shift, compile_model, folded_bias,
                                plan_groups, rounded_acc_bits)
from dynfix.hw.config import EngineConfig, Multiplier
from dynfix.hw.generate import TOP_NAME, engine_verilog, write_outputs
from dynfix.hw.lint import lint
from dynfix.quant import fixed
from dynfix.quant.int_model import MapFormat, apply_plain, clip_bounds
from dynfix.quant.ir import (Affine, AvgPool2d, Clip, Flatten, GlobalAvgPool, Linear,
                             MaxPool2d, Model, ReLU, Softmax)
from dynfix.quant.qspec import LayerFormat
from dynfix.quant.qspec_io import save_qspec
from dynfix.quant.search import method_options, search

from hw_models import conv, digits_8bit, small_net, strip_net


def test_rejects_every_unsupported_layer_at_once():
    rng = np.random.default_rng(0)
    layers = [ReLU("r0", ("x",)),
              conv(rng, "c1", "r0", 4, 3, 3, 3, pads=(1, 1, 1, 1), dilation=(2, 2)),
              MaxPool2d("mp", ("c1",), kernel=(3, 3), stride=(2, 2)),
              Affine("bn", ("mp",), scale=np.ones(4, np.float32),
                     shift=np.zeros(4, np.float32)),
              AvgPool2d("ap", ("bn",), kernel=(3, 3), stride=(2, 2)),
              conv(rng, "c2", "ap", 4, 4, 1, 1),
              MaxPool2d("pp", ("c2",), kernel=(1, 1), stride=(1, 1), pads=(0, 0, 1, 1)),
              Softmax("sm", ("pp",)),
              GlobalAvgPool("gap", ("sm",))]
    model = Model("bad", "x", (3, 16, 16), layers)
    with pytest.raises(DynfixError) as e:
        plan_groups(model)
    msg = str(e.value)
    assert "\n" not in msg
    for name in ("r0", "c1", "mp", "bn", "ap", "pp", "sm", "gap"):
        assert f"{name} (" in msg
    assert "c2 (" not in msg


def test_groups_fuse_relu_pool_flatten_and_keep_trailing_softmax():
    model, _ = digits_8bit()
    plans, out = plan_groups(model)
    assert [(p.name, p.kind, p.pool, [a.op for a in p.acts]) for p in plans] == [
        ("conv1", "conv", 1, ["relu"]), ("conv2", "conv", 2, ["relu"]), ("fc", "linear", 1, [])]
    assert plans[2].in_shape == (16, 4, 4) and plans[2].kernel == (4, 4)
    m2 = Model("sm", model.input_name, model.input_shape,
               model.layers + [Softmax("prob", (model.layers[-1].name,))])
    assert plan_groups(m2)[1] == out == "fc"


def test_clamped_shift_keeps_every_result():
    accs = np.arange(-(1 << 11), 1 << 11)
    for bw in (2, 5, 8):
        for shift in range(-20, 20):
            c = clamp_shift(shift, bw, 12)
            np.testing.assert_array_equal(fixed.requantize(accs, c, bw),
                                          fixed.requantize(accs, shift, bw))


@pytest.mark.parametrize("zp_in", [0, -128])
@pytest.mark.parametrize("bias_shift", [0, 3, 6])
def test_rounding_constant_folds_into_the_start_value(zp_in, bias_shift):
    """The engine's start value, ``folded_bias << bias_units``, is the integer model's
    ``(q_b << bias_shift) - zp_in * sum(w)`` plus ``2**(s-1)`` for a right shift ``s``
    (none for ``s <= 0``), whole in the units the program's bias shift gives it; the
    requantizer's floor shift of ``acc`` + that constant is ``fixed.requantize``."""
    rng = np.random.default_rng(bias_shift - zp_in)
    m, fan = 6, 9
    f = LayerFormat("c", bw_w=8, fl_w=6, bw_b=12, fl_b=11 - bias_shift, bw_in=8, fl_in=5,
                    bw_x=8, fl_out=4, acc_bits=0, zp_in=zp_in)
    f.acc_bits = fixed.acc_bits(fan, 8 + (zp_in != 0), 8, 12, bias_shift)
    bq = rng.integers(-2048, 2048, m)
    wq = rng.integers(-128, 128, (m, fan))
    for shifts in ([7, 7, 8, 12, 9, 20], [2, 0, -3, 5, 1, 8], [-8, 0, 0, -1, -2, 0]):
        shifts = np.array(shifts)
        units = bias_units(f, shifts)
        start = folded_bias(f, bq, wq, shifts) << units
        half = np.where(shifts > 0, 1 << np.maximum(shifts - 1, 0), 0)
        np.testing.assert_array_equal(start, (bq << bias_shift) - zp_in * wq.sum(axis=1) + half)
        assert units == (0 if zp_in else min([bias_shift] + [s - 1 for s in shifts if s > 0]))
        accs = rng.integers(-(1 << 18), 1 << 18, (50, m))
        for j, s in enumerate(shifts):
            floor = (accs[:, j] + half[j]) >> max(s, 0) if s >= 0 else accs[:, j] << -s
            np.testing.assert_array_equal(fixed.saturate(floor, 8),
                                          fixed.requantize(accs[:, j], int(s), 8))


def test_accumulator_gets_a_bit_only_where_the_rounding_constant_needs_it():
    """``acc + 2**(s-1)`` fits the engine's accumulator for every ``|acc| <=
    fixed.acc_bound``; the layer's own width suffices unless the bound is within
    ``2**(s-1)`` of its top (here 20 bits, bound 442,368, 81,919 below ``2**19``: shifts
    18..20)."""
    fan = 25
    layer = Linear("fc", ("x",), weight=np.zeros((2, fan), np.float32))
    f = LayerFormat("fc", bw_w=8, fl_w=7, bw_b=16, fl_b=12, bw_in=8, fl_in=5, bw_x=8,
                    fl_out=2, acc_bits=0)
    f.acc_bits = fixed.acc_bits(fan, 8, 8, 16, f.bias_shift)
    bound = fixed.acc_bound(fan, 8, 8, 16, f.bias_shift)
    widened = []
    for s in range(-8, f.acc_bits + 1):
        bits = rounded_acc_bits(f, layer, np.array([0, s]))
        top = bound + (1 << (s - 1) if s > 0 else 0)
        assert top <= (1 << (bits - 1)) - 1 and bits in (f.acc_bits, f.acc_bits + 1)
        if bits > f.acc_bits:
            widened.append(s)
            assert top > (1 << (f.acc_bits - 1)) - 1        # needed
    assert f.acc_bits == 20 and widened == [18, 19, 20]


def clip_net(offsets: bool = True, fill: bool = False):
    """Clip after a conv (ReLU6), ReLU + Clip + MaxPool + Clip, Clip + ReLU after an FC;
    quantized by greedy (without map offsets: every map signed; without the range fill
    unless ``fill``, so the Clip bounds are the model's own; with ``fill``, without map
    headroom and unclipped weights, whose unfilled start scores better on this net and
    would be kept instead)."""
    rng = np.random.default_rng(5)
    layers = [
        conv(rng, "c1", "x", 4, 3, 3, 3, pads=(1, 1, 1, 1)),
        Clip("six", ("c1",), lo=0.0, hi=6.0),
        conv(rng, "c2", "six", 5, 4, 3, 3),
        ReLU("r2", ("c2",)),
        Clip("k2", ("r2",), lo=-np.inf, hi=0.75),
        MaxPool2d("p2", ("k2",), kernel=(2, 2), stride=(2, 2)),
        Clip("k3", ("p2",), lo=-0.3, hi=0.5),
        Flatten("f", ("k3",)),
        Linear("fc", ("f",), weight=rng.standard_normal((3, 45)).astype(np.float32) * 0.3),
        Clip("k4", ("fc",), lo=-1.5, hi=np.inf),
        ReLU("r4", ("k4",)),
    ]
    model = Model("clips", "x", (3, 8, 8), layers)
    calib = rng.standard_normal((32, 3, 8, 8)).astype(np.float32) * 2
    changes = {} if offsets else {"unsigned": False, "asymmetric": False}
    if fill:
        changes.update(headroom=False, unclipped_weights=False)
    options = method_options("greedy", {**changes, "fill": fill})
    return model, search(model, calib, bits="8", options=options)


def test_a_range_fills_clip_bounds_reach_the_engine():
    """A range-filled spec scales the Clip bounds (Q.params.npz); the compiler clamps at
    those, given the model as the user has it, as the integer model does."""
    model, spec = clip_net(fill=True)
    assert {"six", "k2", "k3"} <= set(spec.params)
    hi = float(spec.params["six"]["hi"])
    assert hi > 6.0
    cm = compile_model(model, spec, EngineConfig(tn=4, tm=2))
    f = spec.layers["c1"]
    entry = next(p.entry for p in cm.plans if p.name == "c1")
    assert entry["clamp_hi"] == min(fixed.qmax(f.bw_x),
                                    int(np.floor(np.ldexp(hi, f.fl_out))) + f.zp_out)


@pytest.mark.parametrize("offsets", [False, True])
def test_relu_and_clips_fuse_into_one_clamp_range(offsets):
    """The clamp range of each group, in its output's integers (a real 0 is the map's
    offset zp: qmin for an unsigned map, 0 for a signed one)."""
    model, spec = clip_net(offsets)
    plans, out = plan_groups(model)
    assert [(p.name, p.pool, [a.name for a in p.acts]) for p in plans] == [
        ("c1", 1, ["six"]), ("c2", 2, ["r2", "k2", "k3"]), ("fc", 1, ["k4", "r4"])]
    assert plans[1].layers == ["c2", "r2", "k2", "p2", "k3", "f"] and out == "r4"
    cm = compile_model(model, spec, EngineConfig(tn=4, tm=2))
    want = {}
    for name, lo, hi in (("c1", 0, 6), ("c2", 0, 0.5), ("fc", 0, np.inf)):
        f = spec.layers[name]
        top, zp = fixed.qmax(f.bw_x), f.zp_out      # the integer of a real 0 is zp
        want[name] = (lo + zp, min(top, int(np.floor(np.ldexp(hi, f.fl_out))) + zp)
                      if hi < np.inf else top)
    assert {p.name: (p.entry["clamp_lo"], p.entry["clamp_hi"]) for p in cm.plans} == want
    if not offsets:                                 # the clips bite at these formats
        assert all(0 < hi < fixed.qmax(spec.layers[n].bw_x) for n, (_, hi) in want.items()
                   if n != "fc")
    else:   # ReLU / ReLU6 outputs unsigned (zp = qmin), the Linear's centred (its Clip
        # reaches below 0)
        zps = [spec.layers[n].zp_out for n in ("c1", "c2", "fc")]
        assert zps[:2] == [-128, -128] and zps[2] not in (0, -128)


def test_clamp_range_is_the_layers_one_after_another():
    """The one range equals saturating, then every ReLU / Clip in order, for random chains
    (finite, one-sided and disjoint bounds, bounds between representable values)."""
    rng = np.random.default_rng(7)
    bounds = [-np.inf, -9.0, -2.3, -1.0, -0.26, 0.0, 0.3, 1.0, 1.7, 6.0, 40.0, np.inf]
    plan = plan_groups(clip_net()[0])[0][0]
    for trial in range(300):
        acts = []
        for k in range(int(rng.integers(0, 4))):
            if rng.random() < 0.3:
                acts.append(ReLU(f"r{k}", ("c1",)))
            else:
                lo, hi = sorted(rng.choice(bounds, 2))
                acts.append(Clip(f"k{k}", ("c1",), lo=float(lo), hi=float(hi)))
        bw, fl = int(rng.integers(2, 9)), int(rng.integers(-3, 7))
        fmt = MapFormat(bw, fl)
        try:
            for a in acts:
                if isinstance(a, Clip):
                    clip_bounds(a, fmt)
        except DynfixError:
            continue                                # no value in [lo, hi]: spec rejected
        x = np.arange(fixed.qmin(bw) - 3, fixed.qmax(bw) + 4)
        want = fixed.saturate(x, bw)
        for a in acts:
            want = apply_plain(a, want, fmt)
        plan.acts = acts
        lo, hi = plan.clamp_range(bw, fl)
        np.testing.assert_array_equal(np.clip(x, lo, hi), want, err_msg=f"{acts} {fmt}")
        assert fixed.qmin(bw) <= lo <= hi <= fixed.qmax(bw)


def test_weight_words_hold_the_kernel_in_sequencer_order():
    model, spec, _ = small_net()
    cm = compile_model(model, spec, EngineConfig(tn=9, tm=3))
    cfg, p = cm.config, cm.plans[1]                   # 11 outputs, 7 inputs, 2x3 kernel
    n, tm, wb = cfg.lanes, cfg.tm, cfg.weight_bits
    base = p.entry["w_base"]
    for mg, ky, kx, j, lane in [(0, 0, 0, 0, 0), (1, 1, 2, 2, 6), (3, 1, 0, 1, 3),
                                (3, 0, 1, 2, 8)]:
        word = cm.weights[base + (mg * 2 + ky) * 3 + kx]
        v = (word >> ((j * n + lane) * wb)) & ((1 << wb) - 1)
        v -= (v >> (wb - 1)) << wb
        m, c = mg * tm + j, lane
        want = p.weights[m, c, ky, kx] if m < 11 and c < 7 else 0
        assert v == want


def test_undersized_config_is_a_user_error():
    model, spec = digits_8bit()
    with pytest.raises(DynfixError, match="data_bits 6 < 8"):
        compile_model(model, spec, EngineConfig(data_bits=6))
    with pytest.raises(DynfixError, match="tm=0 must be positive"):
        compile_model(model, spec, EngineConfig(tm=0))


def test_unfitted_config_is_refused_before_building_the_engine():
    """An EngineConfig() straight into the generator used to die inside Amaranth ("Width of
    a signed value must be a positive integer, not 0"); now one error names every field."""
    model, spec = digits_8bit()
    cm = compile_model(model, spec, EngineConfig(tn=2, tm=1))
    cm.config.check_fitted()
    unfitted = dataclasses.replace(cm, config=EngineConfig(tn=2, tm=1, data_bits=8))
    with pytest.raises(DynfixError) as e:
        engine_verilog(unfitted)
    msg = str(e.value)
    assert "\n" not in msg and "compile_model" in msg and "data_bits" not in msg
    for key in ("weight_bits", "bias_bits", "acc_bits", "fmap_depth", "weight_depth",
                "bias_depth", "prog_depth", "dim_bits"):
        assert key in msg
    with pytest.raises(DynfixError, match=r"not fitted: dim_bits is 0; the compiler"):
        dataclasses.replace(cm.config, dim_bits=0).check_fitted()


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    model, spec = digits_8bit()
    tmp = tmp_path_factory.mktemp("gen")
    save_qspec(spec, tmp / "q.yaml")
    rc = main(["generate", "digits", "--quant", str(tmp / "q.yaml"), "--board", "icebreaker",
               "--output", str(tmp / "a")])
    assert rc == 0
    return tmp, model, spec


def test_generate_is_deterministic_and_path_free(generated, capsys):
    tmp, model, spec = generated
    rc = main(["generate", "digits", "--quant", str(tmp / "q.yaml"), "--board", "icebreaker",
               "--output", str(tmp / "b"), "--json"])
    assert rc == 0
    rep = json.loads(capsys.readouterr().out)
    files = sorted(f.name for f in (tmp / "a").iterdir())
    assert files == sorted(f.name for f in (tmp / "b").iterdir())
    assert f"{TOP_NAME}.v" in files and "report.json" in files and "weights.hex" in files
    for name in files:
        assert (tmp / "a" / name).read_bytes() == (tmp / "b" / name).read_bytes(), name
    text = (tmp / "a" / f"{TOP_NAME}.v").read_text()
    assert str(tmp) not in text and "/work" not in text and "src =" not in text
    # --board fits the engine: iCEBreaker has 8 SB_MAC16 blocks, two 8-bit products each.
    assert rep["engine"]["multiplier"] == "ice40-dual" and 8 < rep["multipliers"] <= 16
    assert rep["dsp_blocks"] == rep["engine"]["dsp_blocks"] == -(-rep["multipliers"] // 2) <= 8
    assert rep["multipliers"] == rep["engine"]["lanes"] * rep["engine"]["tm"]
    assert text.count("SB_MAC16 #(") == rep["dsp_blocks"]
    assert rep["estimate"]["cycles_per_image"] > 0
    assert [r["name"] for r in rep["estimate"]["layers"]] == ["conv1", "conv2", "fc"]
    assert not [p for p in tmp.iterdir() if p.name.startswith(".")]    # no temp folders


def test_failed_generate_leaves_output_untouched(generated, capsys):
    tmp, _, _ = generated
    before = (tmp / "a" / "report.json").read_bytes()
    rc = main(["generate", "digits", "--quant", str(tmp / "q.yaml"), "--config",
               str(tmp / "missing.yaml"), "--output", str(tmp / "a")])
    assert rc == 1 and "missing.yaml" in capsys.readouterr().err
    (tmp / "engine.yaml").write_text("k: 3\ntn: 1\ntm: 0\n")
    rc = main(["generate", "digits", "--quant", str(tmp / "q.yaml"), "--config",
               str(tmp / "engine.yaml"), "--output", str(tmp / "c")])
    assert rc == 1 and "tm=0 must be positive" in capsys.readouterr().err
    assert not (tmp / "c").exists()
    assert (tmp / "a" / "report.json").read_bytes() == before


@pytest.mark.usefixtures("verilator")
def test_lint_clean_with_only_the_waived_classes(generated, tmp_path):
    tmp, _, _ = generated
    rc, out = lint(tmp / "a" / f"{TOP_NAME}.v")
    assert rc == 0, out
    model, spec, _ = small_net()
    write_outputs(compile_model(model, spec, EngineConfig(tn=18, tm=6)), "small",
                  tmp_path / "s")
    rc, out = lint(tmp_path / "s" / f"{TOP_NAME}.v")
    assert rc == 0, out
    # Products on MULT18X18D cells: linted with dynfix's cell model, nothing waived for it.
    write_outputs(compile_model(model, spec, EngineConfig(tn=4, tm=2, multiplier=Multiplier.ECP5)),
                  "small", tmp_path / "e")
    rc, out = lint(tmp_path / "e" / f"{TOP_NAME}.v")
    assert rc == 0 and "ecp5_mult18x18d_sim.v" not in out, out
    # Some products in LUTs (hw/lut_mul.py) beside the cells, nothing more waived.
    write_outputs(compile_model(model, spec, EngineConfig(tn=4, tm=2, multiplier=Multiplier.ECP5,
                                                          lut_products=3)),
                  "small", tmp_path / "l")
    rc, out = lint(tmp_path / "l" / f"{TOP_NAME}.v")
    assert rc == 0, out
    # Two products per cell (hw/ecp5_packed_mul.py) with 4-bit weights, an odd tm's last row
    # on single cells, products in LUTs: nothing more waived.
    model4, spec4, _ = small_net(bits="8/4/4")
    write_outputs(compile_model(model4, spec4, EngineConfig(tn=4, tm=3,
                                                            multiplier=Multiplier.ECP5_PACKED,
                                                            lut_products=2)),
                  "small", tmp_path / "p")
    rc, out = lint(tmp_path / "p" / f"{TOP_NAME}.v")
    assert rc == 0, out
    # Weights from bulk memory (hw/weight_ring.py, the AXI4 bulk reader) with SPRAM maps:
    # nothing more waived.
    write_outputs(compile_model(model, spec, EngineConfig(tn=4, tm=4, w_bulk=1, bulk_bits=32,
                                                          m_spram=1)),
                  "small", tmp_path / "b")
    text = (tmp_path / "b" / f"{TOP_NAME}.v").read_text()
    assert "wbus__araddr" in text and "bulk_ready" in text
    rc, out = lint(tmp_path / "b" / f"{TOP_NAME}.v")
    assert rc == 0, out
    # Maps in bulk memory (hw/map_dma.py, hw/axi_read_arbiter.py, the credit ring): the
    # port gets the write channels; nothing more waived.
    model_s, spec_s, _ = strip_net()
    write_outputs(compile_model(model_s, spec_s, EngineConfig(tn=4, tm=2, w_bulk=1,
                                                              bulk_bits=16, m_bulk=400)),
                  "strips", tmp_path / "m")
    text = (tmp_path / "m" / f"{TOP_NAME}.v").read_text()
    assert "wbus__awaddr" in text and "wbus__wdata" in text
    rc, out = lint(tmp_path / "m" / f"{TOP_NAME}.v")
    assert rc == 0, out
