"""Test helper: the cocotb tests of the AXI4 subordinate over SPRAM (``hw/spram_axi.py``) on
its generated Verilog with yosys's SB_SPRAM256KA model, run by
``tests/sim/test_spram_axi_cells.py``, one test per top:

* ``bulk_roundtrip`` (a BulkWriter and a BulkReader on a SpramAxi): stage by stage, the
  stage's write requests and read requests run at the same time (on different words), the
  words to write offered with a random ``valid`` and the words read taken with a random
  ``ready``; each request waits for the block's ``done``.
* ``byte_strobes`` (a SpramAxi alone behind ``s_axi_*``): cocotbext-axi's ``AxiMaster``
  runs the job's byte-addressed writes and reads one after another (unaligned starts and
  lengths give partial strobes), with seeded random pauses on all five channels.

The job (``DYNFIX_TB_JOB``) gives the operations and the words; the result is what was seen,
which the pytest side compares with its own reference. Inputs change on the falling edge and
handshakes are read before the next rising one (``ReadOnly``)."""

from __future__ import annotations

import json
import os
import random
import warnings
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

# cocotbext-axi still uses calls that cocotb 2 deprecates; they work, and are not ours to fix.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.axi")

from cocotbext.axi import AxiBus, AxiMaster  # noqa: E402  (after the filter)


def load_job() -> dict:
    return json.loads(Path(os.environ["DYNFIX_TB_JOB"]).read_text())


async def start(dut, inputs: list[str]) -> None:
    """Clock, every input in ``inputs`` zero, reset held for four cycles."""
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    for name in inputs:
        getattr(dut, name).value = 0
    for _ in range(4):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


async def requests(dut, side: str, todo: list[list[int]], addr_bits: int) -> list[int]:
    """Hand each ``(addr, count)`` of ``todo`` to ``side`` ("rd" or "wr") once it is ready
    and wait for its ``done``; returns the ``error`` of each."""
    valid, ready = getattr(dut, f"{side}_req__valid"), getattr(dut, f"{side}_req__ready")
    done, error = getattr(dut, f"{side}_done"), getattr(dut, f"{side}_error")
    errors = []
    for addr, count in todo:
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
        while True:                 # done of the request before was cleared when taken
            await ReadOnly()
            if int(done.value):
                errors.append(int(error.value))
                break
            await FallingEdge(dut.clk)
    return errors


async def consume(dut, total: int, rng: random.Random, p: float, words: list[int]) -> None:
    while len(words) < total:
        await FallingEdge(dut.clk)
        ready = rng.random() < p
        dut.rd__ready.value = ready
        await ReadOnly()
        if ready and int(dut.rd__valid.value):
            words.append(int(dut.rd__payload.value))
    await FallingEdge(dut.clk)
    dut.rd__ready.value = 0


async def produce(dut, stream: list[int], rng: random.Random, p: float) -> None:
    i, presenting = 0, False
    while i < len(stream):
        await FallingEdge(dut.clk)
        presenting = presenting or rng.random() < p
        dut.wr__valid.value = presenting
        dut.wr__payload.value = stream[i]
        await ReadOnly()
        if presenting and int(dut.wr__ready.value):
            i, presenting = i + 1, False
    await FallingEdge(dut.clk)
    dut.wr__valid.value = 0


async def count_cycles(dut, box: list[int]) -> None:
    while True:
        await RisingEdge(dut.clk)
        box[0] += 1


@cocotb.test(timeout_time=500, timeout_unit="us")   # 50k cycles: far more than the run needs
async def bulk_roundtrip(dut):
    job = load_job()
    rng = random.Random(job["seed"])
    await start(dut, ["rd_req__valid", "rd_req__payload", "wr_req__valid", "wr_req__payload",
                      "rd__ready", "wr__valid", "wr__payload"])
    cycles = [0]
    cocotb.start_soon(count_cycles(dut, cycles))
    words = iter(job["words"])
    out: dict = {"read_words": [], "read_errors": [], "write_errors": []}
    for writes, reads in job["stages"]:
        stream = [next(words) for _ in range(sum(c for _, c in writes))]
        got: list[int] = []
        consumer = cocotb.start_soon(consume(dut, sum(c for _, c in reads),
                                             random.Random(rng.random()), job["ready"], got))
        producer = cocotb.start_soon(produce(dut, stream, random.Random(rng.random()),
                                             job["offer"]))
        w_task = cocotb.start_soon(requests(dut, "wr", writes, job["addr_bits"]))
        r_task = cocotb.start_soon(requests(dut, "rd", reads, job["addr_bits"]))
        out["write_errors"] += await w_task
        out["read_errors"] += await r_task
        await consumer
        await producer
        at = 0
        for _, c in reads:
            out["read_words"].append(got[at:at + c])
            at += c
    out["cycles"] = cycles[0]
    out["busy"] = [int(dut.rd_busy.value), int(dut.wr_busy.value)]
    Path(job["result"]).write_text(json.dumps(out))


def pauses(rng: random.Random, p: float):
    """A pause generator for cocotbext-axi: paused with probability ``p`` each cycle."""
    while True:
        yield rng.random() < p


@cocotb.test(timeout_time=500, timeout_unit="us")
async def byte_strobes(dut):
    job = load_job()
    rng = random.Random(job["seed"])
    master = AxiMaster(AxiBus.from_prefix(dut, "s_axi"), dut.clk, dut.rst)
    for channel in (master.write_if.aw_channel, master.write_if.w_channel,
                    master.write_if.b_channel, master.read_if.ar_channel,
                    master.read_if.r_channel):
        channel.set_pause_generator(pauses(random.Random(rng.random()), job["pause"]))
    await start(dut, [])
    cycles = [0]
    cocotb.start_soon(count_cycles(dut, cycles))
    seen = []
    for op in job["ops"]:
        if op[0] == "w":
            resp = await master.write(op[1], bytes.fromhex(op[2]))
            seen.append(["w", int(resp.resp)])
        else:
            resp = await master.read(op[1], op[2])
            seen.append(["r", int(resp.resp), resp.data.hex()])
    Path(job["result"]).write_text(json.dumps({"seen": seen, "cycles": cycles[0]}))
