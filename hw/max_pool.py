"""Streaming max-pool over consecutive results (non-overlapping windows)."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from . import timing


class MaxPool(wiring.Component):
    """Running maximum of ``lanes`` values over a window of consecutive valid inputs.

    The sequencer emits the ``p*p`` conv pixels of a pooling window back to back and marks
    the first and the last; a window of one pixel (``first`` and ``last`` together) is the
    bypass. One register stage.

    Members
    -------
    valid, first, last : In(1)
    i : In(ArrayLayout(signed(width), lanes))
    o_valid : Out(1)         one cycle, with the window's maximum on ``o``
    o : Out(ArrayLayout(signed(width), lanes))
    """

    latency = timing.MAX_POOL

    def __init__(self, width: int, lanes: int):
        self._lanes = lanes
        layout = data.ArrayLayout(signed(width), lanes)
        super().__init__({
            "valid": In(1), "first": In(1), "last": In(1), "i": In(layout),
            "o_valid": Out(1), "o": Out(layout),
        })

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.o_valid.eq(self.valid & self.last)
        with m.If(self.valid):
            for j in range(self._lanes):
                x, mx = self.i[j], self.o[j]
                m.d.sync += mx.eq(Mux(self.first | (x > mx), x, mx))
        return m
