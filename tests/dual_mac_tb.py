"""Test helper: the cocotb test of a bank of :class:`dynfix.hw.ice40_dual_mac.DualMul` cells
(``test_ice40_dual_mac.DualMulBank``'s Verilog with yosys's SB_MAC16 model): every operand
pair in every half, checked against Python's products; run by
``test_ice40_dual_mac.run_bank``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

from dual_mac_vectors import bank_vectors, pack, unpack


@cocotb.test()
async def every_pair(dut):
    job = json.loads(Path(os.environ["DYNFIX_TB_JOB"]).read_text())
    a_bits, b_bits, cells, latency = job["a_bits"], job["b_bits"], job["cells"], job["latency"]
    a, b = bank_vectors(a_bits, b_bits, cells)
    p_bits = a_bits + b_bits
    Clock(dut.clk, 10, unit="ns").start()
    dut.a.value, dut.b.value, dut.rst.value = 0, 0, 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    checked, wrong = 0, []
    # Inputs change on the falling edge; the products of step t are there LATENCY rising
    # edges later, read on the falling edge of step t + LATENCY.
    for t in range(len(a) + latency):
        await FallingEdge(dut.clk)
        if t >= latency:
            got = unpack(int(dut.p.value.to_unsigned()), p_bits, 2 * cells)
            for slot, value in enumerate(got):
                want = a[t - latency][slot] * b[t - latency][slot]
                checked += 1
                if value != want and len(wrong) < 5:
                    wrong.append([a[t - latency][slot], b[t - latency][slot], value, slot])
        if t < len(a):
            dut.a.value = pack(a[t], a_bits)
            dut.b.value = pack(b[t], b_bits)
    Path(job["result"]).write_text(json.dumps({"checked": checked, "wrong": wrong}))
