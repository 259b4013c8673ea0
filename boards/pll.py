"""PLL divider settings for a requested clock, per FPGA family.

The board tops clock the engine from a PLL fed by the board's oscillator. This module finds
the dividers for a requested output frequency within the family's limits, the way the open
toolchains' calculators do (``icepll`` for the iCE40, ``ecppll`` for the ECP5: the same
searches and tie-breaks, so a setting here is the one those tools print), and says which
frequency the PLL then actually reaches.

* **iCE40 ``SB_PLL40_*``** in SIMPLE feedback: ``f_out = f_in * (DIVF + 1) / ((DIVR + 1) *
  2**DIVQ)``, the phase detector ``f_in / (DIVR + 1)`` in 10..133 MHz, the VCO ``f_pfd *
  (DIVF + 1)`` in 533..1066 MHz, the output in 16..275 MHz; ``FILTER_RANGE`` follows the
  phase detector's frequency (iCE40 sysCLOCK PLL Design and Usage Guide).
* **ECP5 ``EHXPLLL``** with CLKOP as feedback: ``f_out = f_in * CLKFB_DIV / CLKI_DIV``, the
  VCO ``f_out * CLKOP_DIV`` in 400..800 MHz, the phase detector ``f_in / CLKI_DIV`` at least
  3.125 MHz; among equally close settings the one whose VCO is nearest 600 MHz. A second
  output CLKOS (an SDRAM clock) runs at CLKOP's frequency, lagging it by a phase set in whole
  VCO cycles (CPHASE) and eighths of one (FPHASE), as ``ecppll`` sets a secondary output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from dynfix.errors import DynfixError

#: iCE40 SB_PLL40 limits in MHz (input, phase detector, VCO, output).
ICE40_IN = (10.0, 133.0)
ICE40_PFD = (10.0, 133.0)
ICE40_VCO = (533.0, 1066.0)
ICE40_OUT = (16.0, 275.0)
#: ECP5 EHXPLLL limits in MHz.
ECP5_IN = (8.0, 400.0)
ECP5_PFD = (3.125, 400.0)
ECP5_VCO = (400.0, 800.0)
ECP5_OUT = (10.0, 400.0)
#: The VCO frequency the ECP5 search prefers among equally good settings.
ECP5_VCO_CENTRE = 600.0


@dataclass(frozen=True)
class Ice40Pll:
    """An ``SB_PLL40_PAD`` / ``SB_PLL40_2F_PAD`` setting in SIMPLE feedback."""

    f_in: float                 # MHz, the oscillator
    divr: int                   # reference divider - 1 (0..15)
    divf: int                   # feedback divider - 1 (0..127)
    divq: int                   # output divider exponent (1..6)

    @property
    def f_pfd(self) -> float:
        return self.f_in / (self.divr + 1)

    @property
    def f_vco(self) -> float:
        return self.f_pfd * (self.divf + 1)

    @property
    def f_out(self) -> float:
        """The frequency the PLL reaches, MHz."""
        return self.f_vco / (1 << self.divq)

    @property
    def filter_range(self) -> int:
        """The loop filter setting for the phase detector's frequency."""
        f = self.f_pfd
        return 1 if f < 17 else 2 if f < 26 else 3 if f < 44 else 4 if f < 66 else \
            5 if f < 101 else 6

    def to_dict(self) -> dict:
        return {"family": "ice40", "f_in_mhz": self.f_in, "f_out_mhz": self.f_out,
                "f_vco_mhz": self.f_vco, "DIVR": self.divr, "DIVF": self.divf,
                "DIVQ": self.divq, "FILTER_RANGE": self.filter_range}


@dataclass(frozen=True)
class Ecp5Pll:
    """An ``EHXPLLL`` setting with CLKOP fed back, and optionally CLKOS: CLKOP's frequency
    lagging it by ``clkos_phase`` degrees of its period (set it with
    ``dataclasses.replace(pll, clkos_phase=...)``)."""

    f_in: float                 # MHz, the oscillator
    clki_div: int               # 1..128
    clkfb_div: int              # 1..80
    clkop_div: int              # 1..128
    clkos_phase: float | None = None    # degrees, 0 <= phase < 360; None: no CLKOS

    def __post_init__(self) -> None:
        ph = self.clkos_phase
        if ph is not None and not 0 <= ph < 360:
            raise DynfixError(f"the CLKOS phase {ph:g} degrees is outside 0 <= phase < 360")

    @property
    def f_out(self) -> float:
        """The frequency the PLL reaches, MHz."""
        return self.f_in / self.clki_div * self.clkfb_div

    @property
    def f_vco(self) -> float:
        return self.f_out * self.clkop_div

    @property
    def clkop_cphase(self) -> int:
        """CLKOP's coarse phase: half a period of the output in VCO cycles, as ``ecppll``
        writes it (the whole cycles below ``CLKOP_DIV / 2``)."""
        return (self.clkop_div - 1) // 2

    def _clkos_steps(self) -> tuple[int, int]:
        """CLKOS's lag behind CLKOP as (whole VCO cycles, eighths of one), as ``ecppll``
        computes it: ``phase / 360 * CLKOS_DIV`` VCO cycles, the fraction truncated to
        eighths (in exact arithmetic, so a phase on a step is not lost to rounding)."""
        if self.clkos_phase is None:
            raise DynfixError("this ECP5 PLL setting has no CLKOS (clkos_phase is None)")
        count = Fraction(self.clkos_phase) * self.clkos_div / 360
        whole = int(count)
        return whole, int((count - whole) * 8)

    @property
    def clkos_div(self) -> int:
        """CLKOS's output divider: CLKOP's, for the same frequency."""
        return self.clkop_div

    @property
    def clkos_cphase(self) -> int:
        """CLKOS's coarse phase in VCO cycles: the whole cycles of its lag plus CLKOP's
        coarse phase (the two outputs' phases count from the same point)."""
        return self._clkos_steps()[0] + self.clkop_cphase

    @property
    def clkos_fphase(self) -> int:
        """CLKOS's fine phase in eighths of a VCO cycle (CLKOP's is 0)."""
        return self._clkos_steps()[1]

    @property
    def clkos_phase_actual(self) -> float:
        """The lag of CLKOS behind CLKOP the dividers reach, in degrees of the output period:
        the requested phase rounded down to an eighth of a VCO cycle."""
        whole, eighths = self._clkos_steps()
        return (whole + eighths / 8) / self.clkos_div * 360

    def to_dict(self) -> dict:
        """The setting for reports; with CLKOS also its dividers and, like ``f_out_mhz``,
        what the PLL reaches: ``clkos_phase_deg`` is :attr:`clkos_phase_actual`."""
        d = {"family": "ecp5", "f_in_mhz": self.f_in, "f_out_mhz": self.f_out,
             "f_vco_mhz": self.f_vco, "CLKI_DIV": self.clki_div,
             "CLKFB_DIV": self.clkfb_div, "CLKOP_DIV": self.clkop_div,
             "CLKOP_CPHASE": self.clkop_cphase}
        if self.clkos_phase is not None:
            d.update(CLKOS_DIV=self.clkos_div, CLKOS_CPHASE=self.clkos_cphase,
                     CLKOS_FPHASE=self.clkos_fphase, clkos_phase_deg=self.clkos_phase_actual)
        return d


def _check(what: str, f: float, limits: tuple[float, float]) -> None:
    if not limits[0] <= f <= limits[1]:
        raise DynfixError(f"{what} {f:g} MHz is outside the PLL's {limits[0]:g}..{limits[1]:g} "
                          f"MHz")


def _ice40_settings(f_in: float):
    """Every SIMPLE-feedback setting within the limits, in DIVR, DIVF, DIVQ order."""
    for divr in range(16):
        pfd = f_in / (divr + 1)
        if not ICE40_PFD[0] <= pfd <= ICE40_PFD[1]:
            continue
        for divf in range(128):
            if ICE40_VCO[0] <= pfd * (divf + 1) <= ICE40_VCO[1]:
                for divq in range(1, 7):
                    yield Ice40Pll(f_in, divr, divf, divq)


def _centred_output_divider(f_in: float, clki: int, fb: int) -> Ecp5Pll | None:
    """The CLKOP divider (1..128) that puts the VCO in range nearest 600 MHz (the smaller
    one of two equally near), or None: every divider of one (CLKI_DIV, CLKFB_DIV) gives
    the same output, so the search takes only this one."""
    f = f_in / clki * fb
    ok = [op for op in {int(ECP5_VCO_CENTRE // f), int(ECP5_VCO_CENTRE // f) + 1,
                        -int(-ECP5_VCO[0] // f), int(ECP5_VCO[1] // f)}
          if 1 <= op <= 128 and ECP5_VCO[0] <= f * op <= ECP5_VCO[1]]
    if not ok:
        return None
    op = min(ok, key=lambda d: (abs(f * d - ECP5_VCO_CENTRE), d))
    return Ecp5Pll(f_in, clki, fb, op)


def _ecp5_settings(f_in: float):
    """Every (CLKI_DIV, CLKFB_DIV) within the limits with its centred CLKOP divider."""
    for clki in range(1, 129):
        if not ECP5_PFD[0] <= f_in / clki <= ECP5_PFD[1]:
            continue
        for fb in range(1, 81):
            p = _centred_output_divider(f_in, clki, fb)
            if p is not None:
                yield p


def _pick(settings, score) -> Ice40Pll | Ecp5Pll | None:
    """The first setting with the lowest ``score`` (a tuple; lower is better)."""
    best, best_score = None, None
    for p in settings:
        sc = score(p)
        if sc is not None and (best is None or sc < best_score):
            best, best_score = p, sc
    return best


def _vco_offset(p) -> float:
    """The ECP5 search's tie-break: the VCO's distance from 600 MHz (none on the iCE40)."""
    return abs(p.f_vco - ECP5_VCO_CENTRE) if isinstance(p, Ecp5Pll) else 0.0


def _settings(family: str, f_in: float):
    if family == "ice40":
        _check("iCE40 PLL input", f_in, ICE40_IN)
        return _ice40_settings(f_in)
    if family == "ecp5":
        _check("ECP5 PLL input", f_in, ECP5_IN)
        return _ecp5_settings(f_in)
    raise DynfixError(f"no PLL calculator for FPGA family {family!r}")


def _out_limits(family: str) -> tuple[float, float]:
    return ICE40_OUT if family == "ice40" else ECP5_OUT


#: How the messages name each family.
FAMILY_NAMES = {"ice40": "iCE40", "ecp5": "ECP5"}


def pll_for(family: str, f_in: float, f_out: float) -> Ice40Pll | Ecp5Pll:
    """The PLL setting of ``family`` ('ice40' or 'ecp5') whose output is nearest ``f_out``,
    as ``icepll -i F_IN -o F_OUT`` (the first found, in DIVR, DIVF, DIVQ order) or
    ``ecppll -i F_IN -o F_OUT`` (among equally near ones, the VCO nearest 600 MHz) choose
    it."""
    settings = _settings(family, f_in)
    name = FAMILY_NAMES[family]
    _check(f"{name} PLL output", f_out, _out_limits(family))
    best = _pick(settings, lambda p: (abs(p.f_out - f_out), _vco_offset(p)))
    if best is None:
        raise DynfixError(f"no {name} PLL setting reaches {f_out:g} MHz from {f_in:g} MHz")
    return best


def ice40_pll(f_in: float, f_out: float) -> Ice40Pll:
    """``pll_for('ice40', ...)``: an SB_PLL40 setting."""
    return pll_for("ice40", f_in, f_out)


def ecp5_pll(f_in: float, f_out: float) -> Ecp5Pll:
    """``pll_for('ecp5', ...)``: an EHXPLLL setting."""
    return pll_for("ecp5", f_in, f_out)


def fastest_pll(family: str, f_in: float, f_max: float) -> Ice40Pll | Ecp5Pll:
    """The setting with the highest output at or below ``f_max`` MHz (what a design that
    meets timing at ``f_max`` may run at), ties broken as :func:`pll_for` does."""
    lo, hi = _out_limits(family)
    best = _pick(_settings(family, f_in),
                 lambda p: (-p.f_out, _vco_offset(p)) if lo <= p.f_out <= min(f_max, hi)
                 else None)
    if best is None:
        raise DynfixError(f"no {FAMILY_NAMES[family]} PLL setting from {f_in:g} MHz runs at "
                          f"or below {f_max:g} MHz (the slowest it gives is {lo:g} MHz)")
    return best


#: Behavioural models of ``SB_PLL40_PAD`` and ``EHXPLLL`` for simulating a board top with
#: its PLL (Icarus Verilog).
SIM_MODEL = Path(__file__).with_name("pll_sim.v")
#: The PLL cells whose models :data:`SIM_MODEL` holds.
SIM_CELLS = ("SB_PLL40_PAD", "EHXPLLL")


def sim_sources(texts: list[str], build_dir: str | Path) -> list[Path]:
    """The cell models a simulator needs for a board design made of the Verilog ``texts``
    (the board top's and the engine's): those of :func:`dynfix.hw.ice40_cells.sim_sources`,
    and with a PLL cell :data:`SIM_MODEL`. yosys's iCE40 library declares ``SB_PLL40_*``
    without behaviour; when both are needed, a copy of it without those modules is written
    to ``build_dir`` and used instead."""
    from dynfix.hw.ice40_cells import cell_model, sim_sources as cell_sources

    sources: list[Path] = []
    for text in texts:
        sources += [p for p in cell_sources(text) if p not in sources]
    if not any(re.search(rf"^\s*{cell}\b", t, re.M) for t in texts for cell in SIM_CELLS):
        return sources
    yosys = cell_model()
    if yosys in sources:
        text = re.sub(r"(\(\* *blackbox *\*\)\s*)?module SB_PLL40_\w+\b.*?endmodule\s*", "",
                      yosys.read_text(), flags=re.S)
        copy = Path(build_dir) / "ice40_cells_sim.v"
        copy.write_text(text)
        sources[sources.index(yosys)] = copy
    return sources + [SIM_MODEL]
