"""One signed product in LUTs and carry chains, pipelined to the MAC array's latency.

A product here is never a ``$mul``: it is written as its partial products (one row
``multiplicand & bit`` per bit of the narrower operand, the sign bit's row subtracted) and a
tree of adders, so yosys (``synth_ecp5``'s ``mul2dsp`` maps every ``$mul`` it sees to a
MULT18X18D, with no per-cell way to stop it) cannot put it on a DSP block. It lets an ECP5
engine compute more products per cycle than the device has DSP blocks
(``EngineConfig.lut_products``, ``hw/mac_array.py``).

The registers are those of :class:`~dynfix.hw.ecp5_mul.Ecp5Mul`: :data:`LATENCY` cycles from
the operands to the product, so a LUT product can stand in for a cell anywhere in the array
without changing its latency. A fabric operand register comes first (named like the operand
copies so ECP5 synthesis keeps one per product); the adder tree's levels are spread over the
remaining registers (one level per register up to 8-bit operands, the last register being the
product), so no stage has more than one carry chain after a partial-product LUT.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring

from dynfix.errors import DynfixError
from . import ecp5_mul
from .ecp5_mul import operand_registers, product_signature

__all__ = ["LATENCY", "LutMul", "adder_levels", "staging", "structure"]

#: Cycles from the operands to the product, as :data:`dynfix.hw.ecp5_mul.LATENCY`: the
#: operand register, then registers between the adder tree's levels, the last the product.
LATENCY = ecp5_mul.LATENCY


def adder_levels(rows: int) -> int:
    """Levels of the tree summing ``rows`` partial products."""
    return max(0, (rows - 1).bit_length())


def staging(rows: int) -> tuple[int, int, int]:
    """How the adder tree of ``rows`` partial products spreads over the registers after the
    operand register: ``(levels, per_stage, groups)``, the tree's levels, the levels between
    two registers, and the register stages that hold adders (the last ends in ``p``; any
    stages after them only delay the product)."""
    levels = adder_levels(rows)
    per_stage = max(1, -(-levels // (LATENCY - 1)))
    return levels, per_stage, -(-levels // per_stage)


def structure(a_bits: int, b_bits: int) -> tuple[int, int, int, int]:
    """What :class:`LutMul` builds, from its operand widths: ``(row_bits, adder_bits, adders,
    register_bits)``: the partial-product bits (one LUT4 each), the adders' result bits (one
    carry-chain half each, plus one per adder), and the flip-flops (operands, the registers
    between the adder levels, the product registers). ``hw/resources.py`` counts from it."""
    mcand, rows = max(a_bits, b_bits), min(a_bits, b_bits)
    terms = [(mcand, i) for i in range(rows)]               # (width, shift)
    levels, per_stage, groups = staging(rows)
    stages = LATENCY - 1
    adder_bits = adders = 0
    regs = a_bits + b_bits
    for level in range(levels):
        nxt = []
        for i in range(0, len(terms), 2):
            if i + 1 == len(terms):
                nxt.append(terms[i])
                continue
            (w0, s0), (w1, s1) = terms[i:i + 2]
            total = max(w0 - (s1 - s0), w1) + 1
            adder_bits, adders = adder_bits + total, adders + 1
            nxt.append((s1 - s0 + total, s0))
        terms = nxt
        if (level + 1) % per_stage == 0 and level + 1 < levels:
            regs += sum(w for w, _ in terms)
    regs += (stages - max(1, groups) + 1) * (a_bits + b_bits)
    return rows * mcand, adder_bits, adders, regs


class LutMul(wiring.Component):
    """The signed product ``p = a * b``, exact, after :data:`LATENCY` cycles, one per cycle,
    in logic only (no ``$mul`` cell).

    Parameters
    ----------
    a_bits, b_bits : int
        Operand widths (at least 1 each). The narrower operand gives the rows.
    operand_name : str
        Name of the operand registers (``{operand_name}_a``, ``_b``), as in ``Ecp5Mul``.

    Members
    -------
    a : In(signed(a_bits))
    b : In(signed(b_bits))
    p : Out(signed(a_bits + b_bits))
    """

    def __init__(self, a_bits: int, b_bits: int, operand_name: str = "operand"):
        if a_bits < 1 or b_bits < 1:
            raise DynfixError(f"LUT products take operands of at least 1 bit, not "
                              f"{a_bits} x {b_bits}")
        self._a_bits, self._b_bits = a_bits, b_bits
        self._operand_name = operand_name
        self.latency = LATENCY
        super().__init__(product_signature(a_bits, b_bits))

    def elaborate(self, platform):
        m = Module()
        a, b = operand_registers(m, self.a, self.b, self._operand_name)
        # Rows over the narrower operand (fewer adders): row i is the multiplicand if bit i
        # is set, weighted 2**i; the sign bit's row weighs -2**(n-1) (two's complement).
        mcand, mplier = (a, b) if self._a_bits >= self._b_bits else (b, a)
        rows = len(mplier)
        # Terms (value, shift, sign): value * 2**shift is added (sign +1) or subtracted (-1).
        terms = [(Mux(mplier[i], mcand, 0), i, -1 if i == rows - 1 else 1)
                 for i in range(rows)]
        levels, per_stage, groups = staging(rows)
        stages = LATENCY - 1                # registers after the operand register
        for level in range(levels):
            terms = [self._add(*terms[i:i + 2]) if i + 1 < len(terms) else terms[i]
                     for i in range(0, len(terms), 2)]
            if (level + 1) % per_stage == 0 and level + 1 < levels:
                stage = (level + 1) // per_stage
                terms = [self._register(m, t, f"pp{stage}_{i}") for i, t in enumerate(terms)]
        (value, _, sign), = terms           # shift 0: the lowest row's
        width = self._a_bits + self._b_bits
        product = value if sign > 0 else -value     # one row: the sign bit's
        # Product registers for the stages without adders, then ``p`` (the exact width
        # fits the product).
        for s in range(max(1, groups), stages):
            reg = Signal(signed(width), name=f"product_{s}")
            m.d.sync += reg.eq(product)
            product = reg
        m.d.sync += self.p.eq(product)
        return m

    @staticmethod
    def _add(t0, t1):
        """``t0 + t1`` (``t0`` the lower shift): ``t0``'s low bits pass through, the adder
        covers the rest. Only the sign bit's row is subtracted, and it has the highest shift,
        so it is always ``t1``."""
        (v0, s0, _), (v1, s1, g1) = t0, t1
        k = s1 - s0
        high = v0 >> k if k else v0
        total = high - v1 if g1 < 0 else high + v1
        value = Cat(v0[:k], total).as_signed() if k else total
        return value, s0, 1

    @staticmethod
    def _register(m: Module, term, name: str):
        value, shift, sign = term
        reg = Signal(value.shape(), name=name)
        m.d.sync += reg.eq(value)
        return reg, shift, sign
