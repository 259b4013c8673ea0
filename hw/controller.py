"""The controller: walks the layer program and sequences load, layers and unload."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .config import EngineConfig
from .host_interface import EngineHostSignature
from .program import entry_layout


class OneHot:
    """A state machine with one flip-flop per state, built from its arcs.

    Each state's flip-flop is set by the arcs into it and cleared by those out of it, so it
    is an OR of a few terms, and :meth:`flag` gives a flip-flop that is high exactly while
    the machine is in a set of states (a registered decode, not a decode of an encoded state
    register). Both keep control signals that fan out widely, and the handshakes between
    units, off decode logic: on the iCE40 those decodes were on the longest paths.

    Declare every arc, then call :meth:`finish` once.
    """

    def __init__(self, m: Module, states: tuple[str, ...], init: str):
        self._m = m
        self._init = init
        self._arcs: list[tuple[str, Signal, str]] = []
        self._flags: list[tuple[Signal, tuple[str, ...]]] = []
        self.st = {name: Signal(init=name == init, name=f"st_{name.lower()}")
                   for name in states}

    def __getitem__(self, name: str) -> Signal:
        """The flip-flop of state ``name``: high while the machine is in it."""
        return self.st[name]

    def arc(self, src: str, cond, dst: str) -> Signal:
        """Leave ``src`` for ``dst`` when ``cond`` (the arcs out of a state must exclude one
        another); returns the arc's firing signal, ``src & cond``."""
        fire = Signal(name=f"{src.lower()}_to_{dst.lower()}")
        self._m.d.comb += fire.eq(self.st[src] & cond)
        self._arcs.append((src, fire, dst))
        return fire

    def flag(self, states: tuple[str, ...], name: str) -> Signal:
        """A flip-flop that is high exactly while the machine is in one of ``states``."""
        flag = Signal(init=self._init in states, name=name)
        self._flags.append((flag, tuple(states)))
        return flag

    def finish(self) -> None:
        """Drive the state flip-flops and the flags from the arcs."""
        def update(reg: Signal, states: tuple[str, ...]):
            enter = [f for src, f, dst in self._arcs if src not in states and dst in states]
            leave = [f for src, f, dst in self._arcs if src in states and dst not in states]
            self._m.d.sync += reg.eq(Cat(reg & ~Cat(leave).any(), *enter).any())

        for name, reg in self.st.items():
            update(reg, (name,))
        for reg, states in self._flags:
            update(reg, states)


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
    dma_start, dma_store, dma_done, dma             only with ``cfg.m_bulk``: the map DMA's
        request (a pulse; ``dma_store`` high for the entry's store, low for its load), its
        finish (a pulse) and whether it owns the map memory ports
    first_load : Out(1)                 only with ``cfg.m_bulk``: the run's first host load
        starts (a pulse: the weight pass starts with it)

    With ``cfg.m_bulk`` every entry runs the phases its flags ask for (:meth:`_phases`): a
    host load (``ld``), a map load from bulk memory (``di_words``), the computation
    (``run``), a map store (``do_words``) and an unload (``ul``); the map transfers count
    towards the entry's cycles, the host transfers do not.
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
            **({"dma_start": Out(1), "dma_store": Out(1), "dma_done": In(1), "dma": Out(1),
                "first_load": Out(1)}
               if cfg.m_bulk else {}),
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

        pc = Signal(unsigned(cfg.prog_addr_bits))
        first = Signal()                        # entry 0, before the image is loaded
        layer_count = Signal(32)
        drain = Signal(range(self._drain + 1))
        drain_end = Signal()                    # drain == 0, set one step ahead

        # The states: IDLE; FETCH latches the entry read last cycle and LATCH lets it settle;
        # LOAD_GO, LOAD: the image (entry 0 only); START, RUN: the sequencer; DRAIN: the
        # pipeline empties; UNLOAD_GO, UNLOAD: the result. The unit controls are flip-flops
        # (state flip-flops or flags): they fan out to the sequencer's loads, the map port
        # multiplexers and the host stream's ready, and the handshakes from the units come
        # into an OR of arcs, not a state decoder.
        dma = bool(cfg.m_bulk)
        states = ("IDLE", "FETCH", "LATCH", "LOAD_GO", "LOAD", "START", "RUN", "DRAIN",
                  "UNLOAD_GO", "UNLOAD") + (("DI_GO", "DI", "DO_GO", "DO") if dma else ())
        fsm = OneHot(m, states, "IDLE")
        go = fsm.arc("IDLE", self.start, "FETCH")
        fsm.arc("FETCH", 1, "LATCH")
        fsm.arc("LOAD_GO", 1, "LOAD")
        fsm.arc("START", 1, "RUN")
        ran = fsm.arc("RUN", self.seq_done, "DRAIN")
        fsm.arc("UNLOAD_GO", 1, "UNLOAD")
        # finished: the entry's last cycle (its count is recorded, pc moves on); ending: the
        # run's last cycle (done rises).
        finished, ending = Signal(), Signal()
        if dma:
            loaded, next_entry, counting = self._phases(m, fsm, first, drain_end, finished,
                                                        ending)
        else:
            fsm.arc("LATCH", first, "LOAD_GO")
            fsm.arc("LATCH", ~first, "START")
            loaded = fsm.arc("LOAD", self.load_done, "START")
            fsm.arc("DRAIN", drain_end & self.entry.last, "UNLOAD_GO")
            fsm.arc("DRAIN", drain_end & ~self.entry.last, "FETCH")
            ending_arc = fsm.arc("UNLOAD", self.unload_done, "IDLE")
            m.d.comb += [finished.eq(fsm["DRAIN"] & drain_end), ending.eq(ending_arc)]
            next_entry = fsm["DRAIN"]
            counting = fsm.flag(("FETCH", "LATCH", "START", "RUN", "DRAIN"), "counting")
        m.d.comb += [
            self.busy.eq(~fsm.flag(("IDLE",), "idle")),
            self.load_start.eq(fsm["LOAD_GO"]),
            self.loading.eq(fsm.flag(("LOAD_GO", "LOAD"), "loading")),
            self.seq_start.eq(fsm["START"]),
            self.running.eq(fsm.flag(("START", "RUN", "DRAIN"), "running")),
            self.unload_start.eq(fsm["UNLOAD_GO"]),
            self.unloading.eq(fsm.flag(("UNLOAD_GO", "UNLOAD"), "unloading")),
        ]
        fsm.finish()

        # The program word is read a cycle ahead, so FETCH latches the entry and it is
        # stable from LATCH on, a cycle before the sequencer's start (which registers its
        # decodes of the entry then, off the paths from the entry register): pc is 0 while
        # idle, and the entry's last cycle (of DRAIN, or of its store) reads the next entry.
        m.d.comb += [
            rd.addr.eq(Mux(next_entry, pc + 1, pc)),
            lc_rd.addr.eq(self.layer_sel),
            self.layer_cycles.eq(lc_rd.data),
            lc_wr.addr.eq(pc),
            # An entry may end in an uncounted cycle (m_bulk: its unload).
            lc_wr.data.eq(layer_count + (counting if dma else 1)),
            lc_wr.en.eq(finished),
        ]

        # Fetch, run and drain cycles count, for the layer and in all.
        with m.If(counting):
            m.d.sync += [layer_count.eq(layer_count + 1), self.cycles.eq(self.cycles + 1)]
        with m.If(go):
            m.d.sync += [pc.eq(0), first.eq(1), self.done.eq(0), self.cycles.eq(0),
                         layer_count.eq(0)]
        with m.If(fsm["FETCH"]):
            m.d.sync += self.entry.eq(rd.data)
        with m.If(loaded):
            m.d.sync += first.eq(0)
        with m.If(ran):
            m.d.sync += [drain.eq(self._drain - 1), drain_end.eq(self._drain == 1)]
        with m.If(fsm["DRAIN"]):
            m.d.sync += [drain.eq(drain - 1), drain_end.eq(drain == 1)]
        with m.If(finished):
            m.d.sync += [layer_count.eq(0), pc.eq(Mux(self.entry.last, 0, pc + 1))]
        with m.If(ending):
            m.d.sync += self.done.eq(1)
        return m

    def _phases(self, m: Module, fsm: OneHot, first: Signal, drain_end: Signal,
                finished: Signal, ending: Signal) -> tuple[Signal, Signal, Signal]:
        """The arcs of an engine with maps in bulk memory (``m_bulk``): each entry runs the
        phases its flags ask for, in order: the host load (``ld``: LOAD_GO, LOAD), the map
        load (``di_words``: DI_GO, DI), the computation (``run``: START, RUN, DRAIN), the
        map store (``do_words``: DO_GO, DO), the unload (``ul``: UNLOAD_GO, UNLOAD); after
        the last one the next entry, or the end of the run after the entry marked ``last``.
        Returns the image load's end (``first`` clears), the flag that reads the next
        entry ahead, and the counting flag."""
        e = self.entry
        has_di, has_do = Signal(), Signal()
        m.d.comb += [has_di.eq(e.di_words != 0), has_do.eq(e.do_words != 0)]
        order = ("LOAD", "DI", "RUN", "DO", "UNLOAD")
        enabled = {"LOAD": e.ld, "DI": has_di, "RUN": e.run, "DO": has_do, "UNLOAD": e.ul}
        enter = {"LOAD": "LOAD_GO", "DI": "DI_GO", "RUN": "START", "DO": "DO_GO",
                 "UNLOAD": "UNLOAD_GO"}
        # A phase ends in its last state on its unit's finish; LATCH ends the fetch.
        ends = (("LATCH", 1, 0), ("LOAD", self.load_done, 1), ("DI", self.dma_done, 2),
                ("DRAIN", drain_end, 3), ("DO", self.dma_done, 4),
                ("UNLOAD", self.unload_done, 5))
        fsm.arc("DI_GO", 1, "DI")
        fsm.arc("DO_GO", 1, "DO")
        done_terms, end_terms = [], []
        for src, cond, after in ends:
            later = order[after:]
            for j, phase in enumerate(later):
                skip = [enabled[q] for q in later[:j]]
                fsm.arc(src, cond & enabled[phase] & ~Cat(*skip).any() if skip
                        else cond & enabled[phase], enter[phase])
            rest = cond & ~Cat(*(enabled[q] for q in later)).any() if later else cond
            done_terms.append(fsm.arc(src, rest & e.last, "IDLE"))
            end_terms.append(fsm.arc(src, rest & ~e.last, "FETCH"))
        # The first host load's end: ``first`` clears, whatever comes next.
        loaded = Signal()
        m.d.comb += loaded.eq(fsm["LOAD"] & self.load_done)
        m.d.comb += [finished.eq(Cat(*done_terms, *end_terms).any()),
                     ending.eq(Cat(*done_terms).any())]
        next_entry = fsm.flag(tuple(s for s in fsm.st if s not in ("IDLE", "FETCH")),
                              "next_entry")
        counting = fsm.flag(("FETCH", "LATCH", "START", "RUN", "DRAIN", "DI_GO", "DI",
                             "DO_GO", "DO"), "counting")
        m.d.comb += [
            self.dma_start.eq(fsm["DI_GO"] | fsm["DO_GO"]),
            self.dma_store.eq(fsm["DO_GO"]),
            self.dma.eq(fsm.flag(("DI_GO", "DI", "DO_GO", "DO"), "dma_owns")),
            self.first_load.eq(fsm["LOAD_GO"] & first),
        ]
        return loaded, next_entry, counting
