"""8N1 UART receiver with a byte stream output."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx"]


class UARTRx(wiring.Component):
    """Receive 8N1 frames; each good frame becomes one byte on :attr:`o`.

    The line is synchronized, a falling edge starts a frame, the start bit is checked at its
    middle and every later bit is sampled at its middle. The receiver is idle again right after
    sampling the stop bit, so back-to-back frames from a sender up to half a bit fast over a
    frame (~4 %) are received.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (see :func:`dynfix.boards.uart_tx.baud_divisor`).

    Members
    -------
    rx : In(1)
        The serial line, idle high.
    o : Out(stream.Signature(8))
        Received bytes. A byte not taken before the next one arrives is replaced by it and
        ``overrun`` pulses.
    frame_error : Out(1)
        Pulses when a stop bit is 0; the byte is dropped and the receiver waits for the line
        to go high before the next frame.
    overrun : Out(1)
        Pulses when a received byte replaces one not yet taken.
    """

    def __init__(self, *, divisor: int):
        if divisor < 4:
            raise ValueError(f"divisor must be at least 4, got {divisor}")
        self._divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "frame_error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        div = self._divisor
        line = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(div + div // 2))
        shreg = Signal(8)
        bits = Signal(range(9))

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        m.d.sync += [self.frame_error.eq(0), self.overrun.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):           # a glitch, not a start bit
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), bits.eq(8)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shreg.eq((shreg >> 1) | (line << 7)), bits.eq(bits - 1),
                                 timer.eq(div - 1)]
                    with m.If(bits == 1):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(line):
                        m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                        with m.If(self.o.valid & ~self.o.ready):
                            m.d.sync += self.overrun.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += self.frame_error.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):               # wait for the line to go idle again
                with m.If(line):
                    m.next = "IDLE"
        return m
