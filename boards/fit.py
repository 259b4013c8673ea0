"""Fit an engine to a board: the fastest configuration whose estimated resources fit.

The engine's parallelism is ``lanes = tn * k * k`` products per output channel and ``tm``
output channels (``k`` only counts lanes, so candidates use ``k = 1, tn = lanes``). Candidates
have ``tm`` dividing ``lanes`` and no more multipliers than the board has DSP blocks (yosys
maps every product to a hard multiplier; one it cannot place fails the build); twice that
many are compiled too, to name the limit. Each candidate is compiled for the model (which fixes
its widths and memory depths), timed with the analytic cycle model and sized with
:func:`dynfix.hw.resources.estimate`. The fastest one that fits wins (ties: fewer multipliers,
then fewer LUTs), and the result says which resource stopped the next faster candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dynfix.boards.registry import Board
from dynfix.errors import DynfixError
from dynfix.hw.config import EngineConfig
from dynfix.hw.resources import Device, Estimate, Usage, estimate

#: Share of a board's LUTs and FFs the fitter may plan for (placement and timing headroom).
LOGIC_HEADROOM = 0.85

RESOURCE_NAMES = {"dsps": "DSP blocks", "brams": "block RAMs", "luts": "LUTs", "ffs": "FFs"}


@dataclass
class Candidate:
    config: EngineConfig            # fitted (widths and depths set)
    cycles: int
    estimate: Estimate
    over: dict[str, tuple[int, int]] = field(default_factory=dict)   # needed, available

    @property
    def fits(self) -> bool:
        return not self.over


@dataclass
class FitResult:
    board: str
    chosen: Candidate
    limit: str                      # what stopped a faster configuration
    considered: int

    def to_dict(self) -> dict:
        c = self.chosen
        return {"board": self.board, "k": c.config.k, "tn": c.config.tn, "tm": c.config.tm,
                "multipliers": c.config.multipliers, "cycles_per_image": c.cycles,
                "estimate": c.estimate.to_dict(), "limited_by": self.limit,
                "considered": self.considered}


def limits(board: Board) -> dict[str, int]:
    return {"dsps": board.dsp.blocks, "brams": board.bram.blocks,
            "luts": int(board.luts * LOGIC_HEADROOM), "ffs": int(board.ffs * LOGIC_HEADROOM)}


def check_usage(use: Usage, board: Board) -> dict[str, tuple[int, int]]:
    """Resources ``use`` needs beyond what ``board`` offers: ``{name: (needed, available)}``."""
    need = use.rounded()
    return {key: (need[key], avail) for key, avail in limits(board).items()
            if need[key] > avail}


def candidates(model, max_mults: int):
    """``(lanes, tm)`` pairs worth compiling: ``tm`` divides ``lanes``, at most ``max_mults``
    products, ``tm`` no more than the widest layer's output channels, and ``lanes`` no more
    than the widest layer's input channels rounded up to a multiple of ``tm`` (more lanes
    than channels only idle)."""
    from dynfix.hw.compiler import plan_groups
    plans, _ = plan_groups(model)
    max_c = max(p.in_shape[0] for p in plans)
    max_m = max(p.out_shape[0] for p in plans)
    for tm in range(1, min(max_m, max_mults) + 1):
        cap = min(max_mults // tm, -(-max_c // tm) * tm)
        for lanes in range(tm, cap + 1, tm):
            yield lanes, tm


def evaluate_config(model, spec, cfg: EngineConfig, board: Board) -> Candidate:
    from dynfix.hw.compiler import compile_model
    from dynfix.hw.cycle_model import estimate as cycle_estimate

    cm = compile_model(model, spec, cfg)
    est = estimate(cm.config, Device.from_board(board))
    return Candidate(cm.config, cycle_estimate(cm)["cycles_per_image"], est,
                     check_usage(est.total, board))


def describe_over(over: dict[str, tuple[int, int]]) -> str:
    return ", ".join(f"{RESOURCE_NAMES[k]} {need} > {avail}" for k, (need, avail) in
                     sorted(over.items()))


def fit(model, spec, board: Board) -> FitResult:
    """Choose the fastest engine for ``model`` quantized as ``spec`` that fits ``board``."""
    evaluated: list[Candidate] = []
    smallest = evaluate_config(model, spec, EngineConfig(k=1, tn=1, tm=1), board)
    if not smallest.fits:
        raise DynfixError(f"{model.name} does not fit {board.name} even with the smallest "
                          f"engine (1 multiplier): needs {describe_over(smallest.over)}"
                          f"{_memory_note(smallest, board)}")
    # Up to twice the DSP blocks, so that a DSP limit shows up as a faster, non-fitting engine.
    for lanes, tm in candidates(model, 2 * max(1, board.dsp.blocks)):
        evaluated.append(evaluate_config(model, spec, EngineConfig(k=1, tn=lanes, tm=tm),
                                         board))

    def key(c: Candidate):
        return (c.cycles, c.config.multipliers, c.estimate.total.luts)

    fitting = [c for c in evaluated if c.fits]
    best = min(fitting, key=key)
    faster = sorted((c for c in evaluated if not c.fits and key(c) < key(best)), key=key)
    if faster:
        limit = (f"{describe_over(faster[0].over)} for the next faster engine "
                 f"(k={faster[0].config.k} tn={faster[0].config.tn} tm={faster[0].config.tm},"
                 f" {faster[0].cycles} cycles)")
    else:
        limit = "the model: more parallelism does not make it faster"
    return FitResult(board.name, best, limit, len(evaluated))


def _memory_note(c: Candidate, board: Board) -> str:
    if "brams" not in c.over:
        return ""
    from dynfix.hw.resources import engine_memories
    kbit = {m.name: m.depth * m.width / 1024 for m in engine_memories(c.config)}
    parts = [f"{name} {desc} ({kbit[name]:.0f} kbit)"
             for name, desc in c.estimate.memories.items() if "blocks" in desc]
    return (f" (memories: {'; '.join(parts)}; the board has {board.bram.blocks} x "
            f"{board.bram.bits // 1024} kbit = {board.bram.total_bits // 1024} kbit)")


def check_generated_fits(gen, board: Board) -> Estimate:
    """Before synthesis: the engine in a ``dynfix generate`` folder must fit ``board``."""
    from dataclasses import fields
    names = {f.name for f in fields(EngineConfig)}
    cfg = EngineConfig(**{k: v for k, v in gen.engine.items() if k in names})
    est = estimate(cfg, Device.from_board(board))
    over = check_usage(est.total, board)
    if over:
        raise DynfixError(f"the engine in {gen.folder} (k={cfg.k} tn={cfg.tn} tm={cfg.tm}, "
                          f"{cfg.multipliers} multipliers) does not fit {board.name}: needs "
                          f"{describe_over(over)}; generate it for this board")
    return est
