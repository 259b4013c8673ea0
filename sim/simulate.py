"""Whole-network simulation of a generated design (``dynfix simulate``).

A design folder (``dynfix generate``'s output) holds the engine Verilog, the memory images,
``report.json`` and the model with its ``Q.yaml``. :func:`load_design` rebuilds the compiled
model from them and checks that its program and memory images equal the folder's (so the
integer reference is the one the Verilog was built from). :func:`simulate` runs the images in
one simulator process through the bulk host (:mod:`dynfix.sim.harness`) and scores them
against :class:`~dynfix.quant.int_model.IntModel`.

Mismatch localization: for the first mismatching image a second simulator run replays it with
*truncated programs*: program entries ``0..i`` with entry ``i`` marked last, for each layer
group ``i``, so the engine streams out group ``i``'s whole feature map (C, H, W order, as the
integer model holds it). The first group whose map differs, and the first differing value's
coordinates, are reported.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from dynfix.errors import DynfixError
from dynfix.hw.compiler import CompiledModel, compile_model
from dynfix.hw.config import EngineConfig
from dynfix.hw.generate import TOP_NAME, hex_lines
from dynfix.hw.program import entry_layout, pack_entry
from dynfix.quant.int_model import IntModel
from dynfix.quant.ir import Model
from dynfix.quant.qspec import QuantSpec
from .harness import HostParams, hex_values
from .scoreboard import Difference, Scoreboard, first_difference
from .simulators import Simulator, choose

REQUIRED = (f"{TOP_NAME}.v", "report.json", "program.hex", "weights.hex", "biases.hex",
            "model.yaml", "Q.yaml")


@dataclass
class Design:
    """A generated design folder, with the model, spec and compiled model behind it."""

    folder: Path
    report: dict
    model: Model
    spec: QuantSpec
    cm: CompiledModel

    @property
    def verilog(self) -> Path:
        return self.folder / f"{TOP_NAME}.v"


def write_model_files(model: Model, spec: QuantSpec, folder: str | Path) -> None:
    """Write ``model.yaml`` + ``model.npz`` and ``Q.yaml`` into a generated design folder
    (each atomically): what :func:`load_design` needs to rebuild the integer model."""
    from dynfix.quant.qspec_io import save_qspec
    from dynfix.quant.yaml_io import save_yaml

    folder = Path(folder)
    save_yaml(model, folder / "model.yaml")
    save_qspec(spec, folder / "Q.yaml")


def host_stream(cm: CompiledModel, xq1: np.ndarray) -> np.ndarray:
    """What the host streams for one quantized input (the compiler's layout if it has one)."""
    if hasattr(cm, "host_input"):
        return np.asarray(cm.host_input(xq1)).reshape(-1)
    return np.asarray(xq1).reshape(-1)


def load_design(folder: str | Path) -> Design:
    """Read and cross-check a ``dynfix generate`` output folder (clean errors otherwise)."""
    from dynfix.quant.qspec_io import load_qspec
    from dynfix.quant.yaml_io import load_yaml

    folder = Path(folder)
    if not folder.is_dir():
        raise DynfixError(f"{str(folder)!r} is not a folder (expected the output of "
                          f"dynfix generate)")
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        hint = (" (generated before dynfix generate wrote the model; re-run it)"
                if set(missing) <= {"model.yaml", "Q.yaml"} else "")
        raise DynfixError(f"{folder} is not a generated design: missing "
                          f"{', '.join(missing)}{hint}")
    try:
        report = json.loads((folder / "report.json").read_text())
        eng = report["engine"]
        cfg = EngineConfig.from_dict({f.name: eng[f.name] for f in fields(EngineConfig)
                                      if f.name in eng}, where=f"{folder}/report.json engine")
    except (ValueError, KeyError, TypeError) as e:
        raise DynfixError(f"{folder}/report.json is not a dynfix generate report "
                          f"({type(e).__name__}: {e})") from None
    model = load_yaml(folder / "model.yaml")
    spec = load_qspec(folder / "Q.yaml", model)
    cm = compile_model(model, spec, cfg)
    for name, words, bits in (("program.hex", cm.program, entry_layout(cfg).size),
                              ("weights.hex", cm.weights, cfg.tm * cfg.lanes * cfg.weight_bits),
                              ("biases.hex", cm.biases, cfg.tm * cfg.bias_bits)):
        if (folder / name).read_text() != hex_lines(words, bits):
            raise DynfixError(f"{folder}/{name} does not match model.yaml + Q.yaml compiled "
                              f"for the report's engine; the folder was edited or mixed up")
    return Design(folder, report, model, spec, cm)


def truncated_program(cm: CompiledModel, upto: int) -> list[int]:
    """Program words of groups ``0..upto``, the last one marked ``last``."""
    entries = [dict(p.entry) for p in cm.plans[:upto + 1]]
    for e in entries:
        e["last"] = 0
    entries[-1]["last"] = 1
    return [pack_entry(cm.config, e) for e in entries]


def padded(words: list[int], depth: int) -> list[int]:
    """``words`` with zeros up to ``depth`` (keeps ``$readmemh`` from warning)."""
    return list(words) + [0] * (depth - len(words))


def memory_files(cm: CompiledModel, folder: Path, program: list[int] | None = None
                 ) -> dict[str, str]:
    """Write program / weights / biases images of ``cm`` (padded to depth) into ``folder``."""
    cfg = cm.config
    images = {
        "program.hex": hex_lines(padded(program or cm.program, cfg.prog_depth),
                                 entry_layout(cfg).size),
        "weights.hex": hex_lines(padded(cm.weights, cfg.weight_depth),
                                 cfg.tm * cfg.lanes * cfg.weight_bits),
        "biases.hex": hex_lines(padded(cm.biases, cfg.bias_depth), cfg.tm * cfg.bias_bits),
    }
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, text in images.items():
        (folder / name).write_text(text)
        out[name] = str(folder / name)
    return out


def reload_mask(files: dict[str, str]) -> int:
    from .harness import RELOADABLE
    mask = 1 if "images.hex" in files else 0
    for bit, (name, _) in RELOADABLE.items():
        if name in files:
            mask |= 1 << bit
    return mask


def group_maps(cm: CompiledModel, trace: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """Each group's output map from an integer-model trace: the name of its last layer with a
    C x H x W output (a trailing Flatten holds the same values in the same order), and the
    N x ... array."""
    maps = []
    for p in cm.plans:
        name = next((n for n in reversed(p.layers) if trace[n].ndim == 4), p.layers[-1])
        maps.append((name, trace[name]))
    return maps


def locate(simulator: Simulator, cm: CompiledModel, xq1: np.ndarray, ref_trace: dict,
           work: Path, extra: dict[str, str] | None = None) -> Difference | None:
    """Replay one image (``xq1``, 1 x C x H x W) with truncated programs; the first group map
    that differs from ``ref_trace`` (the integer model's trace of that image)."""
    cfg = cm.config
    work.mkdir(parents=True, exist_ok=True)
    (work / "image.hex").write_text(hex_values(host_stream(cm, xq1[0]), cfg.data_bits))
    steps, maps = [], group_maps(cm, ref_trace)
    for i, (name, ref) in enumerate(maps):
        files = memory_files(cm, work / f"g{i}", truncated_program(cm, i))
        files.update(extra or {})
        files["images.hex"] = str(work / "image.hex")
        steps.append({"files": files, "reload": reload_mask(files), "images": 1,
                      "in_len": int(host_stream(cm, xq1[0]).size),
                      "out_len": int(ref[0].size), "n_layers": i + 1})
    results = simulator.run(steps, tag="locate")
    for (name, ref), res in zip(maps, results):
        d = first_difference(name, res["images"][0]["outputs"], ref[0])
        if d is not None:
            return d
    return None


@dataclass
class SimResult:
    """What ``dynfix simulate`` reports (``summary()`` is the ``--json`` object)."""

    images: int
    mismatches: int
    accuracy_hw: float | None
    accuracy_int: float | None
    accuracy_float: float | None
    cycles_per_image: int
    host_cycles_per_image: int
    mac_utilization: dict
    sim_cycles_per_s: float
    sim_cycles_per_cpu_s: float
    simulator: str
    sim_cycles: int
    sim_seconds: float
    build_seconds: float
    first_mismatch: dict | None = None
    waves: str | None = None
    layer_cycles: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return asdict(self)


def useful_macs(plan) -> int:
    """MACs a group needs: output values the engine keeps (conv pixels under the pooling
    windows; a floor-mode pool drops the rest) times the fan-in."""
    rows, cols = plan.conv_out
    c, kh, kw = plan.in_shape[0], *plan.kernel
    return int(plan.out_shape[0] * rows * cols * c * kh * kw)


def _accuracy(scores: np.ndarray, y: np.ndarray | None) -> float | None:
    if y is None:
        return None
    return round(float(np.mean(scores.reshape(len(y), -1).argmax(axis=1) == y)), 6)


def simulate(design: Design, x: np.ndarray, y: np.ndarray | None, build_dir: str | Path,
             sim: str | None = None, waves: bool = False,
             extra_files: dict[str, str] | None = None) -> SimResult:
    """Run ``x`` (float inputs) through the design's Verilog and score it.

    ``extra_files`` (test hook: e.g. a tampered ``weights.hex``) are loaded into the engine
    before the images, in the main run and in the localization run alike.
    """
    from dynfix.quant.float_model import predict

    sim = choose(sim)
    cm, cfg = design.cm, design.cm.config
    im = IntModel(design.model, design.spec)
    xq = im.quantize_input(x)
    trace = im.forward(xq)
    expected = trace[cm.output_name].reshape(len(xq), -1)
    stream = np.stack([host_stream(cm, a) for a in xq])
    n, in_len = stream.shape
    map_lens = [int(ref[0].size) for _, ref in group_maps(cm, trace)]
    build_dir = Path(build_dir)
    params = HostParams(cfg.data_bits, in_len, max(map_lens), len(cm.plans),
                        max_images=n)
    simulator = Simulator(design.verilog, params, build_dir / sim, sim, waves)
    simulator.build()
    work = simulator.build_dir / "data"
    work.mkdir(parents=True, exist_ok=True)
    (work / "images.hex").write_text(hex_values(stream.reshape(-1), cfg.data_bits))
    files = {"images.hex": str(work / "images.hex"), **(extra_files or {})}
    step = {"files": files, "reload": reload_mask(files), "images": n, "in_len": in_len,
            "out_len": cm.output_len, "n_layers": len(cm.plans)}
    [res] = simulator.run([step], tag="run")

    board = Scoreboard(expected)
    for r in res["images"]:
        board.add(r["outputs"])
    bad = board.mismatches()
    first = None
    if bad:
        i = bad[0]
        diff = locate(simulator, cm, xq[i:i + 1], {k: v[i:i + 1] for k, v in trace.items()},
                      simulator.build_dir / "locate_data", extra_files)
        first = {"image": i, "where": str(diff) if diff else
                 "every group's map matches when replayed alone (a whole-run effect)"}
        if diff:
            first.update(layer=diff.layer, coords=list(diff.coords), got=diff.got,
                         want=diff.want)

    cycles = [r["cycles"] for r in res["images"]]
    host = [r["host_cycles"] for r in res["images"]]
    per_layer = np.array([r["layer_cycles"] for r in res["images"]], dtype=np.int64)
    lc = per_layer.max(axis=0)
    util = {p.name: round(useful_macs(p) / (int(c) * cfg.multipliers), 4)
            for p, c in zip(cm.plans, lc)}
    macs = sum(useful_macs(p) for p in cm.plans)
    util["overall"] = round(macs / (int(lc.sum()) * cfg.multipliers), 4)
    scores_float = predict(design.model, x)
    wf = simulator.waves_file("run")
    return SimResult(
        images=n, mismatches=len(bad),
        accuracy_hw=_accuracy(board.got, y), accuracy_int=_accuracy(expected, y),
        accuracy_float=_accuracy(np.asarray(scores_float), y),
        cycles_per_image=int(max(cycles)), host_cycles_per_image=int(max(host)),
        mac_utilization=util,
        sim_cycles_per_s=round(res["sim_cycles"] / max(res["seconds"], 1e-9), 1),
        sim_cycles_per_cpu_s=round(res["sim_cycles"] / max(res["cpu_seconds"], 1e-9), 1),
        simulator=sim, sim_cycles=int(res["sim_cycles"]),
        sim_seconds=round(res["seconds"], 3), build_seconds=round(simulator.build_seconds, 2),
        first_mismatch=first, waves=str(wf) if wf else None,
        layer_cycles={p.name: int(c) for p, c in zip(cm.plans, lc)})
