"""Products in LUTs (``hw/lut_mul.py``) and the MAC array's ``lut_products``: exact signed
products at every width the engines use, the exact latency, no ``$mul`` in the netlist, and a
MAC array with some products in LUTs giving the same sums as one with none."""

from __future__ import annotations

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.hw.config import EngineConfig, Multiplier
from dynfix.hw.ecp5_mul import LATENCY as CELL_LATENCY
from dynfix.hw.generate import ensure_yosys
from dynfix.hw.lut_mul import LATENCY, LutMul
from dynfix.hw.timing import OPERAND_STAGES, PRODUCT_STAGES

from mul_helpers import (Ecp5MulBank, check_outputs, check_same_sums_as_single, simulate_bank,
                         vectors)

CELLS = 4


class LutMulBank(Ecp5MulBank):
    """``cells`` :class:`LutMul` side by side."""

    def __init__(self, a_bits: int, b_bits: int, cells: int):
        super().__init__(a_bits, b_bits, cells, cell=False)

    def product(self) -> LutMul:
        return LutMul(*self._args[:2])


@pytest.mark.filterwarnings("ignore:.*created but never used")   # never elaborated here
def test_latency_is_the_mac_arrays():
    """A LUT product stands in for a MULT18X18D cell: the same latency, the MAC array's."""
    assert LATENCY == LutMul(8, 8).latency == CELL_LATENCY == OPERAND_STAGES + PRODUCT_STAGES
    with pytest.raises(DynfixError, match="at least 1 bit, not 0 x 8"):
        LutMul(0, 8)


#: Every width pair the engines use (8/8, mixed 8/4 and 4/8, 2-bit weights, the odd and the
#: wide ones) and the degenerate 1-bit operand (one row: the sign bit's, subtracted).
WIDTHS = [(8, 8), (8, 4), (4, 8), (8, 2), (6, 3), (5, 13), (16, 8), (18, 18), (8, 1), (1, 8),
          (2, 2)]


@pytest.mark.parametrize("a_bits,b_bits", WIDTHS)
def test_products_exact_with_exact_latency(a_bits, b_bits):
    """Amaranth's simulator: every pair of extremes (min x min, max x min, -1, 0, 1) and
    random signed operands, exact, after exactly LATENCY cycles."""
    a, b = (np.clip(v, -(1 << (bits - 1)), (1 << (bits - 1)) - 1).tolist()   # 1 bit: -1..0
            for v, bits in zip(vectors(a_bits, b_bits, CELLS, steps=120,
                                       seed=a_bits * 100 + b_bits), (a_bits, b_bits)))
    out = simulate_bank(LutMulBank(a_bits, b_bits, CELLS), a_bits, b_bits, a, b, LATENCY)
    check_outputs(a, b, out, LATENCY)
    # The check itself catches a wrong product.
    bad = [row[:] for row in out]
    bad[LATENCY + 3][1] += 1
    with pytest.raises(AssertionError):
        check_outputs(a, b, bad, LATENCY)


def test_no_mul_cell():
    """The product is rows and adders, never a ``$mul`` yosys could map to a DSP block (the
    Verilog has no ``*``)."""
    from amaranth.back import rtlil, verilog
    ensure_yosys()
    assert "$mul" not in rtlil.convert(LutMul(8, 8), name="m")
    text = verilog.convert(LutMul(8, 8), name="m", emit_src=False)
    assert " * " not in text


@pytest.mark.parametrize("lanes,tm,lut", [(3, 3, 4), (4, 2, 8), (3, 3, 1)])
def test_mac_array_lut_products_match_single_products(lanes, tm, lut):
    """Some (or all) of the products in LUTs, the rest on registered MULT18X18D cells
    (behavioural): the same sums on the same cycles as one inferred multiplier per
    product."""
    check_same_sums_as_single(lanes, tm, multiplier=Multiplier.ECP5, lut_products=lut)


def test_mac_array_lut_products_without_cells():
    """LUT products in a generic (inferred-multiplier) array, too."""
    check_same_sums_as_single(3, 2, lut_products=5)


def test_config_counts_and_refusals():
    cfg = EngineConfig(tn=4, tm=3, multiplier=Multiplier.ECP5, lut_products=5)
    assert (cfg.multipliers, cfg.dsp_blocks) == (12, 7)
    assert cfg.choice()["lut_products"] == 5 and cfg.summary().endswith(" ecp5 dsp +5 lut")
    assert cfg.multipliers_text() == "12 multipliers (5 in LUTs, 7 DSP blocks)"
    assert [cfg.lut_product(j, lane) for j in range(3) for lane in range(4)] == \
        [False] * 7 + [True] * 5
    with pytest.raises(DynfixError, match="lut_products=13 .* 12 products"):
        EngineConfig.from_dict({"k": 1, "tn": 4, "tm": 3, "lut_products": 13})
    with pytest.raises(DynfixError, match="lut_products .* ice40-dual multiplier"):
        EngineConfig.from_dict({"dual_mac": 1, "lut_products": 1, "tn": 2})
    assert "lut" not in EngineConfig(tn=4, tm=3, multiplier=Multiplier.ECP5).summary()


def test_random_products_against_numpy():
    """A plain cross-check of the row arithmetic (as the hardware adds it) in Python."""
    rng = np.random.default_rng(1)
    for bits in (2, 4, 8):
        a = rng.integers(-(1 << 7), 1 << 7, 100)
        b = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), 100)
        rows = sum(((b >> i) & 1) * a << i for i in range(bits - 1)) \
            - (((b >> (bits - 1)) & 1) * a << (bits - 1))
        assert (rows == a * b).all()
