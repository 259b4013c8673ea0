"""The engine top: memories, controller, sequencer, MAC array and post-processing."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, memory, wiring

from .config import EngineConfig
from .controller import Controller
from .host_interface import EngineHostSignature
from .ice40_spram import SPRAM, CELL_WIDTH
from .mac_array import MacArray, mac_latency
from .map_walker import MapWalker
from .max_pool import MaxPool
from .pipeline import delay
from .requantizer import Requantizer
from .residual_add import ResidualAdd
from .sequencer import Sequencer
from .write_back import WriteBack


#: Cycles from an item's issue to the MAC array's input: the map read, the map register.
ISSUE_TO_MAC = 2


def pipeline_depth(cfg: EngineConfig) -> int:
    """Cycles from an item's issue to its result's last write into the map memory."""
    return (result_latency(cfg) + (ResidualAdd.latency if cfg.residual else 0)
            + MaxPool.latency + cfg.wb_words - 1)


def write_delay(cfg: EngineConfig) -> int:
    """Cycles from the issue of a pooling window's last item to the write-back's first write
    of its result (the rest follow, one per cycle, up to ``pipeline_depth``)."""
    return pipeline_depth(cfg) - (cfg.wb_words - 1)


def result_latency(cfg: EngineConfig) -> int:
    """Cycles from an output pixel's last item's issue to its requantized result."""
    return ISSUE_TO_MAC + mac_latency(cfg.lanes) + Requantizer.latency


def shortcut_fifo_depth(cfg: EngineConfig, items: int, gap: int) -> int:
    """Shortcut FIFO entries a residual group needs: pixels whose shortcut words are read
    (``sc_slots`` slot items at the start of each pixel's ``items``, one pixel every
    ``items + gap`` cycles) before the oldest one's result reaches the add stage, plus
    one."""
    slots = cfg.sc_slots
    ahead = (items - 1 + result_latency(cfg) - slots) // (items + gap)
    return ahead + 2


class Engine(wiring.Component):
    """A fixed-point CNN engine running a whole network from on-chip memories.

    The host pulses ``start``, streams the input image on ``i`` (C, H, W order, quantized
    integers) and reads the last layer's outputs on ``o`` (channel order); ``done`` stays
    high until the next ``start``. ``cycles`` counts the compute cycles of the last run;
    ``layer_cycles`` shows layer ``layer_sel``'s count one cycle after ``layer_sel`` is set.

    Parameters
    ----------
    cfg : EngineConfig
        A fitted configuration (every width and depth set, as
        :func:`dynfix.hw.compiler.compile_model` returns it).
    program, weights, biases : list of int
        The memory images, one integer per word. With ``cfg.w_spram`` the weights live in
        iCE40 SPRAM, which starts empty: the host streams them in on ``wl``.
    cells : bool
        True: iCE40 cells (SB_MAC16, SB_SPRAM256KA) as instances, for Verilog; False: their
        behavioural models, for Amaranth's simulator.

    Members
    -------
    The members of :class:`~dynfix.hw.host_interface.EngineHostSignature`
    ``(data_bits, weight_load=cfg.w_spram)``: ``i``, ``o``, ``start``, ``busy``, ``done``,
    ``cycles``, ``layer_sel``, ``layer_cycles`` (and ``wl``).
    """

    def __init__(self, cfg: EngineConfig, program: list[int], weights: list[int],
                 biases: list[int], cells: bool = True):
        cfg.check_fitted()
        self._cfg = cfg
        self._program = program
        self._weights = weights
        self._biases = biases
        self._cells = cells
        super().__init__(EngineHostSignature(cfg.data_bits, weight_load=bool(cfg.w_spram)))

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        n, tm, db = cfg.lanes, cfg.tm, cfg.data_bits
        lanes = data.ArrayLayout(signed(db), n)
        w_word = data.ArrayLayout(data.ArrayLayout(signed(cfg.weight_bits), n), tm)
        b_lane = (data.StructLayout({"bias": signed(cfg.bias_bits),
                                     "shift": signed(cfg.shift_bits)})
                  if cfg.ch_shift else signed(cfg.bias_bits))
        b_word = data.ArrayLayout(b_lane, tm)

        # The ROM images are packed integers (lane 0 in the low bits), as in the hex files.
        m.submodules.biases = brom = memory.Memory(
            shape=b_word, depth=cfg.bias_depth, init=[b_word.from_bits(b) for b in self._biases])
        b_rd = brom.read_port()

        # The controller sees the sequencer's ``done`` one register later (off the critical
        # path from the loop counters), so it drains one cycle less: the same cycle count.
        m.submodules.ctrl = ctrl = Controller(cfg, self._program, pipeline_depth(cfg) - 1)
        m.submodules.seq = seq = Sequencer(cfg, write_delay(cfg) if cfg.m_spram else 0)
        m.submodules.mac = mac = MacArray(cfg, cell=self._cells)
        m.submodules.loader = loader = MapWalker(cfg.fmap_addr_bits, cfg.dim_bits, n)
        m.submodules.unloader = unloader = MapWalker(cfg.fmap_addr_bits, cfg.dim_bits, n)
        m.submodules.pool = pool = MaxPool(db, tm)
        rqs = []
        for j in range(tm):
            # The accumulator starts from a bias that holds the rounding constant 2**(s-1)
            # (hw/compiler, folded_bias): the requantizer shifts without rounding.
            rq = Requantizer(cfg.acc_bits, db, cfg.shift_bits, offsets=bool(cfg.offsets),
                             rounding=False)
            m.submodules[f"rq{j}"] = rq
            rqs.append(rq)
        e = ctrl.entry

        m.d.comb += [
            ctrl.start.eq(self.start), self.busy.eq(ctrl.busy), self.done.eq(ctrl.done),
            self.cycles.eq(ctrl.cycles),
            ctrl.layer_sel.eq(self.layer_sel), self.layer_cycles.eq(ctrl.layer_cycles),
            seq.entry.eq(e), seq.start.eq(ctrl.seq_start),
            ctrl.seq_done.eq(delay(m, seq.done, 1, "seq_done")),
        ]

        # Input image: host stream -> map region 0, one lane per value.
        m.d.comb += [
            loader.base.eq(e.in_base), loader.words.eq(e.t_px if cfg.depthwise else e.t_in),
            loader.channels.eq(e.in_c), loader.pixels.eq(e.in_pix),
            loader.start.eq(ctrl.load_start),
            self.i.ready.eq(ctrl.loading & loader.active),
            loader.step.eq(self.i.valid & self.i.ready),
            ctrl.load_done.eq(loader.step & loader.last),
        ]

        # Datapath: map and weight words -> MAC array -> requantizer -> pool. The map word is
        # registered after the block RAM (zeroed in the padding), so the RAM's clock-to-out
        # and the fan-out to tm multipliers per lane are separate paths; the weight and bias
        # reads start a cycle later to meet it.
        m.d.comb += b_rd.addr.eq(delay(m, seq.b_addr, 1, "b_addr"))
        w_data = self._weights_memory(m, w_word, delay(m, seq.w_addr, 1, "w_addr"), ctrl)
        # The map memory's ports: reads by the sequencer or the unloader, writes by the
        # input loader or the write-back (set below).
        map_rd_addr = Signal(cfg.fmap_addr_bits)
        map_wr_addr = Signal(cfg.fmap_addr_bits)
        map_wr_data = Signal(lanes)
        map_wr_en = Signal(n)
        m.d.comb += map_rd_addr.eq(Mux(ctrl.unloading, unloader.addr, seq.map_addr))
        word = self._map_memory(m, lanes, map_rd_addr, map_wr_addr, map_wr_data, map_wr_en,
                                ctrl.loading, seq)
        x = Signal(lanes)
        with m.If(delay(m, seq.pad, 1, "pad")):
            # The padding is a real 0: the integer 0, or pad_q (zp) in an unsigned map.
            m.d.sync += x.eq(Cat(e.pad_q for _ in range(n)) if cfg.offsets else 0)
        with m.Else():
            m.d.sync += x.eq(word)
        m.d.comb += [
            mac.valid.eq(delay(m, seq.valid, ISSUE_TO_MAC, "issue")),
            mac.first.eq(delay(m, seq.first, ISSUE_TO_MAC, "first")),
            mac.last.eq(delay(m, seq.last, ISSUE_TO_MAC, "last")),
            mac.x.eq(x),
            mac.w.eq(w_data),
            mac.bias.eq(Cat(b_rd.data[j].bias for j in range(tm)) if cfg.ch_shift
                        else b_rd.data),
            mac.bias_shift.eq(e.bias_shift),
        ]
        for j, rq in enumerate(rqs):
            # The data shift: the layer's, or with ch_shift the channel's, read with its bias
            # and delayed to the requantizer's decode (one cycle before the accumulator).
            shift = (delay(m, b_rd.data[j].shift, mac.latency - 1, f"ch_shift{j}")
                     if cfg.ch_shift else e.data_shift)
            m.d.comb += [rq.acc.eq(mac.o[j]), rq.shift.eq(shift),
                         rq.lo.eq(e.clamp_lo), rq.hi.eq(e.clamp_hi)]
            if cfg.offsets:
                m.d.comb += rq.zp.eq(e.zp_out)
        results = Cat(rq.o for rq in rqs)
        results_valid = delay(m, mac.o_valid, Requantizer.latency, "rq_valid")
        to_pool = ISSUE_TO_MAC + mac.latency + Requantizer.latency
        if cfg.residual:
            results, results_valid = self._residual(m, seq, e, word, results, results_valid)
            to_pool += ResidualAdd.latency
        m.d.comb += [
            pool.i.as_value().eq(results),
            pool.valid.eq(results_valid),
            pool.first.eq(delay(m, seq.pool_first, to_pool, "pool_first")),
            pool.last.eq(delay(m, seq.pool_last, to_pool, "pool_last")),
        ]

        # Write-back: pooled pixels of one channel group, then the next group.
        m.submodules.wb = wb = WriteBack(cfg)
        m.d.comb += [
            wb.start.eq(ctrl.seq_start), wb.out_base.eq(e.out_base), wb.t_out.eq(e.t_out),
            wb.out_pix.eq(e.out_pix), wb.out_c.eq(e.out_c),
            wb.valid.eq(pool.o_valid), wb.values.eq(pool.o),
        ]

        in_lanes = Cat(self.i.payload for _ in range(n))
        in_en = Cat((loader.lane == lane) & loader.step for lane in range(n))
        m.d.comb += [
            map_wr_addr.eq(Mux(ctrl.loading, loader.addr, wb.addr)),
            map_wr_data.eq(Mux(ctrl.loading, in_lanes, wb.data.as_value())),
            map_wr_en.eq(Mux(ctrl.loading, in_en, wb.en)),
        ]

        # Output: read one word per value, pick the lane, hold it until taken.
        pending = Signal()
        lane = Signal.like(unloader.lane)
        last = Signal()
        issue = unloader.active & ~pending & ~self.o.valid
        m.d.comb += [
            unloader.base.eq(e.out_base), unloader.words.eq(e.t_out),
            unloader.channels.eq(e.out_c), unloader.pixels.eq(e.out_pix),
            unloader.start.eq(ctrl.unload_start), unloader.step.eq(issue),
            ctrl.unload_done.eq(self.o.valid & self.o.ready & last),
        ]
        with m.If(issue):
            m.d.sync += [pending.eq(1), lane.eq(unloader.lane), last.eq(unloader.last)]
        with m.If(pending):
            m.d.sync += [pending.eq(0), self.o.valid.eq(1), self.o.payload.eq(word[lane])]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m

    def _map_memory(self, m: Module, lanes, rd_addr, wr_addr, wr_data, wr_en, loading,
                    seq: Sequencer):
        """The feature-map memory; returns the word read at ``rd_addr`` (one cycle later).
        Block RAM: a read port and a write port with an enable per lane. With
        ``cfg.m_spram``, one SPRAM port: it writes while the input loads (the sequencer is
        idle) or while the sequencer holds for the write-back (``seq.hold``: exactly the
        cycles the write-back writes in), and reads otherwise; each lane takes whole nibbles
        (``cfg.fmap_lane_bits``), so its enables are nibble enables."""
        cfg = self._cfg
        n, db = cfg.lanes, cfg.data_bits
        if not cfg.m_spram:
            m.submodules.fmap = fmap = memory.Memory(shape=lanes, depth=cfg.fmap_depth,
                                                     init=[])
            map_wr = fmap.write_port(granularity=1)         # one enable per lane
            map_rd = fmap.read_port()
            m.d.comb += [map_rd.addr.eq(rd_addr), map_wr.addr.eq(wr_addr),
                         map_wr.data.eq(wr_data), map_wr.en.eq(wr_en)]
            return map_rd.data
        lb = cfg.fmap_lane_bits
        m.submodules.fmap = ram = SPRAM(cfg.fmap_depth, n * lb, cell=self._cells)
        writing = Signal(name="map_writing")
        m.d.comb += [
            writing.eq(Mux(loading, wr_en.any(), seq.hold)),
            ram.addr.eq(Mux(writing, wr_addr, rd_addr)),
            ram.w_en.eq(writing),
            ram.w_data.eq(Cat(*(Cat(wr_data[i * db:(i + 1) * db], Const(0, lb - db))
                                for i in range(n)))),
            ram.w_mask.eq(Cat(wr_en[i].replicate(lb // 4) for i in range(n))),
        ]
        return lanes(Cat(ram.r_data[i * lb:i * lb + db] for i in range(n)))

    def _weights_memory(self, m: Module, w_word, addr, ctrl: Controller):
        """The weight memory read at ``addr`` (data one cycle later): a ROM in block RAM, or
        with ``cfg.w_spram`` an SPRAM that ``wl`` writes, one 16-bit column of a word per
        halfword, while no run is in progress (the write registered, then taking the port
        from the reads for its cycle)."""
        cfg = self._cfg
        if not cfg.w_spram:
            m.submodules.weights = wrom = memory.Memory(
                shape=w_word, depth=cfg.weight_depth,
                init=[w_word.from_bits(w) for w in self._weights])
            w_rd = wrom.read_port()
            m.d.comb += w_rd.addr.eq(addr)
            return w_rd.data
        m.submodules.weights = wram = SPRAM(cfg.weight_depth, cfg.weight_word_bits,
                                            cell=self._cells)
        cols = wram.columns
        word = Signal.like(addr, name="wl_word")
        col = Signal(range(max(2, cols)), name="wl_col")
        w_en = Signal(name="wl_en")
        w_addr = Signal.like(addr, name="wl_addr")
        w_mask = Signal(4 * cols, name="wl_mask")
        w_data = Signal(CELL_WIDTH, name="wl_data")
        beat = self.wl.valid & self.wl.ready
        m.d.comb += self.wl.ready.eq(~ctrl.busy)
        m.d.sync += [w_en.eq(beat), w_addr.eq(word), w_data.eq(self.wl.payload),
                     w_mask.eq(Cat((col == c).replicate(4) for c in range(cols)))]
        with m.If(beat):
            with m.If(col == cols - 1):
                m.d.sync += [col.eq(0), word.eq(Mux(word == cfg.weight_depth - 1, 0, word + 1))]
            with m.Else():
                m.d.sync += col.eq(col + 1)
        m.d.comb += [wram.addr.eq(Mux(w_en, w_addr, addr)), wram.w_en.eq(w_en),
                     wram.w_data.eq(Cat(w_data for _ in range(cols))), wram.w_mask.eq(w_mask)]
        return w_word(wram.r_data)

    def _residual(self, m: Module, seq: Sequencer, e, word, results, results_valid):
        """The residual Add after the requantizers: the shortcut words the sequencer's slot
        items read are collected, the group's ``tm`` values picked at its lane offset and
        queued (one FIFO entry per output pixel) until that pixel's results arrive; returns
        the add stage's output and its valid flag."""
        cfg = self._cfg
        n, tm, db, slots = cfg.lanes, cfg.tm, cfg.data_bits, cfg.sc_slots
        width = n * db
        sc = delay(m, seq.sc, 1, "sc")              # the map word read by a slot is here
        sc_last = delay(m, seq.sc_last, 1, "sc_last")
        sc_off = delay(m, seq.sc_off, 1, "sc_off")
        raw = word.as_value()
        if slots > 1:
            held = Signal((slots - 1) * width)      # the pixel's earlier slot words
            with m.If(sc):
                m.d.sync += held.eq(Cat(held[width:], raw))
            words = Cat(held, raw)
        else:
            words = raw
        # Value j of the group is lane off + j of the words (off: a multiple of wb_step).
        # Plain multiplexer expressions, as in the write-back.
        picked = []
        for j in range(tm):
            value = words[j * db:(j + 1) * db]
            for off in range(cfg.wb_step, n, cfg.wb_step):
                if off + j < slots * n:
                    value = Mux(sc_off == off, words[(off + j) * db:(off + j + 1) * db], value)
            picked.append(value)
        m.submodules.sc_fifo = q = fifo.SyncFIFO(width=tm * db, depth=cfg.sc_depth)
        m.d.comb += [q.w_data.eq(Cat(picked)), q.w_en.eq(sc_last),
                     q.r_en.eq(results_valid & e.add)]

        m.submodules.add = add = ResidualAdd(cfg)
        m.d.comb += [
            add.a.as_value().eq(results), add.b.as_value().eq(q.r_data), add.en.eq(e.add),
            add.sa.eq(e.add_sa), add.sb.eq(e.add_sb), add.shift.eq(e.add_shift),
            add.lo.eq(e.add_lo), add.hi.eq(e.add_hi),
        ]
        return add.o.as_value(), delay(m, results_valid, ResidualAdd.latency, "add_valid")
