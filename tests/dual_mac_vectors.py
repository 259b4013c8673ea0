"""Test helper: operand vectors that give every half of a bank of dual multipliers every
pair of signed operands, and packing to and from the bank's flat ports."""

from __future__ import annotations


def bank_vectors(a_bits: int, b_bits: int, cells: int) -> tuple[list[list[int]], ...]:
    """Per cycle, the ``2 * cells`` operands of ``a`` and of ``b`` (slot ``2c + h`` is cell
    ``c``'s half ``h``). Pair ``k`` of all ``2**(a_bits + b_bits)`` goes to half 0 of cell
    ``k % cells`` at cycle ``k // cells`` and, in reverse order, to half 1: every half sees
    every pair, ``(-2**(a_bits-1)) * (-2**(b_bits-1))`` included."""
    lo_a, lo_b = -(1 << (a_bits - 1)), -(1 << (b_bits - 1))
    pairs = [(lo_a + i, lo_b + j) for i in range(1 << a_bits) for j in range(1 << b_bits)]
    n = len(pairs)
    assert n % cells == 0
    a, b = [], []
    for t in range(n // cells):
        row_a, row_b = [], []
        for c in range(cells):
            k = t * cells + c
            for pa, pb in (pairs[k], pairs[n - 1 - k]):
                row_a.append(pa)
                row_b.append(pb)
        a.append(row_a)
        b.append(row_b)
    return a, b


def pack(values: list[int], bits: int) -> int:
    """Two's complement ``values`` side by side, element 0 in the low bits."""
    mask = (1 << bits) - 1
    return sum((v & mask) << (i * bits) for i, v in enumerate(values))


def unpack(word: int, bits: int, n: int) -> list[int]:
    """The ``n`` signed ``bits``-bit elements of ``word``."""
    out = []
    for i in range(n):
        v = (word >> (i * bits)) & ((1 << bits) - 1)
        out.append(v - (1 << bits) if v >> (bits - 1) else v)
    return out
