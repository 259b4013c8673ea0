"""Dynamic fixed-point primitives: the arithmetic contract shared by software and hardware.

A value is ``(q - zp) * 2**-fl`` with ``q`` a ``bw``-bit two's-complement integer and ``zp``
the map's offset, a ``bw``-bit integer: 0 (signed), ``-2**(bw-1)`` for an *unsigned* map
(``q + 2**(bw-1)`` in ``0 .. 2**bw - 1``) or any other (a centred range). ``fl`` may be
negative or larger than ``bw``. The rules below are THE contract; ``docs/arithmetic.md``
explains them and the hardware (``dynfix.hw``) implements exactly these:

* rounding is **round half up**: ``floor(v + 1/2)`` (so 2.5 -> 3, -2.5 -> -2);
* every narrowing **saturates** to ``[-2**(bw-1), 2**(bw-1) - 1]``;
* a right shift by ``s > 0`` rounds: ``(a + 2**(s-1)) >> s`` (arithmetic shift);
  a shift by ``s < 0`` is an exact left shift; saturation follows either way;
* a layer may instead round its data shift **half to even** (``rounding = "half_even"``,
  what QONNX's ``ROUND`` and ``np.round`` do): a value exactly halfway between two steps
  goes to the even one, so ``(a + 2**(s-1)) >> s`` steps down by one where it is odd and
  the low ``s`` bits of ``a + 2**(s-1)`` are all zero (the tie).

All functions are vectorized over numpy arrays and use int64 for integers.
"""

from __future__ import annotations

import numpy as np

from dynfix.errors import DynfixError

MAX_ACC_BITS = 62
#: The rounding modes of a data shift: half up (the default, the paper's) and half to even.
HALF_UP = "half_up"
HALF_EVEN = "half_even"
ROUNDING_MODES = (HALF_UP, HALF_EVEN)


def qmin(bw: int) -> int:
    return -(1 << (bw - 1))


def qmax(bw: int) -> int:
    return (1 << (bw - 1)) - 1


def check_bits(bw: int, what: str = "bit width") -> int:
    if not isinstance(bw, (int, np.integer)) or not 2 <= int(bw) <= 32:
        raise DynfixError(f"{what} {bw!r} is outside 2..32")
    return int(bw)


def saturate(q: np.ndarray, bw: int) -> np.ndarray:
    """Clip integers to the ``bw``-bit two's-complement range."""
    return np.clip(np.asarray(q, dtype=np.int64), qmin(bw), qmax(bw))


def quantize(x: np.ndarray, bw: int, fl: int, zp: int = 0) -> np.ndarray:
    """Real -> integer: ``saturate(floor(x * 2**fl + 1/2) + zp, bw)`` (float64 internally);
    ``zp`` is the map's offset."""
    v = np.floor(np.asarray(x, dtype=np.float64) * np.ldexp(1.0, fl) + 0.5) + zp
    v = np.clip(v, qmin(bw), qmax(bw))
    return v.astype(np.int64)


def dequantize(q: np.ndarray, fl: int, zp: int = 0) -> np.ndarray:
    """Integer -> real: ``(q - zp) * 2**-fl`` as float64."""
    return np.ldexp(np.asarray(q, dtype=np.float64) - zp, -fl)


def check_rounding(rounding: str, where: str = "rounding") -> str:
    """``rounding`` if it is one of :data:`ROUNDING_MODES` (else one DynfixError line)."""
    if rounding not in ROUNDING_MODES:
        raise DynfixError(f"{where} {rounding!r} is none of {', '.join(ROUNDING_MODES)}")
    return rounding


def to_even(up: np.ndarray, biased: np.ndarray, right: int | np.ndarray) -> np.ndarray:
    """Half up made half to even: ``up = biased >> right`` is a right shift of ``biased``,
    a value that already holds the rounding constant ``2**(right-1)``. The value was
    exactly halfway iff ``biased``'s low ``right`` bits are all zero (two's complement, so
    for negative values too); ``up`` is then the upper of the two neighbours, and the even
    one is ``up`` with its lowest bit cleared. ``right <= 0`` rounds nothing."""
    right = np.asarray(right, np.int64)
    mask = np.left_shift(1, np.maximum(right, 0)) - 1
    tie = (right > 0) & ((biased & mask) == 0)
    return up & ~tie.astype(np.int64)


def shift_round(a: np.ndarray, s: int, rounding: str = HALF_UP) -> np.ndarray:
    """Shift right by ``s`` rounding half up, or half to even (``s < 0``: exact left
    shift). No saturation."""
    a = np.asarray(a, dtype=np.int64)
    if s > 0:
        biased = a + (1 << (s - 1))
        up = biased >> s
        return to_even(up, biased, s) if rounding == HALF_EVEN else up
    if s < 0:
        return a << (-s)
    return a


def requantize(acc: np.ndarray, shift: int | np.ndarray, bw: int, zp: int = 0,
               rounding: str = HALF_UP) -> np.ndarray:
    """The data shift: ``saturate(shift_round(acc, shift, rounding) + zp, bw)``; ``shift``
    may be an array that broadcasts against ``acc`` (a shift per output channel), ``zp`` is
    the output map's offset (``|zp| <= 2**(bw-1)``), ``rounding`` half up or half to even.

    A left shift saturates without overflowing int64 (the accumulator is at most
    ``MAX_ACC_BITS`` wide; any ``|acc << k| >= 2**bw`` saturates whatever ``zp`` is, so
    ``acc`` is clipped to that first).
    """
    acc = np.asarray(acc, dtype=np.int64)
    if np.ndim(shift):
        return _requantize_each(acc, np.asarray(shift, dtype=np.int64), bw, zp, rounding)
    if shift < 0:
        lim = min(1 << max(0, bw + shift), 1 << 62)
        return saturate((np.clip(acc, -lim, lim) << (-shift)) + zp, bw)
    return saturate(shift_round(acc, shift, rounding) + zp, bw)


def _requantize_each(acc: np.ndarray, shift: np.ndarray, bw: int, zp: int,
                     rounding: str = HALF_UP) -> np.ndarray:
    """:func:`requantize` with a shift per element (``shift`` broadcasts against ``acc``,
    e.g. one per output channel): the same rounding right shift and saturating left shift,
    chosen elementwise."""
    right = np.maximum(shift, 0)
    left = np.maximum(-shift, 0)
    biased = acc + rounding_constant(shift)
    down = biased >> right
    if rounding == HALF_EVEN:
        down = to_even(down, biased, right)
    lim = np.minimum(np.left_shift(1, np.maximum(0, bw - left)), 1 << 62)
    up = np.clip(acc, -lim, lim) << left
    return saturate(np.where(shift < 0, up, down) + zp, bw)


def rounding_constant(shift: int | np.ndarray) -> np.ndarray:
    """What a rounding right shift adds before shifting: ``2**(s-1)`` for ``s > 0``, 0 for
    ``s <= 0`` (a left shift is exact); elementwise."""
    s = np.asarray(shift, dtype=np.int64)
    return np.where(s > 0, np.left_shift(1, np.maximum(s - 1, 0)), 0)


def min_fl_no_overflow(max_abs: float, bw: int) -> int:
    """Largest fl at which ``max_abs`` still fits ``bw`` bits (the overflow-free start)."""
    if not np.isfinite(max_abs):
        raise DynfixError("cannot pick a fractional length for NaN/Inf values")
    if max_abs <= 0:
        return bw - 1
    # integer length needed for max_abs (rounding included): q = round(max_abs * 2^fl) <= qmax
    fl = bw - 1 - int(np.ceil(np.log2(max_abs)))
    while fl > -64 and np.floor(max_abs * np.ldexp(1.0, fl) + 0.5) > qmax(bw):
        fl -= 1
    while fl < 64 and np.floor(max_abs * np.ldexp(1.0, fl + 1) + 0.5) <= qmax(bw):
        fl += 1
    return fl


def acc_bound(fan_in: int, bw_x: int, bw_w: int, bw_b: int = 0, bias_shift: int = 0) -> int:
    """The largest ``|acc|`` of a dot product of ``fan_in`` terms plus a shifted bias.

    Each product lies in ``[-(2**(bw_x-1))*(2**(bw_w-1)-1), 2**(bw_x+bw_w-2)]`` and the
    shifted bias in ``+-2**(bw_b-1+bias_shift)``.
    """
    m = fan_in * (1 << (bw_x + bw_w - 2))
    if bw_b:
        m += 1 << (bw_b - 1 + bias_shift)
    return m


def acc_bits(fan_in: int, bw_x: int, bw_w: int, bw_b: int = 0, bias_shift: int = 0) -> int:
    """Accumulator width that can never overflow for a dot product of ``fan_in`` terms: the
    two's-complement width holding ``+-acc_bound(...)``."""
    bits = acc_bound(fan_in, bw_x, bw_w, bw_b, bias_shift).bit_length() + 1
    if bits > MAX_ACC_BITS:
        raise DynfixError(f"accumulator would need {bits} bits (fan-in {fan_in}, "
                          f"{bw_x}-bit data, {bw_w}-bit weights); at most {MAX_ACC_BITS} "
                          f"are supported")
    return bits
