"""Pipelined balanced adder tree."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .timing import tree_levels


class AdderTree(wiring.Component):
    """Sum of ``n`` signed ``width``-bit inputs, exact, one register per tree level.

    The output follows the input after :attr:`latency` cycles; pairs are added level by level
    (an odd element passes to the next level through a register), so the depth is
    ``ceil(log2(n))`` adders.

    Members
    -------
    i : In(ArrayLayout(signed(width), n))
    o : Out(signed(width + ceil(log2(n))))
    """

    def __init__(self, width: int, n: int):
        self._width = width
        self._n = n
        self.latency = tree_levels(n)
        super().__init__({
            "i": In(data.ArrayLayout(signed(width), n)),
            "o": Out(signed(width + self.latency)),
        })

    def elaborate(self, platform):
        m = Module()
        level = [self.i[j] for j in range(self._n)]
        width = self._width
        for depth in range(self.latency):
            width += 1
            nxt = []
            for j in range(0, len(level), 2):
                r = Signal(signed(width), name=f"l{depth}_{j // 2}")
                if j + 1 < len(level):
                    m.d.sync += r.eq(level[j] + level[j + 1])
                else:
                    m.d.sync += r.eq(level[j])
                nxt.append(r)
            level = nxt
        m.d.comb += self.o.eq(level[0])
        return m
