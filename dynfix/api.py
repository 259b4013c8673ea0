"""The Python API: every stage of dynfix as a function returning a result dataclass.

This is the one implementation of each stage: the commands (:mod:`dynfix.commands`) parse
their arguments, call these functions and print, and the whole flow
(:mod:`dynfix.workflow`) chains them. Each function takes what the matching command takes (a
model name or path, a bit-width spec, a board name) or the result of the previous stage, so a
notebook can run the flow one step at a time::

    import dynfix
    q = dynfix.quantize("digits", bits="8")                 # QuantizeResult
    g = dynfix.generate(q, output="out/digits-hw")          # GenerateResult
    s = dynfix.simulate(g, q, images=5)                     # SimulateResult
    syn = dynfix.synth(g)                                   # SynthResult (minutes)

User errors raise :class:`dynfix.DynfixError` with a one-line message, as in the CLI.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dynfix.boards.closure import ClosurePolicy, Pll, close_timing
from dynfix.boards.design import (add_flash_image, board_pll, board_top, check_coding,
                                  sdram_pll, top_mhz)
from dynfix.boards.host import BoardClient, open_port
from dynfix.boards.fit import FitResult, check_generated_fits, fit as fit_model
from dynfix.boards.registry import check_router
from dynfix.boards.synth import SynthResult, check_result, synthesize
from dynfix.errors import DynfixError, literal
from dynfix.hw.compiler import compile_model, plan_groups
from dynfix.hw.config import EngineConfig
from dynfix.hw.design import Design
from dynfix.hw.generate import write_outputs
from dynfix.inputs import (DataLike, ModelLike, check_data_fits, engine_config, get_board,
                           load_inputs, load_model, load_spec)
from dynfix.quant.bits import layer_widths, load_overrides
from dynfix.quant.fidelity import (METRICS, Fidelity, agreement, float_logits, output_kind,
                                   outputs, sqnr_db, top1)
from dynfix.quant.float_model import check_input, predict
from dynfix.quant.int_model import IntModel, with_params
from dynfix.quant.ir import Model
from dynfix.quant.lowrank_conv import ConvRankReport, compress_convs, parse_lowrank
from dynfix.quant.lower import lower
from dynfix.quant.onnx import save_onnx
from dynfix.quant.pruning import PruneResult, parse_prune, prune as prune_model
from dynfix.quant.onnx.qonnx import import_qonnx
from dynfix.quant.qspec import QuantOptions, QuantSpec
from dynfix.quant.qspec_io import params_path, save_qspec, spec_to_dict
from dynfix.quant.search import check_calib, method_options, search_model
from dynfix.quant.svd import SvdReport, compress as svd_compress, parse_svd
from dynfix.quant.ternary import TernaryReport, check_mode, ternary_layers
from dynfix.quant.weight_sharing import ShareReport, share_bits
from dynfix.quant.yaml_io import save_yaml
from dynfix.sim import simulate as sim
from dynfix.sim.simulators import choose as choose_simulator

__all__ = ["load_model", "quantize", "fit", "generate", "simulate", "synth", "evaluate",
           "infer", "compress", "QuantizeResult", "GenerateResult", "SimulateResult",
           "EvaluateResult", "CompressResult", "BoardRunResult", "run_board", "SynthResult",
           "FitResult", "get_board"]

Progress = Callable[[str], None]


def _quiet(msg: str) -> None:
    """Default progress callback: say nothing."""


# --- quantize ------------------------------------------------------------------------------

@dataclass
class QuantizeResult:
    """Per-layer fixed-point formats chosen for a model (what ``Q.yaml`` holds)."""

    model: Model = field(repr=False)      # with any adjusted parameters (spec.params)
    spec: QuantSpec
    seconds: float
    path: Path | None = None
    calib_inputs: int = 0
    #: Greedy with additions: the calibration objective reached, and greedy-paper's.
    fidelity: Fidelity | None = None
    paper_fidelity: Fidelity | None = None
    #: Weight sharing (``share``): what it did to each shared layer (storage, SQNR).
    sharing: list[ShareReport] = field(default_factory=list, repr=False)
    #: Ternary weights (``ternary``): what ternarization did to each layer (storage, SQNR).
    ternary: list[TernaryReport] = field(default_factory=list, repr=False)

    def save(self, path: str | Path) -> Path:
        """Write the spec as ``Q.yaml`` (atomically), with its adjusted parameters, if
        any, in ``Q.params.npz`` beside it."""
        save_qspec(self.spec, path)
        self.path = Path(path)
        return self.path

    @property
    def files(self) -> list[Path]:
        """What :meth:`save` wrote."""
        if self.path is None:
            return []
        return [self.path] + ([params_path(self.path)] if self.spec.params else [])

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Integer-model outputs (int64, N x outputs) for float inputs ``x``."""
        return IntModel(self.model, self.spec).logits(x).reshape(len(x), -1)

    def layers(self) -> list[dict[str, Any]]:
        """The per-layer formats and calibration statistics as plain dicts."""
        return spec_to_dict(self.spec)["layers"]


QuantLike = QuantizeResult | QuantSpec | str | Path


def quantize(model: ModelLike, calib: DataLike | None = "digits", bits: str = "8",
             method: str = "greedy", overrides: str | Path | dict | None = None,
             output: str | Path | None = None, progress: Progress = _quiet,
             options: QuantOptions | dict | None = None,
             share: int | str | dict | None = None,
             ternary: str | list[str] | None = None,
             ternary_mode: str = "asymmetric", share_zero: bool = True) -> QuantizeResult:
    """``dynfix quantize``: choose every layer's fixed-point format on calibration inputs.

    ``options``: the greedy search's additions, a :class:`QuantOptions` or a dict of the
    ones to change from the method's defaults (e.g. ``{"refine": False}``).
    ``share``: weight sharing once the formats are chosen (:mod:`dynfix.quant.weight_sharing`),
    index bits for every Conv2d and Linear layer (``4``) or by layer (``{"conv1": 4}``, or
    the text ``"conv1=4,fc=5"``); ``share_zero``: one entry of every codebook is 0, which
    the engine's zero-padded weight words need to store them as ``share``-bit indices
    (False: all ``2**share`` entries free, closer weights; the engine then needs an index
    bit more, or keeps 8-bit weights, where a layer's words are padded).
    ``ternary``: ternary weights once the formats are chosen (:mod:`dynfix.quant.ternary`,
    not with ``share``), in the Conv2d and Linear layers named (a list or ``"conv2,fc"``) or
    ``"all"`` of them but the first and the last; ``ternary_mode`` ``"asymmetric"`` (one
    pair of integer scales per layer) or ``"symmetric"`` (2-bit weights, a power-of-two
    scale per output channel).
    ``method="qonnx"``: the formats of a QONNX file's Quant nodes (:func:`_quantize_qonnx`)."""
    if method == "qonnx":
        if share is not None:
            raise DynfixError("weight sharing is fitted on calibration inputs; it does not "
                              "apply to method qonnx")
        if ternary is not None:
            raise DynfixError("ternary weights are fitted on calibration inputs; they do "
                              "not apply to method qonnx (a trained ternary QONNX model's "
                              "Quant nodes give its weights as they are)")
        return _quantize_qonnx(model, calib, bits, overrides, output, progress, options)
    if calib is None:
        raise DynfixError(f"method {method} searches the formats on calibration inputs, and "
                          f"none were given")
    m = load_model(model)
    if overrides is not None and not isinstance(overrides, dict):
        overrides = load_overrides(overrides)
    if not isinstance(options, QuantOptions):
        options = method_options(method, options)
    layer_widths(m, str(bits), overrides)            # bad widths fail before any work
    if share is not None:
        share_bits(lower(m), share)                  # so do bad sharing requests
    if ternary is not None:
        ternary_layers(lower(m), ternary)            # and bad ternary ones
    check_mode(ternary_mode)
    if not share_zero and share is None:
        raise DynfixError("{share_zero} chooses the codebooks of weight sharing: give "
                          "{share} too", ("share_zero", "share"))
    if share is not None and ternary is not None:
        raise DynfixError("weight sharing and ternary weights cannot be combined; choose one")
    check_data_fits(m, calib, "calibration data", "calib")
    x, _ = load_inputs(calib, split="calib")
    check_calib(m, x)
    t0 = time.perf_counter()
    r = search_model(m, x, str(bits), method, overrides, progress, options, share, ternary,
                     ternary_mode, share_zero)
    result = QuantizeResult(r.model, r.spec, time.perf_counter() - t0, calib_inputs=len(x),
                            fidelity=r.fidelity, paper_fidelity=r.paper_fidelity,
                            sharing=r.sharing, ternary=r.ternary)
    if output is not None:
        result.save(output)
    return result


def _quantize_qonnx(model: ModelLike, calib: DataLike | None, bits: str, overrides, output,
                    progress: Progress, options) -> QuantizeResult:
    """Method qonnx: the spec read off a QONNX file's Quant nodes (no search); when a scale
    is not a power of two or a zero point not 0, the greedy search on its float model (the
    fake quantization folded), which it says in one line."""
    if isinstance(model, Model):
        raise DynfixError("method qonnx reads the Quant nodes of a QONNX .onnx file: pass "
                          "its path, not a loaded model")
    imp = import_qonnx(str(model))
    if imp.spec is None and calib is None:
        raise DynfixError(f"{imp.reason}; the formats must be searched on calibration "
                          f"inputs, and none were given")
    if imp.spec is None:
        progress(f"qonnx: {imp.reason}; fake quantization folded into the float model, "
                 f"searching the formats with greedy")
        return quantize(imp.model, calib, bits, "greedy", overrides, output, progress,
                        options)
    for note in imp.notes:
        progress(f"qonnx: {note}")
    result = QuantizeResult(imp.model, imp.spec, 0.0)
    if output is not None:
        result.save(output)
    return result


def _model_and_spec(quant: QuantLike, model: ModelLike | None) -> tuple[Model, QuantSpec]:
    """The model (with the spec's adjusted parameters, if any) and the spec."""
    if isinstance(quant, QuantizeResult):
        return quant.model, quant.spec
    if model is None:
        raise DynfixError("pass model= together with a quantization spec or Q.yaml path")
    m = load_model(model)
    spec = load_spec(m, quant)
    return with_params(m, spec), spec


# --- fit and generate ----------------------------------------------------------------------

def fit(quant: QuantLike, board: Any = None, *, model: ModelLike | None = None,
        alternatives: int = 0) -> FitResult:
    """``dynfix boards --fit``: the fastest engine for the model that fits ``board`` (the
    default board if omitted), with what stopped a faster one. ``alternatives``: also that
    many runners-up that fit, best first by estimate (``FitResult.alternatives``; what
    ``dynfix sweep --candidates`` builds); the choice is the same."""
    m, spec = _model_and_spec(quant, model)
    return fit_model(m, spec, get_board(board), alternatives)


@dataclass
class GenerateResult(Design):
    """The generated engine: a :class:`~dynfix.hw.design.Design` (Verilog, memory images and
    ``report.json`` in ``folder``, with the model, spec and compiled model behind them) and,
    when it was fitted to a board, the fit."""

    fit: FitResult | None = field(default=None, repr=False)


def generate(quant: QuantLike, output: str | Path, board: Any = None, *,
             config: EngineConfig | dict | str | Path | None = None,
             model: ModelLike | None = None) -> GenerateResult:
    """``dynfix generate``: compile for the engine and write Verilog, hex images, report.

    ``quant`` is a :class:`QuantizeResult` (it carries the model), or a ``QuantSpec`` /
    ``Q.yaml`` path together with ``model=``. The engine is the fastest one that fits
    ``board`` (the default board if omitted, recorded in the report) unless ``config`` (an
    ``EngineConfig``, a dict with k, tn, tm, or an ``engine.yaml`` path) is given.
    """
    m, spec = _model_and_spec(quant, model)
    fitted, board_name = None, None
    if config is None:
        b = get_board(board)
        fitted = fit_model(m, spec, b)
        cfg = EngineConfig(**fitted.chosen.config.choice())
        board_name = b.bundled_name
    else:
        cfg = engine_config(config)
    cm = compile_model(m, spec, cfg)
    rep = write_outputs(cm, m.name, output, board_name, model_files=(m, spec))
    return GenerateResult(Path(output), rep, m, spec, cm, fit=fitted)


# --- simulate ------------------------------------------------------------------------------

@dataclass
class SimulateResult:
    """The generated Verilog run under a simulator, against the bit-exact integer model."""

    outputs: np.ndarray = field(repr=False)          # N x values, what the engine streamed
    expected: np.ndarray = field(repr=False)         # N x values, the integer model's
    cycles: list[int] = field(repr=False)            # per image, the engine's counter
    layer_cycles: list[list[int]] = field(repr=False)  # per image, each layer group's
    labels: np.ndarray | None = field(default=None, repr=False)
    seconds: float = 0.0
    model: str = ""
    #: The harness's full report: the first mismatch localized to a layer and coordinate,
    #: accuracies, MAC utilization, simulator speed (what ``dynfix simulate`` prints).
    details: sim.SimResult | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return len(self.outputs)

    @property
    def mismatches(self) -> int:
        """Images whose hardware outputs differ from the integer model in any value."""
        return int(np.sum(np.any(self.outputs != self.expected, axis=1)))

    @property
    def first_mismatch(self) -> dict | None:
        """Where the first mismatching image first differs (layer, coordinates, values)."""
        return None if self.details is None else self.details.first_mismatch

    @property
    def hw_accuracy(self) -> float | None:
        return _accuracy(self.outputs, self.labels)

    @property
    def int_accuracy(self) -> float | None:
        return _accuracy(self.expected, self.labels)

    @property
    def mean_cycles(self) -> float:
        return float(np.mean(self.cycles)) if self.cycles else 0.0


def _accuracy(scores: np.ndarray, labels: np.ndarray | None) -> float | None:
    """Top-1 accuracy of logits (a single one per input: a binary classifier's)."""
    if labels is None or len(labels) == 0:
        return None
    return float(np.mean(top1(scores) == labels))


def _design(generated: Design | str | Path, quant: QuantLike | None,
            model: ModelLike | None) -> Design:
    """The design to simulate: a :class:`GenerateResult` (or any design) as it is in memory,
    or a generate output folder (its own ``model.yaml`` and ``Q.yaml``), unless ``quant``
    gives the model and spec to score against."""
    design = generated if isinstance(generated, Design) else Design.load(generated)
    if quant is None:
        return design.with_model()
    if design.model is None and model is None:
        design = design.with_model()
    m, spec = _model_and_spec(quant, model if model is not None else design.model)
    if spec is design.spec:
        return design
    return Design(design.folder, design.report, m, spec, compile_model(m, spec, design.config))


def simulate(generated: GenerateResult | str | Path, quant: QuantLike | None = None,
             data: DataLike = "digits", images: int = 20, *, model: ModelLike | None = None,
             simulator: str | None = None, waves: bool = False,
             build_dir: str | Path | None = None, progress: Progress = _quiet
             ) -> SimulateResult:
    """``dynfix simulate``: the first ``images`` inputs of ``data`` through the generated
    Verilog (Icarus, or Verilator; default ``$DYNFIX_SIM``, else Icarus), compared value for
    value with the integer model; the first mismatch is localized to a layer.

    ``generated`` is a :class:`GenerateResult` or a ``dynfix generate`` folder; ``quant``
    (with ``model=`` unless it is a :class:`QuantizeResult`) overrides the spec the design
    was generated with. The simulator builds in ``build_dir`` (default: a temporary folder,
    removed afterwards).
    """
    if not isinstance(images, int) or isinstance(images, bool) or images < 1:
        raise DynfixError(f"images must be a positive integer, got {images!r}")
    simulator = choose_simulator(simulator)
    design = _design(generated, quant, model)
    check_data_fits(design.model, data)
    x, y = load_inputs(data, split="test", labels=False)
    check_input(design.model, x[:1])
    if images > len(x):
        raise DynfixError(f"images={images}: the data has only {len(x)} inputs")
    x, y = x[:images], None if y is None else y[:images]
    t0 = time.perf_counter()
    if build_dir is None:
        with tempfile.TemporaryDirectory(prefix="dynfix-sim-") as tmp:
            run = sim.simulate(design, x, y, tmp, simulator, waves, progress=progress)
    else:
        run = sim.simulate(design, x, y, build_dir, simulator, waves, progress=progress)
    return SimulateResult(run.outputs, run.expected, run.cycles, run.image_layer_cycles, y,
                          time.perf_counter() - t0, design.model.name, run)


# --- synthesize ----------------------------------------------------------------------------

def synth(generated: GenerateResult | str | Path, board: Any = None,
          build_dir: str | Path | None = None, check_timing: bool = True,
          fit_check: bool = True, clock: float | str = "auto",
          closure: ClosurePolicy = ClosurePolicy(), seed: int | None = None,
          flash_coding: str = "none", router: str | None = None) -> SynthResult:
    """``dynfix synth``: the board top around the engine -> bitstream, utilization, Fmax.

    The board defaults to the one the design was generated for (``generate(..., board=)``),
    else the default board. Builds in ``build_dir`` (default: the design folder's
    ``build/``). Raises when the estimate does not fit the board (unless ``fit_check`` is
    false) and when timing is not met at the clock the bitstream runs at (unless
    ``check_timing`` is false). An engine with its weights in SPRAM also gets
    ``weights.flash.bin`` beside the bitstream, and the result names the commands that
    program both (``flash_image``, ``program``).

    ``clock``: ``"auto"`` clocks the design from the board's PLL at the fastest setting that
    meets timing (:func:`~dynfix.boards.closure.close_timing`: several place-and-route runs,
    ``closure`` says how many at most, the margin below Fmax and the headroom each build is
    placed for above its clock); a number of MHz forces the PLL's fastest setting at or below
    it (one build, placed for the headroom above it too); ``"oscillator"`` runs the design at
    the board's oscillator, without a PLL. The result's ``clock_mhz`` is what the bitstream runs
    at, ``pll`` the setting, ``closure`` every build's clock and Fmax.

    ``seed``: nextpnr's placement seed (``--seed``) for every build, instead of the board
    file's (``synth: seed``, 1 in the bundled ones); the Fmax moves by a few MHz from one
    seed to another (``dynfix sweep --seeds``).

    ``router``: nextpnr's router for every build, ``"router1"`` or ``"router2"``, instead of
    the board file's (``synth: router``, router1 by default); router2 finishes placements
    that router1 leaves congested for an hour (``docs/boards.md``, "Routing").

    ``flash_coding``: ``"none"`` writes the flash image as it is (the default);
    ``"huffman"`` Huffman-codes it and builds its decoder into the load (for an engine that
    loads its weights from flash at power-up, not one reading the flash at run time); the
    result's ``flash`` then gives the payload and coded bytes, the ratio and the load's
    cycles at the bitstream's clock (``docs/boards.md``, "Huffman-coded flash images").
    """
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise DynfixError(f"the placement seed is an integer, not {seed!r}")
    check_router(router)
    gen = generated if isinstance(generated, Design) else Design.load(generated)
    folder = gen.folder
    coding = check_coding(gen, flash_coding)
    b = get_board(board if board is not None else gen.board)
    if seed is not None:
        b = replace(b, seed=seed)
    if router is not None:
        b = replace(b, router=router)
    if fit_check:
        check_generated_fits(gen, b, coding)
    out = Path(build_dir) if build_dir is not None else folder / "build"
    top = partial(board_top, gen, b, coding=coding)

    def build(pll: Pll | None, target_mhz: float | None = None) -> SynthResult:
        pll, sdram = sdram_pll(gen, b, pll)
        at = replace(b, target_mhz=pll.f_out) if pll is not None else b
        above = target_mhz is not None and target_mhz > at.target_mhz
        r = synthesize(top(pll), at, out, check_timing=False,
                       target_mhz=target_mhz if above else None)
        r.clock_mhz = pll.f_out if pll is not None else b.clock_mhz
        r.pll = pll.to_dict() if pll is not None else {}
        r.sdram = sdram.to_dict() if sdram is not None else {}
        return r

    if clock == "auto":
        result = close_timing(build, b.family.name, b.clock_mhz, top_mhz(gen, b), closure)
    elif clock == "oscillator":
        result = build(None)
    elif isinstance(clock, (int, float)) and not isinstance(clock, bool) and clock > 0:
        pll = board_pll(b, float(clock))
        result = build(pll, closure.target_mhz(pll.f_out) if pll is not None else None)
    else:
        raise DynfixError(f"the clock is 'auto', 'oscillator' or a frequency in MHz, not "
                          f"{clock!r}")
    add_flash_image(result, gen, out, b, coding)
    if check_timing:
        check_result(result)
    return result


# --- run on a board ------------------------------------------------------------------------

@dataclass
class BoardRunResult:
    """Images run on a programmed board over its UART, each checked against the integer
    model: per image ``index``, ``predicted``, ``label``, ``cycles``, ``bit_exact``,
    ``logits``."""

    images: list[dict] = field(repr=False)
    seconds: float = 0.0

    @property
    def bit_exact(self) -> int:
        return sum(r["bit_exact"] for r in self.images)

    @property
    def accuracy(self) -> float | None:
        if not self.images or self.images[0]["label"] is None:
            return None
        return sum(r["predicted"] == r["label"] for r in self.images) / len(self.images)

    def summary(self) -> dict:
        d = {"images": len(self.images), "bit_exact": self.bit_exact,
             "seconds": round(self.seconds, 2),
             "cycles": self.images[0]["cycles"] if self.images else 0}
        if self.accuracy is not None:
            d["accuracy"] = self.accuracy
        return d


def run_board(port: str, quant: QuantLike | None = None, model: ModelLike = "digits",
              data: DataLike = "digits", images: int | None = None, baud: int = 115200,
              timeout: float = 5.0, design: str | Path | None = None) -> BoardRunResult:
    """``dynfix run-board``: send images to a board running the dynfix bitstream, read back
    logits, class and cycle count, and compare them bit for bit with the integer model.

    ``design`` (the folder ``dynfix generate`` wrote, the bitstream's source) gives the
    model, spec and the compiled engine's host order: an engine that takes the first
    conv's windows (``im2col``) or its input in strips gets its stream in that order, and
    an output that comes back in strips is put back in C, H, W order. Without it, ``quant``
    and ``model`` give the model, and the image goes as it is."""
    if images is not None and images < 1:
        raise DynfixError("{images} must be at least 1", ("images",))
    if design is not None:
        d = Design.load(design).with_model()
        m, spec, cm = d.model, d.spec, d.compiled
    elif quant is None:
        raise DynfixError("run-board needs the generated design folder ({design}) or the "
                          "model's quantization ({quant})", ("design", "quant"))
    else:
        (m, spec), cm = _model_and_spec(quant, model), None
    x, y = load_inputs(data, "test")
    if images is not None:
        x, y = x[:images], None if y is None else y[:images]
    im = IntModel(m, spec)
    _, out_name = plan_groups(m)
    rows, t0 = [], time.monotonic()
    with open_port(port, baud, timeout) as link:
        client = BoardClient(link)
        info = client.connect()
        for i in range(len(x)):
            xq = im.quantize_input(x[i:i + 1])
            stream = sim.host_stream(cm, xq[0]) if cm is not None else xq[0].reshape(-1)
            if info.n_in != stream.size:
                raise DynfixError(
                    f"the board's engine takes {info.n_in} inputs, the data gives "
                    f"{stream.size} per image: another model"
                    + ("" if cm is not None else ", or an engine that takes its input as "
                       "windows or strips (pass its folder: {design})") + "?",
                    () if cm is not None else ("design",))
            ref = np.asarray(im.forward(xq)[out_name]).reshape(-1)
            res = client.infer(stream)
            logits = cm.output_order(res.logits) if cm is not None else res.logits
            rows.append({"index": i, "predicted": res.predicted, "cycles": res.cycles,
                         "label": None if y is None else int(y[i]),
                         "bit_exact": bool(np.array_equal(logits, ref)),
                         "logits": np.asarray(logits).tolist()})
    return BoardRunResult(rows, time.monotonic() - t0)


# --- evaluate, infer, compress -------------------------------------------------------------

@dataclass
class EvaluateResult:
    """How good a model's outputs are on data: the float model's top-1 accuracy, or the
    integer model's under a spec, with its fidelity to the float model.

    ``metric`` names the measure asked for (``dynfix evaluate --metric``): ``accuracy``
    (top-1 against the labels), ``agreement`` (top-1 agreement with the float model) or
    ``sqnr`` (output SQNR against the float model, dB); ``value`` is its value. ``output``
    says whether the model's output is ``classes`` or ``values`` (quant/fidelity.py); the
    top-1 measures are left out (None) for values unless asked for.
    """

    model: str
    mode: str                  # "float" or "quant"
    n: int
    correct: int | None        # top-1 correct against the labels (None: not measured)
    metric: str = "accuracy"
    output: str = "classes"
    agreement: float | None = None   # quant: top-1 agreement with the float model
    sqnr_db: float | None = None     # quant: output SQNR against the float model

    @property
    def accuracy(self) -> float | None:
        if self.correct is None:
            return None
        return self.correct / self.n if self.n else 0.0

    @property
    def value(self) -> float | None:
        return {"accuracy": self.accuracy, "agreement": self.agreement,
                "sqnr": self.sqnr_db}[self.metric]


def infer(model: ModelLike, x: np.ndarray, quant: QuantLike | None = None, raw: bool = False
          ) -> np.ndarray:
    """Outputs for the inputs ``x``: the float model's, or with ``quant`` the integer
    model's, dequantized to float32 (``raw``: the int64 integers)."""
    m = load_model(model)
    if raw and quant is None:
        raise DynfixError("{raw} needs {quant} Q.yaml (raw integers come from the integer "
                          "model)", ("raw", "quant"))
    if quant is None:
        return predict(m, x)
    m, spec = _model_and_spec(quant, m)
    im = IntModel(m, spec)
    q = im.logits(x)
    return m.to_data_output(q if raw else im.dequantize(im.output_name, q).astype(np.float32))


def _metric(metric: str, kind: str, labels: bool, quant: bool) -> str:
    """The measure ``auto`` stands for, and a clear error when the one asked for cannot be
    measured."""
    if metric not in METRICS:
        raise DynfixError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if metric == "auto":
        if kind == "classes":
            metric = "accuracy" if labels or not quant else "agreement"
        elif quant:
            metric = "sqnr"
        else:
            raise DynfixError("the model's output is not classes, so top-1 accuracy does "
                              "not apply; pass {quant} Q.yaml to measure the integer "
                              "model's output SQNR against the float model (or {metric} "
                              "accuracy to compare its argmax with labels anyway)",
                              ("quant", "metric"))
    if metric == "accuracy" and not labels:
        raise DynfixError("top-1 accuracy needs labelled data: a D.npz with arrays x and y, "
                          "or digits (without labels, {quant} Q.yaml measures agreement "
                          "and SQNR against the float model)", ("quant",))
    if metric in ("agreement", "sqnr") and not quant:
        raise DynfixError(f"{{metric}} {metric} compares the integer model with the float "
                          f"model: pass {{quant}} Q.yaml", ("metric", "quant"))
    return metric


def evaluate(model: ModelLike, data: DataLike = "digits", quant: QuantLike | None = None,
             metric: str = "auto") -> EvaluateResult:
    """``dynfix evaluate``: the float model's top-1 accuracy on labelled data, or with
    ``quant`` the integer model's, plus its top-1 agreement and output SQNR against the
    float model (``EvaluateResult``; ``metric`` picks the headline measure)."""
    m = load_model(model)
    x, y = load_inputs(data, split="test", labels=False)
    check_input(m, x[:1])
    kind = output_kind(m)
    metric = _metric(metric, kind, y is not None, quant is not None)
    mode = "quant" if quant is not None else "float"
    if quant is None:
        s = float_logits(m, x)          # before a trailing Softmax / Sigmoid, as top1 reads
        agree = sqnr = None
    else:
        mq, spec = _model_and_spec(quant, m)
        f, s = outputs(m, spec, x, mq)
        agree, sqnr = agreement(f, s), sqnr_db(f, s)
    correct = None
    classes = max(s.shape[1], 2)        # one output: a binary classifier's logit
    if y is not None and (kind == "classes" or metric == "accuracy"):
        if y.min() < 0 or y.max() >= classes:
            if metric == "accuracy":
                raise DynfixError(f"labels range from {y.min()} to {y.max()}, but the model "
                                  f"has {classes} classes")
        else:
            correct = int(np.sum(top1(s) == y))
    return EvaluateResult(m.name, mode, len(x), correct, metric, kind, agree, sqnr)


@dataclass
class CompressResult:
    """A model with low-rank fully connected layers (SVD), low-rank convolutions (fitted on
    calibration responses: :mod:`dynfix.quant.lowrank_conv`) and/or whole channels pruned
    (:mod:`dynfix.quant.pruning`)."""

    model: Model = field(repr=False)
    layers: list[SvdReport]
    params_before: int
    params_after: int
    path: Path | None = None
    conv_layers: list[ConvRankReport] = field(default_factory=list)
    #: conv layers the speed-up's rank selection left as they are -> why
    skipped: dict[str, str] = field(default_factory=dict)
    conv_macs_before: int = 0
    conv_macs_after: int = 0
    macs_before: int = 0
    macs_after: int = 0
    #: the channel pruning, done first (None: none asked for)
    pruning: PruneResult | None = None


def compress(model: ModelLike, svd: dict[str, int] | list[str] | None = None,
             output: str | Path | None = None, *,
             lowrank: dict[str, int] | list[str] | str | None = None,
             speedup: float | None = None, calib: DataLike | None = None,
             lowrank_method: str = "asymmetric",
             prune: dict[str, float] | list[str] | str | None = None,
             prune_target: float | None = None, prune_by: str = "macs",
             prune_rank: str = "response", prune_multiple: int = 1) -> CompressResult:
    """``dynfix compress``: replace Linear layers by rank-limited pairs (``svd``:
    ``{layer: rank}`` or ``["layer=rank", ...]``) and/or conv layers by a k x k conv into
    ``rank`` channels and a 1 x 1 conv (``lowrank``, same forms, or ``"c2=8,c3=16"``), the
    ranks of the other convs chosen for a ``speedup`` of the convs' MACs; the convs are fitted
    on ``calib`` inputs by ``lowrank_method`` (``asymmetric``, ``nonlinear``, ``linear`` or
    the data-blind ``svd``). Before those, whole channels may be pruned: ``prune`` gives
    layers' fractions (``{layer: fraction}``, ``["layer=fraction", ...]`` or ``"c2=0.25"``),
    ``prune_target`` a share of the model's ``prune_by`` (``macs`` or ``weights``) to remove
    with per-layer fractions from a sensitivity sweep; channels ranked by ``prune_rank``
    (``response`` or ``l1``), fitted on ``calib``; every pruned layer's kept channel count
    rounded up to a multiple of ``prune_multiple`` (the engine's ``tm``, so that whole
    output-channel groups go). Written as ``.onnx`` or ``.yaml`` if
    ``output`` is given."""
    out = Path(output) if output is not None else None
    if out is not None and out.suffix.lower() not in (".onnx", ".yaml", ".yml"):
        raise DynfixError(f"{{output}} {literal(repr(str(output)))}: expected an .onnx or "
                          f".yaml file name", ("output",))
    if (svd is None and lowrank is None and speedup is None and prune is None
            and prune_target is None):
        raise DynfixError("nothing to compress: give {svd}, {lowrank} or {speedup} (or "
                          "{prune}, {prune_target})",
                          ("svd", "lowrank", "speedup", "prune", "prune_target"))
    if prune_multiple != 1 and prune is None and prune_target is None:
        raise DynfixError("{prune_multiple} rounds the pruned channel counts: give {prune} "
                          "or {prune_target} too",
                          ("prune_multiple", "prune", "prune_target"))
    m = original = load_model(model)
    pruned = None
    if prune is not None or prune_target is not None:
        if calib is None:
            raise DynfixError("pruning is fitted on calibration inputs: give {calib}",
                              ("calib",))
        check_data_fits(m, calib, "calibration data", "calib")
        x, _ = load_inputs(calib, split="calib")
        fractions = (None if prune is None else prune if isinstance(prune, dict)
                     else parse_prune(prune))
        pruned = prune_model(m, x, fractions, prune_target, prune_by, prune_rank,
                             multiple=prune_multiple)
        m = pruned.model
    svd_ranks = None if svd is None else svd if isinstance(svd, dict) else parse_svd(svd)
    conv_ranks = (None if lowrank is None else lowrank if isinstance(lowrank, dict)
                  else parse_lowrank(lowrank))
    new, conv = m, None
    if conv_ranks or speedup is not None:
        if calib is None:
            raise DynfixError("low-rank convolutions are fitted on calibration inputs: give "
                              "{calib}", ("calib",))
        check_data_fits(m, calib, "calibration data", "calib")
        x, _ = load_inputs(calib, split="calib")
        conv = compress_convs(m, x, conv_ranks, speedup, lowrank_method)
        new = conv.model
    reports = []
    if svd_ranks is not None:
        new, reports = svd_compress(new, svd_ranks)
    if out is not None:
        (save_onnx if out.suffix.lower() == ".onnx" else save_yaml)(new, out)
    before, after = original.summary(), new.summary()
    return CompressResult(new, reports, before["total_params"], after["total_params"], out,
                          conv.layers if conv else [], conv.skipped if conv else {},
                          conv.conv_macs_before if conv else 0,
                          conv.conv_macs_after if conv else 0,
                          before["total_macs"], after["total_macs"], pruned)


def read_report(folder: str | Path) -> dict:
    """``report.json`` of a ``dynfix generate`` folder."""
    path = Path(folder) / "report.json"
    try:
        return json.loads(path.read_text())
    except OSError:
        raise DynfixError(f"{folder} is not a dynfix generate output (no report.json)") \
            from None
    except ValueError as e:
        raise DynfixError(f"{path}: not valid JSON ({e})") from None
