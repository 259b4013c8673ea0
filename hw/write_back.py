"""Write-back of pooled output pixels into the feature-map memory."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import EngineConfig
from .group_step import next_group


class WriteBack(wiring.Component):
    """Stores each pooled result of ``tm`` output channels in the map, channel ``c`` of pixel
    ``p`` at word ``out_base + p * t_out + c // lanes``, lane ``c % lanes``.

    Results arrive group by group (``tm`` channels), pixel by pixel inside a group. When
    ``tm`` divides ``lanes`` a group fills one word at lane offset ``(g * tm) % lanes`` and
    is written in the cycle it arrives. Otherwise a group straddles up to
    ``cfg.wb_words`` words from a lane offset that is a multiple of ``gcd(tm, lanes)``: the
    values are rotated to that offset, the first word is written at once and the rest from a
    shift register, one word per cycle. Lanes of channels outside the group, or at or past
    ``out_c``, are not written (they belong to other groups or pixels). The sequencer keeps
    results at least ``wb_words`` cycles apart (the program's ``gap``).

    Members
    -------
    start : In(1)                   the layer starts: rewind to group 0, pixel 0
    out_base, t_out, out_pix, out_c : In(unsigned)   the layer's program fields
    valid : In(1)                   a pooled result on ``values`` this cycle
    values : In(ArrayLayout(signed(data_bits), tm))
    addr : Out(unsigned(fmap_addr_bits))
    data : Out(ArrayLayout(signed(data_bits), lanes))
    en : Out(lanes)                 per-lane write enables
    """

    def __init__(self, cfg: EngineConfig):
        self._cfg = cfg
        ab, db = cfg.fmap_addr_bits, cfg.dim_bits
        super().__init__({
            "start": In(1),
            "out_base": In(unsigned(ab)), "t_out": In(unsigned(db)),
            "out_pix": In(unsigned(db)), "out_c": In(unsigned(db)),
            "valid": In(1),
            "values": In(data.ArrayLayout(signed(cfg.data_bits), cfg.tm)),
            "addr": Out(unsigned(ab)),
            "data": Out(data.ArrayLayout(signed(cfg.data_bits), cfg.lanes)),
            "en": Out(cfg.lanes),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        n, tm = cfg.lanes, cfg.tm
        ab = cfg.fmap_addr_bits

        addr = Signal(unsigned(ab))     # word of the current pixel's first lane of the group
        word = Signal(unsigned(ab))     # the same word for pixel 0 of the group
        pix = Signal(unsigned(cfg.dim_bits))
        off = Signal(range(max(n, 2)))  # the group's lane offset, a multiple of wb_step

        # The group's last pixel: a flag set one step ahead (out_pix - 2 and out_pix == 1
        # registered on start), not a subtract-and-compare from the program entry into the
        # enables of the address registers.
        before_last = Signal(signed(cfg.dim_bits + 1))    # out_pix - 2
        one_pix = Signal()
        group_end = Signal()                                # pix == out_pix - 1
        with m.If(self.start):
            m.d.sync += [addr.eq(self.out_base), word.eq(self.out_base), pix.eq(0),
                         off.eq(0), before_last.eq(self.out_pix - 2),
                         one_pix.eq(self.out_pix == 1), group_end.eq(self.out_pix == 1)]
        with m.Elif(self.valid):
            with m.If(group_end):
                m.d.sync += [pix.eq(0), group_end.eq(one_pix)]
                nxt, nxt_off = next_group(word, off, tm, n)
                m.d.sync += [word.eq(nxt), addr.eq(nxt), off.eq(nxt_off)]
            with m.Else():
                m.d.sync += [pix.eq(pix + 1), addr.eq(addr + self.t_out),
                             group_end.eq(pix == before_last)]

        if cfg.packed_writeback:
            # One word: lane l holds channel l % tm of the group whose offset covers it.
            m.d.comb += [
                self.addr.eq(addr),
                self.data.as_value().eq(Cat(self.values[lane % tm] for lane in range(n))),
                self.en.eq(Cat((off == lane - lane % tm) & self.valid for lane in range(n))),
            ]
            return m

        # Straddling groups: slot k of the rotated result (wb_words words) holds channel
        # j = k - off of the group, written if 0 <= j < tm and the channel is below out_c.
        g, words = cfg.wb_step, cfg.wb_words
        left = Signal(signed(cfg.dim_bits + 2))      # out_c - (first channel of the group)
        with m.If(self.start):
            m.d.sync += left.eq(self.out_c)
        with m.Elif(self.valid & group_end):
            m.d.sync += left.eq(left - tm)
        keep = Signal(tm)
        m.d.comb += keep.eq(Cat(left > j for j in range(tm)))

        # Plain multiplexer expressions, not an m.Switch: Icarus does not evaluate a process
        # whose inputs never change, which would leave the rotation undefined.
        slots = words * n
        rot = Signal(data.ArrayLayout(signed(cfg.data_bits), slots))
        rot_en = Signal(slots)
        for k in range(slots):
            value, enable = Const(0, signed(cfg.data_bits)), Const(0)
            for r in range(0, n, g):
                if 0 <= k - r < tm:
                    at = off == r
                    value = Mux(at, self.values[k - r], value)
                    enable = Mux(at, keep[k - r], enable)
            m.d.comb += [rot[k].eq(value), rot_en[k].eq(enable)]

        rest = Signal(data.ArrayLayout(signed(cfg.data_bits), slots - n))
        rest_en = Signal(slots - n)
        rest_addr = Signal(unsigned(ab))
        pending = Signal(range(words))
        width = n * cfg.data_bits
        burst = pending != 0
        m.d.comb += [
            self.addr.eq(Mux(self.valid, addr, rest_addr)),
            self.data.as_value().eq(Mux(self.valid, rot.as_value()[:width],
                                        rest.as_value()[:width])),
            self.en.eq(Mux(self.valid, rot_en[:n], Mux(burst, rest_en[:n], 0))),
        ]
        with m.If(self.valid):
            m.d.sync += [rest.as_value().eq(rot.as_value()[width:]),
                         rest_en.eq(rot_en[n:]), rest_addr.eq(addr + 1),
                         pending.eq(words - 1)]
        with m.Elif(burst):
            m.d.sync += [rest.as_value().eq(rest.as_value() >> width),
                         rest_en.eq(rest_en >> n), rest_addr.eq(rest_addr + 1),
                         pending.eq(pending - 1)]
        return m
