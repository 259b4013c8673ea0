"""The registered ECP5 MULT18X18D products (``hw/ecp5_mul.py``): the behavioural model in
Amaranth's simulator, the cell instance's Verilog against dynfix's MULT18X18D model under
cocotb and Icarus (random signed operands and the extremes, values and exact latency), the
model's refusal of modes it does not model, and the MAC array with cells, bit-exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from dynfix.errors import DynfixError
from dynfix.hw.config import EngineConfig
from dynfix.hw.ecp5_mul import CELL, CELL_MODEL, CELL_OPEN, LATENCY, OPERAND_BITS, Ecp5Mul
from dynfix.hw.generate import ensure_yosys
from dynfix.hw.ice40_cells import sim_sources
from dynfix.hw.timing import OPERAND_STAGES, PRODUCT_STAGES

from dual_mac_vectors import pack, unpack
from test_ice40_dual_mac import check_same_sums_as_single

needs_icarus = pytest.mark.usefixtures("icarus")

#: Cells side by side in the test bank, and cycles of random operands.
CELLS = 6
STEPS = 200


class Ecp5MulBank(wiring.Component):
    """``cells`` :class:`Ecp5Mul` side by side."""

    def __init__(self, a_bits: int, b_bits: int, cells: int, cell: bool):
        self._args = (a_bits, b_bits, cell)
        self._cells = cells
        super().__init__({
            "a": In(data.ArrayLayout(a_bits, cells)),
            "b": In(data.ArrayLayout(b_bits, cells)),
            "p": Out(data.ArrayLayout(a_bits + b_bits, cells)),
        })

    def product(self) -> wiring.Component:
        """One of the bank's multipliers."""
        return Ecp5Mul(*self._args)

    def elaborate(self, platform):
        m = Module()
        for c in range(self._cells):
            m.submodules[f"mul{c}"] = mul = self.product()
            m.d.comb += [mul.a.eq(self.a[c]), mul.b.eq(self.b[c]), self.p[c].eq(mul.p)]
        return m


def vectors(a_bits: int, b_bits: int, cells: int = CELLS, steps: int = STEPS,
            seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    """Per cycle the ``cells`` operands of ``a`` and of ``b``: first every pair of the
    extremes (min, -1, 0, 1, max of each width) in every cell, then random operands."""
    def ends(bits):
        return [-(1 << (bits - 1)), -1, 0, 1, (1 << (bits - 1)) - 1]
    pairs = [(x, y) for x in ends(a_bits) for y in ends(b_bits)]
    a = [[pairs[(t + c) % len(pairs)][0] for c in range(cells)] for t in range(len(pairs))]
    b = [[pairs[(t + c) % len(pairs)][1] for c in range(cells)] for t in range(len(pairs))]
    rng = np.random.default_rng(seed)
    a += rng.integers(-(1 << (a_bits - 1)), 1 << (a_bits - 1), (steps, cells)).tolist()
    b += rng.integers(-(1 << (b_bits - 1)), 1 << (b_bits - 1), (steps, cells)).tolist()
    return a, b


def check_outputs(a, b, out, latency: int = LATENCY) -> None:
    """``out[t + latency]`` holds the products of step ``t`` (all of them), and not one cycle
    earlier or later (the latency is exact)."""
    want = (np.array(a, dtype=np.int64) * np.array(b, dtype=np.int64)).tolist()
    n = len(a)
    assert out[latency:latency + n] == want
    for off in (latency - 1, latency + 1):
        assert out[off:off + n] != want


@pytest.mark.filterwarnings("ignore:.*created but never used")   # never elaborated here
def test_latency_is_the_mac_arrays():
    """The MAC array's latency (and so the cycle model) holds with the registered cells."""
    assert LATENCY == Ecp5Mul(8, 8).latency == OPERAND_STAGES + PRODUCT_STAGES


@pytest.mark.filterwarnings("ignore:.*created but never used")   # refused in __init__
def test_wider_operands_are_refused():
    with pytest.raises(DynfixError, match="1..18 bits, not 19 x 8"):
        Ecp5Mul(19, 8)
    cfg = EngineConfig(k=1, tn=2, tm=2, ecp5_dsp=1, data_bits=8, weight_bits=19,
                       bias_bits=16, acc_bits=32, fmap_depth=64, weight_depth=64,
                       bias_depth=4, prog_depth=2, dim_bits=6)
    with pytest.raises(DynfixError, match="ecp5_dsp=1 puts each product on one 18 x 18"):
        cfg.check_fitted()
    with pytest.raises(DynfixError, match="ecp5_dsp=2 must be 0 or 1"):
        EngineConfig.from_dict({"ecp5_dsp": 2})
    with pytest.raises(DynfixError, match="dual_mac .* and ecp5_dsp .* exclude each other"):
        EngineConfig.from_dict({"dual_mac": 1, "ecp5_dsp": 1})
    assert (cfg.multipliers, cfg.dsp_blocks) == (4, 4)
    assert "ecp5_dsp" in cfg.choice() and cfg.summary().endswith(" ecp5 dsp")


@pytest.mark.parametrize("a_bits,b_bits", [(8, 8), (OPERAND_BITS, OPERAND_BITS), (5, 13)])
def test_behavioural_model(a_bits, b_bits):
    """Amaranth's simulator, the model without the cell: extremes and random operands."""
    a, b = vectors(a_bits, b_bits)
    check_outputs(a, b, simulate_bank(Ecp5MulBank(a_bits, b_bits, CELLS, cell=False),
                                      a_bits, b_bits, a, b, LATENCY))


def simulate_bank(dut, a_bits: int, b_bits: int, a, b, latency: int) -> list[list[int]]:
    """Amaranth's simulator on a bank of multipliers fed ``a``, ``b`` (one list of operands
    per cycle): the products of every cycle (as many as ``b`` has operands),
    ``latency + 2`` cycles past the last input."""
    cells = len(b[0])
    out = []

    async def tb(ctx):
        for t in range(len(a) + latency + 2):
            out.append(unpack(ctx.get(dut.p.as_value()), a_bits + b_bits, cells))
            if t < len(a):
                ctx.set(dut.a.as_value(), pack(a[t], a_bits))
                ctx.set(dut.b.as_value(), pack(b[t], b_bits))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(tb)
    sim.run()
    return out


def bank_verilog(a_bits: int, b_bits: int, cells: int) -> str:
    from amaranth.back import verilog
    ensure_yosys()
    return verilog.convert(Ecp5MulBank(a_bits, b_bits, cells, cell=True), name="bank",
                           emit_src=False, strip_internal_attrs=True)


def run_bank(text: str, a_bits: int, b_bits: int, build_dir: Path, a, b,
             outputs: int | None = None) -> dict | None:
    """The bank's Verilog ``text`` (MULT18X18D instances) with dynfix's cell model under
    cocotb/Icarus; the recorded outputs (``outputs`` products per cycle, default one per
    ``a`` operand), or None when the build failed."""
    from dynfix.sim.simulators import job_files
    from sim_helpers import run_icarus
    build_dir = build_dir.resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    src = build_dir / "bank.v"
    src.write_text(text)
    job, result = job_files(build_dir, {"a_bits": a_bits, "b_bits": b_bits, "a": a, "b": b,
                                        "extra_cycles": LATENCY + 2,
                                        **({"outputs": outputs} if outputs else {})})
    try:
        run_icarus([src, *sim_sources(text)], "bank", "ecp5_mul_tb", build_dir, job)
    except (SystemExit, RuntimeError):      # the runner's ways of saying the build failed
        return None
    return json.loads(result.read_text()) if result.exists() else None


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
    check_same_sums_as_single(lanes, tm, ecp5_dsp=1)


@pytest.mark.slow
def test_digits_engine_verilator(tmp_path):
    """The harness adds dynfix's MULT18X18D model under Verilator too: an ``ecp5_dsp``
    digits engine bit-exact, the cycle model exact. (By default ``ecp5_dsp`` engines run
    under Icarus: test_engine_cocotb, test_sim_random.)"""
    from dynfix.hw.compiler import compile_model
    from hw_models import digits_8bit
    model, spec = digits_8bit()
    cm = compile_model(model, spec, EngineConfig(k=1, tn=3, tm=4, ecp5_dsp=1))
    report = check_on_verilator(model, spec, cm, tmp_path)
    assert report["engine"]["ecp5_dsp"] == 1


def check_on_verilator(model, spec, cm, tmp_path: Path) -> dict:
    """The compiled digits engine ``cm`` written out and run under Verilator on two test
    images: bit-exact with the integer model, the cycle model exact; its report."""
    from dynfix.hw.generate import write_outputs
    from dynfix.quant.datasets import load_digits
    from dynfix.quant.int_model import IntModel
    from dynfix.sim.simulate import Design, simulate

    from sim_helpers import require_simulator
    from test_engine_cocotb import check
    require_simulator("verilator")
    report = write_outputs(cm, model.name, tmp_path / "gen")
    x, _ = load_digits("test")
    im = IntModel(model, spec)
    ref = im.forward(im.quantize_input(x[:2]))[cm.output_name].reshape(2, -1)
    res = simulate(Design(tmp_path / "gen", report, model, spec, cm), x[:2], None,
                   tmp_path / "build", "verilator", chunk=1)
    check(cm, ref, res)
    return report
