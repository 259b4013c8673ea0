"""A clock domain driven by the FPGA's PLL, held in reset until the PLL locks."""

from __future__ import annotations

from amaranth import ClockSignal, Const, Instance, Module
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.lib.wiring import In, Out

from dynfix.boards.pll import Ecp5Pll, Ice40Pll

__all__ = ["PllClock"]


class PllClock(wiring.Component):
    """Drives the clock of ``domain`` (which the parent defines) from the family's PLL cell at
    the setting ``pll`` (``SB_PLL40_PAD`` on the iCE40, ``EHXPLLL`` with CLKOP fed back on the
    ECP5), its reset held by a :class:`~amaranth.lib.cdc.ResetSynchronizer` until the PLL's
    ``LOCK`` rises (and released synchronously to the new clock).

    Parameters
    ----------
    pll : Ice40Pll or Ecp5Pll
        The divider setting (:mod:`dynfix.boards.pll`).
    pad : the oscillator's pin as ``platform.request(..., dir="-")`` gives it, or None
        Built for a board: the oscillator comes from this pin (on the iCE40 straight into
        the PLL's pad input, which must not be buffered; on the ECP5 through an input
        buffer). None (simulation): from the ``osc`` port.
    domain : str
        The clock domain driven.
    secondary : str
        The clock domain CLKOS drives when ``pll`` is an :class:`Ecp5Pll` with
        ``clkos_phase`` set (CLKOP's frequency, lagging it by that phase: an SDRAM's clock);
        the parent defines it, reset-less. Unused otherwise.

    Members
    -------
    osc : In(1)
        The oscillator, when built without a pad.
    lock : Out(1)
        The PLL's lock output.
    """

    def __init__(self, pll: Ice40Pll | Ecp5Pll, pad=None, domain: str = "sync",
                 secondary: str = "sdram"):
        self._pll = pll
        self._pad = pad
        self._domain = domain
        self._secondary = secondary
        super().__init__({"osc": In(1), "lock": Out(1)})

    def elaborate(self, platform):
        m = Module()
        clk = ClockSignal(self._domain)
        p = self._pll
        if isinstance(p, Ice40Pll):
            source = ({"io_PACKAGEPIN": self._pad.io} if self._pad is not None
                      else {"i_PACKAGEPIN": self.osc})
            m.submodules.pll = Instance(
                "SB_PLL40_PAD", p_FEEDBACK_PATH="SIMPLE", p_DIVR=p.divr, p_DIVF=p.divf,
                p_DIVQ=p.divq, p_FILTER_RANGE=p.filter_range, **source,
                i_RESETB=Const(1), i_BYPASS=Const(0), o_PLLOUTGLOBAL=clk, o_LOCK=self.lock)
        else:
            if self._pad is not None:
                m.submodules.osc_buf = osc_buf = io.Buffer("i", self._pad)
                clki = osc_buf.i
            else:
                clki = self.osc
            clkos = {}
            if p.clkos_phase is not None:
                # Only with CLKOS, so a design without one keeps its Verilog unchanged.
                clkos = dict(
                    p_CLKOS_ENABLE="ENABLED", p_CLKOS_DIV=p.clkos_div,
                    p_CLKOS_CPHASE=p.clkos_cphase, p_CLKOS_FPHASE=p.clkos_fphase,
                    p_OUTDIVIDER_MUXB="DIVB", a_FREQUENCY_PIN_CLKOS=f"{p.f_out:.6f}",
                    i_ENCLKOS=Const(0), o_CLKOS=ClockSignal(self._secondary))
            m.submodules.pll = Instance(
                "EHXPLLL", p_CLKI_DIV=p.clki_div, p_CLKFB_DIV=p.clkfb_div,
                p_CLKOP_DIV=p.clkop_div, p_CLKOP_CPHASE=p.clkop_cphase, p_CLKOP_FPHASE=0,
                p_CLKOP_ENABLE="ENABLED", p_FEEDBK_PATH="CLKOP", p_PLLRST_ENA="DISABLED",
                p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
                a_FREQUENCY_PIN_CLKI=f"{p.f_in:g}", a_FREQUENCY_PIN_CLKOP=f"{p.f_out:.6f}",
                i_CLKI=clki, i_CLKFB=clk, o_CLKOP=clk, o_LOCK=self.lock,
                i_RST=Const(0), i_STDBY=Const(0), i_PHASESEL0=Const(0),
                i_PHASESEL1=Const(0), i_PHASEDIR=Const(1), i_PHASESTEP=Const(1),
                i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0), i_ENCLKOP=Const(0),
                **clkos)
        # nextpnr derives the PLL output's clock constraint from the oscillator's and the
        # dividers, on both families (the ECP5's FREQUENCY_PIN attributes are for other
        # tools).
        m.submodules.reset_sync = ResetSynchronizer(~self.lock, domain=self._domain)
        return m
