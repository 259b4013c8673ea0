"""Test helper: the cocotb test of the whole board top's Verilog: a bit-level UART on the
serial lines plays the host; for an engine whose weights live in SPRAM or in bulk memory, the
cocotb flash model (``sim/spi_flash_model.py``) holds the flash image at 1 MiB (on all four IO
lines when the flash itself is the bulk memory). Run by
``board_helpers.run_board_tb``.

Without a PLL the testbench drives ``clk`` and ``rst``. With one (the job's ``pll_out``
names the PLL cell's output port) it drives only the oscillator ``osc``: the design's clock
is the PLL model's output (``boards/pll_sim.v``) and its reset the lock, so the testbench
counts cycles of that clock, measures its period and notes when the PLL locked.

An engine with its maps in SPRAM (the job's ``power_up`` names the cells' memories) reads
map lanes it never wrote (times a zero weight): as on the chip, where SPRAM powers up
holding arbitrary values, the cells are filled with pseudo-random ones at time 0 (yosys's
model leaves them undefined, and an undefined lane would make the sum undefined), as the
simulation wrapper does (``sim/harness.py``).

The host sends ``P`` right after reset (with a PLL: right after the lock), while the weights
are still loading, waits for the info reply (it must come only after the load), then sends
the images and collects the replies. Everything it saw, with the clock cycle of each event,
goes to the job's result file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge
from cocotb.utils import get_sim_time

from cocotb_drivers import job_from_env
from dynfix.sim.spi_flash_model import SPIFlashModel


class Cycles:
    """Counts rising clock edges since the start (the testbench's time base)."""

    def __init__(self, clk):
        self.n = 0
        self._clk = clk

    async def run(self):
        while True:
            await RisingEdge(self._clk)
            self.n += 1


async def uart_send(dut, clk, data: bytes, div: int) -> None:
    """8N1, LSB first, ``div`` clock cycles per bit, changed at falling edges."""
    for byte in data:
        for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
            dut.uart_rx.value = bit
            await ClockCycles(clk, div, rising=False)


async def uart_listen(dut, clk, div: int, got: list, clock: Cycles) -> None:
    """Receive every byte the board sends: ``(byte, cycle of its start bit)`` into ``got``."""
    while True:
        await FallingEdge(dut.uart_tx)
        start = clock.n
        await ClockCycles(clk, div + div // 2)           # the middle of bit 0
        byte = 0
        for i in range(8):
            byte |= int(dut.uart_tx.value) << i
            await ClockCycles(clk, div)
        got.append((byte, start))                       # now in the stop bit


async def wait_bytes(clk, got: list, n: int, limit: int) -> bool:
    for _ in range(limit):
        if len(got) >= n:
            return True
        await RisingEdge(clk)
    return len(got) >= n


async def pll_locked(dut, clk, res: dict, clock: Cycles) -> None:
    """Wait for the PLL's lock; note its cycle and the oscillator cycles to it, and (in the
    background) the design clock's period measured over 100 cycles."""
    osc = Cycles(dut.osc)
    cocotb.start_soon(osc.run())
    await RisingEdge(dut.clock.lock)
    res["lock_osc_cycles"] = osc.n
    res["lock_at"] = clock.n

    async def measure():
        await RisingEdge(clk)
        t0 = get_sim_time("ps")
        await ClockCycles(clk, 100)
        res["period_ps"] = (get_sim_time("ps") - t0) / 100
    cocotb.start_soon(measure())


def power_up(dut, paths: list[str], words: int, seed: int = 1) -> None:
    """Fill the first ``words`` words of the memories at ``paths`` (dotted, below ``dut``)
    with pseudo-random ones."""
    rng = random.Random(seed)
    for path in paths:
        mem = dut
        for name in path.split("."):
            mem = getattr(mem, name)
        bits = len(mem[0])
        for i in range(min(words, len(mem))):
            mem[i].value = rng.getrandbits(bits)


@cocotb.test()
async def boot_load_and_infer(dut):
    job = job_from_env()
    div = job["divisor"]
    pll = bool(job.get("pll_out"))
    flashed = "image" in job
    res = {"replies": [], "info": None, "loaded_at": None, "error_at": None, "leds": None}
    dut.uart_rx.value = 1
    power_up(dut, job.get("power_up", []), job.get("power_up_words", 0))
    if pll:
        Clock(dut.osc, job["osc_period_ps"], unit="ps").start()
        clk = getattr(dut.clock.pll, job["pll_out"])
    else:
        dut.rst.value = 1
        Clock(dut.clk, job["period_ps"], unit="ps").start()
        clk = dut.clk
    clock = Cycles(clk)
    cocotb.start_soon(clock.run())
    if flashed:
        if job.get("quad"):     # the flash as the bulk memory, on all four IO lines
            lines = dict(dq_o=dut.flash_dq_o, dq_oe=dut.flash_dq_oe, dq_i=dut.flash_dq_i)
        else:
            lines = dict(copi=dut.flash_copi, cipo=dut.flash_cipo)
        flash = SPIFlashModel(cs_n=dut.flash_cs_n, sck=dut.flash_sck, **lines,
                              image=bytes(job["image"]), base=job["base"])
        flash.start()

        async def first_select():
            await FallingEdge(dut.flash_cs_n)
            res["cs_low_at"] = clock.n
        cocotb.start_soon(first_select())
    got: list = []
    cocotb.start_soon(uart_listen(dut, clk, div, got, clock))
    if pll:
        await pll_locked(dut, clk, res, clock)
    else:
        await ClockCycles(clk, 3)
        await FallingEdge(clk)
        dut.rst.value = 0

    async def watch():
        while res["loaded_at"] is None or res["error_at"] is None:
            await RisingEdge(clk)
            if res["loaded_at"] is None and int(dut.loaded.value):
                res["loaded_at"] = clock.n
            if res["error_at"] is None and int(dut.load_error.value):
                res["error_at"] = clock.n
    cocotb.start_soon(watch())

    # P while the weights load: held by the board until they are in.
    res["p_sent_at"] = clock.n
    await uart_send(dut, clk, b"P", div)
    if await wait_bytes(clk, got, job["info_len"], job["load_cycles"]):
        res["info"] = [b for b, _ in got[:job["info_len"]]]
        res["info_at"] = got[0][1]
        del got[:job["info_len"]]
        for request in job["requests"]:
            await uart_send(dut, clk, bytes(request), div)
            if not await wait_bytes(clk, got, job["reply_len"], job["run_cycles"]):
                break
            res["replies"].append([b for b, _ in got[:job["reply_len"]]])
            del got[:job["reply_len"]]
    await ClockCycles(clk, 10)
    res["leds"] = [int(dut.led_busy.value), int(dut.led_done.value)]
    res["stray"] = [b for b, _ in got]
    res.update(loaded=int(dut.loaded.value), load_error=int(dut.load_error.value),
               cycles=clock.n)
    if flashed:
        res.update(cs_n=int(dut.flash_cs_n.value), commands=[list(c) for c in flash.commands],
                   flash_errors=flash.errors, bytes_out=flash.bytes_out,
                   first_select_at=res.pop("cs_low_at", None))
    Path(job["result"]).write_text(json.dumps(res))
