"""Test helper: the cocotb test of :class:`dynfix.boards.spi_flash_reader.SPIFlashReader`'s
Verilog against :class:`dynfix.sim.spi_flash_model.SPIFlashModel` at the board's 12 MHz
clock, taking bytes under random backpressure; run by
``test_spi_flash_reader.run_reader_tb``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

from cocotb_drivers import job_from_env
from dynfix.sim.spi_flash_model import SPIFlashModel


@cocotb.test()
async def reads_image(dut):
    job = job_from_env()
    rng = random.Random(job["seed"])
    dut.start.value, dut.o__ready.value, dut.rst.value = 0, 0, 1
    Clock(dut.clk, job["period_ps"], unit="ps").start()
    flash = SPIFlashModel(cs_n=dut.cs_n, sck=dut.sck, copi=dut.copi, cipo=dut.cipo,
                          image=bytes(job["image"]), base=job["base"])
    flash.start()
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    dut.start.value = 1
    await FallingEdge(dut.clk)
    dut.start.value = 0
    data = []
    for _ in range(job["max_cycles"]):
        # valid and payload are registers: stable here; a byte offered with ready high
        # transfers at the next rising edge.
        ready = rng.random() < job["ready_p"]
        dut.o__ready.value = int(ready)
        if ready and int(dut.o__valid.value):
            data.append(int(dut.o__payload.value))
        await FallingEdge(dut.clk)
        if int(dut.done.value):
            break
    await ClockCycles(dut.clk, 4)
    Path(job["result"]).write_text(json.dumps({
        "data": data, "done": int(dut.done.value), "error": int(dut.error.value), "cs_n": int(dut.cs_n.value),
        "commands": [list(c) for c in flash.commands], "ignored": len(flash.ignored),
        "errors": flash.errors}))
