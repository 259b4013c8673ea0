"""The weight memory: a ROM in block RAM, or an iCE40 SPRAM the host loads."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import EngineConfig
from .ice40_spram import CELL_WIDTH, SPRAM

__all__ = ["WeightMemory"]


class WeightMemory(wiring.Component):
    """``cfg.weight_depth`` words of ``tm * lanes`` weights (row ``j`` holds output channel
    ``j``'s), read one cycle after ``addr``.

    A ROM in block RAM initialized with ``weights``, or with ``cfg.w_spram`` an SPRAM, which
    the bitstream cannot initialize: ``wl`` writes it, one 16-bit column of a word per
    halfword (word by word, the low halfword first), while ``idle`` (no run in progress).
    Each write is registered, then takes the single port from the reads for its cycle;
    after the last halfword the position starts over at word 0.

    Members
    -------
    addr : In(unsigned(weight_addr_bits))
    data : Out(ArrayLayout(ArrayLayout(signed(weight_bits), lanes), tm))
        with ``cfg.w_index_bits`` unsigned codebook indices of that width instead
        (``hw/codebook.py``)
    wl : In(stream.Signature(16))       only with ``w_spram``
    idle : In(1)                        only with ``w_spram``
    """

    def __init__(self, cfg: EngineConfig, weights: list[int], cell: bool = True):
        self._cfg = cfg
        self._weights = weights
        self._cell = cell
        lane = unsigned(cfg.w_index_bits) if cfg.w_index_bits else signed(cfg.weight_bits)
        word = data.ArrayLayout(data.ArrayLayout(lane, cfg.lanes), cfg.tm)
        super().__init__({
            "addr": In(unsigned(cfg.weight_addr_bits)),
            "data": Out(word),
            **({"wl": In(stream.Signature(CELL_WIDTH)), "idle": In(1)} if cfg.w_spram
               else {}),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        word = self.data.shape()
        if not cfg.w_spram:
            # Packed integers (lane 0 in the low bits), as in the hex files.
            m.submodules.mem = rom = memory.Memory(
                shape=word, depth=cfg.weight_depth,
                init=[word.from_bits(w) for w in self._weights])
            rd = rom.read_port()
            m.d.comb += [rd.addr.eq(self.addr), self.data.eq(rd.data)]
            return m
        m.submodules.mem = ram = SPRAM(cfg.weight_depth, cfg.weight_word_bits, cell=self._cell)
        cols = ram.columns
        at = Signal.like(self.addr, name="load_word")
        col = Signal(range(max(2, cols)), name="load_col")
        w_en = Signal()
        w_addr = Signal.like(self.addr)
        w_mask = Signal(4 * cols)
        w_data = Signal(CELL_WIDTH)
        beat = self.wl.valid & self.wl.ready
        m.d.comb += self.wl.ready.eq(self.idle)
        m.d.sync += [w_en.eq(beat), w_addr.eq(at), w_data.eq(self.wl.payload),
                     w_mask.eq(Cat((col == c).replicate(4) for c in range(cols)))]
        with m.If(beat):
            with m.If(col == cols - 1):
                m.d.sync += [col.eq(0), at.eq(Mux(at == cfg.weight_depth - 1, 0, at + 1))]
            with m.Else():
                m.d.sync += col.eq(col + 1)
        m.d.comb += [ram.addr.eq(Mux(w_en, w_addr, self.addr)), ram.w_en.eq(w_en),
                     ram.w_data.eq(Cat(w_data for _ in range(cols))), ram.w_mask.eq(w_mask),
                     self.data.as_value().eq(ram.r_data)]
        return m
