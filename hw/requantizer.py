"""The data shift: a rounding (or, with the rounding constant added upstream, a floor) shift,
then a clamp that is both the saturation to the layer's output width and its ReLU / Clip,
and optionally a LeakyReLU's negative slope."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from dynfix.quant.layers.leaky_relu import SLOPE_BITS, SLOPE_SHIFT_MAX
from . import timing

#: Width of the slope's shift (0 .. SLOPE_SHIFT_MAX).
SLOPE_SHIFT_BITS = SLOPE_SHIFT_MAX.bit_length()


class Requantizer(wiring.Component):
    """``min(max(shift_round(acc, shift), lo), hi)`` with run-time ``shift``, ``lo`` and
    ``hi``, bit-exact to :func:`dynfix.quant.fixed.requantize` followed by any ReLU / Clip
    for ``-data_bits <= shift <= acc_bits`` (the compiler clamps shifts into that range,
    which does not change any result).

    The compiler's bounds lie inside the output width's range, ``qmin(bw_x) <= lo <= hi <=
    qmax(bw_x)``, so one clamp does both: ``clamp(sat(v, bw_x), lo, hi) == clamp(v, lo, hi)``.
    No clamp is ``[qmin(bw_x), qmax(bw_x)]`` (the saturation alone), ReLU ``[0, qmax]``,
    ReLU6 ``[0, min(qmax, 6 * 2**fl)]``.

    A right shift by ``s > 0`` adds ``2**(s-1)`` (a one-hot decode, no barrel shift for the
    constant) and shifts arithmetically: round half up. With ``rounding=False`` the caller
    has already added ``2**(s-1)`` to ``acc`` (the engine: the compiler folds it into the
    accumulator's start value, ``hw/compiler``, ``folded_bias``), and a right shift is a
    plain arithmetic shift (floor): no adder in front of the barrel shift. ``o`` is then
    ``clamp(shift_round(acc - 2**(s-1), s), lo, hi)``, and ``acc`` must hold the sum without
    wrapping. A left shift is exact before the clamp. Three register stages: shift, the
    clamp's decision (which bound, if any), its select (the bounds come straight from the
    program entry's register; no decode). The shift's
    decodes (direction, amount, rounding constant) are registered too, off the data path:
    ``shift`` must be stable one cycle before the first ``acc`` it applies to (the engine's
    program entry is, by many cycles).

    With ``offsets`` the output map may be unsigned (``docs/arithmetic.md``): the result is
    ``min(max(shift_round(acc, shift) + zp, lo), hi)`` with a run-time offset ``zp`` (0, or
    ``-2**(bw-1)``). The shifted value is compared at ``data_bits + 1`` bits with the
    bounds minus ``zp`` (registered, off the data path, like the shift decodes), and ``zp``
    is added beside the compares, so the clamp stage gains one bit and one adder in
    parallel, not in series.

    With ``even`` the right shift may round half to even instead (per use: the ``even``
    input, the program's bit; :func:`dynfix.quant.fixed.requantize` with ``half_even``):
    the value was exactly halfway iff the low ``s`` bits of ``acc + 2**(s-1)`` are all zero
    (two's complement: negative sums too; ``s = 0`` and a left shift round nothing), and
    the half-up result is then the upper neighbour, so an odd one steps down to the even
    one by clearing its lowest bit: no adder. The zero test reads ``acc`` (with
    ``rounding``: ``acc``'s low bits against ``2**(s-1)``, beside the adder) through a
    mask of the low ``s`` bits, both decoded from ``shift`` a cycle ahead like the rounding
    constant; it runs beside the barrel shift, and its result gates bit 0 of the shift's
    register: no stage is added.

    With ``slope`` a fourth register stage applies a LeakyReLU to the clamped value ``v``
    (before the offset): ``v`` if ``v >= 0``, else ``(v * slope_a + 2**(slope_s - 1)) >>
    slope_s`` (:func:`dynfix.quant.layers.leaky_relu.leak`); ``slope_a = 1, slope_s = 0``
    passes every value. The bounds are then compared before the offset too.

    Members
    -------
    acc : In(signed(acc_bits))
    shift : In(signed(shift_bits))     data shift; right if positive
    lo, hi : In(signed(data_bits))     clamp bounds, lo <= hi
    zp : In(signed(data_bits))         output offset (only with ``offsets``)
    even : In(1)                       round a right shift half to even (only with ``even``)
    slope_a : In(unsigned(SLOPE_BITS)) negative slope's integer (only with ``slope``)
    slope_s : In(unsigned(SLOPE_SHIFT_BITS))  and its shift
    o : Out(signed(data_bits))
    """

    latency = timing.REQUANTIZER

    def __init__(self, acc_bits: int, data_bits: int, shift_bits: int, offsets: bool = False,
                 rounding: bool = True, slope: bool = False, even: bool = False):
        self._acc_bits = acc_bits
        self._data_bits = data_bits
        self._lshift_bits = data_bits.bit_length()
        self._offsets = offsets
        self._rounding = rounding
        self._slope = slope
        self._even = even
        #: Register stages from ``acc`` to ``o``.
        self.stages = timing.requantizer_stages(slope)
        super().__init__({
            "acc": In(signed(acc_bits)),
            "shift": In(signed(shift_bits)),
            "lo": In(signed(data_bits)),
            "hi": In(signed(data_bits)),
            **({"zp": In(signed(data_bits))} if offsets else {}),
            **({"even": In(1)} if even else {}),
            **({"slope_a": In(unsigned(SLOPE_BITS)),
                "slope_s": In(unsigned(SLOPE_SHIFT_BITS))} if slope else {}),
            "o": Out(signed(data_bits)),
        })

    def elaborate(self, platform):
        m = Module()
        a = self._acc_bits

        right = Signal(unsigned(self.shift.shape().width))
        left = Signal(unsigned(self._lshift_bits))
        is_left = Signal()
        m.d.sync += [
            is_left.eq(self.shift[-1]),
            right.eq(Mux(self.shift[-1], 0, self.shift)),
            left.eq(Mux(self.shift[-1], -self.shift, 0)),
        ]
        if self._rounding:
            half = Signal(unsigned(a), name="half")     # 2**(right-1), 0 when right == 0
            m.d.sync += half.eq(Cat(self.shift == s + 1 for s in range(a)))
            rounded = Signal(signed(a + 1))
            m.d.comb += rounded.eq(self.acc + half)
        else:
            rounded = self.acc                          # 2**(right-1) already added

        shifted = Signal(signed(a + (1 << self._lshift_bits)))
        down = rounded >> right
        if self._even:
            down = self._to_even(m, down, half if self._rounding else 0)
        m.d.sync += shifted.eq(Mux(is_left, self.acc << left, down))

        # The clamp, in two stages: the decision (registered), then the select. A value that
        # does not fit data_bits lies beyond every bound (they are data_bits-bit values): its
        # sign picks lo or hi. One that fits is compared with the bounds at data_bits. The
        # fit test is a reduction, not a carry chain, so the wide compare is gone. The
        # select reads the bounds from the program entry's register (stable for the layer),
        # so the second stage is a two-level mux.
        d = self._data_bits
        w = d + int(self._offsets)          # compare width: the values before the offset
        if self._offsets:
            lo_v, hi_v = Signal(signed(w)), Signal(signed(w))
            m.d.sync += [lo_v.eq(self.lo - self.zp), hi_v.eq(self.hi - self.zp)]
        else:
            lo_v, hi_v = self.lo, self.hi
        top = shifted[w - 1:]
        fits = Signal()
        m.d.comb += fits.eq((top == 0) | (top == (1 << len(top)) - 1))
        low = Signal(signed(w))
        m.d.comb += low.eq(shifted[:w])
        use_hi, use_lo = Signal(), Signal()
        m.d.sync += [
            use_hi.eq(Mux(fits, low > hi_v, ~shifted[-1])),
            use_lo.eq(Mux(fits, (low <= hi_v) & (low < lo_v), shifted[-1])),
        ]
        if self._slope:
            self._clamp_and_slope(m, use_hi, use_lo, low, lo_v, hi_v, w)
            return m
        kept = Signal(signed(d), name="kept")
        m.d.sync += kept.eq(low + self.zp if self._offsets else low)
        m.d.sync += self.o.eq(Mux(use_hi, self.hi, Mux(use_lo, self.lo, kept)))
        return m

    def _to_even(self, m: Module, down, half):
        """``down`` (the right shift rounded half up) with bit 0 cleared where ``acc`` lay
        exactly halfway and ``even`` is set: the zero test of ``acc``'s low ``s`` bits
        (minus the rounding constant ``half`` when this requantizer adds it), beside the
        barrel shift."""
        a = self._acc_bits
        mask = Signal(unsigned(a), name="tie_mask")     # 2**right - 1
        enable = Signal(name="to_even")                 # even and a right shift
        m.d.sync += [mask.eq(Cat(self.shift > s for s in range(a))),
                     enable.eq(self.even & (self.shift > 0))]
        tie = Signal(name="tie")
        m.d.comb += tie.eq(((self.acc ^ half) & mask) == 0)
        even = Signal(signed(len(down)), name="even_down")
        m.d.comb += even.eq(Cat(down[0] & ~(tie & enable), down[1:]))
        return even

    def _clamp_and_slope(self, m: Module, use_hi, use_lo, low, lo_v, hi_v, w: int) -> None:
        """The clamp's select before the offset (registered), then the slope stage and the
        offset."""
        low_r = Signal(signed(w), name="low")
        m.d.sync += low_r.eq(low)
        v = Signal(signed(w), name="clamped")
        m.d.sync += v.eq(Mux(use_hi, hi_v, Mux(use_lo, lo_v, low_r)))
        # The slope's decodes, registered off the data path like the shift's: the rounding
        # constant 2**(s-1) (one-hot, 0 for s == 0).
        half = Signal(unsigned(SLOPE_SHIFT_MAX), name="slope_half")
        m.d.sync += half.eq(Cat(self.slope_s == s + 1 for s in range(SLOPE_SHIFT_MAX)))
        prod = Signal(signed(max(w + SLOPE_BITS + 1, SLOPE_SHIFT_MAX) + 1), name="slope_prod")
        m.d.comb += prod.eq(v * self.slope_a + half)
        leaked = Signal(signed(w), name="leaked")
        m.d.comb += leaked.eq(prod >> self.slope_s)
        out = Mux(v[-1], leaked, v)
        m.d.sync += self.o.eq(out + self.zp if self._offsets else out)
