"""The Huffman decoder of coded flash images (``boards/huffman_decoder.py``) in Amaranth's
simulator against the Python encoder (``quant/huffman.py``): random, skewed and one-value
payloads, random stalls on both sides, the stop at the decoded length, the rate of a bit a
cycle; the coded reader (flash reader + decoder) against the cycle-level flash model; the
decoder's Verilog through Verilator's lint."""

from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from dynfix.boards.coded_flash_reader import CodedFlashReader
from dynfix.boards.flash_image import (FLASH_OFFSET, MAX_CODE_BITS, FlashCoding,
                                       coded_payload, flash_image, image_reader)
from dynfix.boards.huffman_decoder import HuffmanDecoder, check_decoder
from dynfix.quant.huffman import huffman_encode, huffman_lengths
from test_spi_flash_reader import TickFlash

CLK_HZ = 12_000_000


def run_decoder(lengths, coded: bytes, count: int, *, valid_p: float = 1.0,
                ready_p: float = 1.0, seed: int = 0, max_cycles: int = 200_000) -> dict:
    """``coded`` into a :class:`HuffmanDecoder` of ``lengths`` and ``count`` bytes, the
    source offering a byte with probability ``valid_p`` a cycle (and holding it until it
    is taken), the sink taking one with ``ready_p``; runs until ``done``, then offers the
    rest of ``coded`` (it must all be taken, nothing more come out). Returns the bytes out,
    the bytes taken in, the cycle ``done`` rose and how often an offered byte changed
    before it was taken."""
    dut = HuffmanDecoder(lengths, count)
    rng = random.Random(seed)
    seen = {"out": bytearray(), "taken": 0, "changed": 0, "done_at": None}

    async def bench(ctx):
        k, offered, held = 0, False, None
        for cycle in range(max_cycles):
            if not offered and k < len(coded):
                offered = rng.random() < valid_p
            ctx.set(dut.i.valid, offered)
            ctx.set(dut.i.payload, coded[k] if offered else 0)
            ready = rng.random() < ready_p
            ctx.set(dut.o.ready, ready)
            await ctx.delay(1e-9)
            valid, payload = ctx.get(dut.o.valid), ctx.get(dut.o.payload)
            if valid and held is not None and payload != held:
                seen["changed"] += 1
            held = payload if valid and not ready else None
            if valid and ready:
                seen["out"].append(payload)
            if offered and ctx.get(dut.i.ready):
                k, offered = k + 1, False
            await ctx.tick()
            if ctx.get(dut.done):
                seen["done_at"] = cycle + 1
                break
        else:
            raise AssertionError(f"not done within {max_cycles} cycles")
        for _ in range(9 * (len(coded) - k) + 20):      # the rest is dropped
            ctx.set(dut.o.ready, 1)
            ctx.set(dut.i.valid, k < len(coded))
            ctx.set(dut.i.payload, coded[k] if k < len(coded) else 0)
            await ctx.delay(1e-9)
            assert not ctx.get(dut.o.valid) and ctx.get(dut.done)
            if k < len(coded) and ctx.get(dut.i.ready):
                k += 1
            await ctx.tick()
        seen["taken"] = k

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


def coded_of(data: bytes):
    c = coded_payload(data)
    return c.lengths, c.coded


def deep(seed: int) -> bytes:
    """Byte values with Fibonacci counts (1, 1, 2, 3, 5, ... 610): an optimal code's words
    reach 14 bits, so the 12-bit limit binds."""
    fib = [1, 1]
    while len(fib) < 15:
        fib.append(fib[-1] + fib[-2])
    values = [v for v, n in zip(range(3, 256, 17), fib) for _ in range(n)]
    random.Random(seed).shuffle(values)
    return bytes(values)


def skewed(n: int, seed: int) -> bytes:
    """Bytes like small 8-bit weights: a two-sided geometric around 0, rare large ones."""
    rng = np.random.default_rng(seed)
    v = np.clip(np.round(rng.laplace(0, 6, n)), -128, 127).astype(np.int64)
    return (v & 0xFF).astype(np.uint8).tobytes()


@pytest.mark.parametrize("kind, n, valid_p, ready_p, seed", [
    ("random", 300, 1.0, 1.0, 1),
    ("random", 200, 0.5, 0.4, 2),
    ("skewed", 600, 1.0, 1.0, 3),
    ("skewed", 500, 0.3, 0.7, 4),
    ("deep", 0, 1.0, 1.0, 5),
    ("deep", 0, 0.7, 0.5, 6),
])
def test_decodes_the_encoders_stream_under_stalls(kind, n, valid_p, ready_p, seed):
    """Every byte comes out once, in order, whatever the stalls; an offered byte stays put
    until taken; ``done`` rises after the last one; every coded byte is taken."""
    data = {"random": lambda: random.Random(seed).randbytes(n),
            "skewed": lambda: skewed(n, seed), "deep": lambda: deep(seed)}[kind]()
    lengths, coded = coded_of(data)
    if kind != "random":
        assert len(coded) < 0.7 * len(data)
    if kind == "deep":
        counts = np.bincount(np.frombuffer(data, np.uint8), minlength=256)
        assert max(huffman_lengths(counts)) > MAX_CODE_BITS == max(lengths)
    res = run_decoder(lengths, coded, len(data), valid_p=valid_p, ready_p=ready_p, seed=seed)
    assert bytes(res["out"]) == data
    assert res["changed"] == 0 and res["taken"] == len(coded)


def test_one_value_payload():
    """One byte value: a 1-bit code (the word 0); the padding bits after the last one are
    dropped, not decoded."""
    data = bytes([0x5A]) * 77
    lengths, coded = coded_of(data)
    assert lengths[0x5A] == 1 and sum(lengths) == 1 and coded == bytes(10)
    res = run_decoder(lengths, coded, len(data), ready_p=0.5, seed=6)
    assert bytes(res["out"]) == data and res["taken"] == 10


def test_stops_at_the_decoded_length():
    """Bytes beyond the decoded length (more code words, then garbage) are taken and
    dropped: exactly ``count`` bytes come out, and ``done`` stays."""
    data = skewed(300, 7)
    lengths, coded = coded_of(data)
    more = coded + coded_of(data)[1] + bytes(random.Random(8).randbytes(40))
    res = run_decoder(lengths, more, 200, valid_p=0.8, ready_p=0.8, seed=9)
    assert bytes(res["out"]) == data[:200] and res["taken"] == len(more)


def test_a_bit_a_cycle():
    """Source and sink always ready: the coded bits take one cycle each (a new byte is
    taken in the cycle the last bit of the one before is used), then one cycle to show
    the last byte."""
    data = random.Random(10).randbytes(400)
    lengths, coded = coded_of(data)
    nbits = sum(lengths[b] for b in data)
    res = run_decoder(lengths, coded, len(data))
    assert bytes(res["out"]) == data
    assert res["done_at"] == nbits + 2


def test_a_hand_made_code():
    """A code of lengths 1, 2, 3, 3 for bytes 0, 1, 2, 3: the words 0, 10, 110, 111
    (canonical), so b"\\x00\\x01\\x02\\x03\\x00" is 0 10 110 111 0 = 0x5B 0x80."""
    lengths = [1, 2, 3, 3] + [0] * 252
    data = bytes([0, 1, 2, 3, 0])
    assert huffman_encode(np.frombuffer(data, np.uint8), lengths) == (bytes([0x5B, 0x80]), 10)
    res = run_decoder(lengths, bytes([0x5B, 0x80]), 5)
    assert bytes(res["out"]) == data


def test_bad_parameters():
    with pytest.raises(ValueError, match="256 code lengths"):
        check_decoder([1, 1], 4)
    with pytest.raises(ValueError, match="at least one of them positive"):
        check_decoder([0] * 256, 4)
    with pytest.raises(ValueError, match="Kraft"):
        check_decoder([1, 1, 1] + [0] * 253, 4)
    with pytest.raises(ValueError, match="at least 1 byte"):
        check_decoder([1] + [0] * 255, 0)


def test_coded_reader_reads_a_coded_image():
    """:func:`image_reader` of a coded image: the reader checks the coded header, streams
    the coded bytes (and never the code after them), and the decoded payload comes out
    under random backpressure; ``done`` rises after the last decoded byte."""
    payload = skewed(600, 11)
    dut = image_reader(payload, None, clk_hz=CLK_HZ, coding=FlashCoding.HUFFMAN)
    assert isinstance(dut, CodedFlashReader)
    flash = TickFlash(dut, flash_image(payload, coding=FlashCoding.HUFFMAN), FLASH_OFFSET)
    seen = run_reader_boot(dut, flash, ready_p=0.3)
    assert seen["data"] == payload and not seen["error"]
    # The flash was read once, for the header and the coded bytes (+1 started).
    [(sent, _, _)] = [t for t in flash.log if len(t[0]) > 1]
    assert sent[:4] == bytes([0x03, 0x10, 0, 0])


def run_reader_boot(dut, flash: TickFlash, ready_p: float) -> dict:
    """Take the booting reader's bytes with probability ``ready_p`` a cycle until ``done``
    or ``error``."""
    rng = random.Random(12)
    seen = {"data": bytearray(), "error": None}

    async def bench(ctx):
        for _ in range(400_000):
            ready = rng.random() < ready_p
            ctx.set(dut.o.ready, ready)
            if ctx.get(dut.o.valid) and ready:
                seen["data"].append(ctx.get(dut.o.payload))
            await ctx.tick()
            if ctx.get(dut.done) or ctx.get(dut.error):
                break
        seen["error"] = ctx.get(dut.error)
        seen["data"] = bytes(seen["data"])

    flash.simulate(dut, bench)
    return seen


@pytest.mark.usefixtures("verilator")
def test_verilog_lints_clean(tmp_path):
    """The decoder's Verilog (with its symbol memory) through Verilator's lint with only the
    waived classes, for a payload's code and a one-value code."""
    from amaranth.back import verilog

    from dynfix.hw.generate import ensure_yosys
    from dynfix.hw.lint import lint

    ensure_yosys()
    payload = skewed(2000, 13)
    duts = {"decoder": lambda: HuffmanDecoder(coded_of(payload)[0], len(payload)),
            "one": lambda: HuffmanDecoder(coded_of(bytes(9))[0], 9)}
    for name, make in duts.items():
        path = tmp_path / f"{name}.v"
        path.write_text(verilog.convert(make(), name=name, emit_src=False,
                                        strip_internal_attrs=True))
        rc, out = lint(path)
        assert rc == 0, out
