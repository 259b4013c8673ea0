"""Depthwise window datapath: a line buffer and a K x K window in front of the MAC array.

A depthwise convolution reads each input value for ``K * K`` output pixels, but a map word
(``lanes`` channels of one pixel) meets only one weight per channel in channel mode, so such
a layer ran at ``1 / max(tm, lanes)`` of peak. Here a window group walks its padded input map
once, one word per pixel, row by row; the line buffer keeps the ``K - 1`` rows above the
current pixel and the window register the last ``K`` columns of those ``K`` rows, so each
word completes one window: row ``j`` of the MAC array gets channel ``off + j``'s ``K * K``
taps (lane ``ky * K + kx``) and multiplies them with its own channel's kernel, one output
pixel of ``tm`` channels per input pixel (``docs/engine.md``, "Depthwise window").
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .config import EngineConfig, clog2
from . import timing


class DwWindow(wiring.Component):
    """The window between the map register and the MAC array (engines with
    ``cfg.dw_window``); items of other layers pass through with the same latency.

    In a window layer (``win``) every item is one pixel of the input map, row by row
    (``n_rows`` x ``n_cols`` of them per group of ``tm`` channels), from the map's first
    row and column on: the compiler makes them exactly what the output pixels' windows
    cover below and right of that (the bottom and right padding are items that read the
    padding value). The top and left padding are not walked: the window takes the padding
    value ``pad`` for a line-buffer row above the map's first (row ``r`` has only ``r``
    rows above it) and for the ``K - 1`` columns left of each row's first item. An item
    completes a window once ``wy`` rows and ``wx`` columns have passed (``K - 1`` minus the
    top / left padding), on the stride's grid (``sy``, ``sx``) after that; only those items
    leave ``o_valid`` high. ``off`` is the group's lane offset in the word (a multiple of
    ``tm``), given with each item.

    Stages: the item and the line buffer's read (the pixel's column), then the window's
    shift (the new column: the line buffer's ``K - 1`` rows above, the item's word), then
    the rows' taps: :attr:`LATENCY` cycles from ``x`` to ``xr``.

    Members
    -------
    start : In(1)                       the layer starts: the counters go to the map's corner
    win : In(1)                         the layer is a window group (else pass through)
    n_rows, n_cols, sy, sx : In(unsigned(dim_bits))    rows and columns walked, strides
    wy, wx : In(range(K))               rows and columns before the first window
    pad : In(signed(data_bits))         the padding value (the input map's zp, or 0)
    off : In(range(lanes))              the group's lane offset, with the item
    valid, first, last : In(1)          an item, its word on ``x``
    x : In(ArrayLayout(signed(data_bits), lanes))
    o_valid, o_first, o_last : Out(1)   the item, :attr:`LATENCY` cycles later (``o_valid``
                                        only for completed windows in a window layer)
    xr : Out(ArrayLayout(ArrayLayout(signed(data_bits), lanes), tm))   per row of the MAC
                                        array: the window's taps, or the item's word
    """

    LATENCY = timing.DW_WINDOW

    def __init__(self, cfg: EngineConfig):
        if not cfg.dw_window or cfg.dw_line < 2:
            raise ValueError("DwWindow needs a fitted dw_window and dw_line")
        self._cfg = cfg
        word = data.ArrayLayout(signed(cfg.data_bits), cfg.lanes)
        dims = unsigned(cfg.dim_bits)
        super().__init__({
            "start": In(1), "win": In(1),
            "n_rows": In(dims), "n_cols": In(dims), "sy": In(dims), "sx": In(dims),
            "wy": In(range(cfg.dw_window)), "wx": In(range(cfg.dw_window)),
            "pad": In(signed(cfg.data_bits)),
            "off": In(range(max(2, cfg.lanes))),
            "valid": In(1), "first": In(1), "last": In(1),
            "x": In(word),
            "o_valid": Out(1), "o_first": Out(1), "o_last": Out(1),
            "xr": Out(data.ArrayLayout(word, cfg.tm)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        n, tm, k = cfg.lanes, cfg.tm, cfg.dw_window
        word = data.ArrayLayout(signed(cfg.data_bits), n)
        # Line buffer: at column c, the K - 1 rows above the current one (index 0: the row
        # just above). Read with the item, written a cycle later: a column is read again
        # only a whole row later (window rows are at least 2 columns wide: the compiler's
        # plan._takes_window), so no read meets a pending write.
        m.submodules.line = line = memory.Memory(shape=data.ArrayLayout(word, k - 1),
                                                 depth=cfg.dw_line, init=[])
        rd = line.read_port()
        wr = line.write_port()

        # Stage A: where the item lies. cwait / rwait: columns / rows still to come before
        # the first window; cph / rph: the position on the stride's grid after that.
        col = Signal(unsigned(clog2(cfg.dw_line + 1)))
        row = Signal(unsigned(cfg.dim_bits))
        cwait, rwait = Signal(range(k)), Signal(range(k))
        cph, rph = Signal(unsigned(cfg.dim_bits)), Signal(unsigned(cfg.dim_bits))
        step = self.valid & self.win
        m.d.comb += [rd.addr.eq(col), rd.en.eq(self.valid)]
        with m.If(self.start):
            m.d.sync += [col.eq(0), cwait.eq(self.wx), cph.eq(0),
                         row.eq(0), rwait.eq(self.wy), rph.eq(0)]
        with m.Elif(step):
            with m.If(col == self.n_cols - 1):
                m.d.sync += [col.eq(0), cwait.eq(self.wx), cph.eq(0)]
                with m.If(row == self.n_rows - 1):         # the group's last pixel
                    m.d.sync += [row.eq(0), rwait.eq(self.wy), rph.eq(0)]
                with m.Else():
                    m.d.sync += row.eq(row + 1)
                    _grid_step(m, rwait, rph, self.sy)
            with m.Else():
                m.d.sync += col.eq(col + 1)
                _grid_step(m, cwait, cph, self.sx)

        # Stage B: the new column (top to bottom: the line buffer's oldest row first, the
        # item's word last; rows above the map's first are padding) shifts into the window
        # (at a row's first item, the columns left of it are padding); the item's word goes
        # into the buffer.
        x_b = Signal(word)
        col_b = Signal.like(col)
        top_b = Signal(k - 1)               # bit i: row i + 1 above lies above the map
        row_start_b = Signal()
        m.d.sync += [top_b.eq(Cat(row <= i for i in range(k - 1))),
                     row_start_b.eq(col == 0)]
        valid_b, first_b, last_b, ok_b, win_b = (Signal(name=f"{s}_b") for s in
                                                 ("valid", "first", "last", "ok", "win"))
        off_b = Signal.like(self.off)
        m.d.sync += [x_b.eq(self.x), col_b.eq(col), valid_b.eq(self.valid),
                     first_b.eq(self.first), last_b.eq(self.last), win_b.eq(self.win),
                     ok_b.eq((cwait == 0) & (cph == 0) & (rwait == 0) & (rph == 0)),
                     off_b.eq(self.off)]
        pad = Cat(self.pad for _ in range(n))
        above = [Mux(top_b[i], pad, rd.data[i].as_value()) for i in range(k - 1)]
        m.d.comb += [wr.addr.eq(col_b), wr.en.eq(valid_b & win_b),
                     wr.data.eq(Cat(x_b, *above[:k - 2]))]
        column = [above[k - 2 - ky] for ky in range(k - 1)] + [x_b]
        window = [[Signal(word, name=f"win{ky}_{kx}") for kx in range(k)] for ky in range(k)]
        with m.If(valid_b):
            for ky in range(k):
                m.d.sync += window[ky][k - 1].eq(column[ky])
                with m.If(row_start_b & win_b):
                    m.d.sync += [window[ky][kx].eq(pad) for kx in range(k - 1)]
                with m.Else():
                    m.d.sync += [window[ky][kx].eq(window[ky][kx + 1]) for kx in range(k - 1)]

        # Stage C: the taps per row (channel off + j), or the item's word (the window's
        # newest value) in any other layer.
        win_c = Signal()
        off_c = Signal.like(self.off)
        m.d.sync += [self.o_valid.eq(valid_b & (~win_b | ok_b)), self.o_first.eq(first_b),
                     self.o_last.eq(last_b), win_c.eq(win_b), off_c.eq(off_b)]
        newest = window[k - 1][k - 1]
        for j in range(tm):
            for lane in range(n):
                if lane >= k * k:
                    m.d.comb += self.xr[j][lane].eq(newest[lane])
                    continue
                src = window[lane // k][lane % k]
                tap = src[j]
                for o in range(tm, n, tm):
                    tap = Mux(off_c == o, src[o + j], tap)
                m.d.comb += self.xr[j][lane].eq(Mux(win_c, tap, newest[lane]))
        return m


def _grid_step(m: Module, wait: Signal, phase: Signal, stride) -> None:
    """One row (column) further: count the rows (columns) before the first window down,
    then the position on the stride's grid round."""
    with m.If(wait != 0):
        m.d.sync += wait.eq(wait - 1)
    with m.Else():
        m.d.sync += phase.eq(Mux(phase == stride - 1, 0, phase + 1))
