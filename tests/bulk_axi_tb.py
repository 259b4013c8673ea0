"""Test helper: the cocotb test of the AXI4 bulk masters on their generated Verilog, run by
``tests/sim/test_bulk_axi.py``: a BulkReader and a BulkWriter behind one ``m_axi_*`` port,
cocotbext-axi's ``AxiRam`` as the memory with seeded random pauses on all five channels.

The job (``DYNFIX_TB_JOB``) gives the memory image, the read and write requests and the words
to write. Reads and writes run at the same time (on separate address ranges): each request
is driven when the block is idle and waited for (``done``), the read words are taken with a
random ``ready`` and the words to write offered with a random ``valid``. A monitor records
every AR and AW burst, the ``wlast`` of every W beat and the write responses. The result
holds what was seen, the memory afterwards and the flags; ``test_bulk_axi`` compares. Inputs
change on the falling edge and handshakes are read before the next rising one
(``ReadOnly``)."""

from __future__ import annotations

import json
import os
import random
import warnings
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

# cocotbext-axi (written for cocotb 1.x and 2.x) still uses calls that cocotb 2 deprecates;
# they work, and are not ours to fix.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")

from cocotbext.axi import AxiBus, AxiRam  # noqa: E402  (after the filter)


def pauses(rng: random.Random, p: float):
    """A pause generator for cocotbext-axi: paused with probability ``p`` each cycle."""
    while True:
        yield rng.random() < p


async def request(dut, side: str, addr: int, count: int, addr_bits: int) -> int:
    """Hand ``(addr, count)`` to ``side`` ("rd" or "wr") once it is ready, wait for its
    ``done``; returns its ``error``."""
    valid, ready = getattr(dut, f"{side}_req__valid"), getattr(dut, f"{side}_req__ready")
    done, error = getattr(dut, f"{side}_done"), getattr(dut, f"{side}_error")
    await FallingEdge(dut.clk)
    getattr(dut, f"{side}_req__payload").value = addr | count << addr_bits
    valid.value = 1
    while True:
        await ReadOnly()
        taken = int(ready.value)
        await FallingEdge(dut.clk)
        if taken:
            break
    valid.value = 0
    while True:
        await ReadOnly()
        if int(done.value):
            return int(error.value)
        await FallingEdge(dut.clk)


async def reads(dut, job: dict, rng: random.Random, out: dict) -> None:
    words: list[int] = []

    async def consume(total: int) -> None:
        while len(words) < total:
            await FallingEdge(dut.clk)
            ready = rng.random() < job["ready"]
            dut.rd__ready.value = ready
            await ReadOnly()
            if ready and int(dut.rd__valid.value):
                words.append(int(dut.rd__payload.value))

    consumer = cocotb.start_soon(consume(sum(c for _, c in job["reads"])))
    out["read_errors"] = [await request(dut, "rd", a, c, job["addr_bits"])
                          for a, c in job["reads"]]
    await consumer
    out["read_words"] = words


async def writes(dut, job: dict, rng: random.Random, out: dict) -> None:
    stream = job["write_words"]

    async def produce() -> None:
        i, presenting = 0, False
        while i < len(stream):
            await FallingEdge(dut.clk)
            presenting = presenting or rng.random() < job["offer"]
            dut.wr__valid.value = presenting
            dut.wr__payload.value = stream[i]
            await ReadOnly()
            if presenting and int(dut.wr__ready.value):
                i, presenting = i + 1, False
        await FallingEdge(dut.clk)
        dut.wr__valid.value = 0

    producer = cocotb.start_soon(produce())
    out["write_errors"] = [await request(dut, "wr", a, c, job["addr_bits"])
                           for a, c in job["writes"]]
    await producer


async def monitor(dut, seen: dict) -> None:
    """Records the handshakes of each cycle, and when the writer's ``done`` rises, the AW
    bursts and write responses taken before the edge it rose at."""
    done = 0
    while True:
        await FallingEdge(dut.clk)
        await ReadOnly()
        seen["cycles"] += 1
        if int(dut.wr_done.value) and not done:
            seen["write_done"].append([len(seen["aw"]), seen["b"]])
        done = int(dut.wr_done.value)
        if int(dut.m_axi_arvalid.value) and int(dut.m_axi_arready.value):
            seen["ar"].append([int(dut.m_axi_araddr.value), int(dut.m_axi_arlen.value),
                               int(dut.m_axi_arsize.value), int(dut.m_axi_arburst.value)])
        if int(dut.m_axi_awvalid.value) and int(dut.m_axi_awready.value):
            seen["aw"].append([int(dut.m_axi_awaddr.value), int(dut.m_axi_awlen.value),
                               int(dut.m_axi_awsize.value), int(dut.m_axi_awburst.value)])
        if int(dut.m_axi_wvalid.value) and int(dut.m_axi_wready.value):
            seen["wlast"].append(int(dut.m_axi_wlast.value))
            seen["wstrb"].add(int(dut.m_axi_wstrb.value))
        if int(dut.m_axi_bvalid.value) and int(dut.m_axi_bready.value):
            seen["b"] += 1


@cocotb.test(timeout_time=1, timeout_unit="ms")     # 100k cycles: far more than the run needs
async def bulk_axi(dut):
    job = json.loads(Path(os.environ["DYNFIX_TB_JOB"]).read_text())
    rng = random.Random(job["seed"])
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    for side in ("rd", "wr"):
        getattr(dut, f"{side}_req__valid").value = 0
        getattr(dut, f"{side}_req__payload").value = 0
    dut.rd__ready.value = 0
    dut.wr__valid.value = 0
    dut.wr__payload.value = 0
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=job["size"])
    ram.write(0, bytes.fromhex(job["image"]))
    for channel in (ram.read_if.ar_channel, ram.read_if.r_channel, ram.write_if.aw_channel,
                    ram.write_if.w_channel, ram.write_if.b_channel):
        channel.set_pause_generator(pauses(random.Random(rng.random()), job["pause"]))
    for _ in range(4):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    seen = {"cycles": 0, "ar": [], "aw": [], "wlast": [], "wstrb": set(), "b": 0,
            "write_done": []}
    cocotb.start_soon(monitor(dut, seen))
    out: dict = {}
    read_task = cocotb.start_soon(reads(dut, job, random.Random(rng.random()), out))
    write_task = cocotb.start_soon(writes(dut, job, random.Random(rng.random()), out))
    await read_task
    await write_task
    for _ in range(10):                                 # the last B, then quiet
        await FallingEdge(dut.clk)
    lo, hi = job["write_span"]
    out.update(seen, wstrb=sorted(seen["wstrb"]), memory=ram.read(lo, hi - lo).hex(),
               busy=[int(dut.rd_busy.value), int(dut.wr_busy.value)])
    Path(job["result"]).write_text(json.dumps(out))
