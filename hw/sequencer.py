"""Address sequencer of a layer: one (map word, weight word) pair per cycle."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import group_step
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


#: With ``cfg.resize``: a group may read its input map through a Resize view (each stored
#: pixel read twice per axis; ``docs/engine.md``). The window's row and column are the view's
#: and step as always; the map address moves by the stored pixels, ``floor((v % 2 + cs) / 2)``
#: of them when the level's view coordinate ``v`` steps by ``cs``, so each level's address
#: step is one of two program fields, picked by the parity of the level's coordinate
#: register: level -> (that coordinate, the step from an even one, the step from an odd
#: one; None: the level's own step, kx's words per pixel). The t level reads the pixel's
#: words as always.
VIEW_STEPS = {"py": ("iy", "st_py", "st_py1"), "px": ("ix", "st_px", "st_px1"),
              "dy": ("iy", "st_dy", "st_dy1"), "dx": ("ix", "st_dx", "st_dx1"),
              "ky": ("iy", "st_ky", "st_ky1"), "kx": ("ix", "st_kx0", None)}


def _or_tree(terms: list):
    """OR of ``terms`` as a balanced tree (a left-leaning chain maps to a chain of LUTs)."""
    while len(terms) > 1:
        terms = [terms[i] | terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]


def levels(cfg: EngineConfig) -> tuple:
    """:data:`LEVELS` of ``cfg``: a depthwise engine steps kx by ``t_px`` (words per input
    pixel), since its depthwise groups read fewer words per pixel (``t_in``) than it has;
    in an engine with rectangular pools (``cfg.rect_pool``) dy counts the window's rows
    (``pool_h``), dx its columns (``pool``)."""
    lvls = LEVELS
    if cfg.depthwise:
        lvls = tuple(("kx", "kw", "t_px", None, 1) if lv[0] == "kx" else lv for lv in lvls)
    if cfg.rect_pool:
        lvls = tuple(("dy", "pool_h", *lv[2:]) if lv[0] == "dy" else lv for lv in lvls)
    return lvls


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

    A group with a residual Add (``entry.add``, engines with ``cfg.residual``) reads its
    shortcut first: before each output pixel's items, ``cfg.sc_slots`` *slot* items read the
    shortcut words of the pixel and the group (``sc`` high, ``pad`` high so the MAC array
    sees zeros; the loop counters hold still). ``sc_off`` is the group's lane offset in the
    first of those words.

    Members
    -------
    entry : In(program entry)   stable from the cycle before ``start`` until ``done``
    start : In(1)               pulse: begin the layer next cycle
    valid : Out(1)              an item is issued this cycle
    map_addr, w_addr, b_addr : Out(unsigned)
    pad : Out(1)                the map word lies in the zero padding
    first, last : Out(1)        first / last item of an output pixel
    pool_first, pool_last : Out(1)   first / last conv pixel of a pooling window
    done : Out(1)               the last item of the layer is issued this cycle
    sc, sc_last : Out(1)        a shortcut slot item / the pixel's last one (``cfg.residual``)
    sc_off : Out(range(lanes))  the group's lane offset in its first shortcut word

    With ``cfg.w_bulk`` the weights come from a ring (``hw/weight_ring.py``) that holds the
    inference's stream of weight words from ``w_keep`` (the current group's first word) up
    to ``w_avail`` (positions modulo twice the ring, ``w_base`` too); ``w_flush`` (the
    start of an inference, when the ring starts over) sets ``w_keep`` to 0. A group issues
    nothing until its whole tile (``entry.w_tile`` words) is in the ring: it *waits* (the
    loop counters hold still).

    With ``cfg.m_spram`` the map memory has a single port (iCE40 SPRAM): the write-back's
    writes take it. They come a fixed ``write_delay`` cycles after the issue of a pooling
    window's last item (``cfg.wb_words`` cycles in a row), so the sequencer keeps those window
    ends in a shift register and *holds* in the cycles the writes fall on: no item, no slot,
    no rest cycle counted, every counter still (``hold`` high). The cycle model counts the
    holds that fall inside the layer (``hw/cycle_model.py``).

    A depthwise group (``entry.dw``, engines with ``cfg.depthwise``) reads, at every tap
    pixel, only the ``t_in`` words that hold its own ``tm`` channels, from word
    ``(g * tm) // lanes`` of the pixel; the map address steps by ``t_px`` words per pixel.
    With ``cfg.dw_window``, ``dw_off`` is that group's lane offset in the word (the window
    picks its channels there, ``hw/dw_window.py``).

    With ``cfg.resize`` a group may read its input through a Resize view
    (:data:`VIEW_STEPS`): its window rows and columns are those of a map twice the stored
    one's size (the padding is checked against the view's ``in_h``, ``in_w``), and each
    level's address step is the program's step from an even or from an odd view coordinate,
    as the level's coordinate register is, so every stored pixel is read for two view rows
    and two view columns. Groups without a view have equal steps.
    """

    def __init__(self, cfg: EngineConfig, write_delay: int = 0):
        if cfg.m_spram and write_delay < 1:
            raise ValueError("a single-port map memory needs the write-back's delay")
        self._cfg = cfg
        self._write_delay = write_delay
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
            **({"sc": Out(1), "sc_last": Out(1), "sc_off": Out(range(max(2, cfg.lanes)))}
               if cfg.residual else {}),
            **({"hold": Out(1)} if cfg.m_spram else {}),
            **({"w_avail": In(unsigned(cfg.weight_addr_bits)),
                "w_keep": Out(unsigned(cfg.weight_addr_bits)), "wait": Out(1),
                "w_flush": In(1)}
               if cfg.w_bulk else {}),
            **({"dw_off": Out(range(max(2, cfg.lanes)))} if cfg.dw_window else {}),
        })

    def _field(self, step):
        return step if isinstance(step, int) else self.entry[step]

    def elaborate(self, platform):
        m = Module()
        cfg, e = self._cfg, self.entry
        lvls = levels(cfg)
        running = Signal()
        issuing = Signal()                  # running and issuing a loop item (no rest, no slot)
        slot = Signal()                     # issuing a shortcut slot item (cfg.residual)
        hold = self.hold if cfg.m_spram else Const(0)   # the write-back has the map port
        # With w_bulk, also while the group's tile is not in the ring (``wait``): items and
        # shortcut slots alike (a waiting group starts with its first pixel's slots).
        stall = (hold | self.wait) if cfg.w_bulk else hold
        m.d.comb += self.valid.eq(issuing | (slot & ~stall))

        # Counters and their wrap flags (wrap[i]: the counter is at its last value). Both the
        # flags and the carries are registered one step ahead: inner[i] = every level inside
        # i wraps (level i or an outer one advances on the next item). So carry[i] = issuing
        # & inner[i] is one LUT, and the address select "level i advances" is inner[i] &
        # ~wrap[i], two flip-flops (the AND chains of wrap flags were the iCE40 engine's
        # critical path, through the address update).
        names = [lv[0] for lv in lvls]
        cnt = {name: Signal(unsigned(cfg.dim_bits), name=f"cnt_{name}") for name in names}
        wrap = {name: Signal(name=f"wrap_{name}") for name in names}
        inner = {name: Signal(name=f"inner_{name}") for name in names[:-1]}
        inner[names[-1]] = Const(1)         # nothing lies inside the innermost level
        mg = Signal(unsigned(cfg.dim_bits))
        mg_wrap = Signal()
        # Per count field: count == 1, count == 2, and count - 3 (the counter value after
        # which the next step reaches the one before the last).
        counts = list(dict.fromkeys([lv[1] for lv in lvls] + ["n_mg"]))
        single = {count: Signal(name=f"one_{count}") for count in counts}
        double = {count: Signal(name=f"two_{count}") for count in counts}
        lim = {count: Signal(signed(cfg.dim_bits + 1), name=f"lim_{count}") for count in counts}
        # These are registered every cycle (the entry is stable from the cycle before
        # ``start``), so ``start`` loads flags, not compares of the entry; first_inner: inner
        # at the layer's first item.
        first_inner = {name: Signal(name=f"first_inner_{name}") for name in names[:-1]}
        m.d.sync += [single[count].eq(e[count] == 1) for count in counts]
        m.d.sync += [double[count].eq(e[count] == 2) for count in counts]
        m.d.sync += [lim[count].eq(e[count] - 3) for count in counts]
        ones = [e[lv[1]] == 1 for lv in lvls]
        m.d.sync += [first_inner[name].eq(Cat(ones[i + 1:]).all())
                     for i, name in enumerate(names[:-1])]
        carry = {name: issuing & inner[name] for name in names}
        all_wrap = inner[names[0]] & wrap[names[0]]     # every level of the group wraps
        group_end = issuing & all_wrap
        m.d.comb += self.done.eq(group_end & mg_wrap)
        next_group = group_end & ~mg_wrap
        pixel_end = carry["dx"]             # ky, kx and t all wrap

        if cfg.wb_words > 1:
            # After a pooling window's last item, rest ``gap`` cycles (``resting`` is
            # ``idle != 0``, kept as a register).
            idle = Signal(unsigned(cfg.dim_bits))
            resting = Signal()
            has_gap = Signal()
            m.d.comb += issuing.eq(running & ~resting & ~slot & ~stall)
            with m.If(self.start):
                m.d.sync += [idle.eq(0), resting.eq(0), has_gap.eq(e.gap != 0)]
            with m.Elif(carry["px"]):
                m.d.sync += [idle.eq(e.gap), resting.eq(has_gap)]
            with m.Elif(resting & ~hold):
                m.d.sync += [idle.eq(idle - 1), resting.eq(idle != 1)]
        else:
            m.d.comb += issuing.eq(running & ~slot & ~stall)

        def count_step(counter, flag, count, advance) -> Signal:
            """Step ``counter`` when ``advance``; returns the wrap flag's next value. A second
            flag, ``pre`` (the counter is at the value before its last), is the wrap flag's
            own look-ahead, so the next value is a multiplexer of flip-flops, not a compare."""
            pre = Signal(name=f"pre_{flag.name}")
            nxt = Signal(name=f"{flag.name}_next")
            m.d.comb += nxt.eq(flag)
            with m.If(self.start):
                m.d.comb += nxt.eq(single[count])
                m.d.sync += [counter.eq(0), pre.eq(double[count])]
            with m.Elif(advance):
                with m.If(flag):
                    m.d.comb += nxt.eq(single[count])
                    m.d.sync += [counter.eq(0), pre.eq(double[count])]
                with m.Else():
                    m.d.comb += nxt.eq(pre)
                    m.d.sync += [counter.eq(counter + 1), pre.eq(counter == lim[count])]
            m.d.sync += flag.eq(nxt)
            return nxt

        wrap_next = [count_step(cnt[name], wrap[name], count, carry[name])
                     for name, count, *_ in lvls]
        count_step(mg, mg_wrap, "n_mg", group_end)
        with m.If(self.start):
            m.d.sync += [inner[name].eq(first_inner[name]) for name in names[:-1]]
        with m.Else():
            m.d.sync += [inner[name].eq(Cat(wrap_next[i + 1:]).all())
                         for i, name in enumerate(names[:-1])]

        # Map address, window row and column: one register per level that moves them. When
        # a level advances, it and every level inside it that moves the quantity take the
        # same value: the advancing level's register plus its step, or, if that level does
        # not move it, the register of the nearest enclosing one that does (or the layer's
        # start value). The conditions are mutually exclusive, so the value is an AND-OR of
        # a few terms, not a chain of multiplexers through all the levels.
        # The selects leave out ``issuing``: a register only loads when its level's carry is
        # high. advances[i]: level i advances (on the next item); beyond[i]: an enclosing
        # level advances (the group ends for the outermost).
        index = {name: i for i, name in enumerate(names)}
        advances = {name: inner[name] & ~wrap[name] for name in names}
        beyond = {name: (inner[names[i - 1]] if i else all_wrap) for name, i in index.items()}
        values = {}
        # Where the next output-channel group starts: a depthwise group's first input word.
        regroup = {"addr": (self._depthwise(m, next_group) if cfg.depthwise else e.addr0),
                   "iy": e.iy0, "ix": e.ix0}
        quantities = {"addr": (signed(cfg.fmap_addr_bits + 2), e.addr0, 2),
                      "iy": (signed(cfg.dim_bits + 1), e.iy0, 3),
                      "ix": (signed(cfg.dim_bits + 1), e.ix0, 4)}
        # A Resize view's address steps follow the coordinates' parities: those first.
        order = ("iy", "ix", "addr") if cfg.resize else ("addr", "iy", "ix")
        coords = {}
        for q in order:
            shape, init, col = quantities[q]
            moving = [(lv[0], lv[col]) for lv in lvls if lv[col] is not None]
            regs = {name: Signal(shape, name=f"{q}_{name}") for name, _ in moving}
            coords[q] = regs
            terms = [Mux(beyond[moving[0][0]], regroup[q], 0)]
            for (name, step), nxt in zip(moving, moving[1:] + [None]):
                reg = regs[name]
                delta = self._field(step)
                if q == "addr" and cfg.resize and name in VIEW_STEPS:
                    axis, even, odd = VIEW_STEPS[name]
                    delta = Mux(coords[axis][name][0], self._field(odd or step), e[even])
                terms.append(Mux(advances[name], reg + delta, 0))
                if nxt is not None and index[nxt[0]] - 1 > index[name]:
                    # The advancing level lies strictly between this one and the next.
                    terms.append(Mux(~inner[name] & beyond[nxt[0]], reg, 0))
            # Pairs of terms (one LUT each) kept as wires: abc9 otherwise folds the OR into a
            # chain of LUTs, the adder's output at its far end.
            pairs = []
            for j in range(0, len(terms), 2):
                pair = Signal(shape, name=f"{q}_or{j // 2}", attrs={"keep": 1})
                m.d.comb += pair.eq(_or_tree(terms[j:j + 2]))
                pairs.append(pair)
            new = Signal(shape, name=f"{q}_next")
            m.d.comb += new.eq(_or_tree(pairs))
            for name, reg in regs.items():
                with m.If(self.start):
                    m.d.sync += reg.eq(init)
                with m.Elif(carry[name]):
                    m.d.sync += reg.eq(new)
            values[q] = regs[moving[-1][0]]
        iy, ix = values["iy"], values["ix"]
        pad = iy[-1] | ix[-1] | (iy >= e.in_h) | (ix >= e.in_w)
        if cfg.m_spram:
            # Window ends, then the cycles their writes take: write_delay .. + wb_words - 1
            # cycles after the end (bit i holds the end of i + 1 cycles ago).
            d, words = self._write_delay, cfg.wb_words
            ends = Signal(d + words - 1, name="window_ends")
            m.d.sync += ends.eq(Cat(carry["px"], ends[:-1]))
            m.d.comb += hold.eq(ends[d - 1:].any())
        if cfg.residual:
            sc_addr = self._shortcut(m, slot, running, carry["px"], next_group, stall)
            m.d.comb += [self.map_addr.eq(Mux(slot, sc_addr, values["addr"])),
                         self.pad.eq(pad | slot)]
        else:
            m.d.comb += [self.map_addr.eq(values["addr"]), self.pad.eq(pad)]
        m.d.comb += [
            self.first.eq((cnt["ky"] == 0) & (cnt["kx"] == 0) & (cnt["t"] == 0)),
            self.last.eq(pixel_end),
            self.pool_first.eq((cnt["dy"] == 0) & (cnt["dx"] == 0)),
            self.pool_last.eq(wrap["dy"] & wrap["dx"]),
        ]

        # Weights: w_addr restarts at the group's first word for every output pixel (not in
        # a streaming group, ``w_stream``: one pixel, each word read once, and the words
        # the ring keeps never move back).
        w_group = Signal.like(self.w_addr)
        stream = Signal()
        if cfg.w_bulk:
            # A new pass (``w_flush``) keeps from word 0 on, whatever the last group was.
            with m.If(self.start):
                m.d.sync += stream.eq(e.w_stream)
            with m.Elif(self.w_flush):
                m.d.sync += stream.eq(0)
        with m.If(self.start):
            m.d.sync += [self.w_addr.eq(e.w_base), w_group.eq(e.w_base),
                         self.b_addr.eq(e.b_base)]
        if cfg.w_bulk:
            with m.Elif(self.w_flush):
                m.d.sync += w_group.eq(0)
        with m.Elif(issuing):
            with m.If(next_group):
                m.d.sync += [self.w_addr.eq(self.w_addr + 1), w_group.eq(self.w_addr + 1),
                             self.b_addr.eq(self.b_addr + 1)]
            with m.Elif(pixel_end & ~stream):
                m.d.sync += self.w_addr.eq(w_group)
            if cfg.w_share:
                # A kernel whose taps share one weight per input channel (a global average
                # pool folded into a Linear): restart at every kernel tap.
                with m.Elif(e.w_share & carry["kx"]):
                    m.d.sync += self.w_addr.eq(w_group)
            with m.Else():
                m.d.sync += self.w_addr.eq(self.w_addr + 1)

        if cfg.w_bulk:
            self._ring(m, w_group, issuing & next_group, issuing, stream)

        with m.If(self.start):
            m.d.sync += running.eq(1)
        with m.Elif(self.done):
            m.d.sync += running.eq(0)
        return m

    def _ring(self, m: Module, w_group: Signal, next_group, issuing, stream: Signal):
        """``wait`` (a register): the stream has not reached the end of the tile of the group
        that issues next. That end is the group's first word plus ``w_tile``: at ``start``
        ``w_base``, at a group change the word after the last item's. The stream only grows
        and never runs more than the ring ahead of ``w_keep``, so the difference's top bit
        modulo twice the ring tells "not yet"."""
        e = self.entry
        end = Signal.like(w_group, name="w_end")
        end_next = Signal.like(w_group, name="w_end_next")
        # A streaming group (``w_stream``) keeps only the word it issues next, and waits for
        # that word alone; its words follow one another across its groups.
        m.d.comb += [end_next.eq(end),
                     self.w_keep.eq(Mux(stream, self.w_addr, w_group))]
        with m.If(self.start):
            m.d.comb += end_next.eq(e.w_base + Mux(e.w_stream, 1, e.w_tile))
        with m.Elif(stream):
            m.d.comb += end_next.eq(self.w_addr + 1 + issuing)
        with m.Elif(next_group):
            m.d.comb += end_next.eq(self.w_addr + 1 + e.w_tile)
        ahead = Signal.like(w_group, name="w_ahead")
        m.d.comb += ahead.eq(self.w_avail - end_next)
        m.d.sync += [end.eq(end_next), self.wait.eq(ahead[-1])]

    def _depthwise(self, m: Module, next_group):
        """The map address a group starts from: ``addr0``, plus, in a depthwise entry, the
        word of the pixel holding the group's first channel, ``(g * tm) // lanes``: it
        advances by ``tm // lanes`` words and ``tm % lanes`` lanes (carrying into the
        words) from group to group, as the write-back's output word does."""
        cfg, e = self._cfg, self.entry
        word = Signal(unsigned(cfg.fmap_addr_bits))
        lane = self.dw_off if cfg.dw_window else Signal(range(max(2, cfg.lanes)))
        word_next = Signal.like(word)
        nxt, lane_next = group_step.next_group(word, lane, cfg.tm, cfg.lanes)
        m.d.comb += word_next.eq(nxt)
        with m.If(self.start):
            m.d.sync += [word.eq(0), lane.eq(0)]
        with m.Elif(next_group & e.dw):
            m.d.sync += [word.eq(word_next), lane.eq(lane_next)]
        return e.addr0 + Mux(e.dw, word_next, 0)

    def _shortcut(self, m: Module, slot: Signal, running: Signal, window_end, next_group,
                  stall):
        """Shortcut slots: ``slot`` is high for ``sc_slots`` cycles at the start of every
        output pixel of an Add group; returns the map address they read. The shortcut map
        has the output's layout, so group ``g``'s words of pixel ``p`` start at ``sc_base +
        p * t_out + word(g)``, the word and lane offset advancing by constants from group to
        group (as the write-back's)."""
        cfg, e = self._cfg, self.entry
        slots = cfg.sc_slots
        ab = cfg.fmap_addr_bits
        word = Signal(unsigned(ab))     # the group's first shortcut word at pixel 0
        cur = Signal(unsigned(ab))      # ... at the current pixel
        rd = Signal(unsigned(ab))       # the word the current slot reads
        k = Signal(range(max(2, slots)))
        off = self.sc_off
        more = window_end & ~self.done  # another output pixel follows
        m.d.comb += self.sc.eq(slot & ~stall)
        m.d.comb += self.sc_last.eq(slot & ~stall & (k == slots - 1))
        with m.If(self.start):
            m.d.sync += [word.eq(e.sc_base), cur.eq(e.sc_base), rd.eq(e.sc_base), off.eq(0),
                         k.eq(0), slot.eq(e.add)]
        with m.Elif(slot & ~stall):
            m.d.sync += [rd.eq(rd + 1), k.eq(k + 1)]
            with m.If(k == slots - 1):
                m.d.sync += [slot.eq(0), k.eq(0)]
        with m.Elif(running & more):
            m.d.sync += slot.eq(e.add)
            with m.If(next_group):
                nxt = Signal(unsigned(ab))
                word_next, off_next = group_step.next_group(word, off, cfg.tm, cfg.lanes)
                m.d.comb += nxt.eq(word_next)
                m.d.sync += [word.eq(nxt), cur.eq(nxt), rd.eq(nxt), off.eq(off_next)]
            with m.Else():
                m.d.sync += [cur.eq(cur + e.t_out), rd.eq(cur + e.t_out)]
        return rd
