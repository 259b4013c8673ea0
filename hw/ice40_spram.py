"""A single-port RAM on iCE40 SB_SPRAM256KA cells (the UP5K's four 16K x 16 SPRAMs).

The bitstream cannot initialize an SPRAM, so a memory placed here is written after
configuration (the engine's weights: streamed in by the board top from the SPI flash, or by
the simulation host; ``hw/weight_memory.py``), or by the engine itself (its maps,
``hw/map_memory.py``). The cell has one port: each cycle it either reads
(``DATAOUT`` registered, one cycle later) or writes, with a write enable per 4-bit nibble
(``MASKWREN``). A memory wider than 16 bits takes cells side by side (columns), one deeper
than 16K words takes rows of them, selected by the top address bits (``CHIPSELECT``) and a
read multiplexer on the registered row.

yosys would infer SPRAMs only with ``synth_ice40 -spram`` and only for shapes it recognizes;
the cells are instantiated so the placement is what the fit and the resource estimate
counted. yosys's cell model (``cells_sim.v``, :func:`dynfix.hw.ice40_cells.cell_model`)
simulates the Verilog; ``cell=False`` gives a behavioural twin for Amaranth's simulator.
"""

from __future__ import annotations

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from dynfix.errors import DynfixError
from .config import clog2

__all__ = ["CELL", "CELL_DEPTH", "CELL_WIDTH", "SPRAM", "halfwords", "load_image",
           "spram_cells"]

#: The iCE40 single-port RAM primitive.
CELL = "SB_SPRAM256KA"
CELL_DEPTH = 16384
CELL_WIDTH = 16


def spram_cells(depth: int, width: int) -> tuple[int, int]:
    """``(rows, columns)`` of cells holding ``depth`` words of ``width`` bits."""
    return -(-depth // CELL_DEPTH), -(-width // CELL_WIDTH)


def halfwords(words: list[int], width: int) -> list[int]:
    """``words`` of ``width`` bits as the 16-bit halfwords a load streams: word by word, the
    low halfword (column 0's) first."""
    cols = spram_cells(1, width)[1]
    return [(int(w) >> (CELL_WIDTH * c)) & 0xFFFF for w in words for c in range(cols)]


def load_image(words: list[int], depth: int, width: int) -> list[int]:
    """What a load streams into a ``depth``-word SPRAM memory of ``width``-bit words: the
    ``words`` padded with zeros to ``depth``, as :func:`halfwords` (the simulation host's
    ``weights16.hex`` and the flash payload alike)."""
    if len(words) > depth:
        raise DynfixError(f"{len(words)} words do not fit a memory of {depth}")
    return halfwords(list(words) + [0] * (depth - len(words)), width)


class SPRAM(wiring.Component):
    """``depth`` x ``width`` single-port RAM: in a cycle with ``w_en`` the nibbles of
    ``w_data`` selected by ``w_mask`` are written at ``addr``; in any other cycle word
    ``addr`` is read and appears on ``r_data`` the next cycle (undefined after a write).

    Members
    -------
    addr : In(unsigned(clog2(depth)))
    w_en : In(1)
    w_data : In(columns * 16)           column c's cell takes bits 16c .. 16c + 15
    w_mask : In(columns * 4)            one enable per nibble
    r_data : Out(width)
    """

    def __init__(self, depth: int, width: int, cell: bool = True):
        if depth < 1 or width < 1:
            raise DynfixError(f"an SPRAM needs a positive depth and width, not {depth} x "
                              f"{width}")
        self._depth, self._cell = depth, cell
        self.rows, self.columns = spram_cells(depth, width)
        super().__init__({
            "addr": In(unsigned(clog2(depth))),
            "w_en": In(1),
            "w_data": In(self.columns * CELL_WIDTH),
            "w_mask": In(self.columns * 4),
            "r_data": Out(width),
        })

    def elaborate(self, platform):
        m = Module()
        full = self.columns * CELL_WIDTH
        out = Signal(full)
        if not self._cell:
            mem = memory.Memory(shape=full, depth=self._depth, init=[])
            m.submodules.mem = mem
            wr = mem.write_port(granularity=4)
            rd = mem.read_port()
            m.d.comb += [wr.addr.eq(self.addr), wr.data.eq(self.w_data),
                         wr.en.eq(Cat(self.w_mask[i] & self.w_en for i in range(full // 4))),
                         rd.addr.eq(self.addr), rd.en.eq(~self.w_en), out.eq(rd.data)]
            m.d.comb += self.r_data.eq(out)
            return m
        # The cell's 14-bit address: the low bits of ``addr``, zero-extended when shallower.
        low = Signal(clog2(CELL_DEPTH), name="cell_addr")
        m.d.comb += low.eq(self.addr[:clog2(CELL_DEPTH)])
        row = self.addr[clog2(CELL_DEPTH):] if self.rows > 1 else Const(0, 1)
        row_q = Signal.like(row, name="row_q")      # the row read last cycle
        with m.If(~self.w_en):
            m.d.sync += row_q.eq(row)
        outs = []
        for r in range(self.rows):
            row_out = Signal(full, name=f"row{r}_data")
            sel = (row == r) if self.rows > 1 else Const(1, 1)
            for c in range(self.columns):
                m.submodules[f"cell_{r}_{c}"] = Instance(
                    CELL,
                    i_CLOCK=ClockSignal(), i_ADDRESS=low,
                    i_DATAIN=self.w_data[c * CELL_WIDTH:(c + 1) * CELL_WIDTH],
                    i_MASKWREN=self.w_mask[c * 4:(c + 1) * 4], i_WREN=self.w_en,
                    i_CHIPSELECT=sel, i_STANDBY=Const(0, 1), i_SLEEP=Const(0, 1),
                    i_POWEROFF=Const(1, 1),
                    o_DATAOUT=row_out[c * CELL_WIDTH:(c + 1) * CELL_WIDTH])
            outs.append(row_out)
        if self.rows > 1:
            # A cell that was not selected holds its last output: pick the row read.
            value = outs[0]
            for r in range(1, self.rows):
                value = Mux(row_q == r, outs[r], value)
            m.d.comb += out.eq(value)
        else:
            m.d.comb += out.eq(outs[0])
        m.d.comb += self.r_data.eq(out)
        return m

