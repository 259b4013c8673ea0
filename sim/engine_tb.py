"""cocotb testbench of the generated engine: stream images in, logits and cycle counts out.

Run by :func:`dynfix.sim.runner.run_engine`; the job (images, output length, layer count,
result path) comes as JSON through ``DYNFIX_TB_JOB``. The clock runs freely: Python only
drives the input stream and wakes up on output edges.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge


async def send(dut, values: list[int]) -> None:
    """Stream ``values`` on ``i``; ready is sampled between edges (before the transfer)."""
    fall = FallingEdge(dut.clk)
    for v in values:
        await fall
        dut.i__payload.value = v
        dut.i__valid.value = 1
        while not dut.i__ready.value:
            await fall
    await fall
    dut.i__valid.value = 0


async def receive(dut, n: int) -> list[int]:
    """Take ``n`` values from ``o`` (always ready; each value is one rising edge of valid)."""
    out = []
    dut.o__ready.value = 1
    while len(out) < n:
        if not dut.o__valid.value:
            await RisingEdge(dut.o__valid)
        await ReadOnly()
        out.append(dut.o__payload.value.to_signed())
        await FallingEdge(dut.clk)      # still valid: the transfer is at the next edge
        await FallingEdge(dut.clk)      # taken
    return out


async def read_layer_cycles(dut, n_layers: int) -> list[int]:
    counts = []
    for layer in range(n_layers):
        await FallingEdge(dut.clk)
        dut.layer_sel.value = layer
        await ClockCycles(dut.clk, 1)
        await FallingEdge(dut.clk)
        counts.append(int(dut.layer_cycles.value))
    return counts


@cocotb.test()
async def run_images(dut):
    job = json.loads(Path(os.environ["DYNFIX_TB_JOB"]).read_text())
    for name in ("start", "i__valid", "i__payload", "o__ready", "layer_sel"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    Clock(dut.clk, 10, unit="ns", impl="gpi").start()
    await ClockCycles(dut.clk, 4)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    results = []
    for image in job["images"]:
        await FallingEdge(dut.clk)
        dut.start.value = 1
        await FallingEdge(dut.clk)
        dut.start.value = 0
        cocotb.start_soon(send(dut, image))
        if job.get("keep_outputs", True):
            outputs = await receive(dut, job["n_out"])
        else:
            outputs = []
            dut.o__ready.value = 1
        if not dut.done.value:
            await RisingEdge(dut.done)
        await FallingEdge(dut.clk)
        results.append({"outputs": outputs, "cycles": int(dut.cycles.value),
                        "layer_cycles": await read_layer_cycles(dut, job["n_layers"])})
    Path(job["result"]).write_text(json.dumps(results))
