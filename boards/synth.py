"""Synthesis through the amaranth-boards platform build: yosys and nextpnr from YoWASP.

:func:`synthesize` builds an elaboratable for a board into a bitstream, then reads the
utilization from nextpnr's JSON report (and yosys' cell statistics for flip-flops on iCE40) and
the achieved clock frequency from the report, cross-checked with the "Max frequency for clock"
lines of nextpnr's log. Timing is met when every clock reaches the board's target frequency.
Builds are deterministic: a fixed nextpnr seed, and Amaranth's output has no paths or dates.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dynfix.boards.registry import DEFAULT_ROUTER, Board
from dynfix.errors import DynfixError
from dynfix.hw.fpga_family import FpgaFamily

_FMAX_LINE = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([0-9.]+) MHz\s+"
                        r"\((PASS|FAIL) at ([0-9.]+) MHz\)")


@dataclass
class SynthResult:
    """What one build produced and how it fared."""

    board: str
    device: str
    luts: int
    ffs: int
    dsps: int
    brams: int
    sprams: int
    fmax_mhz: float
    target_mhz: float
    timing_met: bool
    seconds: float
    bitstream: str
    clocks: dict[str, float] = field(default_factory=dict)
    critical_path: str = ""
    available: dict[str, int] = field(default_factory=dict)
    cells: dict[str, int] = field(default_factory=dict)
    #: With the weights in flash (``w_spram``): the image written next to the bitstream.
    flash_image: str = ""
    #: The commands that program the board (run in the bitstream's folder), when known.
    program: list[str] = field(default_factory=list)
    #: The clock the bitstream runs at, MHz: the oscillator's, or the PLL's output.
    clock_mhz: float = 0.0
    #: The clock constraint place-and-route worked to, MHz: ``clock_mhz`` plus the timing
    #: closure's headroom (:class:`~dynfix.boards.closure.ClosurePolicy`); timing is judged
    #: at ``clock_mhz`` (``target_mhz``). 0: not recorded.
    constraint_mhz: float = 0.0
    #: The PLL setting that makes that clock (empty: the oscillator drives the design).
    pll: dict[str, Any] = field(default_factory=dict)
    #: The timing closure's builds (``boards/closure.py``), in order: each one's
    #: ``clock_mhz``, ``fmax_mhz``, ``timing_met`` and ``seconds``; empty for a single
    #: build.
    closure: list[dict[str, Any]] = field(default_factory=list)
    #: With the weights in the board's SDRAM: its clock
    #: (:meth:`~dynfix.boards.sdram_clock.SdramClock.to_dict`: CAS latency, the phase of the
    #: PLL's second output and the window of phases that meet the chip's rules).
    sdram: dict[str, Any] = field(default_factory=dict)
    #: With a Huffman-coded flash image: what its load takes
    #: (:func:`~dynfix.boards.flash_image.load_figures`: payload and coded bytes, their
    #: ratio, the streaming's cycles and time at ``clock_mhz``, and uncoded).
    flash: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("sdram", "flash"):
            if not d[key]:
                del d[key]
        return d

    def _flash_lines(self) -> list[str]:
        """The coded flash image's figures, if any."""
        f = self.flash
        if not f:
            return []
        at = f" ({f['load_ms']:g} ms at {self.clock_mhz:g} MHz)" if f["load_ms"] else ""
        return [f"  flash image Huffman-coded: {f['payload_bytes']:,} -> {f['coded_bytes']:,} "
                f"bytes ({f['ratio']:.2f}x); load {f['load_cycles']:,} cycles{at}, uncoded "
                f"{f['uncoded_load_cycles']:,}"]

    def lines(self) -> list[str]:
        """Human-readable summary."""
        def use(key: str, n: int) -> str:
            avail = self.available.get(key)
            return f"{n}/{avail} ({100 * n / avail:.0f} %)" if avail else str(n)
        verdict = "met" if self.timing_met else "NOT MET"
        return [
            f"board {self.board} ({self.device}), bitstream {self.bitstream}",
            *([f"  clock {self.clock_mhz:g} MHz"
               + (f" (PLL from {self.pll['f_in_mhz']:g} MHz)" if self.pll else "")]
              if self.clock_mhz else []),
            f"  LUTs  {use('luts', self.luts)}",
            f"  FFs   {use('ffs', self.ffs)}",
            f"  DSPs  {use('dsps', self.dsps)}",
            f"  BRAMs {use('brams', self.brams)}",
            *([f"  SPRAM {use('sprams', self.sprams)}"] if "sprams" in self.available else []),
            f"  Fmax  {self.fmax_mhz:.2f} MHz, target {self.target_mhz:g} MHz: timing {verdict}"
            + (f" (placed for {self.constraint_mhz:g} MHz)"
               if self.constraint_mhz > self.target_mhz else ""),
            *([f"  critical path {self.critical_path}"] if self.critical_path else []),
            *(["  timing closure: " + ", ".join(
                f"{s['clock_mhz']:.2f} MHz -> Fmax {s['fmax_mhz']:.2f}"
                f" ({'met' if s['timing_met'] else 'missed'})" for s in self.closure)]
              if len(self.closure) > 1 else []),
            *([f"  SDRAM clock {self.sdram['clock_mhz']:g} MHz, CAS latency "
               f"{self.sdram['cas_latency']}, {self.sdram['phase_deg']:.1f} degrees behind "
               f"the engine's (leads by {self.sdram['lead_ns']:.2f} ns, "
               f"{self.sdram['margin_ns']:.2f} ns to spare each way)"] if self.sdram else []),
            *([f"  flash image {self.flash_image}"] if self.flash_image else []),
            *self._flash_lines(),
            *[f"  program: {cmd}" for cmd in self.program],
            f"  {self.seconds:.0f} s",
        ]


def tool_env(board: Board) -> dict[str, str]:
    """The build environment: the YoWASP tools by absolute path, plus the board's ``env``."""
    env = dict(os.environ)
    bindir = Path(sys.executable).parent
    for var, exe in board.family.tools:
        path = bindir / exe
        if not path.exists():
            found = shutil.which(exe)
            if found is None:
                raise DynfixError(f"{exe} not found next to {sys.executable} or on PATH; "
                                  f"install it with pip install {exe.rsplit('-', 1)[0]}")
            path = Path(found)
        env[var] = str(path)
    env.update(board.env)
    return env


def parse_fmax_log(log: str) -> dict[str, tuple[float, float]]:
    """``{clock: (achieved MHz, constraint MHz)}`` from the last "Max frequency" lines."""
    found = {}
    for name, mhz, _, target in _FMAX_LINE.findall(log):
        found[name] = (float(mhz), float(target))
    return found


def parse_report(report: dict, family: FpgaFamily) -> tuple[dict[str, int], dict[str, int],
                                                            dict[str, float]]:
    """Used and available counts per resource, and achieved MHz per clock, from nextpnr's
    ``--report`` JSON."""
    util = report.get("utilization", {})
    used, avail = {}, {}
    for key, bel in family.bels:
        entry = util.get(bel, {"used": 0, "available": 0})
        used[key], avail[key] = int(entry["used"]), int(entry["available"])
    clocks = {name: float(v["achieved"]) for name, v in report.get("fmax", {}).items()}
    return used, avail, clocks


def critical_path(report: dict) -> str:
    """The slowest clock-to-clock path of nextpnr's report, as first and last cell."""
    worst, worst_ns = None, -1.0
    for cp in report.get("critical_paths", []):
        if "<async>" in (cp.get("from", ""), cp.get("to", "")) or not cp.get("path"):
            continue
        ns = sum(float(seg.get("delay", 0)) for seg in cp["path"])
        if ns > worst_ns:
            worst, worst_ns = cp["path"], ns
    if worst is None:
        return ""
    logic = sum(1 for seg in worst if seg.get("type") == "logic")

    def cell(name: str) -> str:
        return re.split(r"[$]|_SB_|_TRELLIS|_DFF|_LUT", name)[0]
    return (f"{cell(worst[0]['from']['cell'])} -> {cell(worst[-1]['to']['cell'])}: "
            f"{worst_ns:.1f} ns, {logic} logic levels")


def count_ffs(stat: dict, family: FpgaFamily) -> int:
    """Flip-flop cells in ``yosys stat -json`` output (``family.ff_cell*``)."""
    cells = stat.get("design", stat).get("num_cells_by_type", {})
    return sum(int(n) for cell, n in cells.items() if cell.startswith(family.ff_cell))


#: The net of the design's clock (the ``sync`` domain's) as nextpnr names it: the board
#: top's wire, which the flattened netlist keeps (its aliases inside submodules it drops).
CLOCK_NET = "clk"


def prepare(top, board: Board, name: str = "dynfix_top", target_mhz: float | None = None):
    """The amaranth-boards build plan for ``top`` on ``board``, with dynfix's yosys and
    nextpnr options: a fixed seed, the board's router, the JSON report, the family's
    commands after reading the design (``FpgaFamily.yosys_after_read``), and
    ``check -assert`` after synthesis, which turns any netlist damage into a yosys error
    instead of a nextpnr one or a silently wrong bitstream. ``target_mhz``: the clock constraint of
    the design's clock (:data:`CLOCK_NET`) instead of the one nextpnr derives (the
    oscillator's, or the PLL's output frequency); the netlists stay the same."""
    nextpnr_opts = (f"--seed {board.seed} --timing-allow-fail "
                    f"--report {name}.report.json")
    if board.router != DEFAULT_ROUTER:  # unnamed: the plans of its builds stay as they were
        nextpnr_opts += f" --router {board.router}"
    kwargs = dict(nextpnr_opts=nextpnr_opts,
                  script_after_read=board.family.yosys_after_read,
                  script_after_synth=(f"tee -q -o {name}.stat.json stat -json\n"
                                      "check -assert"))
    if board.synth_opts:
        kwargs["synth_opts"] = board.synth_opts
    if target_mhz is not None:
        override, line = board.family.clock_constraint
        kwargs[override] = line.format(net=CLOCK_NET, mhz=f"{target_mhz:.6f}")
    return board.make_platform().prepare(top, name, **kwargs)


def synthesize(top, board: Board, build_dir: str | Path, name: str = "dynfix_top",
               check_timing: bool = True, target_mhz: float | None = None) -> SynthResult:
    """Build ``top`` for ``board`` into ``build_dir``; raise :class:`DynfixError` if a tool
    fails or (with ``check_timing``) if a clock misses ``board.target_mhz``. With
    ``target_mhz`` place-and-route works to that clock constraint instead (above
    ``board.target_mhz``: headroom, :class:`~dynfix.boards.closure.ClosurePolicy`), and a
    build that did not apply it is an error."""
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    env = tool_env(board)
    t0 = time.monotonic()
    plan = prepare(top, board, name, target_mhz)
    try:
        plan.execute_local(str(build_dir), env=env)
    except subprocess.CalledProcessError as e:
        logs = [p for p in (build_dir / f"{name}.tim", build_dir / f"{name}.rpt") if p.is_file()]
        log = _tail(max(logs, key=lambda p: p.stat().st_mtime)) if logs else ""
        raise DynfixError(f"synthesis for {board.name} failed (exit {e.returncode}); see "
                          f"{build_dir}/{name}.rpt and {name}.tim: {log}") from None
    seconds = time.monotonic() - t0
    result = evaluate(build_dir, name, board, seconds)
    if target_mhz is not None:
        check_constraint(build_dir / f"{name}.tim", target_mhz)
    result.constraint_mhz = round(target_mhz if target_mhz is not None else board.target_mhz,
                                  6)
    if check_timing:
        check_result(result)
    return result


def evaluate(build_dir: str | Path, name: str, board: Board, seconds: float = 0.0
             ) -> SynthResult:
    """Read utilization and Fmax of a finished build in ``build_dir``."""
    build_dir = Path(build_dir)
    try:
        report = json.loads((build_dir / f"{name}.report.json").read_text())
        log = (build_dir / f"{name}.tim").read_text()
        stat = json.loads((build_dir / f"{name}.stat.json").read_text())
    except (OSError, ValueError) as e:
        raise DynfixError(f"cannot read the build reports in {build_dir}: {e}") from None
    used, avail, clocks = parse_report(report, board.family)
    for clk, (mhz, _) in parse_fmax_log(log).items():
        if clk in clocks and abs(clocks[clk] - mhz) > 0.01:
            raise DynfixError(f"nextpnr's report ({clocks[clk]:.2f} MHz) and log "
                              f"({mhz:.2f} MHz) disagree on clock {clk}")
        clocks.setdefault(clk, mhz)
    if not clocks:
        raise DynfixError(f"no clock frequency in nextpnr's report for {board.name}: the "
                          f"design has no constrained clock")
    cells = {k: int(v) for k, v in
             stat.get("design", stat).get("num_cells_by_type", {}).items()}
    if "ffs" not in used:
        used["ffs"], avail["ffs"] = count_ffs(stat, board.family), board.ffs
    fmax = min(clocks.values())
    result = SynthResult(
        board=board.name, device=board.device,
        luts=used["luts"], ffs=used["ffs"], dsps=used["dsps"], brams=used["brams"],
        sprams=used.get("sprams", 0), fmax_mhz=round(fmax, 2), target_mhz=board.target_mhz,
        timing_met=fmax >= board.target_mhz, seconds=round(seconds, 1),
        bitstream=str(build_dir / f"{name}.{board.family.bitstream}"), clocks=clocks,
        critical_path=critical_path(report), available=avail,
        cells=cells)
    if not Path(result.bitstream).is_file():
        raise DynfixError(f"synthesis for {board.name} produced no bitstream "
                          f"{result.bitstream}")
    return result


#: How far (a fraction) the clock nextpnr timed may be from the constraint asked for.
CONSTRAINT_TOLERANCE = 1e-3


def check_constraint(log_path: Path, target_mhz: float) -> None:
    """Raise when nextpnr's log (``log_path``) shows no clock timed at ``target_mhz``: the
    constraint on :data:`CLOCK_NET` did not reach the design (a renamed net)."""
    targets = [t for _, t in parse_fmax_log(log_path.read_text()).values()]
    # nextpnr keeps the period in whole delay units and logs two decimals
    if not any(abs(t - target_mhz) <= CONSTRAINT_TOLERANCE * target_mhz for t in targets):
        raise DynfixError(f"nextpnr did not time the design's clock at the requested "
                          f"{target_mhz:.2f} MHz (its clocks were timed at "
                          f"{', '.join(f'{t:.2f}' for t in targets) or 'nothing'} MHz; "
                          f"see {log_path})")


def check_result(result: SynthResult) -> None:
    """Fail loudly when timing is not met: a bitstream that misses timing is not shipped."""
    if not result.timing_met:
        slow = ", ".join(f"{c} {f:.2f} MHz" for c, f in sorted(result.clocks.items()))
        raise DynfixError(f"timing NOT met on {result.board}: {slow} < target "
                          f"{result.target_mhz:g} MHz (bitstream {result.bitstream} is not "
                          f"usable)")


def _tail(path: Path, n: int = 3) -> str:
    if not path.is_file():
        return ""
    lines = [ln for ln in path.read_text(errors="replace").splitlines()
             if "ERROR" in ln or "Error" in ln]
    return " | ".join(lines[-n:])
