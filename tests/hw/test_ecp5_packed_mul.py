"""Two products per ECP5 MULT18X18D (``hw/ecp5_packed_mul.py``): every pair of 4-bit weights
against the extremes and random 8-bit map values in Amaranth's simulator, the cell instance
under cocotb/Icarus with dynfix's MULT18X18D model, the config's pairing and DSP count, the
MAC array's sums, yosys's cell count, and a whole digits engine with 4-bit weights bit-exact."""

from __future__ import annotations

from itertools import product

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from dynfix.errors import DynfixError
from dynfix.hw.config import EngineConfig, Multiplier, packable
from dynfix.hw.ecp5_mul import CELL, LATENCY
from dynfix.hw.ecp5_packed_mul import Ecp5PackedMul
from dynfix.hw.generate import ensure_yosys

from mul_helpers import check_on_verilator, check_same_sums_as_single, run_bank, simulate_bank

needs_icarus = pytest.mark.usefixtures("icarus")

#: Packed cells side by side in the test bank.
CELLS = 4


class PackedBank(wiring.Component):
    """``cells`` :class:`Ecp5PackedMul` side by side: ``a[c]`` times ``b[2c]`` and
    ``b[2c+1]`` give ``p[2c]`` and ``p[2c+1]``."""

    def __init__(self, a_bits: int, b_bits: int, cells: int, cell: bool):
        self._args = (a_bits, b_bits, cell)
        self._cells = cells
        super().__init__({
            "a": In(data.ArrayLayout(a_bits, cells)),
            "b": In(data.ArrayLayout(b_bits, 2 * cells)),
            "p": Out(data.ArrayLayout(a_bits + b_bits, 2 * cells)),
        })

    def elaborate(self, platform):
        m = Module()
        for c in range(self._cells):
            m.submodules[f"mul{c}"] = mul = Ecp5PackedMul(*self._args)
            m.d.comb += mul.a.eq(self.a[c])
            for h in range(2):
                m.d.comb += [mul.b[h].eq(self.b[2 * c + h]), self.p[2 * c + h].eq(mul.p[h])]
        return m


def vectors(a_bits: int, b_bits: int, steps: int = 120, seed: int = 0
            ) -> tuple[list[list[int]], list[list[int]]]:
    """Per cycle ``CELLS`` map values and ``2 * CELLS`` weights: every (b0, b1) pair of the
    weight range against the map value's extremes (min, -1, 0, 1, max, cycled over the
    cells), then random operands."""
    lo_a, hi_a = -(1 << (a_bits - 1)), (1 << (a_bits - 1)) - 1
    lo_b, hi_b = -(1 << (b_bits - 1)), (1 << (b_bits - 1)) - 1
    ends = [lo_a, -1, 0, 1, hi_a]
    pairs = list(product(range(lo_b, hi_b + 1), repeat=2))
    a, b = [], []
    for t, (b0, b1) in enumerate(pairs):
        a.append([ends[(t + c) % len(ends)] for c in range(CELLS)])
        b.append([b0, b1] * CELLS)
    rng = np.random.default_rng(seed)
    a += rng.integers(lo_a, hi_a + 1, (steps, CELLS)).tolist()
    b += rng.integers(lo_b, hi_b + 1, (steps, 2 * CELLS)).tolist()
    return a, b


def check_outputs(a, b, out, latency: int = LATENCY) -> None:
    """``out[t + latency]`` holds step ``t``'s products (each map value times both of its
    weights), and not one cycle earlier or later."""
    want = (np.repeat(np.array(a, dtype=np.int64), 2, axis=1) * np.array(b)).tolist()
    n = len(a)
    assert out[latency:latency + n] == want
    for off in (latency - 1, latency + 1):
        assert out[off:off + n] != want


@pytest.mark.parametrize("a_bits,b_bits", [(8, 4), (6, 5), (9, 4), (8, 2), (3, 1)])
def test_behavioural_model_every_weight_pair(a_bits, b_bits):
    """Amaranth's simulator: every pair of weights (negative low weights need the sign
    correction, negative low products the split's carry), the extremes, random operands."""
    a, b = vectors(a_bits, b_bits)
    check_outputs(a, b, simulate_bank(PackedBank(a_bits, b_bits, CELLS, cell=False),
                                      a_bits, b_bits, a, b, LATENCY))


@pytest.mark.filterwarnings("ignore:.*created but never used")   # refused in __init__
def test_packable_widths():
    """The 18-bit B port takes a + 2b + 1 bits: 8-bit maps with 4-bit weights, not 5."""
    assert packable(8, 4) and packable(6, 5) and packable(15, 1)
    assert not packable(8, 5) and not packable(10, 4) and not packable(0, 4)
    with pytest.raises(DynfixError, match=r"8 x 5 bits do not fit one MULT18X18D: 8 \+ 2"):
        Ecp5PackedMul(8, 5)


FITTED = dict(data_bits=8, weight_bits=4, bias_bits=12, acc_bits=20, fmap_depth=64,
              weight_depth=64, bias_depth=4, prog_depth=2, dim_bits=6)


def test_config_pairs_rows_and_counts_blocks():
    """Rows 2r and 2r+1 pair lane by lane; an odd tm's last row and products in LUTs stay
    alone; the DSP count and the texts follow."""
    cfg = EngineConfig(tn=3, tm=5, multiplier=Multiplier.ECP5_PACKED, **FITTED)
    cfg.check_parallelism()
    cfg.check_fitted()
    assert cfg.packed_pairs == 6 and cfg.dsp_blocks == 15 - 12 + 6 == 9
    assert [cfg.packed_pair(j, 0) for j in range(5)] == [True] * 4 + [False]
    # 4 products in LUTs: row 4 (3) and row 3's last lane; row 2 lane 2 loses its partner.
    lut = EngineConfig(tn=3, tm=5, multiplier=Multiplier.ECP5_PACKED, lut_products=4, **FITTED)
    assert [lut.packed_pair(2, lane) for lane in range(3)] == [True, True, False]
    assert lut.packed_pairs == 5 and lut.dsp_blocks == 15 - 4 - 5 == 6
    assert lut.summary() == "tn=3 tm=5 ecp5 dsp packed +4 lut"
    assert lut.multipliers_text() == "15 multipliers (10 packed in pairs, 4 in LUTs, 6 DSP blocks)"
    assert cfg.choice()["multiplier"] == "ecp5-packed" and not cfg.window_fits()
    # Products go to LUTs pair by pair (pair-major), so those left on blocks stay paired:
    # 4 in LUTs leave 4 pairs on 4 blocks (row-major order would leave 3 pairs, 2 singles).
    four = EngineConfig(tn=3, tm=4, multiplier=Multiplier.ECP5_PACKED, lut_products=4, **FITTED)
    assert {(j, lane) for j in range(4) for lane in range(3) if four.lut_product(j, lane)} == {
        (2, 1), (3, 1), (2, 2), (3, 2)}
    assert (four.packed_pairs, four.dsp_blocks) == (4, 4)


@pytest.mark.parametrize("bad,match", [
    (dict(packed_dsp=1), "packed_dsp .* needs ecp5_dsp: 1"),          # an older file's flags
    (dict(packed_dsp=2, ecp5_dsp=1), "packed_dsp=2 must be 0 or 1"),
    (dict(multiplier="ecp5-packed", dw_window=2), "dw_window gives every row its own"),
    (dict(multiplier="ecp5-packed", ecp5_dsp=1), "the multiplier or the older ecp5_dsp"),
    (dict(multiplier="ecp5-pairs"), "multiplier 'ecp5-pairs' is none of fabric, ice40-dual"),
])
def test_config_refusals(bad, match):
    with pytest.raises(DynfixError, match=match):
        EngineConfig.from_dict({"tn": 4, "tm": 2, **bad}, derived=True)


def test_config_refuses_wide_weights():
    cfg = EngineConfig(tn=3, tm=2, multiplier=Multiplier.ECP5_PACKED,
                       **{**FITTED, "weight_bits": 5})
    with pytest.raises(DynfixError, match="8-bit data and 5-bit weights .use the ecp5 multiplier"):
        cfg.check_fitted()


@pytest.mark.parametrize("lanes,tm", [(3, 3), (4, 2), (2, 5)])
def test_mac_array_packed_match_single_products(lanes, tm):
    """Packed products (behavioural cells) as one multiplier per product: same sums, same
    cycles, an odd tm's last row on single cells."""
    check_same_sums_as_single(lanes, tm, weight_bits=4, multiplier=Multiplier.ECP5_PACKED)


def test_mac_array_packed_with_lut_products():
    check_same_sums_as_single(3, 4, weight_bits=4, multiplier=Multiplier.ECP5_PACKED,
                              lut_products=4)


def bank_verilog(a_bits: int, b_bits: int, cells: int) -> str:
    from amaranth.back import verilog
    ensure_yosys()
    return verilog.convert(PackedBank(a_bits, b_bits, cells, cell=True), name="bank",
                           emit_src=False, strip_internal_attrs=True)


@needs_icarus
@pytest.mark.parametrize("a_bits,b_bits", [(8, 4), (6, 5)])
def test_cell_against_model(a_bits, b_bits, tmp_path):
    """The packed MULT18X18D instances as dynfix's cell model simulates them (Icarus):
    every weight pair and random operands exact, after exactly LATENCY cycles."""
    a, b = vectors(a_bits, b_bits, steps=60)
    text = bank_verilog(a_bits, b_bits, CELLS)
    assert text.count(f"{CELL} #(") == CELLS
    r = run_bank(text, a_bits, b_bits, tmp_path / "bank", a, b, outputs=2 * CELLS)
    assert r is not None, "the cocotb test failed"
    check_outputs(a, b, r["out"])


@pytest.mark.slow
def test_digits_packed_engine_verilator(tmp_path):
    """A whole digits engine with 4-bit weights, 16 of its 20 products packed in pairs on
    MULT18X18D (dynfix's cell model) and 4 in LUTs, under Verilator: bit-exact with the
    integer model, the cycle model exact. (By default packed engines run under Icarus, in
    test_engine_cocotb and test_sim_random.)"""
    from dynfix.hw.compiler import compile_model
    from hw_models import digits_4bit_weights
    model, spec = digits_4bit_weights()
    cm = compile_model(model, spec, EngineConfig(tn=4, tm=5, multiplier=Multiplier.ECP5_PACKED,
                                                 lut_products=4))
    assert (cm.config.weight_bits, cm.config.packed_pairs, cm.config.dsp_blocks) == (4, 8, 8)
    report = check_on_verilator(model, spec, cm, tmp_path)
    assert report["engine"]["multiplier"] == "ecp5-packed" and report["engine"]["dsp_blocks"] == 8
    assert (tmp_path / "gen" / "dynfix_engine.v").read_text().count(f"{CELL} #(") == 8
