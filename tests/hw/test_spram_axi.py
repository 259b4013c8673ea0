"""Amaranth-simulator tests of the AXI4 subordinate over SPRAM (``hw/spram_axi.py``), with the
behavioural SPRAM twin (``cell=False``).

Two kinds of manager drive it: the engine's bulk masters (``BulkWriter`` and ``BulkReader``
joined to its one port with ``wiring.connect`` through :func:`axi_halves`), with seeded random
stalls on their streams; and a hand-written AXI4 manager in this file for what the masters
never do (byte strobes, unaligned, FIXED and narrow bursts, IDs, reads and writes waiting at
the same time). The expected words come from a Python reference (a dict of words, byte merges
for strobes), never from the code under test. A monitor checks the subordinate's side of the
handshakes every cycle: R and B held with the same payload until taken, ``rlast`` on exactly
the last beat of each burst, no R before its AR, no B before the burst's last W beat. The
Verilog with the real cells is ``tests/sim/test_spram_axi_cells.py``."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Fragment, Module
from amaranth.lib import wiring

from dynfix.hw.axi import (AxiReadSignature, AxiSignature, AxiWriteSignature, BURST_FIXED,
                            BURST_INCR, RESP_OKAY, RESP_SLVERR, axi_halves, size_code)
from dynfix.hw.bulk_reader import BulkReader
from dynfix.hw.bulk_writer import BulkWriter
from dynfix.hw.spram_axi import READ_LATENCY, SpramAxi

from sim_helpers import run_amaranth

#: Byte address bits: 256 KiB, twice the iCEBreaker's 128 KB, so there are addresses beyond it.
ADDR_WIDTH = 18
#: The iCEBreaker's four SPRAMs side by side: 16K words of 64 bits.
DEPTH, DW = 16384, 64
COUNT_BITS = 15
#: 64-bit words in a 4 KiB page.
PAGE = 512
#: The cycle limit of one simulation, and of one burst of the hand-written manager: far more
#: than any needs.
MAX_CYCLES = 60_000
BURST_CYCLES = 2_000
#: What the design documents (hand-written here, not imported): the first R beat comes
#: this many cycles after the AR handshake, and between two bursts the port idles this many
#: cycles (one to take the next AR, one for the SPRAM read).
FIRST_BEAT_CYCLES = 2
BURST_GAP_CYCLES = 2


class Watch:
    """The subordinate's side of the AXI rules on ``bus``, checked once a cycle by
    :meth:`sample` (after the inputs of the cycle are set, before the clock edge); records
    the cycle of every handshake."""

    def __init__(self, bus):
        self.handshakes = [(bus.arvalid, bus.arready), (bus.awvalid, bus.awready),
                           (bus.rvalid, bus.rready), (bus.wvalid, bus.wready),
                           (bus.bvalid, bus.bready)]
        self.ar_info, self.aw_info = (bus.araddr, bus.arlen), (bus.awaddr, bus.awlen)
        self.r_info = (bus.rdata, bus.rresp, bus.rlast, bus.rid)
        self.b_info = (bus.bresp, bus.bid)
        self.cycle = 0
        self.r_held = self.b_held = None
        self.ar: list[tuple[int, int, int]] = []       # (cycle, araddr, beats)
        self.aw: list[tuple[int, int, int]] = []
        self.r_beats: list[tuple[int, int, int]] = []  # (cycle, rresp, rlast)
        self.w_beats: list[int] = []                   # cycles
        self.b: list[tuple[int, int]] = []             # (cycle, bresp)
        self.order: list[str] = []                     # "r" / "w" per address handshake
        self.r_pos = 0                                 # beats seen of the oldest open read
        self.r_done = 0                                # read bursts finished (rlast taken)

    @staticmethod
    def held(name: str, pending, valid: int, payload: tuple | None):
        if pending is not None:
            assert valid, f"{name}VALID dropped before the handshake"
            assert payload == pending, f"{name} payload changed before the handshake"

    def sample(self, ctx) -> None:
        c = self.cycle
        (arv, arr), (awv, awr), (rv, rr), (wv, wr), (bv, br) = (
            (ctx.get(v), ctx.get(r)) for v, r in self.handshakes)
        if arv and arr:
            addr, length = (ctx.get(x) for x in self.ar_info)
            self.ar.append((c, addr, length + 1))
            self.order.append("r")
        if awv and awr:
            addr, length = (ctx.get(x) for x in self.aw_info)
            self.aw.append((c, addr, length + 1))
            self.order.append("w")
        r = tuple(ctx.get(x) for x in self.r_info) if rv else None
        self.held("R", self.r_held, rv, r)
        if rv:
            assert self.r_done < len(self.ar), "R beat without an open read burst"
            beats = self.ar[self.r_done][2]
            assert r[2] == (self.r_pos == beats - 1), \
                f"rlast {r[2]} on beat {self.r_pos + 1} of {beats}"
            if rr:
                self.r_beats.append((c, r[1], r[2]))
                self.r_pos = 0 if r[2] else self.r_pos + 1
                self.r_done += r[2]
            self.r_held = None if rr else r
        if wv and wr:
            self.w_beats.append(c)
        b = tuple(ctx.get(x) for x in self.b_info) if bv else None
        self.held("B", self.b_held, bv, b)
        if bv:
            k = len(self.b)
            assert k < len(self.aw), "B without a write burst"
            assert len(self.w_beats) >= sum(n for _, _, n in self.aw[:k + 1]), \
                "B before the burst's last W beat"
            if br:
                self.b.append((c, b[0]))
            self.b_held = None if br else b
        self.cycle += 1


class Bench:
    """A BulkWriter and a BulkReader on one SpramAxi port (``cell=False``)."""

    def __init__(self, depth: int = DEPTH):
        self.reader = BulkReader(ADDR_WIDTH, DW, COUNT_BITS)
        self.writer = BulkWriter(ADDR_WIDTH, DW, COUNT_BITS)
        self.mem = SpramAxi(depth, ADDR_WIDTH, DW, cell=False)
        self.top = m = Module()
        m.submodules.reader, m.submodules.writer = self.reader, self.writer
        m.submodules.mem = self.mem
        rd, wr = axi_halves(self.mem.bus)
        wiring.connect(m, reader=self.reader.bus, memory=rd)
        wiring.connect(m, writer=self.writer.bus, memory=wr)


class Requests:
    """One master's requests, one after another: offered on ``req`` until taken, then
    waited for (``done``); the ``error`` flag of each is kept."""

    def __init__(self, block, requests: list[tuple[int, int]]):
        req = block.req
        self.valid, self.ready, self.addr, self.count = (req.valid, req.ready,
                                                         req.payload.addr, req.payload.count)
        self.done, self.error = block.done, block.error
        self.todo = list(requests)
        self.taken = False
        self.shown = None                               # the request offered now, if any
        self.errors: list[int] = []

    def drive(self, ctx) -> None:
        offer = self.todo[0] if self.todo and not self.taken else None
        if offer != self.shown:                         # set only what changes: fast
            ctx.set(self.valid, offer is not None)
            if offer is not None:
                ctx.set(self.addr, offer[0])
                ctx.set(self.count, offer[1])
            self.shown = offer

    def sample(self, ctx) -> None:
        """Before the clock edge: a request taken, or the one taken earlier done (its
        ``done`` was cleared when it was taken)."""
        if self.shown is not None and ctx.get(self.ready):
            self.taken = True
        elif self.taken and ctx.get(self.done):
            self.errors.append(ctx.get(self.error))
            self.todo.pop(0)
            self.taken = False


def run_bench(stages, *, seed: int, depth: int = DEPTH, ready: float = 0.7,
              offer: float = 0.7):
    """Run ``stages`` (each a pair of write and read request lists, run at the same time) on a
    :class:`Bench`. Returns (the words written per write request, the words read per read
    request, write errors, read errors, the Watch)."""
    rng = random.Random(seed)
    bench = Bench(depth)
    reader, writer = bench.reader, bench.writer
    watch = Watch(bench.mem.bus)
    written: list[list[int]] = []
    read: list[list[int]] = []
    w_err: list[int] = []
    r_err: list[int] = []
    i_valid, i_ready, i_payload = writer.i.valid, writer.i.ready, writer.i.payload
    o_valid, o_ready, o_payload = reader.o.valid, reader.o.ready, reader.o.payload

    async def tb(ctx):
        for writes, reads in stages:
            words = [[rng.getrandbits(DW) for _ in range(c)] for _, c in writes]
            written.extend(words)
            stream = [w for ws in words for w in ws]
            ws, rs = Requests(writer, writes), Requests(reader, reads)
            pos, presenting, got = 0, False, []
            while ws.todo or rs.todo:
                assert watch.cycle < MAX_CYCLES, "the bench hangs"
                ws.drive(ctx)
                rs.drive(ctx)
                if not presenting and pos < len(stream) and rng.random() < offer:
                    presenting = True
                    ctx.set(i_payload, stream[pos])
                ctx.set(i_valid, presenting)
                consumer = rng.random() < ready
                ctx.set(o_ready, consumer)
                if presenting and ctx.get(i_ready):
                    pos, presenting = pos + 1, False
                if consumer and ctx.get(o_valid):
                    got.append(ctx.get(o_payload))
                ws.sample(ctx)
                rs.sample(ctx)
                watch.sample(ctx)
                await ctx.tick()
            assert pos == len(stream)
            at = 0
            for _, c in reads:
                read.append(got[at:at + c])
                at += c
            assert at == len(got)
            w_err.extend(ws.errors)
            r_err.extend(rs.errors)

    run_amaranth(bench.top, tb)
    return written, read, w_err, r_err, watch


def reference(stages, written: list[list[int]]) -> list[list[int]]:
    """What each read request of ``stages`` must return: a dict of words updated by the
    writes of each stage after its reads (a stage's reads and writes touch different words,
    checked here)."""
    mem: dict[int, int] = {}
    expect, k = [], 0
    for writes, reads in stages:
        w_words = {a for addr, c in writes for a in range(addr, addr + c)}
        for addr, c in reads:
            assert not w_words & set(range(addr, addr + c)), "a stage reads what it writes"
            expect.append([mem[a] for a in range(addr, addr + c)])
        for addr, c in writes:
            mem.update(zip(range(addr, addr + c), written[k]))
            k += 1
    return expect


#: Counts beyond 256, ranges across 4 KiB pages (512 words), overwrites of earlier words,
#: reads while other words are being written; 2,587 words written, 3,162 read.
STAGES = [
    ([(5, 600), (1000, 700), (1695, 10)], []),
    ([(2500, 600), (4100, 257)], [(5, 600), (1000, 705)]),
    ([(590, 420)], [(2500, 600), (4100, 257)]),
    ([], [(5, 1000)]),
]


@pytest.mark.parametrize("seed", [1])
def test_bulk_masters_write_and_read_back_under_stalls(seed):
    written, read, w_err, r_err, watch = run_bench(STAGES, seed=seed)
    assert read == reference(STAGES, written)
    assert w_err == [0] * 6 and r_err == [0] * 5
    assert sum(map(len, read)) == 3162
    assert all(resp == RESP_OKAY for _, resp, _ in watch.r_beats)
    assert all(resp == RESP_OKAY for _, resp in watch.b)
    assert len(watch.w_beats) == sum(map(len, written))
    assert "rw" in "".join(watch.order) and "wr" in "".join(watch.order)   # interleaved


def test_read_burst_streams_one_beat_per_cycle():
    """No stalls: a 256-beat burst's first beat comes FIRST_BEAT_CYCLES after its AR and the
    rest on consecutive cycles (256 + 2 cycles from the AR handshake to the cycle after the
    last beat); the bursts of a 1024-word read are BURST_GAP_CYCLES apart. A write burst takes
    a beat per cycle, its response in the cycle after the last beat."""
    assert READ_LATENCY == FIRST_BEAT_CYCLES
    stages = [([(0, 1024)], []), ([], [(0, 256)]), ([], [(0, 1024)])]
    written, read, _, _, watch = run_bench(stages, seed=3, ready=1.0, offer=1.0)
    assert read == reference(stages, written)
    # The 256-beat read: one beat per cycle from FIRST_BEAT_CYCLES after its AR.
    ar_cycle = watch.ar[0][0]
    beats = [c for c, _, _ in watch.r_beats[:256]]
    assert beats == list(range(ar_cycle + FIRST_BEAT_CYCLES, ar_cycle + FIRST_BEAT_CYCLES + 256))
    assert beats[-1] + 1 - ar_cycle <= 256 + FIRST_BEAT_CYCLES
    # The 1024-word read: four bursts, each gapless, BURST_GAP_CYCLES without a beat
    # between them.
    ars = watch.ar[1:]
    assert [n for _, _, n in ars] == [256] * 4
    for k, (cycle, _, _) in enumerate(ars):
        mine = [c for c, _, _ in watch.r_beats[256 * (k + 1):256 * (k + 2)]]
        assert mine == list(range(cycle + FIRST_BEAT_CYCLES, cycle + FIRST_BEAT_CYCLES + 256))
        if k:
            before = watch.r_beats[256 * (k + 1) - 1][0]
            assert mine[0] - before - 1 == BURST_GAP_CYCLES
    # Writes: each burst's beats on consecutive cycles from the cycle after its AW at the
    # earliest, B in the cycle after the last beat.
    for k, (cycle, _, n) in enumerate(watch.aw):
        mine = watch.w_beats[256 * k:256 * (k + 1)]
        assert mine[0] > cycle and mine == list(range(mine[0], mine[0] + n))
        assert watch.b[k][0] == mine[-1] + 1


def test_bulk_masters_out_of_range():
    """A 1000-word memory (not a whole number of 4 KiB pages): a request running past the end
    flags ``error`` on the master; the burst that straddles the end is refused whole, so the
    words of it that do exist are not written; the next request clears the flag."""
    depth = 1000
    stages = [([(900, 100)], []),                      # in range, ends at the last word
              ([(900, 200), (0, 10)], []),             # bursts 900..1023 and 1024..1099
              ([], [(900, 200), (900, 100)])]
    written, read, w_err, r_err, watch = run_bench(stages, seed=4, depth=depth)
    assert w_err == [0, 1, 0]
    assert r_err == [1, 0]
    assert read[1] == written[0]                       # the refused burst wrote nothing
    assert [resp for _, resp in watch.b] == [RESP_OKAY, RESP_SLVERR, RESP_SLVERR, RESP_OKAY]
    # Reading 900..1099: both bursts (900..1023 straddles the end) are refused whole, their
    # beats carry zero.
    assert read[0] == [0] * 200
    assert [resp for _, resp, _ in watch.r_beats] == [RESP_SLVERR] * 200 + [RESP_OKAY] * 100


# A hand-written AXI4 manager, one transaction at a time.

async def write_burst(ctx, bus, rng, byte_addr: int, data: list[int], strb: list[int], *,
                      burst: int = BURST_INCR, size: int | None = None, axid: int = 0,
                      offer: float = 0.7) -> int:
    """One write burst: AW and the W beats offered at once (W may come before the address
    is taken, as AXI allows), W with random gaps, B taken at once; returns ``bresp``."""
    size = size_code(len(bus.wdata)) if size is None else size
    for name, value in (("awaddr", byte_addr), ("awlen", len(data) - 1), ("awsize", size),
                        ("awburst", burst), ("awid", axid)):
        ctx.set(getattr(bus, name), value)
    ctx.set(bus.bready, 1)
    aw_pending, i, presenting = True, 0, False
    for _ in range(BURST_CYCLES):
        ctx.set(bus.awvalid, aw_pending)
        if not presenting:
            presenting = i < len(data) and rng.random() < offer
        ctx.set(bus.wvalid, presenting)
        if i < len(data):
            ctx.set(bus.wdata, data[i])
            ctx.set(bus.wstrb, strb[i])
            ctx.set(bus.wlast, i == len(data) - 1)
        took_aw = aw_pending and ctx.get(bus.awready)
        if presenting and ctx.get(bus.wready):
            i, presenting = i + 1, False
        if ctx.get(bus.bvalid):
            assert i == len(data) and not aw_pending, "B before the burst was written"
            assert ctx.get(bus.bid) == axid
            resp = ctx.get(bus.bresp)
            await ctx.tick()
            ctx.set(bus.wvalid, 0)
            return resp
        await ctx.tick()
        if took_aw:
            aw_pending = False
    raise AssertionError("the write burst hangs")


async def read_burst(ctx, bus, rng, byte_addr: int, beats: int, *, burst: int = BURST_INCR,
                     size: int | None = None, axid: int = 0,
                     ready: float = 0.6) -> list[tuple[int, int]]:
    """One read burst with a random ``rready``; returns (rdata, rresp) per beat, after checking
    ``rvalid`` does not depend on ``rready``, R is held until taken, ``rlast`` and ``rid``."""
    size = size_code(len(bus.rdata)) if size is None else size
    for name, value in (("araddr", byte_addr), ("arlen", beats - 1), ("arsize", size),
                        ("arburst", burst), ("arid", axid)):
        ctx.set(getattr(bus, name), value)
    ar_pending, got, held = True, [], None
    for _ in range(BURST_CYCLES):
        if len(got) == beats:
            break
        ctx.set(bus.arvalid, ar_pending)
        rr = rng.random() < ready
        ctx.set(bus.rready, not rr)
        flipped = ctx.get(bus.rvalid)
        ctx.set(bus.rready, rr)
        rvalid = ctx.get(bus.rvalid)
        assert rvalid == flipped, "RVALID depends on RREADY"
        took_ar = ar_pending and ctx.get(bus.arready)
        if rvalid:
            assert not ar_pending, "R before the AR was taken"
            beat = (ctx.get(bus.rdata), ctx.get(bus.rresp), ctx.get(bus.rlast),
                    ctx.get(bus.rid))
            assert held is None or beat == held, "R changed before the handshake"
            assert beat[2] == (len(got) == beats - 1) and beat[3] == axid
            if rr:
                got.append(beat[:2])
            held = None if rr else beat
        else:
            assert held is None, "RVALID dropped before the handshake"
        await ctx.tick()
        if took_ar:
            ar_pending = False
    assert len(got) == beats, "the read burst hangs"
    ctx.set(bus.arvalid, 0)
    ctx.set(bus.rready, 0)
    return got


def merge(old: int, new: int, strb: int, nbytes: int) -> int:
    """``old`` with the bytes of ``new`` that ``strb`` enables."""
    out = old
    for k in range(nbytes):
        if strb >> k & 1:
            mask = 0xFF << 8 * k
            out = (out & ~mask) | (new & mask)
    return out


@pytest.mark.parametrize("depth,dw", [(DEPTH, 64), (20000, 32)])
def test_byte_strobes_keep_the_other_bytes(depth, dw):
    """Full words, then random data with random strobes (and some beats with none) over
    them, an unaligned start (it addresses its word), IDs echoed; 20000 x 32 takes two rows of
    cells (addresses in both). rready toggles at random (the skid register)."""
    rng = random.Random(5)
    dut = SpramAxi(depth, ADDR_WIDTH, dw, cell=False, id_width=3)
    bus, nbytes = dut.bus, dw // 8
    bursts = [(7, 40), (min(16360, depth - 60), 60), (depth - 9, 9)]    # word address, beats
    ref: dict[int, int] = {}
    results = []                                        # (got, what was written there)

    async def tb(ctx):
        for n, (addr, beats) in enumerate(bursts):
            full = [rng.getrandbits(dw) for _ in range(beats)]
            assert await write_burst(ctx, bus, rng, addr * nbytes, full,
                                     [(1 << nbytes) - 1] * beats, axid=n) == RESP_OKAY
            ref.update(zip(range(addr, addr + beats), full))
            part = [rng.getrandbits(dw) for _ in range(beats)]
            strb = [rng.choice([0, rng.getrandbits(nbytes)]) for _ in range(beats)]
            # An unaligned start: byte 3 of the first word, as a manager writing from there
            # would send it (the strobes leave bytes 0..2 alone).
            strb[0] &= ~0b111
            assert await write_burst(ctx, bus, rng, addr * nbytes + 3, part, strb,
                                     axid=7 - n) == RESP_OKAY
            for k in range(beats):
                ref[addr + k] = merge(ref[addr + k], part[k], strb[k], nbytes)
            got = await read_burst(ctx, bus, rng, addr * nbytes + nbytes - 1, beats, axid=n)
            results.append((got, [ref[a] for a in range(addr, addr + beats)]))

    run_amaranth(dut, tb)
    assert len(results) == len(bursts)
    for got, want in results:
        assert [d for d, _ in got] == want
        assert all(r == RESP_OKAY for _, r in got)


def test_refused_bursts_answer_slverr_and_write_nothing():
    """One word past the end, straddling it, wholly beyond, FIXED, narrow: SLVERR on B and on
    every R beat (with zero data), nothing written; a good burst afterwards is OKAY."""
    rng = random.Random(6)
    dut = SpramAxi(DEPTH, ADDR_WIDTH, DW, cell=False)
    bus, nbytes, full = dut.bus, DW // 8, (1 << DW // 8) - 1
    out: dict = {}

    async def tb(ctx):
        base = [rng.getrandbits(DW) for _ in range(8)]
        assert await write_burst(ctx, bus, rng, (DEPTH - 8) * nbytes, base, [full] * 8) \
            == RESP_OKAY
        bad = [rng.getrandbits(DW) for _ in range(12)]
        cases = {"one_past": (dict(byte_addr=(DEPTH - 4) * nbytes), 5),   # last word = depth
                 "straddle": (dict(byte_addr=(DEPTH - 4) * nbytes), 12),
                 "beyond": (dict(byte_addr=DEPTH * nbytes), 12),
                 "fixed": (dict(byte_addr=(DEPTH - 8) * nbytes, burst=BURST_FIXED), 4),
                 "narrow": (dict(byte_addr=(DEPTH - 8) * nbytes, size=2), 4)}
        for name, (kw, n) in cases.items():
            out[f"w_{name}"] = await write_burst(ctx, bus, rng, data=bad[:n],
                                                 strb=[full] * n, **kw)
            out[f"r_{name}"] = await read_burst(ctx, bus, rng, beats=n, **kw)
        out["base"] = base
        out["after"] = await read_burst(ctx, bus, rng, (DEPTH - 8) * nbytes, 8)

    run_amaranth(dut, tb)
    for name in ("one_past", "straddle", "beyond", "fixed", "narrow"):
        assert out[f"w_{name}"] == RESP_SLVERR, name
        assert out[f"r_{name}"] == [(0, RESP_SLVERR)] * len(out[f"r_{name}"]), name
    assert out["after"] == [(w, RESP_OKAY) for w in out["base"]]     # nothing written


def test_reads_and_writes_take_turns():
    """An AR and an AW waiting together are taken in turn, starting with the other kind than
    the last one taken; with only reads waiting, reads follow each other."""
    dut = SpramAxi(DEPTH, ADDR_WIDTH, DW, cell=False)
    bus = dut.bus
    watch = Watch(bus)

    async def tb(ctx):
        # Both channels always offer a 4-beat burst; R and B are taken at once, W always
        # valid. Reads only at first, then both.
        for name, value in (("arlen", 3), ("awlen", 3), ("arsize", 3), ("awsize", 3),
                            ("arburst", BURST_INCR), ("awburst", BURST_INCR),
                            ("rready", 1), ("bready", 1), ("wvalid", 1), ("wstrb", 0xFF)):
            ctx.set(getattr(bus, name), value)
        ctx.set(bus.arvalid, 1)
        for cycle in range(120):
            ctx.set(bus.awvalid, cycle >= 20)
            watch.sample(ctx)
            await ctx.tick()

    run_amaranth(dut, tb)
    order = "".join(watch.order)
    first_w = order.index("w")
    assert first_w >= 3 and set(order[:first_w]) == {"r"}
    assert order[first_w:] == "wr" * ((len(order) - first_w) // 2) + \
        "w" * ((len(order) - first_w) % 2)
    assert len(order) - first_w >= 8


@pytest.mark.filterwarnings("ignore:.*created but never used")   # refused in __init__
def test_halves_and_parameters():
    mem = SpramAxi(DEPTH, ADDR_WIDTH, DW, cell=False)
    Fragment.get(mem, None)                             # elaborated: used
    rd, wr = axi_halves(mem.bus)
    assert rd.signature == AxiReadSignature(ADDR_WIDTH, DW).flip()
    assert wr.signature == AxiWriteSignature(ADDR_WIDTH, DW).flip()
    assert rd.rdata is mem.bus.rdata and wr.wstrb is mem.bus.wstrb
    assert mem.signature.members["bus"].signature == AxiSignature(ADDR_WIDTH, DW).flip()
    with pytest.raises(ValueError, match="multiple of 16"):
        SpramAxi(DEPTH, ADDR_WIDTH, 8, cell=False)
    with pytest.raises(ValueError, match="power of two"):
        SpramAxi(DEPTH, ADDR_WIDTH, 48, cell=False)
    with pytest.raises(ValueError, match="does not reach"):
        SpramAxi(DEPTH, 16, DW, cell=False)           # 64 KiB of 128
    reader = BulkReader(ADDR_WIDTH, DW, COUNT_BITS)
    Fragment.get(reader, None)
    with pytest.raises(TypeError, match="AxiSignature"):
        axi_halves(reader.bus)                          # already a half


def test_load_mode_fills_the_memory_and_serves_reads_only():
    """``load=True``: words on the load stream (with random gaps) land at word 0, 1, ...; a
    waiting AR is not taken while a word is offered; reads then return the words; the write
    channels never answer."""
    rng = random.Random(11)
    dut = SpramAxi(DEPTH, ADDR_WIDTH, DW, cell=False, load=True)
    bus, nbytes = dut.bus, DW // 8
    words = [rng.getrandbits(DW) for _ in range(40)]
    out: dict = {"ar_taken": 0}

    async def tb(ctx):
        ctx.set(bus.awvalid, 1)
        ctx.set(bus.wvalid, 1)
        for w in words:
            ctx.set(dut.load.payload, w)
            ctx.set(dut.load.valid, 1)
            ctx.set(bus.arvalid, 1)                     # an AR waits while a word is offered
            for _ in range(10):
                ready = ctx.get(dut.load.ready)
                out["ar_taken"] += ctx.get(bus.arready)
                await ctx.tick()
                if ready:
                    break
            else:
                raise AssertionError("a load word was not taken")
            ctx.set(bus.arvalid, 0)
            if rng.random() < 0.3:
                ctx.set(dut.load.valid, 0)
                await ctx.tick()
        ctx.set(dut.load.valid, 0)
        out["all"] = await read_burst(ctx, bus, rng, 0, len(words))
        out["mid"] = await read_burst(ctx, bus, rng, 7 * nbytes, 5)
        out["aw"] = ctx.get(bus.awready) or ctx.get(bus.wready) or ctx.get(bus.bvalid)

    run_amaranth(dut, tb)
    assert out["ar_taken"] == 0, "an AR was taken while a load word was offered"
    assert out["all"] == [(w, RESP_OKAY) for w in words]
    assert out["mid"] == [(w, RESP_OKAY) for w in words[7:12]]
    assert not out["aw"]
