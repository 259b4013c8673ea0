"""Amaranth-simulator tests of the weight ring (``hw/weight_ring.py``): the bulk-memory
layout helpers by hand, then the ring against the Python AXI4 subordinate of
``test_bulk_port.py`` (seeded random stalls and latency, every AR checked against the burst
rules) and a Python consumer. Each ``start`` pulse asks for one pass over the image's first
``words`` words; the consumer walks tiles of the pass, reads every word of a tile through
``addr`` / ``data`` in a shuffled order and checks it against the test's own image, never
the ring's. Every cycle the ring must hold no more than ``depth`` words past ``rd_ptr`` (no
needed word overwritten); between passes nothing may be read from the bus."""

from __future__ import annotations

import gc
import random
import re
from dataclasses import dataclass, field

import pytest
from amaranth.back import verilog

from dynfix.hw.axi import BOUNDARY_BYTES, MAX_BURST_BEATS, RESP_OKAY
from dynfix.hw.generate import ensure_yosys
from dynfix.hw.weight_ring import WeightRing, beats_per_word, bulk_image

from sim_helpers import run_amaranth
from test_bulk_port import AxiMemory

#: Byte address bits of the test bus.
ADDR_WIDTH = 16
#: The cycle limit of one simulation: far more than any run needs.
MAX_CYCLES = 20_000
#: (word_bits, bus_bits): one beat a word; three beats; two; three with 4 unused high bits.
WIDTHS = [(32, 32), (48, 16), (128, 64), (20, 8)]


def test_beats_per_word():
    assert beats_per_word(32, 32) == 1
    assert beats_per_word(48, 16) == 3
    assert beats_per_word(128, 64) == 2
    assert beats_per_word(20, 8) == 3
    assert beats_per_word(8, 64) == 1
    assert beats_per_word(65, 64) == 2


def test_bulk_image_by_hand():
    assert bulk_image([0xABCDE, 0x12345], 20, 8) == [0xDE, 0xBC, 0x0A, 0x45, 0x23, 0x01]
    assert bulk_image([0x1234_5678_9ABC], 48, 16) == [0x9ABC, 0x5678, 0x1234]
    assert bulk_image([0xDEADBEEF, 7], 32, 32) == [0xDEADBEEF, 7]
    assert bulk_image([0x3FF], 10, 8) == [0xFF, 0x03]
    assert bulk_image([], 20, 8) == []
    with pytest.raises(ValueError):
        bulk_image([1 << 20], 20, 8)


@pytest.mark.filterwarnings("ignore:.*created but never used")   # refused in __init__
@pytest.mark.parametrize("kwargs", [
    dict(depth=3), dict(depth=0), dict(depth=1), dict(depth=12),
    dict(image_words=0), dict(word_bits=0),
    # 8 byte-address bits of a 32-bit bus: 64 bus words; 64-bit engine words take two.
    dict(image_words=33), dict(image_words=32, base=1),
])
def test_constructor_errors(kwargs):
    args = dict(word_bits=64, depth=4, image_words=8, bus_bits=32, addr_width=8)
    args.update(kwargs)
    with pytest.raises(ValueError):
        WeightRing(**args)


@pytest.mark.filterwarnings("ignore:.*created but never used")   # never elaborated here
def test_image_filling_the_address_space_is_accepted():
    WeightRing(word_bits=64, depth=4, image_words=32, bus_bits=32, addr_width=8)
    WeightRing(word_bits=64, depth=4, image_words=31, bus_bits=32, addr_width=8, base=2)


@pytest.mark.parametrize("word_bits, bus_bits", [(32, 32), (20, 8)])
def test_converts_to_verilog(word_bits, bus_bits):
    ensure_yosys()
    text = verilog.convert(WeightRing(word_bits, 8, 10, bus_bits, ADDR_WIDTH, base=3),
                           name="t", emit_src=False)
    assert "module t" in text
    # The pass ports: a one-bit start, and words of 4 bits (up to image_words = 10).
    assert re.search(r"input\s+start\s*;", text), "no one-bit start input"
    assert re.search(r"input\s+\[3:0\]\s*words\s*;", text), "no four-bit words input"


def test_no_multiplier_for_a_word_of_three_beats():
    """A word of three bus beats (48 bits over 16): the beat counts (``words * 3``, the
    credit gate's ``fill * 3``) are shifts and adds, so synthesis has no ``$mul`` to put
    on a DSP block (an engine may use every one)."""
    from amaranth.back import rtlil
    text = rtlil.convert(WeightRing(48, 8, 10, 16, ADDR_WIDTH, credit=True), name="t")
    assert "$mul" not in text


class FixedLatencyMemory(AxiMemory):
    """The model with every burst's first beat exactly ``fixed`` cycles after its AR."""

    def __init__(self, *args, fixed: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.fixed = fixed

    def sample(self, ctx) -> None:
        before, cycle = len(self.bursts), self.cycle
        super().sample(ctx)
        if len(self.bursts) > before:
            _, a, n = self.ar[-1]
            self.ar[-1] = (cycle + self.fixed, a, n)


def random_tiles(rng: random.Random, total: int, depth: int) -> list[int]:
    """A random split of ``total`` words into tiles of 1 .. ``depth`` words."""
    tiles = []
    while total:
        t = rng.randint(1, min(depth, total))
        tiles.append(t)
        total -= t
    return tiles


def credit_tile(depth: int, k: int, max_burst: int) -> int:
    """The most words a consumer may wait for at once from a ring with ``credit``: a burst
    is asked for only once all its beats fit, so up to ``max_burst - 1`` beats past the
    words waited for must fit too."""
    return depth - -(-(max_burst - 1) // k)


def next_burst(addr: int, left: int, bus_bits: int, max_burst: int) -> int:
    """Beats of the burst a reader limited to ``max_burst`` asks for next from bus word
    ``addr`` with ``left`` to go: the burst rules of ``hw/axi.py``, by hand."""
    page = BOUNDARY_BYTES * 8 // bus_bits
    return min(left, max_burst, MAX_BURST_BEATS, page - addr % page)


@dataclass
class RingRun:
    """What a run saw. Per cycle from the first: ``error``, and the words of the current
    pass written. The cycles of each ``start`` pulse, AR handshake (in the order of the
    model's ``bursts``) and R beat taken; the cycle the SLVERR beat went through; the words
    read and checked in each pass; the ring's ``max_burst``."""
    mem: AxiMemory
    bad_cycle: int | None = None
    errors: list[int] = field(default_factory=list)
    written: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    ars: list[int] = field(default_factory=list)
    beats: list[int] = field(default_factory=list)
    reads: list[int] = field(default_factory=list)
    max_burst: int | None = None


def run_ring(word_bits: int, bus_bits: int, depth: int, image_words: int, *, seed: int,
             passes: list[int] | None = None, holds: list[int] | None = None, base: int = 0,
             stall: float = 0.3, latency: int = 6, read_stall: float = 0.3,
             bad: frozenset = frozenset(), outstanding: int = 2,
             credit: bool = False) -> RingRun:
    """Stream a seeded random image through a WeightRing against the model, one pass of
    ``passes[p]`` words per ``start`` pulse (default: the whole image, three fifths of it,
    the whole image again). ``words`` is set for the pulse only and random at other times.

    A consumer drives ``rd_ptr`` to 0 with each pulse and walks random tiles of the pass,
    reading every word of a tile in a shuffled order and checking it against the test's own
    image. Midway through each pass it pauses until the ring must be full; once a pass is
    consumed it idles for as long again, in which ``arvalid`` must stay low and ``wr_ptr``
    still, and then pulses ``start`` for the next pass. Every cycle the ring may hold no
    more than ``depth`` words past ``rd_ptr``, and ``wr_ptr`` moves by at most one.

    ``enable`` is low for ``holds[p]`` cycles from the pulse of pass ``p`` (default never),
    and ``arvalid`` must stay low meanwhile. The first beat from an address in ``bad`` is
    answered with SLVERR.

    With ``credit`` the tiles are at most the largest the ring promises to deliver
    (:func:`credit_tile`), and every cycle: the bursts of the pass never reserve more than
    the ring holds past ``rd_ptr`` (``k`` beats a word), ``rready`` is high whenever
    ``rvalid`` is, and no burst is longer than ``max_burst``; after the pause the ring holds
    every beat asked for, and the next burst (if any) would not fit: the gate lets through
    all that fits."""
    rng = random.Random(seed)
    k = beats_per_word(word_bits, bus_bits)
    wrap = 2 * depth
    if passes is None:
        passes = [image_words, image_words * 3 // 5, image_words]
    holds = holds or [0] * len(passes)
    image = [rng.getrandbits(word_bits) for _ in range(image_words)]
    dut = WeightRing(word_bits, depth, image_words, bus_bits, ADDR_WIDTH, base=base,
                     outstanding=outstanding, credit=credit)
    mem = AxiMemory(dut.bus, bus_bits, rng, outstanding=outstanding, stall=stall,
                    latency=latency, bad=set(bad))
    tile_max = credit_tile(depth, k, dut.max_burst) if credit else depth
    mem.words = dict(enumerate(bulk_image(image, word_bits, bus_bits), start=base))
    spare = k * bus_bits - word_bits
    for i in range(image_words):                # junk in the unused bits: to be ignored
        mem.words[base + i * k + k - 1] |= rng.getrandbits(spare) << (bus_bits - spare)
    tail = 50 + 3 * depth * k                   # enough cycles for the ring to fill
    run = RingRun(mem, max_burst=dut.max_burst)

    async def tb(ctx):
        p, words = -1, 0                        # the pass (none yet) and its words
        written, last_wr, rd = 0, 0, 0          # words of the pass
        tiles, tile_i, ops, pending = [], 0, None, None
        pause_tile, pause_end = None, None
        idle_from, idle_wr = 0, 0               # no pass before the first: start at once
        asked, recv = 0, 0                      # bus words of the pass asked for, received
        for cycle in range(MAX_CYCLES):
            mem.drive(ctx)
            ctx.set(dut.start, 0)
            ctx.set(dut.words, rng.randrange(1 << len(dut.words)))
            wr = ctx.get(dut.wr_ptr)
            step = (wr - last_wr) % wrap
            assert step in (0, 1), f"wr_ptr jumped by {step} in cycle {cycle}"
            written, last_wr = written + step, wr
            assert written <= words, f"{written} words written of a {words}-word pass"
            assert written - rd <= depth, f"{written - rd} words in a {depth}-word ring"
            assert (wr - ctx.get(dut.rd_ptr)) % wrap == written - rd
            run.written.append(written)
            run.errors.append(ctx.get(dut.error))
            if pending is not None:
                n, want = pending
                got = ctx.get(dut.data)
                assert got == want, f"word {n} of pass {p}: {got:#x}, expected {want:#x}"
                run.reads[p] += 1
                pending = None
            idle = tile_i == len(tiles)
            if idle and cycle - idle_from >= (tail if p >= 0 else 0):
                if p + 1 == len(passes):
                    return
                p, words = p + 1, passes[p + 1]
                ctx.set(dut.start, 1)
                ctx.set(dut.words, words)
                ctx.set(dut.rd_ptr, 0)
                run.starts.append(cycle)
                run.reads.append(0)
                written, last_wr, rd, asked, recv = 0, 0, 0, 0, 0
                tiles, tile_i = random_tiles(rng, words, tile_max), 0
                # Pause at a tile boundary with a full ring's worth still to come, midway
                # through those.
                ahead = [i for i in range(len(tiles)) if sum(tiles[i:]) >= min(depth, words)]
                pause_tile, pause_end = ahead[len(ahead) // 2], None
                idle = False
            elif idle:
                assert wr == idle_wr, f"wr_ptr moved in cycle {cycle}, after pass {p}"
            elif tile_i == pause_tile and pause_end is None:
                pause_end = cycle + tail
            elif tile_i == pause_tile and cycle < pause_end:
                pass
            elif tile_i == pause_tile:
                if credit:
                    assert recv == asked, f"{asked - recv} beats still owed after a pause"
                    nxt = next_burst(base + asked, words * k - asked, bus_bits, dut.max_burst)
                    assert asked + nxt > (rd + depth) * k or not nxt, \
                        f"a {nxt}-beat burst held back with {asked} beats asked for, word {rd}"
                else:
                    assert written - rd == min(depth, words - rd), \
                        f"{written - rd} words in the ring after a pause at word {rd} of {words}"
                pause_tile = None
            else:
                t = tiles[tile_i]
                if ops is None and written - rd >= t and rng.random() >= read_stall:
                    ops = list(range(t)) + rng.sample(range(t), (t + 1) // 2)
                    rng.shuffle(ops)
                if ops is not None and not ops:             # all read and checked
                    rd += t
                    ctx.set(dut.rd_ptr, rd % wrap)
                    tile_i, ops = tile_i + 1, None
                    if tile_i == len(tiles):
                        idle_from, idle_wr = cycle, wr
                elif ops and rng.random() >= read_stall:
                    n = rd + ops.pop()
                    ctx.set(dut.addr, n % depth)
                    pending = (n, image[n])
            enable = p < 0 or cycle >= run.starts[p] + holds[p]
            ctx.set(dut.enable, enable)
            if idle or not enable:
                assert not ctx.get(dut.bus.arvalid), \
                    f"arvalid in cycle {cycle}, " + ("after a pass" if idle else "enable low")
            if ctx.get(dut.bus.arvalid) and mem.arready:
                run.ars.append(cycle)
                asked += ctx.get(dut.bus.arlen) + 1
                if credit:
                    assert ctx.get(dut.bus.arlen) < dut.max_burst
                    assert asked <= (rd + depth) * k, \
                        f"{asked} beats asked for with the ring free up to word {rd + depth}"
            r_beat = mem.r_beat
            if credit and r_beat is not None:
                assert ctx.get(dut.bus.rready), f"rready low under rvalid in cycle {cycle}"
            if r_beat is not None and ctx.get(dut.bus.rready):
                recv += 1
                run.beats.append(cycle)
                if r_beat[2] != RESP_OKAY:
                    assert run.bad_cycle is None
                    run.bad_cycle = cycle
                    mem.bad = set()
            mem.sample(ctx)
            await ctx.tick()
        raise AssertionError("the run hangs")

    run_amaranth(dut, tb)
    return run


def check_passes(run: RingRun, base: int, k: int, passes: list[int]) -> None:
    """Every pass was started, and between its pulse and the next (or the run's end) the
    ARs read exactly its bus words in order from ``base``, each beat of them came, none
    came later, and every word was read (the model has checked each AR against the burst
    rules)."""
    assert len(run.starts) == len(passes)
    assert len(run.ars) == len(run.mem.bursts)
    assert not run.ars or run.ars[0] >= run.starts[0]
    ends = run.starts[1:] + [len(run.written)]
    for p, (s, e) in enumerate(zip(run.starts, ends)):
        bursts = [b for c, b in zip(run.ars, run.mem.bursts) if s <= c < e]
        beats = [c for c in run.beats if s <= c < e]
        pos = 0
        for kind, a, n in bursts:
            assert kind == "r" and a == base + pos, (p, a, n, pos)
            pos += n
        assert pos == passes[p] * k, f"pass {p}: {pos} bus words asked for"
        assert len(beats) == passes[p] * k, f"pass {p}: {len(beats)} beats"
        assert max(c for c in run.ars if s <= c < e) < beats[-1]
        assert run.reads[p] >= passes[p]


def pass_bursts(run: RingRun) -> list[list[int]]:
    """The beats of each AR, per pass."""
    ends = run.starts[1:] + [len(run.written)]
    return [[n for c, (_, _, n) in zip(run.ars, run.mem.bursts) if s <= c < e]
            for s, e in zip(run.starts, ends)]


@pytest.mark.parametrize("depth", [4, 16])
@pytest.mark.parametrize("word_bits, bus_bits", WIDTHS)
def test_ring_streams_each_pass_under_random_stalls(word_bits, bus_bits, depth):
    """The whole image, a prefix of three fifths of it, the whole image again."""
    k = beats_per_word(word_bits, bus_bits)
    image_words, base = 37, 5 + depth
    passes = [image_words, 22, image_words]
    run = run_ring(word_bits, bus_bits, depth, image_words, passes=passes, base=base,
                   seed=word_bits * 100 + depth)
    check_passes(run, base, k, passes)
    assert not any(run.errors)


def test_ring_image_across_4k_in_several_bursts():
    """16-bit bus words (2048 to a 4 KiB page), 48-bit engine words: an image of 450 bus
    words from 61 below a page boundary, read in bursts of 61, 256 and 133; a pass over
    three fifths of it (270 bus words) in bursts of 61 and 209."""
    image_words, base = 150, 3 * 2048 - 61
    passes = [image_words, 90, image_words]
    run = run_ring(48, 16, 8, image_words, passes=passes, base=base, seed=11, stall=0.2,
                   read_stall=0.1)
    check_passes(run, base, 3, passes)
    assert pass_bursts(run) == [[61, 256, 133], [61, 209], [61, 256, 133]]
    assert not any(run.errors)


def test_enable_low_holds_a_pending_pass():
    """``start`` with ``enable`` low: no AR in the 300 cycles it stays low (``arvalid`` is
    checked every cycle in ``run_ring``), nothing written; then the pass streams. Again
    for the third pass, after a pass with ``enable`` high throughout."""
    passes = [20, 12, 20]
    run = run_ring(48, 16, 4, 20, seed=12, passes=passes, holds=[300, 0, 150])
    s0, s2 = run.starts[0], run.starts[2]
    assert run.written[s0 + 300] == 0
    assert all(s0 + 300 <= c < run.starts[1] for c in pass_ars(run, 0))
    assert all(s2 + 150 <= c for c in pass_ars(run, 2))
    check_passes(run, 0, 3, passes)


def pass_ars(run: RingRun, p: int) -> list[int]:
    """The cycles of pass ``p``'s AR handshakes."""
    end = run.starts[p + 1] if p + 1 < len(run.starts) else len(run.written)
    return [c for c in run.ars if run.starts[p] <= c < end]


def test_slverr_sets_error_and_it_stays():
    """One beat in the first pass comes with SLVERR: ``error`` rises the cycle after and
    stays high through the later passes (their ``start`` pulses included), whose beats are
    all OKAY."""
    image_words, base = 30, 100
    run = run_ring(20, 8, 8, image_words, base=base, seed=13,
                   bad=frozenset({base + 3 * 17 + 1}))
    check_passes(run, base, 3, [image_words, 18, image_words])
    h = run.bad_cycle
    assert h is not None and h < run.starts[1]
    assert not any(run.errors[:h + 1])
    assert all(run.errors[h + 1:])


def run_throughput(word_bits: int, bus_bits: int, image_words: int, passes: list[int], *,
                   latency: int, outstanding: int, depth: int = 4,
                   credit: bool = False) -> list[int]:
    """No stalls, every burst's data ``latency`` cycles after its AR, ``enable`` high, and
    a consumer that frees every word as soon as it is written: a pass of each of
    ``passes`` words, each pulsed a few idle cycles after the previous one's last word.
    Returns for each pass the cycles from its ``start`` pulse to the first in which
    ``wr_ptr`` shows all its words. With ``credit``, ``rready`` must be high whenever
    ``rvalid`` is."""
    rng = random.Random(14)
    image = [rng.getrandbits(word_bits) for _ in range(image_words)]
    dut = WeightRing(word_bits, depth, image_words, bus_bits, ADDR_WIDTH,
                     outstanding=outstanding, credit=credit)
    mem = FixedLatencyMemory(dut.bus, bus_bits, rng, outstanding=outstanding, stall=0.0,
                             latency=1, fixed=latency)
    mem.words = dict(enumerate(bulk_image(image, word_bits, bus_bits)))
    marks: list[int] = []

    async def tb(ctx):
        ctx.set(dut.enable, 1)
        p, started, written, last_wr, idle_from = -1, 0, 0, 0, 0
        for cycle in range(MAX_CYCLES):
            mem.drive(ctx)
            ctx.set(dut.start, 0)
            wr = ctx.get(dut.wr_ptr)
            written += (wr - last_wr) % (2 * depth)
            last_wr = wr
            if p >= 0 and len(marks) == p and written == passes[p]:
                marks.append(cycle - started)
                idle_from = cycle
            if len(marks) == p + 1 and cycle - idle_from >= 5:
                if p + 1 == len(passes):
                    return
                p, started, written, last_wr = p + 1, cycle, 0, 0
                ctx.set(dut.start, 1)
                ctx.set(dut.words, passes[p])
                ctx.set(dut.rd_ptr, 0)
            else:
                ctx.set(dut.rd_ptr, wr)                 # everything written is free again
            if credit and mem.r_beat is not None:
                assert ctx.get(dut.bus.rready), f"rready low under rvalid in cycle {cycle}"
            mem.sample(ctx)
            await ctx.tick()
        raise AssertionError("the run hangs")

    run_amaranth(dut, tb)
    return marks


def test_throughput_without_gaps_between_bursts():
    """64-bit words over a 32-bit bus, 300 of them: 600 beats in three bursts for the
    whole image, fewer for shorter passes. With two bursts in flight the beats of a pass
    follow one another without a gap: a pass of ``L`` words takes ``2 * L`` cycles after a
    fixed setup (the pulse registers the pass, the reader takes it the next cycle, registers
    the burst's length the one after and sends the AR the next, then the latency). With one
    burst in flight every burst waits for the latency and the whole image takes longer."""
    image_words, k, latency = 300, 2, 8
    setup = latency + 3
    passes = [image_words, 180, 1, image_words]
    marks = run_throughput(64, 32, image_words, passes, latency=latency, outstanding=2)
    assert marks == [setup + n * k for n in passes], marks
    slow = run_throughput(64, 32, image_words, [image_words], latency=latency,
                          outstanding=1)
    assert slow[0] > setup + image_words * k, slow


# --- credit mode: the ring asks only for bursts it can take at once -------------------------


@pytest.mark.filterwarnings("ignore:.*created but never used")   # never elaborated here
@pytest.mark.parametrize("word_bits, bus_bits, depth, max_burst", [
    (32, 32, 2, 1), (32, 32, 4, 2), (48, 16, 4, 4), (20, 8, 16, 16), (128, 64, 8, 8),
    (32, 32, 1024, 256), (8, 8, 2048, 256),
])
def test_credit_max_burst(word_bits, bus_bits, depth, max_burst):
    """The largest power of two not above half the ring in beats, and 256 at most; None
    without credit."""
    limits = [WeightRing(word_bits, depth, 4, bus_bits, ADDR_WIDTH, credit=credit).max_burst
              for credit in (True, False)]
    assert limits == [max_burst, None]
    gc.collect()                        # the rings' warnings now, under the filter


@pytest.mark.parametrize("depth", [4, 16])
@pytest.mark.parametrize("word_bits, bus_bits", WIDTHS)
def test_credit_ring_streams_each_pass_under_random_stalls(word_bits, bus_bits, depth):
    """As without credit (the same image and passes, a pause at a full ring in each), with
    tiles up to :func:`credit_tile` words; ``run_ring`` checks every cycle that ``rready`` is
    high whenever ``rvalid`` is and that no burst asks for more than the ring has free, and
    after each pause that it asked for all it had room for. The bursts are ``max_burst``
    long but where a pass or a 4 KiB page ends."""
    k = beats_per_word(word_bits, bus_bits)
    image_words, base = 37, 5 + depth
    passes = [image_words, 22, image_words]
    run = run_ring(word_bits, bus_bits, depth, image_words, passes=passes, base=base,
                   seed=word_bits * 100 + depth + 7, credit=True)
    check_passes(run, base, k, passes)
    assert not any(run.errors)
    burst = run.max_burst
    for p, bursts in enumerate(pass_bursts(run)):
        total = passes[p] * k
        assert bursts == [burst] * (total // burst) + ([total % burst] if total % burst else [])


def test_credit_ring_across_4k():
    """The 4 KiB case of ``test_ring_image_across_4k_in_several_bursts`` with credit: 24-beat
    ring, 8-beat bursts (12 would not be a power of two), the first 5 beats to the page's
    end."""
    image_words, base = 150, 3 * 2048 - 61
    passes = [image_words, 90]
    run = run_ring(48, 16, 8, image_words, passes=passes, base=base, seed=15, stall=0.2,
                   read_stall=0.1, credit=True)
    check_passes(run, base, 3, passes)
    for p, bursts in enumerate(pass_bursts(run)):
        rest = passes[p] * 3 - 61
        assert bursts == [8] * 7 + [5] + [8] * (rest // 8) + ([rest % 8] if rest % 8 else [])


def test_credit_slverr_and_enable():
    """``error`` and ``enable`` as without credit."""
    image_words, base = 30, 100
    passes = [image_words, 18, image_words]
    run = run_ring(20, 8, 8, image_words, base=base, seed=16, passes=passes,
                   holds=[0, 120, 0], bad=frozenset({base + 3 * 17 + 1}), credit=True)
    check_passes(run, base, 3, passes)
    h = run.bad_cycle
    assert h is not None and h < run.starts[1]
    assert not any(run.errors[:h + 1]) and all(run.errors[h + 1:])
    assert all(run.starts[1] + 120 <= c for c in pass_ars(run, 1))


@pytest.mark.parametrize("word_bits, bus_bits", [(32, 32), (20, 8)])
def test_credit_converts_to_verilog(word_bits, bus_bits):
    ensure_yosys()
    text = verilog.convert(WeightRing(word_bits, 8, 10, bus_bits, ADDR_WIDTH, base=3,
                                      credit=True), name="t", emit_src=False)
    assert "module t" in text


def test_credit_throughput():
    """The setup of ``test_throughput_without_gaps_between_bursts``, rings with credit and
    a consumer that frees every word as it is written. The third burst of a pass asks
    for room the first one holds until its last beat: it goes out two cycles after that
    beat and its data comes ``latency`` cycles later, while the second burst streams
    ``max_burst`` beats. So with ``latency < max_burst`` the beats still follow one another
    without a gap: exactly the cycles without credit (16-word ring, 16-beat bursts, 8 cycles
    of latency). With ``latency >= max_burst`` (8-word ring, 8-beat bursts) every two bursts
    take ``latency + max_burst + 1`` cycles: a pass of ``L`` words takes at most
    ``setup + ceil(2 * L * (latency + max_burst + 1) / (2 * max_burst))`` cycles, more than
    ``setup + 2 * L`` (``rready`` high whenever ``rvalid`` is, throughout)."""
    image_words, k, latency = 300, 2, 8
    setup = latency + 3
    passes = [image_words, 180, 1, image_words]
    fast = run_throughput(64, 32, image_words, passes, latency=latency, outstanding=2,
                          depth=16, credit=True)
    assert fast == [setup + n * k for n in passes], fast
    burst = 8
    slow = run_throughput(64, 32, image_words, passes, latency=latency, outstanding=2,
                          depth=8, credit=True)
    for n, cycles in zip(passes, slow):
        bound = setup + -(-n * k * (latency + burst + 1) // (2 * burst))
        assert cycles <= bound, (n, cycles, bound)
        assert n < 2 * burst or cycles > setup + n * k, (n, cycles)
