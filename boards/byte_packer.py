"""Bytes into bus words, low byte first: the flash's stream to a memory's words."""

from __future__ import annotations

from amaranth import Cat, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["BytePacker"]


class BytePacker(wiring.Component):
    """Packs each ``nbytes`` bytes of ``i`` into a word of ``o``, the first in the low bits.

    A word's first ``nbytes - 1`` bytes shift into a register from the top; its last byte
    joins them on the way out, so the last byte's handshake is the word's (no word buffer,
    no added cycle). ``nbytes`` is a power of two, so the byte counter wraps by itself.

    Members
    -------
    i : In(stream.Signature(8))
    o : Out(stream.Signature(8 * nbytes))
    """

    def __init__(self, nbytes: int):
        if nbytes < 1 or nbytes & (nbytes - 1):
            raise ValueError(f"a word must be a power of two of bytes, not {nbytes}")
        self._n = nbytes
        super().__init__({"i": In(stream.Signature(unsigned(8))),
                          "o": Out(stream.Signature(unsigned(8 * nbytes)))})

    def elaborate(self, platform):
        m = Module()
        n = self._n
        if n == 1:
            wiring.connect(m, wiring.flipped(self.i), wiring.flipped(self.o))
            return m
        low = Signal(8 * (n - 1))
        count = Signal(range(n))
        last = count == n - 1
        m.d.comb += [
            self.o.payload.eq(Cat(low, self.i.payload)),
            self.o.valid.eq(last & self.i.valid),
            self.i.ready.eq(~last | self.o.ready),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [low.eq(Cat(low[8:], self.i.payload)), count.eq(count + 1)]
        return m
