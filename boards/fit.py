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
On any family a model whose weights have at most 2 bits may also have every product in LUTs
without a multiplier (the ``sign`` multiplier, ``hw/sign_product.py``): as many as the LUTs
hold (:func:`lut_bound` says which share of them), the DSP blocks left idle.
Each way past one product per block is fitted on its own, and the fastest engine that needs
at most 1 / :data:`LUT_PRODUCT_MIN_SPEEDUP` of the cycles of every narrower one wins; an
engine with products in LUTs then gives way to the one with the fewest products within
:data:`LUT_PRODUCT_AS_FAST` of its cycles (:func:`_leanest`).

A candidate whose memories overflow the block RAM keeps its weights, its maps or both in
the board's SPRAM, or its weights in bulk memory (SPRAM, the SPI flash, an SDRAM); on a
board whose bulk memory the engine can write (an SDRAM) the maps that still do not fit go
there too, the layers around them in row strips (``m_bulk``).

A model whose Q.yaml records shared layers (``share``) may have each candidate's weights
stored as codebook indices (``w_index_bits``, ``hw/codebook.py``) when that makes it fit,
saves cycles, or saves memory blocks worth more than the lookup's LUTs
(:func:`evaluate_config`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from dynfix.boards.board_top import bulk_cells, bulk_store_refusal, usage as board_top_usage
from dynfix.boards.flash_image import FlashCoding, payload_bytes
from dynfix.boards.registry import Board
from dynfix.errors import DynfixError
from dynfix.hw.compiler import (CompiledModel, compile_model, plan_groups, plan_model,
                                unspread)
from dynfix.hw.config import SIGN_WEIGHT_BITS, BulkStore, EngineConfig, Multiplier, packable
from dynfix.hw.cycle_model import (UNLOAD_CYCLES_PER_VALUE, estimate as cycle_estimate,
                                   layer_cycles, stream_words)
from dynfix.hw.resources import (Device, Estimate, Usage, adder_tree, engine_memories,
                                 estimate, lut_product_usage, memory_blocks,
                                 sign_product_usage)

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
    #: Why the engine does not fit beyond its resources: the compiler's refusal of the map
    #: memory the block RAM leaves with the maps in bulk memory (``m_bulk``).
    note: str = ""
    #: With maps in bulk memory (``m_bulk``): the bulk memory's traffic (:func:`bulk_traffic`).
    traffic: dict = field(default_factory=dict)

    @property
    def fits(self) -> bool:
        return not self.over and not self.note


@dataclass
class FitResult:
    board: str
    chosen: Candidate
    limit: str                      # what stopped a faster configuration
    considered: int
    #: With ``fit(..., alternatives=n)``: the next ``n`` engines that fit (fewer when there
    #: are not as many), best first by estimate (:func:`_alternatives`); empty by default.
    alternatives: list[Candidate] = field(default_factory=list)

    @property
    def candidates(self) -> list[Candidate]:
        """The chosen engine, then the alternatives."""
        return [self.chosen, *self.alternatives]

    def to_dict(self) -> dict:
        c = self.chosen
        return {"board": self.board, **c.config.choice(),
                "multipliers": c.config.multipliers, "dsp_blocks": c.config.dsp_blocks,
                "cycles_per_image": c.cycles,
                "estimate": c.estimate.to_dict(), "limited_by": self.limit,
                "considered": self.considered,
                **({"bulk_traffic": c.traffic} if c.traffic else {})}


def limits(board: Board, lut_products: int = 0) -> dict[str, int]:
    """What an engine may use of ``board``; less of its LUTs with products in LUTs."""
    logic = board.family.logic_headroom       # placement and timing headroom
    luts = LUT_PRODUCT_HEADROOM if lut_products else logic
    return {"dsps": board.dsp.blocks, "brams": board.bram.blocks,
            "sprams": board.spram.blocks if board.spram is not None else 0,
            "luts": int(board.luts * luts), "ffs": int(board.ffs * logic)}


def lut_bound(cfg: EngineConfig, board: Board) -> int:
    """The products of ``cfg`` that hold its LUTs to :data:`LUT_PRODUCT_HEADROOM` of
    ``board``'s (:func:`limits`): its ``lut_products``; with ``sign_products`` every product
    on a family that computes products in LUTs beside its DSP blocks (``FpgaFamily.
    lut_products``, ECP5: its wide engines lose clock, as those do), none elsewhere (iCE40,
    whose engines place and close timing close to full: its ``logic_headroom``)."""
    if cfg.sign_products:
        return cfg.multipliers if board.family.lut_products else 0
    return cfg.lut_products


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
    lengthens, and the output unload, as the compiled engine counts them) come from the
    shape-only plan and the analytic cycle model, so thousands of candidates cost little,
    and are a lower bound of the compiled engine's (bulk-memory waits come on top)."""
    plans, _ = plan_groups(model)
    unload = UNLOAD_CYCLES_PER_VALUE * math.prod(plans[-1].out_shape)
    residual = int(any(p.add is not None for p in plans))   # its pipeline is 3 cycles longer
    lanes_set = useful_sizes([p.in_shape[0] for p in plans], max_mults)
    tm_set = useful_sizes([p.out_shape[0] for p in plans], max_mults)
    found = []
    for tm in tm_set:
        for lanes in lanes_set:
            if lanes * tm > max_mults:
                break
            if unspread(plans, lanes):          # a Concat's layout a group cannot read
                continue
            for im2col in (0, 1):
                cfg = EngineConfig(tn=lanes, tm=tm, im2col=im2col, residual=residual)
                planned = plan_model(model, cfg)
                load = math.prod(planned[0].in_shape)
                if im2col and load == math.prod(plans[0].in_shape):
                    continue                    # the compiler did not apply it
                cycles = load + sum(layer_cycles(cfg, p) for p in planned) + unload
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

#: Compilations :func:`_maps_in_bulk` tries at most: a smaller map memory may lengthen the
#: program (more strips), whose memory then leaves fewer blocks for the maps.
MAP_BULK_TRIES = 3


def map_store(board: Board) -> dict | None:
    """The placement whose bulk memory can also keep maps (``m_bulk``, which the engine
    writes) on ``board``: its SDRAM's (:data:`SDRAM_PLACEMENTS`), or None. The iCEBreaker
    has no such store: the flash it reads at run time is read-only, and the board top
    fills the SPRAM it keeps as bulk memory from the flash and gives the engine no write
    port to it (its maps can go to SPRAM instead, ``m_spram``)."""
    return SDRAM_PLACEMENTS[0] if board.sdram is not None else None


#: The widest codebook index the fit stores weights as (``w_index_bits``): the lookup takes
#: ``2**b - 1`` LUTs per weight bit of every product (``hw/resources.py``), which beyond
#: this costs more logic than the memory it saves is worth.
MAX_FIT_INDEX_BITS = 5


def index_bits(spec) -> int:
    """The narrowest index width the fit tries storing ``spec``'s weights as
    (``w_index_bits``): the widest its shared layers' codebooks have (``share`` in Q.yaml,
    ``LayerFormat.share``); 0 when no layer is shared or the indices would be no narrower
    than the weights or wider than :data:`MAX_FIT_INDEX_BITS`. (Each layer's words must
    also hold the zeros of their padded lanes: a candidate may need a bit more.)"""
    shares = [getattr(f, "share", 0) for f in spec.layers.values()]
    widths = [f.bw_w for f in spec.layers.values() if hasattr(f, "bw_w")]
    bits = max(shares, default=0)
    return bits if 0 < bits <= MAX_FIT_INDEX_BITS and bits < max(widths, default=0) else 0


def evaluate_config(model, spec, cfg: EngineConfig, board: Board,
                    memo: dict | None = None) -> Candidate:
    """``cfg`` compiled for the model and sized for ``board`` (:func:`_placed`); for a
    model with shared weights (:func:`index_bits`) the same engine storing them as codebook
    indices instead (``w_index_bits``, the narrowest width every layer's words fit, at
    most one bit wider than the shares) when that helps: it fits and the other does not,
    or it takes fewer cycles (more weights per bulk-memory beat), or as many with fewer
    block RAMs and SPRAMs, worth more than the lookup's LUTs at the family's cost of a
    block (``FpgaFamily.bram_cost``, the unit the memory mapping weighs blocks in).
    ``memo`` (one fit's) keeps what was evaluated: the ways past one product per DSP block
    meet the same candidates."""
    if memo is not None:
        if cfg not in memo:
            memo[cfg] = evaluate_config(model, spec, cfg, board)
        return memo[cfg]
    c = _placed(model, spec, cfg, board)
    bits = 0 if cfg.w_index_bits else index_bits(spec)
    for b in range(bits, min(bits + 2, MAX_FIT_INDEX_BITS + 1)) if bits else ():
        try:
            ci = _placed(model, spec, replace(cfg, w_index_bits=b), board)
        except DynfixError:             # a layer's words take more values than 2**b
            continue

        def blocks(t: Candidate) -> int:
            return t.estimate.total.brams + t.estimate.total.sprams
        saved = ((blocks(c) - blocks(ci)) * board.family.bram_cost
                 > ci.estimate.total.luts - c.estimate.total.luts)
        if ci.fits and (not c.fits or ci.cycles < c.cycles
                        or (ci.cycles == c.cycles and saved)):
            return ci
        break
    return c


def _placed(model, spec, cfg: EngineConfig, board: Board) -> Candidate:
    """``cfg`` compiled for the model and sized for ``board``; when its block RAMs run short
    on a board with SPRAM, the same engine with its weights, maps or both in SPRAM
    (:data:`SPRAM_PLACEMENTS`), on a board with SDRAM its weights there
    (:data:`SDRAM_PLACEMENTS`), and when that is still short of block RAM its maps there
    too (:func:`_maps_in_bulk`, ``m_bulk``): the first that fits, else the one short of the
    fewest block RAMs and SPRAMs."""
    c = _evaluate(model, spec, cfg, board)
    placements = ((SPRAM_PLACEMENTS if board.spram is not None else ())
                  + (SDRAM_PLACEMENTS if board.sdram is not None else ()))
    if "brams" not in c.over or not placements or cfg.w_spram or cfg.m_spram or cfg.w_bulk:
        return c
    tried = [c]
    refused = []                        # why a placement could not be built at all
    for where in placements:
        try:
            tried.append(_evaluate(model, spec, replace(cfg, **where), board))
        except DynfixError as e:        # e.g. a ring tile too wide, a bulk image too large
            refused.append(str(e))
            continue
    fitting = [t for t in tried if t.fits]
    if fitting:
        return fitting[0]
    store = map_store(board)
    base = next((t for t in tried[1:] if store is not None and t.config.w_bulk
                 and t.config.bulk_store is store["bulk_store"]), None)
    if base is not None and "brams" in base.over:
        # The weights in bulk memory and still short of block RAM: the maps go there too.
        maps = _maps_in_bulk(model, spec, replace(cfg, **store), base, board)
        if maps.fits:
            return maps
        tried[tried.index(base)] = maps

    def short(t: Candidate) -> tuple[int, int]:
        return tuple(t.over.get(k, (0, 0))[0] - t.over.get(k, (0, 0))[1]
                     for k in ("brams", "sprams"))
    closest = min(tried, key=lambda t: (sum(short(t)), len(t.over)))
    if refused and not closest.note and closest is c:
        # No placement in bulk memory was possible: say why (the block RAM alone never was).
        closest = replace(closest, note="; ".join(dict.fromkeys(refused)))
    return closest


def _maps_in_bulk(model, spec, cfg: EngineConfig, base: Candidate, board: Board
                  ) -> Candidate:
    """``cfg`` (its weights in the bulk memory that also takes maps) with the largest map
    memory the block RAM leaves after the rest of the engine (``m_bulk``), the maps that do
    not fit it in bulk memory; ``base`` is the same engine with every map on chip (returned
    when its map memory is not what runs short). When the compiler refuses that memory (the
    maps that must stay on chip, or a strip's buffers, need more), ``base`` with the
    compiler's reason as its ``note``.

    The rest of the engine depends on the map memory: a smaller one sends more maps to bulk
    memory and cuts the strips shorter, a larger one may cut them so short that the program
    needs block RAM. So the room is measured again on each compiled engine, below the
    smallest memory that ran short, at most :data:`MAP_BULK_TRIES` compilations; the largest
    that fit wins."""
    if map_room(base, board) >= base.config.fmap_depth:
        return base
    best: Candidate | None = None       # the largest map memory that fit so far
    last, ceiling = base, base.config.fmap_depth - 1     # most words worth trying
    for _ in range(MAP_BULK_TRIES):
        words = map_room(last, board, ceiling)
        if best is not None and words <= best.config.m_bulk:
            break
        if words < 1:
            rest = last.estimate.total.brams - last.estimate.blocks["mem_fmap"].brams
            note = (f"with maps in {_store_name(cfg, board)} the rest of the engine takes "
                    f"{rest} block RAMs and leaves none for the map memory")
            return best or replace(base, note=note)
        try:
            last = _evaluate(model, spec, replace(cfg, m_bulk=words), board)
        except DynfixError as e:
            return best or replace(base, note=f"maps in {_store_name(cfg, board)}: {e}")
        if "brams" in last.over:
            ceiling = words - 1
        elif last.fits:
            best = last
        else:
            return best or last         # short of logic: more map words would not help
    return best or last


def map_room(c: Candidate, board: Board, most: int = 0) -> int:
    """The most map words (the map memory's depth; at most ``most``, or ``c``'s map memory
    when 0) whose block RAMs fit what ``board`` leaves after everything else of ``c``; 0
    when nothing is left."""
    fmap = next(m for m in engine_memories(c.config) if m.name == "fmap")
    left = board.bram.blocks - (c.estimate.total.brams - c.estimate.blocks["mem_fmap"].brams)
    shapes, cost = board.bram.shapes, board.family.bram_cost

    def fits(depth: int) -> bool:
        return memory_blocks(depth, fmap.width, shapes, cost, fmap.lane_bits) <= left

    if left < 1 or not fits(1):
        return 0
    lo, hi = 1, max(1, most or c.config.fmap_depth)     # fits(lo); above hi is not needed
    if fits(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def _store_name(cfg: EngineConfig, board: Board) -> str:
    """The bulk memory of ``cfg`` on ``board`` in words: ``ulx3s's SDRAM``."""
    return (f"{board.name}'s SDRAM" if cfg.bulk_store is BulkStore.SDRAM
            else f"bulk memory ({cfg.bulk_store.value})")


def bulk_traffic(cm: CompiledModel) -> dict:
    """The bulk memory's contents and traffic of the compiled engine ``cm`` with maps there
    (``m_bulk``), in bytes: ``maps`` (each map in bulk memory: its size), ``weights`` (the
    weight image as the ring reads it per inference: a group in strips once per strip),
    ``map_loads`` and ``map_stores`` (the program's DMA transfers, ``di_words`` and
    ``do_words``, per inference) and ``per_image``, their sum. Empty when every map is on
    chip."""
    cfg = cm.config
    if not cfg.map_bulk:
        return {}
    word = cfg.map_beats * cfg.bus_bits // 8          # bytes of a map word in bulk memory
    maps: dict[str, int] = {}
    loads = stores = 0
    for p in cm.plans:
        e = p.entry
        loads += e.get("di_words", 0) * word
        stores += e.get("do_words", 0) * word
        if e.get("do_words", 0):
            # Every map in bulk memory is stored there once, strip by strip.
            maps[p.output] = maps.get(p.output, 0) + e["do_words"] * word
    weights = stream_words(cm) * cfg.word_beats * cfg.bus_bits // 8
    return {"maps": maps, "weights": weights, "map_loads": loads, "map_stores": stores,
            "per_image": weights + loads + stores}


def _traffic_text(t: dict) -> str:
    """:func:`bulk_traffic` in words, for the fit's list of memories."""
    maps = sum(t["maps"].values())
    return (f"holds the weights ({t['weights']} bytes) and the maps "
            f"{', '.join(t['maps'])} ({maps} bytes); {t['per_image']} bytes move per image "
            f"(weights {t['weights']}, map loads {t['map_loads']}, stores "
            f"{t['map_stores']})")


def board_estimate(cfg: EngineConfig, board: Board,
                   coding: FlashCoding = FlashCoding.NONE) -> Estimate:
    """The resource estimate of the fitted engine ``cfg`` on ``board``, with the board top
    around it (:func:`dynfix.boards.board_top.usage`; with its flash image stored with
    ``coding``): what the fit compares with the board's resources."""
    extra = board_top_usage(cfg.w_spram, cfg.bus_bits if cfg.w_bulk else 0, cfg.bulk_store,
                            coding, board.family.name)
    refusal = bulk_store_refusal(cfg, board)
    if refusal:
        raise DynfixError(f"the engine {refusal}")
    if cfg.m_bulk and cfg.bulk_store is not BulkStore.SDRAM:
        raise DynfixError(f"the engine keeps maps in bulk memory (m_bulk: {cfg.m_bulk}), "
                          f"which it writes; {board.name}'s board top gives it no bulk "
                          f"memory it can write ({cfg.bulk_store.value} is read-only there): "
                          f"maps in bulk memory need an SDRAM (bulk_store: sdram)")
    # The weights come from the board's flash: into SPRAM (w_spram, or the bulk memory the
    # board top keeps there), or read from it at run time. (How an SDRAM gets them is its
    # board top's to say; w_spram on a board without SPRAM: the estimate refuses it.)
    from_flash = ((cfg.w_bulk and cfg.bulk_store is not BulkStore.SDRAM)
                  or (cfg.w_spram and board.spram is not None))
    if from_flash and board.flash is None:
        raise DynfixError(f"the engine loads its weights from the SPI flash "
                          f"({'w_bulk' if cfg.w_bulk else 'w_spram'}); {board.name}'s board "
                          f"file has no flash section")
    if cfg.w_bulk:
        words = cfg.weight_depth * cfg.word_beats   # the bulk image's bus words
        if cfg.bulk_store is not BulkStore.SDRAM:
            image, most = words * cfg.bus_bits // 8, payload_bytes(board.flash)
            if image > most:
                raise DynfixError(f"the weights ({image} bytes as the bulk image) do not fit "
                                  f"the {most} bytes of SPI flash past the bitstream")
        if cfg.bulk_store is BulkStore.RAM:
            # The bulk store: the image in SPRAM cells (hw/spram_axi.py).
            extra["bulk_store"] = Usage(sprams=bulk_cells(words, cfg.bus_bits))
        elif cfg.bulk_store is BulkStore.SDRAM:
            what = "weights"
            if cfg.map_bulk:        # the maps above the weight image (``maps_base``)
                words, what = cfg.maps_base + cfg.map_bulk, "weights and maps"
            size = words * cfg.bus_bits // 8
            if size > board.sdram.bytes:
                raise DynfixError(f"the {what} ({size} bytes as the bulk image) do not fit "
                                  f"the {board.sdram.bytes} bytes of {board.name}'s SDRAM")
    return estimate(cfg, Device.from_board(board), extra)


def _evaluate(model, spec, cfg: EngineConfig, board: Board) -> Candidate:
    cm = compile_model(model, spec, cfg)
    est = board_estimate(cm.config, board)
    cycles = cycle_estimate(cm)
    traffic = bulk_traffic(cm)
    if traffic:
        # Where the maps that left the chip are, beside the memories on chip.
        est.memories[cm.config.bulk_store.value] = _traffic_text(traffic)
    return Candidate(cm.config, cycles["cycles_per_image"], est,
                     check_usage(est.total, board, lut_bound(cm.config, board)),
                     sum(row.get("waits", 0) for row in cycles["layers"]), traffic=traffic)


def describe_over(over: dict[str, tuple[int, int]]) -> str:
    return ", ".join(f"{RESOURCE_NAMES[k]} {need} > {avail}" for k, (need, avail) in
                     sorted(over.items()))


def fit(model, spec, board: Board, alternatives: int = 0, sign: bool = True) -> FitResult:
    """Choose the fastest engine for ``model`` quantized as ``spec`` that fits ``board``;
    with ``alternatives``, also that many runners-up (:func:`_alternatives`; the choice is
    the same). With ``sign`` a model whose weights have at most ``SIGN_WEIGHT_BITS`` bits
    may have its products in LUTs without multipliers (the ``sign`` multiplier); without,
    only the DSP blocks' ways are tried (what ``bench/ternary_products.py`` compares)."""
    memo: dict[EngineConfig, Candidate] = {}
    smallest = evaluate_config(model, spec, EngineConfig(tn=1, tm=1), board, memo)
    if "sprams" in smallest.over and smallest.config.weight_bits <= 8 \
            and not unspread(plan_groups(model)[0], 2):
        # One 8-bit weight per word leaves half of each 16-bit SPRAM word empty: two fill it.
        smallest = evaluate_config(model, spec, EngineConfig(tn=2, tm=1), board, memo)
    if not smallest.fits:
        m = smallest.config.multipliers
        raise DynfixError(f"{model.name} does not fit {board.name} even with the smallest "
                          f"engine ({m} multiplier{'s' if m > 1 else ''}): needs "
                          f"{describe_over(smallest.over)}"
                          f"{_memory_note(smallest, board)}"
                          f"{_map_note(model, smallest, board)}")
    backend = (Multiplier.ICE40_DUAL if dual_mac_fits(smallest.config, board)
               else Multiplier.ECP5 if ecp5_dsp_fits(smallest.config, board)
               else Multiplier.FABRIC)
    pack = int(packed_dsp_fits(smallest.config, board))
    lut = int(board.family.lut_products)
    sign = int(sign and smallest.config.weight_bits <= SIGN_WEIGHT_BITS)
    # The ways past one product per DSP block (``found``, keyed (packed, LUT products, sign
    # products): none, packed pairs, LUT products, both; with weights of at most 2 bits
    # every product in LUTs without multipliers) are each fitted on their own (a packed
    # engine cannot have the depthwise window, so LUT products alone may give the faster
    # engine). Their extra products cost clock (longer routes, wider lane multiplexers): an
    # engine is only worth its products when it needs at most 1 / LUT_PRODUCT_MIN_SPEEDUP of
    # the cycles of every way's engine with fewer products; the fastest such engine wins
    # (then the fewest LUTs).
    found = {v: _fastest(model, spec, board, smallest, _backend(backend, v), *v[:2], memo=memo)
             for v in sorted({(0, 0, 0), (pack, 0, 0), (0, lut, 0), (pack, lut, 0),
                              (0, 0, sign)})}
    worth = [v for v, (c, _) in found.items()
             if v == (0, 0, 0) or all(c.cycles * LUT_PRODUCT_MIN_SPEEDUP <= u.cycles
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
                                                  ("products in LUTs", c.config.lut_products),
                                                  ("sign products", c.config.sign_products))
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
    lean = _leanest(model, spec, board, best, _backend(backend, _uses(best.config)), memo)
    bound = (f"the bulk memory's bandwidth: {best.config.summary()} waits {best.waits} of "
             f"its {best.cycles} cycles for weights, and ")
    if lean is not None and bandwidth_bound(best):
        n = lean.config.multipliers
        limit = bound + f"{n} product{'s are' if n > 1 else ' is'} as fast"
        best = lean
    elif lean is not None:
        limit = (f"products in LUTs: {best.config.summary()} ({best.cycles} cycles) saves "
                 f"less than {LUT_PRODUCT_AS_FAST:.0%} of the cycles of this engine's "
                 f"{lean.cycles}, so its {best.config.multipliers - lean.config.multipliers} "
                 f"more products are not worth their LUTs and clock; {limit}")
        best = lean
    elif bandwidth_bound(best):
        limit = bound + "no engine with more products that fits is faster"
    result = FitResult(board.name, best, limit + lut_note, len(evaluated))
    if alternatives > 0:
        result.alternatives = _alternatives(model, spec, board, smallest, backend, best,
                                            sorted(found), alternatives, memo)
    return result


#: Candidates :func:`_alternatives` compiles at most per way past one product per DSP
#: block, beyond the ones it is asked for (those the fit compiled cost nothing).
ALTERNATIVE_TRIES = 16


def _rank(c: Candidate) -> tuple[int, int, int]:
    """How runners-up are ranked: estimated cycles per image, then LUTs, then products."""
    return c.cycles, c.estimate.total.luts, c.config.multipliers


def _alternatives(model, spec, board: Board, smallest: Candidate, backend: Multiplier,
                  best: Candidate, ways: list[tuple[int, int, int]], n: int, memo: dict
                  ) -> list[Candidate]:
    """Up to ``n`` engines besides ``best`` that fit ``board``, ranked by :func:`_rank`
    (design-space sweeps, ``dynfix sweep``, synthesize each: the estimate is not the
    synthesis).

    Every way past one product per DSP block the fit tried (``ways``: packed, LUT
    products) contributes, including the engines :data:`LUT_PRODUCT_MIN_SPEEDUP` keeps
    from being chosen: whether their extra products cost more clock than they save cycles
    is what synthesis tells. Each way's candidates are walked as :func:`_fastest` walks
    them (fastest planned first; an engine whose products need more DSP blocks than the
    board has, or LUT products beyond the LUT share, is passed over), until ``n`` fit and no
    candidate left can beat the ``n``-th (planned cycles are a lower bound), compiling at
    most ``n`` + :data:`ALTERNATIVE_TRIES` that the fit did not."""
    dsps = max(1, board.dsp.blocks)
    found: dict[EngineConfig, Candidate] = {}
    for way in ways:
        pack, lut, _ = way
        mult = _backend(backend, way)
        max_mults, lut_cost, lut_luts = _budget(board, smallest, mult, pack, lut)
        fitting: list[Candidate] = []
        budget = n + ALTERNATIVE_TRIES
        for cycles, lanes, tm, im2col in candidates(model, max_mults):
            if len(fitting) >= n and cycles > fitting[n - 1].cycles:
                break
            cfg = _on_blocks(EngineConfig(tn=lanes, tm=tm, im2col=im2col, multiplier=mult),
                             dsps, pack, lut)
            if cfg.dsp_blocks > dsps or cfg.logic_products * lut_cost > lut_luts:
                continue
            if cfg not in memo:
                if budget == 0:
                    break
                budget -= 1
            c = evaluate_config(model, spec, cfg, board, memo)
            if c.fits and c.config != best.config:
                fitting = sorted({id(x): x for x in [*fitting, c]}.values(), key=_rank)
        for c in fitting:
            found.setdefault(c.config, c)
    return sorted(found.values(), key=_rank)[:n]


#: An engine whose weights come from bulk memory and that waits for them at least this
#: share of its cycles is bound by the memory's bandwidth (:func:`_leanest`).
BANDWIDTH_BOUND = 0.5
#: ... and a smaller engine within this share of its cycles is as fast.
AS_FAST = 0.01
#: An engine with products in LUTs gives way to the one with the fewest products within
#: this share of its cycles (:func:`_leanest`): every product past the DSP blocks costs
#: LUTs, routing and clock (docs/boards.md, "Products in LUTs"), which a few cycles saved
#: do not buy back.
LUT_PRODUCT_AS_FAST = 0.05
#: Smaller engines :func:`_leanest` compiles at most.
LEAN_TRIES = 12


def bandwidth_bound(c: Candidate) -> bool:
    """Whether ``c`` waits for weights from its bulk memory at least
    :data:`BANDWIDTH_BOUND` of its cycles."""
    return bool(c.config.w_bulk) and c.waits >= BANDWIDTH_BOUND * c.cycles


def _leanest(model, spec, board: Board, best: Candidate, backend: Multiplier,
             memo: dict | None = None) -> Candidate | None:
    """The engine with the fewest products that fits and is as fast as ``best``, for an
    engine whose extra products do not pay: one bound by its bulk memory's bandwidth
    (``waits`` at least :data:`BANDWIDTH_BOUND` of its cycles; as fast: within
    :data:`AS_FAST`), where more products only wait longer, and one with products in LUTs
    (within :data:`LUT_PRODUCT_AS_FAST`), whose products past the DSP blocks cost LUTs and
    clock. Smaller engines have their products brought onto the DSP blocks the way
    ``best``'s are (:func:`_on_blocks`). None when neither applies or no smaller engine is
    as fast."""
    cfg = best.config
    if bandwidth_bound(best):
        within = AS_FAST
    elif cfg.lut_products:
        within = LUT_PRODUCT_AS_FAST
    else:
        return None
    # Planned cycles are a lower bound: only engines that plan within it can be as fast.
    smaller = sorted((lanes * tm, cycles, lanes, tm, im2col)
                     for cycles, lanes, tm, im2col in candidates(model, cfg.multipliers)
                     if lanes * tm < cfg.multipliers and cycles <= best.cycles * (1 + within))
    dsps, pack = max(1, board.dsp.blocks), int(cfg.packed_dsp)
    for _, _, lanes, tm, im2col in smaller[:LEAN_TRIES]:
        lean = _on_blocks(EngineConfig(tn=lanes, tm=tm, im2col=im2col, multiplier=backend),
                          dsps, pack, int(cfg.lut_products > 0))
        c = evaluate_config(model, spec, lean, board, memo)
        if c.fits and c.cycles <= best.cycles * (1 + within):
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
    max_mults, lut_cost, lut_luts = _budget(board, smallest, backend, pack, lut)
    evaluated: list[Candidate] = []
    best: Candidate | None = None
    extra = 0                               # candidates compiled past the first that fits
    for cycles, lanes, tm, im2col in candidates(model, max_mults):
        # A candidate's planned cycles are a lower bound of its compiled ones (waits for
        # the bulk memory come on top): none slower than ``best`` can beat it (one as fast
        # may take fewer LUTs), and past the first that fits only a few more are compiled.
        if best is not None and (best.cycles < cycles or extra >= WAITING_TRIES):
            break
        extra += best is not None
        cfg = _on_blocks(EngineConfig(tn=lanes, tm=tm, im2col=im2col, multiplier=backend),
                         dsps, pack, lut)
        if cfg.dsp_blocks > dsps and any(not c.fits for c in evaluated):
            continue
        if cfg.logic_products * lut_cost > lut_luts and any(not c.fits for c in evaluated):
            continue
        c = evaluate_config(model, spec, cfg, board, memo)
        evaluated.append(c)
        if c.fits and (best is None or (c.cycles, c.estimate.total.luts)
                       < (best.cycles, best.estimate.total.luts)):
            best = c
    return best or smallest, evaluated


def _budget(board: Board, smallest: Candidate, backend: Multiplier, pack: int, lut: int
            ) -> tuple[int, float, float]:
    """The most products a candidate of one way may have, the LUTs of one LUT product and
    the LUTs LUT products may take (0 without ``lut``): up to twice the DSP blocks'
    products (twice that with ``pack``; with ``lut``, as many more as the LUTs could hold
    in LUT products). The sign products' way (``backend`` SIGN): as many as the LUTs
    could hold (the share :func:`lut_bound` gives them), each with its adder-tree input."""
    dsps = max(1, board.dsp.blocks)
    if backend is Multiplier.SIGN:
        cfg, family = smallest.config, board.family
        luts, ffs, _ = sign_product_usage(cfg.data_bits, cfg.weight_bits)
        tree_luts, tree_ffs = adder_tree(2, cfg.data_bits + cfg.weight_bits)
        lut_cost = (luts + tree_luts * family.lut_factor
                    + (ffs + tree_ffs) * family.ff_packing)
        share = LUT_PRODUCT_HEADROOM if family.lut_products else family.logic_headroom
        lut_luts = board.luts * share - smallest.estimate.total.luts
        return max(1, int(lut_luts // lut_cost)), lut_cost, lut_luts
    lut_cost = lut_luts = 0.0               # LUTs of one LUT product, the LUTs they may take
    max_mults = 2 * dsps * (1 + (backend is Multiplier.ICE40_DUAL)) * (1 + pack)
    if lut:
        lut_cost = lut_product_usage(smallest.config.data_bits, smallest.config.weight_bits)[0]
        lut_luts = board.luts * LUT_PRODUCT_HEADROOM - smallest.estimate.total.luts
        max_mults = max(max_mults, dsps * (1 + pack) + int(lut_luts // lut_cost))
    return max_mults, lut_cost, lut_luts


#: Candidates :func:`_fastest` compiles past the first that fits: those planned as fast as
#: it (one may take fewer LUTs) or, when it waits for its bulk memory, faster than it.
WAITING_TRIES = 8


def _uses(cfg: EngineConfig) -> tuple[int, int, int]:
    """The ways past one product per DSP block ``cfg`` takes: (packed, LUT products, sign
    products)."""
    return cfg.packed_dsp, int(cfg.lut_products > 0), cfg.sign_products


def _backend(backend: Multiplier, way: tuple[int, int, int]) -> Multiplier:
    """The multiplier of a way's candidates: the sign products' (``way[2]``), or the
    family's ``backend``."""
    return Multiplier.SIGN if way[2] else backend


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
        flash = ("" if board.flash is None else f", and {payload_bytes(board.flash)} bytes "
                 f"of SPI flash past the bitstream for weights read at run time")
        return (f" (memories: {'; '.join(parts)}; the board has {board.spram.blocks} x "
                f"{board.spram.bits // 1024} kbit SPRAMs{flash}; fewer weight bits would "
                f"help)")
    if "brams" not in c.over:
        return ""
    kbit = {m.name: m.depth * m.width / 1024 for m in engine_memories(c.config)}
    parts = [f"{name} {desc} ({kbit[name]:.0f} kbit)"
             for name, desc in c.estimate.memories.items() if "blocks" in desc]
    return (f" (memories: {'; '.join(parts)}; the board has {board.bram.blocks} x "
            f"{board.bram.bits // 1024} kbit = {board.bram.total_bits // 1024} kbit)")


def _map_note(model, c: Candidate, board: Board) -> str:
    """Why the maps of the refused ``c`` stay on chip: the compiler's refusal of the map
    memory the block RAM leaves (``c.note``), or, when the block RAMs ``c`` is short of are
    no more than its map memory takes (maps elsewhere would fit), the largest map and (on a
    board without SDRAM) that no bulk memory can take maps."""
    if c.note:
        return f"; {c.note}"
    if "brams" not in c.over or "mem_fmap" not in c.estimate.blocks:
        return ""
    need, avail = c.over["brams"]
    fmap = c.estimate.blocks["mem_fmap"].brams
    if fmap < need - avail:
        return ""
    plans, _ = plan_groups(model)
    maps = {plans[0].input: plans[0].in_shape, **{p.output: p.out_shape for p in plans}}
    name, shape = max(maps.items(), key=lambda t: (math.prod(t[1]), t[0]))
    kbit = math.prod(shape) * c.config.data_bits / 1024
    nowhere = (f", and {board.name} has no SDRAM to keep maps in (maps in bulk memory, "
               f"m_bulk)" if map_store(board) is None else "")
    return (f"; the maps take {fmap} of the block RAMs, the largest map {name!r} "
            f"({' x '.join(map(str, shape))} values, {kbit:.0f} kbit){nowhere}")


def check_generated_fits(gen, board: Board, coding: FlashCoding = FlashCoding.NONE
                         ) -> Estimate:
    """Before synthesis: the engine in a ``dynfix generate`` folder must fit ``board``
    (with the decoder of a flash image stored with ``coding``)."""
    cfg = gen.config
    try:
        est = board_estimate(cfg, board, coding)
    except DynfixError as e:        # cells of another family (dual_mac, ecp5_dsp, SPRAM)
        raise DynfixError(f"the engine in {gen.folder} ({cfg.summary()}) does not fit "
                          f"{board.name}: {e}") from None
    over = check_usage(est.total, board, lut_bound(cfg, board))
    if over:
        raise DynfixError(f"the engine in {gen.folder} ({cfg.summary()}, "
                          f"{cfg.multipliers} multipliers) does not fit {board.name}: needs "
                          f"{describe_over(over)}; generate it for this board")
    return est
