"""cocotb test of the bulk host (:mod:`dynfix.sim.harness`): batches of images per step.

Run by :meth:`dynfix.sim.simulators.Simulator.run`; the job comes as JSON through
``DYNFIX_TB_JOB``: ``{"steps": [{"files": {name: path}, "reload": mask, "images": n,
"in_len", "out_len", "n_layers"}], "data_bits", "stat_words", "result", "progress"}``. For
each step the listed files are copied to their fixed names in the working folder, ``reload``
makes the simulator read them, ``go`` runs ``images`` images, and ``dump`` writes the outputs
and counters back; then a line is appended to the ``progress`` file (the parent polls it).
Python wakes up a handful of times per step; the clock (cocotb's GPI clock, no Python per
edge) runs freely in between.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from dynfix.sim.harness import read_hex

PERIOD_NS = 10


async def pulse(dut, name: str, value: int = 1) -> None:
    """Drive ``name`` to ``value`` for one clock cycle (set and cleared on falling edges)."""
    await FallingEdge(dut.clk)
    getattr(dut, name).value = value
    await FallingEdge(dut.clk)
    getattr(dut, name).value = 0


async def reset(dut, cycles: int = 4) -> None:
    """Drive every input at time zero, start the clock and hold reset for ``cycles``."""
    for name in ("reload", "go", "n_images", "dump", "in_len", "out_len", "n_layers"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    Clock(dut.clk, PERIOD_NS, unit="ns", impl="gpi").start()
    await ClockCycles(dut.clk, cycles)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


async def run_step(dut, step: dict, job: dict) -> dict:
    """Load the step's files, run its images, read outputs and counters back."""
    cwd = Path.cwd()
    for name, src in step.get("files", {}).items():
        shutil.copyfile(src, cwd / name)
    if step.get("reload"):
        await pulse(dut, "reload", step["reload"])
    n = int(step["images"])
    out_len, sw = int(step["out_len"]), job["stat_words"]
    dut.n_images.value = n
    dut.in_len.value = int(step["in_len"])
    dut.out_len.value = out_len
    dut.n_layers.value = int(step["n_layers"])
    t0, c0, tick0 = time.perf_counter(), time.process_time(), int(dut.ticks.value)
    await pulse(dut, "go")
    if not dut.finished.value:
        await RisingEdge(dut.finished)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0      # the simulator process's CPU (cocotb runs in it)
    ticks = int(dut.ticks.value) - tick0
    await pulse(dut, "dump")
    await FallingEdge(dut.clk)
    outs = read_hex((cwd / "outputs.hex").read_text(), job["data_bits"], signed=True,
                    count=n * out_len)
    stats = read_hex((cwd / "stats.hex").read_text(), 32, signed=False, count=n * sw,
                     strict=False)              # words past n_layers stay undefined
    images = []
    for k in range(n):
        st = stats[k * sw:k * sw + 2 + step["n_layers"]]
        if None in st:
            raise ValueError(f"image {k}: counters were not written: {st}")
        images.append({"outputs": outs[k * out_len:(k + 1) * out_len], "cycles": st[0],
                       "host_cycles": st[1], "layer_cycles": st[2:]})
    return {"images": images, "sim_cycles": ticks, "seconds": seconds, "cpu_seconds": cpu}


@cocotb.test()
async def run_batches(dut):
    job = json.loads(Path(os.environ["DYNFIX_TB_JOB"]).read_text())
    await reset(dut)
    results = []
    for step in job["steps"]:
        results.append(await run_step(dut, step, job))
        if job.get("progress"):             # one line per finished step, for the parent
            with open(job["progress"], "a") as f:
                f.write(f"{len(results)}\n")
    Path(job["result"]).write_text(json.dumps(results))
