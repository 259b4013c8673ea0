"""The registered ECP5 MULT18X18D products (``hw/ecp5_mul.py``): the behavioural model in
Amaranth's simulator, the cell instance's Verilog against dynfix's MULT18X18D model under
cocotb and Icarus (random signed operands and the extremes, values and exact latency), the
model's refusal of modes it does not model, and the MAC array with cells, bit-exact."""

from __future__ import annotations


import pytest

from dynfix.errors import DynfixError
from dynfix.hw.config import EngineConfig, Multiplier
from dynfix.hw.ecp5_mul import CELL, CELL_MODEL, CELL_OPEN, LATENCY, OPERAND_BITS, Ecp5Mul
from dynfix.hw.ice40_cells import sim_sources
from dynfix.hw.timing import OPERAND_STAGES, PRODUCT_STAGES

from mul_helpers import (CELLS, Ecp5MulBank, bank_verilog, check_on_verilator, check_outputs,
                         check_same_sums_as_single, run_bank, simulate_bank, vectors)


needs_icarus = pytest.mark.usefixtures("icarus")


@pytest.mark.filterwarnings("ignore:.*created but never used")   # never elaborated here
def test_latency_is_the_mac_arrays():
    """The MAC array's latency (and so the cycle model) holds with the registered cells."""
    assert LATENCY == Ecp5Mul(8, 8).latency == OPERAND_STAGES + PRODUCT_STAGES


@pytest.mark.filterwarnings("ignore:.*created but never used")   # refused in __init__
def test_wider_operands_are_refused():
    with pytest.raises(DynfixError, match="1..18 bits, not 19 x 8"):
        Ecp5Mul(19, 8)
    cfg = EngineConfig(tn=2, tm=2, multiplier=Multiplier.ECP5, data_bits=8, weight_bits=19,
                       bias_bits=16, acc_bits=32, fmap_depth=64, weight_depth=64,
                       bias_depth=4, prog_depth=2, dim_bits=6)
    with pytest.raises(DynfixError, match="the ecp5 multiplier puts each product on one 18 x 18"):
        cfg.check_fitted()
    # An older engine.yaml's flags: converted, or refused as they always were.
    with pytest.raises(DynfixError, match="ecp5_dsp=2 must be 0 or 1"):
        EngineConfig.from_dict({"ecp5_dsp": 2})
    with pytest.raises(DynfixError, match="dual_mac .* and ecp5_dsp .* exclude each other"):
        EngineConfig.from_dict({"dual_mac": 1, "ecp5_dsp": 1})
    assert EngineConfig.from_dict({"k": 1, "tn": 2, "ecp5_dsp": 1}) == \
        EngineConfig.from_dict({"tn": 2, "multiplier": "ecp5"}) == EngineConfig(
            tn=2, multiplier=Multiplier.ECP5)
    assert (cfg.multipliers, cfg.dsp_blocks) == (4, 4)
    assert cfg.choice()["multiplier"] == "ecp5" and cfg.summary().endswith(" ecp5 dsp")


@pytest.mark.parametrize("a_bits,b_bits", [(8, 8), (OPERAND_BITS, OPERAND_BITS), (5, 13)])
def test_behavioural_model(a_bits, b_bits):
    """Amaranth's simulator, the model without the cell: extremes and random operands."""
    a, b = vectors(a_bits, b_bits)
    check_outputs(a, b, simulate_bank(Ecp5MulBank(a_bits, b_bits, CELLS, cell=False),
                                      a_bits, b_bits, a, b, LATENCY))


def test_instance_is_a_registered_mult18x18d():
    text = bank_verilog(8, 8, 1)
    assert text.count(f"{CELL} #(") == 1
    for param in ('.REG_INPUTA_CLK("CLK0")', '.REG_INPUTB_CLK("CLK0")',
                  '.REG_OUTPUT_CLK("CLK0")', '.REG_PIPELINE_CLK("NONE")',
                  ".SIGNEDA(1'h1)", ".SIGNEDB(1'h1)", ".CE0(1'h1)", ".RST0(1'h0)"):
        assert param in text, param
    # The pins no fabric net can drive stay open (nextpnr cannot route a tie to them).
    assert not any(f".{pin}(" in text for pin in CELL_OPEN)
    assert sim_sources(text) == [CELL_MODEL]
    assert sim_sources(text.replace(CELL, "NOT_A_CELL")) == []


@needs_icarus
@pytest.mark.parametrize("a_bits,b_bits", [(8, 8), (OPERAND_BITS, OPERAND_BITS), (5, 13)])
def test_cell_against_model(a_bits, b_bits, tmp_path):
    """The MULT18X18D instance as dynfix's cell model simulates it (Icarus): extremes
    (-128 x -128, max x min, the widest operands' -2**17 x -2**17) and random signed
    operands exact, after exactly LATENCY cycles."""
    a, b = vectors(a_bits, b_bits)
    r = run_bank(bank_verilog(a_bits, b_bits, CELLS), a_bits, b_bits, tmp_path / "bank", a, b)
    assert r is not None, "the cocotb test failed"
    check_outputs(a, b, r["out"])


@needs_icarus
def test_model_refuses_modes_it_does_not_model(tmp_path):
    """The cell model stops the build on a setting it does not model (another clock), and
    takes the output register away when the instance does (a cycle less: the check fails)."""
    a, b = vectors(8, 8, steps=20)
    text = bank_verilog(8, 8, CELLS)
    other = text.replace('.REG_OUTPUT_CLK("CLK0")', '.REG_OUTPUT_CLK("CLK1")')
    assert run_bank(other, 8, 8, tmp_path / "clk1", a, b) is None
    assert "MULT18X18D_MODE_NOT_MODELLED_BY_DYNFIX" in (tmp_path / "clk1" / "build.log").read_text()
    bypass = text.replace('.REG_OUTPUT_CLK("CLK0")', '.REG_OUTPUT_CLK("NONE")')
    r = run_bank(bypass, 8, 8, tmp_path / "none", a, b)
    check_outputs(a, b, r["out"], LATENCY - 1)
    with pytest.raises(AssertionError):
        check_outputs(a, b, r["out"])


@pytest.mark.parametrize("lanes,tm", [(3, 3), (4, 2)])
def test_mac_array_cells_match_single_products(lanes, tm):
    """Products on registered MULT18X18D (behavioural cells) as one inferred multiplier per
    product: same sums, same cycles."""
    check_same_sums_as_single(lanes, tm, multiplier=Multiplier.ECP5)


@pytest.mark.slow
def test_digits_engine_verilator(tmp_path):
    """The harness adds dynfix's MULT18X18D model under Verilator too: an ``ecp5_dsp``
    digits engine bit-exact, the cycle model exact. (By default ``ecp5_dsp`` engines run
    under Icarus: test_engine_cocotb, test_sim_random.)"""
    from dynfix.hw.compiler import compile_model
    from hw_models import digits_8bit
    model, spec = digits_8bit()
    cm = compile_model(model, spec, EngineConfig(tn=3, tm=4, multiplier=Multiplier.ECP5))
    report = check_on_verilator(model, spec, cm, tmp_path)
    assert report["engine"]["multiplier"] == "ecp5"
