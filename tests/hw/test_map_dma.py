"""Amaranth-simulator tests of the map mover (``hw/map_dma.py``): runs of map words loaded
from and stored to the Python AXI4 subordinate of ``test_bulk_port.py`` (seeded random
stalls on every channel, random latency, every AR/AW checked against the burst rules, the
handshake rule checked on every manager-driven channel) and a Python map memory that returns
the word at the previous cycle's ``rd_addr`` every cycle. The expected map memory and bulk
memory after a sequence of requests come from the test's own model of the layout (map word
``i`` is bus words ``bulk + i*k ..``, lowest bits first, zeros above ``word_bits``), never
from the mover."""

from __future__ import annotations

import gc
import random
import re
from dataclasses import dataclass, field

import pytest
from amaranth.back import verilog

from dynfix.hw.map_dma import MapDma

from sim_helpers import run_amaranth
from test_bulk_port import AxiMemory, min_bursts
from test_weight_ring import FixedLatencyMemory

#: Byte address bits of the test bus.
ADDR_WIDTH = 20
#: Map memory address bits (512 words) and request count bits.
FMAP_BITS, COUNT_BITS = 9, 10
FMAP_DEPTH = 1 << FMAP_BITS
#: The cycle limit of one simulation: far more than any run needs.
MAX_CYCLES = 40_000
#: (word_bits, bus_bits): three beats a word; one; two; a word narrower than the bus; three
#: beats with 4 unused bits in the last.
WIDTHS = [(48, 16), (32, 32), (64, 32), (12, 32), (20, 8)]

#: A request: (store, fmap, bulk, count).
Request = tuple[int, int, int, int]


def k_of(word_bits: int, bus_bits: int) -> int:
    return -(-word_bits // bus_bits)


def page_of(bus_bits: int) -> int:
    """Bus words in a 4 KiB page."""
    return 4096 * 8 // bus_bits


def beats_of(word: int, word_bits: int, bus_bits: int) -> list[int]:
    """The bus words of one map word: lowest bits first, zeros above ``word_bits``."""
    assert 0 <= word < 1 << word_bits
    mask = (1 << bus_bits) - 1
    return [(word >> (j * bus_bits)) & mask for j in range(k_of(word_bits, bus_bits))]


def expect(word_bits: int, bus_bits: int, fmap: list[int], bulk: dict[int, int],
           requests: list[Request]) -> tuple[list[int], dict[int, int]]:
    """The map memory and the bulk memory after ``requests``, in order, from ``fmap`` and
    ``bulk``."""
    fm, bk = list(fmap), dict(bulk)
    k = k_of(word_bits, bus_bits)
    for store, f, b, count in requests:
        for i in range(count):
            a = (f + i) % FMAP_DEPTH
            if store:
                bk.update(zip(range(b + i * k, b + i * k + k),
                              beats_of(fm[a], word_bits, bus_bits)))
            else:
                word = sum(bk[b + i * k + j] << (j * bus_bits) for j in range(k))
                fm[a] = word & ((1 << word_bits) - 1)
    return fm, bk


@dataclass
class Record:
    """One request's cycles (handshake, done), its ``error`` at done, and the model's
    bursts (index ranges into the read and write model's ``bursts``) and beats."""
    taken: int = -1
    done: int = -1
    error: int = -1
    r_bursts: tuple[int, int] = (0, 0)
    w_bursts: tuple[int, int] = (0, 0)
    r_beats: list[int] = field(default_factory=list)
    w_beats: list[int] = field(default_factory=list)


@dataclass
class Run:
    fmap: list[int]
    mem_r: AxiMemory
    mem_w: AxiMemory
    records: list[Record]
    errors: list[int]            # ``error`` per cycle


def run_dma(word_bits: int, bus_bits: int, requests: list[Request], *, seed: int,
            fmap: list[int], bulk: dict[int, int], stall: float = 0.3, latency: int = 6,
            bad_r: set[int] = frozenset(), bad_w: set[int] = frozenset(),
            outstanding: int = 2, fixed: int | None = None, gaps: tuple = (0, 0, 1, 3),
            ) -> Run:
    """Run ``requests`` through a MapDma against the read and write model (sharing one dict
    of bus words, ``bulk`` at first) and a Python map memory (``fmap`` at first). Each
    request is offered ``gaps``-random cycles after the previous one's ``done`` (0: in the
    ``done`` cycle itself). ``fixed``: every read burst's data that many cycles after its
    AR. Checks every cycle: ``req.ready`` is ``~busy``; ``done`` comes once per request,
    with ``busy`` low; ``busy`` is high from the cycle after a request of a nonzero count
    is taken until ``done``; the map memory is written only by a LOAD, at its addresses in
    order; no bus activity and no write while idle."""
    rng = random.Random(seed)
    dut = MapDma(word_bits, FMAP_BITS, ADDR_WIDTH, bus_bits, COUNT_BITS,
                 outstanding=outstanding)
    assert dut.beats_per_word == k_of(word_bits, bus_bits)
    common = dict(outstanding=outstanding, stall=stall, latency=latency)
    if fixed is None:
        mem_r = AxiMemory(dut.rbus, bus_bits, rng, bad=set(bad_r), **common)
    else:
        mem_r = FixedLatencyMemory(dut.rbus, bus_bits, rng, bad=set(bad_r), fixed=fixed,
                                   **common)
    mem_w = AxiMemory(dut.wbus, bus_bits, rng, bad=set(bad_w), **common)
    mem_r.words = dict(bulk)
    mem_w.words = mem_r.words
    fm = list(fmap)
    records = [Record() for _ in requests]
    errors: list[int] = []

    async def tb(ctx):
        nxt, cur, wait_until, written = 0, None, 0, 0
        rd_prev = 0
        finished_at = None
        for cycle in range(MAX_CYCLES):
            mem_r.drive(ctx)
            mem_w.drive(ctx)
            ctx.set(dut.rd_data, fm[rd_prev])
            busy, done, error = ctx.get(dut.busy), ctx.get(dut.done), ctx.get(dut.error)
            errors.append(error)
            if done:
                assert cur is not None, f"done without a request in cycle {cycle}"
                assert not busy, "busy in the done cycle"
                rec = records[cur]
                assert cycle > rec.taken
                store, _, _, count = requests[cur]
                if not store:
                    assert written == count, f"done after {written} of {count} words"
                rec.done, rec.error = cycle, error
                rec.r_bursts = (rec.r_bursts[0], len(mem_r.bursts))
                rec.w_bursts = (rec.w_bursts[0], len(mem_w.bursts))
                assert not mem_r.ar and mem_r.r_beat is None, "done with reads in flight"
                assert mem_w.responses_pending() == 0, "done before every write response"
                cur, wait_until = None, cycle + rng.choice(gaps)
            elif cur is not None:
                assert busy == (requests[cur][3] != 0), f"busy {busy} in cycle {cycle}"
            else:
                assert not busy
            if cur is None:
                assert not ctx.get(dut.rbus.arvalid) and not ctx.get(dut.wbus.awvalid)
                assert not ctx.get(dut.wbus.wvalid) and not ctx.get(dut.wr_en)
            offer = cur is None and nxt < len(requests) and cycle >= wait_until
            if offer:
                store, f, b, count = requests[nxt]
                ctx.set(dut.req.payload.store, store)
                ctx.set(dut.req.payload.fmap, f)
                ctx.set(dut.req.payload.bulk, b)
                ctx.set(dut.req.payload.count, count)
            else:                               # random payload: to be ignored
                ctx.set(dut.req.payload.store, rng.getrandbits(1))
                ctx.set(dut.req.payload.count, rng.getrandbits(COUNT_BITS))
            ctx.set(dut.req.valid, offer)
            assert ctx.get(dut.req.ready) == (not busy)
            taken = offer and not busy
            write = None
            if ctx.get(dut.wr_en):
                assert cur is not None and not requests[cur][0], "a write outside a LOAD"
                _, f, _, count = requests[cur]
                assert written < count, "a write past the count"
                assert ctx.get(dut.wr_addr) == (f + written) % FMAP_DEPTH
                write = (ctx.get(dut.wr_addr), ctx.get(dut.wr_data))
                written += 1
            rd_next = ctx.get(dut.rd_addr)
            if mem_r.r_beat is not None and ctx.get(dut.rbus.rready):
                assert cur is not None, "a read beat while idle"
                records[cur].r_beats.append(cycle)
            if ctx.get(dut.wbus.wvalid) and mem_w.wready:
                assert cur is not None, "a write beat while idle"
                records[cur].w_beats.append(cycle)
            mem_r.sample(ctx)
            mem_w.sample(ctx)
            await ctx.tick()
            rd_prev = rd_next
            if write is not None:
                fm[write[0]] = write[1]
            if taken:
                cur, written = nxt, 0
                rec = records[cur]
                rec.taken = cycle
                rec.r_bursts, rec.w_bursts = (len(mem_r.bursts), 0), (len(mem_w.bursts), 0)
                nxt += 1
            if nxt == len(requests) and cur is None:
                if finished_at is None:
                    finished_at = cycle
                elif cycle - finished_at >= 20:     # idle a while: nothing moves
                    return
        raise AssertionError("the run hangs")

    run_amaranth(dut, tb)
    return Run(fm, mem_r, mem_w, records, errors)


def check_run(run: Run, word_bits: int, bus_bits: int, requests: list[Request],
              fmap: list[int], bulk: dict[int, int]) -> None:
    """The map and bulk memory are as :func:`expect` says, no other bus word was touched,
    and each request's bursts cover exactly its bus words, in order, in the fewest bursts
    (none for a LOAD on the write port or a STORE on the read port)."""
    want_fm, want_bk = expect(word_bits, bus_bits, fmap, bulk, requests)
    for a, (got, want) in enumerate(zip(run.fmap, want_fm)):
        assert got == want, f"map word {a}: {got:#x}, expected {want:#x}"
    assert set(run.mem_r.words) == set(want_bk), "a bus word outside the requests"
    for a in sorted(want_bk):
        got, want = run.mem_r.words[a], want_bk[a]
        assert got == want, f"bus word {a}: {got:#x}, expected {want:#x}"
    k = k_of(word_bits, bus_bits)
    for (store, _, b, count), rec in zip(requests, run.records):
        assert rec.done > rec.taken >= 0
        mem, (lo, hi) = (run.mem_w, rec.w_bursts) if store else (run.mem_r, rec.r_bursts)
        other = rec.r_bursts if store else rec.w_bursts
        assert other[0] == other[1], "bursts on the other port"
        mine = mem.bursts[lo:hi]
        assert len(mine) == min_bursts(b, count * k, bus_bits), (b, count, mine)
        covered = [a for _, s, n in mine for a in range(s, s + n)]
        assert covered == list(range(b, b + count * k)), (b, count, mine)
        beats = rec.w_beats if store else rec.r_beats
        assert len(beats) == count * k


def random_setup(word_bits: int, bus_bits: int, rng: random.Random,
                 sources: list[tuple[int, int]]) -> tuple[list[int], dict[int, int]]:
    """A random map memory, and random bus words (all bits, so junk above ``word_bits``)
    at the bus words of ``sources`` ((bulk, count) of each LOAD that reads words no STORE
    wrote)."""
    k = k_of(word_bits, bus_bits)
    fmap = [rng.getrandbits(word_bits) for _ in range(FMAP_DEPTH)]
    bulk = {}
    for b, count in sources:
        bulk.update((a, rng.getrandbits(bus_bits)) for a in range(b, b + count * k))
    return fmap, bulk


def mixed_requests(word_bits: int, bus_bits: int) -> tuple[list[Request], list]:
    """STOREs and LOADs of 0, 1, a few and many words, runs across 4 KiB boundaries, a run
    wrapping around the map memory's end, and a STORE whose words a later LOAD reads back
    to another place. Returns the requests and the (bulk, count) of the LOADs reading
    preloaded bus words."""
    k, page = k_of(word_bits, bus_bits), page_of(bus_bits)
    a = page - 20 * k - 1                           # 40 words across the first boundary
    c = 3 * page - 7                                # a LOAD source across the third one
    x = 5 * page + 3
    long_at = 7 * page - 50 * k                     # 120 words (more than 256 beats if k = 3)
    reqs = [
        (1, 10, a, 40),
        (0, 300, c, 30),
        (1, 77, x + 500, 0),
        (0, 5, x + 600, 0),
        (0, 200, c + 100 * k, 1),
        (1, 201, x + 700, 1),
        (1, 100, x, 60),                            # round trip: out ...
        (0, 400, x, 60),                            # ... and back elsewhere
        (1, 250, long_at, 120),
        (0, 500, c + 40 * k, 20),                   # wraps to map words 0 .. 7
        (0, 130, a + 10 * k, 20),                   # reads back part of the first STORE
    ]
    sources = [(c, 30), (c + 100 * k, 1), (c + 40 * k, 20)]
    return reqs, sources


@pytest.mark.parametrize("word_bits, bus_bits", WIDTHS)
def test_loads_and_stores_under_random_stalls(word_bits, bus_bits):
    reqs, sources = mixed_requests(word_bits, bus_bits)
    rng = random.Random(word_bits * 1000 + bus_bits)
    fmap, bulk = random_setup(word_bits, bus_bits, rng, sources)
    run = run_dma(word_bits, bus_bits, reqs, seed=word_bits + bus_bits, fmap=fmap, bulk=bulk)
    check_run(run, word_bits, bus_bits, reqs, fmap, bulk)
    assert [r.error for r in run.records] == [0] * len(reqs)
    for (store, _, _, count), rec in zip(reqs, run.records):
        if count == 0:                              # finishes at once
            assert rec.done == rec.taken + 1, (store, rec.taken, rec.done)


@pytest.mark.parametrize("word_bits, bus_bits", [(48, 16), (12, 32)])
def test_store_then_load_gives_the_words_back(word_bits, bus_bits):
    """Map words 20 .. 219 go out across a 4 KiB boundary and come back to 300 .. 499,
    without stalls and then with many: both times they equal the original words (and the
    bus words equal their layout, the unused bits 0)."""
    k, page = k_of(word_bits, bus_bits), page_of(bus_bits)
    b = 2 * page - 33 * k
    reqs = [(1, 20, b, 200), (0, 300, b, 200)]
    for seed, stall in ((21, 0.0), (22, 0.6)):
        rng = random.Random(seed)
        fmap, bulk = random_setup(word_bits, bus_bits, rng, [])
        run = run_dma(word_bits, bus_bits, reqs, seed=seed, fmap=fmap, bulk=bulk,
                      stall=stall)
        assert run.fmap[300:500] == fmap[20:220]
        assert run.fmap[:300] == fmap[:300] and run.fmap[500:] == fmap[500:]
        for i in range(200):
            word = fmap[20 + i]
            for j in range(k):
                got = run.mem_r.words[b + i * k + j]
                assert got == (word >> (j * bus_bits)) & ((1 << bus_bits) - 1), (i, j)
        check_run(run, word_bits, bus_bits, reqs, fmap, bulk)


def test_slverr_sets_error_until_the_next_request():
    """One read beat of a LOAD and one write response of a STORE come with SLVERR: each
    request's ``error`` is high at its ``done`` and stays high until the next request is
    taken, which clears it; the words move all the same. The requests after each error
    are OKAY ones (and a count-0 one)."""
    word_bits, bus_bits = 48, 16
    k = 3
    load_b, store_b = 1000, 3000
    reqs = [(0, 10, load_b, 30), (1, 50, 5000, 0), (0, 100, load_b + 40 * k, 5),
            (1, 200, store_b, 50), (1, 300, store_b + 60 * k, 8)]
    rng = random.Random(31)
    fmap, bulk = random_setup(word_bits, bus_bits, rng, [(load_b, 30), (load_b + 40 * k, 5)])
    run = run_dma(word_bits, bus_bits, reqs, seed=31, fmap=fmap, bulk=bulk, stall=0.3,
                  bad_r={load_b + 17 * k + 1}, bad_w={store_b + 20 * k})
    check_run(run, word_bits, bus_bits, reqs, fmap, bulk)
    assert [r.error for r in run.records] == [1, 0, 0, 1, 0]
    recs = run.records
    for i in (0, 3):
        # From done until the next request's handshake: high; the cycle after: low.
        held = run.errors[recs[i].done:recs[i + 1].taken + 1]
        assert all(held), i
        assert run.errors[recs[i + 1].taken + 1] == 0, i
        assert not any(run.errors[recs[i].taken + 1:recs[i].taken + 3]), i
    assert not any(run.errors[recs[4].taken + 1:])


def throughput(word_bits: int, bus_bits: int, requests: list[Request], *,
               latency: int) -> Run:
    """``requests`` without any stall: read data ``latency`` cycles after each AR, write
    responses the cycle after a burst's last beat, each request the cycle after the
    previous one's ``done``."""
    rng = random.Random(41)
    sources = [(b, n) for store, _, b, n in requests if not store]
    fmap, bulk = random_setup(word_bits, bus_bits, rng, sources)
    run = run_dma(word_bits, bus_bits, requests, seed=41, fmap=fmap, bulk=bulk, stall=0.0,
                  latency=1, fixed=latency, gaps=(1,))
    check_run(run, word_bits, bus_bits, requests, fmap, bulk)
    return run


@pytest.mark.parametrize("word_bits, bus_bits", [(48, 16), (32, 32)])
def test_full_bus_rate(word_bits, bus_bits):
    """A long LOAD and a long STORE across 4 KiB boundaries, no stalls. LOAD: with two
    bursts in flight the ``count * k`` beats come on consecutive cycles, and ``done`` comes
    at most ``count * k + latency + 4`` cycles after the handshake (the reader registers the
    request and the first burst's length, its AR goes out 2 cycles after the handshake, the
    data ``latency`` cycles later; the last word is written with the last beat, the reader
    goes idle 2 cycles later and ``done`` follows). STORE: one beat a cycle except one idle
    W cycle at each burst's start (the writer's; the first word is read while the writer
    starts), and ``done`` at most ``count * k + bursts + 4`` cycles after the handshake (the
    last burst's response the cycle after its last beat, the writer idle 2 cycles later,
    then ``done``)."""
    k, page, latency = k_of(word_bits, bus_bits), page_of(bus_bits), 8
    n = 900 // k
    b = page - 100
    reqs = [(0, 0, b, n), (1, 0, 2 * page - 70, n)]
    run = throughput(word_bits, bus_bits, reqs, latency=latency)
    load, store = run.records
    beats = n * k
    assert load.r_beats[-1] - load.r_beats[0] == beats - 1          # no gap at all
    assert load.done - load.taken <= beats + latency + 4, load.done - load.taken
    bursts = min_bursts(2 * page - 70, beats, bus_bits)
    assert bursts == 5                  # up to a boundary, two of 256 beats, the rest
    assert store.w_beats[-1] - store.w_beats[0] <= beats + bursts - 2
    assert store.done - store.taken <= beats + bursts + 4, (store.done - store.taken, bursts)


def test_count_zero_and_one_back_to_back():
    """Requests offered in the ``done`` cycle of the one before: zeros and single words in
    both directions, with k = 2."""
    word_bits, bus_bits = 64, 32
    reqs = [(0, 1, 100, 0), (1, 2, 200, 1), (0, 3, 200, 1), (1, 4, 300, 0), (0, 5, 102, 1),
            (1, 6, 104, 2), (0, 7, 104, 2)]
    rng = random.Random(51)
    fmap, bulk = random_setup(word_bits, bus_bits, rng, [(100, 2)])
    run = run_dma(word_bits, bus_bits, reqs, seed=51, fmap=fmap, bulk=bulk, gaps=(0,))
    check_run(run, word_bits, bus_bits, reqs, fmap, bulk)
    recs = run.records
    assert all(recs[i + 1].taken == recs[i].done for i in range(len(reqs) - 1))
    assert run.fmap[3] == fmap[2] and run.fmap[7:9] == fmap[6:8]


@pytest.mark.filterwarnings("ignore:.*created but never used")
@pytest.mark.parametrize("kwargs", [
    dict(word_bits=0), dict(fmap_addr_bits=0), dict(bus_bits=12), dict(bus_bits=2048),
    dict(count_bits=0), dict(outstanding=0), dict(addr_width=1),
])
def test_constructor_errors(kwargs):
    args = dict(word_bits=48, fmap_addr_bits=9, addr_width=16, bus_bits=16, count_bits=8)
    args.update(kwargs)
    with pytest.raises(ValueError):
        MapDma(**args)
    gc.collect()                # the refused object's warning, here where it is filtered


@pytest.mark.parametrize("word_bits, bus_bits", [(48, 16), (12, 32)])
def test_converts_to_verilog(word_bits, bus_bits):
    from dynfix.hw.generate import ensure_yosys     # the engine's module: import it late
    ensure_yosys()
    text = verilog.convert(MapDma(word_bits, FMAP_BITS, ADDR_WIDTH, bus_bits, COUNT_BITS),
                           name="t", emit_src=False)
    assert "module t" in text
    assert re.search(rf"input\s+\[{word_bits - 1}:0\]\s*rd_data\s*;", text)
    assert re.search(rf"output\s+\[{word_bits - 1}:0\]\s*wr_data\s*;", text)
    assert re.search(rf"output\s+\[{bus_bits - 1}:0\]\s*wbus__wdata\s*;", text)
    assert re.search(r"input\s+rbus__rvalid\s*;", text)
