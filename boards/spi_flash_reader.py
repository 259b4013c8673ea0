"""Read a block of bytes out of the board's SPI NOR flash at power-up, as a byte stream.

The iCE40 configures itself from the same flash and, on some boards, leaves it in deep
power-down afterwards; a powered-down flash ignores READ and its output floats. So the reader
first sends RELEASE POWER-DOWN (0xAB) and keeps CS high for tRES1 (3 us), then READ (0x03)
with a 24-bit address, and clocks the bytes out one after the other (SPI mode 0, MSB first).
Bytes go out on a valid/ready stream; while the consumer is not ready SCK stops (low) with
the last byte held, so any consumer speed works. ``docs/boards.md`` ("Flash layout") gives
the layout this is meant to read (``boards/flash_image.py`` writes it).
"""

from __future__ import annotations

import math

from amaranth import Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SPIFlashReader", "check_reader", "RELEASE_POWER_DOWN", "READ", "T_RES1", "FLASH_BYTES",
           "READ_MAX_HZ", "sck_divider", "wake_cycles", "byte_cycles"]

RELEASE_POWER_DOWN = 0xAB
READ = 0x03
#: Release from deep power-down to the next command (W25Q128JV tRES1, max).
T_RES1 = 3e-6
#: A 24-bit address reaches 16 MiB: the largest flash the reader reads, and the default size
#: (the iCEBreaker's; a board's own is ``FlashSpec.bytes``).
FLASH_BYTES = 1 << 24
#: Highest SCK of the READ (0x03) command, in Hz (the W25Q128JV datasheet's fR).
READ_MAX_HZ = 50_000_000


def sck_divider(clk_hz: float) -> int:
    """The smallest even ``sck_div`` (at least 2) that keeps SCK within :data:`READ_MAX_HZ`
    on a ``clk_hz`` clock."""
    return max(2, 2 * math.ceil(clk_hz / (2 * READ_MAX_HZ)))


def wake_cycles(clk_hz: int) -> int:
    """tRES1 in clock cycles, rounded up (CS stays high one cycle more after 0xAB)."""
    return math.ceil(T_RES1 * clk_hz)


def byte_cycles(sck_div: int) -> int:
    """Clock cycles per streamed byte while the consumer is always ready."""
    return 8 * sck_div


def check_reader(*, offset: int, length: int, clk_hz: int, sck_div: int = 2,
                 header: bytes = b"", flash_bytes: int = FLASH_BYTES) -> None:
    """Raise ``ValueError`` unless :class:`SPIFlashReader` takes these parameters, the bytes
    read within a flash of ``flash_bytes`` (at most :data:`FLASH_BYTES`, which 24-bit
    addresses reach).

    Callers can check before they build (a component that is built and then dropped draws
    Amaranth's UnusedElaboratable warning); the constructor calls it too.
    """
    if length < 1:
        raise ValueError(f"length must be at least 1, got {length}")
    if len(header) > 32:
        raise ValueError(f"the header may have at most 32 bytes, got {len(header)}")
    if not 0 < flash_bytes <= FLASH_BYTES:
        raise ValueError(f"flash_bytes must be 1 to {FLASH_BYTES} (24-bit addresses), got "
                         f"{flash_bytes}")
    if offset < 0 or offset + len(header) + length > flash_bytes:
        space = ("a 24-bit flash address space" if flash_bytes == FLASH_BYTES
                 else f"a flash of {flash_bytes} bytes")
        raise ValueError(f"bytes {offset}..{offset + len(header) + length - 1} are outside "
                         f"{space}")
    if sck_div < 2 or sck_div % 2:
        raise ValueError(f"sck_div must be even and at least 2, got {sck_div}")
    if clk_hz <= 0:
        raise ValueError(f"clk_hz must be positive, got {clk_hz}")


class SPIFlashReader(wiring.Component):
    """Wake the flash, then stream ``length`` bytes from byte address ``offset``.

    The pins are registered (SCK, CS) or a constant table indexed by the bit counter (COPI,
    0 while data comes in); CIPO is sampled at the clock edge that takes SCK low, a full SCK
    period after the flash drove the bit. The sequence costs 8 + 32 SCK periods and
    ``wake_cycles(clk_hz) + 1`` clocks before the first byte, then ``8 * sck_div`` clocks per
    byte (:func:`byte_cycles`) while the consumer keeps up.

    With ``header`` the reader first reads ``len(header)`` bytes at ``offset`` and compares
    them with it (for a :mod:`~dynfix.boards.flash_image` image: magic, version, length and
    the payload's CRC-32 as built, i.e. the flash holds the weights this bitstream was built
    for); the ``length`` bytes after it are streamed only if all match, else ``error`` is set
    and nothing is streamed.

    Parameters
    ----------
    offset : int
        Flash byte address of the first byte (of the header, when there is one).
    length : int
        Bytes to stream (at least 1).
    clk_hz : int
        The clock frequency, for the tRES1 wait.
    sck_div : int
        Clock cycles per SCK period, even, at least 2 (SCK = clk / ``sck_div``).
    boot : bool
        Start once by itself after reset, as if ``start`` had been pulsed.
    header : bytes
        Expected bytes ahead of the streamed ones (at most 32), or empty.
    flash_bytes : int
        The flash's size (the board's ``FlashSpec.bytes``): every byte read must be in it.

    Members
    -------
    start : In(1)
        Pulse to (re)start the sequence; ignored while ``busy``.
    o : Out(stream.Signature(8))
        The bytes in flash order.
    busy : Out(1)
        The sequence is running (CS may be low).
    done : Out(1)
        All ``length`` bytes were taken; held until the next start.
    error : Out(1)
        The header did not match; held until the next start. Always 0 without a header.
    sck, cs_n, copi : Out(1)
        To the flash (``cs_n`` idles high, ``sck`` low).
    cipo : In(1)
        From the flash.
    """

    def __init__(self, *, offset: int, length: int, clk_hz: int, sck_div: int = 2,
                 boot: bool = False, header: bytes = b"", flash_bytes: int = FLASH_BYTES):
        check_reader(offset=offset, length=length, clk_hz=clk_hz, sck_div=sck_div,
                     header=header, flash_bytes=flash_bytes)
        self._offset, self._length, self._sck_div = offset, length, sck_div
        self._boot, self._header = boot, bytes(header)
        self._wait = wake_cycles(clk_hz)
        super().__init__({
            "start": In(1),
            "o": Out(stream.Signature(8)),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "sck": Out(1),
            "cs_n": Out(1, init=1),
            "copi": Out(1),
            "cipo": In(1),
        })

    def command_bits(self) -> list[int]:
        """COPI for SCK periods 0..39: 0xAB, then 0x03 and the address, MSB first."""
        word = (RELEASE_POWER_DOWN << 32) | (READ << 24) | self._offset
        return [(word >> (39 - i)) & 1 for i in range(40)]

    def elaborate(self, platform):
        m = Module()
        o = self.o
        n_hdr = len(self._header)
        bits = self.command_bits()

        # One SCK half-period per `tick`.
        half = self._sck_div // 2
        tick = Signal()
        if half == 1:
            m.d.comb += tick.eq(1)
        else:
            timer = Signal(range(half))
            m.d.comb += tick.eq(timer == 0)
            m.d.sync += timer.eq(timer - 1)
            with m.If(tick):
                m.d.sync += timer.eq(half - 1)

        n = Signal(6)          # SCK periods since the start; its low 3 bits count a byte's bits
        count = Signal(range(max(self._length, self._wait + 1)))   # wait, then bytes left
        shreg = Signal(8)
        pending = Signal(init=int(self._boot))
        table = Const(sum(b << i for i, b in enumerate(bits)), 64)
        command_bit = table.bit_select(n, 1)
        m.d.comb += o.payload.eq(shreg)

        last = count == 0
        rise = Signal()        # SCK goes high at this edge
        fall = Signal()        # SCK goes low at this edge (CIPO sampled, next COPI bit)
        clocking = Signal()
        m.d.comb += [
            rise.eq(clocking & tick & ~self.sck & (~o.valid | (o.ready & ~last))),
            fall.eq(clocking & tick & self.sck),
        ]
        with m.If(rise):
            m.d.sync += self.sck.eq(1)
        with m.If(fall):
            m.d.sync += [self.sck.eq(0), n.eq(n + 1), shreg.eq(self.cipo | (shreg << 1))]

        if n_hdr:
            hdr_i = Signal(range(n_hdr + 1))
            hdr_table = Const(int.from_bytes(self._header, "little"), 8 * n_hdr)
            in_header = hdr_i != n_hdr
            expected = hdr_table.word_select(hdr_i[:max(1, (n_hdr - 1).bit_length())], 8)
            got = (self.cipo | (shreg << 1))[:8]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.copi.eq(command_bit)
                with m.If(self.start | pending):
                    m.d.sync += [pending.eq(0), self.cs_n.eq(0), n.eq(0), self.done.eq(0),
                                 self.error.eq(0)]
                    if n_hdr:
                        m.d.sync += hdr_i.eq(0)
                    m.next = "WAKE"
            with m.State("WAKE"):                   # 0xAB
                m.d.comb += [clocking.eq(1), self.busy.eq(1), self.copi.eq(command_bit)]
                with m.If(fall & (n == 7)):
                    m.d.sync += [self.cs_n.eq(1), count.eq(self._wait)]
                    m.next = "TRES"
            with m.State("TRES"):                   # CS high for tRES1
                m.d.comb += [self.busy.eq(1), self.copi.eq(command_bit)]
                m.d.sync += count.eq(count - 1)
                with m.If(last):
                    m.d.sync += self.cs_n.eq(0)
                    m.next = "READ"
            with m.State("READ"):                   # 0x03 and the address
                m.d.comb += [clocking.eq(1), self.busy.eq(1), self.copi.eq(command_bit)]
                with m.If(fall & (n == 39)):
                    m.d.sync += count.eq(self._length - 1)
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += [clocking.eq(1), self.busy.eq(1)]
                with m.If(o.valid & o.ready):
                    m.d.sync += [o.valid.eq(0), count.eq(count - 1)]
                    with m.If(last):
                        m.d.sync += [self.cs_n.eq(1), self.done.eq(1)]
                        m.next = "IDLE"
                with m.If(fall & (n[:3] == 7)):
                    if n_hdr:
                        with m.If(~in_header):
                            m.d.sync += o.valid.eq(1)
                        with m.Elif(got == expected):
                            m.d.sync += hdr_i.eq(hdr_i + 1)
                        with m.Else():
                            m.d.sync += [self.cs_n.eq(1), self.error.eq(1)]
                            m.next = "IDLE"
                    else:
                        m.d.sync += o.valid.eq(1)
        return m
