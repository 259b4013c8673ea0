"""An AXI4 subordinate over an SDR SDRAM chip: the bulk memory of a board that has one.

The ULX3S carries 32 MB of SDR SDRAM (an IS42S16160-class part: four banks of 8192 rows of
512 16-bit columns). The engine's bulk masters (``hw/bulk_reader.py``, ``hw/bulk_writer.py``)
move long runs of consecutive words, so the controller keeps one row open and issues a
single-word READ or WRITE every cycle to its columns (burst length 1: any run, any start,
no burst-length bookkeeping; an SDR part takes a column command every cycle), closing and
opening rows as a run crosses them, and refreshing between bursts or, when refreshes fall
behind, inside one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .axi import BURST_INCR, RESP_OKAY, RESP_SLVERR, AxiSignature, size_code

__all__ = ["SdramPart", "SdramTiming", "SdramPins", "SdramAxi", "IS42S16160", "SDRAM_PARTS",
           "Command", "URGENT_REFRESHES"]


class Command(enum.Enum, shape=4):
    """The command pins ``(cs_n, ras_n, cas_n, we_n)``, ``we_n`` the low bit."""
    NOP = 0b0111
    ACTIVE = 0b0011
    READ = 0b0101
    WRITE = 0b0100
    PRECHARGE = 0b0010
    REFRESH = 0b0001
    LOAD_MODE = 0b0000


@dataclass(frozen=True)
class SdramPart:
    """An SDR SDRAM part: its geometry and its datasheet's timing in nanoseconds."""
    name: str
    row_bits: int
    col_bits: int
    bank_bits: int
    t_rcd: float            # ACTIVE to READ/WRITE
    t_rp: float             # PRECHARGE to ACTIVE/REFRESH
    t_ras: float            # ACTIVE to PRECHARGE
    t_rc: float             # ACTIVE to ACTIVE (same bank)
    t_wr: float             # last write data to PRECHARGE
    t_rfc: float            # REFRESH to the next command
    t_refi: float           # average refresh interval (64 ms / 8192 rows)
    t_init: float           # power-up wait before the first command
    t_mrd: int = 2          # LOAD MODE to the next command, in clocks
    t_ck2: float = 10.0     # shortest clock period at CAS latency 2
    t_ck3: float = 7.0      # shortest clock period at CAS latency 3
    t_ac2: float = 6.0      # clock to read data valid at CAS latency 2
    t_ac3: float = 5.4      # clock to read data valid at CAS latency 3
    t_oh: float = 2.7       # read data held after the next clock
    t_is: float = 1.5       # command, address and write data setup before the clock
    t_ih: float = 0.8       # and hold after it

    def cas_at(self, clk_hz: float) -> int:
        """The CAS latency the part runs at ``clk_hz``: 2 where its period allows, else 3."""
        period = 1e9 / clk_hz
        if period < self.t_ck3 - 1e-9:
            raise ValueError(f"{self.name} runs at most {1e3 / self.t_ck3:.0f} MHz, not "
                             f"{clk_hz / 1e6:g} MHz")
        return 2 if period >= self.t_ck2 - 1e-9 else 3

    def t_ac(self, cas: int) -> float:
        """Clock to read data valid at CAS latency ``cas``."""
        return self.t_ac2 if cas == 2 else self.t_ac3

    @property
    def words(self) -> int:
        return 1 << (self.row_bits + self.col_bits + self.bank_bits)


#: The ULX3S's SDRAM (IS42S16160J-7 and its equivalents): 32 MB, 16 bits wide.
IS42S16160 = SdramPart("IS42S16160-7", row_bits=13, col_bits=9, bank_bits=2, t_rcd=15,
                       t_rp=15, t_ras=42, t_rc=60, t_wr=14, t_rfc=60, t_refi=7812.5,
                       t_init=100_000)

#: The parts a board file may name (``resources.sdram.part``), by name.
SDRAM_PARTS = {"IS42S16160": IS42S16160}


@dataclass(frozen=True)
class SdramTiming:
    """The part's rules in clock cycles at the controller's clock (minima rounded up, the
    refresh interval down), and the CAS latency it programs."""
    t_rcd: int
    t_rp: int
    t_ras: int
    t_rc: int
    t_wr: int
    t_rfc: int
    t_refi: int
    t_init: int
    t_mrd: int
    cas: int = 2

    @classmethod
    def at(cls, part: SdramPart, clk_hz: float, cas: int | None = 2) -> "SdramTiming":
        """The rules at ``clk_hz``; ``cas`` None: the latency the part needs there
        (:meth:`SdramPart.cas_at`)."""
        if cas is None:
            cas = part.cas_at(clk_hz)

        def up(ns: float) -> int:
            return max(1, math.ceil(ns * clk_hz / 1e9 - 1e-9))
        return cls(t_rcd=up(part.t_rcd), t_rp=up(part.t_rp), t_ras=up(part.t_ras),
                   t_rc=up(part.t_rc), t_wr=max(2, up(part.t_wr)), t_rfc=up(part.t_rfc),
                   t_refi=int(part.t_refi * clk_hz / 1e9), t_init=up(part.t_init),
                   t_mrd=part.t_mrd, cas=cas)


class SdramPins(wiring.Signature):
    """The chip's pins as the controller drives them (the data lines split into what the
    controller drives, its output enable, and what it reads)."""

    def __init__(self, part: SdramPart):
        addr_bits = max(part.row_bits, part.col_bits, 11)    # A10 selects "all banks"
        self.part = part
        super().__init__({
            "clk_en": Out(1), "cs_n": Out(1, init=1), "ras_n": Out(1, init=1),
            "cas_n": Out(1, init=1), "we_n": Out(1, init=1),
            "ba": Out(part.bank_bits), "a": Out(addr_bits), "dqm": Out(2),
            "dq_o": Out(16), "dq_oe": Out(1), "dq_i": In(16),
        })


#: Refreshes owed before the controller interrupts a burst for one (JEDEC lets a part
#: postpone up to 8).
URGENT_REFRESHES = 4


class _State(enum.Enum, shape=3):
    INIT = 0
    IDLE = 1
    READ = 2
    WRITE = 3
    RESP = 4


class SdramAxi(wiring.Component):
    """A read/write AXI4 subordinate of ``data_width`` bits over one 16-bit SDR SDRAM.

    Byte ``b`` is the high or low byte of SDRAM word ``b // 2``; a burst's first beat is the
    bus word holding its address (an unaligned start's lanes below it are not its data, as
    AXI4 has it); word ``w`` is column
    ``w mod 2**col_bits`` of row ``(w >> col_bits) mod 2**row_bits`` of bank ``w >> (col_bits
    + row_bits)``: the chip's own ``{bank, row, column}`` order, so an image of consecutive
    words loads into a model of the chip as it is. A bus beat is
    ``data_width / 16`` words, the first in the low bits.

    **Commands.** After ``t_init`` cycles the chip is initialised (PRECHARGE all, two
    REFRESHes, LOAD MODE: burst length 1, sequential, CAS latency ``cas``). A burst's words
    each get one READ or WRITE; a word outside the open row closes it (PRECHARGE all once
    ``t_ras`` after its ACTIVE and ``t_wr`` after its last write) and opens the word's
    (ACTIVE, then ``t_rcd``). A refresh is owed every ``t_refi`` cycles; owed ones are done
    while idle, or inside a burst once :data:`URGENT_REFRESHES` are owed. The command pins
    are registers.

    **Addresses.** AR and AW each land in a register (ready while it is empty) before the
    controller takes the transaction from it, so its choice starts from registers.

    **Reads.** One transaction at a time. A READ is issued each cycle while the words in
    flight, being assembled and in the read FIFO fit the FIFO, so a stalled ``rready``
    stops the READs, not the data already coming: the data is taken ``cas + 1`` cycles
    after its READ is registered (plus ``io_latency``). The next transaction is taken once
    no read data is in flight.

    **Writes.** W beats queue in a three-beat FIFO (``wready`` while it has room); one
    leaves it for the write buffer when the previous one's words have all been written or
    in the cycle its last word's WRITE is issued, then written a word per cycle (``dqm`` from
    ``wstrb``), so a run of beats in an open row is written at a word per cycle, the bus
    rate of a 16-bit port; B follows the last.

    Only INCR bursts of whole bus words are served as such; any other is answered SLVERR
    (reads return the words at its addresses, writes are masked).

    Parameters
    ----------
    addr_width, data_width, id_width : int
        The port's widths (``data_width`` a multiple of 16); ``addr_width`` at most the
        part's bytes.
    part : SdramPart
    timing : SdramTiming
        The part's rules at the clock this runs at.
    io_latency : int
        Clock cycles that registers between the controller and the chip add to a read's
        round trip (the board's I/O registers: one on the way out, one on the way back,
        :class:`~dynfix.boards.sdram_phy.SdramPhy`); read data is taken ``cas + 1 +
        io_latency`` cycles after its READ is registered. The output registers delay
        commands and write data alike, so writes need nothing.

    Members
    -------
    bus : In(AxiSignature(addr_width, data_width, id_width))
    sdram : Out(SdramPins(part))
    ready : Out(1)
        The chip is initialised (transactions are taken from then on).
    """

    def __init__(self, addr_width: int, data_width: int, *, part: SdramPart = IS42S16160,
                 timing: SdramTiming, id_width: int = 1, io_latency: int = 0):
        if data_width < 16 or data_width % 16:
            raise ValueError(f"data_width must be a multiple of 16, not {data_width}")
        bus = AxiSignature(addr_width, data_width, id_width)
        if 1 << (addr_width - 1) > part.words:
            raise ValueError(f"addr_width {addr_width} reaches past the part's "
                             f"{part.words * 2} bytes")
        if timing.cas not in (2, 3):
            raise ValueError(f"CAS latency must be 2 or 3, not {timing.cas}")
        if io_latency < 0:
            raise ValueError(f"io_latency must be at least 0, not {io_latency}")
        self._part, self._t, self._dw = part, timing, data_width
        self._io_latency = io_latency
        super().__init__({"bus": In(bus), "sdram": Out(SdramPins(part)), "ready": Out(1)})

    def elaborate(self, platform):
        m = Module()
        bus, pins, part, t = self.bus, self.sdram, self._part, self._t
        k = self._dw // 16
        size = size_code(self._dw)
        word_bits = part.row_bits + part.col_bits + part.bank_bits
        col_hi, row_hi = part.col_bits, part.col_bits + part.row_bits

        # The command pins, registered; a NOP unless a command is given this cycle.
        cmd = Signal(Command, init=Command.NOP)
        m.d.comb += [Cat(pins.we_n, pins.cas_n, pins.ras_n, pins.cs_n).eq(cmd),
                     pins.clk_en.eq(1)]
        m.d.sync += [cmd.eq(Command.NOP), pins.dq_oe.eq(0)]

        def command(c: Command, *, ba=None, a=None):
            m.d.sync += cmd.eq(c)
            if ba is not None:
                m.d.sync += pins.ba.eq(ba)
            if a is not None:
                m.d.sync += pins.a.eq(a)

        # Waits between commands (``wait`` cycles more), and the rules counted since.
        wait = Signal(range(max(t.t_init, t.t_rfc, t.t_rp, t.t_rcd, t.t_mrd) + 1),
                      init=t.t_init)
        free = wait == 0
        with m.If(~free):
            m.d.sync += wait.eq(wait - 1)
        act_max = max(t.t_ras, t.t_rc)
        since_act = Signal(range(act_max + 1), init=act_max)
        since_wr = Signal(range(t.t_wr + 1), init=t.t_wr)
        with m.If(since_act != act_max):
            m.d.sync += since_act.eq(since_act + 1)
        with m.If(since_wr != t.t_wr):
            m.d.sync += since_wr.eq(since_wr + 1)

        # Refreshes owed.
        refi = Signal(range(t.t_refi), init=t.t_refi - 1)
        owed = Signal(range(16))
        tick = refi == 0
        m.d.sync += refi.eq(Mux(tick, t.t_refi - 1, refi - 1))
        refreshed = Signal()
        m.d.sync += owed.eq(owed + tick - refreshed)

        # The open row.
        is_open = Signal()
        open_at = Signal(part.row_bits + part.bank_bits)       # (bank, row)
        may_close = (since_act >= t.t_ras - 1) & (since_wr >= t.t_wr - 1)

        word = Signal(word_bits)                                # next word to issue
        left = Signal(range(256 * k + 1))                       # words still to issue
        # ``word`` lies in the open row: kept as a register (set when the row is opened for
        # ``word`` or a transaction starts in it, cleared when ``word`` steps past the row's
        # last column or the row is closed), so no row compare sits before a command.
        here = Signal()
        xid = Signal.like(bus.arid)
        refused = Signal()
        state = Signal(_State)

        def close_or_open(target):
            """Make the row of ``target`` (a word address) the open one; True when it is."""
            with m.If(is_open & ~here):
                with m.If(free & may_close):
                    command(Command.PRECHARGE, a=1 << 10)
                    m.d.sync += [is_open.eq(0), wait.eq(t.t_rp - 1)]
            with m.Elif(~is_open):
                with m.If(free & (since_act >= t.t_rc - 1)):
                    command(Command.ACTIVE, ba=target[row_hi:], a=target[col_hi:row_hi])
                    m.d.sync += [is_open.eq(1), open_at.eq(target[col_hi:]), here.eq(1),
                                 since_act.eq(0), wait.eq(t.t_rcd - 1)]

        def refresh():
            """Close the row if open, then REFRESH."""
            with m.If(is_open):
                with m.If(free & may_close):
                    command(Command.PRECHARGE, a=1 << 10)
                    m.d.sync += [is_open.eq(0), here.eq(0), wait.eq(t.t_rp - 1)]
            with m.Elif(free):
                command(Command.REFRESH)
                m.d.comb += refreshed.eq(1)
                m.d.sync += wait.eq(t.t_rfc - 1)

        # Read data: READs in flight (a bit per cycle), words assembled into beats, a FIFO.
        rd_lat = t.cas + 1 + self._io_latency
        pipe = Signal(rd_lat)
        issued = Signal()
        m.d.sync += pipe.eq(Cat(issued, pipe[:-1]))
        arrive = pipe[-1]
        depth = -(-(rd_lat + 3) // k) + 1
        entry = data.StructLayout({"data": self._dw, "last": 1, "id": len(bus.rid),
                                   "bad": 1})
        m.submodules.rfifo = fifo = SyncFIFOBuffered(width=entry.size, depth=depth)
        out = data.View(entry, fifo.r_data)
        m.d.comb += [bus.rvalid.eq(fifo.r_rdy), bus.rdata.eq(out.data), bus.rlast.eq(out.last),
                     bus.rid.eq(out.id), bus.rresp.eq(Mux(out.bad, RESP_SLVERR, RESP_OKAY)),
                     fifo.r_en.eq(bus.rready)]
        pending = Signal(range(depth * k + 1))      # words issued, not yet in the FIFO
        held = Signal(16 * max(1, k - 1))           # a beat's earlier words
        got = Signal(range(k))
        back = Signal(range(257))                   # beats of the burst still to come back
        full_beat = (got == k - 1) if k > 1 else Const(1)
        m.d.comb += [
            fifo.w_data.eq(Cat(held if k > 1 else Cat(), pins.dq_i, back == 1, xid, refused)),
            fifo.w_en.eq(arrive & full_beat),
        ]
        with m.If(arrive):
            if k > 1:
                m.d.sync += [held.eq(Cat(held[16:], pins.dq_i)), got.eq(got + 1)]
                with m.If(full_beat):
                    m.d.sync += got.eq(0)
            with m.If(full_beat):
                m.d.sync += back.eq(back - 1)
        m.d.sync += pending.eq(pending + issued - Mux(arrive & full_beat, k, 0))
        room = fifo.level * k + pending < depth * k

        # Write data: a beat at a time, written a word per cycle.
        wbuf = Signal(self._dw)
        wmask = Signal(2 * k)
        wleft = Signal(range(k + 1))                # words of the beat not yet written
        beats_left = Signal(range(257))

        # Each address channel lands in a register first (a slot, taken while empty), so
        # the choice of the next transaction starts from registers, not from the managers'
        # logic that drives the channels.
        ax = data.StructLayout({"addr": len(bus.araddr), "len": 8, "size": 3, "burst": 2,
                                "id": len(bus.arid)})
        slots = {}
        for ch in ("ar", "aw"):
            slot, full = Signal(ax, name=f"{ch}_slot"), Signal(name=f"{ch}_full")
            fields = [getattr(bus, f"{ch}{f}") for f in ("addr", "len", "size", "burst", "id")]
            m.d.comb += getattr(bus, f"{ch}ready").eq(~full)
            with m.If(getattr(bus, f"{ch}valid") & ~full):
                m.d.sync += [slot.eq(Cat(*fields)), full.eq(1)]
            slots[ch] = slot, full
        (ar, ar_full), (aw, aw_full) = slots["ar"], slots["aw"]

        last_read = Signal()
        quiet = (pipe == 0) & (pending == 0)
        take_read = (state == _State.IDLE) & (owed == 0) & quiet & ar_full & ~(
            aw_full & last_read)
        take_write = (state == _State.IDLE) & (owed == 0) & quiet & aw_full & ~take_read

        def refuse(slot):
            return ((slot.burst != BURST_INCR) | (slot.size != size)
                    | ((slot.addr[size:] + slot.len + 1) > (part.words // k)))

        def starts_here(slot):
            """The transaction in ``slot`` starts in the open row."""
            return is_open & (Cat(Const(0, size - 1), slot.addr[size:])[col_hi:] == open_at)

        with m.If(take_read):
            m.d.sync += [state.eq(_State.READ), word.eq(Cat(Const(0, size - 1),
                                                             ar.addr[size:])),
                         here.eq(starts_here(ar)),
                         left.eq((ar.len + 1) * k), back.eq(ar.len + 1), xid.eq(ar.id),
                         last_read.eq(1), refused.eq(refuse(ar)), ar_full.eq(0)]
        with m.If(take_write):
            m.d.sync += [state.eq(_State.WRITE), word.eq(Cat(Const(0, size - 1),
                                                              aw.addr[size:])),
                         here.eq(starts_here(aw)),
                         beats_left.eq(aw.len + 1), xid.eq(aw.id), last_read.eq(0),
                         refused.eq(refuse(aw)), aw_full.eq(0)]

        writing = Signal()
        # W beats wait in a small FIFO, so ``wready`` comes from its level register, not
        # from the command timing below; a beat leaves it when the buffer is empty or its
        # last word is written this cycle (``writing``), so a run of beats is written a
        # word per cycle.
        went = data.StructLayout({"data": self._dw, "strb": self._dw // 8})
        m.submodules.wfifo = wfifo = SyncFIFOBuffered(width=went.size, depth=3)
        win = data.View(went, wfifo.r_data)
        take_beat = (state == _State.WRITE) & (beats_left != 0) & wfifo.r_rdy & (
            (wleft == 0) | ((wleft == 1) & writing))
        m.d.comb += [wfifo.w_data.eq(Cat(bus.wdata, bus.wstrb)), wfifo.w_en.eq(bus.wvalid),
                     bus.wready.eq(wfifo.w_rdy), wfifo.r_en.eq(take_beat)]
        m.d.comb += [bus.bvalid.eq(state == _State.RESP), bus.bid.eq(xid),
                     bus.bresp.eq(Mux(refused, RESP_SLVERR, RESP_OKAY))]

        urgent = owed >= URGENT_REFRESHES
        init_step = Signal(range(5))
        with m.Switch(state):
            with m.Case(_State.INIT):
                # PRECHARGE all, REFRESH, REFRESH, LOAD MODE (burst length 1, CAS latency).
                with m.If(free):
                    m.d.sync += init_step.eq(init_step + 1)
                    with m.Switch(init_step):
                        with m.Case(0):
                            command(Command.PRECHARGE, a=1 << 10)
                            m.d.sync += wait.eq(t.t_rp - 1)
                        with m.Case(1, 2):
                            command(Command.REFRESH)
                            m.d.sync += wait.eq(t.t_rfc - 1)
                        with m.Case(3):
                            command(Command.LOAD_MODE, ba=0, a=t.cas << 4)
                            m.d.sync += wait.eq(t.t_mrd - 1)
                        with m.Case(4):
                            m.d.sync += [state.eq(_State.IDLE), self.ready.eq(1),
                                         owed.eq(0)]
            with m.Case(_State.IDLE):
                with m.If(owed != 0):
                    refresh()
            with m.Case(_State.READ):
                with m.If(left == 0):
                    m.d.sync += state.eq(_State.IDLE)
                with m.Elif(urgent):
                    refresh()
                with m.Elif(here):
                    with m.If(free & room):
                        command(Command.READ, ba=word[row_hi:], a=word[:col_hi])
                        m.d.comb += issued.eq(1)
                        m.d.sync += pins.dqm.eq(0)
                        m.d.sync += [word.eq(word + 1), left.eq(left - 1),
                                     here.eq(word[:col_hi] != (1 << col_hi) - 1)]
                with m.Else():
                    close_or_open(word)
            with m.Case(_State.WRITE):
                with m.If((wleft == 0) & (beats_left == 0)):
                    m.d.sync += state.eq(_State.RESP)
                with m.Elif(urgent):
                    refresh()
                with m.Elif(wleft != 0):            # a beat's words to write
                    with m.If(here):
                        with m.If(free):
                            command(Command.WRITE, ba=word[row_hi:], a=word[:col_hi])
                            m.d.comb += writing.eq(1)
                            m.d.sync += [pins.dq_o.eq(wbuf[:16]), pins.dqm.eq(wmask[:2]),
                                         pins.dq_oe.eq(1), wbuf.eq(wbuf >> 16),
                                         wmask.eq(wmask >> 2), wleft.eq(wleft - 1),
                                         word.eq(word + 1), since_wr.eq(0),
                                         here.eq(word[:col_hi] != (1 << col_hi) - 1)]
                    with m.Else():
                        close_or_open(word)
            with m.Case(_State.RESP):
                with m.If(bus.bready):
                    m.d.sync += state.eq(_State.IDLE)
        # After the WRITE above, so a beat taken as the last word goes out overrides its
        # shift of the buffer (the last assignment wins).
        with m.If(take_beat):
            m.d.sync += [wbuf.eq(win.data), wleft.eq(k), beats_left.eq(beats_left - 1),
                         wmask.eq(Mux(refused, (1 << 2 * k) - 1, ~win.strb))]
        return m
