"""The SDRAM's pins on a board: every signal through an I/O register, the clock forwarded."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from dynfix.hw.sdram_axi import SdramPart, SdramPins

__all__ = ["SdramPhy", "IO_LATENCY"]

#: Cycles the PHY adds to a read's round trip: one output register, one input register
#: (:class:`~dynfix.hw.sdram_axi.SdramAxi`'s ``io_latency``).
IO_LATENCY = 2

#: The controller's outputs and their names in amaranth-boards' ``SDRAMResource`` (whose
#: ``cs``, ``we``, ``ras`` and ``cas`` are active-low pins, inverted by the resource).
_OUTPUTS = (("clk_en", "clk_en", False), ("cs_n", "cs", True), ("ras_n", "ras", True),
            ("cas_n", "cas", True), ("we_n", "we", True), ("ba", "ba", False),
            ("a", "a", False), ("dqm", "dqm", False))


class SdramPhy(wiring.Component):
    """Registers between :class:`~dynfix.hw.sdram_axi.SdramAxi` and an SDR SDRAM.

    Every output (command, address, mask, write data and its enable) passes through one
    register and the read data through another, so the interface's timing is set by the
    I/O cells and the clock's phase alone, not by placement
    (:mod:`dynfix.boards.sdram_clock`); the controller is built with
    ``io_latency=IO_LATENCY``.

    Built with ``port`` (the board's ``sdram`` resource, requested with ``dir="-"``) the
    registers are the ECP5's I/O registers (``io.FFBuffer``) and the SDRAM clock is
    forwarded from the ``clock_domain`` domain (the PLL's phase-shifted output) by a DDR
    output register driving 1 then 0. Without one (simulation) they are ordinary
    registers and the pins are the ``pins`` port; the chip model then runs on the engine's
    clock, taking a command at the edge after it reaches the pins as the shifted clock
    does on the board.

    Members
    -------
    ctrl : In(SdramPins(part))
        The controller's side.
    pins : Out(SdramPins(part))
        Only without ``port``: the chip's side.
    """

    def __init__(self, part: SdramPart, port=None, *, clock_domain: str = "sdram"):
        self._port, self._domain = port, clock_domain
        super().__init__({"ctrl": In(SdramPins(part)),
                          **({"pins": Out(SdramPins(part))} if port is None else {})})

    def elaborate(self, platform):
        m = Module()
        c = self.ctrl
        if self._port is None:
            p = self.pins
            m.d.sync += [getattr(p, name).eq(getattr(c, name)) for name, _, _ in _OUTPUTS]
            m.d.sync += [p.dq_o.eq(c.dq_o), p.dq_oe.eq(c.dq_oe), c.dq_i.eq(p.dq_i)]
            return m
        port = self._port
        for name, pin, low in _OUTPUTS:
            if not hasattr(port, pin):
                continue
            m.submodules[f"{pin}_ff"] = buf = io.FFBuffer("o", getattr(port, pin))
            value = getattr(c, name)
            m.d.comb += buf.o.eq(~value if low else value)
        m.submodules.dq_ff = dq = io.FFBuffer("io", port.dq)
        m.d.comb += [dq.o.eq(c.dq_o), dq.oe.eq(c.dq_oe), c.dq_i.eq(dq.i)]
        m.submodules.clk_ddr = clk = io.DDRBuffer("o", port.clk, o_domain=self._domain)
        m.d.comb += [clk.o[0].eq(1), clk.o[1].eq(0)]
        return m
