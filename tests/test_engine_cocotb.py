"""System tests: whole networks on the generated Verilog under Icarus (cocotb, the bulk
harness :func:`dynfix.sim.simulate.simulate`), compared bit for bit with the integer model;
the engine's cycle counters against the cycle model."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from dynfix.hw.compiler import compile_model
from dynfix.hw.config import EngineConfig
from dynfix.hw.cycle_model import layer_cycles
from dynfix.hw.generate import write_outputs
from dynfix.quant.datasets import load_digits
from dynfix.quant.int_model import IntModel
from dynfix.sim.simulate import Design, simulate as run_images

from hw_models import digits_8bit, small_net

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None,
                                reason="Icarus Verilog (iverilog) is not installed")


def simulate(model, spec, cfg, x, tmp_path):
    cm = compile_model(model, spec, cfg)
    report = write_outputs(cm, model.name, tmp_path / "gen")
    im = IntModel(model, spec)
    ref = im.forward(im.quantize_input(x))[cm.output_name].reshape(len(x), -1)
    res = run_images(Design(tmp_path / "gen", report, model, spec, cm), x, None,
                     tmp_path / "build", "icarus", chunk=1)
    return cm, ref, res


def check(cm, ref, res):
    assert res.images == len(ref) and res.mismatches == 0
    assert res.outputs.shape == ref.shape
    predicted = [layer_cycles(cm.config, p) for p in cm.plans]
    for got, want, layers, cycles in zip(res.outputs, ref, res.image_layer_cycles, res.cycles):
        np.testing.assert_array_equal(got, want)
        assert layers == predicted                      # the cycle model is exact
        assert cycles == sum(layers)


def test_digits_bit_exact(tmp_path):
    model, spec = digits_8bit()
    x, _ = load_digits("test")
    check(*simulate(model, spec, EngineConfig(k=3, tn=1, tm=1), x[:2], tmp_path))


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
