"""The data shift: rounding shift, saturation to the layer's output width, ReLU."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class Requantizer(wiring.Component):
    """``relu(sat(shift_round(acc, shift), out_bits))`` with run-time ``shift`` and
    ``out_bits``, bit-exact to :func:`dynfix.quant.fixed.requantize` for
    ``-data_bits <= shift <= acc_bits`` (the compiler clamps shifts into that range, which
    does not change any result).

    A right shift by ``s > 0`` adds ``2**(s-1)`` (a one-hot decode, no barrel shift for the
    constant) and shifts arithmetically: round half up. A left shift is exact before the
    saturation. Two register stages: shift, then saturate and ReLU.

    Members
    -------
    acc : In(signed(acc_bits))
    shift : In(signed(shift_bits))     data shift; right if positive
    out_bits : In(unsigned)            saturation width, 2 .. data_bits
    relu : In(1)
    o : Out(signed(data_bits))
    """

    latency = 2

    def __init__(self, acc_bits: int, data_bits: int, shift_bits: int):
        self._acc_bits = acc_bits
        self._data_bits = data_bits
        self._lshift_bits = data_bits.bit_length()
        super().__init__({
            "acc": In(signed(acc_bits)),
            "shift": In(signed(shift_bits)),
            "out_bits": In(unsigned(data_bits.bit_length())),
            "relu": In(1),
            "o": Out(signed(data_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        a, d = self._acc_bits, self._data_bits

        right = Signal(unsigned(self.shift.shape().width))
        left = Signal(unsigned(self._lshift_bits))
        m.d.comb += [
            right.eq(Mux(self.shift[-1], 0, self.shift)),
            left.eq(Mux(self.shift[-1], -self.shift, 0)),
        ]
        half = Signal(unsigned(a), name="half")     # 2**(right-1), 0 when right == 0
        m.d.comb += half.eq(Cat(right == s + 1 for s in range(a)))
        rounded = Signal(signed(a + 1))
        m.d.comb += rounded.eq(self.acc + half)

        shifted = Signal(signed(a + (1 << self._lshift_bits)))
        m.d.sync += shifted.eq(Mux(self.shift[-1], self.acc << left, rounded >> right))

        # Saturation bounds: hi = 2**(out_bits-1) - 1 as a mask of out_bits-1 ones, lo = ~hi.
        hi = Signal(signed(d + 1))
        m.d.comb += hi.eq(Cat(*(self.out_bits > b + 1 for b in range(d)), Const(0, 1)))
        lo = Signal(signed(d + 1))
        m.d.comb += lo.eq(~hi)
        sat = Signal(signed(d))
        with m.If(shifted > hi):
            m.d.comb += sat.eq(hi)
        with m.Elif(shifted < lo):
            m.d.comb += sat.eq(lo)
        with m.Else():
            m.d.comb += sat.eq(shifted)
        m.d.sync += self.o.eq(Mux(self.relu & sat[-1], 0, sat))
        return m
