"""Analytic cycle model of the engine (what the controller and sequencer do, counted)."""

from __future__ import annotations

from .compiler import CompiledModel, LayerPlan, window_items
from .config import EngineConfig
from .engine import pipeline_depth

#: Controller cycles per layer besides issuing: program fetch (2) and sequencer start (1).
LAYER_OVERHEAD = 3
#: Output stream: a read, a register, a hand-over per value (host always ready).
UNLOAD_CYCLES_PER_VALUE = 3


def issue_cycles(cfg: EngineConfig, plan: LayerPlan) -> int:
    """One cycle per (output-channel group, conv pixel, kernel tap, input word), plus a
    residual group's shortcut slots per output pixel and the write-back's ``gap`` idle
    cycles after every pooling window but the last."""
    e = plan.entry
    windows = e["n_mg"] * e["n_py"] * e["n_px"]
    return windows * window_items(plan, cfg) + (windows - 1) * e["gap"]


def layer_cycles(cfg: EngineConfig, plan: LayerPlan) -> int:
    """Cycles the engine's per-layer counter reports: fetch, issue, pipeline drain."""
    return LAYER_OVERHEAD + issue_cycles(cfg, plan) + pipeline_depth(cfg)


def estimate(cm: CompiledModel) -> dict:
    """Per-layer and total cycles and MAC utilization for one image."""
    cfg = cm.config
    layers = []
    for p in cm.plans:
        cyc = layer_cycles(cfg, p)
        layers.append({"name": p.name, "kind": p.kind, "in_shape": list(p.in_shape),
                       "out_shape": list(p.out_shape), "kernel": list(p.kernel),
                       "stride": list(p.stride), "pool": p.pool, "macs": p.macs,
                       "residual": p.add.name if p.add is not None else None,
                       "cycles": cyc,
                       "utilization": round(p.macs / (cyc * cfg.multipliers), 4)})
    compute = sum(r["cycles"] for r in layers)
    load = cm.input_shape[0] * cm.input_shape[1] * cm.input_shape[2]
    unload = UNLOAD_CYCLES_PER_VALUE * cm.output_len
    macs = sum(p.macs for p in cm.plans)
    return {"cycles_per_image": compute + load + unload, "compute_cycles": compute,
            "load_cycles": load, "unload_cycles": unload, "macs": macs,
            "utilization": round(macs / (compute * cfg.multipliers), 4), "layers": layers}
