"""System tests: whole networks on the generated Verilog under Icarus (cocotb), compared bit
for bit with the integer model; the engine's cycle counters against the cycle model."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from dynfix.hw.compiler import compile_model
from dynfix.hw.config import EngineConfig, board_config
from dynfix.hw.cycle_model import layer_cycles
from dynfix.hw.generate import write_outputs
from dynfix.quant.datasets import load_digits
from dynfix.quant.int_model import IntModel
from dynfix.sim.runner import run_engine

from hw_models import digits_8bit, small_net

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None,
                                reason="Icarus Verilog (iverilog) is not installed")


def simulate(model, spec, cfg, x, tmp_path):
    cm = compile_model(model, spec, cfg)
    write_outputs(cm, model.name, tmp_path / "gen")
    im = IntModel(model, spec)
    xq = im.quantize_input(x)
    ref = im.forward(xq)[cm.output_name].reshape(len(xq), -1)
    res = run_engine(tmp_path / "gen" / "dynfix_engine.v", [cm.host_input(a) for a in xq],
                     cm.output_len, len(cm.plans), tmp_path / "build")
    return cm, ref, res


def check(cm, ref, res):
    assert len(res) == len(ref)
    for got, want in zip(res, ref):
        np.testing.assert_array_equal(got["outputs"], want)
        predicted = [layer_cycles(cm.config, p) for p in cm.plans]
        assert got["layer_cycles"] == predicted         # the cycle model is exact
        assert got["cycles"] == sum(got["layer_cycles"])


def test_digits_bit_exact(tmp_path):
    model, spec = digits_8bit()
    x, _ = load_digits("test")
    check(*simulate(model, spec, board_config("icebreaker"), x[:2], tmp_path))


def test_digits_straddling_groups_bit_exact(tmp_path):
    """tm = 4 output channels on 3 lanes: groups start at lanes 0, 1, 2, 0 of successive
    words and straddle two; the FC's last group holds 2 channels (write-back masks)."""
    model, spec = digits_8bit()
    x, _ = load_digits("test")
    cm, ref, res = simulate(model, spec, EngineConfig(k=1, tn=3, tm=4), x[:2], tmp_path)
    assert cm.config.wb_words == 2
    check(cm, ref, res)


def test_small_net_im2col_bit_exact(tmp_path):
    """The host streams the first conv's windows (stride 2, asymmetric padding): 45 window
    channels on 4 lanes; a one-lane-per-convolver engine (k=1)."""
    model, spec, calib = small_net()
    cm, ref, res = simulate(model, spec, EngineConfig(k=1, tn=4, tm=2, im2col=1),
                            calib[2:3] * 2, tmp_path)
    assert cm.input_window is not None and cm.input_shape == (45, 4, 3)
    check(cm, ref, res)


def test_small_net_bit_exact(tmp_path):
    model, spec, calib = small_net()
    check(*simulate(model, spec, EngineConfig(k=3, tn=1, tm=3), calib[:2] * 1.5, tmp_path))
