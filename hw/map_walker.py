"""Walk a feature map in channel order (C, H, W), as the host streams it."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out


class MapWalker(wiring.Component):
    """Address and lane of each value of a ``C x pixels`` map in C, H, W order.

    The map is pixel-major with ``words`` words per pixel: channel ``c`` of pixel ``p`` is
    lane ``c % lanes`` of word ``base + p * words + c // lanes``. The walker counts pixels
    inside channels and adds ``words`` per pixel (no multipliers). The end flags are
    registers, set one step ahead (the last channel and pixel indices are registered on
    ``start``), so ``last`` is an AND of two flip-flops: the end tests were the iCE40
    engine's critical path, into the controller's state and the map address.

    Members
    -------
    base, words, channels, pixels : In(unsigned)   sampled on ``start``
    start : In(1)        pulse: restart at channel 0, pixel 0
    step : In(1)         advance to the next value
    active : Out(1)      between ``start`` and the step past the last value
    addr : Out(unsigned(addr_bits))
    lane : Out(unsigned) lane index of the current value
    last : Out(1)        the current value is the last one
    """

    def __init__(self, addr_bits: int, dim_bits: int, lanes: int):
        self._lanes = lanes
        super().__init__({
            "base": In(unsigned(addr_bits)), "words": In(unsigned(dim_bits)),
            "channels": In(unsigned(dim_bits)), "pixels": In(unsigned(dim_bits)),
            "start": In(1), "step": In(1),
            "active": Out(1), "addr": Out(unsigned(addr_bits)),
            "lane": Out(unsigned(max(1, (lanes - 1).bit_length()))), "last": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        chan = Signal.like(self.channels)
        pix = Signal.like(self.pixels)
        chan_last = Signal.like(self.channels)
        pix_last = Signal.like(self.pixels)
        one_pix = Signal()                      # pixels == 1
        pix_end = Signal()                      # pix == pix_last, kept as a register
        chan_end = Signal()                     # chan == chan_last, kept as a register
        word_base = Signal.like(self.addr)      # base + c // lanes
        m.d.comb += self.last.eq(pix_end & chan_end)

        with m.If(self.start):
            m.d.sync += [self.active.eq(1), chan.eq(0), pix.eq(0), self.lane.eq(0),
                         word_base.eq(self.base), self.addr.eq(self.base),
                         chan_last.eq(self.channels - 1), pix_last.eq(self.pixels - 1),
                         one_pix.eq(self.pixels == 1), pix_end.eq(self.pixels == 1),
                         chan_end.eq(self.channels == 1)]
        with m.Elif(self.step & self.active):
            with m.If(self.last):
                m.d.sync += self.active.eq(0)
            with m.Elif(pix_end):
                m.d.sync += [pix.eq(0), chan.eq(chan + 1), pix_end.eq(one_pix),
                             chan_end.eq(chan + 1 == chan_last)]
                with m.If(self.lane == self._lanes - 1):
                    m.d.sync += [self.lane.eq(0), word_base.eq(word_base + 1),
                                 self.addr.eq(word_base + 1)]
                with m.Else():
                    m.d.sync += [self.lane.eq(self.lane + 1), self.addr.eq(word_base)]
            with m.Else():
                m.d.sync += [pix.eq(pix + 1), self.addr.eq(self.addr + self.words),
                             pix_end.eq(pix + 1 == pix_last)]
        return m
