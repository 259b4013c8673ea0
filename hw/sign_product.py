"""The product of a map value and a weight of at most 2 bits, without a multiplier.

A signed 2-bit weight ``w`` is -2, -1, 0 or 1, so ``x * w`` is 0, ``x``, ``-x`` or ``-2x``:
a select and a negation, no partial products. With ``w1`` the weight's sign bit and ``w0``
its low bit, the magnitude select is ``x`` (``w0``), ``2x`` (``w1`` without ``w0``) or 0,
and a negative weight (``w1``) negates it; two's complement negation is the one's complement
plus one, so bit ``i`` of

    q = (w0 ? x : w1 ? 2x : 0) ^ (w1 ? -1 : 0)

depends on ``x_i``, ``x_{i-1}``, ``w0`` and ``w1`` only (one LUT4 per bit, no carry chain),
and ``x * w = q + w1``. The ``+ w1`` of each product is left to whoever sums the products:
the MAC array's adder tree takes them as its adders' carry-ins (one per adder, the last into
the accumulator: ``hw/adder_tree.py``, ``hw/mac_array.py``), so the products cost no adder
of their own. With ``exact`` the block adds it itself (a carry chain per product) and stands
in for any other product component.

``q`` fits ``a_bits + 1`` bits (it lies between ``-2**a_bits + 1`` and ``2**a_bits - 1``);
the product ``-2 * -2**(a_bits-1) = 2**a_bits`` needs ``a_bits + 2``, the width of ``p``.
A 1-bit weight (-1 or 0) is the 2-bit weight it sign-extends to.

The registers give :data:`LATENCY` cycles from the operands to the product, as every
product component (``hw/timing.py``, ``MULTIPLIER``): the operands pass three registers, a
fourth holds the selected and complemented value. The map value's registers are the same for every
weight it meets (every output channel's product of one lane), so synthesis merges them: what
each product keeps is its weight's registers and its result's (:func:`structure`).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from dynfix.errors import DynfixError
from . import timing
from .ecp5_mul import product_signature

__all__ = ["LATENCY", "WEIGHT_BITS", "SignProduct", "structure"]

#: Cycles from the operands to the product, as every product component's.
LATENCY = timing.MULTIPLIER
#: Widest weight the block multiplies (two's complement: -2, -1, 0, 1).
WEIGHT_BITS = 2


def structure(a_bits: int, b_bits: int, exact: bool = False) -> tuple[int, int, int, int]:
    """What :class:`SignProduct` builds for an ``a_bits`` map value and a ``b_bits`` weight:
    ``(luts, adder_bits, register_bits, shared_bits)``: a LUT4 per bit of ``q`` (``a_bits +
    1`` bits, ``a_bits`` with a 1-bit weight), the carry-chain bits of the ``exact`` adder
    (none without), the flip-flops each product keeps (its weight's ``LATENCY - 1`` registers,
    its result, the negation flag without ``exact``), and the flip-flops of the map value's
    ``LATENCY - 1`` registers, which the products of one lane share. ``hw/resources.py``
    counts from it."""
    q_bits = a_bits + 1 if b_bits == WEIGHT_BITS else a_bits
    out_bits = a_bits + b_bits if exact else q_bits + 1
    return (q_bits, (a_bits + b_bits) if exact else 0,
            (LATENCY - 1) * b_bits + out_bits, (LATENCY - 1) * a_bits)


class SignProduct(wiring.Component):
    """The product of a signed ``a`` and a signed weight ``b`` of at most 2 bits, after
    :data:`LATENCY` cycles, one per cycle, in LUTs (no ``$mul``, no carry chain unless
    ``exact``).

    Parameters
    ----------
    a_bits : int
        Width of the map value ``a`` (at least 1).
    b_bits : int
        Width of the weight ``b``: 1 or 2.
    exact : bool
        False: ``p`` is ``a * b - neg`` (the one's complement for a negative weight) and
        ``neg`` says the weight was negative, so ``p + neg`` is the product; the MAC array
        adds the ``neg`` of its products as carry-ins. True: ``p`` is the product (an adder
        per product), and there is no ``neg``.

    Members
    -------
    a : In(signed(a_bits))
    b : In(signed(b_bits))
    p : Out(signed(a_bits + b_bits))
    neg : Out(1)                 without ``exact``: 1 where ``b`` was negative, with ``p``
    """

    def __init__(self, a_bits: int, b_bits: int, exact: bool = False):
        if a_bits < 1 or not 1 <= b_bits <= WEIGHT_BITS:
            raise DynfixError(f"sign products take a map value of at least 1 bit and a "
                              f"weight of 1 or {WEIGHT_BITS} bits, not {a_bits} x {b_bits}")
        self._a_bits, self._b_bits, self._exact = a_bits, b_bits, exact
        self.latency = LATENCY
        members = product_signature(a_bits, b_bits)
        if not exact:
            members["neg"] = Out(1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        a, b = self.a, self.b
        # LATENCY - 1 operand registers (q's is the last stage): the map value's are alike
        # for every product of its lane (synthesis merges them), the weight's are its own.
        for s in range(1, LATENCY):
            a_s = Signal(a.shape(), name=f"a_{s}")
            b_s = Signal(b.shape(), name=f"b_{s}")
            m.d.sync += [a_s.eq(a), b_s.eq(b)]
            a, b = a_s, b_s
        w1, w0 = b[-1], b[0]                # sign bit, low bit (the same with 1 bit)
        q_bits = self._a_bits + (1 if self._b_bits == WEIGHT_BITS else 0)
        x = a.as_signed()
        twice = Cat(0, x).as_signed()       # 2x, a_bits + 1 bits
        magnitude = Signal(signed(q_bits), name="magnitude")
        m.d.comb += magnitude.eq(Mux(w0, x, Mux(w1, twice, 0)) if self._b_bits == WEIGHT_BITS
                                 else Mux(w1, x, 0))
        q = Signal(signed(q_bits), name="q")
        m.d.comb += q.eq(magnitude ^ w1.replicate(q_bits))
        if self._exact:
            m.d.sync += self.p.eq(q + w1)
        else:
            # q's register at its own width (``p``'s top bit is its sign's copy).
            q_reg = Signal(signed(q_bits), name="q_reg")
            m.d.sync += [q_reg.eq(q), self.neg.eq(w1)]
            m.d.comb += self.p.eq(q_reg)
        return m
