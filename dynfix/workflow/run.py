"""``dynfix flow``: quantize -> generate -> simulate -> (synthesize), with reports and plots.

The stages are the API's (:mod:`dynfix.api`); this module chains them. Everything is checked
before any work (model, layers the engine runs, bit widths, board, data), then built in a
temporary folder beside the output folder and renamed into place at the end: a failure,
Ctrl-C or SIGTERM never leaves a half-written output folder behind.

Output folder layout (all paths in the reports are relative to it)::

    quant.yaml              per-layer fixed-point formats (dynfix quantize)
    hw/                     dynfix_engine.v, program/weights/biases .hex, report.json
    report.json, summary.md the flow's results
    plots/                  accuracy_vs_bits.png, sqnr.png, layers.png
    synth/                  with --synth: the board build and its bitstream
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dynfix import api
from dynfix.boards.design import Design, check_coding
from dynfix.boards.flash_image import FlashCoding
from dynfix.boards.registry import Board
from dynfix.errors import DynfixError, literal
from dynfix.fileio import atomic_folder
from dynfix.hw.compiler import plan_groups
from dynfix.inputs import check_data_fits, get_board, load_inputs, load_model
from dynfix.quant.bits import layer_widths
from dynfix.quant.fidelity import agreement, output_kind, outputs, sqnr_db, top1
from dynfix.quant.float_model import check_input
from dynfix.quant.ir import Model
from .names import display_names, model_name, relabel
from .options import DEFAULT_IMAGES, FlowOptions
from .plots import write_plots
from .report import (SWEEP_METRICS, build_report, summary_markdown, summary_table,
                     sweep_metric, write_json)
from .simulator import TITLES, check_choice, choose

MARKER = "report.json"


@dataclass
class Prepared:
    """What the flow checked before any work: the model, the names it shows, the board and
    the data."""

    model: Model
    #: The model's name as shown and reported: its file's name when the graph's name is a
    #: converter's placeholder (names.model_name); quant.yaml keeps the graph's.
    name: str
    #: Every layer's full name -> the short one shown (names.display_names).
    labels: dict[str, str]
    board: Board
    data: str
    calib: str


@dataclass
class FlowResult:
    """What ``dynfix flow`` produced: ``report`` is ``output/report.json``."""

    output: Path
    report: dict = field(repr=False)
    summary: str = field(repr=False)
    quant: Any = field(default=None, repr=False)
    generated: Any = field(default=None, repr=False)
    simulated: Any = field(default=None, repr=False)
    synthesized: Any = field(default=None, repr=False)

    @property
    def mismatches(self) -> int:
        return int(self.report["simulation"]["mismatches"])


class Stages:
    """Progress on stderr: ``[i/n] stage: ...`` lines, sub-steps indented, times at the end."""

    def __init__(self, names: list[str], say: Callable[[str], None]):
        self.names, self.say, self.times = names, say, {}
        self.current = ""

    def start(self, name: str, what: str) -> None:
        self.current, self.t0 = name, time.perf_counter()
        self.say(f"[{self.names.index(name) + 1}/{len(self.names)}] {name}: {what}")

    def note(self, msg: str) -> None:
        self.say(f"      {msg}")

    def done(self, what: str = "") -> None:
        dt = time.perf_counter() - self.t0
        self.times[self.current] = dt
        self.note(f"{what + '; ' if what else ''}{dt:.1f} s")


def default_output(name: str, board: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"flow-{name}-{board}")
    return Path("out") / safe


def check_output(out: Path) -> None:
    """Refuse to replace a folder that is not a previous flow output (or empty)."""
    if out.exists():
        if not out.is_dir():
            raise DynfixError(f"output {str(out)!r} exists and is not a folder")
        if any(out.iterdir()) and not (out / MARKER).is_file():
            raise DynfixError(f"output folder {literal(repr(str(out)))} exists and is not a "
                              f"dynfix flow output; choose another {{output}} or remove it",
                              ("output",))


def prepare(opts: FlowOptions) -> Prepared:
    """Load and check everything before any work."""
    if not isinstance(opts.images, int) or opts.images < 1:
        raise DynfixError(f"{{images}} must be a positive integer, got "
                          f"{literal(repr(opts.images))}", ("images",))
    check_choice(opts.sim)
    if FlashCoding.parse(opts.flash_coding) is not FlashCoding.NONE and not opts.synth:
        raise DynfixError("{flash_coding} is for the synthesized flash image: it needs "
                          "{synth} too", ("flash_coding", "synth"))
    model = load_model(opts.model)
    layer_widths(model, str(opts.bits))
    plan_groups(model)                          # layers the engine cannot run: fail now
    board = get_board(opts.board)
    data = str(opts.data) if opts.data is not None else "digits"
    calib = str(opts.calib) if opts.calib is not None else data
    check_data_fits(model, data)
    check_data_fits(model, calib, "calibration data", "calib")
    x, _ = load_inputs(data, split="test")
    check_input(model, x[:1])
    return Prepared(model, model_name(model.name, opts.model), display_names(model), board,
                    data, calib)


def run_flow(opts: FlowOptions, say: Callable[[str], None] | None = None) -> FlowResult:
    """Run the whole flow into ``opts.output`` (see the module docstring)."""
    say = say or (lambda msg: None)
    p = prepare(opts)
    board = p.board
    out = Path(opts.output) if opts.output is not None else default_output(p.name, board.name)
    check_output(out)
    with atomic_folder(out) as tmp:
        result = _run_stages(opts, p, tmp, say)
    result.output = out
    if result.synthesized is not None:
        result.synthesized.bitstream = str(out / result.report["files"]["bitstream"])
        if "flash_image" in result.report["files"]:
            result.synthesized.flash_image = str(out / result.report["files"]["flash_image"])
    result.generated.folder = out / "hw"
    if not result.report["timing"].get("met", True):
        t = result.report["timing"]
        raise DynfixError(f"timing NOT met on {board.name}: {t['fmax_mhz']:.2f} MHz < "
                          f"target {t['target_mhz']:g} MHz (results in {out}; the bitstream "
                          f"is not usable)")
    return result


def _run_stages(opts: FlowOptions, p: Prepared, tmp: Path, say: Callable[[str], None]
                ) -> FlowResult:
    model, board, data, calib = p.model, p.board, p.data, p.calib
    names = ["quantize", "generate", "simulate"] + (["synthesize"] if opts.synth else []) \
        + ["report"]
    shown = relabel(p.labels)
    # Lower stages (the search, the fit) name layers in full: every line shows them short.
    st = Stages(names, lambda msg: say(shown(msg)))

    st.start("quantize", f"{p.name} at {opts.bits} bits ({opts.method}) on {calib}")
    q = api.quantize(model, calib, opts.bits, opts.method, output=tmp / "quant.yaml",
                     progress=st.note)
    x, y = load_inputs(data, split="test")
    acc = _accuracies(model, q, x, y)
    sweep = _sweep(model, q, opts, calib, x, y, sweep_metric(acc), st.note)
    st.done(_acc_text(acc))

    st.start("generate", f"the fastest engine that fits {board.name}")
    g = api.generate(q, tmp / "hw", board)
    if opts.synth:                              # before the simulation's minutes
        check_coding(Design.load(g.folder), opts.flash_coding,
                     f"the engine generated for {board.name}")
    if g.fit is not None:
        st.note(f"limited by {g.fit.limit}")
    st.done(f"{g.config.summary()}, {g.config.multipliers_text()}, "
            f"{g.cycles_per_image} cycles per image (estimate)")

    images = min(opts.images, len(x))
    sim = choose(opts.sim, g.cycles_per_image, images)
    st.start("simulate", f"{images} images under {TITLES[sim.simulator]}")
    st.note(sim.why())
    st.note(sim.estimate())
    s = api.simulate(g, q, data, images, simulator=sim.simulator, progress=st.note)
    st.done(f"{s.mismatches} mismatches with the integer model")

    syn = None
    if opts.synth:
        st.start("synthesize", f"yosys + nextpnr for {board.name}, timing closure on its "
                               f"PLL (a few builds, minutes each)")
        syn = api.synth(g, board, tmp / "synth", check_timing=False,
                        flash_coding=opts.flash_coding)
        st.done(f"runs at {syn.clock_mhz:g} MHz (Fmax {syn.fmax_mhz:.1f} MHz), "
                f"{syn.luts} LUTs")

    st.start("report", "report.json, summary.md, plots")
    rep = build_report(p.name, p.labels, board, opts, data, q, g, s, syn, acc, sweep,
                       sim.simulator)
    write_json(tmp / "report.json", rep)
    table = summary_table(rep)
    (tmp / "summary.md").write_text(summary_markdown(rep, table))
    write_plots(tmp / "plots", rep)
    st.done()
    return FlowResult(Path(tmp), rep, table, q, g, s, syn)


def _accuracies(model, q, x: np.ndarray, y: np.ndarray | None) -> dict:
    """On the whole test data: float and integer-model top-1 accuracy (None without labels
    or for an output that is not classes), and the integer model's top-1 agreement and
    output SQNR against the float model."""
    kind = output_kind(model)
    f, i = outputs(model, q.spec, x, q.model)
    acc = {"n": int(len(x)), "output": kind, "float": None, "integer": None,
           "agreement": agreement(f, i), "sqnr_db": sqnr_db(f, i)}
    if y is not None and kind == "classes":
        acc.update(float=float(np.mean(top1(f) == y)), integer=float(np.mean(top1(i) == y)))
    return acc


def _acc_text(acc: dict) -> str:
    fid = f"agreement {100 * acc['agreement']:.2f} %, output SQNR {acc['sqnr_db']:.1f} dB"
    if acc["float"] is None:
        why = "no labels" if acc["output"] == "classes" else "output is not classes"
        return f"{why}: accuracy not measured; integer vs float: {fid}"
    return (f"accuracy float {100 * acc['float']:.2f} %, integer {100 * acc['integer']:.2f} % "
            f"on {acc['n']} images; integer vs float: {fid}")


def _sweep(model, q, opts: FlowOptions, calib: str, x, y, metric: str, note) -> list[dict]:
    """The integer model's ``metric`` (:func:`sweep_metric`) per bit width."""
    rows = []
    for bits in dict.fromkeys([*opts.sweep, str(opts.bits)]):
        try:
            r = q if bits == str(opts.bits) else api.quantize(model, calib, bits, opts.method)
        except DynfixError as e:
            note(f"bit-width sweep: {bits} bits skipped ({e})")
            continue
        f, i = outputs(model, r.spec, x, r.model)
        value = {"accuracy": lambda: float(np.mean(top1(i) == y)),
                 "agreement": lambda: agreement(f, i), "sqnr": lambda: sqnr_db(f, i)}[metric]()
        rows.append({"bits": bits, "value": value, "chosen": bits == str(opts.bits)})
    unit = SWEEP_METRICS[metric][1]
    note("bit-width sweep: " + ", ".join(
        f"{r['bits']}b " + (f"{100 * r['value']:.1f} %" if unit == "%" else
                            f"{r['value']:.1f} dB") for r in rows))
    return rows


def _quiet(msg: str) -> None:
    """Default progress callback: say nothing."""


def flow(model: Any = "digits", board: str | None = None, bits: str = "8",
         images: int = DEFAULT_IMAGES, synth: bool = False, output: str | Path | None = None,
         data: str | Path | None = None, calib: str | Path | None = None,
         method: str = "greedy", progress: Callable[[str], None] = _quiet,
         sim: str = "auto", flash_coding: str = "none") -> FlowResult:
    """``dynfix flow``: quantize -> generate -> simulate -> (synthesize), reports and plots
    in ``output`` (default ``out/flow-MODEL-BOARD``). ``sim``: ``auto`` (Verilator for long
    runs when it is installed, else Icarus; see :mod:`.simulator`), ``icarus`` or
    ``verilator``. ``flash_coding``: with ``synth``, how the flash image of an engine that
    loads its weights at power-up is stored (``none``, ``huffman``: as
    :func:`dynfix.api.synth`)."""
    return run_flow(FlowOptions(model=model, board=board, bits=str(bits), images=images,
                                synth=synth, output=output, data=data, calib=calib,
                                method=method, sim=sim, flash_coding=flash_coding), progress)
