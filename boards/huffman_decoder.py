"""Decode a canonically Huffman-coded byte stream, one coded bit per clock cycle: the flash
image's payload at load (``boards/flash_image.py``, ``FlashCoding.HUFFMAN``)."""

from __future__ import annotations

from collections.abc import Sequence

from amaranth import Const, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from dynfix.quant.huffman import canonical_order, kraft_sum, length_counts

__all__ = ["HuffmanDecoder", "check_decoder"]

#: Symbols of a byte code.
SYMBOLS = 256


def check_decoder(lengths: Sequence[int], length: int) -> None:
    """Raise ``ValueError`` unless :class:`HuffmanDecoder` takes these parameters: one code
    length per byte value, at least one of them used, a prefix code (Kraft sum at most 1),
    and at least one symbol to decode."""
    if len(lengths) != SYMBOLS:
        raise ValueError(f"a byte code has {SYMBOLS} code lengths, not {len(lengths)}")
    if any(n < 0 for n in lengths) or not any(lengths):
        raise ValueError("the code lengths must be 0 or more, at least one of them positive")
    if kraft_sum(lengths) > 1:
        raise ValueError("the code lengths are no prefix code (their Kraft sum exceeds 1)")
    if length < 1:
        raise ValueError(f"the decoder must emit at least 1 byte, not {length}")


class HuffmanDecoder(wiring.Component):
    """Bytes of canonical Huffman code words (MSB first) in, the ``length`` decoded bytes out.

    The code is a constant of the design, given by its ``lengths`` (per byte value;
    :func:`~dynfix.quant.huffman.canonical_codes` gives the words): how many words each
    length has are constants compared against, and the byte values in canonical order
    (length, then value) sit in a small memory with that content. Decoding is bit-serial
    and canonical (as zlib's ``puff``): after ``l`` bits the code so far is a word when it
    is below that length's first word plus its count, and the word's byte is at the
    length's first index plus the difference; otherwise the next length's first word is
    ``(first + count) << 1``. One bit is taken per cycle, a new byte from ``i`` in the
    cycle the last bit of the previous one is used, so a byte takes 8 cycles (the single-bit
    SPI flash reader delivers one every 16 or more). A decoded byte is read from the memory
    in the cycle its last bit is taken and is offered on ``o`` the next; while ``o`` holds a
    byte nobody took, the bit that would end the next word waits (backpressure both ways).

    After ``length`` bytes the decoder stops decoding: the bits after them (the last byte's
    padding, or more bytes) are taken and dropped, and ``done`` rises once the last
    decoded byte is taken. It decodes once after reset. A word longer than the code's
    longest (only in a stream that is not of this code, whose code is incomplete) starts
    the next word afresh.

    Parameters
    ----------
    lengths : sequence of int
        The code length of each byte value 0-255 (0: the value does not occur).
    length : int
        Bytes to decode.

    Members
    -------
    i : In(stream.Signature(8))
        The coded bytes.
    o : Out(stream.Signature(8))
        The decoded bytes.
    done : Out(1)
        All ``length`` bytes were taken; held.
    """

    def __init__(self, lengths: Sequence[int], length: int):
        lengths = [int(n) for n in lengths]
        check_decoder(lengths, length)
        self._lengths, self._length = lengths, length
        super().__init__({
            "i": In(stream.Signature(unsigned(8))),
            "o": Out(stream.Signature(unsigned(8))),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        per_len = [int(c) for c in length_counts(self._lengths)]    # entry 0 unused
        top = len(per_len) - 1                  # the longest word's bits
        symbols = [int(s) for s in canonical_order(self._lengths)]
        n_sym = len(symbols)

        m.submodules.symbols = table = Memory(shape=unsigned(8), depth=max(2, n_sym),
                                              init=symbols)
        rd = table.read_port()                  # data holds while en is low

        sh = Signal(8)                          # the coded byte, next bit in bit 7
        left = Signal(range(9))                 # its bits not yet used
        ln = Signal(range(1, top + 1), init=1)  # bits of the word so far, this one included
        code = Signal(top)                      # the word so far, shifted up for this bit
        first = Signal(top + 1)                 # the first word of length `ln`
        index = Signal(range(n_sym + 1))        # its place in the canonical order
        emitted = Signal(range(self._length + 1))
        decoding = emitted != self._length

        count = Signal(range(n_sym + 1))        # words of length `ln`
        w = len(count)
        counts = Const(sum(c << (w * k) for k, c in enumerate(per_len)), w * (top + 1))
        m.d.comb += count.eq(counts.word_select(ln, w))
        word = Signal(top)
        offset = Signal(top + 1)
        hit = Signal()                          # this bit ends a word
        m.d.comb += [
            word.eq(code | sh[7]),
            offset.eq(word - first),
            hit.eq((word >= first) & (offset < count)),
            rd.addr.eq(index + offset),
        ]

        free = ~self.o.valid | self.o.ready     # `o` can take a byte at this edge
        have = left != 0
        step = Signal()                         # the bit is used at this edge
        m.d.comb += step.eq(have & (~decoding | ~hit | free))
        emit = step & decoding & hit

        m.d.comb += [
            self.i.ready.eq(~have | ((left == 1) & step)),
            self.o.payload.eq(rd.data),
            rd.en.eq(emit),
            self.done.eq(~decoding & ~self.o.valid),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [sh.eq(self.i.payload), left.eq(8)]
        with m.Elif(step):
            m.d.sync += [sh.eq(sh << 1), left.eq(left - 1)]

        with m.If(emit):
            m.d.sync += [self.o.valid.eq(1), emitted.eq(emitted + 1)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.If(step & decoding):
            with m.If(hit | (ln == top)):       # a word (or none this long): start afresh
                m.d.sync += [ln.eq(1), code.eq(0), first.eq(0), index.eq(0)]
            with m.Else():
                m.d.sync += [
                    ln.eq(ln + 1),
                    code.eq(word << 1),
                    first.eq((first + count) << 1),
                    index.eq(index + count),
                ]
        return m
