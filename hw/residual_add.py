"""The residual-add stage: a group's requantized results plus the shortcut map, requantized
again (an Add fused into the Conv/Linear group that produces one of its inputs)."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .config import EngineConfig
from .requantizer import Requantizer
from . import timing


class ResidualAdd(wiring.Component):
    """``min(max(shift_round((a << sa) + (b << sb), shift), lo), hi)`` per lane, bit-exact to
    :func:`dynfix.quant.int_model.add_sum` then ``narrow`` and the Add's ReLU / Clip
    (``docs/arithmetic.md``, "Add"). ``en = 0`` reads ``b`` as 0: with ``sa = 0``,
    ``shift = 0`` and ``[lo, hi] = [qmin, qmax]`` the stage passes ``a`` through unchanged
    (groups without an Add).

    One register for the aligned sum (only the coarser operand is shifted, left, so the sum
    is exact in ``cfg.sum_bits`` bits), then a :class:`Requantizer` per lane.

    Members
    -------
    a, b : In(ArrayLayout(signed(data_bits), tm))   the results and the shortcut values
    en : In(1)                       use ``b`` (the group has an Add)
    sa, sb : In(unsigned(align_bits))   alignment shifts
    shift : In(signed(add_shift_bits))  the Add's data shift
    lo, hi : In(signed(data_bits))   clamp bounds, lo <= hi
    even : In(1)                     round the Add's data shift half to even (only with
                                     ``cfg.round_even``; 0: half up)
    o : Out(ArrayLayout(signed(data_bits), tm))
    """

    latency = timing.RESIDUAL_ADD

    def __init__(self, cfg: EngineConfig):
        self._cfg = cfg
        lanes = data.ArrayLayout(signed(cfg.data_bits), cfg.tm)
        super().__init__({
            "a": In(lanes), "b": In(lanes), "en": In(1),
            "sa": In(unsigned(cfg.align_bits)), "sb": In(unsigned(cfg.align_bits)),
            "shift": In(signed(cfg.add_shift_bits)),
            "lo": In(signed(cfg.data_bits)), "hi": In(signed(cfg.data_bits)),
            **({"even": In(1)} if cfg.round_even else {}),
            "o": Out(lanes),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        for j in range(cfg.tm):
            s = Signal(signed(cfg.sum_bits), name=f"sum{j}")
            b = Mux(self.en, self.b[j], 0)
            m.d.sync += s.eq((self.a[j] << self.sa) + (b << self.sb))
            rq = m.submodules[f"rq{j}"] = Requantizer(cfg.sum_bits, cfg.data_bits,
                                                      cfg.add_shift_bits,
                                                      even=bool(cfg.round_even))
            m.d.comb += [rq.acc.eq(s), rq.shift.eq(self.shift), rq.lo.eq(self.lo),
                         rq.hi.eq(self.hi), self.o[j].eq(rq.o)]
            if cfg.round_even:
                m.d.comb += rq.even.eq(self.even)
        return m
