"""The controller: walks the layer program and sequences load, layers and unload."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import enum, memory, wiring
from amaranth.lib.wiring import In, Out

from .config import EngineConfig
from .host_interface import EngineHostSignature
from .program import entry_layout


class State(enum.Enum, shape=4):
    IDLE = 0
    FETCH = 1
    LATCH = 2
    LOAD_GO = 3
    LOAD = 4
    START = 5
    RUN = 6
    DRAIN = 7
    UNLOAD_GO = 8
    UNLOAD = 9


class Controller(wiring.Component):
    """Runs a whole network without host help.

    On ``start``: fetch entry 0, load the input image (``load_start`` .. ``load_done``),
    then for every entry: fetch it, start the sequencer, wait for its last item and for the
    pipeline to drain (``drain`` cycles, so the next layer reads what this one wrote), and
    record the layer's cycles; after the entry marked ``last``, stream the result out
    (``unload_start`` .. ``unload_done``) and raise ``done``.

    ``cycles`` and each layer's count cover fetch, run and drain (not the image load or the
    unload), so ``cycles`` is the sum of the layers' counts.

    Members
    -------
    start, busy, done, cycles, layer_sel, layer_cycles
        The engine's host controls, :meth:`EngineHostSignature.control_members
        <dynfix.hw.host_interface.EngineHostSignature.control_members>`.
    entry : Out(program entry)          the current layer's entry
    load_start, seq_start, unload_start : Out(1)   pulses
    load_done, seq_done, unload_done : In(1)       pulses
    loading, running, unloading : Out(1)           which unit owns the map memory ports
    """

    def __init__(self, cfg: EngineConfig, program: list[int], drain: int):
        self._cfg = cfg
        self._program = list(program)
        self._drain = drain
        super().__init__({
            **EngineHostSignature.control_members(),
            "entry": Out(entry_layout(cfg)),
            "load_start": Out(1), "load_done": In(1),
            "seq_start": Out(1), "seq_done": In(1),
            "unload_start": Out(1), "unload_done": In(1),
            "loading": Out(1), "running": Out(1), "unloading": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        layout = entry_layout(cfg)
        m.submodules.prog = prog = memory.Memory(
            shape=layout, depth=cfg.prog_depth,
            init=[layout.from_bits(word) for word in self._program])
        m.submodules.layer_cycle_mem = lcm = memory.Memory(shape=unsigned(32),
                                                          depth=cfg.prog_depth, init=[])
        rd = prog.read_port()
        lc_wr = lcm.write_port()
        lc_rd = lcm.read_port()

        state = Signal(State)
        pc = Signal(unsigned(cfg.prog_addr_bits))
        first = Signal()                        # entry 0, before the image is loaded
        layer_count = Signal(32)
        drain = Signal(range(self._drain + 1))
        # The program word is read a cycle ahead, so FETCH latches the entry and it is
        # stable from LATCH on, a cycle before the sequencer's start (which registers its
        # decodes of the entry then, off the paths from the entry register): pc is 0 while
        # idle, and the last DRAIN cycle reads the next entry.
        m.d.comb += [
            rd.addr.eq(Mux(state == State.DRAIN, pc + 1, pc)),
            lc_rd.addr.eq(self.layer_sel),
            self.layer_cycles.eq(lc_rd.data),
            lc_wr.addr.eq(pc),
            lc_wr.data.eq(layer_count + 1),
        ]

        def count():
            m.d.sync += [layer_count.eq(layer_count + 1), self.cycles.eq(self.cycles + 1)]

        with m.If(state == State.IDLE):
            with m.If(self.start):
                m.d.sync += [pc.eq(0), first.eq(1), self.done.eq(0), self.cycles.eq(0),
                             layer_count.eq(0), state.eq(State.FETCH)]
        with m.Elif(state == State.FETCH):           # the entry read last cycle
            m.d.comb += self.busy.eq(1)
            count()
            m.d.sync += [self.entry.eq(rd.data), state.eq(State.LATCH)]
        with m.Elif(state == State.LATCH):           # the entry settles
            m.d.comb += self.busy.eq(1)
            count()
            m.d.sync += state.eq(Mux(first, State.LOAD_GO, State.START))
        with m.Elif(state == State.LOAD_GO):
            m.d.comb += [self.busy.eq(1), self.load_start.eq(1), self.loading.eq(1)]
            m.d.sync += state.eq(State.LOAD)
        with m.Elif(state == State.LOAD):
            m.d.comb += [self.busy.eq(1), self.loading.eq(1)]
            with m.If(self.load_done):
                m.d.sync += [first.eq(0), state.eq(State.START)]
        with m.Elif(state == State.START):
            m.d.comb += [self.busy.eq(1), self.seq_start.eq(1), self.running.eq(1)]
            count()
            m.d.sync += state.eq(State.RUN)
        with m.Elif(state == State.RUN):
            m.d.comb += [self.busy.eq(1), self.running.eq(1)]
            count()
            with m.If(self.seq_done):
                m.d.sync += [drain.eq(self._drain - 1), state.eq(State.DRAIN)]
        with m.Elif(state == State.DRAIN):
            m.d.comb += [self.busy.eq(1), self.running.eq(1)]
            count()
            m.d.sync += drain.eq(drain - 1)
            with m.If(drain == 0):
                m.d.comb += lc_wr.en.eq(1)
                m.d.sync += layer_count.eq(0)
                with m.If(self.entry.last):
                    m.d.sync += [pc.eq(0), state.eq(State.UNLOAD_GO)]
                with m.Else():
                    m.d.sync += [pc.eq(pc + 1), state.eq(State.FETCH)]
        with m.Elif(state == State.UNLOAD_GO):
            m.d.comb += [self.busy.eq(1), self.unload_start.eq(1), self.unloading.eq(1)]
            m.d.sync += state.eq(State.UNLOAD)
        with m.Else():                   # State.UNLOAD
            m.d.comb += [self.busy.eq(1), self.unloading.eq(1)]
            with m.If(self.unload_done):
                m.d.sync += [self.done.eq(1), state.eq(State.IDLE)]
        return m
