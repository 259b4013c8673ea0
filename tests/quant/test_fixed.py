"""The arithmetic contract (quant/fixed.py), pinned with hand-computed values."""

import itertools

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.quant import fixed


@pytest.mark.parametrize("x,bw,fl,want", [
    (2.5, 8, 0, 3), (-2.5, 8, 0, -2), (0.5, 8, 0, 1), (-0.5, 8, 0, 0),   # half up
    (1.25, 8, 1, 3), (-1.25, 8, 1, -2), (-1.3, 8, 1, -3), (2.49, 8, 0, 2),
    (200.0, 8, 0, 127), (-200.0, 8, 0, -128), (-128.0, 8, 0, -128),      # saturation
    (127.5, 8, 0, 127), (-128.5, 8, 0, -128), (-128.6, 8, 0, -128),
    (10.0, 8, -2, 3), (-10.0, 8, -2, -2), (6.0, 8, -2, 2), (1000.0, 4, -2, 7),  # fl < 0
    (0.05, 4, 6, 3), (0.2, 4, 6, 7), (-0.2, 4, 6, -8), (0.1, 4, 6, 6),  # fl > bw
])
def test_quantize(x, bw, fl, want):
    assert int(fixed.quantize(np.float32(x), bw, fl)) == want


def test_dequantize():
    np.testing.assert_array_equal(fixed.dequantize(np.array([3, -2, 7]), -2), [12, -8, 28])
    np.testing.assert_array_equal(fixed.dequantize(np.array([3, -8]), 6), [3 / 64, -0.125])


@pytest.mark.parametrize("a,s,want", [
    (5, 1, 3), (-5, 1, -2), (4, 1, 2), (-6, 2, -1), (-7, 2, -2), (6, 2, 2), (-10, 2, -2),
    (-2, 2, 0), (3, 0, 3), (-3, 0, -3), (3, -2, 12), (-3, -2, -12),
])
def test_shift_round(a, s, want):
    assert int(fixed.shift_round(np.int64(a), s)) == want


@pytest.mark.parametrize("acc,shift,bw,want", [
    (1000, 2, 8, 127), (-1000, 2, 8, -128), (508, 2, 8, 127), (509, 2, 8, 127),
    (-514, 2, 8, -128), (-513, 2, 8, -128), (-518, 2, 8, -129 + 1),
    (40, -2, 8, 127), (-40, -2, 8, -128), (31, -2, 8, 124), (-32, -2, 8, -128),
    (-33, -2, 8, -128), (2 ** 40, -30, 16, 32767), (-(2 ** 40), -30, 16, -32768),
    (0, -60, 32, 0), (1, -60, 32, 2 ** 31 - 1), (-1, -60, 32, -(2 ** 31)),
    (2 ** 61, 61, 8, 1), (-(2 ** 61), 62, 8, 0),
])
def test_requantize(acc, shift, bw, want):
    # e.g. 509 >> 2 rounds to 127 (127.25); -514 -> -128.5 -> -128; -518 -> -129.5 -> -129
    # saturates to -128.
    assert int(fixed.requantize(np.int64(acc), shift, bw)) == want


@pytest.mark.parametrize("m,bw,want", [
    (1.0, 8, 6), (0.99, 8, 7), (0.996, 8, 7), (0.997, 8, 6), (100.0, 4, -4), (0.0, 8, 7),
    (0.01, 4, 9), (127.0, 8, 0), (127.5, 8, -1),
])
def test_min_fl_no_overflow(m, bw, want):
    # 0.996 * 128 = 127.49 -> 127 fits; 0.997 * 128 = 127.6 -> 128 does not.
    # 100 * 2**-4 = 6.25 -> 6 fits 4 bits, 100 * 2**-3 = 12.5 does not. 0.01 * 2**9 = 5.12.
    assert fixed.min_fl_no_overflow(m, bw) == want


def test_check_bits():
    assert fixed.check_bits(2) == 2 and fixed.check_bits(32) == 32
    for bad in (1, 33, 0, -8, 8.0, "8"):
        with pytest.raises(DynfixError, match="outside 2..32"):
            fixed.check_bits(bad)


@pytest.mark.parametrize("fan,bx,bw_,bb,bs", [(3, 3, 3, 0, 0), (3, 3, 3, 4, 2), (2, 4, 2, 3, 0),
                                              (1, 2, 2, 0, 0)])
def test_acc_bits_brute_force(fan, bx, bw_, bb, bs):
    """Enumerate every input and weight vector: the width holds all sums, one bit less not."""
    xs = np.arange(fixed.qmin(bx), fixed.qmax(bx) + 1)
    ws = np.arange(fixed.qmin(bw_), fixed.qmax(bw_) + 1)
    X = np.array(list(itertools.product(xs, repeat=fan)))
    W = np.array(list(itertools.product(ws, repeat=fan)))
    sums = X @ W.T
    lo, hi = int(sums.min()), int(sums.max())
    if bb:
        lo += fixed.qmin(bb) << bs
        hi += fixed.qmax(bb) << bs
    n = fixed.acc_bits(fan, bx, bw_, bb, bs)
    assert fixed.qmin(n) <= lo and hi <= fixed.qmax(n)
    assert lo < fixed.qmin(n - 1) or hi > fixed.qmax(n - 1)


def test_acc_bits_known_values():
    # 3 terms of 3x3-bit: products in [-12, 16], sums in [-36, 48] -> 7 bits; plus a 4-bit
    # bias shifted by 2 ([-32, 28]): [-68, 76] -> 8 bits.
    assert fixed.acc_bits(3, 3, 3) == 7
    assert fixed.acc_bits(3, 3, 3, 4, 2) == 8
    with pytest.raises(DynfixError, match="accumulator would need"):
        fixed.acc_bits(2 ** 10, 32, 32)
