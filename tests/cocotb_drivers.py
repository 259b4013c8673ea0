"""Test helper: cocotb drivers for the engine's host interface, driven from Python (the
*direct* path).

:class:`EngineHost` plays the host of a bare ``dynfix_engine``: reset, ``start``, stream an
image on ``i``, take the outputs on ``o``, wait for ``done``, and read ``cycles`` and every
layer's ``layer_cycles`` through ``layer_sel``. Python wakes up once per streamed value here,
which is fine for a few images and for checking the bare engine's handshakes; every run of
the engine on images goes through the bulk harness (:func:`dynfix.sim.simulate.simulate`).
:mod:`cocotb_driver_tb` runs this driver from :func:`run_direct` (both modules live in
``tests/``, which is on the pytest process's ``sys.path``; the cocotb runner hands that path to
the simulator's Python as ``PYTHONPATH``).

Handshakes are sampled on the falling edge, between the rising edges that transfer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from dynfix.errors import DynfixError
from dynfix.hw.generate import TOP_NAME

INPUTS = ("start", "i__valid", "i__payload", "o__ready", "layer_sel")


@dataclass
class ImageResult:
    outputs: list[int]
    cycles: int
    layer_cycles: list[int]


class EngineHost:
    """Host-interface driver of one ``dynfix_engine`` handle (``dut``)."""

    def __init__(self, dut, period_ns: int = 10):
        self.dut = dut
        self.period_ns = period_ns

    async def reset(self, cycles: int = 4) -> None:
        """Drive every input at time zero, start the clock, hold ``rst`` for ``cycles``."""
        from cocotb.clock import Clock
        from cocotb.triggers import ClockCycles, FallingEdge

        for name in INPUTS:
            getattr(self.dut, name).value = 0
        self.dut.rst.value = 1
        Clock(self.dut.clk, self.period_ns, unit="ns").start()
        await ClockCycles(self.dut.clk, cycles)
        await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0

    async def start(self) -> None:
        """One-cycle ``start`` pulse."""
        from cocotb.triggers import FallingEdge

        await FallingEdge(self.dut.clk)
        self.dut.start.value = 1
        await FallingEdge(self.dut.clk)
        self.dut.start.value = 0

    async def send(self, values: list[int]) -> None:
        """Stream ``values`` on ``i``: set on a falling edge, held until ``i__ready`` is seen
        high on a falling edge (the transfer is the rising edge after it)."""
        from cocotb.triggers import FallingEdge

        dut = self.dut
        await FallingEdge(dut.clk)
        for v in values:
            dut.i__payload.value = int(v)
            dut.i__valid.value = 1
            while True:
                ready = bool(dut.i__ready.value)
                await FallingEdge(dut.clk)
                if ready:
                    break
        dut.i__valid.value = 0

    async def receive(self, n: int) -> list[int]:
        """Take ``n`` values from ``o`` (``o__ready`` held high)."""
        from cocotb.triggers import FallingEdge, RisingEdge

        dut = self.dut
        dut.o__ready.value = 1
        out = []
        while len(out) < n:
            if not dut.o__valid.value:
                await RisingEdge(dut.o__valid)
            await FallingEdge(dut.clk)      # valid here: it transfers at the next rising edge
            out.append(dut.o__payload.value.to_signed())
            await FallingEdge(dut.clk)      # taken; valid is low again for at least a cycle
        return out

    async def wait_done(self) -> int:
        """Wait for ``done``; returns the falling edges waited."""
        from cocotb.triggers import FallingEdge

        waited = 0
        while not self.dut.done.value:
            await FallingEdge(self.dut.clk)
            waited += 1
        return waited

    async def layer_cycles(self, n_layers: int) -> list[int]:
        """Each layer's cycle count (``layer_cycles`` follows ``layer_sel`` one cycle later)."""
        from cocotb.triggers import FallingEdge

        counts = []
        for layer in range(n_layers):
            await FallingEdge(self.dut.clk)
            self.dut.layer_sel.value = layer
            await FallingEdge(self.dut.clk)
            await FallingEdge(self.dut.clk)
            counts.append(int(self.dut.layer_cycles.value))
        return counts

    async def run_image(self, values: list[int], n_out: int, n_layers: int) -> ImageResult:
        """One whole image: start, stream in, read out, counters."""
        import cocotb
        from cocotb.triggers import FallingEdge

        await self.start()
        sender = cocotb.start_soon(self.send(values))
        outputs = await self.receive(n_out)
        await sender
        await self.wait_done()
        await FallingEdge(self.dut.clk)
        return ImageResult(outputs, int(self.dut.cycles.value),
                           await self.layer_cycles(n_layers))


def run_direct(verilog: str | Path, images: list[list[int]], n_out: int, n_layers: int,
               build_dir: str | Path, sim: str = "icarus") -> list[dict]:
    """Simulate a bare engine with :class:`EngineHost` on each image (the direct path)."""
    from cocotb_tools.runner import get_runner

    from dynfix.hw.ice40_cells import SIM_DEFINES, sim_sources
    from dynfix.sim.simulators import check_available, job_files

    check_available(sim)
    build_dir = Path(build_dir).resolve()
    job, result = job_files(build_dir, {"images": [[int(v) for v in im] for im in images],
                                        "n_out": n_out, "n_layers": n_layers})
    cells = sim_sources(Path(verilog).read_text())        # SB_MAC16 of a dual_mac engine
    runner = get_runner(sim)
    runner.build(sources=[Path(verilog).resolve(), *cells], hdl_toplevel=TOP_NAME,
                 build_dir=build_dir, defines=SIM_DEFINES if cells else {},
                 timescale=("1ns", "1ps"), log_file=build_dir / "build.log")
    runner.test(hdl_toplevel=TOP_NAME, test_module="cocotb_driver_tb",
                build_dir=build_dir, test_dir=build_dir,
                extra_env={"DYNFIX_TB_JOB": str(job)}, log_file=build_dir / "sim.log")
    if not result.exists():
        raise DynfixError(f"simulation produced no result (see {build_dir / 'sim.log'})")
    return json.loads(result.read_text())


def job_from_env() -> dict:
    return json.loads(Path(os.environ["DYNFIX_TB_JOB"]).read_text())
