"""Test helper: the cocotb test of the whole board top's Verilog for an engine whose weights
live in SPRAM: the cocotb flash model (``sim/spi_flash_model.py``) holds the flash image at
1 MiB, a bit-level UART on the serial lines plays the host. Run by
``test_boards_flash.run_board_tb``.

The host sends ``P`` right after reset, while the weights are still loading, waits for the
info reply (it must come only after the load), then sends the images and collects the
replies. Everything it saw, with the clock cycle of each event, goes to the job's result
file.
"""

from __future__ import annotations

import json
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

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


async def uart_send(dut, data: bytes, div: int) -> None:
    """8N1, LSB first, ``div`` clock cycles per bit, changed at falling edges."""
    for byte in data:
        for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
            dut.uart_rx.value = bit
            await ClockCycles(dut.clk, div, rising=False)


async def uart_listen(dut, div: int, got: list, clock: Cycles) -> None:
    """Receive every byte the board sends: ``(byte, cycle of its start bit)`` into ``got``."""
    while True:
        await FallingEdge(dut.uart_tx)
        start = clock.n
        await ClockCycles(dut.clk, div + div // 2)       # the middle of bit 0
        byte = 0
        for i in range(8):
            byte |= int(dut.uart_tx.value) << i
            await ClockCycles(dut.clk, div)
        got.append((byte, start))                       # now in the stop bit


async def wait_bytes(dut, got: list, n: int, limit: int) -> bool:
    for _ in range(limit):
        if len(got) >= n:
            return True
        await RisingEdge(dut.clk)
    return len(got) >= n


@cocotb.test()
async def boot_load_and_infer(dut):
    job = job_from_env()
    div = job["divisor"]
    dut.uart_rx.value, dut.rst.value = 1, 1
    Clock(dut.clk, job["period_ps"], unit="ps").start()
    clock = Cycles(dut.clk)
    cocotb.start_soon(clock.run())
    flash = SPIFlashModel(cs_n=dut.flash_cs_n, sck=dut.flash_sck, copi=dut.flash_copi,
                          cipo=dut.flash_cipo, image=bytes(job["image"]), base=job["base"])
    flash.start()
    got: list = []
    cocotb.start_soon(uart_listen(dut, div, got, clock))
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    res = {"replies": [], "info": None, "loaded_at": None, "error_at": None, "leds": None}

    async def watch():
        while res["loaded_at"] is None or res["error_at"] is None:
            await RisingEdge(dut.clk)
            if res["loaded_at"] is None and int(dut.loaded.value):
                res["loaded_at"] = clock.n
            if res["error_at"] is None and int(dut.load_error.value):
                res["error_at"] = clock.n
    cocotb.start_soon(watch())

    # P while the weights load: held by the board until they are in.
    res["p_sent_at"] = clock.n
    await uart_send(dut, b"P", div)
    if await wait_bytes(dut, got, job["info_len"], job["load_cycles"]):
        res["info"] = [b for b, _ in got[:job["info_len"]]]
        res["info_at"] = got[0][1]
        del got[:job["info_len"]]
        for request in job["requests"]:
            await uart_send(dut, bytes(request), div)
            if not await wait_bytes(dut, got, job["reply_len"], job["run_cycles"]):
                break
            res["replies"].append([b for b, _ in got[:job["reply_len"]]])
            del got[:job["reply_len"]]
    await ClockCycles(dut.clk, 10)
    res["leds"] = [int(dut.led_busy.value), int(dut.led_done.value)]
    res["stray"] = [b for b, _ in got]
    res.update(loaded=int(dut.loaded.value), load_error=int(dut.load_error.value),
               cs_n=int(dut.flash_cs_n.value), commands=[list(c) for c in flash.commands],
               flash_errors=flash.errors, bytes_out=flash.bytes_out, cycles=clock.n)
    Path(job["result"]).write_text(json.dumps(res))
