"""Fit an engine to a board: the fastest configuration whose estimated resources fit.

The engine's parallelism is ``lanes = tn * k * k`` products per output channel and ``tm``
output channels (``k`` only counts lanes, so candidates use ``k = 1, tn = lanes``). Every
``(lanes, tm)`` pair up to twice the board's DSP blocks, with and without ``im2col`` (the
host streams the first conv's windows: fewer compute cycles, a longer image load), is timed
with the analytic cycle model on the shape-only plan (cheap), keeping for each pass count the
narrowest width. Then, fastest
first, candidates are compiled for the model (which fixes their widths and memory depths) and
sized with :func:`dynfix.hw.resources.estimate` until one fits (ties: fewer multipliers, then
fewer LUTs). An engine with more products than DSP blocks cannot fit (yosys maps every
product to a hard multiplier); the fastest of those is compiled to name the limit, which the
result reports.

On a family whose DSP blocks compute two products of at most 8-bit operands (iCE40 SB_MAC16,
``FpgaFamily.dual_mac``) and a model whose data and weights fit that, every candidate is a
``dual_mac`` engine: two products per DSP block, so up to twice as many products fit. On a
family whose products go to registered MULT18X18D cells (ECP5, ``FpgaFamily.registered_dsp``)
and a model whose operands have at most 18 bits, every candidate is an ``ecp5_dsp`` engine
(same resources and cycles, a faster clock). On a family with ``FpgaFamily.lut_products``
(ECP5) candidates may have more products than DSP blocks: the products beyond the blocks are
computed in LUTs (``lut_products``, ``hw/lut_mul.py``), as long as the engine's LUT estimate
stays within :data:`LUT_PRODUCT_HEADROOM` of the board's LUTs. On ECP5 with narrow weights
(``packable``: 8-bit maps, at most 4-bit weights) a candidate whose products need more blocks
than the board has shares each block between two output channels' products first
(``packed_dsp``, ``hw/ecp5_packed_mul.py``), and puts only what is still left over in LUTs.
Each way past one product per block is fitted on its own, and the fastest engine that needs
at most 1 / :data:`LUT_PRODUCT_MIN_SPEEDUP` of the cycles of every narrower one wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from dynfix.boards.board_top import bulk_cells, bulk_store_refusal, usage as board_top_usage
from dynfix.boards.flash_image import PAYLOAD_BYTES
from dynfix.boards.registry import Board
from dynfix.errors import DynfixError
from dynfix.hw.compiler import compile_model, plan_groups, plan_model
from dynfix.hw.config import BulkStore, EngineConfig, Multiplier, packable
from dynfix.hw.cycle_model import estimate as cycle_estimate, layer_cycles
from dynfix.hw.resources import (Device, Estimate, Usage, engine_memories, estimate,
                                 lut_product_usage)

#: Share of a board's LUTs an engine with products in LUTs (``lut_products``) may plan for.
#: Conservative on the OrangeCrab, but it bounds how wide an engine grows, and the wide
#: ULX3S engines lose clock on lane-width paths (docs/boards.md, "Products in LUTs", for the
#: measurements).
LUT_PRODUCT_HEADROOM = 0.6
#: How much faster (cycles per image) an engine with products in LUTs must be than the
#: fastest engine on the DSP blocks alone to be chosen: its clock is lower (docs/boards.md,
#: "Products in LUTs"). So for packed products (``packed_dsp``): an engine must be that much
#: faster than every engine with fewer products the other ways give (``fit``).
LUT_PRODUCT_MIN_SPEEDUP = 1.25

RESOURCE_NAMES = {"dsps": "DSP blocks", "brams": "block RAMs", "sprams": "SPRAMs",
                  "luts": "LUTs", "ffs": "FFs"}


@dataclass
class Candidate:
    config: EngineConfig            # fitted (widths and depths set)
    cycles: int
    estimate: Estimate
    over: dict[str, tuple[int, int]] = field(default_factory=dict)   # needed, available
    waits: int = 0                  # cycles spent waiting for weights from bulk memory

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
        return {"board": self.board, **c.config.choice(),
                "multipliers": c.config.multipliers, "dsp_blocks": c.config.dsp_blocks,
                "cycles_per_image": c.cycles,
                "estimate": c.estimate.to_dict(), "limited_by": self.limit,
                "considered": self.considered}


def limits(board: Board, lut_products: int = 0) -> dict[str, int]:
    """What an engine may use of ``board``; less of its LUTs with products in LUTs."""
    logic = board.family.logic_headroom       # placement and timing headroom
    luts = LUT_PRODUCT_HEADROOM if lut_products else logic
    return {"dsps": board.dsp.blocks, "brams": board.bram.blocks,
            "sprams": board.spram.blocks if board.spram is not None else 0,
            "luts": int(board.luts * luts), "ffs": int(board.ffs * logic)}


def check_usage(use: Usage, board: Board, lut_products: int = 0) -> dict[str, tuple[int, int]]:
    """Resources ``use`` needs beyond what ``board`` offers: ``{name: (needed, available)}``
    (an engine with ``lut_products`` gets :data:`LUT_PRODUCT_HEADROOM` of the LUTs)."""
    need = use.rounded()
    return {key: (need[key], avail) for key, avail in limits(board, lut_products).items()
            if need[key] > avail}


def useful_sizes(sizes: list[int], limit: int) -> list[int]:
    """The values ``v <= limit`` worth trying as a parallel width over dimensions ``sizes``:
    the smallest ``v`` for each number of passes ``ceil(size / v)`` (any wider ``v`` with the
    same pass counts only idles)."""
    return sorted({-(-size // t) for size in sizes for t in range(1, size + 1)
                   if -(-size // t) <= limit})


def candidates(model, max_mults: int) -> list[tuple[int, int, int, int]]:
    """``(cycles, lanes, tm, im2col)`` of every engine worth compiling, fastest first (ties:
    fewer multipliers): at most ``max_mults`` products, ``lanes`` and ``tm`` each the
    narrowest for their pass counts over the layers' input and output channels, with and
    without ``im2col`` where it applies. Cycles (compute plus the image load, which im2col
    lengthens) come from the shape-only plan and the analytic cycle model, so thousands of
    candidates cost little."""
    plans, _ = plan_groups(model)
    residual = int(any(p.add is not None for p in plans))   # its pipeline is 3 cycles longer
    lanes_set = useful_sizes([p.in_shape[0] for p in plans], max_mults)
    tm_set = useful_sizes([p.out_shape[0] for p in plans], max_mults)
    found = []
    for tm in tm_set:
        for lanes in lanes_set:
            if lanes * tm > max_mults:
                break
            for im2col in (0, 1):
                cfg = EngineConfig(tn=lanes, tm=tm, im2col=im2col, residual=residual)
                planned = plan_model(model, cfg)
                load = math.prod(planned[0].in_shape)
                if im2col and load == math.prod(plans[0].in_shape):
                    continue                    # the compiler did not apply it
                cycles = load + sum(layer_cycles(cfg, p) for p in planned)
                found.append((cycles, lanes, tm, im2col))
    return sorted(found, key=lambda c: (c[0], c[1] * c[2], c[1], c[3]))


#: Where an engine's memories go when block RAM runs short on a board with SPRAM, in order
#: of preference: the weights (costs no cycles), the maps (the write-back's holds cost a
#: few), both; then the weights in SPRAM as bulk memory (``w_bulk``: streamed tile by tile
#: into a ring in block RAM, so an engine is no longer bound to the SPRAMs' word width),
#: the bus as wide as the SPRAMs the maps leave; last the weights read from the SPI flash
#: at run time (``bulk_store: flash``, a byte per four cycles: for weights SPRAM cannot
#: hold), with the maps in block RAM or in SPRAM.
SPRAM_PLACEMENTS = ({"w_spram": 1}, {"m_spram": 1}, {"w_spram": 1, "m_spram": 1},
                    {"w_bulk": 1, "bulk_bits": 64}, {"w_bulk": 1, "bulk_bits": 32, "m_spram": 1},
                    {"w_bulk": 1, "bulk_bits": 16, "m_spram": 1},
                    {"w_bulk": 1, "bulk_bits": 8, "bulk_store": BulkStore.FLASH},
                    {"w_bulk": 1, "bulk_bits": 8, "bulk_store": BulkStore.FLASH, "m_spram": 1})


#: On a board with SDRAM (the ULX3S), where the weights go when block RAM runs short: the
#: SDRAM as bulk memory over a 16-bit port (the chip's width: a wider port moves no more).
SDRAM_PLACEMENTS = ({"w_bulk": 1, "bulk_bits": 16, "bulk_store": BulkStore.SDRAM},)


def evaluate_config(model, spec, cfg: EngineConfig, board: Board,
                    memo: dict | None = None) -> Candidate:
    """``cfg`` compiled for the model and sized for ``board``; when its block RAMs run short
    on a board with SPRAM, the same engine with its weights, maps or both in SPRAM
    (:data:`SPRAM_PLACEMENTS`), on a board with SDRAM its weights there
    (:data:`SDRAM_PLACEMENTS`): the first that fits, else the one short of the fewest block
    RAMs and SPRAMs. ``memo`` (one fit's) keeps what was evaluated: the ways past one
    product per DSP block meet the same candidates."""
    if memo is not None:
        if cfg not in memo:
            memo[cfg] = evaluate_config(model, spec, cfg, board)
        return memo[cfg]
    c = _evaluate(model, spec, cfg, board)
    placements = ((SPRAM_PLACEMENTS if board.spram is not None else ())
                  + (SDRAM_PLACEMENTS if board.sdram is not None else ()))
    if "brams" not in c.over or not placements or cfg.w_spram or cfg.m_spram or cfg.w_bulk:
        return c
    tried = [c]
    for where in placements:
        try:
            tried.append(_evaluate(model, spec, replace(cfg, **where), board))
        except DynfixError:             # e.g. a ring tile too wide for the engine's bounds
            continue
    fitting = [t for t in tried if t.fits]
    if fitting:
        return fitting[0]

    def short(t: Candidate) -> tuple[int, int]:
        return tuple(t.over.get(k, (0, 0))[0] - t.over.get(k, (0, 0))[1]
                     for k in ("brams", "sprams"))
    return min(tried, key=lambda t: (sum(short(t)), len(t.over)))


def board_estimate(cfg: EngineConfig, board: Board) -> Estimate:
    """The resource estimate of the fitted engine ``cfg`` on ``board``, with the board top
    around it (:func:`dynfix.boards.board_top.usage`): what the fit compares with the
    board's resources."""
    extra = board_top_usage(cfg.w_spram, cfg.bus_bits if cfg.w_bulk else 0, cfg.bulk_store)
    refusal = bulk_store_refusal(cfg, board)
    if refusal:
        raise DynfixError(f"the engine {refusal}")
    if cfg.w_bulk:
        words = cfg.weight_depth * cfg.word_beats   # the bulk image's bus words
        if cfg.bulk_store is BulkStore.RAM:
            # The bulk store: the image in SPRAM cells (hw/spram_axi.py).
            extra["bulk_store"] = Usage(sprams=bulk_cells(words, cfg.bus_bits))
        else:
            size = words * cfg.bus_bits // 8
            most, where = ((PAYLOAD_BYTES, "of SPI flash past the bitstream")
                           if cfg.bulk_store is BulkStore.FLASH
                           else (board.sdram.bytes, f"of {board.name}'s SDRAM"))
            if size > most:
                raise DynfixError(f"the weights ({size} bytes as the bulk image) do not fit "
                                  f"the {most} bytes {where}")
    return estimate(cfg, Device.from_board(board), extra)


def _evaluate(model, spec, cfg: EngineConfig, board: Board) -> Candidate:
    cm = compile_model(model, spec, cfg)
    est = board_estimate(cm.config, board)
    cycles = cycle_estimate(cm)
    return Candidate(cm.config, cycles["cycles_per_image"], est,
                     check_usage(est.total, board, cm.config.lut_products),
                     sum(row.get("waits", 0) for row in cycles["layers"]))


def describe_over(over: dict[str, tuple[int, int]]) -> str:
    return ", ".join(f"{RESOURCE_NAMES[k]} {need} > {avail}" for k, (need, avail) in
                     sorted(over.items()))


def fit(model, spec, board: Board) -> FitResult:
    """Choose the fastest engine for ``model`` quantized as ``spec`` that fits ``board``."""
    memo: dict[EngineConfig, Candidate] = {}
    smallest = evaluate_config(model, spec, EngineConfig(tn=1, tm=1), board, memo)
    if "sprams" in smallest.over and smallest.config.weight_bits <= 8:
        # One 8-bit weight per word leaves half of each 16-bit SPRAM word empty: two fill it.
        smallest = evaluate_config(model, spec, EngineConfig(tn=2, tm=1), board, memo)
    if not smallest.fits:
        m = smallest.config.multipliers
        raise DynfixError(f"{model.name} does not fit {board.name} even with the smallest "
                          f"engine ({m} multiplier{'s' if m > 1 else ''}): needs "
                          f"{describe_over(smallest.over)}"
                          f"{_memory_note(smallest, board)}")
    backend = (Multiplier.ICE40_DUAL if dual_mac_fits(smallest.config, board)
               else Multiplier.ECP5 if ecp5_dsp_fits(smallest.config, board)
               else Multiplier.FABRIC)
    pack = int(packed_dsp_fits(smallest.config, board))
    lut = int(board.family.lut_products)
    # The ways past one product per DSP block (``found``, keyed (packed, LUT products): none,
    # packed pairs, LUT products, both) are each fitted on their own (a packed engine cannot have the depthwise window,
    # so LUT products alone may give the faster engine). Their extra products cost clock
    # (longer routes, wider lane multiplexers): an engine is only worth its products when
    # it needs at most 1 / LUT_PRODUCT_MIN_SPEEDUP of the cycles of every way's engine with
    # fewer products; the fastest such engine wins (then the fewest LUTs).
    found = {v: _fastest(model, spec, board, smallest, backend, *v, memo=memo)
             for v in sorted({(0, 0), (pack, 0), (0, lut), (pack, lut)})}
    worth = [v for v, (c, _) in found.items()
             if v == (0, 0) or all(c.cycles * LUT_PRODUCT_MIN_SPEEDUP <= u.cycles
                                   for u, _ in found.values()
                                   if u.config.multipliers < c.config.multipliers)]
    choice = min(worth, key=lambda v: (found[v][0].cycles, found[v][0].estimate.total.luts, v))
    best, evaluated = found[choice]
    # The faster engines not worth their products: named in the limit, and what stopped
    # their own faster candidates is no limit of this engine's.
    faster = [v for v in found if found[v][0].cycles < best.cycles]
    refused = sorted((found[v][0] for v in faster), key=lambda c: (c.cycles, _uses(c.config)))
    evaluated = list(evaluated) + [c for v in faster for c in found[v][1]
                                   if _uses(c.config) != _uses(best.config)]
    lut_note = ""
    if refused:
        c = refused[0]
        what = " and ".join(name for name, on in (("packed products", c.config.packed_dsp),
                                                  ("products in LUTs", c.config.lut_products))
                            if on)
        lut_note = (f"; {what}: the fastest such engine ({c.config.summary()}, {c.cycles} "
                    f"cycles) is not {LUT_PRODUCT_MIN_SPEEDUP}x as fast")

    def key(c: Candidate):
        return (c.cycles, c.config.multipliers, c.estimate.total.luts)

    # What stopped the nearest faster engine, and the fastest one tried when that is another
    # (it may need more DSP blocks while the one just faster runs out of LUTs).
    faster = sorted((c for c in evaluated if not c.fits and key(c) < key(best)), key=key)
    if faster:
        named = [("next faster engine", faster[-1])] + (
            [("fastest tried", faster[0])] if len(faster) > 1 else [])
        limit = "; ".join(f"{describe_over(c.over)} for the {what} ({c.config.summary()}, "
                          f"{c.cycles} cycles)" for what, c in named)
    else:
        limit = "the model: more parallelism does not make it faster"
    lean = _leanest(model, spec, board, best, backend, memo)
    bound = (f"the bulk memory's bandwidth: {best.config.summary()} waits {best.waits} of "
             f"its {best.cycles} cycles for weights, and ")
    if lean is not None:
        n = lean.config.multipliers
        limit = bound + f"{n} product{'s are' if n > 1 else ' is'} as fast"
        best = lean
    elif best.config.w_bulk and best.waits >= BANDWIDTH_BOUND * best.cycles:
        limit = bound + "no engine with more products that fits is faster"
    return FitResult(board.name, best, limit + lut_note, len(evaluated))


#: An engine whose weights come from bulk memory and that waits for them at least this
#: share of its cycles is bound by the memory's bandwidth (:func:`_leanest`).
BANDWIDTH_BOUND = 0.5
#: ... and a smaller engine within this share of its cycles is as fast.
AS_FAST = 0.01
#: Smaller engines :func:`_leanest` compiles at most.
LEAN_TRIES = 12


def _leanest(model, spec, board: Board, best: Candidate, backend: Multiplier,
             memo: dict | None = None) -> Candidate | None:
    """For an engine bound by its bulk memory's bandwidth (``waits`` at least
    :data:`BANDWIDTH_BOUND` of its cycles), the engine with the fewest products that fits
    and is as fast (within :data:`AS_FAST`): more products only wait longer, and cost
    LUTs and clock. None when ``best`` is not bandwidth-bound or no smaller engine is as
    fast."""
    if not best.config.w_bulk or best.waits < BANDWIDTH_BOUND * best.cycles:
        return None
    # Planned cycles are a lower bound: only engines that plan within AS_FAST can be as fast.
    smaller = sorted((lanes * tm, cycles, lanes, tm, im2col)
                     for cycles, lanes, tm, im2col in candidates(model, best.config.multipliers)
                     if lanes * tm < best.config.multipliers
                     and cycles <= best.cycles * (1 + AS_FAST))
    for _, _, lanes, tm, im2col in smaller[:LEAN_TRIES]:
        c = evaluate_config(model, spec, EngineConfig(tn=lanes, tm=tm, im2col=im2col,
                                                      multiplier=backend), board, memo)
        if c.fits and c.cycles <= best.cycles * (1 + AS_FAST):
            return c
    return None


def _fastest(model, spec, board: Board, smallest: Candidate, backend: Multiplier,
             pack: int, lut: int, memo: dict | None = None
             ) -> tuple[Candidate, list[Candidate]]:
    """The fastest engine that fits (``smallest`` if none does), and every candidate
    compiled on the way.

    Fastest first, up to twice the DSP blocks' products (twice that with ``pack``; with
    ``lut``, as many more as the LUTs could hold in LUT products). A candidate whose
    products need more blocks than the board has packs pairs of them (``pack``), then puts
    the rest in LUTs (``lut``). An engine needing more DSP blocks than the board has
    cannot fit (yosys gives each product its own, or each pair with dual_mac); only the
    fastest such is compiled, to name the limit, as only the fastest whose LUT products alone
    (on top of the smallest engine) pass the LUT share. The engine that fits with the fewest
    compiled cycles wins (those include the waits for a bulk memory, so a narrower engine
    fed faster may beat a wider one: candidates are compiled until their planned cycles
    pass the best's, at most :data:`WAITING_TRIES` past the first that fits); among engines
    as fast and as small, the one with the fewest LUTs."""
    dsps = max(1, board.dsp.blocks)
    lut_cost = lut_luts = 0.0               # LUTs of one LUT product, the LUTs they may take
    max_mults = 2 * dsps * (1 + (backend is Multiplier.ICE40_DUAL)) * (1 + pack)
    if lut:
        lut_cost = lut_product_usage(smallest.config.data_bits, smallest.config.weight_bits)[0]
        lut_luts = board.luts * LUT_PRODUCT_HEADROOM - smallest.estimate.total.luts
        max_mults = max(max_mults, dsps * (1 + pack) + int(lut_luts // lut_cost))
    evaluated: list[Candidate] = []
    best: Candidate | None = None
    best_rank = None                        # (cycles, multipliers) of ``best``
    extra = 0                               # candidates compiled past the first that fits
    for cycles, lanes, tm, im2col in candidates(model, max_mults):
        # A candidate's planned cycles are a lower bound of its compiled ones (waits for
        # the bulk memory come on top): none slower than ``best`` can beat it, and past
        # the first that fits only a few more are compiled.
        if best_rank is not None and (best_rank < (cycles, lanes * tm)
                                      or extra >= WAITING_TRIES):
            break
        extra += best is not None
        cfg = _on_blocks(EngineConfig(tn=lanes, tm=tm, im2col=im2col, multiplier=backend),
                         dsps, pack, lut)
        if cfg.dsp_blocks > dsps and any(not c.fits for c in evaluated):
            continue
        if cfg.lut_products * lut_cost > lut_luts and any(not c.fits for c in evaluated):
            continue
        c = evaluate_config(model, spec, cfg, board, memo)
        evaluated.append(c)
        if c.fits and (best is None or (c.cycles, c.estimate.total.luts)
                       < (best.cycles, best.estimate.total.luts)):
            best, best_rank = c, (c.cycles, lanes * tm)
    return best or smallest, evaluated


#: Candidates :func:`_fastest` compiles past the first that fits when that one waits for
#: its bulk memory (one that does not wait ends the search: the next planned are slower).
WAITING_TRIES = 8


def _uses(cfg: EngineConfig) -> tuple[int, int]:
    """The ways past one product per DSP block ``cfg`` takes: (packed, LUT products)."""
    return cfg.packed_dsp, int(cfg.lut_products > 0)


def _on_blocks(cfg: EngineConfig, dsps: int, pack: int, lut: int) -> EngineConfig:
    """``cfg`` with its products brought down to ``dsps`` DSP blocks where it needs more:
    pairs packed (``pack``), then the fewest products in LUTs that are still needed
    (``lut``)."""
    if cfg.dsp_blocks <= dsps:
        return cfg
    if pack:
        cfg = replace(cfg, multiplier=Multiplier.ECP5_PACKED)
    if lut:
        # Each product moved to LUTs frees a block, or half of one while it breaks a pair.
        lut_products = max(0, cfg.dsp_blocks - dsps)
        while replace(cfg, lut_products=lut_products).dsp_blocks > dsps:
            lut_products += 1
        cfg = replace(cfg, lut_products=lut_products)
    return cfg


def dual_mac_fits(cfg: EngineConfig, board: Board) -> bool:
    """Whether ``board``'s DSP blocks can take the products of the fitted ``cfg`` in pairs."""
    return board.family.dual_mac and cfg.pairable


def ecp5_dsp_fits(cfg: EngineConfig, board: Board) -> bool:
    """Whether ``board``'s products go to registered MULT18X18D cells for the fitted
    ``cfg`` (an ECP5 board, operands of at most ``ECP5_DSP_BITS`` bits)."""
    return board.family.registered_dsp and cfg.ecp5_sized


def packed_dsp_fits(cfg: EngineConfig, board: Board) -> bool:
    """Whether ``board``'s MULT18X18D cells can take two products each for the fitted
    ``cfg`` (an ECP5 board, 8-bit maps with weights of at most 4 bits: ``packable``)."""
    return ecp5_dsp_fits(cfg, board) and packable(cfg.data_bits, cfg.weight_bits)


def _memory_note(c: Candidate, board: Board) -> str:
    if "sprams" in c.over:
        parts = [f"{name} {desc}" for name, desc in c.estimate.memories.items()
                 if "SPRAM" in desc]
        return (f" (memories: {'; '.join(parts)}; the board has {board.spram.blocks} x "
                f"{board.spram.bits // 1024} kbit SPRAMs, and {PAYLOAD_BYTES} bytes of SPI "
                f"flash past the bitstream for weights read at run time; fewer weight bits "
                f"would help)")
    if "brams" not in c.over:
        return ""
    kbit = {m.name: m.depth * m.width / 1024 for m in engine_memories(c.config)}
    parts = [f"{name} {desc} ({kbit[name]:.0f} kbit)"
             for name, desc in c.estimate.memories.items() if "blocks" in desc]
    return (f" (memories: {'; '.join(parts)}; the board has {board.bram.blocks} x "
            f"{board.bram.bits // 1024} kbit = {board.bram.total_bits // 1024} kbit)")


def check_generated_fits(gen, board: Board) -> Estimate:
    """Before synthesis: the engine in a ``dynfix generate`` folder must fit ``board``."""
    cfg = gen.config
    try:
        est = board_estimate(cfg, board)
    except DynfixError as e:        # cells of another family (dual_mac, ecp5_dsp, SPRAM)
        raise DynfixError(f"the engine in {gen.folder} ({cfg.summary()}) does not fit "
                          f"{board.name}: {e}") from None
    over = check_usage(est.total, board, cfg.lut_products)
    if over:
        raise DynfixError(f"the engine in {gen.folder} ({cfg.summary()}, "
                          f"{cfg.multipliers} multipliers) does not fit {board.name}: needs "
                          f"{describe_over(over)}; generate it for this board")
    return est
