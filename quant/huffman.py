"""Canonical Huffman codes: optimal and length-limited code lengths, the canonical code words,
and coding a symbol stream with them (vectorized both ways).

A code is given by its **lengths**, one per symbol (0: the symbol has no code). The code
words follow from them (:func:`canonical_codes`): symbols ordered by (length, symbol), each
word the previous one plus 1, shifted left to the next length. So a decoder needs only how
many words each length has (:func:`length_counts`) and the symbols in that order
(:func:`canonical_order`), the tables DEFLATE's and the flash image's decoders hold
(``boards/huffman_decoder.py``).

* :func:`huffman_lengths`: an optimal (Huffman) code, lengths unbounded;
* :func:`limited_lengths`: an optimal code among those whose words have at most ``max_bits``
  bits (package-merge, Larmore and Hirschberg 1990), for decoders with fixed-size tables;
* :func:`huffman_encode` / :func:`huffman_decode`: a stream through a code and back, MSB
  first.

Used by weight sharing's storage figures (``quant/weight_sharing.py``) and by the flash
image's coding (``boards/flash_image.py``).
"""

from __future__ import annotations

import heapq

import numpy as np

from dynfix.errors import DynfixError

__all__ = ["huffman_lengths", "limited_lengths", "kraft_sum", "table_bits", "canonical_codes",
           "canonical_order", "length_counts", "code_bits", "huffman_encode",
           "huffman_decode"]


def huffman_lengths(counts: np.ndarray) -> np.ndarray:
    """Code length of every symbol (0 for an unused one) of a Huffman code for the symbol
    frequencies ``counts``; a stream of one symbol gets a 1-bit code."""
    counts = np.asarray(counts, np.int64)
    lengths = np.zeros(len(counts), np.int64)
    used = np.flatnonzero(counts)
    if len(used) == 1:
        lengths[used] = 1
        return lengths
    heap = [(int(counts[s]), int(s), [int(s)]) for s in used]
    heapq.heapify(heap)
    while len(heap) > 1:
        ca, ta, a = heapq.heappop(heap)
        cb, tb, b = heapq.heappop(heap)
        lengths[a + b] += 1
        heapq.heappush(heap, (ca + cb, min(ta, tb), a + b))
    return lengths


def limited_lengths(counts: np.ndarray, max_bits: int) -> np.ndarray:
    """Code length of every symbol (0 for an unused one) of a code for the frequencies
    ``counts`` that is optimal among the prefix codes with at most ``max_bits`` bits a word
    (so the same total as :func:`huffman_lengths` wherever its longest word fits); a stream
    of one symbol gets a 1-bit code.

    Package-merge: the used symbols sorted by count are the coins of every denomination
    ``2**-l``, ``l = 1 .. max_bits``; from the smallest denomination up, the items of one are
    paired into packages (their counts and symbols summed) and merged, by count, into the
    next one's coins (ties: coins first, so the result is deterministic); of the
    denomination ``1/2`` list the ``2 n - 2`` cheapest items are taken, and a symbol's length
    is how many of them hold it. The Kraft sum is exactly 1 (for two symbols or more).
    """
    counts = np.asarray(counts, np.int64)
    if max_bits < 1:
        raise DynfixError(f"a code needs words of at least 1 bit, not at most {max_bits}")
    lengths = np.zeros(len(counts), np.int64)
    used = np.flatnonzero(counts > 0)
    n = len(used)
    if n <= 1:
        lengths[used] = 1
        return lengths
    if n > 1 << max_bits:
        raise DynfixError(f"{n} symbols do not fit a code of words of at most {max_bits} "
                          f"bits ({1 << max_bits} of them)")
    order = used[np.argsort(counts[used], kind="stable")]
    coins_w = counts[order]
    coins = np.eye(n, dtype=np.int64)       # each item's symbols (columns: ``order``)
    weights, members = coins_w, coins
    for _ in range(max_bits - 1):
        pairs = len(weights) // 2
        pw = weights[:2 * pairs:2] + weights[1:2 * pairs:2]
        pm = members[:2 * pairs:2] + members[1:2 * pairs:2]
        w = np.concatenate([coins_w, pw])
        keep = np.argsort(w, kind="stable")
        weights, members = w[keep], np.concatenate([coins, pm])[keep]
    lengths[order] = members[:2 * n - 2].sum(axis=0)
    return lengths


def kraft_sum(lengths) -> float:
    """``sum(2**-l)`` over the used symbols' lengths: at most 1 for a prefix code, exactly
    1 for a complete one."""
    return float(sum(2.0 ** -int(n) for n in np.asarray(lengths).ravel() if n))


def table_bits(lengths: np.ndarray) -> int:
    """Bits to describe a canonical code: one length per symbol, each in enough bits."""
    return len(lengths) * max(1, int(np.max(lengths)).bit_length())


def canonical_order(lengths: np.ndarray) -> np.ndarray:
    """The symbols that have a code, by (length, symbol): the order of the canonical words."""
    lengths = np.asarray(lengths, np.int64)
    used = np.flatnonzero(lengths)
    return used[np.lexsort((used, lengths[used]))]


def length_counts(lengths: np.ndarray) -> np.ndarray:
    """How many words each length has: entry ``l`` for ``l = 0 .. max(lengths)`` (entry 0 is
    always 0)."""
    lengths = np.asarray(lengths, np.int64)
    return np.bincount(lengths[lengths > 0], minlength=int(lengths.max(initial=0)) + 1)


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """The canonical Huffman code words (as integers) for the code ``lengths``: symbols
    ordered by (length, symbol), each code the previous one plus 1, shifted left to the
    next length."""
    lengths = np.asarray(lengths, np.int64)
    codes = np.zeros(len(lengths), np.int64)
    code, prev = 0, 0
    for s in canonical_order(lengths):
        code <<= int(lengths[s]) - prev
        codes[s], prev = code, int(lengths[s])
        code += 1
    return codes


def code_bits(symbols: np.ndarray, lengths: np.ndarray) -> int:
    """Bits of ``symbols`` coded with the code ``lengths``."""
    return int(np.asarray(lengths, np.int64)[np.asarray(symbols, np.int64).ravel()].sum())


def huffman_encode(symbols: np.ndarray, lengths: np.ndarray) -> tuple[bytes, int]:
    """The symbol stream coded with the canonical code of ``lengths``, MSB first, the last
    byte padded with zeros: (bytes, number of bits). Vectorized over the output bits."""
    symbols = np.asarray(symbols, np.int64).ravel()
    lengths = np.asarray(lengths, np.int64)
    outside = symbols.size and not 0 <= symbols.min() <= symbols.max() < len(lengths)
    if outside or np.any(lengths[symbols] == 0):
        raise DynfixError("Huffman coding: a symbol of the stream has no code")
    codes = canonical_codes(lengths)
    n = lengths[symbols]
    nbits = int(n.sum())
    # Per output bit: the symbol it belongs to and its place in that symbol's word.
    which = np.repeat(np.arange(len(symbols)), n)
    ends = np.cumsum(n)
    shift = ends[which] - 1 - np.arange(nbits)          # bits after it in its word
    bits = (codes[symbols][which] >> shift) & 1
    return np.packbits(bits.astype(np.uint8)).tobytes(), nbits


def huffman_decode(data: bytes, nbits: int, lengths: np.ndarray,
                   count: int | None = None) -> np.ndarray:
    """The symbols of :func:`huffman_encode`'s output: its first ``nbits`` bits, which must
    end with a word; or with ``count`` the first ``count`` symbols (bits after them
    ignored).

    Canonically, as the hardware decoder does one bit at a time: the first ``l`` bits are a
    word of length ``l`` when they are below that length's first word plus its count. Here
    every bit position is decoded at once (the word that would start there), then the words
    are chained from position 0.
    """
    lengths = np.asarray(lengths, np.int64)
    top = int(lengths.max(initial=0))
    if top == 0:
        raise DynfixError("Huffman decoding: the code has no words")
    per_len = length_counts(lengths)
    order = canonical_order(lengths)
    bits = np.unpackbits(np.frombuffer(bytes(data), np.uint8))[:nbits].astype(np.int64)
    if len(bits) < nbits:
        raise DynfixError(f"Huffman decoding: {nbits} bits asked, the data has {len(bits)}")
    padded = np.concatenate([bits, np.zeros(top, np.int64)])
    code = np.zeros(nbits, np.int64)
    found = np.zeros(nbits, np.int64)          # the word's length at each position, 0: none
    index = np.zeros(nbits, np.int64)          # its place in the canonical order
    first = base = 0                           # first word of the length, its order index
    for ln in range(1, top + 1):
        code = (code << 1) | padded[ln - 1:ln - 1 + nbits]
        off = code - first
        hit = (found == 0) & (off >= 0) & (off < per_len[ln])
        found[hit], index[hit] = ln, base + off[hit]
        first, base = (first + per_len[ln]) << 1, base + per_len[ln]
    # A word that runs past the end is no word.
    found[np.arange(nbits) + found > nbits] = 0
    ln_at, sym_at = found.tolist(), order[index].tolist()
    out, p = [], 0
    want = count if count is not None else -1
    while p < nbits and len(out) != want:
        ln = ln_at[p]
        if not ln:
            what = ("ends inside a code word" if p + top > nbits
                    else f"bit {p} starts no code word")
            raise DynfixError(f"Huffman decoding: the stream {what}")
        out.append(sym_at[p])
        p += ln
    if count is not None and len(out) != count:
        raise DynfixError(f"Huffman decoding: {count} symbols asked, the stream holds "
                          f"{len(out)}")
    return np.asarray(out, np.int64)
