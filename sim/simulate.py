"""Running a generated design on images: the one harness behind ``dynfix flow``,
``dynfix simulate`` and :func:`dynfix.api.simulate`.

A design is a :class:`~dynfix.hw.design.Design`: a ``dynfix generate`` folder with the model,
spec and compiled model behind its Verilog (``Design.load(folder).with_model()`` recompiles
the model and checks that its program and memory images equal the folder's, so the integer
reference is the one the Verilog was built from; a caller that has them builds it as
``Design(folder, report, model, spec, compiled)``). :func:`simulate` runs
the images through the bulk host (:mod:`dynfix.sim.harness`), one simulator build and one
simulator process, a few images per step with a progress line after each, and scores them
against :class:`~dynfix.quant.int_model.IntModel`; its :class:`SimResult` holds the summary
and the per-image outputs and cycle counters.

Mismatch localization: for the first mismatching image a second simulator run replays it with
*truncated programs*: program entries ``0..i`` with entry ``i`` marked last, for each layer
group ``i``, so the engine streams out group ``i``'s whole feature map (C, H, W order, as the
integer model holds it). The first group whose map differs, and the first differing value's
coordinates, are reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np

from dynfix.errors import DynfixError
from dynfix.hw.compiler import CompiledModel
from dynfix.hw.compiler.plan import TRANSFERS
from dynfix.hw.config import BulkStore
from dynfix.hw.design import Design
from dynfix.hw.generate import hex_lines
from dynfix.hw.ice40_spram import load_image
from dynfix.hw.program import entry_layout, pack_entry
from dynfix.hw.weight_ring import bulk_image
from dynfix.quant.fidelity import top1
from dynfix.quant.float_model import predict
from dynfix.quant.int_model import IntModel
from .harness import BULK_LOAD, RELOADABLE, WEIGHT_LOAD, HostParams, hex_values
from .scoreboard import Difference, Scoreboard, first_difference
from .simulators import Simulator, choose

def host_stream(cm: CompiledModel, xq1: np.ndarray) -> np.ndarray:
    """What the host streams for one quantized input (the compiler's layout if it has one)."""
    if hasattr(cm, "host_input"):
        return np.asarray(cm.host_input(xq1)).reshape(-1)
    return np.asarray(xq1).reshape(-1)


def truncated_program(cm: CompiledModel, upto: int) -> list[int]:
    """Program words of entries ``0..upto``, the last one marked ``last``; when it is the
    last strip of a group run in strips (``m_bulk``) with its output on chip, the unload
    reads the group's whole output (from its first strip's rows on)."""
    entries = [dict(p.entry) for p in cm.plans[:upto + 1]]
    for e in entries:
        e["last"] = 0
    entries[-1]["last"] = 1
    first = upto - cm.plans[upto].strip
    if first != upto:
        entries[-1].update(out_base=entries[first]["out_base"],
                           out_pix=sum(e["out_pix"] for e in entries[first:]))
    if cm.config.m_bulk:
        entries[-1]["ul"] = 1           # the phase flags (hw/controller.py): unload it
    return [pack_entry(cm.config, e) for e in entries]


def locatable(cm: CompiledModel, i: int) -> bool:
    """Whether a program truncated after entry ``i`` can show its group's output map: the
    entry ends its group (its last strip with ``m_bulk``) and the map is on chip."""
    p = cm.plans[i]
    nxt = cm.plans[i + 1] if i + 1 < len(cm.plans) else None
    ends = nxt is None or nxt.strip == 0 or nxt.name != p.name
    return p.kind not in TRANSFERS and ends and not p.entry.get("do_words", 0)


def padded(words: list[int], depth: int) -> list[int]:
    """``words`` with zeros up to ``depth`` (keeps ``$readmemh`` from warning)."""
    return list(words) + [0] * (depth - len(words))


def memory_files(cm: CompiledModel, folder: Path, program: list[int] | None = None
                 ) -> dict[str, str]:
    """Write program / weights / biases images of ``cm`` (padded to depth) into ``folder``;
    the weights as the halfwords the host streams in when the engine loads them
    (``w_spram``)."""
    cfg = cm.config
    images = {
        "program.hex": hex_lines(padded(program or cm.program, cfg.prog_depth),
                                 entry_layout(cfg).size),
        **(_weight_load_image(cm) if cfg.w_spram else _bulk_image(cm) if cfg.w_bulk else {
            "weights.hex": hex_lines(padded(cm.weights, cfg.weight_depth),
                                     cfg.weight_word_bits)}),
        "biases.hex": hex_lines(padded(cm.biases, cfg.bias_depth),
                                cfg.tm * cfg.bias_lane_bits),
    }
    return _write_files(folder, images)


def boot_files(cm: CompiledModel, folder: Path) -> dict[str, str]:
    """What the host must load into ``cm``'s engine before its first image, written into
    ``folder``: the weights of an engine that keeps them in SPRAM (which starts empty; the
    board top loads them from flash) or in bulk memory (the wrapper's), else nothing."""
    if cm.config.w_spram:
        return _write_files(folder, _weight_load_image(cm))
    return _write_files(folder, _bulk_image(cm)) if cm.config.w_bulk else {}


def _weight_load_image(cm: CompiledModel) -> dict[str, str]:
    """``weights16.hex``: the halfwords the host streams into the ``wl`` port."""
    cfg = cm.config
    return {WEIGHT_LOAD[1]: hex_lines(load_image(cm.weights, cfg.weight_depth,
                                                 cfg.weight_word_bits), 16)}


def _bulk_image(cm: CompiledModel) -> dict[str, str]:
    """``bulk.hex``: the bus words of the weight image in the wrapper's bulk memory; for an
    SDRAM (``bulk_store: sdram``) as its 16-bit words, each bus word's lowest first."""
    cfg = cm.config
    words = bulk_image(padded(cm.weights, cfg.weight_depth), cfg.weight_word_bits,
                       cfg.bus_bits)
    if cfg.bulk_store is BulkStore.SDRAM:
        k = cfg.bus_bits // 16
        words = [w >> (16 * i) & 0xFFFF for w in words for i in range(k)]
        return {BULK_LOAD[1]: hex_lines(words, 16)}
    return {BULK_LOAD[1]: hex_lines(words, cfg.bus_bits)}


def _write_files(folder: Path, images: dict[str, str]) -> dict[str, str]:
    """Write each ``name: text`` of ``images`` into ``folder``; returns ``name: path``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, text in images.items():
        (folder / name).write_text(text)
        out[name] = str(folder / name)
    return out


def reload_mask(files: dict[str, str]) -> int:
    bits = {name: bit for bit, (name, _) in RELOADABLE.items()}
    bits[WEIGHT_LOAD[1]] = WEIGHT_LOAD[0]
    bits[BULK_LOAD[1]] = BULK_LOAD[0]
    mask = 1 if "images.hex" in files else 0
    for name in files:
        if name in bits:
            mask |= 1 << bits[name]
    return mask


def group_maps(cm: CompiledModel, trace: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """Each group's output map from an integer-model trace: the name of its last layer with a
    C x H x W output (a trailing Flatten holds the same values in the same order), and the
    N x ... array."""
    maps = []
    for p in cm.plans:
        if p.kind in TRANSFERS:         # a map moved, not made: the host's input, or the
            continue                    # output, whose group comes before
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
    computed = [i for i, p in enumerate(cm.plans) if p.kind not in TRANSFERS]
    maps = dict(zip(computed, group_maps(cm, ref_trace)))
    points = [i for i in computed if locatable(cm, i)]
    maps = [maps[i] for i in points]
    steps = []
    for i, (name, ref) in zip(points, maps):
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


#: Marks the :class:`SimResult` fields that hold one entry per image; :meth:`SimResult.summary`
#: (the ``--json`` object) leaves them out.
PER_IMAGE = {"per_image": True}


@dataclass
class SimResult:
    """One run of images through the engine: what ``dynfix simulate`` reports
    (:meth:`summary` is its ``--json`` object) and the per-image results behind it."""

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
    #: N x values (int64): what the engine streamed out for each image.
    outputs: np.ndarray | None = field(default=None, repr=False, metadata=PER_IMAGE)
    #: N x values (int64): the integer model's outputs for the same images.
    expected: np.ndarray | None = field(default=None, repr=False, metadata=PER_IMAGE)
    #: Per image: the engine's ``cycles`` counter (fetch + compute + drain of every layer).
    cycles: list[int] = field(default_factory=list, repr=False, metadata=PER_IMAGE)
    #: Per image: host cycles from ``start`` to ``done`` (with image load and result unload).
    host_cycles: list[int] = field(default_factory=list, repr=False, metadata=PER_IMAGE)
    #: Per image: each layer group's ``layer_cycles`` counter, in program order.
    image_layer_cycles: list[list[int]] = field(default_factory=list, repr=False,
                                                metadata=PER_IMAGE)
    #: The labels passed in (None without labels).
    labels: np.ndarray | None = field(default=None, repr=False, metadata=PER_IMAGE)

    def summary(self) -> dict:
        """The summary fields as plain JSON-ready values (no per-image fields)."""
        keep = [f.name for f in fields(self) if not f.metadata.get("per_image")]
        return {name: value for name, value in asdict(self).items() if name in keep}


def useful_macs(plan) -> int:
    """MACs a group needs: output values the engine keeps (conv pixels under the pooling
    windows; a floor-mode pool drops the rest) times the fan-in, which for a depthwise
    group is one input channel's window (as the cycle model counts it)."""
    if plan.kind in TRANSFERS:
        return 0
    rows, cols = plan.conv_out
    c = 1 if plan.kind == "dwconv" else plan.in_shape[0]
    kh, kw = plan.kernel
    return int(plan.out_shape[0] * rows * cols * c * kh * kw)


def _accuracy(scores: np.ndarray, y: np.ndarray | None) -> float | None:
    if y is None:
        return None
    return round(float(np.mean(top1(scores.reshape(len(y), -1)) == y)), 6)


def image_steps(stream: np.ndarray, chunk: int, folder: Path, data_bits: int, common: dict,
                extra_files: dict[str, str] | None = None) -> list[dict]:
    """One bulk-host step per ``chunk`` images of ``stream`` (N x values streamed in), each
    with its own images file in ``folder`` and the entries of ``common``; ``extra_files`` are
    loaded by the first step."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("images*.hex"):
        old.unlink()
    steps = []
    for k, start in enumerate(range(0, len(stream), chunk)):
        part = stream[start:start + chunk]
        path = folder / f"images{k:04d}.hex"
        path.write_text(hex_values(part.reshape(-1), data_bits))
        files = {"images.hex": str(path), **((extra_files or {}) if k == 0 else {})}
        steps.append({**common, "files": files, "reload": reload_mask(files),
                      "images": len(part), "in_len": int(stream.shape[1])})
    return steps


def simulate(design: Design, x: np.ndarray, y: np.ndarray | None, build_dir: str | Path,
             sim: str | None = None, waves: bool = False, *,
             progress: Callable[[str], None] | None = None, chunk: int = 5,
             extra_files: dict[str, str] | None = None) -> SimResult:
    """Run ``x`` (float inputs, N x C x H x W) through the design's Verilog and score every
    output integer against the integer model: the one way dynfix runs the engine on images.

    The simulator (``sim``: ``icarus`` or ``verilator``; default ``$DYNFIX_SIM``, else Icarus)
    is built once in ``build_dir/<sim>/``, which holds everything the run writes (logs, data
    files, waves with ``waves``). All images run in one simulator process, ``chunk`` per step;
    after each step ``progress`` (if given) gets a line ``simulated k/N images`` (called from
    a polling thread while the simulator runs). The first mismatching image is replayed in a
    second process to localize the difference. ``y`` (labels, or None) only feeds the
    accuracies. Failures raise a one-line :class:`DynfixError`; nothing is printed.

    ``extra_files`` (test hook: e.g. a tampered ``weights.hex``) are loaded into the engine
    before the images, in the main run and in the localization run alike.
    """
    sim = choose(sim)
    if not isinstance(chunk, int) or chunk < 1:
        raise DynfixError(f"chunk must be a positive integer, got {chunk!r}")
    if len(x) == 0:
        raise DynfixError("no images to simulate")
    if not design.verilog.is_file():
        raise DynfixError(f"{design.verilog} is missing; re-run dynfix generate")
    design = design.with_model()
    cm, cfg = design.compiled, design.compiled.config
    im = IntModel(design.model, design.spec)
    xq = im.quantize_input(x)
    trace = im.forward(xq)
    expected = trace[cm.output_name].reshape(len(xq), -1).astype(np.int64)
    stream = np.stack([host_stream(cm, a) for a in xq])
    n, in_len = stream.shape
    chunk = min(chunk, n)
    map_lens = [int(ref[0].size) for _, ref in group_maps(cm, trace)]
    params = HostParams.for_engine(cfg, in_len, max(map_lens), len(cm.plans), chunk)
    simulator = Simulator(design.verilog, params, Path(build_dir) / sim, sim, waves)
    simulator.build()
    extra_files = {**boot_files(cm, simulator.build_dir / "boot"), **(extra_files or {})}
    steps = image_steps(stream, chunk, simulator.build_dir / "data", cfg.data_bits,
                        {"out_len": cm.output_len, "n_layers": len(cm.plans)}, extra_files)

    def on_step(k: int) -> None:
        progress(f"simulated {min(k * chunk, n)}/{n} images")

    results = simulator.run(steps, tag="run", on_step=on_step if progress else None)
    per_image = [r for res in results for r in res["images"]]

    board = Scoreboard(expected)
    for r in per_image:
        board.add(cm.output_order(r["outputs"]))
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

    cycles = [int(r["cycles"]) for r in per_image]
    host = [int(r["host_cycles"]) for r in per_image]
    per_layer = np.array([r["layer_cycles"] for r in per_image], dtype=np.int64)
    lc = per_layer.max(axis=0)
    # A group run in strips (m_bulk) counts once: its strips' cycles and MACs together.
    by_name: dict[str, list[int]] = {}
    for p, c in zip(cm.plans, lc):
        by_name.setdefault(p.name, [0, 0])
        by_name[p.name][0] += int(c)
        by_name[p.name][1] += useful_macs(p)
    util = {name: round(macs / (c * cfg.multipliers), 4) for name, (c, macs) in by_name.items()}
    macs = sum(useful_macs(p) for p in cm.plans)
    util["overall"] = round(macs / (int(lc.sum()) * cfg.multipliers), 4)
    scores_float = predict(design.model, x)
    sim_cycles = sum(int(res["sim_cycles"]) for res in results)
    seconds = sum(res["seconds"] for res in results)
    cpu_seconds = sum(res["cpu_seconds"] for res in results)
    wf = simulator.waves_file("run")
    return SimResult(
        images=n, mismatches=len(bad),
        accuracy_hw=_accuracy(board.got, y), accuracy_int=_accuracy(expected, y),
        accuracy_float=_accuracy(np.asarray(scores_float), y),
        cycles_per_image=max(cycles), host_cycles_per_image=max(host),
        mac_utilization=util,
        sim_cycles_per_s=round(sim_cycles / max(seconds, 1e-9), 1),
        sim_cycles_per_cpu_s=round(sim_cycles / max(cpu_seconds, 1e-9), 1),
        simulator=sim, sim_cycles=sim_cycles,
        sim_seconds=round(seconds, 3), build_seconds=round(simulator.build_seconds, 2),
        first_mismatch=first, waves=str(wf) if wf else None,
        layer_cycles={name: c for name, (c, _) in by_name.items()},
        outputs=board.got, expected=expected, cycles=cycles, host_cycles=host,
        image_layer_cycles=per_layer.tolist(), labels=y)
