"""Timing closure: the fastest PLL clock at which a build meets timing.

``dynfix synth`` clocks the design from the board's PLL. Which clock a design reaches is known
only after place-and-route, and nextpnr's result moves with the clock it is asked for (the
timing-driven placer works hardest on the paths that miss it). So the closure runs the build
as an FPGA engineer would by hand:

1. a first place-and-route at the board's highest clock (``clock.max_mhz`` in its file); if
   that meets timing, done;
2. else the PLL's fastest setting at or below the reported Fmax less a margin, and a rebuild
   at it;
3. a rebuild that misses steps down again from its own Fmax (always strictly below the clock
   it missed), up to a number of builds; the last build is returned whether or not it met
   timing, and the caller refuses a bitstream that did not (:func:`~dynfix.boards.synth.
   check_result`).

Every build's clock, Fmax and verdict go into the result's ``closure`` list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from dynfix.boards.pll import Ecp5Pll, Ice40Pll, fastest_pll
from dynfix.boards.synth import SynthResult
from dynfix.errors import DynfixError

Pll = Ice40Pll | Ecp5Pll


@dataclass(frozen=True)
class ClosurePolicy:
    """How hard the closure tries.

    ``margin``: the fraction below a build's Fmax the next clock is chosen at (placement
    changes with the clock asked for, so the rebuild's Fmax is not the first one's).
    ``builds``: place-and-route runs at most, the first one included.
    """

    margin: float = 0.02
    builds: int = 4

    def __post_init__(self) -> None:
        if not 0 <= self.margin < 0.5:
            raise DynfixError(f"the closure margin must be in [0, 0.5), not {self.margin}")
        if self.builds < 1:
            raise DynfixError(f"the closure needs at least one build, not {self.builds}")


def next_clock(family: str, f_in: float, missed: Pll, fmax_mhz: float,
               margin: float) -> Pll:
    """The PLL setting to rebuild at after a build at ``missed`` reached ``fmax_mhz``: the
    fastest at or below ``fmax_mhz * (1 - margin)`` and strictly below the missed clock."""
    goal = min(fmax_mhz * (1 - margin), missed.f_out * (1 - 1e-9))
    return fastest_pll(family, f_in, goal)


def close_timing(build: Callable[[Pll], SynthResult], family: str, f_in: float,
                 start_mhz: float, policy: ClosurePolicy = ClosurePolicy()) -> SynthResult:
    """Run ``build`` (one place-and-route with the design clocked from the given PLL setting,
    timing judged at that setting's output) until one meets timing or ``policy.builds`` ran;
    the first at the fastest setting at or below ``start_mhz``. Returns the last build's
    result with ``clock_mhz``, ``pll`` and ``closure`` (every build's clock, Fmax, verdict
    and seconds) filled in, its ``seconds`` those of all the builds."""
    pll = fastest_pll(family, f_in, start_mhz)
    steps: list[dict] = []
    while True:
        result = build(pll)
        steps.append({"clock_mhz": round(pll.f_out, 6), "fmax_mhz": result.fmax_mhz,
                      "timing_met": bool(result.timing_met), "seconds": result.seconds})
        if result.timing_met or len(steps) >= policy.builds:
            break
        try:
            pll = next_clock(family, f_in, pll, result.fmax_mhz, policy.margin)
        except DynfixError:
            break                       # below the PLL's slowest output: nothing to step to
    result.clock_mhz = pll.f_out
    result.pll = pll.to_dict()
    result.closure = steps
    result.seconds = round(sum(s["seconds"] for s in steps), 1)
    return result
