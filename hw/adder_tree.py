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

    With ``carries`` the tree also sums ``n`` one-bit inputs ``c`` (the ``+1`` of the
    one's-complement products of ``hw/sign_product.py``) at no adder's cost: each of its
    ``n - 1`` adders takes one as its carry-in, level by level (the rest wait in one-bit
    registers), and the one left comes out as ``co`` with ``o``, for the adder after the
    tree (the MAC array's accumulator): ``o + co`` is the sum of ``i`` and ``c``. The
    widths stay exact: a subtree of ``2**k`` inputs absorbs at most ``2**k - 1`` carries.

    Parameters
    ----------
    width : int
        Width of each input.
    n : int
        Inputs.
    carries : bool
        Whether the tree takes the one-bit inputs ``c`` (and gives ``co``).

    Members
    -------
    i : In(ArrayLayout(signed(width), n))
    c : In(n)                                  with ``carries``: one bit per input
    o : Out(signed(width + ceil(log2(n))))
    co : Out(1)                                with ``carries``: the carry left for the
                                               next adder, with ``o``
    """

    def __init__(self, width: int, n: int, carries: bool = False):
        self._width = width
        self._n = n
        self._carries = carries
        self.latency = tree_levels(n)
        members = {
            "i": In(data.ArrayLayout(signed(width), n)),
            "o": Out(signed(width + self.latency)),
        }
        if carries:
            members.update({"c": In(n), "co": Out(1)})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        level = [self.i[j] for j in range(self._n)]
        carry = [self.c[j] for j in range(self._n)] if self._carries else []
        width = self._width
        for depth in range(self.latency):
            width += 1
            nxt = []
            for j in range(0, len(level), 2):
                r = Signal(signed(width), name=f"l{depth}_{j // 2}")
                if j + 1 < len(level):
                    total = level[j] + level[j + 1]
                    # One carry-in per adder (``a + b + c`` is one carry chain in yosys).
                    m.d.sync += r.eq(total + carry.pop() if carry else total)
                else:
                    m.d.sync += r.eq(level[j])
                nxt.append(r)
            level = nxt
            for k, bit in enumerate(carry):         # the carries left wait a level
                reg = Signal(name=f"c{depth}_{k}")
                m.d.sync += reg.eq(bit)
                carry[k] = reg
        m.d.comb += self.o.eq(level[0])
        if self._carries:
            m.d.comb += self.co.eq(carry[0])        # n inputs, n - 1 adders: one is left
        return m
