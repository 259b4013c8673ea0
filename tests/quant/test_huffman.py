"""Canonical Huffman codes (``quant/huffman.py``): the length-limited code against brute force
and the unlimited one, the canonical tables, round trips, decoding errors, speed."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.quant.huffman import (canonical_codes, canonical_order, code_bits, huffman_decode,
                                  huffman_encode, huffman_lengths, length_counts,
                                  limited_lengths)


def kraft(lengths) -> float:
    return sum(2.0 ** -int(n) for n in lengths if n)


def cost(counts, lengths) -> int:
    return int(np.dot(counts, lengths))


def brute_force(counts, max_bits: int) -> int:
    """The least total bits of any prefix code for ``counts`` (all positive) with words of
    1 to ``max_bits`` bits: every length vector whose Kraft sum is at most 1."""
    best = None
    for lengths in itertools.product(range(1, max_bits + 1), repeat=len(counts)):
        if kraft(lengths) <= 1:
            c = cost(counts, lengths)
            best = c if best is None else min(best, c)
    return best


def test_hand_computed_limited_code():
    """Fibonacci counts 1, 1, 2, 3, 5, 8: Huffman's words are 5, 5, 4, 3, 2, 1 bits (45
    bits in all); within 4 bits the best is 46 bits, e.g. 4, 4, 4, 4, 2, 1 or 4, 4, 3, 3,
    3, 1."""
    counts = np.array([1, 1, 2, 3, 5, 8])
    assert list(huffman_lengths(counts)) == [5, 5, 4, 3, 2, 1]
    assert cost(counts, huffman_lengths(counts)) == 45
    limited = limited_lengths(counts, 4)
    assert max(limited) == 4 and kraft(limited) == 1 and cost(counts, limited) == 46
    assert list(limited_lengths(counts, 5)) == [5, 5, 4, 3, 2, 1]


@pytest.mark.parametrize("seed", range(12))
def test_limited_code_is_optimal_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 7))
    counts = rng.geometric(0.3, n) ** 2
    max_bits = int(rng.integers(max(1, (n - 1).bit_length()), 5))
    lengths = limited_lengths(counts, max_bits)
    assert 1 <= lengths.min() and lengths.max() <= max_bits and kraft(lengths) == 1
    assert cost(counts, lengths) == brute_force(counts, max_bits)


@pytest.mark.parametrize("seed", range(6))
def test_limited_code_on_bytes(seed):
    """Byte frequencies (some values absent, a long tail): the limit is respected, the
    Kraft sum is 1, unused values get no word; where Huffman's longest word fits the limit
    the total is Huffman's, else more, and never worse than a tighter limit's."""
    rng = np.random.default_rng(100 + seed)
    counts = np.bincount(np.clip(rng.geometric(0.05 * (seed + 1), 20_000), 0, 255),
                         minlength=256)
    counts[rng.integers(0, 256, 30)] = 0
    free = huffman_lengths(counts)
    assert kraft(free) == 1
    prev = None
    for max_bits in range(8, int(free.max()) + 3):
        if np.count_nonzero(counts) > 1 << max_bits:
            continue
        lengths = limited_lengths(counts, max_bits)
        assert lengths.max() <= max_bits and kraft(lengths) == 1
        assert np.array_equal(lengths > 0, counts > 0)
        total = cost(counts, lengths)
        if max_bits >= free.max():
            assert total == cost(counts, free)
        else:
            assert total > cost(counts, free)
        assert prev is None or total <= prev
        prev = total


def test_limited_code_edge_cases():
    assert list(limited_lengths([0, 9, 0], 3)) == [0, 1, 0]
    assert list(limited_lengths([4, 4, 4, 4], 2)) == [2, 2, 2, 2]
    assert list(limited_lengths([0, 0], 3)) == [0, 0]
    with pytest.raises(DynfixError, match="5 symbols do not fit .* at most 2 bits"):
        limited_lengths([1, 1, 1, 1, 1], 2)
    with pytest.raises(DynfixError, match="at least 1 bit"):
        limited_lengths([1, 1], 0)


def test_canonical_tables():
    """Lengths 2, 0, 3, 1, 3 (symbols 0-4): order by (length, symbol) is 3, 0, 2, 4; the
    words 0, 10, 110, 111: one of 1 bit, one of 2, two of 3."""
    lengths = np.array([2, 0, 3, 1, 3])
    assert list(canonical_order(lengths)) == [3, 0, 2, 4]
    assert list(canonical_codes(lengths)) == [0b10, 0, 0b110, 0b0, 0b111]
    assert list(length_counts(lengths)) == [0, 1, 1, 2]


@pytest.mark.parametrize("kind", ["uniform", "skewed", "one"])
def test_round_trip(kind):
    rng = np.random.default_rng(7)
    x = {"uniform": lambda: rng.integers(0, 256, 5000),
         "skewed": lambda: np.clip(np.round(rng.laplace(0, 5, 8000)), -128, 127) + 128,
         "one": lambda: np.full(300, 17)}[kind]().astype(np.int64)
    lengths = limited_lengths(np.bincount(x, minlength=256), 12)
    data, nbits = huffman_encode(x, lengths)
    assert nbits == code_bits(x, lengths) and len(data) == -(-nbits // 8)
    np.testing.assert_array_equal(huffman_decode(data, nbits, lengths), x)
    # With a count, the padding of the last byte is ignored.
    np.testing.assert_array_equal(huffman_decode(data, 8 * len(data), lengths, count=len(x)),
                                  x)
    np.testing.assert_array_equal(huffman_decode(data, nbits, lengths, count=10), x[:10])


def test_decoding_errors():
    lengths = np.array([1, 2, 2])                       # 0, 10, 11
    data, nbits = huffman_encode(np.array([1, 2, 0, 1]), lengths)
    assert (data, nbits) == (bytes([0b10110100]), 7)
    with pytest.raises(DynfixError, match="ends inside a code word"):
        huffman_decode(data, 6, lengths)
    with pytest.raises(DynfixError, match="9 symbols asked, the stream holds 5"):
        huffman_decode(data, 8, lengths, count=9)
    one = np.array([0, 1])                              # only the word 0
    with pytest.raises(DynfixError, match="bit 1 starts no code word"):
        huffman_decode(bytes([0b01000000]), 4, one)
    with pytest.raises(DynfixError, match="has no code"):
        huffman_encode(np.array([2]), lengths[:2])


def test_a_flash_payload_codes_fast():
    """A few hundred kB (a large flash payload) through the encoder and back in well under
    a second each on a development machine (a loose bound here, for slow runners)."""
    rng = np.random.default_rng(3)
    x = (np.clip(np.round(rng.laplace(0, 9, 300_000)), -128, 127) + 128).astype(np.int64)
    lengths = limited_lengths(np.bincount(x, minlength=256), 12)
    t0 = time.perf_counter()
    data, nbits = huffman_encode(x, lengths)
    t1 = time.perf_counter()
    back = huffman_decode(data, nbits, lengths)
    t2 = time.perf_counter()
    np.testing.assert_array_equal(back, x)
    assert t1 - t0 < 2 and t2 - t1 < 3
