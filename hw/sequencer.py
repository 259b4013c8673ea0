"""Address sequencer of a layer: one (map word, weight word) pair per cycle."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .config import EngineConfig
from .program import entry_layout

#: Loop levels inside an output-channel group, outermost first:
#: (name, count field, map-address step, row step, column step). ``None``: no movement;
#: an int is a constant step, a string a program field.
LEVELS = (
    ("py", "n_py", "st_py", "cs_py", None),    # pooled output row
    ("px", "n_px", "st_px", None, "cs_px"),    # pooled output column
    ("dy", "pool", "st_dy", "cs_dy", None),    # conv row inside the pooling window
    ("dx", "pool", "st_dx", None, "cs_dx"),    # conv column inside the pooling window
    ("ky", "kh", "st_ky", 1, None),            # kernel row
    ("kx", "kw", "t_in", None, 1),             # kernel column
    ("t", "t_in", 1, None, None),              # input word of the pixel
)


class Sequencer(wiring.Component):
    """Walks a layer's loop nest and issues one map word and one weight word per cycle.

    Order: output-channel groups (``n_mg``) outermost, then pooled pixels, the ``p x p``
    conv pixels of each pooling window back to back, kernel rows, kernel columns, input
    words. Every loop level keeps the map address and the window coordinates at the start of
    its current iteration and adds a precomputed step when it advances (no multipliers).
    Weights are read in the same order, so their address is a counter that restarts at the
    group's first word for each output pixel. When a pooled result takes the write-back more
    than one cycle (``cfg.wb_words > 1``), ``gap`` idle cycles follow each pooling window
    (the compiler sets it so results arrive at least ``wb_words`` cycles apart).

    Members
    -------
    entry : In(program entry)   held constant while running
    start : In(1)               pulse: begin the layer next cycle
    valid : Out(1)              an item is issued this cycle
    map_addr, w_addr, b_addr : Out(unsigned)
    pad : Out(1)                the map word lies in the zero padding
    first, last : Out(1)        first / last item of an output pixel
    pool_first, pool_last : Out(1)   first / last conv pixel of a pooling window
    done : Out(1)               the last item of the layer is issued this cycle
    """

    def __init__(self, cfg: EngineConfig):
        self._cfg = cfg
        super().__init__({
            "entry": In(entry_layout(cfg)),
            "start": In(1),
            "valid": Out(1),
            "map_addr": Out(unsigned(cfg.fmap_addr_bits)),
            "w_addr": Out(unsigned(cfg.weight_addr_bits)),
            "b_addr": Out(unsigned(cfg.bias_addr_bits)),
            "pad": Out(1),
            "first": Out(1), "last": Out(1),
            "pool_first": Out(1), "pool_last": Out(1),
            "done": Out(1),
        })

    def _field(self, step):
        return step if isinstance(step, int) else self.entry[step]

    def elaborate(self, platform):
        m = Module()
        cfg, e = self._cfg, self.entry
        running = Signal()
        issuing = Signal()                  # running and not idling after a window
        m.d.comb += self.valid.eq(issuing)

        # Counters; carry[i] = every level inside i wraps this cycle (level i advances).
        cnt = {name: Signal(unsigned(cfg.dim_bits), name=f"cnt_{name}")
               for name, *_ in LEVELS}
        mg = Signal(unsigned(cfg.dim_bits))
        # Loop limits (count - 1), registered on start so no subtractor sits in the loop.
        limit = {count: Signal(signed(cfg.dim_bits + 1), name=f"lim_{count}")
                 for count in dict.fromkeys([lv[1] for lv in LEVELS] + ["n_mg"])}
        with m.If(self.start):
            m.d.sync += [lim.eq(e[count] - 1) for count, lim in limit.items()]
        wrap = {name: cnt[name] == limit[count] for name, count, *_ in LEVELS}
        carry = {}
        c = issuing
        for name, *_ in reversed(LEVELS):
            carry[name] = c
            c = c & wrap[name]
        group_end = c                       # every level of the group wraps
        m.d.comb += self.done.eq(group_end & (mg == limit["n_mg"]))
        next_group = group_end & ~self.done
        pixel_end = carry["dx"]             # ky, kx and t all wrap

        if cfg.wb_words > 1:
            idle = Signal(unsigned(cfg.dim_bits))
            m.d.comb += issuing.eq(running & (idle == 0))
            with m.If(self.start):
                m.d.sync += idle.eq(0)
            with m.Elif(carry["px"]):       # a pooling window's last item: rest gap cycles
                m.d.sync += idle.eq(e.gap)
            with m.Elif(idle != 0):
                m.d.sync += idle.eq(idle - 1)
        else:
            m.d.comb += issuing.eq(running)

        for name, *_ in LEVELS:
            with m.If(carry[name]):
                m.d.sync += cnt[name].eq(Mux(wrap[name], 0, cnt[name] + 1))
        with m.If(next_group):
            m.d.sync += mg.eq(mg + 1)

        # Map address, window row and column: one register per level that moves them.
        values = {}
        for q, (shape, init, col) in {"addr": (signed(cfg.fmap_addr_bits + 2), e.addr0, 2),
                                      "iy": (signed(cfg.dim_bits + 1), e.iy0, 3),
                                      "ix": (signed(cfg.dim_bits + 1), e.ix0, 4)}.items():
            cur = new = init
            for level in LEVELS:
                name, step = level[0], level[col]
                if step is None:
                    continue
                reg = Signal(shape, name=f"{q}_{name}")
                new = Mux(carry[name], Mux(wrap[name], new, reg + self._field(step)), reg)
                with m.If(self.start):
                    m.d.sync += reg.eq(init)
                with m.Elif(issuing):
                    m.d.sync += reg.eq(new)
                cur = reg
            values[q] = cur
        iy, ix = values["iy"], values["ix"]
        m.d.comb += [
            self.map_addr.eq(values["addr"]),
            self.pad.eq(iy[-1] | ix[-1] | (iy >= e.in_h) | (ix >= e.in_w)),
            self.first.eq((cnt["ky"] == 0) & (cnt["kx"] == 0) & (cnt["t"] == 0)),
            self.last.eq(pixel_end),
            self.pool_first.eq((cnt["dy"] == 0) & (cnt["dx"] == 0)),
            self.pool_last.eq(wrap["dy"] & wrap["dx"]),
        ]

        # Weights: w_addr restarts at the group's first word for every output pixel.
        w_group = Signal.like(self.w_addr)
        with m.If(self.start):
            m.d.sync += [self.w_addr.eq(e.w_base), w_group.eq(e.w_base),
                         self.b_addr.eq(e.b_base)]
        with m.Elif(issuing):
            with m.If(next_group):
                m.d.sync += [self.w_addr.eq(self.w_addr + 1), w_group.eq(self.w_addr + 1),
                             self.b_addr.eq(self.b_addr + 1)]
            with m.Elif(pixel_end):
                m.d.sync += self.w_addr.eq(w_group)
            with m.Else():
                m.d.sync += self.w_addr.eq(self.w_addr + 1)

        with m.If(self.start):
            m.d.sync += [running.eq(1), mg.eq(0)]
            m.d.sync += [cnt[name].eq(0) for name in cnt]
        with m.Elif(self.done):
            m.d.sync += running.eq(0)
        return m
