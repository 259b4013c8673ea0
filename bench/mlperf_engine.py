"""The MLPerf Tiny reference models on generated engines: fit, cycles, utilization, latency.

For each model of ``bench/mlperf_tiny.py`` (random weights, seeded) and each board: quantize
(greedy, 8 bits, on the model's sample inputs), fit the fastest engine to the board and
generate it, run a few inputs through the generated Verilog in Verilator against the integer
model (mismatches, and the simulated cycle counters against the cycle model), and report
params, MACs, the engine, cycles per inference, whole-network and per-layer-kind MAC
utilization, and the latency at the clock the bitstream runs at: ``dynfix synth``'s timing
closure on the board's PLL for the (model, board) pairs given to ``--synth`` (yowasp yosys +
nextpnr, a few builds of 3 to 7 minutes per OrangeCrab engine, 15 to 60 per ULX3S one), else an
estimate labelled so (the clock of an earlier build of the model's engine on the board, or the
board's digits engine's clock from ``bench/results/boards_synth.json``). The builds go through
``dynfix sweep`` (one candidate, nextpnr seed 1, no simulation: the bench simulates its own
design), on a Dask cluster: a local one of ``--workers`` processes, or ``--scheduler
tcp://host:8786`` (whose workers must see ``--work``, the folder of the model files and sweep
folders, at the same path); the boards of one model build at once. The sweep quantizes and fits
on its own, from the same calibration inputs: the build plan's digest checks that it built the
bench's design. Synthesis results are kept in ``bench/results/mlperf_synth.json`` under the
digest of the board build plan (the netlists without their source-location attributes,
constraints and tool script): a later run whose build is the same shows them without
synthesizing again; any change to the engine, its weights or the board top misses. A model that
does not fit a board is reported with the fit's reason.

    python bench/mlperf_engine.py [--models resnet8,dscnn] [--boards ulx3s,orangecrab]
                                  [--images 2] [--synth resnet8:ulx3s@78,dscnn:orangecrab|all]
                                  [--router router1|router2]
                                  [--bits 8/4/4] [--weights random|trained]
                                  [--workers N | --scheduler tcp://host:8786] [--work DIR]
                                  [--output mlperf_tiny.md]

``--weights trained`` takes the trained models of ``models/mlperf_tiny`` with the
calibration and test inputs of ``bench/mlperf_data.py`` instead of the random-weight ones.
``--bits`` quantizes at another width (e.g. ``8/4/4``: 8-bit maps, 4-bit weights, two
products per ECP5 MULT18X18D); the table then also gives the integer model's output SQNR and
top-1 agreement against float on 256 held-out sample inputs.

Writes ``bench/results/mlperf_tiny.md`` (the iCEBreaker rows, with weights and maps in its
SPRAMs: ``--models resnet8,dscnn --boards icebreaker --output mlperf_tiny_icebreaker.md``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlperf_tiny as mt  # noqa: E402
from common import OUT, md_table, rebuild_closure, write_result  # noqa: E402

import dynfix  # noqa: E402
import dynfix.inputs  # noqa: E402
from dynfix.boards.registry import DEFAULT_ROUTER, ROUTERS  # noqa: E402
from dynfix.boards.design import board_top  # noqa: E402
from dynfix.hw.design import Design  # noqa: E402
from dynfix.boards.synth import prepare  # noqa: E402
from dynfix.errors import DynfixError  # noqa: E402
from dynfix.boards.closure import ClosurePolicy  # noqa: E402

BOARDS = ("ulx3s", "orangecrab")
#: Published FPGA results (``shared/reference/mlperf_tiny.md``) per model: (who, part, ms).
PUBLISHED = {
    "resnet8": [("fpgaConvNet, XC7Z010 (80 DSP), 125 MHz", 3.15),
                ("fpgaConvNet, XC7Z020 (220 DSP), 143 MHz", 0.411),
                ("hls4ml RN08, XC7Z020, 150 MHz", 7.64)],
    "dscnn": [("fpgaConvNet, XC7Z010, 125 MHz", 2.15),
              ("fpgaConvNet, XC7Z007S (66 DSP), 143 MHz", 4.21),
              ("fpgaConvNet, XC7Z020, 143 MHz", 0.324)],
    "mobilenet_v1_025": [("fpgaConvNet, XC7Z020, 111 MHz", 9.49)],
    "autoencoder": [("hls4ml AD08 (smaller net, W12), XC7Z020, 100 MHz", 0.0187)],
}


def recorded_clock() -> dict[str, float]:
    """The clock each board's digits engine runs at (the bench's boards run): its PLL
    clock, or its Fmax for a build from before the PLL or one that missed timing (no
    bitstream runs at that clock)."""
    path = OUT / "boards_synth.json"
    return {b: v["clock_mhz"] if v.get("timing_met") and "clock_mhz" in v else v["fmax_mhz"]
            for b, v in json.loads(path.read_text()).items()}


#: Synthesis results by model, board and widths: the build plan's digest and the figures.
SYNTH_CACHE = OUT / "mlperf_synth.json"


def plan_digest(folder: Path, board: str) -> str:
    """The digest of the board build plan (the netlists, constraints and tool script) of the
    design in ``folder``, without the netlists' source locations (Python file and line of
    each signal: an edit elsewhere in a file, or another checkout, moves them): equal
    digests synthesize identically."""
    b = dynfix.inputs.get_board(board)
    plan = prepare(board_top(Design.load(folder), b), b)
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(plan.files):
        text = plan.files[name]
        text = text.encode() if isinstance(text, str) else text
        h.update(name.encode() + b"\0" + SRC_ATTR.sub(b"", text) + b"\0")
    h.update(plan.script.encode())
    return h.hexdigest()


#: A source-location attribute in RTLIL (``attribute \\src "file:line"``).
SRC_ATTR = re.compile(rb'^[ \t]*attribute \\src "[^"\n]*"\n', re.M)


def read_synth_cache() -> dict:
    return json.loads(SYNTH_CACHE.read_text()) if SYNTH_CACHE.exists() else {}


def closure_from(previous: dict | None, first_mhz: float | None = None) -> ClosurePolicy:
    """The timing closure of a rebuild: with ``first_mhz`` (``--synth model:board@MHZ``),
    one build at the PLL's fastest clock at or below it, placed for the default headroom
    above; else after a previous build of the model on the board (same engine or an earlier
    one), one build placed for its Fmax (:func:`common.rebuild_closure`); either
    way more only while it misses; else ``dynfix synth``'s default search from the board's
    highest clock."""
    if first_mhz is not None:
        return ClosurePolicy(builds=1, start_mhz=ClosurePolicy().target_mhz(first_mhz))
    if not previous or not previous.get("fmax"):
        return ClosurePolicy()
    return rebuild_closure(previous["fmax"])


def cached_row(g: dynfix.GenerateResult, board: str, key: str) -> dict | None:
    """The synthesis figures cached under ``key`` when the cached build plan is ``g``'s (the
    digest of the oscillator-clocked plan: the engine and board top the PLL is then put in
    front of), else ``None``."""
    hit = read_synth_cache().get(key)
    return hit if hit and hit["digest"] == plan_digest(g.folder, board) else None


def store_row(key: str, entry: dict) -> None:
    """Add ``entry`` to the synthesis cache (atomically: other runs may add entries)."""
    cached = read_synth_cache()
    cached[key] = entry
    tmp = SYNTH_CACHE.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(sorted(cached.items())), indent=2) + "\n")
    tmp.replace(SYNTH_CACHE)


@dataclass
class SynthJob:
    """One (model, board) pair to synthesize: the bench's generated design ``g`` and the
    cache key its figures go under."""

    name: str
    board: str
    key: str
    g: dynfix.GenerateResult
    #: The first PLL clock to try, MHz (``--synth model:board@MHZ``), else None
    #: (:func:`closure_from`).
    first_mhz: float | None = None
    #: nextpnr's router (``--router``): router2 for placements router1 leaves congested.
    router: str = DEFAULT_ROUTER


def sweep_synth(job: SynthJob, path: Path, x, bits: str, work: Path,
                scheduler: str | None) -> dict:
    """Synthesize ``job`` through ``dynfix sweep`` (one candidate, nextpnr seed 1, on the
    Dask cluster at ``scheduler`` or a local one): the sweep quantizes the model on the same
    calibration inputs and fits the same engine, which the build plan's digest checks;
    ``dynfix synth``'s timing closure on the board's PLL, starting under a previous build's
    Fmax (:func:`closure_from`). The cache entry, stored."""
    folder = work / f"sweep_{job.name}_{job.board}"
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "calib.npz", x=x[:48])
    np.savez(folder / "data.npz", x=x[48:49])
    res = dynfix.sweep(path, folder / "data.npz", calib=folder / "calib.npz",
                       boards=[job.board], bits=[bits], candidates=1, seeds=[1], images=0,
                       output=folder / "sweep", scheduler=scheduler, router=job.router,
                       closure=closure_from(read_synth_cache().get(job.key), job.first_mhz))
    [point] = res.points
    if point["status"] != "ok" and "synth" not in point:
        raise DynfixError(f"{point['stage']}: {point['reason']}")
    design = res.output / point["design"]
    digest = plan_digest(design, job.board)
    if digest != plan_digest(job.g.folder, job.board):
        raise DynfixError(f"the sweep built another design than the bench's for {job.key} "
                          f"({point['engine']} against {job.g.config.summary()})")
    r = point["synth"]
    entry = {"digest": digest, "engine": point["engine"], "fmax": round(r["fmax_mhz"], 2),
             "clock": round(r["clock_mhz"], 4), "pll": r.get("pll"),
             "builds": max(1, len(r["closure"])), "timing_met": r["timing_met"], "luts": r["luts"],
             "ffs": r["ffs"], "brams": r["brams"], "dsps_used": r["dsps"],
             "critical_path": r["critical_path"], "seconds": round(r["seconds"]),
             **({"router": job.router} if job.router != DEFAULT_ROUTER else {})}
    store_row(job.key, entry)
    return entry


def kind_utilization(estimate: dict, multipliers: int) -> dict[str, float]:
    """MAC utilization per layer kind (conv, depthwise, residual conv, linear); strided
    depthwise layers apart (``dwconv/2``: bound by the map reads, ``docs/engine.md``)."""
    macs, cycles = defaultdict(int), defaultdict(int)
    for row in estimate["layers"]:
        kind = row["kind"] + ("+add" if row.get("residual") else "")
        if kind == "dwconv" and max(row["stride"]) > 1:
            kind += f"/{max(row['stride'])}"
        macs[kind] += row["macs"]
        cycles[kind] += row["cycles"]
    return {k: macs[k] / (cycles[k] * multipliers) for k in macs}


#: Held-out sample inputs the fidelity is measured on (with ``--bits``).
HELD_OUT = 256


def shows_fidelity(bits: str) -> bool:
    """Whether the table has the fidelity column: at other widths than 8 bits (whose
    fidelity is ``quant_table.md``'s)."""
    return bits != "8"


#: The trained models (``models/mlperf_tiny``, their files and ``bench/mlperf_data.py``
#: names) by the names of ``bench/mlperf_tiny.py``.
TRAINED = {"resnet8": "resnet8", "dscnn": "dscnn", "mobilenet_v1_025": "vww",
           "autoencoder": "ad"}
TRAINED_DIR = Path(__file__).resolve().parent.parent / "models" / "mlperf_tiny"


def model_and_inputs(name: str, work: Path, images: int, trained: bool) -> tuple[Path, object]:
    """The model file and its inputs: 48 calibration inputs, then ``images`` to simulate,
    then held-out ones; the trained model with ``bench/mlperf_data.py``'s calibration and
    test inputs, or the random-weight one with its sample inputs."""
    if not trained:
        return mt.build(name, work), mt.sample_inputs(name, 48 + images + HELD_OUT)
    import numpy as np
    from mlperf_data import inputs
    short = TRAINED[name]
    test = inputs(short, "test", min(200, images + HELD_OUT))
    return TRAINED_DIR / f"{short}.onnx", np.concatenate([inputs(short, "calib", 48), test])


def run(name: str, boards: list[str], images: int, synth: dict[str, float | None], work: Path,
        bits: str = "8", trained: bool = False, scheduler: str | None = None,
        router: str = DEFAULT_ROUTER) -> list[dict]:
    work.mkdir(parents=True, exist_ok=True)
    path, x = model_and_inputs(name, work, images, trained)
    exported = dynfix.inputs.load_model(str(path)).summary()      # as exported, unlowered
    t0 = time.perf_counter()
    q = dynfix.quantize(str(path), calib=x[:48], bits=bits)
    quant_s = time.perf_counter() - t0
    fid = {}
    if shows_fidelity(bits):
        f = dynfix.evaluate(str(path), data=x[48 + images:], quant=q, metric="sqnr")
        fid = {"sqnr_db": f.sqnr_db,             # top-1 agreement: classifiers only
               "agreement": f.agreement if f.output == "classes" else None}
    rows, jobs = [], []
    for board in boards:
        row = {"model": name, "board": board, "params": exported["total_params"],
               "macs": exported["total_macs"], "quantize_s": round(quant_s, 1), **fid}
        rows.append(row)
        try:
            g = dynfix.generate(q, work / f"{name}_{board}", board=board)
        except DynfixError as e:
            row["error"] = str(e)
            continue
        cfg, est = g.config, g.estimate
        s = dynfix.simulate(g, data=x[48:48 + images], images=images, simulator="verilator")
        model_cycles = [r["cycles"] for r in est["layers"]]
        row.update(engine=cfg.summary(), products=cfg.multipliers, dsps=cfg.dsp_blocks,
                   cycles=est["compute_cycles"], per_image=est["cycles_per_image"],
                   utilization=est["utilization"], mismatches=s.mismatches, images=s.n,
                   cycles_exact=all(lc == model_cycles for lc in s.layer_cycles),
                   kinds=kind_utilization(g.estimate, cfg.multipliers),
                   memories=g.fit.chosen.estimate.memories,
                   bulk_bytes=est.get("bulk_bytes"),
                   fmap_words=cfg.fmap_depth, weight_words=cfg.weight_depth,
                   weights_stored=cfg.weight_depth * cfg.multipliers)
        print(f"{name} on {board}: {row['engine']}, {row['cycles']} cycles, "
              f"{row['utilization']:.1%}, {row['mismatches']} mismatches", flush=True)
        key = f"{name} {board} {bits}" + (" trained" if trained else "")
        if "all" in synth or f"{name}:{board}" in synth:
            jobs.append((row, SynthJob(name, board, key, g, synth.get(f"{name}:{board}"),
                                       router)))
        else:
            add_clock(row, cached_row(g, board, key), read_synth_cache().get(key))
    # The builds of this model's boards at once, on the cluster's workers.
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        done = {pool.submit(sweep_synth, job, path, x, bits, work, scheduler): row
                for row, job in jobs}
        for fut, row in done.items():
            try:
                add_clock(row, fut.result())
            except DynfixError as e:        # e.g. the placer finds the estimate too low
                row["error"] = f"synthesis failed: {e}"
    return rows


def add_clock(row: dict, r: dict | None, earlier: dict | None = None) -> None:
    """The row's clock and latency: its synthesized build's (``r``); else, as an estimate,
    the clock of an earlier build of the model's engine on the board (``earlier``: the
    cache entry of another build plan, an earlier version of the engine; its PLL clock if
    it met timing, else its Fmax), or the board's digits engine's clock."""
    if r is not None:
        # Entries from before the PLL: a bitstream at the oscillator and its Fmax.
        row.update(fmax=r["fmax"], clock=r.get("clock"), fmax_src="this engine",
                   luts=r["luts"], brams=r["brams"], dsps_used=r["dsps_used"],
                   router=r.get("router"))
    elif earlier is not None and earlier.get("fmax"):
        met = earlier.get("timing_met") and earlier.get("clock")
        row.update(fmax=earlier["clock"] if met else earlier["fmax"], clock=None,
                   fmax_src="earlier build", earlier_pll=bool(met))
    else:
        row.update(fmax=recorded_clock()[row["board"]], clock=None, fmax_src="digits engine")
    row["latency_ms"] = row["per_image"] / ((row["clock"] or row["fmax"]) * 1e3)


def memory_text(memories: dict[str, str]) -> str:
    """``fmap 8000 x 16: 1 SPRAMs`` -> ``fmap 1 SPRAM``, joined."""
    parts = []
    for name, desc in memories.items():
        where = desc.split(": ", 1)[-1].replace("SPRAMs", "SPRAM").replace("blocks", "BRAM")
        parts.append(f"{name} {where}")
    return ", ".join(parts)


def table(rows: list[dict], images: int, command: str, bits: str = "8",
          trained: bool = False) -> list[str]:
    width = "8-bit" if bits == "8" else f"`--bits {bits}`"
    weights = ("The trained weights (`models/mlperf_tiny`, calibration and test inputs of "
               "`bench/mlperf_data.py`)" if trained
               else "Random weights (seeded, `bench/mlperf_tiny.py`)")
    lines = ["# MLPerf Tiny reference models on generated engines", "",
             f"{weights}, greedy {width} quantization, the "
             "fastest engine `--board` fits, a few inputs through the generated Verilog in "
             "Verilator against the integer model. Cycles are the engine's own counters (the "
             "cycle model agrees exactly where marked). Latency = cycles per inference "
             "(compute + image load + output unload) / the clock the bitstream runs at "
             "(`dynfix synth`'s timing closure on the board's PLL); where this engine has no "
             "such bitstream, at the clock of an earlier build of the model's engine, or of "
             "the board's digits engine, labelled *estimate*. Reproduce: "
             f"`{command}`.", ""]
    fid = shows_fidelity(bits)
    head = ["model", "board", "params", "MACs", *(["SQNR / agreement vs float"] if fid else []),
            "engine (products / DSP blocks)", "memories", "cycles", "utilization",
            "by layer kind", "bit-exact", "clock MHz (Fmax)", "latency",
            "published FPGA results"]
    body = []
    for r in rows:
        pub = "; ".join(f"{who}: {ms:g} ms" for who, ms in PUBLISHED.get(r["model"], []))
        first = [r["model"], r["board"], f"{r['params']:,}", f"{r['macs']:,}"]
        if fid:
            first.append(f"{r['sqnr_db']:.1f} dB" + (f" / {r['agreement']:.1%}"
                                                      if r["agreement"] is not None else ""))
        if "error" in r:
            failed = r["error"].startswith("synthesis failed")
            body.append([*first, ("**synthesis failed**: " if failed else "**does not fit**: ")
                         + r["error"].split(": ", 1)[-1], "", "",
                         "", "", "", "", "", pub])
            continue
        kinds = ", ".join(f"{k} {v:.0%}" for k, v in sorted(r["kinds"].items()))
        exact = (f"{r['images']} inputs, {r['mismatches']} mismatches"
                 + ("; cycles = model" if r["cycles_exact"] else "; **cycles differ**"))
        if r.get("clock"):
            fmax = (f"{r['clock']:.2f} PLL (Fmax {r['fmax']:.1f}; {r['luts']:,} LUTs"
                    + (f"; nextpnr {r['router']}" if r.get("router") else "") + ")")
        elif r["fmax_src"] == "this engine":
            fmax = f"Fmax {r['fmax']:.1f} of an oscillator build ({r['luts']:,} LUTs)"
        elif r["fmax_src"] == "earlier build":
            fmax = (f"{r['fmax']:.1f}, an earlier build's "
                    + ("PLL clock" if r["earlier_pll"] else "Fmax"))
        else:
            fmax = f"{r['fmax']:.1f}, the digits engine's"
        latency = f"{r['latency_ms']:.2f} ms" + ("" if r.get("clock") else " (estimate)")
        body.append([*first, f"{r['engine']} ({r['products']} / {r['dsps']})",
                     memory_text(r.get("memories") or {})
                     + (f"; {r['bulk_bytes']:,} bytes of weights from bulk memory per "
                        f"inference" if r.get("bulk_bytes") else ""), f"{r['cycles']:,}",
                     f"{r['utilization']:.1%}", kinds, exact, fmax, latency, pub])
    lines += md_table(head, body)
    lines += ["", "Params and MACs are the exported model's. dynfix folds the global average "
              "pool into the Linear after it (`docs/arithmetic.md`) and stores that layer's "
              "weights once (shared taps, `docs/engine.md`); the utilization counts the "
              "folded Linear's MACs (H x W times the FC's: +0.3 % of ResNet-8's MACs, +3.6 % "
              "of DS-CNN's, +0.05 % of MobileNet's). Square depthwise layers run on the "
              "engine's depthwise window (`dw window 3x3` in the engine column, "
              "`docs/engine.md`) when `tm` divides the lanes and the 9 taps fit them; "
              "others at most 1 / max(tm, lanes) of peak. A stride-2 depthwise layer "
              "(`dwconv/2`) must read every input pixel once, one map word per cycle, and "
              "each value serves 9 / 4 output pixels on average: its ceiling is "
              "9 / (4 tm) of the products.", ""]
    synthesized = [r for r in rows if r.get("fmax_src") == "this engine"]
    if synthesized:
        lines += ["Clock and Fmax are this engine's on its board top (host link included) "
                  "through yowasp yosys and nextpnr with the default seed; the figures are "
                  "kept in `mlperf_synth.json` under the build plan's digest and reused while "
                  "the build stays the same (source-location attributes aside). An "
                  "oscillator build's Fmax is what a rebuild on the PLL is expected near, "
                  "not a bitstream's clock: `--synth model:board` rebuilds it.", ""]
    if any(r.get("fmax_src") == "earlier build" for r in rows):
        lines += [EARLIER_NOTE, ""]
    if any(r.get("fmax_src") == "digits engine" for r in rows):
        lines += [WIDE_NOTE, ""]
    return lines


#: Said under a table with a row at the digits engine's Fmax (``docs/boards.md`` has the
#: wide engines' synthesized clocks).
WIDE_NOTE = ("A row at the digits engine's clock has not been synthesized: that clock is "
             "optimistic for a wider engine, whose lane-width paths (the map word across the "
             "lanes, the shortcut's lane pick) are longer. Pass `--synth model:board` for the "
             "row's own clock.")


#: Said under a table with a row at an earlier build's clock.
EARLIER_NOTE = ("A row at an earlier build's clock has not been synthesized in this version: "
                "the clock is that of the last build of the model's engine on the board "
                "(`mlperf_synth.json`; its PLL clock where it met timing, else its Fmax), "
                "whose netlist has changed since. Pass `--synth model:board` for the row's "
                "own clock.")


def synth_pair(text: str) -> tuple[str, float | None]:
    """``model:board`` -> (``model:board``, None); ``model:board@MHZ`` -> the first clock."""
    pair, _, mhz = text.partition("@")
    try:
        return pair, float(mhz) if mhz else None
    except ValueError:
        raise SystemExit(f"--synth: {text!r} is model:board or model:board@MHZ") from None


@contextmanager
def build_cluster(args, synth: dict) -> Iterator[str | None]:
    """The address of the Dask scheduler the builds go to: ``--scheduler``, or a local
    cluster of ``--workers`` processes (one thread each) while there is something to
    synthesize; ``None`` when nothing is."""
    if args.scheduler or not synth:
        yield args.scheduler
        return
    from distributed import LocalCluster
    with LocalCluster(n_workers=args.workers or os.cpu_count() or 1, threads_per_worker=1,
                      processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=",".join(mt.MODELS))
    ap.add_argument("--boards", default=",".join(BOARDS))
    ap.add_argument("--output", default="mlperf_tiny.md", help="file in bench/results")
    ap.add_argument("--images", type=int, default=2)
    ap.add_argument("--synth", default="",
                    help="model:board pairs to synthesize (model:board@MHZ: first at the "
                         "PLL's clock at or below MHZ), or all")
    ap.add_argument("--router", choices=ROUTERS, default=DEFAULT_ROUTER,
                    help="nextpnr's router for the --synth builds (router2: for placements "
                         "router1 leaves congested, docs/boards.md, \"Routing\")")
    ap.add_argument("--bits", default="8", help="quantization widths (e.g. 8/4/4)")
    ap.add_argument("--weights", choices=("random", "trained"), default="random",
                    help="the models' weights: random (seeded) or the trained ones")
    ap.add_argument("--scheduler", default=None,
                    help="the Dask scheduler the builds run on (default: a local cluster)")
    ap.add_argument("--workers", type=int, default=None,
                    help="the local cluster's worker processes (default: the cores)")
    ap.add_argument("--work", default=None,
                    help="folder of the model files, designs and sweeps (default: temporary)")
    args = ap.parse_args()
    rows = []
    trained = args.weights == "trained"
    synth = dict(synth_pair(p) for p in filter(None, args.synth.split(",")))
    with tempfile.TemporaryDirectory() as tmp, build_cluster(args, synth) as scheduler:
        work = Path(args.work or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        for name in args.models.split(","):
            rows += run(name, args.boards.split(","), args.images, synth, work / name,
                        args.bits, trained, scheduler, args.router)
    command = " ".join(["python bench/mlperf_engine.py", *sys.argv[1:]])
    write_result(args.output, table(rows, args.images, command, args.bits, trained))


if __name__ == "__main__":
    main()
