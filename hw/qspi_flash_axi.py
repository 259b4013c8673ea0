"""An AXI4 read subordinate over a quad-SPI NOR flash: the bulk memory of a board whose RAM
cannot hold the weights.

The iCEBreaker's 16 MB flash (W25Q128JV) holds the bitstream and, past it, the weight image
(``boards/flash_image.py``); all four of its IO lines reach the FPGA, so a Fast Read Quad I/O
(0xEB) moves four bits per SPI clock. The engine reads its weights once per inference, in
order (``hw/weight_ring.py``): one flash read command serves a whole pass, burst after burst,
and only a pass's first burst pays the command.
"""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

from .axi import BURST_INCR, RESP_OKAY, RESP_SLVERR, AxiReadSignature, size_code

__all__ = ["QspiFlashAxi", "FLASH_BYTES", "RELEASE_POWER_DOWN", "VOLATILE_WRITE_ENABLE",
           "WRITE_STATUS_2", "QUAD_IO_READ", "QE", "T_RES1", "T_SHSL2", "READ_MODE",
           "wake_cycles", "deselect_cycles", "check_flash_axi"]

#: A 24-bit address reaches 16 MiB: the largest flash the port reads, and the default size.
FLASH_BYTES = 1 << 24
#: W25Q128JV commands: release from deep power-down; write enable for the volatile status
#: register; write status register 2; Fast Read Quad I/O.
RELEASE_POWER_DOWN, VOLATILE_WRITE_ENABLE, WRITE_STATUS_2, QUAD_IO_READ = 0xAB, 0x50, 0x31, 0xEB
#: Status register 2's Quad Enable bit: IO2 and IO3 are data lines (not WP# and HOLD#).
QE = 0x02
#: The mode byte sent after a quad read's address: M5..4 not 0b10, so no continuous read mode
#: (every read carries its command).
READ_MODE = 0x00
#: Release from deep power-down to the next command (tRES1, max); CS high after a status
#: register write before the next command (tSHSL2, min).
T_RES1, T_SHSL2 = 3e-6, 50e-9


def wake_cycles(clk_hz: int) -> int:
    """Clock cycles of tRES1, rounded up."""
    return math.ceil(T_RES1 * clk_hz)


def deselect_cycles(clk_hz: int) -> int:
    """Clock cycles of tSHSL2, rounded up (at least 1)."""
    return max(1, math.ceil(T_SHSL2 * clk_hz))


def check_flash_axi(*, offset: int, length: int, header: bytes, clk_hz: int,
                    flash_bytes: int = FLASH_BYTES) -> None:
    """Raise ``ValueError`` unless :class:`QspiFlashAxi` takes these parameters, its bytes
    within a flash of ``flash_bytes`` (at most :data:`FLASH_BYTES`; callers check before
    they build anything)."""
    if clk_hz <= 0:
        raise ValueError(f"clk_hz must be positive, got {clk_hz}")
    if not 1 <= len(header) <= 32:
        raise ValueError(f"the header must have 1 to 32 bytes, got {len(header)}")
    if not 0 < flash_bytes <= FLASH_BYTES:
        raise ValueError(f"flash_bytes must be 1 to {FLASH_BYTES} (24-bit addresses), got "
                         f"{flash_bytes}")
    if length < 1 or offset < 0 or offset + len(header) + length > flash_bytes:
        size = (f"{flash_bytes >> 20} MiB" if not flash_bytes % (1 << 20)
                else f"{flash_bytes} bytes")
        raise ValueError(f"a header and {length} bytes at flash address {offset:#x} are "
                         f"outside the flash's {size}")


class _Phase(enum.Enum, shape=3):
    """What the flash lines do: nothing (CS high), a command's bits going out (one or four
    lines), dummy clocks, data coming in, a stream paused between bursts, a refused header."""
    GAP = 0
    SEND = 1
    DUMMY = 2
    DATA = 3
    IDLE = 4
    ERROR = 5


# The steps of the boot (each a command, CS high between them) and of a read.
_WAKE, _VWEN, _WRSR, _CMD, _ADDR = range(5)
#: Per step: the bits that go out first (MSB first, in a 32-bit register) and their count.
_SEND = {_WAKE: (RELEASE_POWER_DOWN << 24, 8), _VWEN: (VOLATILE_WRITE_ENABLE << 24, 8),
         _WRSR: ((WRITE_STATUS_2 << 8 | QE) << 16, 16), _CMD: (QUAD_IO_READ << 24, 8)}
#: Dummy clocks of a quad I/O read after its mode byte.
DUMMY_CLOCKS = 4
#: Clock cycles CS stays high between two reads (two cycles: tSHSL1 at any iCE40 clock).
READ_DESELECT = 2


class QspiFlashAxi(wiring.Component):
    """A read-only AXI4 subordinate whose byte ``a`` is the flash's byte ``offset +
    len(header) + a``, read with Fast Read Quad I/O (0xEB).

    **Boot.** After reset it wakes the flash (0xAB, then tRES1 with CS high), sets the Quad
    Enable bit in the volatile status register (0x50, then 0x31 with :data:`QE`; tSHSL2
    after each), and reads the ``header`` at ``offset`` with a quad read. If every byte
    matches, ``ready`` rises and reads are served; if not, ``error`` rises and no read is
    ever served. While QE may still be 0 (the single-line commands), IO2 (WP#) and IO3
    (HOLD#) are driven high.

    **Reads.** An AR is taken while the port holds no other waiting burst (``arready`` is
    that register's emptiness), so one burst waits while another streams. A burst that
    continues the stream (its address is the byte after the last one asked for) goes on
    without a new command: SCK simply keeps running. Any other starts a new read: CS high
    for :data:`READ_DESELECT` cycles, the command on IO0, address and mode byte on IO0..3,
    :data:`DUMMY_CLOCKS` dummy clocks, then data, a nibble per SCK period, high nibble
    first, bytes in address order, little-endian in a beat. SCK runs at half the clock.
    While a finished beat waits (``rvalid`` and not ``rready``) SCK stops; when no burst is
    left it stops too, CS low, until the next AR.

    **Timing** (:func:`~dynfix.hw.timing.flash_timing`, which the cycle model and the
    simulation's bulk memory use): a new read's first beat is valid ``latency`` cycles
    after its AR handshake (port idle, the flash ready); every later beat ``interval``
    cycles (``data_width / 2``) after the previous beat's handshake, across bursts that
    continue the stream as long as their AR is taken before the previous burst's last beat
    is assembled.

    A burst must be INCR of whole bus words (the engine's readers send nothing else); any
    other is served the same way with ``rresp`` SLVERR.

    Parameters
    ----------
    addr_width, data_width, id_width : int
        The AXI port's widths (``data_width`` a power of two from 8).
    offset : int
        Flash byte address of the header.
    length : int
        Bytes after the header that reads may reach (for the parameter check).
    header : bytes
        What the flash must hold at ``offset`` (1 to 32 bytes).
    clk_hz : int
        The clock, for the boot's waits.
    flash_bytes : int
        The flash's size (the board's ``FlashSpec.bytes``), for the parameter check.

    Members
    -------
    bus : In(AxiReadSignature(addr_width, data_width, id_width))
    ready : Out(1)
        The flash is awake, in quad mode and holds the header; held.
    error : Out(1)
        The header did not match; held.
    sck, cs_n : Out(1)
    dq_o, dq_oe : Out(4)
        The IO lines' values and output enables (IO0 = COPI, IO1 = CIPO, IO2, IO3).
    dq_i : In(4)
        The IO lines as read.
    """

    def __init__(self, addr_width: int, data_width: int, *, offset: int, length: int,
                 header: bytes, clk_hz: int, id_width: int = 1,
                 flash_bytes: int = FLASH_BYTES):
        bus = AxiReadSignature(addr_width, data_width, id_width)   # checks the widths
        check_flash_axi(offset=offset, length=length, header=header, clk_hz=clk_hz,
                        flash_bytes=flash_bytes)
        self._dw, self._offset, self._header = data_width, offset, bytes(header)
        self._wake, self._deselect = wake_cycles(clk_hz), deselect_cycles(clk_hz)
        super().__init__({
            "bus": In(bus),
            "ready": Out(1), "error": Out(1),
            "sck": Out(1), "cs_n": Out(1, init=1),
            "dq_o": Out(4), "dq_oe": Out(4), "dq_i": In(4),
        })

    def elaborate(self, platform):
        m = Module()
        bus, dw, nhdr = self.bus, self._dw, len(self._header)
        nibbles = dw // 4

        phase = Signal(_Phase, init=_Phase.GAP)         # the boot starts with 0xAB
        step = Signal(range(5), init=_WAKE)
        sr = Signal(32)                                 # bits going out, MSB first
        left = Signal(range(33))                        # periods left after this one
        start_addr = Signal(24)                         # the flash address a read starts at
        quad = Signal()
        wait = Signal(range(max(self._wake, self._deselect, READ_DESELECT) + 1))
        booting = Signal(init=1)                        # the header read is the boot's last

        # The burst waiting for its turn, and the one streaming.
        pend = Signal()
        pend_addr = Signal(24)
        pend_len = Signal(8)
        pend_id = Signal.like(bus.arid)
        pend_bad = Signal()
        togo = Signal(9)                                # beats of the burst still to assemble
        cur_id = Signal.like(bus.arid)
        cur_bad = Signal()
        next_addr = Signal(24)                          # the byte after the last one asked for

        # SCK: a period is a rising edge (SCK goes high) and, a cycle later, a falling one
        # (SCK low, the next bit out, IO sampled: the flash drove it a period before).
        clocking = Signal()
        rise = Signal()
        fall = Signal()
        m.d.comb += [rise.eq(clocking & ~self.sck), fall.eq(self.sck)]
        with m.If(rise):
            m.d.sync += self.sck.eq(1)
        with m.If(fall):
            m.d.sync += self.sck.eq(0)

        # The lines: one bit on IO0 with IO2/IO3 high (WP#, HOLD# inactive) and IO1 read,
        # or four bits out, or all four read.
        with m.If(phase == _Phase.SEND):
            with m.If(quad):
                m.d.comb += [self.dq_o.eq(sr[28:]), self.dq_oe.eq(0b1111)]
            with m.Else():
                m.d.comb += [self.dq_o.eq(Cat(sr[31], 0, 1, 1)), self.dq_oe.eq(0b1101)]
        with m.Elif(phase == _Phase.GAP):
            m.d.comb += [self.dq_o.eq(0b1100), self.dq_oe.eq(0b1101)]

        # Data: nibbles into bytes (high first), bytes into the beat from the top down.
        nib = Signal(range(nibbles))
        high = Signal(4)
        beat = Signal(dw)
        byte_in = Cat(self.dq_i, high)
        hdr_i = Signal(range(nhdr + 1))
        expected = Const(int.from_bytes(self._header, "little"), 8 * nhdr).word_select(
            hdr_i[:max(1, (nhdr - 1).bit_length())], 8)

        rvalid = Signal()
        rlast = Signal()
        rid = Signal.like(bus.rid)
        rbad = Signal()
        m.d.comb += [bus.rvalid.eq(rvalid), bus.rlast.eq(rlast), bus.rid.eq(rid),
                     bus.rdata.eq(beat), bus.rresp.eq(Mux(rbad, RESP_SLVERR, RESP_OKAY))]
        taken = rvalid & bus.rready
        with m.If(taken):
            m.d.sync += rvalid.eq(0)

        # An AR into the waiting slot (once the boot is over).
        m.d.comb += bus.arready.eq(self.ready & ~pend)
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += [
                pend.eq(1), pend_addr.eq(self._offset + nhdr + bus.araddr),
                pend_len.eq(bus.arlen), pend_id.eq(bus.arid),
                pend_bad.eq((bus.arburst != BURST_INCR) | (bus.arsize != size_code(dw))),
            ]
        # Whether the waiting burst continues the stream, registered (off the FSM's paths):
        # ``checked`` a cycle after the burst came in or the stream moved on.
        follows = Signal()
        checked = Signal()
        m.d.sync += [follows.eq(pend & (pend_addr == next_addr)), checked.eq(pend)]

        def take_pending():
            m.d.sync += [pend.eq(0), checked.eq(0), follows.eq(0),
                         togo.eq(pend_len + 1), cur_id.eq(pend_id),
                         cur_bad.eq(pend_bad), next_addr.eq(pend_addr
                                                            + (pend_len + 1) * (dw // 8))]

        def new_read():
            """CS high, then the read command for the waiting burst."""
            take_pending()
            m.d.sync += [self.cs_n.eq(1), wait.eq(READ_DESELECT - 1), step.eq(_CMD),
                         start_addr.eq(pend_addr),
                         phase.eq(_Phase.GAP)]

        with m.Switch(phase):
            with m.Case(_Phase.GAP):
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 0):
                    m.d.sync += [self.cs_n.eq(0), phase.eq(_Phase.SEND), quad.eq(0)]
                    with m.Switch(step):
                        for s, (bits, count) in _SEND.items():
                            with m.Case(s):
                                m.d.sync += [sr.eq(bits), left.eq(count - 1)]
            with m.Case(_Phase.SEND):
                m.d.comb += clocking.eq(1)
                with m.If(fall):
                    m.d.sync += [sr.eq(Cat(Const(0, 1), sr[:31])), left.eq(left - 1)]
                    with m.If(quad):
                        m.d.sync += sr.eq(Cat(Const(0, 4), sr[:28]))
                    with m.If(left == 0):
                        with m.Switch(step):
                            with m.Case(_WAKE):
                                m.d.sync += [self.cs_n.eq(1), wait.eq(self._wake),
                                             step.eq(_VWEN), phase.eq(_Phase.GAP)]
                            with m.Case(_VWEN):
                                m.d.sync += [self.cs_n.eq(1), wait.eq(self._deselect),
                                             step.eq(_WRSR), phase.eq(_Phase.GAP)]
                            with m.Case(_WRSR):
                                m.d.sync += [self.cs_n.eq(1), wait.eq(self._deselect),
                                             step.eq(_CMD), phase.eq(_Phase.GAP),
                                             start_addr.eq(self._offset)]
                            with m.Case(_CMD):
                                m.d.sync += [sr.eq(Cat(Const(READ_MODE, 8), start_addr)),
                                             left.eq(7), quad.eq(1), step.eq(_ADDR)]
                            with m.Case(_ADDR):
                                m.d.sync += [left.eq(DUMMY_CLOCKS - 1), phase.eq(_Phase.DUMMY)]
            with m.Case(_Phase.DUMMY):
                m.d.comb += clocking.eq(1)
                with m.If(fall):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 0):
                        m.d.sync += [phase.eq(_Phase.DATA), nib.eq(0), hdr_i.eq(0)]
            with m.Case(_Phase.DATA):
                with m.If(booting):
                    m.d.comb += clocking.eq(1)
                    with m.If(fall):
                        m.d.sync += [high.eq(self.dq_i), nib.eq(nib + 1)]
                        with m.If(nib[0]):
                            m.d.sync += hdr_i.eq(hdr_i + 1)
                            with m.If(byte_in[:8] != expected):
                                m.d.sync += [self.cs_n.eq(1), self.error.eq(1),
                                             phase.eq(_Phase.ERROR)]
                            with m.Elif(hdr_i == nhdr - 1):
                                m.d.sync += [self.cs_n.eq(1), self.ready.eq(1),
                                             booting.eq(0), phase.eq(_Phase.IDLE)]
                with m.Elif(togo != 0):
                    # A beat may start only once the last one is (being) taken.
                    m.d.comb += clocking.eq(~rvalid | bus.rready | (nib != 0))
                    with m.If(fall):
                        m.d.sync += [high.eq(self.dq_i), nib.eq(nib + 1)]
                        with m.If(nib[0]):
                            m.d.sync += beat.eq(Cat(beat[8:], byte_in[:8]))
                        with m.If(nib == nibbles - 1):
                            m.d.sync += [nib.eq(0), rvalid.eq(1), rlast.eq(togo == 1),
                                         rid.eq(cur_id), rbad.eq(cur_bad), togo.eq(togo - 1)]
                            with m.If((togo == 1) & checked & follows):
                                take_pending()
                with m.Elif(checked & follows):
                    take_pending()
                with m.Elif(checked):
                    new_read()
            with m.Case(_Phase.IDLE):
                with m.If(checked):
                    new_read()
        return m
