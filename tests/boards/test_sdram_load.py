"""The board's SDRAM: the clock phase from the timing budget (``boards/sdram_clock.py``), the
I/O registers (``boards/sdram_phy.py``) and the power-up copy of the weight image from the SPI
flash (``boards/sdram_load.py``), in Amaranth's simulator against the cycle-level flash and
chip models of the tests."""

from __future__ import annotations

import random

import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from dynfix.boards.byte_packer import BytePacker
from dynfix.boards.flash_image import (FLASH_OFFSET, HEADER_BYTES, FlashCoding, flash_header,
                                       flash_image, stored_payload)
from dynfix.boards.sdram_clock import ECP5_IO, sdram_clock, sdram_max_hz
from dynfix.boards.sdram_load import SdramLoad
from dynfix.boards.sdram_phy import IO_LATENCY, SdramPhy
from dynfix.errors import DynfixError
from dynfix.hw.axi import AxiWriteSignature, axi_halves
from dynfix.hw.sdram_axi import IS42S16160, SdramAxi, SdramPart, SdramTiming
from sdram_pins import ChipClock, PinSdram, clock_chip
from test_spi_flash_reader import TickFlash

#: 4 banks of 16 rows of 16 columns, so the image crosses rows and banks.
PART = SdramPart("tiny", row_bits=4, col_bits=4, bank_bits=2, t_rcd=15, t_rp=15, t_ras=42,
                 t_rc=60, t_wr=14, t_rfc=60, t_refi=7812.5, t_init=100_000)
TIMING = SdramTiming(t_rcd=2, t_rp=2, t_ras=4, t_rc=6, t_wr=2, t_rfc=5, t_refi=90, t_init=30,
                     t_mrd=2, cas=2)
CLK_HZ = 12_000_000


@pytest.mark.parametrize("mhz, cas, lo, hi, phase", [
    # CL2 (a period of at least 10 ns): t_ac 6.0. lo = max(t_ih + skew = 1.3,
    # t_co + 2 board + t_ac - T + t_su = 12.1 - T); hi = min(T - t_is - skew = T - 2.0,
    # t_co_min + t_oh - t_h = 4.2); the phase lags by 360 (1 - lead / T).
    (50, 2, 1.3, 4.2, 360 * (1 - 2.75 / 20)),
    (100, 2, 2.1, 4.2, 360 * (1 - 3.15 / 10)),
    # CL3 above 100 MHz: t_ac 5.4, lo = 11.5 - T.
    (115, 3, 11.5 - 1e3 / 115, 4.2, 360 * (1 - (11.5 - 1e3 / 115 + 4.2) / 2 / (1e3 / 115))),
])
def test_the_phase_is_the_middle_of_the_window(mhz, cas, lo, hi, phase):
    c = sdram_clock(IS42S16160, mhz * 1e6)
    assert c.cas == cas
    assert c.lead_lo_ns == pytest.approx(lo) and c.lead_hi_ns == pytest.approx(hi)
    assert c.phase_deg == pytest.approx(phase)
    assert c.margin_ns == pytest.approx((hi - lo) / 2)
    assert c.to_dict()["cas_latency"] == cas


def test_too_fast_a_clock_names_the_highest_that_works():
    """CL3's window closes to 2 x 0.5 ns at 11.5 - T = 4.2 - 1: T = 8.3 ns, 120.48 MHz."""
    assert sdram_max_hz(IS42S16160, ECP5_IO) == pytest.approx(120.4e6)
    with pytest.raises(DynfixError, match=r"no SDRAM clock phase .* at most 120\.4 MHz"):
        sdram_clock(IS42S16160, 125e6)
    with pytest.raises(DynfixError, match=r"runs at most 143 MHz, not 150 MHz.*120\.4 MHz"):
        sdram_clock(IS42S16160, 150e6)


def test_byte_packer_makes_little_endian_words():
    dut = BytePacker(4)
    data = bytes(random.Random(3).getrandbits(8) for _ in range(24))
    got = []

    async def bench(ctx):
        rng = random.Random(5)
        i = 0
        while len(got) < len(data) // 4:
            ctx.set(dut.i.valid, i < len(data) and rng.random() < 0.7)
            ctx.set(dut.i.payload, data[i] if i < len(data) else 0)
            ctx.set(dut.o.ready, rng.random() < 0.6)
            await ctx.delay(1e-9)
            took = ctx.get(dut.i.valid) and ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                got.append(ctx.get(dut.o.payload))
            await ctx.tick()
            i += took

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == [int.from_bytes(data[k:k + 4], "little") for k in range(0, len(data), 4)]


def _rig(payload: bytes, dw: int, coding: FlashCoding = FlashCoding.NONE):
    m = Module()
    m.submodules.load = load = SdramLoad(AxiWriteSignature(11, dw), payload, clk_hz=CLK_HZ,
                                         coding=coding)
    m.submodules.ctrl = ctrl = SdramAxi(11, dw, part=PART, timing=TIMING,
                                        io_latency=IO_LATENCY)
    m.submodules.phy = phy = SdramPhy(PART)
    _, writes = axi_halves(ctrl.bus)
    wiring.connect(m, load.bus, writes)
    wiring.connect(m, ctrl.sdram, phy.ctrl)
    return m, load, ctrl, phy


@pytest.mark.parametrize("dw, coding", [(16, FlashCoding.NONE), (32, FlashCoding.NONE),
                                       (16, FlashCoding.HUFFMAN)])
def test_the_flash_image_lands_in_the_sdram_and_reads_back(dw, coding):
    """Power-up: the flash's payload, packed into bus words, is written from address 0
    through the controller and the PHY's registers; ``loaded`` rises after the last write
    response; the chip saw no broken rule; an INCR burst then reads every word back through
    the PHY's two registers. A Huffman-coded image is decoded on the way."""
    rng = random.Random(dw)
    nb = dw // 8
    words = [rng.getrandbits(dw) for _ in range(48)]         # 48 x dw crosses rows
    payload = b"".join(w.to_bytes(nb, "little") for w in words)
    m, load, ctrl, phy = _rig(payload, dw, coding)
    image = flash_image(payload, coding=coding)
    flash = TickFlash(load, image, FLASH_OFFSET)
    chip = PinSdram(TIMING, PART.col_bits)
    seen = {}

    async def bench(ctx):
        bus = ctrl.bus
        clock = ChipClock(ctx, chip, phy.pins, 20_000)
        tick = clock.tick
        while not ctx.get(load.loaded):
            assert not ctx.get(load.error)
            await tick()
        seen["loaded_at"] = clock.cycle
        for sig, value in ((bus.araddr, 0), (bus.arlen, len(words) - 1),
                           (bus.arsize, nb.bit_length() - 1), (bus.arburst, 1),
                           (bus.arvalid, 1), (bus.rready, 1)):
            ctx.set(sig, value)
        while not ctx.get(bus.arready):
            await tick()
        await tick()
        ctx.set(bus.arvalid, 0)
        got = []
        while len(got) < len(words):
            if ctx.get(bus.rvalid):
                got.append(ctx.get(bus.rdata))
            await tick()
        seen["got"] = got

    flash.simulate(m, bench)
    assert chip.errors == []
    assert seen["got"] == words
    stored = [chip.mem.get(((w >> 8) & 3, (w >> 4) & 15, w & 15), None)
              for w in range(len(payload) // 2)]
    assert stored == [int.from_bytes(payload[2 * k:2 * k + 2], "little")
                      for k in range(len(payload) // 2)]
    header = len(flash_header(payload, coding=coding))
    last_byte = 390 + 16 * (header - HEADER_BYTES + len(stored_payload(payload, coding)) - 1)
    assert last_byte < seen["loaded_at"] < last_byte + 40


def test_a_wrong_flash_header_writes_nothing():
    payload = bytes(range(64))
    m, load, ctrl, phy = _rig(payload, 16)
    image = bytearray(flash_image(payload))
    image[12] ^= 1
    flash = TickFlash(load, bytes(image), FLASH_OFFSET)
    chip = PinSdram(TIMING, PART.col_bits)

    async def bench(ctx):
        pins = phy.pins
        for cycle in range(1, 2500):
            await ctx.tick()
            clock_chip(ctx, chip, pins, cycle)
        assert ctx.get(load.error) and not ctx.get(load.loaded)

    flash.simulate(m, bench)
    assert chip.errors == [] and chip.mem == {}
