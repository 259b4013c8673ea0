"""Amaranth-simulator tests of the AXI4 bulk-memory masters (``hw/bulk_reader.py``,
``hw/bulk_writer.py``) against a Python AXI4 subordinate: a dict of words with seeded random
ready/valid stalls on every channel and a random read and response latency. The model checks
every AR/AW handshake against the burst rules (INCR, whole words, at most 256 beats, no 4 KiB
crossing), the AXI handshake rule on every manager-driven channel (valid held, payload
unchanged, until ready), ``wlast`` on exactly the last beat of each write burst, full strobes,
and the number of bursts open. The expected words are the model's, never the masters'."""

from __future__ import annotations

import gc
import random
from collections import deque

import pytest

from dynfix.hw.axi import (BOUNDARY_BYTES, BURST_INCR, MAX_BURST_BEATS, RESP_OKAY, RESP_SLVERR,
                           AxiReadSignature, AxiSignature, AxiWriteSignature)
from dynfix.hw.bulk_reader import BulkReader
from dynfix.hw.bulk_writer import BulkWriter

from sim_helpers import run_amaranth

#: Byte address bits of the test bus (16 KiB words of 32 bits: four 4 KiB pages and more).
ADDR_WIDTH = 20
COUNT_BITS = 12
#: Reads: counts beyond 256, ranges across 4 KiB boundaries (1024 words of 32 bits), a burst
#: ending exactly on a boundary, a single word, nothing.
READS_32 = [(0, 1), (5, 300), (1000, 60), (3 * 1024 - 3, 600), (2048, 256), (7, 0),
            (1024 - 256, 256), (4 * 1024 - 1, 2)]
#: The cycle limit of one simulation: far more than any run needs.
MAX_CYCLES = 40_000


def min_bursts(addr: int, count: int, data_width: int, limit: int = MAX_BURST_BEATS) -> int:
    """The fewest legal bursts over words ``addr .. addr + count - 1``: each 4 KiB page's
    share of the range, split into bursts of at most ``limit`` (256) beats."""
    page = BOUNDARY_BYTES * 8 // data_width
    n, a, end = 0, addr, addr + count
    while a < end:
        seg = min(end, (a // page + 1) * page) - a
        n += -(-seg // limit)
        a += seg
    return n


class Held:
    """The handshake rule on one channel driven by the code under test: once valid is high it
    stays high, with the same payload, until the cycle of the handshake."""

    def __init__(self, name: str):
        self.name, self.pending = name, None

    def see(self, valid: int, ready: int, payload: tuple) -> bool:
        if self.pending is not None:
            assert valid, f"{self.name}: valid dropped before the handshake"
            assert payload == self.pending, f"{self.name}: payload changed before the handshake"
        self.pending = payload if valid and not ready else None
        return bool(valid and ready)


class AxiMemory:
    """An AXI4 subordinate holding ``words`` (word address -> value; an address read before
    it was written gets a random value, kept).

    Each cycle: :meth:`drive` sets its outputs (random ready on AR, AW and W, random gaps in
    R and B once their latency has passed), the testbench lets the manager react, then
    :meth:`sample` takes the handshakes of that cycle and checks them. ``stall`` is the chance
    of a ready or valid held low in a cycle; ``latency`` the most cycles from an AR to its
    first beat and from a burst's last W beat (and AW) to its response. Words in ``bad`` are
    answered with SLVERR (read data and the write response of a burst that touches one).
    """

    def __init__(self, bus, data_width: int, rng: random.Random, *, outstanding: int,
                 stall: float = 0.4, latency: int = 6, bad: set[int] = frozenset()):
        self.bus, self.dw, self.rng = bus, data_width, rng
        self.bytes = data_width // 8
        self.outstanding, self.stall, self.latency, self.bad = outstanding, stall, latency, bad
        self.words: dict[int, int] = {}
        self.cycle = 0
        self.bursts: list[tuple[str, int, int]] = []    # ("r" / "w", word address, beats)
        # reads
        self.reads = isinstance(bus.signature, (AxiReadSignature, AxiSignature))
        self.ar_held, self.ar = Held("AR"), deque()      # (first data cycle, addr, beats)
        self.r_beat, self.r_pos = None, 0
        self.r_last_done = 0                             # rlast handshakes so far
        self.max_open_reads = 0
        self.arready = 0
        # writes
        self.writes = isinstance(bus.signature, (AxiWriteSignature, AxiSignature))
        self.aw_held, self.w_held = Held("AW"), Held("W")
        self.aw_list: list[tuple[int, int]] = []
        self.w_list: list[list[int]] = []
        self.w_cur: list[int] = []
        self.paired = 0
        self.b_queue: deque = deque()                    # (response cycle, bresp)
        self.b_beat = None
        self.b_done = 0
        self.awready = self.wready = 0
        self.max_open_addrs = self.max_open_writes = 0

    def word(self, addr: int) -> int:
        return self.words.setdefault(addr, self.rng.getrandbits(self.dw))

    def go(self) -> bool:
        return self.rng.random() >= self.stall

    def check_burst(self, name: str, addr: int, length: int, size: int, burst: int):
        assert burst == BURST_INCR, f"{name} burst type {burst}"
        assert 1 << size == self.bytes, f"{name} size {size} on a {self.dw}-bit bus"
        assert addr % self.bytes == 0, f"{name} address {addr:#x} not word-aligned"
        beats = length + 1
        assert beats <= MAX_BURST_BEATS, f"{name} of {beats} beats"
        last = addr + beats * self.bytes - 1
        assert addr // BOUNDARY_BYTES == last // BOUNDARY_BYTES, \
            f"{name} {addr:#x}..{last:#x} crosses a 4 KiB boundary"
        return addr // self.bytes, beats

    def drive(self, ctx) -> None:
        bus = self.bus
        if self.reads:
            self.arready = self.go()
            ctx.set(bus.arready, self.arready)
            if (self.r_beat is None and self.ar and self.ar[0][0] <= self.cycle
                    and self.go()):
                _, a, n = self.ar[0]
                addr = a + self.r_pos
                self.r_beat = (self.word(addr), int(self.r_pos == n - 1),
                               RESP_SLVERR if addr in self.bad else RESP_OKAY)
            ctx.set(bus.rvalid, self.r_beat is not None)
            if self.r_beat is not None:
                ctx.set(bus.rdata, self.r_beat[0])
                ctx.set(bus.rlast, self.r_beat[1])
                ctx.set(bus.rresp, self.r_beat[2])
        if self.writes:
            self.awready, self.wready = self.go(), self.go()
            ctx.set(bus.awready, self.awready)
            ctx.set(bus.wready, self.wready)
            if (self.b_beat is None and self.b_queue and self.b_queue[0][0] <= self.cycle
                    and self.go()):
                self.b_beat = self.b_queue.popleft()[1]
            ctx.set(bus.bvalid, self.b_beat is not None)
            if self.b_beat is not None:
                ctx.set(bus.bresp, self.b_beat)

    @staticmethod
    def probe(ctx, valid, ready, value: int, name: str) -> None:
        """A manager's valid must not depend on the subordinate's ready (AXI's rule that
        rules out deadlock): flip ``ready`` for a moment, ``valid`` must not change."""
        before = ctx.get(valid)
        ctx.set(ready, not value)
        assert ctx.get(valid) == before, f"{name}VALID depends on {name}READY"
        ctx.set(ready, value)

    def sample(self, ctx) -> None:
        bus = self.bus
        if self.reads:
            self.probe(ctx, bus.arvalid, bus.arready, self.arready, "AR")
            arvalid = ctx.get(bus.arvalid)
            ar = ((ctx.get(bus.araddr), ctx.get(bus.arlen), ctx.get(bus.arsize),
                   ctx.get(bus.arburst)) if arvalid else None)
            if self.ar_held.see(arvalid, self.arready, ar):
                a, n = self.check_burst("AR", *ar)
                self.bursts.append(("r", a, n))
                self.ar.append((self.cycle + 1 + self.rng.randrange(self.latency), a, n))
                opened = sum(b[0] == "r" for b in self.bursts) - self.r_last_done
                assert opened <= self.outstanding, f"{opened} read bursts in flight"
                self.max_open_reads = max(self.max_open_reads, opened)
            if self.r_beat is not None and ctx.get(bus.rready):
                self.r_pos += 1
                if self.r_beat[1]:
                    self.ar.popleft()
                    self.r_pos = 0
                    self.r_last_done += 1
                self.r_beat = None
        if self.writes:
            self.probe(ctx, bus.awvalid, bus.awready, self.awready, "AW")
            self.probe(ctx, bus.wvalid, bus.wready, self.wready, "W")
            awvalid = ctx.get(bus.awvalid)
            aw = ((ctx.get(bus.awaddr), ctx.get(bus.awlen), ctx.get(bus.awsize),
                   ctx.get(bus.awburst)) if awvalid else None)
            if self.aw_held.see(awvalid, self.awready, aw):
                a, n = self.check_burst("AW", *aw)
                self.bursts.append(("w", a, n))
                self.aw_list.append((a, n))
                opened = len(self.aw_list) - self.b_done
                assert opened <= self.outstanding, f"{opened} write addresses open"
                self.max_open_addrs = max(self.max_open_addrs, opened)
            wvalid = ctx.get(bus.wvalid)
            w = (ctx.get(bus.wdata), ctx.get(bus.wstrb), ctx.get(bus.wlast)) if wvalid else None
            if self.w_held.see(wvalid, self.wready, w):
                data, strb, last = w
                assert strb == (1 << self.bytes) - 1, f"wstrb {strb:#x}"
                if not self.w_cur:
                    opened = len(self.w_list) + 1 - self.b_done
                    assert opened <= self.outstanding, f"{opened} write bursts open"
                    self.max_open_writes = max(self.max_open_writes, opened)
                self.w_cur.append(data)
                k = len(self.w_list)
                if k < len(self.aw_list):
                    n = self.aw_list[k][1]
                    assert bool(last) == (len(self.w_cur) == n), \
                        f"wlast {last} on beat {len(self.w_cur)} of a {n}-beat burst"
                assert len(self.w_cur) <= MAX_BURST_BEATS, "no wlast after 256 beats"
                if last:
                    self.w_list.append(self.w_cur)
                    self.w_cur = []
            while self.paired < min(len(self.aw_list), len(self.w_list)):
                (a, n), data = self.aw_list[self.paired], self.w_list[self.paired]
                assert len(data) == n, f"a {len(data)}-beat W burst for a {n}-beat AW"
                self.words.update(zip(range(a, a + n), data))
                resp = RESP_SLVERR if self.bad & set(range(a, a + n)) else RESP_OKAY
                self.b_queue.append((self.cycle + 1 + self.rng.randrange(self.latency), resp))
                self.paired += 1
            if self.b_beat is not None and ctx.get(bus.bready):
                self.b_beat = None
                self.b_done += 1
        self.cycle += 1

    def responses_pending(self) -> int:
        """Write bursts whose response has not been taken."""
        return len(self.aw_list) - self.b_done


def run_reads(data_width: int, requests: list[tuple[int, int]], *, seed: int,
              outstanding: int = 2, stall: float = 0.4, ready: float = 0.7,
              latency: int = 6, bad: set[int] = frozenset(), max_burst: int | None = None):
    """Run ``requests`` through a BulkReader (bursts limited to ``max_burst``) against the
    model; returns (words seen on ``o`` per request, error flag per request, the model,
    first/last output cycle per request)."""
    rng = random.Random(seed)
    dut = BulkReader(ADDR_WIDTH, data_width, COUNT_BITS, outstanding=outstanding,
                     max_burst=max_burst)
    mem = AxiMemory(dut.bus, data_width, rng, outstanding=outstanding, stall=stall,
                    latency=latency, bad=bad)
    got: list[list[int]] = []
    errors: list[int] = []
    spans: list[tuple[int, int]] = []
    o_held = Held("o")

    async def tb(ctx):
        for addr, count in requests:
            ctx.set(dut.req.payload.addr, addr)
            ctx.set(dut.req.payload.count, count)
            ctx.set(dut.req.valid, 1)
            words, cycles, accepted = [], [], False
            while True:
                assert mem.cycle < MAX_CYCLES, f"request {addr}+{count} hangs"
                mem.drive(ctx)
                consumer_ready = rng.random() < ready
                ctx.set(dut.o.ready, consumer_ready)
                if accepted and ctx.get(dut.done):
                    assert not ctx.get(dut.busy)
                    assert len(words) == count, f"done after {len(words)} of {count} words"
                    assert not mem.ar and mem.r_beat is None, "done with reads in flight"
                    errors.append(ctx.get(dut.error))
                    break
                req_taken = not accepted and ctx.get(dut.req.ready)
                AxiMemory.probe(ctx, dut.o.valid, dut.o.ready, consumer_ready, "o.")
                valid = ctx.get(dut.o.valid)
                payload = ctx.get(dut.o.payload) if valid else None
                if o_held.see(valid, consumer_ready, payload):
                    assert accepted, "a word before the request"
                    words.append(payload)
                    cycles.append(mem.cycle)
                mem.sample(ctx)
                await ctx.tick()
                if req_taken:
                    accepted = True
                    ctx.set(dut.req.valid, 0)
                    assert ctx.get(dut.busy) and not ctx.get(dut.done)
            got.append(words)
            spans.append((cycles[0], cycles[-1]) if cycles else (0, 0))
        # Idle afterwards: no bus activity, nothing on o.
        for _ in range(20):
            mem.drive(ctx)
            ctx.set(dut.o.ready, 1)
            assert not ctx.get(dut.bus.arvalid) and not ctx.get(dut.o.valid)
            mem.sample(ctx)
            await ctx.tick()

    run_amaranth(dut, tb)
    return got, errors, mem, spans


def expected_read(mem: AxiMemory, addr: int, count: int) -> list[int]:
    return [mem.words[a] for a in range(addr, addr + count)]


def check_read_bursts(mem: AxiMemory, requests, data_width: int,
                      limit: int = MAX_BURST_BEATS) -> None:
    """The ARs cover each request's words exactly once, in order, in the fewest bursts of at
    most ``limit`` beats."""
    bursts = [b for b in mem.bursts if b[0] == "r"]
    for addr, count in requests:
        need = min_bursts(addr, count, data_width, limit)
        mine, bursts = bursts[:need], bursts[need:]
        covered = [a for _, s, n in mine for a in range(s, s + n)]
        assert covered == list(range(addr, addr + count)), (addr, count, mine)
    assert not bursts, f"extra read bursts {bursts}"


@pytest.mark.parametrize("seed", [1, 2])
def test_reader_returns_memory_under_random_stalls(seed):
    got, errors, mem, _ = run_reads(32, READS_32, seed=seed)
    for (addr, count), words in zip(READS_32, got):
        assert words == expected_read(mem, addr, count), (addr, count)
    assert errors == [0] * len(READS_32)
    check_read_bursts(mem, READS_32, 32)
    assert mem.max_open_reads == 2                      # the second burst goes out early


def test_reader_wide_bus_splits_at_4k():
    """256-bit words: a 4 KiB page holds 128, fewer than 256 beats, so the page bounds the
    bursts; one outstanding burst."""
    reqs = [(100, 300), (0, 128), (127, 2), (511, 1)]
    got, errors, mem, _ = run_reads(256, reqs, seed=3, outstanding=1)
    for (addr, count), words in zip(reqs, got):
        assert words == expected_read(mem, addr, count), (addr, count)
    check_read_bursts(mem, reqs, 256)
    assert max(n for _, _, n in mem.bursts) == 128
    assert mem.max_open_reads == 1


def test_reader_streams_without_gaps_with_two_bursts_in_flight():
    """No stalls, an 8-cycle read latency: with two bursts in flight the words of 1024
    (four 256-beat bursts) leave on consecutive cycles; with one, each burst waits for its
    address and the latency."""
    req = [(0, 1024)]
    for outstanding, gapless in ((2, True), (1, False)):
        got, _, mem, spans = run_reads(32, req, seed=4, outstanding=outstanding, stall=0.0,
                                       ready=1.0, latency=9)
        assert got[0] == expected_read(mem, 0, 1024)
        first, last = spans[0]
        assert (last - first == 1023) == gapless, (outstanding, last - first)


@pytest.mark.parametrize("max_burst", [1, 16, 256])
def test_reader_max_burst_under_random_stalls(max_burst):
    """A limit on the burst length: the same words, in the fewest bursts of at most
    ``max_burst`` beats, none across 4 KiB (the model checks); with 256 the bursts of no
    limit."""
    reqs = READS_32[:5] if max_burst == 1 else READS_32
    got, errors, mem, _ = run_reads(32, reqs, seed=9, max_burst=max_burst)
    for (addr, count), words in zip(reqs, got):
        assert words == expected_read(mem, addr, count), (addr, count)
    assert errors == [0] * len(reqs)
    check_read_bursts(mem, reqs, 32, max_burst)
    assert max(n for _, _, n in mem.bursts) == max_burst


def test_reader_max_burst_wide_bus():
    """256-bit words: the page (128 words) stays the limit above it."""
    reqs = [(100, 300), (127, 2)]
    got, _, mem, _ = run_reads(256, reqs, seed=10, max_burst=256)
    for (addr, count), words in zip(reqs, got):
        assert words == expected_read(mem, addr, count), (addr, count)
    check_read_bursts(mem, reqs, 256)
    assert max(n for _, _, n in mem.bursts) == 128


@pytest.mark.filterwarnings("ignore:.*created but never used")   # refused in __init__
@pytest.mark.parametrize("max_burst", [0, 3, 12, 512, -4, 2.0, True])
def test_reader_max_burst_refused(max_burst):
    with pytest.raises(ValueError):
        BulkReader(ADDR_WIDTH, 32, COUNT_BITS, max_burst=max_burst)
    gc.collect()                        # the refused reader's warning now, under the filter


def test_reader_error_flag():
    bad = {1500}
    reqs = [(1400, 200), (0, 10)]
    got, errors, mem, _ = run_reads(32, reqs, seed=5, bad=bad)
    assert errors == [1, 0]                             # cleared by the next request
    assert got[0] == expected_read(mem, 1400, 200)      # the words come all the same


def run_writes(data_width: int, requests: list[tuple[int, int]], *, seed: int,
               outstanding: int = 2, stall: float = 0.4, offer: float = 0.7,
               latency: int = 6, bad: set[int] = frozenset()):
    """Run ``requests`` through a BulkWriter against the model, the words offered on ``i``
    one stream for all requests (plus spare words after the last); returns (the offered
    words, words taken, error flag per request, the model)."""
    rng = random.Random(seed)
    dut = BulkWriter(ADDR_WIDTH, data_width, COUNT_BITS, outstanding=outstanding)
    mem = AxiMemory(dut.bus, data_width, rng, outstanding=outstanding, stall=stall,
                    latency=latency, bad=bad)
    total = sum(c for _, c in requests)
    stream = [rng.getrandbits(data_width) for _ in range(total + 8)]
    taken = 0
    errors: list[int] = []

    async def tb(ctx):
        nonlocal taken
        presenting = False
        for addr, count in requests:
            ctx.set(dut.req.payload.addr, addr)
            ctx.set(dut.req.payload.count, count)
            ctx.set(dut.req.valid, 1)
            accepted, start = False, taken
            while True:
                assert mem.cycle < MAX_CYCLES, f"request {addr}+{count} hangs"
                mem.drive(ctx)
                if not presenting:
                    presenting = rng.random() < offer
                ctx.set(dut.i.valid, presenting)
                ctx.set(dut.i.payload, stream[taken])
                if accepted and ctx.get(dut.done):
                    assert not ctx.get(dut.busy)
                    assert taken - start == count, f"done after {taken - start} of {count}"
                    assert mem.responses_pending() == 0 and not mem.b_queue, \
                        "done before every write response"
                    errors.append(ctx.get(dut.error))
                    break
                req_taken = not accepted and ctx.get(dut.req.ready)
                if presenting and ctx.get(dut.i.ready):
                    assert accepted, "a word taken before the request"
                    taken += 1
                    presenting = False
                mem.sample(ctx)
                await ctx.tick()
                if req_taken:
                    accepted = True
                    ctx.set(dut.req.valid, 0)
                    assert ctx.get(dut.busy) and not ctx.get(dut.done)
        for _ in range(20):                             # idle: spare words stay put
            mem.drive(ctx)
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, stream[taken])
            assert not ctx.get(dut.i.ready) and not ctx.get(dut.bus.awvalid)
            assert not ctx.get(dut.bus.wvalid)
            mem.sample(ctx)
            await ctx.tick()

    run_amaranth(dut, tb)
    return stream, taken, errors, mem


def check_written(mem: AxiMemory, requests, stream: list[int], data_width: int) -> None:
    """Memory holds each request's share of the stream at its addresses, written by the
    fewest bursts, in order."""
    bursts = [b for b in mem.bursts if b[0] == "w"]
    pos, final = 0, {}
    for addr, count in requests:
        final.update(zip(range(addr, addr + count), stream[pos:pos + count]))
        pos += count
        need = min_bursts(addr, count, data_width)
        mine, bursts = bursts[:need], bursts[need:]
        covered = [a for _, s, n in mine for a in range(s, s + n)]
        assert covered == list(range(addr, addr + count)), (addr, count, mine)
    assert not bursts, f"extra write bursts {bursts}"
    assert {a: mem.words[a] for a in final} == final


@pytest.mark.parametrize("seed", [1, 2])
def test_writer_stores_the_stream_under_random_stalls(seed):
    reqs = READS_32
    stream, taken, errors, mem = run_writes(32, reqs, seed=seed)
    assert taken == sum(c for _, c in reqs)             # the spare words stay in the stream
    assert errors == [0] * len(reqs)
    check_written(mem, reqs, stream, 32)


def test_writer_wide_bus_single_outstanding():
    reqs = [(100, 300), (127, 2), (0, 0), (511, 1)]
    stream, taken, errors, mem = run_writes(256, reqs, seed=6, outstanding=1)
    assert taken == 303
    check_written(mem, reqs, stream, 256)
    assert max(n for _, _, n in mem.bursts) == 128


def test_writer_error_flag():
    reqs = [(1000, 100), (0, 10), (2000, 5)]
    stream, _, errors, mem = run_writes(32, reqs, seed=7, bad={1050})
    assert errors == [1, 0, 0]                          # cleared by the next request
    check_written(mem, reqs, stream, 32)


def test_writer_keeps_bursts_open_within_outstanding():
    """1024-bit words (32 to a 4 KiB page, so 32-beat bursts) and write responses up to 100
    cycles late: both sides run into the limit of two open bursts and stay within it."""
    reqs = [(0, 200), (40, 70)]
    stream, taken, errors, mem = run_writes(1024, reqs, seed=8, stall=0.1, offer=0.9,
                                            latency=100)
    check_written(mem, reqs, stream, 1024)
    assert mem.max_open_addrs == 2 and mem.max_open_writes == 2
