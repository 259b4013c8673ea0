"""Helpers the multiplier tests share (``test_ecp5_mul``, ``test_ecp5_packed_mul``,
``test_lut_mul``, ``test_ice40_dual_mac``): a bank of ECP5 multipliers and its operand
vectors, the bank in Amaranth's simulator and (as Verilog with dynfix's MULT18X18D model)
under cocotb/Icarus, the exact-latency check, a MAC array run, the paired-versus-single
sums check, and a compiled engine under Verilator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from dynfix.hw.config import EngineConfig
from dynfix.hw.ecp5_mul import LATENCY, Ecp5Mul
from dynfix.hw.generate import ensure_yosys
from dynfix.hw.ice40_cells import sim_sources
from dynfix.hw.mac_array import MacArray

from dual_mac_vectors import pack, unpack
from sim_helpers import run_amaranth

#: Cells side by side in the ECP5 test bank, and cycles of random operands.
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

    run_amaranth(dut, tb)
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
        run_icarus([src, *sim_sources(text)], "bank", "mul_bank_tb", build_dir, job)
    except (SystemExit, RuntimeError):      # the runner's ways of saying the build failed
        return None
    return json.loads(result.read_text()) if result.exists() else None

def check_on_verilator(model, spec, cm, tmp_path: Path) -> dict:
    """The compiled digits engine ``cm`` written out and run under Verilator on two test
    images: bit-exact with the integer model, the cycle model exact; its report."""
    from dynfix.hw.generate import write_outputs
    from dynfix.quant.datasets import load_digits
    from dynfix.quant.int_model import IntModel
    from dynfix.sim.simulate import Design, simulate

    from sim_helpers import check, require_simulator
    require_simulator("verilator")
    report = write_outputs(cm, model.name, tmp_path / "gen")
    x, _ = load_digits("test")
    im = IntModel(model, spec)
    ref = im.forward(im.quantize_input(x[:2]))[cm.output_name].reshape(2, -1)
    res = simulate(Design(tmp_path / "gen", report, model, spec, cm), x[:2], None,
                   tmp_path / "build", "verilator", chunk=1)
    check(cm, ref, res)
    return report

def mac_array_run(cfg: EngineConfig, items: list[dict]) -> list[tuple[int, list[int]]]:
    """(cycle, sums) of every output of a MAC array (paired products: the behavioural
    cells) fed ``items``, one per cycle."""
    dut = MacArray(cfg, cell=False)
    out = []

    async def tb(ctx):
        ctx.set(dut.bias_shift, 3)
        for t in range(len(items) + dut.latency + 1):
            if t < len(items):
                it = items[t]
                ctx.set(dut.valid, 1)
                ctx.set(dut.first, it["first"])
                ctx.set(dut.last, it["last"])
                ctx.set(dut.x.as_value(), pack(it["x"], cfg.data_bits))
                ctx.set(dut.w.as_value(), pack(it["w"], cfg.weight_bits))
            else:
                ctx.set(dut.valid, 0)
            if 0 <= t - dut.bias_lag < len(items):          # each item's bias comes late
                ctx.set(dut.bias.as_value(), pack(items[t - dut.bias_lag]["bias"],
                                                  cfg.bias_bits))
            await ctx.tick()
            if ctx.get(dut.o_valid):
                out.append((t, unpack(ctx.get(dut.o.as_value()), cfg.acc_bits, cfg.tm)))

    run_amaranth(dut, tb)
    return out

def check_same_sums_as_single(lanes: int, tm: int, weight_bits: int = 8, **cells) -> None:
    """A MAC array with its products on cells (``cells``: the multiplier and LUT products;
    behavioural cells) gives the same sums on the same cycles as one inferred multiplier per product,
    the largest products (all operands at their minimum) included."""
    fitted = dict(data_bits=8, weight_bits=weight_bits, bias_bits=10, acc_bits=22,
                  fmap_depth=16, weight_depth=16, bias_depth=4, prog_depth=2, dim_bits=5)
    single = EngineConfig(tn=lanes, tm=tm, **fitted)
    on_cells = EngineConfig(tn=lanes, tm=tm, **cells, **fitted)
    rng = np.random.default_rng(lanes * 10 + tm)
    w_min = -(1 << (weight_bits - 1))
    items = []
    for t in range(40):
        x = rng.integers(-128, 128, lanes).tolist()
        w = rng.integers(w_min, -w_min, lanes * tm).tolist()
        if t < 6:                                       # all at the minimum: the largest
            x, w = [-128] * lanes, [w_min] * (lanes * tm)
        items.append({"x": x, "w": w, "bias": rng.integers(-512, 512, tm).tolist(),
                      "first": int(t % 5 == 0), "last": int(t % 5 == 4)})
    a = mac_array_run(single, items)
    b = mac_array_run(on_cells, items)
    assert len(a) == 8 and a == b
    x, w = np.array(items[0]["x"]), np.array(items[0]["w"]).reshape(tm, lanes)
    bias = np.array(items[0]["bias"]) << 3
    assert a[0][1] == (bias + 5 * (w @ x)).tolist()         # the first pixel: 5 x the largest
