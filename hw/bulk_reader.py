"""Read a run of consecutive words from the bulk memory over AXI4, as a stream of words."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .axi import (BURST_INCR, RESP_OKAY, AxiReadSignature, BulkRequestLayout, burst_beats,
                  check_master, check_max_burst, max_beats, size_code, word_addr_bits)

__all__ = ["BulkReader"]


class BulkReader(wiring.Component):
    """Reads ``count`` words from word address ``addr`` with INCR bursts and streams them out
    in address order.

    A request is taken when the reader is idle. The words are fetched in bursts of at most
    256 beats that never cross a 4 KiB boundary (:func:`dynfix.hw.axi.burst_beats`). Up to
    ``outstanding`` bursts are in flight: the next burst's address goes out while the data
    of the earlier ones arrives, so with two or more and a read latency shorter than a
    burst the words stream without a gap between bursts. Read data passes straight from R
    to ``o`` (no buffer, no added latency): ``rready`` is ``o.ready``, so a stalled consumer
    stalls the bus. A burst is finished by its ``rlast``; all bursts use ID 0, so they
    return in order.

    ``max_burst`` limits the bursts further (none longer, the 4 KiB rule unchanged; the
    bursts are not aligned to it). A reader that shares its AXI port with other masters must
    never ask for more than it can take at once: read data of one ID returns in request
    order, so a burst waiting on a full receiver (``rready`` low) blocks every later read on
    the port, and if the receiver drains only once another master's read has come back,
    nothing moves again. A receiver of a few words (the weight ring's ``credit`` mode)
    issues only bursts it has room for, which it can do only if they are short enough.

    Parameters
    ----------
    addr_width : int
        Byte address bits of the AXI bus.
    data_width : int
        Bus and word width in bits.
    count_bits : int
        Bits of a request's word count.
    outstanding : int
        Most bursts in flight (issued, last beat not yet received).
    id_width : int
        AXI ID bits (``arid`` is 0).
    max_burst : int or None
        The longest burst in beats, a power of two from 1 to 256; None (the default): only
        the bus's limits (256 beats, a 4 KiB page).

    Members
    -------
    req : In(stream.Signature(BulkRequestLayout(word_addr_bits, count_bits)))
        ``addr`` (word address) and ``count`` (words, 0 allowed); ready while idle.
    o : Out(stream.Signature(unsigned(data_width)))
        The words, in address order.
    bus : Out(AxiReadSignature(addr_width, data_width, id_width))
    busy : Out(1)
        From the request until its last word has gone out on ``o``.
    done : Out(1)
        The last request finished; held until the next request is taken.
    error : Out(1)
        A word of the last request came with an ``rresp`` other than OKAY (the words are
        streamed all the same); held until the next request is taken.
    """

    def __init__(self, addr_width: int, data_width: int, count_bits: int, outstanding: int = 2,
                 id_width: int = 1, max_burst: int | None = None):
        check_master(outstanding, count_bits)
        check_max_burst(max_burst)
        self._data_width, self._outstanding = data_width, outstanding
        self._max_burst = max_burst
        bus = AxiReadSignature(addr_width, data_width, id_width)
        self._word_bits = word_addr_bits(addr_width, data_width)
        super().__init__({
            "req": In(stream.Signature(BulkRequestLayout(self._word_bits, count_bits))),
            "o": Out(stream.Signature(unsigned(data_width))),
            "bus": Out(bus),
            "busy": Out(1), "done": Out(1), "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus, o, req = self.bus, self.o, self.req
        count_shape = req.payload.count.shape()

        ar_addr = Signal(unsigned(self._word_bits))     # word address of the next burst
        ar_left = Signal(count_shape)                   # words not yet asked for
        rx_left = Signal(count_shape)                   # words not yet received
        inflight = Signal(range(self._outstanding + 1))  # bursts issued, rlast not seen

        # The next burst's length, registered: the cycle after the address or the count
        # changed it is not yet valid (``fresh`` low) and no AR goes out. So the page and
        # count compares never reach the bus, nor the subordinate's logic behind it.
        top = max_beats(self._data_width)
        if self._max_burst is not None:
            top = min(top, self._max_burst)
        beats = Signal(range(top + 1))
        fresh = Signal()
        m.d.sync += [beats.eq(burst_beats(m, ar_addr, ar_left, self._data_width,
                                          self._max_burst)),
                     fresh.eq(1)]
        m.d.comb += [
            bus.arid.eq(0),
            bus.araddr.eq(Cat(Const(0, size_code(self._data_width)), ar_addr)),
            bus.arlen.eq(beats - 1),
            bus.arsize.eq(size_code(self._data_width)),
            bus.arburst.eq(BURST_INCR),
            # Registers only, and none of them changes until the handshake: valid and the
            # burst stay put while the subordinate is not ready.
            bus.arvalid.eq(self.busy & fresh & (ar_left != 0)
                           & (inflight < self._outstanding)),
        ]
        ar_done = bus.arvalid & bus.arready
        with m.If(ar_done):
            m.d.sync += fresh.eq(0)

        expecting = rx_left != 0
        m.d.comb += [
            o.payload.eq(bus.rdata),
            o.valid.eq(bus.rvalid & expecting),
            bus.rready.eq(o.ready & expecting),
        ]
        r_done = bus.rvalid & bus.rready
        burst_end = r_done & bus.rlast

        with m.If(ar_done):
            m.d.sync += [ar_addr.eq(ar_addr + beats), ar_left.eq(ar_left - beats)]
        with m.If(ar_done & ~burst_end):
            m.d.sync += inflight.eq(inflight + 1)
        with m.Elif(burst_end & ~ar_done):
            m.d.sync += inflight.eq(inflight - 1)
        with m.If(r_done):
            m.d.sync += rx_left.eq(rx_left - 1)
            with m.If(bus.rresp != RESP_OKAY):
                m.d.sync += self.error.eq(1)

        m.d.comb += req.ready.eq(~self.busy)
        with m.If(req.valid & req.ready):
            m.d.sync += [self.busy.eq(1), self.done.eq(0), self.error.eq(0),
                         ar_addr.eq(req.payload.addr), ar_left.eq(req.payload.count),
                         rx_left.eq(req.payload.count), fresh.eq(0)]
        with m.Elif(self.busy & (ar_left == 0) & (rx_left == 0) & (inflight == 0)):
            m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        return m
