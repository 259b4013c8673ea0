"""Amaranth-simulator tests of the datapath blocks: adder tree, requantizer, max-pool, map
walker."""

from __future__ import annotations

import numpy as np
import pytest

from dynfix.hw.adder_tree import AdderTree
from dynfix.hw.map_walker import MapWalker
from dynfix.hw.max_pool import MaxPool
from dynfix.hw.requantizer import Requantizer
from dynfix.quant.layers.leaky_relu import leak
from dynfix.quant import fixed

from sim_helpers import requantize_stream, run_amaranth


@pytest.mark.parametrize("n", [1, 2, 5, 9, 18])
def test_adder_tree_sums_with_its_latency(n):
    width = 9
    rng = np.random.default_rng(n)
    vectors = rng.integers(-(1 << (width - 1)), 1 << (width - 1), (40, n))
    vectors[0] = -(1 << (width - 1))                    # extremes: no overflow
    vectors[1] = (1 << (width - 1)) - 1
    dut = AdderTree(width, n)
    got = []

    async def tb(ctx):
        for step in range(len(vectors) + dut.latency):
            if step < len(vectors):
                for j, v in enumerate(vectors[step]):
                    ctx.set(dut.i[j], int(v))
            if dut.latency == 0:                     # a single input: a wire
                await ctx.delay(1e-9)
                got.append(ctx.get(dut.o))
                continue
            await ctx.tick()
            if step >= dut.latency - 1:
                got.append(ctx.get(dut.o))

    run_amaranth(dut, tb)
    assert dut.latency == int(np.ceil(np.log2(n)))
    assert got[:len(vectors)] == vectors.sum(axis=1).tolist()


def clamp_bounds(out_bits: int, rng) -> list[tuple[int, int]]:
    """Clamp ranges inside the ``out_bits`` range, as the compiler makes them: the saturation
    alone, ReLU, a ReLU6-like top, a one-point range, a range of negatives, a random one."""
    qmin, qmax = fixed.qmin(out_bits), fixed.qmax(out_bits)
    a, b = sorted(int(v) for v in rng.integers(qmin, qmax + 1, 2))
    return [(qmin, qmax), (0, qmax), (0, qmax // 2 + 1), (a, a), (qmin, -1), (a, b)]


def requant_cases(acc_bits: int, data_bits: int, rng) -> list[tuple[int, int, int, int, list]]:
    """(shift, out_bits, lo, hi, accs): random values plus rounding ties and saturation
    edges, each clamped to several ranges inside the ``out_bits`` range."""
    lo, hi = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1
    cases = []
    for shift in list(range(-data_bits, 8)) + [acc_bits - 1, acc_bits]:
        for out_bits in (2, 5, data_bits):
            accs = [lo, hi, 0, 1, -1] + rng.integers(lo, hi, 24).tolist()
            if shift > 0:
                half = 1 << (shift - 1)
                for k in (-3, -1, 0, 2, 5):          # exact .5 ties on both signs
                    accs.append(k * (1 << shift) + half)
                edge = ((1 << (out_bits - 1)) << shift) - half
                accs += [edge - 1, edge, -edge, -edge - 1]   # around the saturation point
            elif shift < 0:
                edge = (1 << (out_bits - 1)) >> -shift
                accs += [edge - 1, edge, -edge, -edge - 1]
            accs = [max(lo, min(hi, a)) for a in accs]
            for c_lo, c_hi in clamp_bounds(out_bits, rng):
                # around both bounds (in the accumulator's scale when shifting right)
                near = [max(lo, min(hi, shift_back(v, shift)))
                        for b in (c_lo, c_hi) for v in (b - 1, b, b + 1)]
                cases.append((shift, out_bits, c_lo, c_hi, accs + near))
    return cases


def shift_back(v: int, shift: int) -> int:
    """An accumulator value that the data shift maps to ``v``."""
    return v << shift if shift > 0 else v >> -shift


def check_requantizer(offsets: bool, rounding: bool, cases: list[tuple],
                      slope: tuple[int, int] | None = None) -> None:
    """Run ``(zp, shift, out_bits, lo, hi, accs)`` cases (20-bit accumulator values) through
    an 8-bit-output requantizer and compare with ``clamp(fixed.requantize(acc, shift,
    out_bits, zp), lo, hi)`` (``zp`` only with ``offsets``; 0 otherwise). Without
    ``rounding`` the requantizer gets ``acc + 2**(shift-1)`` for a right shift, as the
    engine's accumulator holds it, at one bit more (the headroom the compiler gives the
    accumulator where the sum needs it). With ``slope`` ``(a, s)``, the LeakyReLU stage too:
    ``leak(v - zp, a, s) + zp`` of the clamped value."""
    dut = Requantizer(20 + (not rounding), 8, shift_bits=6, offsets=offsets, rounding=rounding,
                      slope=slope is not None)
    got = []

    async def tb(ctx):
        for zp, shift, _, c_lo, c_hi, accs in cases:
            ctx.set(dut.shift, shift)
            ctx.set(dut.lo, c_lo)
            ctx.set(dut.hi, c_hi)
            if offsets:
                ctx.set(dut.zp, zp)
            if slope is not None:
                ctx.set(dut.slope_a, slope[0])
                ctx.set(dut.slope_s, slope[1])
            await ctx.tick()            # the shift's decodes (and offset bounds) are registered
            got.append(await requantize_stream(ctx, dut, accs, shift, rounding))

    run_amaranth(dut, tb)
    for (zp, shift, out_bits, c_lo, c_hi, accs), res in zip(cases, got):
        want = np.clip(fixed.requantize(np.array(accs), shift, out_bits, zp), c_lo, c_hi)
        if slope is not None:
            want = leak(want - zp, *slope) + zp
        assert res == want.tolist(), (zp, shift, out_bits, c_lo, c_hi)


@pytest.mark.parametrize("rounding", [True, False], ids=["rounding", "constant-in-acc"])
def test_requantizer_matches_fixed_requantize_then_clamp(rounding):
    """The clamp range inside the output width does the saturation, ReLU and Clip at once;
    the rounding constant added in the requantizer or already in the accumulator (the
    engine's) gives the same results."""
    cases = requant_cases(20, 8, np.random.default_rng(0))
    check_requantizer(False, rounding, [(0, *c) for c in cases])


@pytest.mark.parametrize("rounding", [True, False], ids=["rounding", "constant-in-acc"])
def test_requantizer_with_offsets_matches_fixed_requantize_then_clamp(rounding):
    """With ``offsets``: ``clamp(shift_round(acc) + zp, lo, hi)`` for a signed (zp 0) and an
    unsigned (zp = qmin) output map, the unsigned one also with its ReLU range
    ``[zp, qmax]``."""
    rng = np.random.default_rng(3)
    cases = [(zp, *c) for c in requant_cases(20, 8, rng) for zp in (0, fixed.qmin(c[1]))]
    cases += [(fixed.qmin(c[1]), c[0], c[1], fixed.qmin(c[1]), fixed.qmax(c[1]), c[4])
              for c in requant_cases(20, 8, rng)]
    check_requantizer(True, rounding, cases)


def test_max_pool_windows_and_bypass():
    dut = MaxPool(8, 2)
    rng = np.random.default_rng(1)
    # (window size, values): size 1 is the bypass; invalid cycles are interleaved
    windows = [(4, rng.integers(-128, 128, (4, 2))) for _ in range(6)]
    windows += [(1, rng.integers(-128, 128, (1, 2))) for _ in range(4)]
    windows += [(4, np.full((4, 2), -128))]
    got = []

    async def tb(ctx):
        for size, vals in windows:
            for k, row in enumerate(vals):
                ctx.set(dut.valid, 1)
                ctx.set(dut.first, k == 0)
                ctx.set(dut.last, k == size - 1)
                for j, v in enumerate(row):
                    ctx.set(dut.i[j], int(v))
                await ctx.tick()
                if ctx.get(dut.o_valid):
                    got.append([ctx.get(dut.o[j]) for j in range(2)])
                ctx.set(dut.valid, 0)
                ctx.set(dut.i[0], 127)                   # ignored while not valid
                await ctx.tick()
                if ctx.get(dut.o_valid):
                    got.append([ctx.get(dut.o[j]) for j in range(2)])

    run_amaranth(dut, tb)
    assert got == [vals.max(axis=0).tolist() for _, vals in windows]


@pytest.mark.parametrize("channels,pixels,words,lanes", [(1, 5, 1, 9), (11, 3, 2, 9),
                                                         (20, 2, 3, 9), (4, 4, 1, 4)])
def test_map_walker_channel_order(channels, pixels, words, lanes):
    base = 7
    dut = MapWalker(addr_bits=8, dim_bits=6, lanes=lanes)
    got = []

    async def tb(ctx):
        ctx.set(dut.base, base)
        ctx.set(dut.words, words)
        ctx.set(dut.channels, channels)
        ctx.set(dut.pixels, pixels)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        stall = False
        while ctx.get(dut.active):
            stall = not stall                        # step every other cycle
            ctx.set(dut.step, not stall)
            if not stall:
                got.append((ctx.get(dut.addr), ctx.get(dut.lane), ctx.get(dut.last)))
            await ctx.tick()

    run_amaranth(dut, tb)
    want = [(base + p * words + c // lanes, c % lanes, c == channels - 1 and p == pixels - 1)
            for c in range(channels) for p in range(pixels)]
    assert got == want


def test_residual_add_matches_int_model_add():
    """(a << sa) + (b << sb), rounded by the Add's data shift and clamped, against the integer
    model's add_sum + narrow + clamp; with en = 0 the stage passes a through."""
    from dataclasses import replace

    from dynfix.hw.config import EngineConfig
    from dynfix.hw.residual_add import ResidualAdd
    from dynfix.quant.int_model import add_sum, narrow
    from dynfix.quant.qspec import AddFormat

    cfg = replace(EngineConfig(tn=4, tm=3), data_bits=8, add_align=3, residual=1)
    dut = ResidualAdd(cfg)
    rng = np.random.default_rng(1)
    cases = []
    for fl_a, fl_b, fl_out in [(3, 4, 2), (4, 3, 6), (5, 5, 5), (2, 5, 4), (5, 2, 1), (4, 4, 7)]:
        fmt = AddFormat("add", bw_in=(8, 8), fl_in=(fl_a, fl_b), bw_x=8, fl_out=fl_out)
        lo, hi = sorted(rng.integers(-128, 128, 2).tolist()) if rng.random() < 0.5 else (-128, 127)
        a = rng.integers(-128, 128, (40, 3))
        b = rng.integers(-128, 128, (40, 3))
        cases.append((fmt, lo, hi, a, b))
    got = []

    async def tb(ctx):
        for fmt, lo, hi, a, b in cases:
            for en in (1, 0):
                sa, sb = fmt.align
                ctx.set(dut.en, en)
                ctx.set(dut.sa, sa if en else 0)
                ctx.set(dut.sb, sb)
                ctx.set(dut.shift, fmt.data_shift if en else 0)
                ctx.set(dut.lo, lo if en else -128)
                ctx.set(dut.hi, hi if en else 127)
                await ctx.tick()        # the shift's decodes are registered
                res = []
                for step in range(len(a) + dut.latency):
                    row = min(step, len(a) - 1)
                    for j in range(3):
                        ctx.set(dut.a[j], int(a[row, j]))
                        ctx.set(dut.b[j], int(b[row, j]))
                    await ctx.tick()
                    if step >= dut.latency - 1 and len(res) < len(a):
                        res.append([ctx.get(dut.o[j]) for j in range(3)])
                got.append(np.array(res))

    run_amaranth(dut, tb)
    for i, (fmt, lo, hi, a, b) in enumerate(cases):
        want = np.clip(narrow(add_sum(a, b, fmt), fmt), lo, hi)
        np.testing.assert_array_equal(got[2 * i], want, err_msg=str(fmt))
        np.testing.assert_array_equal(got[2 * i + 1], a)


@pytest.mark.parametrize("slope", [(128, 8), (205, 11), (164, 14), (255, 20), (1, 0)],
                         ids=["half", "0.1", "0.01", "tiny", "identity"])
@pytest.mark.parametrize("offsets", [False, True], ids=["signed", "offsets"])
def test_requantizer_slope_stage_matches_the_integer_leaky_relu(slope, offsets):
    """With the slope stage: the clamped value's LeakyReLU (rounded half up) in the map's
    format, the integer model's ``leak``; ``(1, 0)`` passes every value (no LeakyReLU in
    the group)."""
    rng = np.random.default_rng(5)
    cases = requant_cases(20, 8, rng)
    cases = [(zp, *c) for c in cases for zp in ((0, fixed.qmin(c[1])) if offsets else (0,))]
    check_requantizer(offsets, False, cases, slope=slope)
