"""8N1 UART transmitter with a byte stream input."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from dynfix.errors import DynfixError

__all__ = ["UARTTx", "baud_divisor"]


def baud_divisor(clk_hz: float, baud: int, tolerance: float = 0.02) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_hz``; the rate error must stay within
    ``tolerance`` (a receiver samples mid-bit, so ~4 % total over a frame is the limit)."""
    if baud <= 0 or clk_hz <= 0:
        raise DynfixError(f"cannot run a UART at {baud} baud from a {clk_hz} Hz clock")
    div = round(clk_hz / baud)
    if div < 4:
        raise DynfixError(f"{baud} baud is too fast for a {clk_hz / 1e6:g} MHz clock "
                          f"(needs at least 4 clocks per bit)")
    err = abs(clk_hz / div - baud) / baud
    if err > tolerance:
        raise DynfixError(f"{baud} baud from {clk_hz / 1e6:g} MHz is off by {err:.1%} "
                          f"(divisor {div}); pick another baud rate")
    return div


class UARTTx(wiring.Component):
    """Transmit bytes as 8N1 frames (start bit 0, 8 data bits LSB first, stop bit 1).

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (see :func:`baud_divisor`).

    Members
    -------
    i : In(stream.Signature(8))
        Bytes to send; taken when the line is idle.
    tx : Out(1)
        The serial line, idle high.
    """

    def __init__(self, *, divisor: int):
        if divisor < 2:
            raise ValueError(f"divisor must be at least 2, got {divisor}")
        self._divisor = divisor
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self._divisor))
        shreg = Signal(10, init=0x3ff)     # stop, data[7:0], start; shifted out LSB first
        bits = Signal(range(11))           # bits still to send

        m.d.comb += self.tx.eq(shreg[0])
        m.d.comb += self.i.ready.eq(bits == 0)
        with m.If(bits == 0):
            with m.If(self.i.valid):
                m.d.sync += [
                    shreg.eq((self.i.payload << 1) | (1 << 9)),
                    bits.eq(10),
                    timer.eq(self._divisor - 1),
                ]
        with m.Elif(timer == 0):
            m.d.sync += [
                shreg.eq((shreg >> 1) | (1 << 9)),
                bits.eq(bits - 1),
                timer.eq(self._divisor - 1),
            ]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m
