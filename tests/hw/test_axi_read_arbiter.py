"""Amaranth-simulator tests of the AXI4 read arbiter (``hw/axi_read_arbiter.py``).

Directed: two Python managers that always want to send an AR, a subordinate driven by hand:
the ARs are taken in turn and go out one cycle later, no more than ``outstanding`` are in
flight, and each R beat goes to its burst's owner, ``rready`` being the owner's. Random: two
BulkReaders reading different regions of one memory at once through the arbiter, against
the Python AXI4 subordinate of ``test_bulk_port.py`` (seeded random stalls on AR and R,
random latency, every AR checked against the burst rules and the handshake rule, at most
``outstanding`` bursts open) and consumers that stall at random; each reader's words are
checked against the memory on their own. Then the deadlock that the arbiter and the weight
ring's ``credit`` mode exist for: a ring and a reader share the port, and the ring's
consumer waits for the reader's words before it consumes any."""

from __future__ import annotations

import gc
import random
import re

import pytest
from amaranth.back import verilog
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring

from dynfix.hw.axi import BURST_INCR, RESP_OKAY, size_code
from dynfix.hw.axi_read_arbiter import AxiReadArbiter
from dynfix.hw.bulk_reader import BulkReader
from dynfix.hw.generate import ensure_yosys
from dynfix.hw.weight_ring import WeightRing

from sim_helpers import run_amaranth
from test_bulk_port import AxiMemory, Held, expected_read

#: Byte address bits and data width of the test bus (64 Ki words of 32 bits).
ADDR_WIDTH, DW = 18, 32
COUNT_BITS = 12
#: The cycle limit of one simulation: far more than any run needs.
MAX_CYCLES = 40_000


@pytest.mark.filterwarnings("ignore:.*created but never used")   # refused in __init__
@pytest.mark.parametrize("outstanding", [0, -1, 1.5, True])
def test_constructor_errors(outstanding):
    with pytest.raises(ValueError):
        AxiReadArbiter(ADDR_WIDTH, DW, outstanding=outstanding)
    gc.collect()                        # the refused arbiter's warning now, under the filter


def test_converts_to_verilog():
    ensure_yosys()
    text = verilog.convert(AxiReadArbiter(ADDR_WIDTH, DW, outstanding=4, id_width=2),
                           name="arb", emit_src=False)
    assert "module arb" in text
    for port in ("m0__arvalid", "m1__rready", "bus__araddr", "bus__rlast"):
        assert re.search(rf"\b{port}\b", text), port


# --- directed ---------------------------------------------------------------------------


def test_turns_latency_limit_and_routing():
    """Both managers want to send an AR every cycle and the subordinate is always ready:
    they are taken in turn (m1 first: m0 counts as taken last after reset), each out on
    ``bus`` the cycle after its handshake, until three (``outstanding``) are in flight;
    the fourth waits for a burst's ``rlast``. The R beats go to the owner of the oldest
    burst (``rvalid`` to it alone) and ``bus.rready`` is that owner's ``rready``."""
    dut = AxiReadArbiter(ADDR_WIDTH, DW, outstanding=3)
    ms, bus = (dut.m0, dut.m1), dut.bus
    ar = {0: (0x100, 3), 1: (0x2000, 1)}          # byte address, arlen, per manager
    log: list[tuple[int, int]] = []               # (cycle, manager) of each AR handshake
    out: list[tuple[int, int]] = []               # (cycle, araddr) of each bus AR
    routed: list[tuple[int, int]] = []            # (manager, rdata) of each R beat taken
    expect: list[tuple[int, int]] = []            # the same, as the ARs went out

    async def tb(ctx):
        for i, m in enumerate(ms):
            ctx.set(m.arvalid, 1)
            ctx.set(m.araddr, ar[i][0])
            ctx.set(m.arlen, ar[i][1])
            ctx.set(m.arsize, size_code(DW))
            ctx.set(m.arburst, BURST_INCR)
        ctx.set(bus.arready, 1)
        # The bursts of the first three ARs on R in their order, beats numbered, from
        # cycle 12 (none for the later ones).
        beats: list[tuple[int, int]] = []          # (rdata, rlast) still to send
        for cycle in range(60):
            if cycle == 12:
                for j, (_, a) in enumerate(out):
                    owner = 0 if a == ar[0][0] else 1
                    n = ar[owner][1] + 1
                    beats += [(100 * j + b, int(b == n - 1)) for b in range(n)]
                    expect.extend((owner, 100 * j + b) for b in range(n))
            ready = [cycle % 3 != 0, cycle % 2 == 0]      # the managers' rready patterns
            for m, r in zip(ms, ready):
                ctx.set(m.rready, r)
            if beats:
                ctx.set(bus.rvalid, 1)
                ctx.set(bus.rdata, beats[0][0])
                ctx.set(bus.rlast, beats[0][1])
                ctx.set(bus.rresp, RESP_OKAY)
            else:
                ctx.set(bus.rvalid, 0)
            valid = [ctx.get(m.rvalid) for m in ms]
            assert not (valid[0] and valid[1]), f"rvalid to both in cycle {cycle}"
            if beats:
                owner = 0 if ar[0][0] == out[0][1] else 1
                assert valid == [owner == 0, owner == 1], (cycle, valid, owner)
                assert ctx.get(bus.rready) == ready[owner], cycle
                for m in ms:
                    assert ctx.get(m.rdata) == beats[0][0]
                if ready[owner]:
                    routed.append((owner, beats[0][0]))
                    if beats.pop(0)[1]:
                        out.pop(0)
            for i, m in enumerate(ms):
                if ctx.get(m.arready) and ctx.get(m.arvalid):
                    log.append((cycle, i))
            if ctx.get(bus.arvalid):
                assert ctx.get(bus.arlen) == ar[0 if ctx.get(bus.araddr) == ar[0][0]
                                                else 1][1]
                out.append((cycle, ctx.get(bus.araddr)))
            await ctx.tick()
            if cycle == 30:                       # no more ARs from here on
                for m in ms:
                    ctx.set(m.arvalid, 0)

    run_amaranth(dut, tb)
    # Three in turn from cycle 0, then one per burst completed.
    assert log[:3] == [(0, 1), (1, 0), (2, 1)], log
    assert [i for _, i in log] == [1, 0, 1, 0, 1, 0, 1, 0][:len(log)]
    assert len(log) == 6 and all(c > 12 for c, _ in log[3:])
    # Every R beat went to the manager whose AR it answers, in order.
    assert routed == expect and [m for m, _ in expect] == [1, 1, 0, 0, 0, 0, 1, 1]


def test_ar_held_while_the_subordinate_stalls():
    """``bus.arvalid`` and the AR stay put while ``arready`` is low, and the managers are
    not ready meanwhile (the stage is full); the next AR is taken in the cycle the
    subordinate takes the one held."""
    dut = AxiReadArbiter(ADDR_WIDTH, DW, outstanding=4)
    seen: list[tuple[int, int, int, int]] = []     # (cycle, bus.arvalid, araddr, m0.arready)

    async def tb(ctx):
        ctx.set(dut.m0.arvalid, 1)
        ctx.set(dut.m0.araddr, 0x40)
        for cycle in range(8):
            ctx.set(dut.bus.arready, cycle in (4, 5))
            seen.append((cycle, ctx.get(dut.bus.arvalid), ctx.get(dut.bus.araddr),
                         ctx.get(dut.m0.arready)))
            if ctx.get(dut.m0.arready):
                await ctx.tick()
                ctx.set(dut.m0.araddr, ctx.get(dut.bus.araddr) + 0x40)
            else:
                await ctx.tick()

    run_amaranth(dut, tb)
    assert seen == [(0, 0, 0, 1), (1, 1, 0x40, 0), (2, 1, 0x40, 0), (3, 1, 0x40, 0),
                    (4, 1, 0x40, 1), (5, 1, 0x80, 1), (6, 1, 0xC0, 0), (7, 1, 0xC0, 0)]


# --- two readers through the arbiter ----------------------------------------------------


class ReaderPair(Elaboratable):
    """Two BulkReaders (``max_bursts``: their burst limits) on an arbiter of
    ``outstanding`` bursts; the arbiter's ``bus`` is the port to the memory."""

    def __init__(self, outstanding: int, max_bursts: tuple[int | None, int | None]):
        self.arb = AxiReadArbiter(ADDR_WIDTH, DW, outstanding=outstanding)
        self.readers = [BulkReader(ADDR_WIDTH, DW, COUNT_BITS, outstanding=2, max_burst=b)
                        for b in max_bursts]

    def elaborate(self, platform):
        m = Module()
        m.submodules.arb = self.arb
        for i, r in enumerate(self.readers):
            m.submodules[f"reader{i}"] = r
            wiring.connect(m, getattr(self.arb, f"m{i}"), r.bus)
        return m


class ReaderDriver:
    """Feeds one reader its requests in turn (a random idle gap before each), takes its
    words with a random ``o.ready`` (handshake rule checked) and keeps them per request."""

    def __init__(self, reader: BulkReader, requests: list[tuple[int, int]],
                 rng: random.Random, ready: float):
        self.r, self.requests, self.rng, self.ready = reader, requests, rng, ready
        self.got: list[list[int]] = []
        self.errors: list[int] = []
        self.state, self.wait = "gap", rng.randrange(20)
        self.held = Held("o")

    @property
    def finished(self) -> bool:
        return len(self.got) == len(self.requests)

    def step(self, ctx) -> None:
        """This cycle's inputs and checks, before the clock edge."""
        r = self.r
        ready = self.rng.random() < self.ready
        ctx.set(r.o.ready, ready)
        valid = ctx.get(r.o.valid)
        payload = ctx.get(r.o.payload) if valid else None
        if self.held.see(valid, ready, payload):
            assert self.state == "running", "a word outside a request"
            self.got[-1].append(payload)
        if self.state == "gap" and not self.finished:
            if self.wait:
                self.wait -= 1
            else:
                addr, count = self.requests[len(self.got)]
                ctx.set(r.req.payload.addr, addr)
                ctx.set(r.req.payload.count, count)
                ctx.set(r.req.valid, 1)
                self.state = "asking"
        if self.state == "asking" and ctx.get(r.req.ready):
            self.state = "taken"
            self.got.append([])
        elif self.state == "running" and ctx.get(r.done):
            assert not valid
            self.errors.append(ctx.get(r.error))
            self.state, self.wait = "gap", self.rng.randrange(20)

    def after(self, ctx) -> None:
        """After the clock edge."""
        if self.state == "taken":
            ctx.set(self.r.req.valid, 0)
            self.state = "running"


#: Requests of the two readers, in regions of their own: counts beyond 256, 4 KiB crossings
#: (1024 words of 32 bits), single words, nothing.
REQS = [
    [(0, 300), (1000, 60), (3 * 1024 - 3, 600), (7, 0), (4000, 1), (1024 - 256, 256)],
    [(20_000, 1), (16 * 1024 - 5, 400), (17_000, 256), (20_500, 700), (18_000, 3)],
]


@pytest.mark.parametrize("outstanding, max_bursts, seed", [
    (2, (None, None), 1), (4, (None, 16), 2), (1, (8, None), 3), (3, (4, 1), 4),
])
def test_two_readers_under_random_stalls(outstanding, max_bursts, seed):
    """Both readers run their requests at once, every channel stalls at random. Each
    reader gets exactly the memory's words of each of its requests, the ARs of both
    interleave on the bus and never more than ``outstanding`` bursts are open (the model
    asserts it; reached), only one reader sees ``rvalid`` at a time, and the bus is idle
    once both are done."""
    rng = random.Random(seed)
    dut = ReaderPair(outstanding, max_bursts)
    bus = dut.arb.bus
    mem = AxiMemory(bus, DW, rng, outstanding=outstanding, stall=0.4, latency=8)
    drivers = [ReaderDriver(r, reqs, rng, ready)
               for r, reqs, ready in zip(dut.readers, REQS, (0.7, 0.5))]

    async def tb(ctx):
        while not all(d.finished and d.state == "gap" for d in drivers):
            assert mem.cycle < MAX_CYCLES, "the readers hang"
            mem.drive(ctx)
            for d in drivers:
                d.step(ctx)
            assert not all(ctx.get(r.bus.rvalid) for r in dut.readers)
            mem.sample(ctx)
            await ctx.tick()
            for d in drivers:
                d.after(ctx)
        for _ in range(20):
            mem.drive(ctx)
            assert not ctx.get(bus.arvalid) and mem.r_beat is None and not mem.ar
            mem.sample(ctx)
            await ctx.tick()

    run_amaranth(dut, tb)
    for d, reqs in zip(drivers, REQS):
        for (addr, count), words in zip(reqs, d.got):
            assert words == expected_read(mem, addr, count), (addr, count)
        assert d.errors == [0] * len(reqs)
    owners = [int(a >= 16 * 1024 - 5) for _, a, _ in mem.bursts]
    switches = sum(a != b for a, b in zip(owners, owners[1:]))
    assert switches >= 6, owners
    assert mem.max_open_reads == outstanding
    for owner, limit in enumerate(max_bursts):
        lengths = [n for o, (_, _, n) in zip(owners, mem.bursts) if o == owner]
        assert max(lengths) == (limit or 256)


# --- the deadlock -----------------------------------------------------------------------


class RingAndReader(Elaboratable):
    """A WeightRing (``credit`` or not) on ``m0`` and a BulkReader (the map DMA's part) on
    ``m1`` of an arbiter."""

    def __init__(self, credit: bool, image_words: int, depth: int):
        self.arb = AxiReadArbiter(ADDR_WIDTH, DW, outstanding=4)
        self.ring = WeightRing(DW, depth, image_words, DW, ADDR_WIDTH, credit=credit)
        self.reader = BulkReader(ADDR_WIDTH, DW, COUNT_BITS)

    def elaborate(self, platform):
        m = Module()
        m.submodules.arb, m.submodules.ring = self.arb, self.ring
        m.submodules.reader = self.reader
        wiring.connect(m, self.arb.m0, self.ring.bus)
        wiring.connect(m, self.arb.m1, self.reader.bus)
        return m


def run_ring_and_reader(credit: bool, seed: int, limit: int) -> tuple[bool, dict]:
    """The ring starts a pass over a 64-word image into 8 slots; 20 cycles later the reader
    is asked for 40 words elsewhere. The ring's consumer reads nothing until the reader's
    words are all in (compute waiting for the DMA's strip), then the whole pass, word by
    word, each checked. Returns whether it finished within ``limit`` cycles, and what it
    saw."""
    rng = random.Random(seed)
    image_words, depth, dma = 64, 8, (4096, 40)
    dut = RingAndReader(credit, image_words, depth)
    ring, reader = dut.ring, dut.reader
    mem = AxiMemory(dut.arb.bus, DW, rng, outstanding=4, stall=0.3, latency=6)
    image = [rng.getrandbits(DW) for _ in range(image_words)]
    mem.words.update(enumerate(image))
    seen: dict = {"dma": [], "ring": [], "blocked": 0}

    async def tb(ctx):
        ctx.set(ring.enable, 1)
        ctx.set(ring.start, 1)
        ctx.set(ring.words, image_words)
        ctx.set(reader.o.ready, 1)
        rd, written, pending = 0, 0, None
        for cycle in range(limit):
            mem.drive(ctx)
            if cycle == 20:
                ctx.set(reader.req.payload.addr, dma[0])
                ctx.set(reader.req.payload.count, dma[1])
                ctx.set(reader.req.valid, 1)
            if ctx.get(reader.o.valid):
                seen["dma"].append(ctx.get(reader.o.payload))
            if mem.r_beat is not None and not ctx.get(dut.arb.bus.rready):
                seen["blocked"] += 1
            written = ctx.get(ring.wr_ptr)          # the pass is below 2 * depth ahead
            if pending is not None:
                seen["ring"].append(ctx.get(ring.data))
                rd, pending = rd + 1, None
                ctx.set(ring.rd_ptr, rd % (2 * depth))
            if rd == image_words:
                return
            if (len(seen["dma"]) == dma[1] and (written - rd) % (2 * depth)
                    and pending is None):
                ctx.set(ring.addr, rd % depth)
                pending = rd
            mem.sample(ctx)
            await ctx.tick()
            ctx.set(ring.start, 0)
            if cycle == 20:
                ctx.set(reader.req.valid, 0)

    run_amaranth(dut, tb)
    done = len(seen["ring"]) == image_words
    if done:
        assert seen["dma"] == expected_read(mem, *dma)
        assert seen["ring"] == image
    return done, seen


def test_credit_ring_and_reader_share_the_port():
    """With ``credit`` the ring's bursts never wait on the bus: the reader's words come
    though the ring is full and its consumer waits for them, and then the pass streams."""
    done, seen = run_ring_and_reader(True, seed=5, limit=3000)
    assert done and seen["blocked"] == 0


def test_without_credit_the_ring_blocks_the_reader():
    """Without ``credit`` the ring asks for the whole image in 64-beat bursts and can take
    8 of them: the rest of its burst waits on the bus, the reader's burst behind it, and the
    consumer waits for the reader: nothing moves again (the deadlock both exist for)."""
    done, seen = run_ring_and_reader(False, seed=5, limit=1500)
    assert not done and not seen["dma"] and seen["blocked"] > 1000
