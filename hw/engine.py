"""The engine top: memories, controller, sequencer, MAC array and post-processing."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, fifo, memory, wiring

from .codebook import Codebook
from .config import EngineConfig
from .controller import Controller
from .dw_window import DwWindow
from .host_interface import EngineHostSignature
from .mac_array import MacArray
from .map_memory import MapMemory
from .map_walker import MapWalker
from .max_pool import MaxPool
from .pipeline import delay
from .requantizer import Requantizer
from .residual_add import ResidualAdd
from .sequencer import Sequencer
from .timing import (ISSUE_TO_MAC, issue_to_mac, pipeline_depth, requantizer_latency,
                     weight_read_lag, write_delay)
from dynfix.errors import DynfixError
from .axi import AxiReadSignature, AxiSignature, axi_halves
from .axi_read_arbiter import AxiReadArbiter
from .map_dma import MapDma
from .weight_memory import WeightMemory
from .weight_ring import WeightRing
from .write_back import WriteBack


def bulk_signature(cfg: EngineConfig) -> AxiReadSignature | AxiSignature | None:
    """The engine's bulk-memory port: a read port (``cfg.w_bulk``), with the write channels
    too when maps live there (``cfg.m_bulk``); or None."""
    if not cfg.w_bulk:
        return None
    if cfg.m_bulk:
        return AxiSignature(cfg.bulk_addr_bits, cfg.bus_bits)
    return AxiReadSignature(cfg.bulk_addr_bits, cfg.bus_bits)


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
    segments : list of (int, int)
        With ``cfg.w_bulk``: the weight stream as runs ``(first word, words)`` of the image
        (``CompiledModel.weight_segments``: groups in strips read their words again); empty:
        the image once.
    codebooks : list of list of int
        With ``cfg.w_index_bits``: the codebooks the program's ``cb`` fields name
        (``CompiledModel.codebooks``); the weight words hold indices into them.

    Members
    -------
    The members of :class:`~dynfix.hw.host_interface.EngineHostSignature`
    ``(data_bits, weight_load=cfg.w_spram)``: ``i``, ``o``, ``start``, ``busy``, ``done``,
    ``cycles``, ``layer_sel``, ``layer_cycles`` (and ``wl``).
    """

    def __init__(self, cfg: EngineConfig, program: list[int], weights: list[int],
                 biases: list[int], cells: bool = True,
                 segments: list[tuple[int, int]] | None = None,
                 codebooks: list[list[int]] | None = None):
        cfg.check_fitted()
        if cfg.w_index_bits and not codebooks:
            raise DynfixError("an engine with weight indices (w_index_bits) needs the "
                              "codebooks its program names")
        self._codebooks = codebooks or []
        self._cfg = cfg
        self._program = program
        self._weights = weights
        self._biases = biases
        self._cells = cells
        self._segments = segments or []
        super().__init__(EngineHostSignature(cfg.data_bits, weight_load=bool(cfg.w_spram),
                                             bulk=bulk_signature(cfg)))

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        n, tm, db = cfg.lanes, cfg.tm, cfg.data_bits
        lanes = data.ArrayLayout(signed(db), n)
        b_lane = (data.StructLayout({"bias": signed(cfg.bias_bits),
                                     "shift": signed(cfg.shift_bits)})
                  if cfg.ch_shift else signed(cfg.bias_bits))
        b_word = data.ArrayLayout(b_lane, tm)

        m.submodules.fmap = fmap = MapMemory(cfg, cell=self._cells)
        if cfg.w_bulk:
            m.submodules.weights = wmem = WeightRing(
                cfg.weight_word_bits, cfg.w_ring, cfg.weight_depth, cfg.bus_bits,
                cfg.bulk_addr_bits, credit=bool(cfg.m_bulk), segments=self._segments)
        else:
            m.submodules.weights = wmem = WeightMemory(cfg, self._weights, cell=self._cells)
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
                             rounding=False, slope=bool(cfg.slope),
                             even=bool(cfg.round_even))
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

        dma = None
        if cfg.m_bulk:
            # Maps in bulk memory: the map DMA moves the entries' strips (hw/map_dma.py) and
            # shares the read channels with the weight ring, burst by burst; the ring only
            # asks for what it can take at once (its ``credit`` mode), so neither master
            # holds the in-order read data of the other.
            m.submodules.dma = dma = MapDma(n * db, cfg.fmap_addr_bits, cfg.bulk_addr_bits,
                                            cfg.bus_bits, cfg.fmap_addr_bits + 1)
            m.submodules.bulk_arbiter = arb = AxiReadArbiter(cfg.bulk_addr_bits, cfg.bus_bits,
                                                             outstanding=4)
            rbus, wbus = axi_halves(wiring.flipped(self.wbus))
            wiring.connect(m, rbus, arb.bus)
            wiring.connect(m, wbus, dma.wbus)
            wiring.connect(m, arb.m0, wmem.bus)
            wiring.connect(m, arb.m1, dma.rbus)
            store = ctrl.dma_store
            m.d.comb += [
                dma.req.valid.eq(ctrl.dma_start),
                dma.req.payload.store.eq(store),
                dma.req.payload.fmap.eq(Mux(store, e.do_fmap, e.di_fmap)),
                dma.req.payload.bulk.eq(Mux(store, e.do_bulk, e.di_bulk)),
                dma.req.payload.count.eq(Mux(store, e.do_words, e.di_words)),
                ctrl.dma_done.eq(dma.done),
                dma.rd_data.eq(fmap.rd_data.as_value()),
            ]
        elif cfg.w_bulk:
            wiring.connect(m, wiring.flipped(self.wbus), wmem.bus)

        # Datapath: map and weight words -> MAC array -> requantizer -> pool. The map word is
        # registered after the block RAM (zeroed in the padding), so the RAM's clock-to-out
        # and the fan-out to tm multipliers per lane are separate paths; the weight read
        # starts a cycle later to meet it (with weight indices a cycle earlier again: the
        # codebook lookup registers its weights), the bias read bias_lag cycles after the
        # map register's input (the MAC array registers it, shifts it and adds it in its
        # last stages).
        to_mac = issue_to_mac(cfg)
        m.d.comb += [
            b_rd.addr.eq(delay(m, seq.b_addr, to_mac - 1 + mac.bias_lag, "b_addr")),
            wmem.addr.eq(delay(m, seq.w_addr, weight_read_lag(cfg), "w_addr")),
            # Map reads by the sequencer, the unloader or the map DMA (writes below).
            fmap.rd_addr.eq(Mux(ctrl.unloading, unloader.addr,
                                Mux(ctrl.dma, dma.rd_addr, seq.map_addr) if dma is not None
                                else seq.map_addr)),
        ]
        if cfg.w_bulk:
            # One pass of the weight stream per inference, from its start (the image load);
            # the ring keeps what the sequencer issued until those reads are done.
            # With maps in bulk memory the run may load its image in strips: the pass starts
            # with the first.
            pass_start = ctrl.first_load if cfg.m_bulk else ctrl.load_start
            m.d.comb += [wmem.start.eq(pass_start), wmem.words.eq(e.w_total),
                         wmem.enable.eq(self.bulk_ready), seq.w_flush.eq(pass_start),
                         seq.w_avail.eq(wmem.wr_ptr)]
            # The delay line starts over with the pass too (no stale position in it).
            keep = seq.w_keep
            for i in range(to_mac):
                nxt = Signal.like(keep, name=f"w_keep_d{i}")
                m.d.sync += nxt.eq(Mux(pass_start, 0, keep))
                keep = nxt
            m.d.comb += wmem.rd_ptr.eq(keep)
        if cfg.w_spram:
            wiring.connect(m, wiring.flipped(self.wl), wmem.wl)
            m.d.comb += wmem.idle.eq(~ctrl.busy)
        if cfg.m_spram:
            m.d.comb += [fmap.loading.eq(ctrl.loading), fmap.hold.eq(seq.hold)]
        word = fmap.rd_data
        x = Signal(lanes)
        with m.If(delay(m, seq.pad, 1, "pad")):
            # The padding is a real 0: the integer 0, or pad_q (zp) in an unsigned map.
            m.d.sync += x.eq(Cat(e.pad_q for _ in range(n)) if cfg.offsets else 0)
        with m.Else():
            m.d.sync += x.eq(word)
        valid, first, last = (delay(m, seq.valid, ISSUE_TO_MAC, "issue"),
                              delay(m, seq.first, ISSUE_TO_MAC, "first"),
                              delay(m, seq.last, ISSUE_TO_MAC, "last"))
        if cfg.dw_window:
            # Depthwise window groups: the line buffer and window (hw/dw_window.py) give each
            # row its channel's taps; other layers' words pass through, as late.
            m.submodules.window = win = DwWindow(cfg)
            m.d.comb += [
                win.start.eq(ctrl.seq_start), win.win.eq(e.win), win.n_rows.eq(e.n_py),
                win.n_cols.eq(e.n_px), win.sy.eq(e.win_sy), win.sx.eq(e.win_sx),
                win.wy.eq(e.win_wy), win.wx.eq(e.win_wx),
                win.pad.eq(e.pad_q if cfg.offsets else 0),
                win.off.eq(delay(m, seq.dw_off, ISSUE_TO_MAC, "dw_off")),
                win.valid.eq(valid), win.first.eq(first), win.last.eq(last), win.x.eq(x),
            ]
            valid, first, last, x = win.o_valid, win.o_first, win.o_last, win.xr
        m.d.comb += [
            mac.valid.eq(valid), mac.first.eq(first), mac.last.eq(last),
            mac.x.eq(x),
            mac.w.eq(self._lookup(m, e, wmem.data) if cfg.w_index_bits else wmem.data),
            mac.bias.eq(Cat(b_rd.data[j].bias for j in range(tm)) if cfg.ch_shift
                        else b_rd.data),
            mac.bias_shift.eq(e.bias_shift),
        ]
        for j, rq in enumerate(rqs):
            # The data shift: the layer's, or with ch_shift the channel's, read with its bias
            # and delayed to the requantizer's decode (one cycle before the accumulator).
            shift = (delay(m, b_rd.data[j].shift, mac.latency - 1 - mac.bias_lag,
                           f"ch_shift{j}")
                     if cfg.ch_shift else e.data_shift)
            m.d.comb += [rq.acc.eq(mac.o[j]), rq.shift.eq(shift),
                         rq.lo.eq(e.clamp_lo), rq.hi.eq(e.clamp_hi)]
            if cfg.offsets:
                m.d.comb += rq.zp.eq(e.zp_out)
            if cfg.slope:
                m.d.comb += [rq.slope_a.eq(e.slope_a), rq.slope_s.eq(e.slope_s)]
            if cfg.round_even:
                m.d.comb += rq.even.eq(e.even)
        results = Cat(rq.o for rq in rqs)
        results_valid = delay(m, mac.o_valid, requantizer_latency(cfg), "rq_valid")
        to_pool = to_mac + mac.latency + requantizer_latency(cfg)
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
        wr_addr, wr_data, wr_en = wb.addr, wb.data.as_value(), wb.en
        if dma is not None:
            # The DMA writes whole words while it owns the map memory (a strip's load).
            wr_addr = Mux(ctrl.dma, dma.wr_addr, wr_addr)
            wr_data = Mux(ctrl.dma, dma.wr_data, wr_data)
            wr_en = Mux(ctrl.dma, dma.wr_en.replicate(n), wr_en)
        m.d.comb += [
            fmap.wr_addr.eq(Mux(ctrl.loading, loader.addr, wr_addr)),
            fmap.wr_data.as_value().eq(Mux(ctrl.loading, in_lanes, wr_data)),
            fmap.wr_en.eq(Mux(ctrl.loading, in_en, wr_en)),
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
            m.d.sync += [pending.eq(0), self.o.valid.eq(1)]
            if not cfg.ecp5_dsp:
                m.d.sync += self.o.payload.eq(word[lane])
        if cfg.ecp5_dsp:
            # ECP5 timing: the block RAM's clock-to-out and the lane multiplexer were the
            # critical path once the products run on registered MULT18X18D (ULX3S); the whole
            # word is registered and the lane picked after it (the payload holds while valid:
            # the word register only loads on the next read). Same cycles.
            word_r = Signal.like(word, name="unload_word")
            with m.If(pending):
                m.d.sync += word_r.eq(word)
            m.d.comb += self.o.payload.eq(word_r[lane])
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m

    def _lookup(self, m: Module, e, word):
        """The weights of the index word ``word`` (``w_index_bits``): the codebook lookup
        (hw/codebook.py) of the current entry's codebook, ``CODEBOOK`` cycles later."""
        cfg = self._cfg
        m.submodules.codebook = cb = Codebook(cfg.w_index_bits, cfg.weight_bits, cfg.lanes,
                                              cfg.tm, self._codebooks)
        m.d.comb += [cb.sel.eq(e.cb), cb.i.eq(word)]
        return cb.o

    def _residual(self, m: Module, seq: Sequencer, e, word, results, results_valid):
        """The residual Add after the requantizers: the shortcut words the sequencer's slot
        items read are collected, the group's ``tm`` values picked at its lane offset and
        queued (one FIFO entry per output pixel) until that pixel's results arrive; returns
        the add stage's output and its valid flag."""
        cfg = self._cfg
        n, tm, db, slots = cfg.lanes, cfg.tm, cfg.data_bits, cfg.sc_slots
        width = n * db
        sc = delay(m, seq.sc, 1, "sc")              # the map word read by a slot is here
        raw = word.as_value()
        # All of the pixel's slot words are registered (the last one too), so the block
        # RAM's clock-to-out does not add to the lane pick below.
        held = Signal(slots * width)
        with m.If(sc):
            m.d.sync += held.eq(Cat(held[width:], raw) if slots > 1 else raw)
        # One cycle after the pixel's last slot word: its words are all in ``held``.
        sc_last = delay(m, seq.sc_last, 2, "sc_last")
        sc_off = delay(m, seq.sc_off, 2, "sc_off")
        # Value j of the group is lane off + j of the words (off: a multiple of wb_step).
        # Plain multiplexer expressions, as in the write-back.
        picked = []
        for j in range(tm):
            value = held[j * db:(j + 1) * db]
            for off in range(cfg.wb_step, n, cfg.wb_step):
                if off + j < slots * n:
                    value = Mux(sc_off == off, held[(off + j) * db:(off + j + 1) * db], value)
            picked.append(value)
        # The picked values are registered once more before the FIFO's write: the map RAM ->
        # lane pick -> FIFO storage path in one cycle limited wide engines' clock
        # (docs/boards.md, "Measurements behind the design"). The entry is written two cycles
        # later than before, still long before its pixel's results reach the add stage
        # (``result_latency`` after its last item); later writes only lower the FIFO's
        # occupancy: the same depth, the same cycles.
        pick = Signal(tm * db)
        m.d.sync += pick.eq(Cat(picked))
        m.submodules.sc_fifo = q = fifo.SyncFIFO(width=tm * db, depth=cfg.sc_depth)
        m.d.comb += [q.w_data.eq(pick), q.w_en.eq(delay(m, sc_last, 1, "sc_push")),
                     q.r_en.eq(results_valid & e.add)]

        m.submodules.add = add = ResidualAdd(cfg)
        m.d.comb += [
            add.a.as_value().eq(results), add.b.as_value().eq(q.r_data), add.en.eq(e.add),
            add.sa.eq(e.add_sa), add.sb.eq(e.add_sb), add.shift.eq(e.add_shift),
            add.lo.eq(e.add_lo), add.hi.eq(e.add_hi),
            *([add.even.eq(e.add_even)] if cfg.round_even else []),
        ]
        return add.o.as_value(), delay(m, results_valid, ResidualAdd.latency, "add_valid")
