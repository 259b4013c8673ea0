"""Test helper: the one cocotb test of a bank of multiplier cells, whatever the cells (ECP5
MULT18X18D products with dynfix's model, ``mul_helpers.Ecp5MulBank``; packed pairs,
``test_ecp5_packed_mul``; iCE40 SB_MAC16 pairs with yosys's model,
``test_ice40_dual_mac.DualMulBank``): drives the job's operand vectors, one per cycle, and
records the products seen every cycle. The checks (values and exact latency) are the
tests', ``mul_helpers.check_outputs``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

from dual_mac_vectors import pack, unpack


@cocotb.test()
async def products(dut):
    job = json.loads(Path(os.environ["DYNFIX_TB_JOB"]).read_text())
    a_bits, b_bits, extra = job["a_bits"], job["b_bits"], job["extra_cycles"]
    a, b = job["a"], job["b"]
    outputs = job.get("outputs", len(a[0]))     # products per cycle (two per packed cell)
    Clock(dut.clk, 10, unit="ns").start()
    dut.a.value, dut.b.value, dut.rst.value = 0, 0, 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    # Inputs change on the falling edge t; out[t] is read on that edge just before, so the
    # products of the inputs set at edge t appear in out[t + latency].
    out = []
    for t in range(len(a) + extra):
        await FallingEdge(dut.clk)
        out.append(unpack(int(dut.p.value.to_unsigned()), a_bits + b_bits, outputs))
        if t < len(a):
            dut.a.value = pack(a[t], a_bits)
            dut.b.value = pack(b[t], b_bits)
    Path(job["result"]).write_text(json.dumps({"out": out}))
