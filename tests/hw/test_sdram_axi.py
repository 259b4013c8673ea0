"""The AXI4 subordinate over SDR SDRAM (``hw/sdram_axi.py``) in Amaranth's simulator, against a
small cycle-level chip model written here from the SDR SDRAM rules (geometry shrunk, timing
as the controller is told): the init sequence, writes and reads across columns, banks and
rows with byte strobes and read stalls, refreshes kept up during long bursts, the command
spacing rules, the bandwidth of a long read, refused bursts."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from dynfix.hw.axi import BURST_FIXED, BURST_INCR, RESP_OKAY, RESP_SLVERR
from dynfix.hw.sdram_axi import Command, SdramAxi, SdramPart, SdramTiming
from sdram_pins import ChipClock, PinSdram

#: A small part: 4 banks of 16 rows of 16 columns (1024 words), so runs cross rows often.
PART = SdramPart("tiny", row_bits=4, col_bits=4, bank_bits=2, t_rcd=15, t_rp=15, t_ras=42,
                 t_rc=60, t_wr=14, t_rfc=60, t_refi=7812.5, t_init=100_000)
TIMING = SdramTiming(t_rcd=2, t_rp=2, t_ras=4, t_rc=6, t_wr=2, t_rfc=5, t_refi=90, t_init=30,
                     t_mrd=2, cas=2)


def run(ops: list[tuple], *, data_width: int = 16, stall: float = 0.0, seed: int = 1,
        cycles: int = 30_000):
    """The operations ``("w", byte address, [beats], [strobes])`` and ``("r", byte address,
    beats)`` in order through the port (W beats and R ready with random pauses). Returns
    the chip, what the reads returned and the cycles they and the writes (AW taken to B
    valid) took."""
    dut = SdramAxi(11, data_width, part=PART, timing=TIMING)
    chip = PinSdram(TIMING, PART.col_bits)
    rng = random.Random(seed)
    out = {"reads": [], "resps": [], "spans": [], "wspans": []}
    nb = data_width // 8

    async def bench(ctx):
        bus = dut.bus
        clock = ChipClock(ctx, chip, dut.sdram, cycles)
        tick = clock.tick

        for op in ops:
            if op[0] == "w":
                _, addr, beats, strobes = op[:4]
                ctx.set(bus.awaddr, addr)
                ctx.set(bus.awlen, len(beats) - 1)
                ctx.set(bus.awsize, nb.bit_length() - 1)
                ctx.set(bus.awburst, op[4] if len(op) > 4 else BURST_INCR)
                ctx.set(bus.awvalid, 1)
                while not ctx.get(bus.awready):
                    await tick()
                start = clock.cycle
                await tick()
                ctx.set(bus.awvalid, 0)
                i = 0
                while i < len(beats):
                    go = rng.random() >= stall
                    ctx.set(bus.wvalid, go)
                    ctx.set(bus.wdata, beats[i])
                    ctx.set(bus.wstrb, strobes[i])
                    ctx.set(bus.wlast, i == len(beats) - 1)
                    done = go and ctx.get(bus.wready)
                    await tick()
                    i += done
                ctx.set(bus.wvalid, 0)
                ctx.set(bus.bready, 1)
                while not ctx.get(bus.bvalid):
                    await tick()
                out["wspans"].append(clock.cycle - start)
                out["resps"].append(ctx.get(bus.bresp))
                await tick()
                ctx.set(bus.bready, 0)
            else:
                _, addr, n = op[:3]
                ctx.set(bus.araddr, addr)
                ctx.set(bus.arlen, n - 1)
                ctx.set(bus.arsize, nb.bit_length() - 1)
                ctx.set(bus.arburst, op[3] if len(op) > 3 else BURST_INCR)
                ctx.set(bus.arvalid, 1)
                while not ctx.get(bus.arready):
                    await tick()
                start = clock.cycle
                await tick()
                ctx.set(bus.arvalid, 0)
                got = []
                while len(got) < n:
                    ready = rng.random() >= stall
                    ctx.set(bus.rready, ready)
                    if ready and ctx.get(bus.rvalid):
                        got.append((ctx.get(bus.rdata), ctx.get(bus.rlast), ctx.get(bus.rresp)))
                    await tick()
                ctx.set(bus.rready, 0)
                out["reads"].append(got)
                out["spans"].append(clock.cycle - start)
        out["ready"] = ctx.get(dut.ready)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return chip, out


def test_writes_and_reads_across_rows_and_banks_with_strobes_and_stalls():
    """Writes of random lengths and strobes over 300 words from an odd address (crossing
    columns, banks and rows), then reads of overlapping runs, R and W pausing at random:
    every word read is what a reference image of the writes holds, every burst ends with
    rlast, no rule is broken, refreshes keep up."""
    rng = random.Random(5)
    image = [0] * 1024
    ops = []
    addr = 6
    while addr < 2 * 300:
        n = rng.randint(1, 40)
        beats = [rng.getrandbits(16) for _ in range(n)]
        strobes = [rng.choice([3, 3, 3, 1, 2]) for _ in range(n)]
        for i, (b, s) in enumerate(zip(beats, strobes)):
            w = addr // 2 + i
            image[w] = ((b & 0xFF if s & 1 else image[w] & 0xFF)
                        | (b & 0xFF00 if s & 2 else image[w] & 0xFF00))
        ops.append(("w", addr, beats, strobes))
        addr += 2 * n
    reads = [(2 * a, n) for a, n in ((3, 100), (0, 256), (150, 151), (299, 1))]
    ops += [("r", a, n) for a, n in reads]
    chip, out = run(ops, stall=0.3)
    assert chip.errors == []
    assert out["ready"] == 1 and all(r == RESP_OKAY for r in out["resps"])
    # Every word where the chip's {bank, row, column} order puts it (so a command to the
    # open row instead of the word's own, read back from there, is caught too).
    cb, rb = PART.col_bits, PART.row_bits
    for w in range(3, 300):
        key = (w >> (cb + rb), (w >> cb) & ((1 << rb) - 1), w & ((1 << cb) - 1))
        assert chip.mem.get(key) == image[w], w
    for (a, n), got in zip(reads, out["reads"]):
        assert [g[0] for g in got] == image[a // 2:a // 2 + n]
        assert [g[1] for g in got] == [0] * (n - 1) + [1]
        assert all(g[2] == RESP_OKAY for g in got)
    # The init's two refreshes, then one per t_refi (at most URGENT_REFRESHES behind).
    total = chip.last["REFRESH"]
    assert chip.refreshes >= 2 + (total - TIMING.t_init) // TIMING.t_refi - 4
    assert chip.log[:4] == [Command.PRECHARGE, Command.REFRESH, Command.REFRESH,
                            Command.LOAD_MODE]


def test_a_transaction_in_another_row_closes_the_open_one():
    """Back-to-back transactions in two rows of one bank, and one in the open row: each
    word lands at its own row and column (the controller keeps whether ``word`` lies in the
    open row as a register, set from the address at the start of a transaction)."""
    a, b = [0x1111 * (i + 1) for i in range(4)], [0x0101 * (i + 7) for i in range(4)]
    row = 2 << PART.col_bits                        # byte address of row 1's first word
    chip, out = run([("w", 0, a, [3] * 4), ("w", row, b, [3] * 4), ("w", 8, b, [3] * 4),
                     ("r", 0, 8), ("r", row, 4)])
    assert chip.errors == []
    assert [g[0] for g in out["reads"][0]] == a + b and [g[0] for g in out["reads"][1]] == b
    assert [chip.mem.get((0, 0, c)) for c in range(8)] == a + b
    assert [chip.mem.get((0, 1, c)) for c in range(4)] == b


@pytest.mark.parametrize("data_width", [16, 32])
def test_a_long_read_streams_a_word_per_cycle(data_width):
    """256 beats from a row's start with ``rready`` always high: a word per cycle but for the
    row changes (PRECHARGE, ACTIVE), refreshes and the CAS latency."""
    k = data_width // 16
    words = 256 * k
    chip, out = run([("r", 0, 256)], data_width=data_width)
    assert chip.errors == []
    rows = -(-words // (1 << PART.col_bits))
    overhead = (rows * (TIMING.t_rp + TIMING.t_rcd + TIMING.t_ras)
                + (words // TIMING.t_refi + 1) * (TIMING.t_rfc + TIMING.t_rp + TIMING.t_ras)
                + TIMING.cas + 8)
    assert words <= out["spans"][0] <= words + overhead
    assert [g[1] for g in out["reads"][0]] == [0] * 255 + [1]


@pytest.mark.parametrize("data_width", [16, 32])
def test_a_long_write_streams_a_word_per_cycle(data_width):
    """256 beats from a row's start with ``wvalid`` always high: the next beat is taken as
    the last word of the one before is written, so while a row stays open every WRITE follows
    the one before by one cycle (taking a beat only once its words are written left a cycle's
    gap after each beat), and the burst takes a word per cycle but for the row changes
    (``t_wr``, PRECHARGE, ACTIVE) and refreshes: at most ``words + overhead`` cycles, which
    on a 16-bit port is under two cycles a beat."""
    k = data_width // 16
    words = 256 * k
    beats = [(0x1234 + i) * 0x10001 % (1 << data_width) for i in range(256)]
    chip, out = run([("w", 0, beats, [(1 << 2 * k) - 1] * 256), ("r", 0, 256)],
                    data_width=data_width)
    assert chip.errors == []
    assert [g[0] for g in out["reads"][0]] == beats
    rows = -(-words // (1 << PART.col_bits))
    overhead = (rows * (TIMING.t_wr + TIMING.t_rp + TIMING.t_rcd + TIMING.t_ras)
                + (words // TIMING.t_refi + 1) * (TIMING.t_rfc + TIMING.t_rp + TIMING.t_ras)
                + 8)
    assert words <= out["wspans"][0] <= words + overhead
    assert k > 1 or words + overhead < 2 * words
    w = chip.writes
    assert len(w) == words
    assert all(b[0] - a[0] == 1 for a, b in zip(w, w[1:]) if a[1] == b[1])


def test_a_burst_other_than_incr_is_answered_slverr():
    chip, out = run([("w", 0, [1, 2], [3, 3], BURST_FIXED), ("r", 0, 2, BURST_FIXED),
                     ("r", 0, 2)])
    assert out["resps"] == [RESP_SLVERR]
    assert [g[2] for g in out["reads"][0]] == [RESP_SLVERR] * 2
    assert [g[0] for g in out["reads"][1]] == [0, 0]          # the refused write was masked
    assert chip.errors == []
