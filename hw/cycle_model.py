"""Analytic cycle model of the engine (what the controller and sequencer do, counted)."""

from __future__ import annotations

from .compiler import CompiledModel, LayerPlan, window_items
from .config import EngineConfig
from .timing import pipeline_depth, write_delay

#: Controller cycles per layer besides issuing: program fetch (2) and sequencer start (1).
LAYER_OVERHEAD = 3
#: Output stream: a read, a register, a hand-over per value (host always ready).
UNLOAD_CYCLES_PER_VALUE = 3


def issue_cycles(cfg: EngineConfig, plan: LayerPlan) -> int:
    """One cycle per (output-channel group, conv pixel, kernel tap, input word), plus a
    residual group's shortcut slots per output pixel and the write-back's ``gap`` idle
    cycles after every pooling window but the last; with a single-port map memory
    (``m_spram``) also the cycles the sequencer holds for the write-back before its last
    item (:func:`held_issue_cycles`)."""
    e = plan.entry
    windows = e["n_mg"] * e["n_py"] * e["n_px"]
    if cfg.m_spram:
        return held_issue_cycles(windows, window_items(plan, cfg), e["gap"],
                                 write_delay(cfg), cfg.wb_words)
    return windows * window_items(plan, cfg) + (windows - 1) * e["gap"]


def held_issue_cycles(windows: int, items: int, gap: int, delay: int, words: int) -> int:
    """Issue cycles of ``windows`` pooling windows of ``items`` items, ``gap`` rest cycles
    between them, when every window's end makes the sequencer hold ``words`` cycles, from
    ``delay`` cycles after that end (the write-back's writes). A hold freezes items, slots
    and rest cycles alike, so it always costs exactly ``words`` cycles when it falls before
    the last item, and nothing after it.

    Window by window: the last item lands ``items`` (+ ``gap``) working cycles after the
    previous one, later by ``words`` for each hold that starts before it. The pattern of
    pending holds relative to the last window end repeats after a few windows (it depends
    only on that relative pattern); from the first repeat on the rest is extrapolated."""
    end = -1                            # cycle of the last window's last item
    pending: list[int] = []             # start cycles of holds not yet passed
    seen: dict[tuple[int, ...], tuple[int, int]] = {}
    i = 0
    while i < windows:
        key = tuple(b - end for b in pending)
        if key in seen:
            j, end_j = seen[key]
            period, cycles = i - j, end - end_j
            jumps = (windows - i) // period
            if jumps:
                end += jumps * cycles
                pending = [b + jumps * cycles for b in pending]
                i += jumps * period
                seen = {}
                continue
        if i:                           # window 0 has no rest cycles before it
            seen[key] = (i, end)
        last = end + items + (gap if i else 0)
        while pending and pending[0] <= last:
            pending.pop(0)
            last += words
        end = last
        pending.append(end + delay)
        i += 1
    return end + 1


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
