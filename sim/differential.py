"""Differential runs of random networks (:mod:`dynfix.sim.random_nets`) on one engine build.

:func:`run_cases` compiles every case for a fixed engine configuration (explicit width and
depth bounds, so all cases share one Verilog), builds that Verilog once, runs every case as
one step of a single simulator process (its program, weights, biases and images reloaded in
bulk), and compares each case's outputs with the integer model. A failing case is replayed
with truncated programs to name the first differing layer and coordinate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from dynfix.errors import DynfixError
from dynfix.hw.compiler import compile_model
from dynfix.hw.config import CHOICE_KEYS, BulkStore, EngineConfig
from dynfix.hw.cycle_model import estimate
from dynfix.hw.generate import TOP_NAME, engine_verilog
from .harness import HostParams, hex_values
from .random_nets import Case, case_for, fitting_case
from .scoreboard import first_difference
from .simulate import boot_files, group_maps, host_stream, locate, memory_files, reload_mask
from .simulators import Simulator


@dataclass
class CaseResult:
    seed: int
    summary: str
    ok: bool
    where: str = ""
    cycles: int = 0


@dataclass
class RunStats:
    cases: int
    images: int
    sim_cycles: int
    sim_seconds: float
    build_seconds: float
    wall_seconds: float


def run_cases(cfg: EngineConfig, seeds: list[int], build_dir: str | Path, sim: str = "icarus",
              images: int = 2) -> tuple[list[CaseResult], RunStats]:
    """Run the random case of every seed (see :func:`~dynfix.sim.random_nets.fitting_case`)
    on one ``cfg`` build; returns one result per case and the run's statistics."""
    t0 = time.perf_counter()
    build_dir = Path(build_dir).resolve()
    compiled = [fitting_case(s, cfg, images) for s in seeds]
    traces = [case.reference() for case, _ in compiled]
    first_cm = compiled[0][1]
    fitted = first_cm.config
    differ = [case.seed for case, cm in compiled if cm.config != fitted]
    if differ:      # one Verilog for all: every case must compile to the same engine
        raise DynfixError(f"random cases {differ} compile to another engine than seed "
                          f"{compiled[0][0].seed} on {cfg.summary()}: bound the config's "
                          f"fitted fields")
    verilog = build_dir / f"{TOP_NAME}.v"
    build_dir.mkdir(parents=True, exist_ok=True)
    verilog.write_text(engine_verilog(first_cm))
    streams = [np.stack([host_stream(cm, a) for a in case.xq]) for case, cm in compiled]
    in_len = max(st.shape[1] for st in streams)
    out_len = max(int(ref.size // images) for (_, cm), tr in zip(compiled, traces)
                  for _, ref in group_maps(cm, tr))
    params = HostParams.for_engine(fitted, in_len, out_len, fitted.prog_depth, images)
    simulator = Simulator(verilog, params, build_dir / sim, sim)
    simulator.build()
    steps = []
    for k, ((case, cm), tr, st) in enumerate(zip(compiled, traces, streams)):
        folder = simulator.build_dir / "cases" / f"{k:04d}"
        files = memory_files(cm, folder)
        (folder / "images.hex").write_text(hex_values(st.reshape(-1), fitted.data_bits))
        files["images.hex"] = str(folder / "images.hex")
        steps.append({"files": files, "reload": reload_mask(files), "images": images,
                      "in_len": int(st.shape[1]), "out_len": cm.output_len,
                      "n_layers": len(cm.plans)})
    results = simulator.run(steps, tag="cases")
    out = []
    for (case, cm), tr, res in zip(compiled, traces, results):
        want = tr[cm.output_name].reshape(images, -1)
        bad = [i for i, r in enumerate(res["images"])
               if first_difference(cm.output_name, r["outputs"], want[i]) is not None]
        where = ""
        if bad:
            i = bad[0]
            d = locate(simulator, cm, case.xq[i:i + 1], {k: v[i:i + 1] for k, v in tr.items()},
                       simulator.build_dir / f"locate_{case.seed}")
            where = f"image {i}: " + (str(d) if d else "only in the whole run")
        slip = cycle_slip(cm, res["images"], bound=cm.config.bulk_store is BulkStore.SDRAM)
        out.append(CaseResult(case.seed, case.summary, not bad and not slip, where or slip,
                              int(res["images"][0]["cycles"])))
    stats = RunStats(len(compiled), len(compiled) * images,
                     sum(r["sim_cycles"] for r in results),
                     sum(r["seconds"] for r in results), simulator.build_seconds,
                     time.perf_counter() - t0)
    return out, stats


def run_fitted(parallel: EngineConfig, seed: int, build_dir: str | Path, sim: str = "icarus",
               images: int = 2, bulk_stall: bool = False) -> CaseResult:
    """One random case on an engine fitted to it (widths and depths as tight as the
    compiler makes them, memories initialised in the Verilog: no reload), against the
    integer model. With ``bulk_stall`` (an engine with ``w_bulk``) the wrapper's bulk
    memory stalls at pseudo-random cycles: the results must stay exact, and the cycle
    model (of a memory that does not stall) is then a lower bound of every counter."""
    bare = replace(parallel, **{f.name: 0 for f in fields(EngineConfig)
                                if f.name not in CHOICE_KEYS})
    case = case_for(seed, parallel, images)
    cm = compile_model(case.model, case.spec, bare)
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    verilog = build_dir / f"{TOP_NAME}.v"
    verilog.write_text(engine_verilog(cm))
    stream = np.stack([host_stream(cm, a) for a in case.xq])
    tr = case.reference()
    out_len = max(int(ref[0].size) for _, ref in group_maps(cm, tr))
    params = HostParams.for_engine(cm.config, stream.shape[1], out_len, len(cm.plans), images)
    simulator = Simulator(verilog, replace(params, bulk_stall=bulk_stall), build_dir / sim, sim)
    (build_dir / "images.hex").write_text(hex_values(stream.reshape(-1), cm.config.data_bits))
    files = {"images.hex": str(build_dir / "images.hex"), **boot_files(cm, build_dir / "boot")}
    [res] = simulator.run([{"files": files, "reload": reload_mask(files), "images": images,
                            "out_len": cm.output_len, "n_layers": len(cm.plans)}])
    want = tr[cm.output_name].reshape(images, -1)
    diffs = [first_difference(cm.output_name, r["outputs"], want[i])
             for i, r in enumerate(res["images"])]
    bad = [(i, d) for i, d in enumerate(diffs) if d is not None]
    where = f"image {bad[0][0]}: {bad[0][1]}" if bad else ""
    slip = cycle_slip(cm, res["images"],
                      bound=bulk_stall or cm.config.bulk_store is BulkStore.SDRAM)
    return CaseResult(seed, case.summary + f" (fitted {cm.config.to_dict()})",
                      not bad and not slip, where or slip, int(res["images"][0]["cycles"]))


def cycle_slip(cm, images: list[dict], bound: bool = False) -> str:
    """Where the engine's cycle counters differ from the analytic cycle model ("" if
    nowhere): the model must be exact, per layer and in total; with ``bound`` (a bulk
    memory slower than the model's) it must not exceed any counter."""
    est = estimate(cm)
    want = [row["cycles"] for row in est["layers"]]
    for i, r in enumerate(images):
        got = [int(c) for c in r["layer_cycles"]]
        if bound:
            if any(g < w for g, w in zip(got, want)):
                return (f"image {i}: cycle counters {got} below the cycle model's lower "
                        f"bound {want}")
        elif int(r["cycles"]) != est["compute_cycles"] or got != want:
            return (f"image {i}: cycle counters {got} (total {int(r['cycles'])}) != cycle "
                    f"model {want} (total {est['compute_cycles']})")
    return ""


__all__ = ["Case", "CaseResult", "RunStats", "run_cases", "run_fitted"]
