"""Test helper: the cocotb test of an :class:`dynfix.hw.ice40_spram.SPRAM`'s Verilog (its
SB_SPRAM256KA instances under yosys's cell model): the reads of
:func:`spram_vectors.spram_ops` against the Python model; run by
``test_ice40_spram.test_cells_against_yosys_model``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

from spram_vectors import spram_ops


@cocotb.test()
async def reads_and_writes(dut):
    job = json.loads(Path(os.environ["DYNFIX_TB_JOB"]).read_text())
    ops = spram_ops(job["depth"], job["width"])
    Clock(dut.clk, 10, unit="ns").start()
    dut.addr.value, dut.w_en.value, dut.w_data.value, dut.w_mask.value = 0, 0, 0, 0
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    checked, wrong, pending = 0, [], None
    # Inputs change on the falling edge; a read's word is there after the next rising edge.
    for op in ops + [None]:
        await FallingEdge(dut.clk)
        if pending is not None:
            got = dut.r_data.value
            value = int(got.to_unsigned()) if got.is_resolvable else None
            checked += 1
            if value != pending["want"] and len(wrong) < 5:
                wrong.append([pending["addr"], pending["want"], value])
        pending = op if op is not None and not op["w_en"] else None
        if op is not None:
            for name in ("addr", "w_en", "w_data", "w_mask"):
                getattr(dut, name).value = op[name]
    Path(job["result"]).write_text(json.dumps({"checked": checked, "wrong": wrong}))
