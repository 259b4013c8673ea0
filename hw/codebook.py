"""The codebook lookup of an engine with weight indices (``w_index_bits``: weight sharing,
Deep Compression): every weight word holds ``b``-bit indices, and this component turns each
into its layer's integer weight between the weight read and the MAC array."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from dynfix.errors import DynfixError
from .config import clog2
from .timing import CODEBOOK

__all__ = ["Codebook", "index_word", "weight_word"]


def index_word(index_bits: int, lanes: int, tm: int) -> data.ArrayLayout:
    """A word of indices: row ``j`` (output channel ``j`` of the group) holds ``lanes``
    unsigned ``index_bits``-bit indices, lane 0 in the low bits (as a weight word)."""
    return data.ArrayLayout(data.ArrayLayout(unsigned(index_bits), lanes), tm)


def weight_word(weight_bits: int, lanes: int, tm: int) -> data.ArrayLayout:
    """A word of weights, as the MAC array's ``w`` takes it."""
    return data.ArrayLayout(data.ArrayLayout(signed(weight_bits), lanes), tm)


class Codebook(wiring.Component):
    """Looks every index of a weight word up in the current group's codebook: ``o`` holds
    the weights of the index word ``i`` :data:`~dynfix.hw.timing.CODEBOOK` cycle later.

    Where the codebooks live: every lane looks its index up in the same cycle (``tm *
    lanes`` lookups a cycle), so the current codebook must be in flip-flops, ``2**b``
    registers of ``weight_bits`` each lanes' multiplexers select from. The tables
    themselves are constants of the generated design (as the weight ROM's contents): a
    block RAM would hand out one entry a cycle (``2**b`` cycles at every group's start,
    which the cycle model would have to count, and a whole block for a few hundred bits),
    whereas a table of constants selected by ``sel`` costs about a LUT per codebook bit.
    The registers reload from the table ``sel`` names every cycle; ``sel`` is the program
    entry's ``cb``, which the controller holds from the cycle after an entry's fetch
    through its drain, so the registers hold the group's codebook from the cycle after
    that, before its first weight read.

    Parameters
    ----------
    index_bits, weight_bits : int
        Widths of an index and of a weight (each table entry a signed ``weight_bits``-bit
        integer).
    lanes, tm : int
        The word's shape (:func:`index_word`).
    tables : list of list of int
        The codebooks, at least one, each at most ``2**index_bits`` integers (entry ``k``:
        the weight index ``k`` stands for; missing entries are 0).

    Members
    -------
    sel : In(unsigned(clog2(len(tables))))    the group's codebook, held during the group
    i : In(index_word(index_bits, lanes, tm))
    o : Out(weight_word(weight_bits, lanes, tm))    registered
    """

    latency = CODEBOOK

    def __init__(self, index_bits: int, weight_bits: int, lanes: int, tm: int,
                 tables: list[list[int]]):
        size = 1 << index_bits
        lo, hi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1)) - 1
        if not tables:
            raise DynfixError("codebook lookup: no codebook given")
        for k, t in enumerate(tables):
            if len(t) > size or any(not lo <= int(v) <= hi for v in t):
                raise DynfixError(f"codebook {k} ({len(t)} entries) does not fit "
                                  f"{size} entries of {weight_bits}-bit weights")
        self._bits, self._wb = index_bits, weight_bits
        self._tables = [[int(v) for v in t] + [0] * (size - len(t)) for t in tables]
        super().__init__({
            "sel": In(unsigned(clog2(len(tables)))),
            "i": In(index_word(index_bits, lanes, tm)),
            "o": Out(weight_word(weight_bits, lanes, tm)),
        })

    def elaborate(self, platform):
        m = Module()
        table = data.ArrayLayout(signed(self._wb), 1 << self._bits)
        current = Signal(table, name="entries")
        if len(self._tables) == 1:
            m.d.sync += current.eq(table.const(self._tables[0]))
        else:
            # The last table also for the codes of ``sel`` that name none (complete cases).
            with m.Switch(self.sel):
                for k, t in enumerate(self._tables[:-1]):
                    with m.Case(k):
                        m.d.sync += current.eq(table.const(t))
                with m.Default():
                    m.d.sync += current.eq(table.const(self._tables[-1]))
        for j, row in enumerate(self.i):
            for lane, index in enumerate(row):
                m.d.sync += self.o[j][lane].eq(current[index])
        return m
