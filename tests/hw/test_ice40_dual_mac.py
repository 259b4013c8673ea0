"""The dual 8x8 SB_MAC16 products (``hw/ice40_dual_mac.py``): the behavioural model in
Amaranth's simulator, the cell instance's Verilog against yosys's SB_MAC16 model under cocotb
and Icarus (every operand pair in both halves), the MAC array and a whole digits engine with
paired products, bit-exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from dynfix.errors import DynfixError
from dynfix.hw.config import EngineConfig, Multiplier
from dynfix.hw.generate import ensure_yosys
from dynfix.hw.ice40_cells import SIM_DEFINES, cell_model, sim_sources
from dynfix.hw.ice40_dual_mac import CELL, LATENCY, DualMul
from dynfix.hw.timing import OPERAND_STAGES, PRODUCT_STAGES

from dual_mac_vectors import bank_vectors, pack, unpack
from mul_helpers import check_outputs, check_same_sums_as_single
from sim_helpers import run_amaranth

needs_icarus = pytest.mark.usefixtures("icarus")

#: Cells side by side in the test bank: every operand pair of both halves in 4096 cycles.
CELLS = 16


class DualMulBank(wiring.Component):
    """``cells`` :class:`DualMul` side by side; slot ``2c + h`` is cell ``c``'s half ``h``."""

    def __init__(self, a_bits: int, b_bits: int, cells: int, cell: bool):
        self._args = (a_bits, b_bits, cell)
        self._cells = cells
        super().__init__({
            "a": In(data.ArrayLayout(a_bits, 2 * cells)),
            "b": In(data.ArrayLayout(b_bits, 2 * cells)),
            "p": Out(data.ArrayLayout(a_bits + b_bits, 2 * cells)),
        })

    def elaborate(self, platform):
        m = Module()
        for c in range(self._cells):
            m.submodules[f"mul{c}"] = mul = DualMul(*self._args)
            for h in range(2):
                s = 2 * c + h
                m.d.comb += [mul.a[h].eq(self.a[s]), mul.b[h].eq(self.b[s]),
                             self.p[s].eq(mul.p[h])]
        return m


@pytest.mark.filterwarnings("ignore:.*created but never used")   # never elaborated here
def test_latency_is_the_mac_arrays():
    """The MAC array's latency (and so the cycle model) holds for paired products."""
    assert LATENCY == DualMul(8, 8).latency == OPERAND_STAGES + PRODUCT_STAGES


@pytest.mark.filterwarnings("ignore:.*created but never used")   # refused in __init__
def test_wider_operands_are_refused():
    with pytest.raises(DynfixError, match="1..8 bits, not 9 x 8"):
        DualMul(9, 8)
    cfg = EngineConfig(tn=2, tm=2, multiplier=Multiplier.ICE40_DUAL, data_bits=8,
                       weight_bits=12, bias_bits=16, acc_bits=24, fmap_depth=64,
                       weight_depth=64, bias_depth=4, prog_depth=2, dim_bits=6)
    with pytest.raises(DynfixError, match="ice40-dual multiplier pairs products of at most 8-bit"):
        cfg.check_fitted()
    with pytest.raises(DynfixError, match="dual_mac=2 must be 0 or 1"):
        EngineConfig.from_dict({"dual_mac": 2})
    assert (cfg.multipliers, cfg.dsp_blocks) == (4, 2)
    assert EngineConfig(tn=9, tm=1, multiplier=Multiplier.ICE40_DUAL).dsp_blocks == 5


@pytest.mark.parametrize("a_bits,b_bits", [(8, 8), (5, 7)])
def test_behavioural_model_every_pair(a_bits, b_bits):
    """Amaranth's simulator, the model without the cell: every pair, both halves."""
    cells = CELLS if a_bits + b_bits == 16 else 8
    dut = DualMulBank(a_bits, b_bits, cells, cell=False)
    a, b = bank_vectors(a_bits, b_bits, cells)
    got = []

    async def tb(ctx):
        for t in range(len(a) + LATENCY):
            if t < len(a):
                ctx.set(dut.a.as_value(), pack(a[t], a_bits))
                ctx.set(dut.b.as_value(), pack(b[t], b_bits))
            await ctx.tick()
            if t >= LATENCY - 1:
                got.append(unpack(ctx.get(dut.p.as_value()), a_bits + b_bits, 2 * cells))

    run_amaranth(dut, tb)
    want = (np.array(a) * np.array(b)).tolist()
    assert got[:len(a)] == want
    assert max(map(max, want)) == (1 << (a_bits - 1)) * (1 << (b_bits - 1))


def bank_verilog(a_bits: int, b_bits: int, cells: int) -> str:
    from amaranth.back import verilog
    ensure_yosys()
    return verilog.convert(DualMulBank(a_bits, b_bits, cells, cell=True), name="bank",
                           emit_src=False, strip_internal_attrs=True)


def run_bank(a_bits: int, b_bits: int, cells: int, build_dir: Path) -> tuple[list, list, list]:
    """The bank's Verilog (SB_MAC16 instances) with yosys's cell model under cocotb/Icarus,
    fed every operand pair in every half (``bank_vectors``): the operands and the products
    recorded every cycle."""
    from dynfix.sim.simulators import error_lines, job_files
    from sim_helpers import run_icarus
    build_dir = build_dir.resolve()
    src = build_dir / "bank.v"
    build_dir.mkdir(parents=True, exist_ok=True)
    src.write_text(bank_verilog(a_bits, b_bits, cells))
    cells_v = sim_sources(src.read_text())
    assert cells_v == [cell_model()]
    a, b = bank_vectors(a_bits, b_bits, cells)
    job, result = job_files(build_dir, {"a_bits": a_bits, "b_bits": b_bits, "a": a, "b": b,
                                        "outputs": 2 * cells, "extra_cycles": LATENCY + 2})
    log = run_icarus([src, *cells_v], "bank", "mul_bank_tb", build_dir, job, SIM_DEFINES)
    assert result.exists(), f"the cocotb test failed{error_lines(log, 3)} (see {log})"
    return a, b, json.loads(result.read_text())["out"]


def test_instance_is_a_dual_8x8_sb_mac16():
    text = bank_verilog(8, 8, 1)
    assert text.count(f"{CELL} #(") == 1
    for param in (".MODE_8x8(1'h1)", ".A_SIGNED(1'h1)", ".B_SIGNED(1'h1)",
                  ".TOPOUTPUT_SELECT(2'h2)", ".BOTOUTPUT_SELECT(2'h2)", ".A_REG(1'h1)",
                  ".B_REG(1'h1)", ".TOP_8x8_MULT_REG(1'h1)", ".BOT_8x8_MULT_REG(1'h1)"):
        assert param in text, param
    assert sim_sources(text) == [cell_model()]
    assert sim_sources(bank_verilog(8, 8, 1).replace(CELL, "NOT_A_CELL")) == []


@needs_icarus
@pytest.mark.parametrize("a_bits,b_bits", [pytest.param(8, 8, marks=pytest.mark.slow), (5, 7)])
def test_cell_against_yosys_model_every_pair(a_bits, b_bits, tmp_path):
    """The SB_MAC16 instance as yosys's model simulates it (Icarus): every pair of signed
    operands in both halves exact, the most negative times itself included (the low half
    is signed in the dual 8x8 mode: a model or cell that multiplied it unsigned would fail
    here). 8 x 8's 65,536 pairs with ``-m slow``; the default run has 5 x 7's, and the
    dual engines' runs."""
    cells = CELLS if a_bits + b_bits == 16 else 8
    a, b, out = run_bank(a_bits, b_bits, cells, tmp_path / "bank")
    assert len(a) * len(a[0]) == 2 * (1 << (a_bits + b_bits))     # every pair, both halves
    check_outputs(a, b, out, LATENCY)


@pytest.mark.parametrize("lanes,tm", [(3, 3), (4, 2)])
def test_mac_array_pairs_match_single_products(lanes, tm):
    """Paired products (behavioural cells) as one multiplier per product: an odd lane count
    pairs across output channels and leaves the last cell's upper half idle."""
    check_same_sums_as_single(lanes, tm, multiplier=Multiplier.ICE40_DUAL)


@needs_icarus
def test_digits_dual_engine_bit_exact(tmp_path):
    """A whole digits engine with paired products (9 products on 5 SB_MAC16: pairs across
    output channels, one idle half) under Icarus with yosys's cell model: bit-exact with the
    integer model, cycle counters as the cycle model says."""
    from dynfix.hw.compiler import compile_model
    from dynfix.hw.cycle_model import layer_cycles
    from dynfix.hw.generate import write_outputs
    from dynfix.quant.datasets import load_digits
    from dynfix.quant.int_model import IntModel
    from dynfix.sim.simulate import Design, simulate

    from hw_models import digits_8bit
    model, spec = digits_8bit()
    cm = compile_model(model, spec, EngineConfig(tn=3, tm=3, multiplier=Multiplier.ICE40_DUAL))
    report = write_outputs(cm, model.name, tmp_path / "gen")
    assert (report["multipliers"], report["dsp_blocks"]) == (9, 5)
    assert report["engine"]["multiplier"] == "ice40-dual"
    text = (tmp_path / "gen" / "dynfix_engine.v").read_text()
    assert text.count(f"{CELL} #(") == 5 and "$mul" not in text
    x, _ = load_digits("test")
    x = x[:2]
    im = IntModel(model, spec)
    ref = im.forward(im.quantize_input(x))[cm.output_name].reshape(len(x), -1)
    res = simulate(Design(tmp_path / "gen", report, model, spec, cm), x, None,
                   tmp_path / "build", "icarus", chunk=1)
    assert res.images == 2 and res.mismatches == 0
    np.testing.assert_array_equal(res.outputs, ref)
    predicted = [layer_cycles(cm.config, p) for p in cm.plans]
    assert all(layers == predicted for layers in res.image_layer_cycles)
