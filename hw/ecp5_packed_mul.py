"""Two signed products that share an operand on one ECP5 MULT18X18D: ``a * b0`` and ``a * b1``.

With narrow ``b`` operands (a map value ``a`` of 8 bits times two weights of at most 4) the
cell's 18-bit B port takes both weights at once, ``B = b1 * 2**k + b0`` with ``k`` the width
of one product (``a_bits + b_bits``), and its 36-bit product holds both:
``a * B = (a * b1) * 2**k + a * b0``, the low product in bits ``0 .. k-1`` (it fits ``k`` bits,
signed) and the high one above (the technique of Xilinx WP486 and FINN's packed DSP MVU).

B is written without an adder: its low ``k`` bits are ``b0`` sign-extended, its high bits
``b1 - s0`` (``s0`` the sign bit of ``b0``), since that bit pattern is worth
``(b1 - s0) * 2**k + b0 + s0 * 2**k``. So ``b1`` takes ``b_bits + 1`` bits and B
``a_bits + 2 * b_bits + 1`` (:func:`packable`): 8-bit maps with 4-bit weights, 6-bit maps with
5-bit weights. The products come apart as ``p0 = sext(o[:k])`` and
``p1 = (o >> k) + o[k-1]`` (the high part floors by one when the low product is negative).

The registers are :class:`~dynfix.hw.ecp5_mul.Ecp5Mul`'s (:data:`LATENCY`): fabric operand
registers, the cell's input and output registers, fabric product registers. The decrement
sits between the first two (a LUT level on the fabric-to-cell route), the split's adder
between the last two, so the MAC array's latency does not change.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from dynfix.errors import DynfixError
from .config import packable
from .ecp5_mul import CELL, LATENCY, OPERAND_BITS, cell_product, operand_registers

__all__ = ["LATENCY", "Ecp5PackedMul", "packable"]

class Ecp5PackedMul(wiring.Component):
    """``p[0] = a * b[0]`` and ``p[1] = a * b[1]``, exact, on one MULT18X18D, after
    :data:`LATENCY` cycles, one pair per cycle.

    Parameters
    ----------
    a_bits, b_bits : int
        Operand widths; :func:`packable` must hold.
    cell : bool
        True: the MULT18X18D instance. False: the behavioural model of its registers (for
        Amaranth's simulator), as in :class:`~dynfix.hw.ecp5_mul.Ecp5Mul`.
    operand_name : str
        Name of the fabric operand registers (``{operand_name}_a``, ``_b``).

    Members
    -------
    a : In(signed(a_bits))
    b : In(ArrayLayout(signed(b_bits), 2))
    p : Out(ArrayLayout(signed(a_bits + b_bits), 2))
    """

    def __init__(self, a_bits: int, b_bits: int, cell: bool = True,
                 operand_name: str = "operand"):
        if not packable(a_bits, b_bits):
            raise DynfixError(f"two products of {a_bits} x {b_bits} bits do not fit one {CELL}: "
                              f"{a_bits} + 2 * {b_bits} + 1 bits > {OPERAND_BITS}")
        self._a_bits, self._b_bits, self._cell = a_bits, b_bits, cell
        self._operand_name = operand_name
        self.latency = LATENCY
        super().__init__({
            "a": In(signed(a_bits)),
            "b": In(data.ArrayLayout(signed(b_bits), 2)),
            "p": Out(data.ArrayLayout(signed(a_bits + b_bits), 2)),
        })

    def elaborate(self, platform):
        m = Module()
        a, b = operand_registers(m, self.a, self.b, self._operand_name)
        k = self._a_bits + self._b_bits
        # B's bit pattern: b0 sign-extended to k bits, then b1 - sign(b0) (b_bits + 1 bits).
        low = Signal(signed(k), name="b_low")
        high = Signal(signed(self._b_bits + 1), name="b_high")
        m.d.comb += [low.eq(b[0]), high.eq(b[1] - b[0][-1])]
        o = cell_product(m, a, Cat(low, high).as_signed(), self._cell)
        m.d.sync += [self.p[0].eq(o[:k].as_signed()),
                     self.p[1].eq(o[k:].as_signed() + o[k - 1])]
        return m
