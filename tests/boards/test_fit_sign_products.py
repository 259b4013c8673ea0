"""The fit with products without multipliers (the ``sign`` multiplier, ``hw/sign_product.py``)
for models whose weights have at most 2 bits: the Brevitas ternary fixture gets more
products on the iCEBreaker than its 8 SB_MAC16 blocks could compute, its engine runs
bit-exact and lints clean; wider weights never take the path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dynfix
from dynfix.boards.fit import LUT_PRODUCT_MIN_SPEEDUP, fit, lut_bound
from dynfix.boards.registry import get_board
from dynfix.hw.config import EngineConfig, Multiplier
from dynfix.hw.generate import TOP_NAME
from dynfix.hw.lint import lint
from dynfix.hw.resources import Device, estimate
from dynfix.quant.int_model import IntModel
from dynfix.quant.onnx.qonnx import import_qonnx

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "qonnx"


def _fixture(name: str):
    return import_qonnx(FIXTURES / f"{name}.onnx")


def test_ternary_fixture_on_the_icebreaker_takes_sign_products():
    """More products than the 8 SB_MAC16 blocks hold (two each), none on a DSP block, and
    at least LUT_PRODUCT_MIN_SPEEDUP times as fast as the fit without the path."""
    t = _fixture("brevitas_cnn_ternary")
    board = get_board("icebreaker")
    got = fit(t.model, t.spec, board)
    c = got.chosen
    assert c.config.multiplier is Multiplier.SIGN and c.fits
    assert c.config.multipliers > 2 * board.dsp.blocks == 16
    assert c.config.dsp_blocks == 0 and c.estimate.total.dsps == 0
    without = fit(t.model, t.spec, board, sign=False).chosen
    assert without.config.multiplier is not Multiplier.SIGN
    assert without.config.multipliers <= 2 * board.dsp.blocks
    assert c.cycles * LUT_PRODUCT_MIN_SPEEDUP <= without.cycles


def test_dsp_blocks_kept_where_as_fast_and_wide_weights_never_sign():
    """On the ULX3S the DSP engine is already as fast as the model allows: the sign
    products would only cost LUTs. Weights of more than 2 bits never take the path."""
    t = _fixture("brevitas_cnn_ternary")
    ulx3s = fit(t.model, t.spec, get_board("ulx3s")).chosen
    assert ulx3s.config.multiplier is Multiplier.ECP5
    f = _fixture("brevitas_cnn_fixed")
    assert f.spec is not None and max(x.bw_w for x in f.spec.layers.values()) > 2
    assert fit(f.model, f.spec, get_board("icebreaker")).chosen.config.sign_products == 0


def test_lut_share_and_estimate():
    """Sign engines plan for the family's logic headroom on iCE40 and for the LUT-product
    share on ECP5; their products take no DSP block, a LUT4 per bit of the one's
    complement (9 for 8-bit data), and the map value's registers once per lane."""
    cfg = EngineConfig(tn=4, tm=3, multiplier=Multiplier.SIGN, data_bits=8, weight_bits=2,
                       bias_bits=10, acc_bits=22, fmap_depth=16, weight_depth=16,
                       bias_depth=4, prog_depth=2, dim_bits=5)
    assert lut_bound(cfg, get_board("icebreaker")) == 0
    assert lut_bound(cfg, get_board("ulx3s")) == 12
    est = estimate(cfg, Device.from_board(get_board("icebreaker")), lut4=True)
    mults = est.blocks["multipliers"]
    assert (mults.luts, mults.dsps, est.total.dsps) == (12 * 9, 0, 0)
    assert mults.ffs == 12 * (6 + 9 + 1) + 4 * 24


@pytest.mark.usefixtures("icarus", "verilator")
def test_fitted_ternary_engine_bit_exact_and_lint_clean(tmp_path):
    """The ternary fixture generated for the iCEBreaker (the fit's sign engine) and
    simulated on Icarus: no mismatch with the integer model, whose outputs these are; the
    Verilog has no multiplication and lints clean."""
    q = dynfix.quantize(str(FIXTURES / "brevitas_cnn_ternary.onnx"), method="qonnx",
                        output=tmp_path / "Q.yaml")
    gen = dynfix.generate(q, tmp_path / "gen", board="icebreaker")
    assert gen.compiled.config.multiplier is Multiplier.SIGN
    x = (2 * np.random.default_rng(5).standard_normal((2, 1, 6, 6))).astype(np.float32)
    s = dynfix.simulate(gen, q, data=x, images=2)
    assert s.n == 2 and s.mismatches == 0
    im = IntModel(q.model, q.spec)
    np.testing.assert_array_equal(s.outputs.reshape(2, -1),
                                  im.logits(x).reshape(2, -1))
    verilog = tmp_path / "gen" / f"{TOP_NAME}.v"
    cfg = gen.compiled.config
    mac = [m for m in verilog.read_text().split("endmodule")
           if "module \\dynfix_engine.mac" in m]              # the array, products, trees
    assert len(mac) == 1 + cfg.multipliers + cfg.tm and not any(" * " in m for m in mac)
    rc, out = lint(verilog)
    assert rc == 0, out
