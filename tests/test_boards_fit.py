"""Resource estimate and board fitting."""

import numpy as np
import pytest

from dynfix.boards.fit import fit
from dynfix.boards.registry import get_board
from dynfix.errors import DynfixError
from dynfix.hw.config import EngineConfig
from dynfix.hw.resources import Device, estimate, memory_blocks
from dynfix.quant.ir import Flatten, Linear, Model
from dynfix.quant.load import load_model
from dynfix.quant.qspec import LayerFormat, QuantSpec

ICE40 = get_board("icebreaker").bram.shapes
ECP5 = get_board("ulx3s").bram.shapes


@pytest.mark.parametrize("shapes,depth,width,blocks", [
    # checked against yosys 0.70 synth_ice40 (weights and fmap of the digits engines)
    (ICE40, 536, 72, 14), (ICE40, 128, 72, 5), (ICE40, 536, 64, 12), (ICE40, 128, 64, 4),
    (ICE40, 256, 16, 1), (ICE40, 257, 16, 2), (ICE40, 2048, 2, 1),
    (ECP5, 512, 36, 1), (ECP5, 1024, 18, 1), (ECP5, 16384, 1, 1), (ECP5, 128, 80, 3),
])
def test_memory_blocks(shapes, depth, width, blocks):
    assert memory_blocks(depth, width, shapes) == blocks


def _qspec_digits(tmp_path):
    from dynfix.cli import main
    from dynfix.quant.qspec_io import load_qspec
    q = tmp_path / "q.yaml"
    assert main(["quantize", "digits", "--calib", "digits", "--output", str(q)]) == 0
    model = load_model("digits")
    return model, load_qspec(q, model)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return _qspec_digits(tmp_path_factory.mktemp("fit"))


def test_fit_uses_the_board(digits):
    model, spec = digits
    ice = fit(model, spec, get_board("icebreaker"))
    ulx = fit(model, spec, get_board("ulx3s"))
    assert ice.chosen.config.multipliers <= 8 and ice.chosen.fits
    assert ulx.chosen.config.multipliers >= 6 * ice.chosen.config.multipliers
    assert ulx.chosen.cycles * 3 < ice.chosen.cycles
    assert ulx.chosen.estimate.total.dsps <= 156
    assert "DSP blocks" in ice.limit and "> 8" in ice.limit
    d = ice.to_dict()
    assert d["estimate"]["total"]["dsps"] == d["multipliers"]


def test_estimate_grows_with_parallelism(digits):
    from dynfix.hw.compiler import compile_model
    model, spec = digits
    dev = Device.from_board(get_board("ulx3s"))
    small = estimate(compile_model(model, spec, EngineConfig(k=1, tn=4, tm=2)).config, dev)
    big = estimate(compile_model(model, spec, EngineConfig(k=1, tn=8, tm=8)).config, dev)
    assert big.total.luts > 2 * small.total.luts
    assert (small.total.dsps, big.total.dsps) == (8, 64)
    assert set(big.blocks) >= {"multipliers", "adder_trees", "accumulators", "requantizers",
                               "control", "mem_weights", "mem_fmap", "board_top"}


def test_model_too_big_fails_before_synthesis():
    rng = np.random.default_rng(0)
    fc = Linear("fc", inputs=("flat",), weight=rng.normal(size=(512, 64)).astype(np.float32),
                bias=np.zeros(512, np.float32))
    model = Model("big", "input", (1, 8, 8), [Flatten("flat", inputs=("input",)), fc])
    fmt = LayerFormat("fc", bw_w=8, fl_w=7, bw_b=16, fl_b=10, bw_in=8, fl_in=6, bw_x=8,
                      fl_out=4, acc_bits=24)
    spec = QuantSpec("big", "static", "8", 8, 6, {"fc": fmt})
    with pytest.raises(DynfixError, match=r"big does not fit icebreaker even with the smallest "
                                          r"engine.*block RAMs \d+ > 30.*weights") as e:
        fit(model, spec, get_board("icebreaker"))
    assert "\n" not in str(e.value)
    assert fit(model, spec, get_board("ulx3s")).chosen.fits      # 256 kbit fits 208 DP16KD
