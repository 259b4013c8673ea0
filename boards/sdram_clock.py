"""The SDRAM's clock on a board: its phase against the engine's clock, from a timing budget.

The board top (:class:`~dynfix.boards.sdram_phy.SdramPhy`) registers every SDRAM pin in the
FPGA's I/O cells and forwards the SDRAM clock from a second PLL output at the engine's
frequency, shifted in phase. The controller (:class:`~dynfix.hw.sdram_axi.SdramAxi`,
``io_latency=2``) expects the chip to take a command at the first SDRAM clock edge after
it reaches the pins, and takes read data from the input registers at a fixed cycle. Both
hold only for some shifts: the forwarded clock's edge must come late enough after the
command changes (the chip's hold time) and early enough before the next change (its
setup), and the read data it launches, ``t_ac`` after an edge, must reach the FPGA's input
registers in time for their edge and stay until it has passed.

With the SDRAM clock's rising edge at the chip *leading* the outputs launched by the same
engine clock edge by ``L`` ns (as seen at the chip), period ``T``:

=====================  ==========================================================
command setup          ``L <= T - t_is - skew``
command hold           ``L >= t_ih + skew``
read data setup        ``L >= t_co + 2 board + t_ac - T + t_su``
read data hold         ``L <= t_co_min + t_oh - t_h``
=====================  ==========================================================

:func:`sdram_clock` takes the middle of that window. The FPGA's figures
(:class:`IoTiming`, :data:`ECP5_IO`) are assumptions read from the family's data sheet for
registered I/O, not measurements of a board; a board with a longer trace or a slower speed
grade is answered by changing them, and the window shows how much room there is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dynfix.errors import DynfixError
from dynfix.hw.sdram_axi import SdramPart

__all__ = ["IoTiming", "ECP5_IO", "SdramClock", "sdram_clock", "sdram_max_hz", "MIN_MARGIN"]


@dataclass(frozen=True)
class IoTiming:
    """The FPGA and board side of an SDRAM interface, ns."""
    t_co: float         # engine clock edge to pad through an output register, at most
    t_co_min: float     # the same, at least
    t_su: float         # pad to input register setup
    t_h: float          # and hold
    skew: float         # between the forwarded clock and the other outputs at the pads
    board: float        # trace delay between FPGA and chip, each way


#: Assumed ECP5 figures (speed grade 6, LVCMOS33 registered I/O, a short trace).
ECP5_IO = IoTiming(t_co=5.0, t_co_min=2.5, t_su=0.5, t_h=1.0, skew=0.5, board=0.3)

#: The least room (ns, each side of the chosen shift) a clock must leave to be used.
MIN_MARGIN = 0.5


@dataclass(frozen=True)
class SdramClock:
    """The SDRAM clock at one engine clock: CAS latency, the window of leads that meet
    every rule, and the shift chosen (the PLL's second output lags the engine's clock by
    ``phase_deg``, which makes it lead by ``lead_ns``)."""
    clk_hz: float
    cas: int
    lead_lo_ns: float
    lead_hi_ns: float

    @property
    def period_ns(self) -> float:
        return 1e9 / self.clk_hz

    @property
    def lead_ns(self) -> float:
        return (self.lead_lo_ns + self.lead_hi_ns) / 2

    @property
    def margin_ns(self) -> float:
        """Room on either side of the chosen lead."""
        return (self.lead_hi_ns - self.lead_lo_ns) / 2

    @property
    def phase_deg(self) -> float:
        """The PLL's second output's lag behind its first, degrees (0 <= phase < 360)."""
        return (360.0 - 360.0 * self.lead_ns / self.period_ns) % 360.0

    def to_dict(self) -> dict:
        return {"clock_mhz": round(self.clk_hz / 1e6, 6), "cas_latency": self.cas,
                "lead_window_ns": [round(self.lead_lo_ns, 3), round(self.lead_hi_ns, 3)],
                "lead_ns": round(self.lead_ns, 3), "margin_ns": round(self.margin_ns, 3),
                "phase_deg": round(self.phase_deg, 3)}


def _window(part: SdramPart, clk_hz: float, io: IoTiming) -> SdramClock:
    cas = part.cas_at(clk_hz)
    t = 1e9 / clk_hz
    lo = max(part.t_ih + io.skew, io.t_co + 2 * io.board + part.t_ac(cas) - t + io.t_su)
    hi = min(t - part.t_is - io.skew, io.t_co_min + part.t_oh - io.t_h)
    return SdramClock(clk_hz, cas, lo, hi)


def sdram_clock(part: SdramPart, clk_hz: float, io: IoTiming = ECP5_IO) -> SdramClock:
    """The SDRAM clock for an engine clocked at ``clk_hz``.

    Raises
    ------
    DynfixError
        The part does not run that fast, or no shift leaves :data:`MIN_MARGIN` on either
        side (one sentence naming the highest clock that works, :func:`sdram_max_hz`).
    """
    try:
        clock = _window(part, clk_hz, io)
    except ValueError as e:
        raise DynfixError(f"{e}: clock the engine at most {sdram_max_hz(part, io) / 1e6:.1f} "
                          f"MHz") from None
    if clock.margin_ns < MIN_MARGIN:
        raise DynfixError(f"at {clk_hz / 1e6:g} MHz no SDRAM clock phase meets the "
                          f"{part.name}'s setup and hold times with {MIN_MARGIN} ns to spare; "
                          f"clock the engine at most {sdram_max_hz(part, io) / 1e6:.1f} MHz")
    return clock


def sdram_max_hz(part: SdramPart, io: IoTiming = ECP5_IO) -> float:
    """The highest engine clock (to 0.1 MHz) at which :func:`sdram_clock` finds a phase."""
    def fits(hz: float) -> bool:
        try:
            return _window(part, hz, io).margin_ns >= MIN_MARGIN
        except ValueError:
            return False
    best = 0.0
    for tenth in range(math.floor(1e4 / part.t_ck3), 0, -1):
        if fits(tenth * 1e5):
            best = tenth * 1e5
            break
    return best
