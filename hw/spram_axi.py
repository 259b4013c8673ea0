"""An AXI4 subordinate over iCE40 SPRAM: the bulk memory of a board without external RAM.

On the iCEBreaker (UP5K) the bulk store of the memory hierarchy (``hw/axi.py``) is the four
SB_SPRAM256KA cells, 128 KB, used side by side as one 64-bit memory so that one bus word (four
16-bit cell ports) comes out per cycle. The engine's bulk masters (``hw/bulk_reader.py``,
``hw/bulk_writer.py``) talk to it over the same AXI4 port they would use with a DRAM
controller.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In

from .axi import (BURST_INCR, MAX_BURST_BEATS, RESP_OKAY, RESP_SLVERR, AxiSignature,
                  size_code, word_addr_bits)
from .ice40_spram import CELL_WIDTH, SPRAM

__all__ = ["READ_LATENCY", "SpramAxi"]

#: Cycles from an AR handshake to its first R beat (``rvalid``): one to register the burst,
#: one for the SPRAM's registered read.
READ_LATENCY = 2


class _State(enum.Enum, shape=2):
    """What the port does: wait for a burst, serve a read or a write, answer a write."""
    IDLE = 0
    READ = 1
    WRITE = 2
    RESP = 3


class SpramAxi(wiring.Component):
    """``depth`` words of ``data_width`` bits in SPRAM cells
    (:class:`~dynfix.hw.ice40_spram.SPRAM`: ``data_width // 16`` cells side by side, rows of
    them beyond 16K words), behind an AXI4 subordinate port.

    The cells have one port, so one transaction is served at a time: a read burst (AR, then
    its R beats), or a write burst (AW, its W beats, then B). When both an AR and an AW wait,
    they are taken in turn (the one of the other kind than the last one taken first), so a
    long run of reads cannot starve the writes or the other way round. All IDs are answered
    in order (``rid``/``bid`` echo the request's ID).

    What it does, cycle by cycle (a cycle is one clock; "after" counts from the handshake
    cycle):

    * **Reads.** ``arready`` is high while idle. The first beat is valid
      :data:`READ_LATENCY` (2) cycles after the AR handshake; from then on one beat per cycle
      as long as ``rready`` stays high. The next word is read while the current one is
      presented; a cycle with ``rready`` low costs that cycle only: the word read ahead is
      kept in a one-word skid register and presented next, and the read that the stall made
      useless is issued again (no beat lost or repeated). ``rvalid``, ``rlast``, ``rresp``
      and ``rid`` come from registers; ``rdata`` is the cells' output or the skid register.
    * **Writes.** ``wready`` is high from the cycle after the AW handshake until the burst's
      last beat: one beat per cycle, each written into the cells in its own cycle
      (``wstrb`` byte ``k`` enables the cells' nibbles ``2k`` and ``2k + 1``). ``bvalid``
      rises the cycle after the last beat. The burst's end is counted from ``awlen``;
      ``wlast`` is not looked at.
    * **Between transactions** one idle cycle: the next AR or AW is taken the cycle after a
      burst's last R beat or its B handshake. A 256-beat read burst therefore occupies the
      port for 2 + 256 cycles without stalls, back-to-back read bursts leave two cycles
      without an R beat between them, and a 256-beat write burst with its response takes
      1 + 256 + 1 cycles from its AW handshake.

    Nothing on the bus reaches the cells' address pins (a register); a W beat's data,
    strobes and ``wvalid`` go to the cells' data, mask and write-enable pins in its cycle.

    A burst that touches a word beyond ``depth``, an ``axburst`` other than INCR, or an
    ``axsize`` other than the bus width (narrow beats) is refused as a whole: every R
    beat says SLVERR with ``rdata`` zero, or the W beats are taken, nothing is written, and
    B says SLVERR. An unaligned start address of an INCR burst addresses its word (the
    strobes say which bytes, as AXI defines it). The 4 KiB rule is the manager's to keep;
    the memory does not care.

    Parameters
    ----------
    depth : int
        Words of memory.
    addr_width : int
        Byte address bits of the bus; their word addresses must reach all ``depth`` words.
    data_width : int
        Bus and word width: a power of two, 16 or more (64: four cells side by side).
    cell : bool
        Instantiate SB_SPRAM256KA cells (True) or use the behavioural twin for Amaranth's
        simulator (False); passed to :class:`~dynfix.hw.ice40_spram.SPRAM`.
    id_width : int
        AXI ID bits.
    load : bool
        Filled through ``load`` instead of AXI writes: the memory of a read-only manager
        (the engine's weights), written once at power-up. The AXI write channels are then
        never served (``awready``, ``wready`` and ``bvalid`` stay low), and their logic is
        left out.

    Members
    -------
    bus : In(AxiSignature(addr_width, data_width, id_width))
        The subordinate's side of an AXI4 port: a manager's ``Out(AxiSignature)``, or its
        read and write halves (:func:`axi_halves`), connects to it.
    load : In(stream.Signature(data_width))
        Only with ``load``: words written at word 0, 1, 2, ..., one per cycle while no read
        burst is served (a waiting AR yields to them).
    """

    def __init__(self, depth: int, addr_width: int, data_width: int = 64, *, cell: bool = True,
                 id_width: int = 1, load: bool = False):
        if data_width < CELL_WIDTH or data_width % CELL_WIDTH:
            raise ValueError(f"data_width must be a multiple of {CELL_WIDTH} (whole cells), "
                             f"not {data_width}")
        bus = AxiSignature(addr_width, data_width, id_width)   # checks the widths
        if depth < 2:
            raise ValueError(f"depth must be at least 2 words, not {depth}")
        if depth > 1 << word_addr_bits(addr_width, data_width):
            raise ValueError(f"addr_width {addr_width} does not reach {depth} words of "
                             f"{data_width} bits")
        self._depth, self._data_width, self._cell, self._load = depth, data_width, cell, load
        super().__init__({"bus": In(bus),
                          **({"load": In(stream.Signature(data_width))} if load else {})})

    def elaborate(self, platform):
        m = Module()
        bus, dw, depth = self.bus, self._data_width, self._depth
        size = size_code(dw)
        m.submodules.ram = ram = SPRAM(depth, dw, cell=self._cell)

        addr = Signal.like(ram.addr, name="word")           # next word to read or write
        left = Signal(range(MAX_BURST_BEATS + 1))           # beats not yet on R or W
        to_issue = Signal(range(MAX_BURST_BEATS + 1))       # reads not yet issued
        refused = Signal()                                  # the burst is answered SLVERR
        xid = Signal.like(bus.arid, name="xid")             # the burst's ID
        last_read = Signal()                                # the last burst taken was a read
        ahead = Signal()                                    # ram.r_data is a word read for R
        skid = Signal(dw)                                   # the word read ahead, kept
        skid_full = Signal()
        resp = Mux(refused, RESP_SLVERR, RESP_OKAY)

        def refuse(axaddr, axlen, axsize, axburst):
            return ((axburst != BURST_INCR) | (axsize != size)
                    | (axaddr[size:] + axlen + 1 > depth))

        # The address is a register: nothing on the bus reaches the cells' address pins.
        if not self._load:
            m.d.comb += [ram.addr.eq(addr), ram.w_data.eq(bus.wdata),
                         ram.w_mask.eq(Cat(b.replicate(2) for b in bus.wstrb))]  # 2 nibbles

        # R: the skid register or the cells' word; a stall keeps the presented word.
        r_valid = skid_full | ahead
        r_taken = r_valid & bus.rready
        m.d.comb += [
            bus.rvalid.eq(r_valid),
            bus.rdata.eq(Mux(refused, 0, Mux(skid_full, skid, ram.r_data))),
            bus.rresp.eq(resp), bus.rid.eq(xid), bus.rlast.eq(left == 1),
            bus.bresp.eq(resp), bus.bid.eq(xid),
        ]
        m.d.sync += skid_full.eq(r_valid & ~bus.rready)
        with m.If(~skid_full):
            m.d.sync += skid.eq(ram.r_data)

        state = Signal(_State)
        idle, reading = state == _State.IDLE, state == _State.READ
        writing, answering = state == _State.WRITE, state == _State.RESP

        if self._load:
            # Loading: a word per cycle from the stream while idle, ahead of any AR.
            at = Signal.like(addr, name="load_word")
            m.d.comb += self.load.ready.eq(idle)
            loading = self.load.valid & idle
            with m.If(loading):
                m.d.sync += at.eq(at + 1)
            m.d.comb += [ram.addr.eq(Mux(loading, at, addr)), ram.w_data.eq(self.load.payload),
                         ram.w_mask.eq(-1), ram.w_en.eq(loading)]
            take_read = idle & bus.arvalid & ~self.load.valid
            take_write = 0
            m.d.comb += bus.arready.eq(take_read)
        else:
            # Idle: take an AR or an AW; when both wait, the other kind than the last one.
            take_read = idle & bus.arvalid & ~(bus.awvalid & last_read)
            take_write = idle & bus.awvalid & ~take_read
            m.d.comb += [bus.arready.eq(take_read), bus.awready.eq(take_write)]
        with m.If(take_read):
            m.d.sync += [state.eq(_State.READ), addr.eq(bus.araddr[size:]),
                         left.eq(bus.arlen + 1), to_issue.eq(bus.arlen + 1), xid.eq(bus.arid),
                         refused.eq(refuse(bus.araddr, bus.arlen, bus.arsize, bus.arburst)),
                         last_read.eq(1)]
        if not self._load:
            with m.If(take_write):
                m.d.sync += [state.eq(_State.WRITE), addr.eq(bus.awaddr[size:]),
                             left.eq(bus.awlen + 1), xid.eq(bus.awid),
                             refused.eq(refuse(bus.awaddr, bus.awlen, bus.awsize, bus.awburst)),
                             last_read.eq(0)]

        # Read: the next word now if whatever is presented leaves this cycle (or nothing is):
        # then its word has a place next cycle, on R. Outside a read nothing is issued, and
        # the burst ends with nothing presented or kept.
        issue = reading & (to_issue != 0) & (~r_valid | bus.rready)
        m.d.sync += ahead.eq(issue)
        with m.If(issue):
            m.d.sync += [addr.eq(addr + 1), to_issue.eq(to_issue - 1)]
        with m.If(r_taken):
            m.d.sync += left.eq(left - 1)
            with m.If(left == 1):
                m.d.sync += state.eq(_State.IDLE)

        if self._load:
            return m
        # Write: a beat each cycle with wvalid, into the cells in the same cycle.
        w_beat = writing & bus.wvalid
        m.d.comb += [bus.wready.eq(writing), ram.w_en.eq(w_beat & ~refused)]
        with m.If(w_beat):
            m.d.sync += [addr.eq(addr + 1), left.eq(left - 1)]
            with m.If(left == 1):
                m.d.sync += state.eq(_State.RESP)

        # Response: B after the last W beat.
        m.d.comb += bus.bvalid.eq(answering)
        with m.If(answering & bus.bready):
            m.d.sync += state.eq(_State.IDLE)
        return m
