"""Write a stream of words to consecutive addresses of the bulk memory over AXI4."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .axi import (BURST_INCR, RESP_OKAY, AxiWriteSignature, BulkRequestLayout, burst_beats,
                  check_master, max_beats, size_code, word_addr_bits)

__all__ = ["BulkWriter"]


class BulkWriter(wiring.Component):
    """Writes the next ``count`` words of ``i`` to word address ``addr`` onwards with INCR
    bursts, and waits for every write response.

    A request is taken when the writer is idle. The words go out in bursts of at most 256
    beats that never cross a 4 KiB boundary (:func:`dynfix.hw.axi.burst_beats`), with every
    byte strobe set. The address side (AW) and the data side (W) split the request into the
    same bursts, each on its own: AXI forbids a manager to hold ``wvalid`` back until
    ``awready`` (a subordinate may wait for write data before it takes the address), so
    neither side waits for the other. Each side has at most ``outstanding`` bursts open
    (started, write response not yet received); a burst's data is taken from ``i`` only
    while ``wready`` is high (``i.ready`` is ``wready`` inside a burst), so words past
    ``count`` stay in the stream. Each burst starts with one idle W cycle, in which its
    length is registered.

    Parameters
    ----------
    addr_width : int
        Byte address bits of the AXI bus.
    data_width : int
        Bus and word width in bits.
    count_bits : int
        Bits of a request's word count.
    outstanding : int
        Most bursts open on each side.
    id_width : int
        AXI ID bits (``awid`` is 0).

    Members
    -------
    req : In(stream.Signature(BulkRequestLayout(word_addr_bits, count_bits)))
        ``addr`` (word address) and ``count`` (words, 0 allowed); ready while idle.
    i : In(stream.Signature(unsigned(data_width)))
        The words to write, in address order.
    bus : Out(AxiWriteSignature(addr_width, data_width, id_width))
    busy : Out(1)
        From the request until the last burst's write response.
    done : Out(1)
        Every burst of the last request was answered; held until the next request is taken.
    error : Out(1)
        A write response of the last request was not OKAY; held until the next request.
    """

    def __init__(self, addr_width: int, data_width: int, count_bits: int, outstanding: int = 2,
                 id_width: int = 1):
        check_master(outstanding, count_bits)
        self._data_width, self._outstanding = data_width, outstanding
        bus = AxiWriteSignature(addr_width, data_width, id_width)
        self._word_bits = word_addr_bits(addr_width, data_width)
        super().__init__({
            "req": In(stream.Signature(BulkRequestLayout(self._word_bits, count_bits))),
            "i": In(stream.Signature(unsigned(data_width))),
            "bus": Out(bus),
            "busy": Out(1), "done": Out(1), "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus, i, req = self.bus, self.i, self.req
        dw, most = self._data_width, self._outstanding
        count_shape = req.payload.count.shape()
        b_done = bus.bvalid & bus.bready

        # Address side: one AW per burst, at most `most` without a response.
        aw_addr = Signal(unsigned(self._word_bits))
        aw_left = Signal(count_shape)                   # words not yet covered by an AW
        aw_open = Signal(range(most + 1))               # AWs sent, response not yet in
        aw_beats = burst_beats(m, aw_addr, aw_left, dw)
        m.d.comb += [
            bus.awid.eq(0),
            bus.awaddr.eq(Cat(Const(0, size_code(dw)), aw_addr)),
            bus.awlen.eq(aw_beats - 1),
            bus.awsize.eq(size_code(dw)),
            bus.awburst.eq(BURST_INCR),
            bus.awvalid.eq(self.busy & (aw_left != 0) & (aw_open < most)),
        ]
        aw_sent = bus.awvalid & bus.awready
        with m.If(aw_sent):
            m.d.sync += [aw_addr.eq(aw_addr + aw_beats), aw_left.eq(aw_left - aw_beats)]
        with m.If(aw_sent & ~b_done):
            m.d.sync += aw_open.eq(aw_open + 1)
        with m.Elif(b_done & ~aw_sent):
            m.d.sync += aw_open.eq(aw_open - 1)

        # Data side: the same bursts, counted down beat by beat.
        w_addr = Signal(unsigned(self._word_bits))
        w_left = Signal(count_shape)                    # words not yet in a started burst
        w_open = Signal(range(most + 1))                # bursts started, response not yet in
        w_beats = Signal(range(max_beats(dw) + 1))      # beats left in the current burst
        next_beats = burst_beats(m, w_addr, w_left, dw)
        in_burst = w_beats != 0
        start = self.busy & ~in_burst & (w_left != 0) & (w_open < most)
        m.d.comb += [
            bus.wdata.eq(i.payload),
            bus.wstrb.eq((1 << (dw // 8)) - 1),
            bus.wlast.eq(w_beats == 1),
            bus.wvalid.eq(in_burst & i.valid),
            i.ready.eq(in_burst & bus.wready),
        ]
        w_sent = bus.wvalid & bus.wready
        with m.If(start):
            m.d.sync += [w_beats.eq(next_beats), w_addr.eq(w_addr + next_beats),
                         w_left.eq(w_left - next_beats)]
        with m.Elif(w_sent):
            m.d.sync += w_beats.eq(w_beats - 1)
        with m.If(start & ~b_done):
            m.d.sync += w_open.eq(w_open + 1)
        with m.Elif(b_done & ~start):
            m.d.sync += w_open.eq(w_open - 1)

        # Responses: one per burst, after its address and its last beat.
        m.d.comb += bus.bready.eq(aw_open != 0)
        with m.If(b_done & (bus.bresp != RESP_OKAY)):
            m.d.sync += self.error.eq(1)

        m.d.comb += req.ready.eq(~self.busy)
        with m.If(req.valid & req.ready):
            m.d.sync += [self.busy.eq(1), self.done.eq(0), self.error.eq(0),
                         aw_addr.eq(req.payload.addr), aw_left.eq(req.payload.count),
                         w_addr.eq(req.payload.addr), w_left.eq(req.payload.count)]
        with m.Elif(self.busy & (aw_left == 0) & (aw_open == 0) & (w_left == 0) & ~in_burst):
            m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        return m
