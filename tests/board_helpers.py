"""Helpers the board tests share: a stand-in engine with the engine's host interface."""

from __future__ import annotations

import numpy as np
from amaranth import Module, Signal, signed
from amaranth.lib import wiring

from dynfix.hw.host_interface import EngineHostSignature


class EchoEngine(wiring.Component):
    """Stand-in with the engine's host interface: sums the ``n_in`` inputs, then emits
    ``o[j] = sat((sum >> 2) * (j - 4))`` for ``j < n_out`` and pulses ``done``."""

    def __init__(self, n_in: int, n_out: int, bits: int):
        self._n_in, self._n_out, self._bits = n_in, n_out, bits
        super().__init__(EngineHostSignature(bits))       # layer_cycles stays 0

    @staticmethod
    def reference(x: np.ndarray, n_out: int, bits: int) -> np.ndarray:
        s = int(np.sum(x)) >> 2
        lim = 1 << (bits - 1)
        return np.array([min(max(s * (j - 4), -lim), lim - 1) for j in range(n_out)])

    def elaborate(self, platform):
        m = Module()
        bits = self._bits
        acc = Signal(signed(bits + self._n_in.bit_length()))
        idx = Signal(range(max(self._n_in, self._n_out) + 1))
        prod = Signal(signed(2 * len(acc)))
        lim = 1 << (bits - 1)
        m.d.comb += prod.eq((acc >> 2) * (idx - 4))
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        m.d.sync += self.done.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [acc.eq(0), idx.eq(0), self.cycles.eq(0)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += [self.busy.eq(1), self.i.ready.eq(1)]
                with m.If(self.i.valid):
                    m.d.sync += [acc.eq(acc + self.i.payload), idx.eq(idx + 1)]
                    with m.If(idx == self._n_in - 1):
                        m.d.sync += idx.eq(0)
                        m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += [self.busy.eq(1), self.o.valid.eq(1)]
                with m.If(prod >= lim):
                    m.d.comb += self.o.payload.eq(lim - 1)
                with m.Elif(prod < -lim):
                    m.d.comb += self.o.payload.eq(-lim)
                with m.Else():
                    m.d.comb += self.o.payload.eq(prod)
                with m.If(self.o.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == self._n_out - 1):
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"
        return m
