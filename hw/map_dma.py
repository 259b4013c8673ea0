"""Move runs of feature-map words between the map memory and the bulk memory over AXI4."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .axi import (RESP_OKAY, AxiReadSignature, AxiWriteSignature, check_master,
                  times_const, word_addr_bits)
from .bulk_reader import BulkReader
from .bulk_writer import BulkWriter
from .weight_ring import beats_per_word

__all__ = ["MapDma", "MapDmaRequestLayout"]


class MapDmaRequestLayout(data.StructLayout):
    """A map transfer request, the payload of :class:`MapDma`'s request stream: ``store``
    (0: bulk to map memory, 1: map to bulk memory), the first map word's address ``fmap``,
    the bus-word address ``bulk`` of its first beat, and ``count`` map words."""

    def __init__(self, fmap_addr_bits: int, bulk_addr_bits: int, count_bits: int):
        super().__init__({"store": 1, "fmap": unsigned(fmap_addr_bits),
                          "bulk": unsigned(bulk_addr_bits), "count": unsigned(count_bits)})


class MapDma(wiring.Component):
    """Moves ``count`` consecutive map words between the map memory (from ``fmap`` on) and
    the bulk memory (from bus word ``bulk`` on), in either direction, at one bus beat a
    cycle.

    Maps too big for the chip live in the bulk memory and come in and go out in row strips;
    this is the mover. A map word of ``word_bits`` takes ``k`` = ``ceil(word_bits /
    bus_bits)`` consecutive bus words there, lowest bits first, as
    :func:`dynfix.hw.weight_ring.bulk_image` lays out the weights: map word ``i`` of a
    request is bus words ``bulk + i*k .. bulk + i*k + k - 1``. A LOAD (``store`` 0) reads
    them with an internal :class:`~dynfix.hw.bulk_reader.BulkReader` (bits above
    ``word_bits`` in a word's last beat are ignored); a STORE (``store`` 1) writes them with
    an internal :class:`~dynfix.hw.bulk_writer.BulkWriter` (those bits written 0). Bursts,
    the 4 KiB rule and ``outstanding`` are theirs; the read and the write half of the bus
    are separate ports, so the engine can share the read port with another reader.

    A request is taken while the mover is idle and passed on to the reader or the writer in
    the same cycle (``count * k`` bus words). A request of ``count`` 0 touches neither
    memory: ``done`` follows the next cycle and ``busy`` stays low.

    LOAD: the reader's beats are taken at once (``rready`` is never held back by the map
    side), so its read data never waits on the bus: on a read port shared with other
    masters (one ID, data in request order) a LOAD never blocks the others' reads. The
    first ``k - 1`` beats of a word shift into an assembly register; in the cycle of its
    last beat the word (the register and that beat) is written to the map memory.

    STORE: no buffer. The map memory's read port returns the word at the previous cycle's
    ``rd_addr`` every cycle, so its output register holds the word being sent for as long
    as ``rd_addr`` stays: ``rd_addr`` is the current word's address, and the next one's in
    the cycle the current word's last beat is taken (a multiplexer on ``wready``'s path),
    so that the next word is there the cycle after. ``wdata`` is the current beat's slice
    of ``rd_data``. While ``wready`` is low nothing moves and the same word is read again,
    so no word is lost and none needs a buffer. The first word is read in the first cycle
    after the request, in which the writer registers its first burst's length, so the read
    costs no cycle. The read port must be the mover's in every cycle of a STORE, and the
    words being stored must not be written meanwhile.

    ``busy`` and ``done`` follow the reader or the writer: ``done`` rises the cycle after it
    went idle (LOAD: after its last beat, so after the last map word was written; STORE:
    after the last write response); the next request can be taken in that cycle.

    Parameters
    ----------
    word_bits : int
        Bits of a map word.
    fmap_addr_bits : int
        Address bits of the map memory (its address counts modulo ``2 ** fmap_addr_bits``).
    addr_width : int
        Byte address bits of the AXI bus.
    bus_bits : int
        AXI data width, a power of two from 8 to 1024.
    count_bits : int
        Bits of a request's map-word count.
    outstanding : int
        Most bursts in flight in the reader, and open on each side of the writer.

    Members
    -------
    req : In(stream.Signature(MapDmaRequestLayout(fmap_addr_bits, word_addr_bits, count_bits)))
        ``store``, ``fmap``, ``bulk`` (bus-word address), ``count`` (0 allowed); ready only
        while idle (``~busy``).
    busy : Out(1)
        From the cycle after a request with ``count`` > 0 is taken until it has finished.
    done : Out(1)
        One cycle: the last request has finished (``busy`` is low in that cycle).
    error : Out(1)
        A read beat (LOAD) or write response (STORE) of the last request was not OKAY; the
        words are moved all the same. Held until the next request is taken.
    rd_addr : Out(unsigned(fmap_addr_bits))
        Map memory read address (used by STORE; while busy every cycle).
    rd_data : In(unsigned(word_bits))
        The map word at the previous cycle's ``rd_addr``, every cycle.
    wr_addr : Out(unsigned(fmap_addr_bits))
    wr_data : Out(unsigned(word_bits))
    wr_en : Out(1)
        Write ``wr_data`` at ``wr_addr`` (LOAD).
    rbus : Out(AxiReadSignature(addr_width, bus_bits))
    wbus : Out(AxiWriteSignature(addr_width, bus_bits))
    """

    def __init__(self, word_bits: int, fmap_addr_bits: int, addr_width: int, bus_bits: int,
                 count_bits: int, outstanding: int = 2):
        for name, value in (("word_bits", word_bits), ("fmap_addr_bits", fmap_addr_bits)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        check_master(outstanding, count_bits)
        rbus = AxiReadSignature(addr_width, bus_bits)    # checks the bus widths
        wbus = AxiWriteSignature(addr_width, bus_bits)
        self._word_bits, self._bus_bits = word_bits, bus_bits
        self._addr_width, self._outstanding = addr_width, outstanding
        self._k = beats_per_word(word_bits, bus_bits)
        # Bus words of the longest request.
        self._bus_count_bits = (((1 << count_bits) - 1) * self._k).bit_length()
        layout = MapDmaRequestLayout(fmap_addr_bits, word_addr_bits(addr_width, bus_bits),
                                     count_bits)
        super().__init__({
            "req": In(stream.Signature(layout)),
            "busy": Out(1), "done": Out(1), "error": Out(1),
            "rd_addr": Out(unsigned(fmap_addr_bits)),
            "rd_data": In(unsigned(word_bits)),
            "wr_addr": Out(unsigned(fmap_addr_bits)),
            "wr_data": Out(unsigned(word_bits)),
            "wr_en": Out(1),
            "rbus": Out(rbus),
            "wbus": Out(wbus),
        })

    @property
    def beats_per_word(self) -> int:
        """Bus beats of one map word (``k``)."""
        return self._k

    def elaborate(self, platform):
        m = Module()
        k, bb, wb = self._k, self._bus_bits, self._word_bits
        req = self.req
        widths = (self._addr_width, bb, self._bus_count_bits, self._outstanding)
        m.submodules.reader = reader = BulkReader(*widths)
        m.submodules.writer = writer = BulkWriter(*widths)
        wiring.connect(m, wiring.flipped(self.rbus), reader.bus)
        wiring.connect(m, wiring.flipped(self.wbus), writer.bus)

        # Requests go straight on to the reader or the writer; both are idle whenever the
        # mover is (it goes idle only after them).
        taken = req.valid & req.ready
        some = req.payload.count != 0
        m.d.comb += req.ready.eq(~self.busy)
        for sub, store in ((reader, 0), (writer, 1)):
            m.d.comb += [sub.req.valid.eq(req.valid & ~self.busy & some
                                          & (req.payload.store == store)),
                         sub.req.payload.addr.eq(req.payload.bulk),
                         sub.req.payload.count.eq(times_const(req.payload.count, k))]

        store = Signal()                # the current request is a STORE
        primed = Signal()               # busy in the previous cycle: rd_data is the word
        m.d.sync += primed.eq(self.busy)

        # One beat a cycle at most, from the reader (LOAD) or to the writer (STORE).
        m.d.comb += [reader.o.ready.eq(1),
                     writer.i.valid.eq(self.busy & store & primed)]
        r_beat = reader.o.valid
        w_beat = writer.i.valid & writer.i.ready
        beat = r_beat | w_beat
        if k == 1:
            word_end = Const(1)
        else:
            pos = Signal(range(k))      # the beat of the current word
            word_end = pos == k - 1
            with m.If(beat):
                m.d.sync += pos.eq(Mux(word_end, 0, pos + 1))
        step = beat & word_end          # the current word is done: on to the next

        addr = Signal.like(self.rd_addr)                # the current word's map address
        next_addr = Signal.like(self.rd_addr)
        m.d.comb += next_addr.eq(Mux(step, addr + 1, addr))
        m.d.sync += addr.eq(next_addr)
        m.d.comb += [self.rd_addr.eq(next_addr), self.wr_addr.eq(addr)]

        # LOAD: the word's earlier beats shift in from the top, so beat 0 ends lowest.
        if k == 1:
            m.d.comb += self.wr_data.eq(reader.o.payload[:wb])
        else:
            early = Signal((k - 1) * bb)
            with m.If(r_beat):
                m.d.sync += early.eq(Cat(early, reader.o.payload)[bb:])
            m.d.comb += self.wr_data.eq(Cat(early, reader.o.payload)[:wb])
        m.d.comb += self.wr_en.eq(r_beat & word_end)

        # STORE: the current beat's slice of the word, zeros above word_bits.
        padded = Cat(self.rd_data, Const(0, k * bb - wb))
        if k == 1:
            m.d.comb += writer.i.payload.eq(padded)
        else:
            m.d.comb += writer.i.payload.eq(padded.word_select(pos, bb))

        r_bad = self.rbus.rvalid & self.rbus.rready & (self.rbus.rresp != RESP_OKAY)
        b_bad = self.wbus.bvalid & self.wbus.bready & (self.wbus.bresp != RESP_OKAY)
        with m.If(r_bad | b_bad):
            m.d.sync += self.error.eq(1)

        m.d.sync += self.done.eq(0)
        with m.If(taken):
            m.d.sync += [self.busy.eq(some), self.done.eq(~some), self.error.eq(0),
                         store.eq(req.payload.store), addr.eq(req.payload.fmap)]
            if k > 1:
                m.d.sync += pos.eq(0)
        with m.Elif(self.busy & ~Mux(store, writer.busy, reader.busy)):
            m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        return m
