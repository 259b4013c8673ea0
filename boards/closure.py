"""Timing closure: the fastest PLL clock at which a build meets timing.

``dynfix synth`` clocks the design from the board's PLL. Which clock a design reaches is known
only after place-and-route, and a rebuild for another clock does not reach the first build's
Fmax: the PLL's dividers are part of the netlist, and the placement moves with it
(docs/boards.md, "Clocks"). So the closure runs the build as an FPGA engineer would by
hand:

1. a first place-and-route for an ambitious clock (``clock.max_mhz`` in the board's file, by
   default the family's), the PLL set ``headroom`` below it;
2. a rebuild at the PLL's fastest setting under the reported Fmax less a margin: below the
   clock if the build missed, above it if it met with room to spare;
3. and so on from each build's own Fmax, never again at a clock that missed or at or below
   one that met, up to a number of builds; while none has met timing, a few more, each
   further under the last Fmax (the margin doubles with every miss: a full design's Fmax
   can fall with the clock it is placed for); the fastest build that met timing is the
   result (built again last if a later build missed), else the last build, which the
   caller refuses (:func:`~dynfix.boards.synth.check_result`).

Every build is placed and routed for its PLL clock plus ``headroom`` and judged at the PLL
clock: the Fmax of a build scatters around the clock it is placed for, by some percent
either way, so a build asked for a little more than the clock it will run at meets that
clock far more often, and one build does where two were needed (``docs/boards.md``).

Every build's clock, target, Fmax and verdict go into the result's ``closure`` list.
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

    ``margin``: the fraction below a build's Fmax the next clock is chosen at (the rebuild
    places differently, so its Fmax is not the first one's).
    ``headroom``: how much faster than its PLL clock a build is placed and routed for (a
    fraction of the clock): the clock constraint nextpnr works to is ``clock * (1 +
    headroom)``, timing is judged at the clock; 0 places for the clock itself.
    ``builds``: place-and-route runs at most in the search, the first one included (one
    more rebuilds the best if a later one missed).
    ``retries``: builds more while none has met timing.
    ``start_mhz``: the target of the first build (its PLL clock ``headroom`` below), when it
    should not be the board's highest (a previous build of the same design reached some
    Fmax: start at it and save the builds above it); never above the board's highest.
    """

    margin: float = 0.02
    headroom: float = 0.1
    builds: int = 3
    retries: int = 3
    start_mhz: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.margin < 0.5:
            raise DynfixError(f"the closure margin must be in [0, 0.5), not {self.margin}")
        if not 0 <= self.headroom <= 1:
            raise DynfixError(f"the closure headroom must be in [0, 1], not {self.headroom}")
        if self.builds < 1:
            raise DynfixError(f"the closure needs at least one build, not {self.builds}")
        if self.retries < 0:
            raise DynfixError(f"the closure's retries must not be negative, not "
                              f"{self.retries}")
        if self.start_mhz is not None and not self.start_mhz > 0:
            raise DynfixError(f"the closure's first clock must be positive, not "
                              f"{self.start_mhz} MHz")

    def margin_after(self, misses: int) -> float:
        """The margin under a build's Fmax after ``misses`` builds missed timing (doubling
        from the second, at most 0.25)."""
        return min(0.25, self.margin * 2 ** max(0, misses - 1))

    def target_mhz(self, clock_mhz: float) -> float:
        """The clock constraint place-and-route works to for a build clocked at
        ``clock_mhz``."""
        return clock_mhz * (1 + self.headroom)


def next_clock(family: str, f_in: float, missed: Pll, fmax_mhz: float,
               margin: float) -> Pll:
    """The PLL setting to rebuild at after a build at ``missed`` reached ``fmax_mhz``: the
    fastest at or below ``fmax_mhz * (1 - margin)`` and strictly below the missed clock."""
    goal = min(fmax_mhz * (1 - margin), missed.f_out * (1 - 1e-9))
    return fastest_pll(family, f_in, goal)


def close_timing(build: Callable[[Pll, float], SynthResult], family: str, f_in: float,
                 start_mhz: float, policy: ClosurePolicy = ClosurePolicy()) -> SynthResult:
    """Run ``build`` (one place-and-route with the design clocked from the given PLL setting
    and constrained at the given target, MHz, :meth:`ClosurePolicy.target_mhz`; timing judged
    at the setting's output) to find the fastest setting that meets timing: the first at the
    fastest setting at or below ``start_mhz`` (or ``policy.start_mhz`` if lower) less the
    headroom, each next one at the fastest setting under the last build's Fmax less
    ``policy.margin`` (strictly below a clock that missed, above the best one that met; the
    margin doubling with each miss), until no such setting is left or ``policy.builds`` ran
    (``policy.retries`` more while none met). If the best build that met timing is not the
    last one, it is built again (the builds are deterministic), so the build folder holds it.

    Returns that build's result (or, if none met timing, the last one's) with ``clock_mhz``,
    ``pll`` and ``closure`` (every build's clock, target, Fmax, verdict and seconds) filled
    in, its ``seconds`` those of all the builds."""
    if policy.start_mhz is not None:
        start_mhz = min(start_mhz, policy.start_mhz)
    pll = fastest_pll(family, f_in, start_mhz / (1 + policy.headroom))
    steps: list[dict] = []
    best: Pll | None = None

    def run(pll: Pll, **extra) -> SynthResult:
        target = policy.target_mhz(pll.f_out)
        result = build(pll, target)
        steps.append({"clock_mhz": round(pll.f_out, 6), "target_mhz": round(target, 6),
                      "fmax_mhz": result.fmax_mhz, "timing_met": bool(result.timing_met),
                      "seconds": result.seconds, **extra})
        return result

    misses = 0
    while True:
        result = run(pll)
        if result.timing_met and (best is None or pll.f_out > best.f_out):
            best = pll
        misses += not result.timing_met
        if len(steps) >= policy.builds + (policy.retries if best is None else 0):
            break
        nxt = _next(family, f_in, pll, result, policy.margin_after(misses))
        if nxt is None or (best is not None and nxt.f_out <= best.f_out):
            break
        pll = nxt
    if best is not None and best != pll:
        pll = best
        result = run(pll, rebuild=True)
    result.clock_mhz = pll.f_out
    result.pll = result.pll or pll.to_dict()        # the build's own, if it set one
    result.closure = steps
    result.seconds = round(sum(s["seconds"] for s in steps), 1)
    return result


def _next(family: str, f_in: float, pll: Pll, result: SynthResult, margin: float
          ) -> Pll | None:
    """The clock to try after a build at ``pll``: under its Fmax less the margin, strictly
    below ``pll`` if it missed and strictly above if it met; None if there is none."""
    try:
        if not result.timing_met:
            return next_clock(family, f_in, pll, result.fmax_mhz, margin)
        nxt = fastest_pll(family, f_in, result.fmax_mhz * (1 - margin))
    except DynfixError:
        return None                     # below the PLL's slowest output: nothing to try
    return nxt if nxt.f_out > pll.f_out else None
