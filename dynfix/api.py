"""The Python API: the CLI's stages as functions returning result dataclasses.

Each function takes what the matching command takes (a model name or path, a bit-width spec,
a board name) or the result of the previous stage, so a notebook can run the flow one step at
a time::

    import dynfix
    q = dynfix.quantize("digits", bits="8")                 # QuantizeResult
    g = dynfix.generate(q, output="out/digits-hw")          # GenerateResult
    s = dynfix.simulate(g, q, images=5)                     # SimulateResult
    r = dynfix.flow("digits", images=5)                     # FlowResult (everything)

User errors raise :class:`dynfix.DynfixError` with a one-line message, as in the CLI.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dynfix.errors import DynfixError
from dynfix.quant.ir import Model
from dynfix.quant.qspec import QuantSpec

Progress = Callable[[str], None]
ModelLike = str | Path | Model


def _quiet(msg: str) -> None:
    """Default progress callback: say nothing."""


def load_model(model: ModelLike) -> Model:
    """An ``.onnx`` or ``.yaml`` path, a bundled name (``digits``) or a loaded model."""
    if isinstance(model, Model):
        return model
    from dynfix.quant.load import load_model as _load
    return _load(str(model))


def load_inputs(data: str | Path | np.ndarray, split: str = "test", labels: bool = False
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """``digits`` (its ``split``), an ``X.npy``/``D.npz`` path, or an array of inputs."""
    if isinstance(data, np.ndarray):
        return data.astype(np.float32), None
    from dynfix.quant.datasets import load_data
    return load_data(str(data), split=split, need_labels=labels)


def check_data_fits(model: Model, data: str | Path | np.ndarray, what: str = "data") -> None:
    """Fail early, with a hint, when the bundled digits images do not fit ``model``."""
    if isinstance(data, str) and data == "digits" and tuple(model.input_shape) != (1, 8, 8):
        shape = "x".join(map(str, model.input_shape))
        raise DynfixError(f"model {model.name!r} takes {shape} inputs but the digits images "
                          f"are 1x8x8: pass your own {what} (--data D.npz with arrays x, y)")


@dataclass
class QuantizeResult:
    """Per-layer fixed-point formats chosen for a model (what ``Q.yaml`` holds)."""

    model: Model = field(repr=False)
    spec: QuantSpec
    seconds: float
    path: Path | None = None

    def save(self, path: str | Path) -> Path:
        """Write the spec as ``Q.yaml`` (atomically)."""
        from dynfix.quant.qspec_io import save_qspec
        save_qspec(self.spec, path)
        self.path = Path(path)
        return self.path

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Integer-model outputs (int64, N x outputs) for float inputs ``x``."""
        from dynfix.quant.int_model import IntModel
        return IntModel(self.model, self.spec).logits(x).reshape(len(x), -1)

    def layers(self) -> list[dict[str, Any]]:
        """The per-layer formats and calibration statistics as plain dicts."""
        from dynfix.quant.qspec_io import spec_to_dict
        return spec_to_dict(self.spec)["layers"]


def quantize(model: ModelLike, calib: str | Path | np.ndarray = "digits", bits: str = "8",
             method: str = "greedy", overrides: str | Path | dict | None = None,
             output: str | Path | None = None, progress: Progress = _quiet
             ) -> QuantizeResult:
    """``dynfix quantize``: choose every layer's fixed-point format on calibration inputs."""
    from dynfix.quant.bits import layer_widths, load_overrides
    from dynfix.quant.search import check_calib, search

    m = load_model(model)
    if overrides is not None and not isinstance(overrides, dict):
        overrides = load_overrides(overrides)
    layer_widths(m, str(bits), overrides)            # bad widths fail before any work
    check_data_fits(m, calib, "calibration data")
    x, _ = load_inputs(calib, split="calib")
    check_calib(m, x)
    t0 = time.perf_counter()
    spec = search(m, x, str(bits), method, overrides, progress)
    result = QuantizeResult(m, spec, time.perf_counter() - t0)
    if output is not None:
        result.save(output)
    return result


def _spec_for(model: Model, quant: QuantizeResult | QuantSpec | str | Path) -> QuantSpec:
    if isinstance(quant, QuantizeResult):
        return quant.spec
    if isinstance(quant, QuantSpec):
        return quant
    from dynfix.quant.qspec_io import load_qspec
    return load_qspec(str(quant), model)


@dataclass
class GenerateResult:
    """The generated engine: Verilog, memory images and ``report.json`` in ``folder``."""

    folder: Path
    report: dict = field(repr=False)
    config: Any                                     # the fitted EngineConfig
    compiled: Any = field(default=None, repr=False)
    fit: Any = field(default=None, repr=False)      # boards.fit.FitResult, when fitted

    @property
    def verilog(self) -> Path:
        return self.folder / f"{self.report['top']}.v"

    @property
    def cycles_per_image(self) -> int:
        """Cycle-model estimate: compute plus streaming the image in and the outputs out."""
        return int(self.report["estimate"]["cycles_per_image"])

    @property
    def multipliers(self) -> int:
        return int(self.report["engine"]["multipliers"])


def get_board(board: Any = None):
    """A :class:`~dynfix.boards.registry.Board`: by name, board file path, or as is."""
    from dynfix.boards.registry import Board, get_board as _get
    return board if isinstance(board, Board) else _get(None if board is None else str(board))


def engine_config(model: Model, spec: QuantSpec, board: Any = None):
    """The fastest engine for ``model`` that fits ``board`` (``dynfix boards --fit``).

    Returns the parallelism (an ``EngineConfig`` with k, tn, tm; widths and depths are
    fitted by the compiler) and the fit result (what limited a faster engine).
    """
    from dynfix.boards.fit import fit
    from dynfix.hw.config import EngineConfig
    result = fit(model, spec, get_board(board))
    c = result.chosen.config
    return EngineConfig(k=c.k, tn=c.tn, tm=c.tm), result


def _model_and_spec(quant: QuantizeResult | QuantSpec | str | Path,
                    model: ModelLike | None) -> tuple[Model, QuantSpec]:
    if isinstance(quant, QuantizeResult):
        return quant.model, quant.spec
    if model is None:
        raise DynfixError("pass model= together with a quantization spec or Q.yaml path")
    m = load_model(model)
    return m, _spec_for(m, quant)


def generate(quant: QuantizeResult | QuantSpec | str | Path, output: str | Path,
             board: Any = None, *, config: Any = None, model: ModelLike | None = None
             ) -> GenerateResult:
    """``dynfix generate``: compile for the engine and write Verilog, hex images, report.

    ``quant`` is a :class:`QuantizeResult` (it carries the model), or a ``QuantSpec`` /
    ``Q.yaml`` path together with ``model=``. The engine is the fastest one that fits
    ``board`` (the default board if omitted) unless ``config`` (an ``EngineConfig`` or a
    dict with k, tn, tm) is given.
    """
    from dynfix.hw.compiler import compile_model
    from dynfix.hw.config import EngineConfig
    from dynfix.hw.generate import write_outputs

    m, spec = _model_and_spec(quant, model)
    fitted, board_name = None, None
    if config is None:
        b = get_board(board)
        cfg, fitted = engine_config(m, spec, b)
        board_name = b.bundled_name
    elif isinstance(config, dict):
        cfg = EngineConfig.from_dict(config)
    else:
        cfg = config
    cm = compile_model(m, spec, cfg)
    rep = write_outputs(cm, m.name, output, board_name)
    _write_model_files(m, spec, output)
    return GenerateResult(Path(output), rep, cm.config, cm, fitted)


def _write_model_files(model: Model, spec: QuantSpec, folder: str | Path) -> None:
    """model.yaml/.npz and Q.yaml beside the Verilog, as ``dynfix generate`` writes them
    (what ``dynfix simulate DIR`` reads), once that part of the simulator has landed."""
    try:
        from dynfix.sim.simulate import write_model_files
    except ImportError:
        return
    write_model_files(model, spec, folder)


@dataclass
class SimulateResult:
    """The generated Verilog run under a simulator, against the bit-exact integer model."""

    outputs: np.ndarray = field(repr=False)          # N x values, what the engine streamed
    expected: np.ndarray = field(repr=False)         # N x values, the integer model's
    cycles: list[int] = field(repr=False)            # per image, the engine's counter
    layer_cycles: list[list[int]] = field(repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return len(self.outputs)

    @property
    def mismatches(self) -> int:
        """Images whose hardware outputs differ from the integer model in any value."""
        return int(np.sum(np.any(self.outputs != self.expected, axis=1)))

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
    if labels is None or len(labels) == 0:
        return None
    return float(np.mean(scores.argmax(axis=1) == labels))


def simulate(generated: GenerateResult | str | Path,
             quant: QuantizeResult | QuantSpec | str | Path,
             data: str | Path | np.ndarray = "digits", images: int = 20, *,
             model: ModelLike | None = None, simulator: str = "icarus",
             progress: Progress = _quiet, chunk: int = 5) -> SimulateResult:
    """``dynfix simulate``-style check: the first ``images`` inputs of ``data`` through the
    generated Verilog, compared value for value with the integer model."""
    from dynfix.flow_sim import run_images
    if not isinstance(images, int) or images < 1:
        raise DynfixError(f"images must be a positive integer, got {images!r}")
    folder = generated.folder if isinstance(generated, GenerateResult) else Path(generated)
    report = generated.report if isinstance(generated, GenerateResult) else _read_report(folder)
    m, spec = _model_and_spec(quant, model)
    check_data_fits(m, data)
    x, y = load_inputs(data, split="test", labels=False)
    x = x[:images]
    y = None if y is None else y[:images]
    t0 = time.perf_counter()
    outputs, expected, cycles, layers = run_images(folder, report, m, spec, x, simulator,
                                                   progress, chunk)
    return SimulateResult(outputs, expected, cycles, layers, y, time.perf_counter() - t0)


def _read_report(folder: Path) -> dict:
    path = folder / "report.json"
    try:
        return json.loads(path.read_text())
    except OSError:
        raise DynfixError(f"{folder} is not a dynfix generate output (no report.json)") \
            from None
    except ValueError as e:
        raise DynfixError(f"{path}: not valid JSON ({e})") from None


def synth(generated: GenerateResult | str | Path, board: Any = None,
          build_dir: str | Path | None = None, check_timing: bool = True):
    """``dynfix synth``: the board top around the engine -> bitstream, utilization, Fmax.

    Returns :class:`dynfix.boards.synth.SynthResult`; raises when timing is not met (unless
    ``check_timing`` is false).
    """
    from dynfix.boards.design import board_top, load_generated
    from dynfix.boards.synth import check_result, synthesize

    folder = generated.folder if isinstance(generated, GenerateResult) else Path(generated)
    gen = load_generated(folder)
    b = get_board(board)
    from dynfix.boards.fit import check_generated_fits
    check_generated_fits(gen, b)
    out = Path(build_dir) if build_dir is not None else folder / "build"
    result = synthesize(board_top(gen, b), b, out, check_timing=False)
    if check_timing:
        check_result(result)
    return result


def flow(model: ModelLike = "digits", board: str | None = None, bits: str = "8",
         images: int = 20, synth: bool = False, output: str | Path | None = None,
         data: str | Path | None = None, calib: str | Path | None = None,
         progress: Progress = _quiet):
    """``dynfix flow``: quantize -> generate -> simulate -> (synthesize), reports and plots
    in ``output``. Returns :class:`dynfix.flow.FlowResult`."""
    from dynfix.flow import FlowOptions, run_flow
    return run_flow(FlowOptions(model=model, board=board, bits=str(bits), images=images,
                                synth=synth, output=output, data=data, calib=calib),
                    progress)
