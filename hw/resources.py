"""Resource estimate of an engine per block: LUTs, FFs, DSPs, BRAMs (the board top's blocks
are added by the caller that knows them, ``boards/fit.py``'s :func:`board_estimate`).

The estimate is analytic: each block's logic is counted from the widths of its adders,
multiplexers, shifters and registers (one LUT4 per adder, comparator or 2:1 mux bit; a
``w``-bit shift by up to ``s`` positions is ``ceil(log2 s)`` mux stages), and the family's
packing factors (:mod:`dynfix.hw.fpga_family`) turn LUT4s and flip-flops into the unit
nextpnr reports (iCE40 logic cells hold a LUT and a FF; ECP5 ``TRELLIS_COMB`` counts LUT4s and
carry halves). DSPs and block
RAMs are counted the way yosys maps them: one hard multiplier per product whose operands fit
the block (more when they do not; one per pair of products for ``dual_mac`` engines, whose
SB_MAC16 cells are instantiated; none for the ``lut_products`` and the ``sign_products``,
which are logic), and each
memory in the block shape yosys ``memory_libmap`` would take (:func:`memory_blocks`), or left
in logic when that is cheaper (its costs).
``boards/synth.py`` gives the actual figures to compare with (``dynfix synth``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from dynfix.errors import DynfixError
from dynfix.quant.layers.leaky_relu import SLOPE_BITS, SLOPE_SHIFT_MAX
from .timing import OPERAND_STAGES, PRODUCT_STAGES, tree_levels, write_delay
from .config import EngineConfig, clog2
from .fpga_family import FpgaFamily
from .ice40_spram import spram_cells
from .lut_mul import structure as lut_mul_structure
from .sign_product import structure as sign_structure
from .program import entry_layout

__all__ = ["Usage", "Estimate", "Device", "MemorySpec", "estimate", "memory_blocks",
           "engine_memories", "map_bulk_usage"]

def lut_product_usage(data_bits: int, weight_bits: int) -> tuple[int, int]:
    """(LUT4s, FFs) of one product in LUTs (``hw/lut_mul.py``): a LUT4 per partial-product
    bit, a carry-chain half per adder result bit and one per adder (``CCU2C`` cells count two
    ``TRELLIS_COMB`` each in nextpnr), the flip-flops of its registers. The count against
    yosys's ``synth_ecp5`` of one ``LutMul``: docs/boards.md, "Measurements behind the
    design"."""
    rows, adder_bits, adders, regs = lut_mul_structure(data_bits, weight_bits)
    return rows + adder_bits + adders, regs


def sign_product_usage(data_bits: int, weight_bits: int) -> tuple[int, int, int]:
    """(LUT4s, FFs, shared FFs) of one product without a multiplier (``hw/sign_product.py``,
    ``structure``): a LUT4 per bit of its one's complement, the flip-flops of its weight's and
    its result's registers, and those of the map value's registers, which every product of
    one map value (a lane's, across the rows) shares."""
    luts, _, regs, shared = sign_structure(data_bits, weight_bits)
    return luts, regs, shared


def tree_carries(n: int) -> int:
    """Flip-flops of the carries an :class:`AdderTree` of ``n`` inputs with ``carries``
    keeps waiting: after each level, the carries its adders did not take."""
    regs, left, level = 0, n, n
    for _ in range(tree_levels(n)):
        left -= level // 2
        level = (level + 1) // 2
        regs += left
    return regs


@dataclass
class Usage:
    luts: float = 0.0
    ffs: float = 0.0
    dsps: int = 0
    brams: int = 0
    sprams: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.luts + other.luts, self.ffs + other.ffs, self.dsps + other.dsps,
                     self.brams + other.brams, self.sprams + other.sprams)

    def rounded(self) -> dict[str, int]:
        return {"luts": round(self.luts), "ffs": round(self.ffs), "dsps": self.dsps,
                "brams": self.brams, "sprams": self.sprams}


@dataclass(frozen=True)
class Device:
    """What the estimate needs to know about the FPGA (from a board file)."""

    family: FpgaFamily
    dsp_a_bits: int
    dsp_b_bits: int
    bram_shapes: tuple[tuple[int, int, int], ...]
    sprams: int = 0             # iCE40 SB_SPRAM256KA cells

    @classmethod
    def from_board(cls, board) -> "Device":
        return cls(board.family, board.dsp.a_bits, board.dsp.b_bits, board.bram.shapes,
                   board.spram.blocks if board.spram is not None else 0)


@dataclass(frozen=True)
class MemorySpec:
    name: str
    depth: int
    width: int
    rom: bool
    spram: bool = False         # in iCE40 SPRAM cells (``hw/ice40_spram.py``), not block RAM
    lane_bits: int = 0          # each lane of this many bits has its own write enable


@dataclass
class Estimate:
    blocks: dict[str, Usage] = field(default_factory=dict)
    memories: dict[str, str] = field(default_factory=dict)   # name -> "N blocks" / "logic"

    @property
    def total(self) -> Usage:
        t = Usage()
        for u in self.blocks.values():
            t = t + u
        return t

    def to_dict(self) -> dict:
        return {"total": self.total.rounded(),
                "blocks": {k: v.rounded() for k, v in self.blocks.items()},
                "memories": dict(self.memories)}


def adder_tree(n: int, width: int) -> tuple[int, int]:
    """(adder bits, register bits) of :class:`AdderTree` with ``n`` inputs of ``width``."""
    adds = regs = 0
    level = n
    for depth in range(tree_levels(n)):
        w = width + depth + 1
        adds += (level // 2) * w
        level = (level + 1) // 2
        regs += level * w
    return adds, regs


def shifter(width: int, amount: int) -> int:
    """LUT4s of a barrel shifter moving ``width`` bits by 0..``amount``."""
    return width * clog2(amount + 1) if amount > 0 else 0


@lru_cache(maxsize=None)
def memory_blocks(depth: int, width: int, shapes: tuple[tuple[int, int, int], ...],
                  block_cost: int = 128, lane_bits: int = 0, rom: bool = False) -> int:
    """Blocks of ``depth`` x ``width``, as yosys' ``memory_libmap`` maps it: for each
    (depth, width, bits per write enable) shape, each lane of ``lane_bits`` (its own write
    enable; 0: one for the word; a ROM has none) is padded to whole enable groups, the depth
    is cut into the shape's rows, and the rows' padded words are laid side by side in
    blocks; the shape of least cost is taken: ``block_cost`` per block plus half a unit per
    bit of the rows' read multiplexer and per write enable of their decode (a width of
    9-bit bytes thus costs a bit per 8-bit lane, and a deep memory takes narrow blocks
    rather than a wide multiplexer)."""
    if width <= 0:
        return 0
    lanes, group = (width // lane_bits, lane_bits) if lane_bits else (1, width)
    best = None
    for d, w, e in shapes:
        e = 1 if rom else min(e, w)
        padded = lanes * -(-group // e) * e
        rows = -(-depth // d)
        blocks = -(-rows * padded // w)
        decode = 0 if rom or rows == 1 else rows * lanes
        cost = block_cost * blocks + 0.5 * ((rows - 1) * width + decode)
        if best is None or cost < best[0]:
            best = (cost, blocks)
    return best[1]


def engine_memories(cfg: EngineConfig) -> list[MemorySpec]:
    n = cfg.lanes
    return [
        MemorySpec("fmap", cfg.fmap_depth, n * cfg.fmap_lane_bits, rom=False,
                   spram=bool(cfg.m_spram), lane_bits=cfg.fmap_lane_bits),
        (MemorySpec("weights", cfg.w_ring, cfg.weight_word_bits, rom=False) if cfg.w_bulk
         else MemorySpec("weights", cfg.weight_depth, cfg.weight_word_bits, rom=True,
                         spram=bool(cfg.w_spram))),
        MemorySpec("biases", cfg.bias_depth, cfg.tm * cfg.bias_lane_bits, rom=True),
        MemorySpec("program", cfg.prog_depth, entry_layout(cfg).size, rom=True),
    ] + ([MemorySpec("dw_line", cfg.dw_line, (cfg.dw_window - 1) * n * cfg.data_bits,
                     rom=False)] if cfg.dw_window else [])


def memory_usage(mem: MemorySpec, dev: Device) -> tuple[Usage, str]:
    if mem.spram:
        # SB_SPRAM256KA cells side by side and deep; the load port (word and column counters,
        # the registered write: address, halfword, nibble mask), the address select between
        # load and read, and a read multiplexer over the rows.
        # (A RAM in SPRAM, the maps, has no load port: its writes are the engine's own.)
        rows, cols = spram_cells(mem.depth, mem.width)
        ab = clog2(mem.depth)
        row_mux = mem.width * (rows - 1)
        row_reg = (rows > 1) * (rows - 1).bit_length()
        if not mem.rom:
            return (Usage(luts=row_mux, ffs=row_reg, sprams=rows * cols),
                    f"{rows * cols} SPRAMs")
        luts = 2 * ab + cols + ab + row_mux
        ffs = 2 * ab + cols.bit_length() + 16 + 4 * cols + 1 + row_reg
        return Usage(luts=luts, ffs=ffs, sprams=rows * cols), f"{rows * cols} SPRAMs"
    blocks = memory_blocks(mem.depth, mem.width, dev.bram_shapes, dev.family.bram_cost,
                           mem.lane_bits, mem.rom)
    bits = mem.depth * mem.width
    logic_cost = bits / 16 if mem.rom else bits
    if blocks * dev.family.bram_cost <= logic_cost:
        return Usage(dsps=0, brams=blocks), f"{blocks} blocks"
    # In logic: a ROM is a LUT4 per 16 bits of each output bit, plus the read mux tree
    # (free up to the family's ``rom_free_mux_depth`` words); a RAM is a FF per bit and a
    # read mux.
    if mem.rom:
        free_mux = dev.family.rom_free_mux_depth
        luts = mem.width * max(1, -(-mem.depth // 16)) * (1 + (mem.depth > free_mux) / 3)
        return Usage(luts=luts, ffs=mem.width), "logic"
    return Usage(luts=bits / 2, ffs=bits + mem.width), "logic"


def map_bulk_usage(cfg: EngineConfig) -> dict[str, Usage]:
    """The logic that maps in bulk memory (``cfg.m_bulk``) add to an engine, in LUT4s and
    FFs, per block of :func:`estimate`: the map DMA, the read arbiter, the weight ring's
    credit gate, and the engine's selects in front of the map memory's ports.

    The DMA's, the arbiter's and the gate's formulas are fitted to yosys ``synth_ecp5`` of
    each component alone over word widths 32 to 1248 bits and buses of 16 to 64 bits (the
    tables in docs/engine.md, "Maps in bulk memory"): maps in bulk memory need a bulk store
    the engine can write, and the only one a board offers is the ULX3S's SDRAM, on an ECP5
    (``boards/fit.py``, ``map_store``). The selects are counted from their widths, as the
    rest of the estimate is; the controller's states are a constant."""
    k, bus, fa = cfg.map_beats, cfg.bus_bits, cfg.fmap_addr_bits
    # MapDma (hw/map_dma.py): a BulkReader and a BulkWriter (their bus-word counters of
    # ``count`` bits, bursts, addresses), the LOAD's assembly register and the STORE's beat
    # select over ``k - 1`` beats of the bus, the word position and the map address.
    count = ((2 ** (fa + 1) - 1) * k).bit_length()
    assembly = (k - 1) * bus
    dma = Usage(luts=280 + 0.9 * assembly + 17 * count, ffs=70 + assembly + 6 * count)
    # AxiReadArbiter (hw/axi_read_arbiter.py): the AR register stage (the address and the
    # burst's fields), the pick, the owners' FIFO that routes R.
    arbiter = Usage(luts=52 + cfg.bulk_addr_bits, ffs=27 + cfg.bulk_addr_bits)
    # The ring's credit gate (hw/weight_ring.py, ``credit``): the beats owed and the sum of
    # the ring's words, beats and the burst asked for, compared with its capacity; the
    # product of its words and the beats a word takes is shifts for a power of two, an
    # adder array otherwise.
    beats = cfg.word_beats
    need = (4 * cfg.w_ring * beats).bit_length()
    gate = Usage(luts=(5 if beats & (beats - 1) == 0 else 10) * need, ffs=need - 1)
    # The engine's selects: the request's fields (load or store), the map memory's read
    # address (the DMA's), its write address, data and enables (the DMA's loads).
    n = cfg.lanes
    selects = Usage(luts=n * cfg.data_bits + n + 4 * fa + cfg.bulk_word_bits + 1)
    # The controller's four DMA states (a load before an entry, a store after it) and their
    # ends; the entry's DMA fields are in the program word (``entry_layout``).
    states = Usage(luts=50, ffs=4)
    return {"map_dma": dma, "bulk_arbiter": arbiter, "weight_ring": gate,
            "map_datapath": selects, "control": states}


#: The engine's parts as its Verilog holds them: part -> (the estimate's blocks, the engine's
#: submodules whose cells they count; "" is the engine module's own cells). What
#: ``boards/block_stat.py`` compares with yosys's ``stat`` per module.
PARTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "mac array": (("multipliers", "lut_products", "adder_trees", "accumulators"), ("mac",)),
    "requantizers": (("requantizers",), ("rq",)),
    "max pool": (("max_pool",), ("pool",)),
    "residual add": (("residual_add",), ("add", "sc_fifo")),
    "dw window": (("dw_window",), ("window",)),
    "control": (("control", "mem_program", "write_back"),
                ("ctrl", "seq", "loader", "unloader", "wb")),
    "maps": (("map_datapath", "mem_biases", "mem_fmap"), ("", "fmap")),
    "weight memory": (("mem_weights", "weight_ring", "codebook"), ("weights", "codebook")),
    # Amaranth names the DMA's module ``dma$<n>`` (the engine has a signal named ``dma``).
    "map dma": (("map_dma", "bulk_arbiter"), ("dma", "dma$", "bulk_arbiter")),
}


def estimate(cfg: EngineConfig, dev: Device, extra: dict[str, Usage] | None = None,
             lut4: bool = False) -> Estimate:
    """Per-block usage of the fitted engine ``cfg`` (every width and depth set) on ``dev``,
    with the ``extra`` blocks around it (in LUT4s and FFs, as the engine's are counted).
    The LUTs are in the unit nextpnr reports (``FpgaFamily.lut_factor`` and
    ``ff_packing``), or with ``lut4`` in LUT4s, as yosys counts them."""
    n, tm, db, wb = cfg.lanes, cfg.tm, cfg.data_bits, cfg.weight_bits
    ab, acc = cfg.acc_bits, cfg.fmap_addr_bits
    prod = db + wb
    est = Estimate()
    if (cfg.w_spram or cfg.m_spram) and not dev.sprams:
        raise DynfixError("the engine keeps its weights or maps in iCE40 SPRAM (w_spram or "
                          "m_spram: 1); this device has none: generate the engine for this "
                          "board")

    cells = n * tm - cfg.lut_products       # products on DSP blocks (none in LUTs: dual_mac)
    if cfg.dual_mac:
        if not dev.family.dual_mac:
            raise DynfixError(f"the engine pairs products on iCE40 SB_MAC16 blocks (dual_mac: "
                              f"1); {dev.family.name} DSP blocks take one product each: "
                              f"generate the engine for this board")
        # Pairs of products on SB_MAC16 cells (hw/ice40_dual_mac.py): a fabric register in
        # front (the map values' copies are identical across rows and merge: one per lane),
        # the cell's registers, a fabric product register behind (the adder tree's input).
        est.blocks["multipliers"] = Usage(ffs=n * db + n * tm * (wb + prod),
                                          dsps=cfg.dsp_blocks)
    elif cfg.sign_products:
        # Products without multipliers (hw/sign_product.py), counted in LUT4s as the LUT
        # products are (the family's lut_factor taken back out): per product its LUTs and
        # registers, the map value's registers once per value they multiply (a lane's for
        # every row; each row's own with dw_window).
        luts, ffs, shared = sign_product_usage(db, wb)
        values = n * (tm if cfg.dw_window else 1)
        est.blocks["multipliers"] = Usage(luts=n * tm * luts / dev.family.lut_factor,
                                          ffs=n * tm * ffs + values * shared)
    elif cfg.ecp5_dsp:
        if not dev.family.registered_dsp:
            raise DynfixError(f"the engine puts its products on ECP5 MULT18X18D cells "
                              f"(ecp5_dsp: 1); {dev.family.name} has none: generate the "
                              f"engine for this board")
        # One registered MULT18X18D per product (hw/ecp5_mul.py): a fabric operand register
        # per product (the map values' copies are kept apart on ECP5), the cell's input and
        # output registers (in the cell: not counted), a fabric product register behind.
        # With packed_dsp a pair shares the map value's register and its cell
        # (hw/ecp5_packed_mul.py): one map-value register less per pair; the weights'
        # decrement in front of the cell and the split's adder behind it are logic.
        pairs = cfg.packed_pairs
        est.blocks["multipliers"] = Usage(luts=pairs * (wb + 1 + prod),
                                          ffs=cells * (db + wb + prod) - pairs * db,
                                          dsps=cfg.dsp_blocks)
    else:
        per_mult = -(-db // dev.dsp_a_bits) * -(-wb // dev.dsp_b_bits)
        if db > dev.dsp_a_bits or wb > dev.dsp_b_bits:
            # Wider than one block: partial products in DSPs, their sum in logic.
            mult_luts = cells * (per_mult - 1) * (prod + 2)
        else:
            mult_luts = 0
        # Per multiplier: its operand copies and product registers (hw/mac_array.py; the
        # last product register is the adder tree's input, half of which a DSP block may
        # absorb).
        est.blocks["multipliers"] = Usage(
            luts=mult_luts,
            ffs=cells * (OPERAND_STAGES * (db + wb) + (PRODUCT_STAGES - 0.5) * prod),
            dsps=cells * per_mult)
    if cfg.lut_products:
        # Products in LUTs (hw/lut_mul.py), measured per product in LUT4s: the family's
        # lut_factor (calibrated on whole engines, whose wide multiplexers abc packs) is
        # taken back out, carry chains are not packed.
        luts, ffs = lut_product_usage(db, wb)
        est.blocks["lut_products"] = Usage(luts=cfg.lut_products * luts / dev.family.lut_factor,
                                           ffs=cfg.lut_products * ffs)

    tree_adds, tree_regs = adder_tree(n, prod)
    levels = tree_levels(n)
    stages = 1 + levels
    # With sign products the trees keep the carries their adders have not taken yet.
    est.blocks["adder_trees"] = Usage(luts=tm * tree_adds,
                                      ffs=tm * (tree_regs + cfg.sign_products * tree_carries(n)))
    # The accumulator (also the output), the bias's register and the shifted bias's; the
    # bias read comes late (hw/mac_array.py, bias_lag): its address is delayed, not the
    # bias words.
    est.blocks["accumulators"] = Usage(
        luts=tm * (2 * ab + shifter(ab, cfg.acc_bits - 1)),
        ffs=tm * (2 * ab + cfg.bias_bits) + (stages - 2) * cfg.bias_addr_bits)
    # The shift (no rounding adder: the constant is in the biases) and the clamp (its
    # decision bits and the kept value registered before the select). Offsets:
    # one compare bit more, the zp adder, the bounds minus zp (registered). A shift per
    # channel: each lane's shift delayed from the bias read to the requantizer.
    # A slope stage: the clamped value's register, a data_bits x SLOPE_BITS product in LUTs
    # (shift-and-add rows), its rounding adder, a barrel shift and the output mux.
    # Half to even: the mask of the low s bits (its decode from the shift, registered), the
    # zero test of the masked accumulator (an OR tree) and the enable bit.
    off, slope, even = int(cfg.offsets), int(cfg.slope), int(cfg.round_even)
    sw = db + SLOPE_BITS + 1
    est.blocks["requantizers"] = Usage(
        luts=tm * (ab + shifter(ab, ab) + shifter(db, db) + 3 * db + off * 4 * (db + 1)
                   + slope * (SLOPE_BITS * sw + sw + shifter(sw, SLOPE_SHIFT_MAX) + db)
                   + even * 2 * ab),
        ffs=tm * (ab + 3 * db + 4 + off * 2 * (db + 1) + slope * 2 * (db + 1) + even * (ab + 1)
                  + cfg.ch_shift * 2 * cfg.shift_bits))
    est.blocks["max_pool"] = Usage(luts=tm * 2 * db, ffs=tm * (db + 2))
    # Map word paths: pad zeroing, write-data select, output lane select, write enables.
    # With ecp5_dsp the unload registers the whole word before its lane multiplexer.
    est.blocks["map_datapath"] = Usage(luts=n * db * 2 + db * (n - 1) / 2 + 2 * n,
                                       ffs=n * db + 2 * db + cfg.ecp5_dsp * (n - 1) * db)
    if not cfg.packed_writeback:
        # Straddling groups (hw/write_back.py): rotation muxes over the lane offsets, the
        # burst shift register, the write-data select and the channel-limit compares.
        n_slots = cfg.wb_words * n
        options = min(n // cfg.wb_step, -(-tm // cfg.wb_step))
        est.blocks["write_back"] = Usage(
            luts=n_slots * db * max(1, options - 1) + (n_slots - n) * db + n * db
            + tm * cfg.dim_bits / 2,
            ffs=(n_slots - n) * (db + 1) + 2 * acc + cfg.dim_bits)
    if cfg.residual:
        # hw/residual_add.py and its feed: a pixel's slot words (all registered), the lane
        # pick at the group's offset and its register, the shortcut FIFO (registers and a
        # read mux), the aligned sum and a requantizer per channel; the sequencer's shortcut
        # address registers, and the offset's and the write's delays to the pick.
        sb, depth = cfg.sum_bits, cfg.sc_depth
        options = n // cfg.wb_step
        est.blocks["residual_add"] = Usage(
            luts=tm * db * (max(1, options - 1) + max(0, depth - 1))
            + tm * (sb + shifter(db, cfg.add_align) * 2)
            + tm * (2 * sb + shifter(sb, sb) + shifter(db, db) + 3 * db) + 4 * acc,
            ffs=cfg.sc_slots * n * db + (depth + 1) * tm * db + tm * (2 * sb + 3 * db + 4)
            + 3 * acc + 2 * clog2(depth + 1) + n.bit_length() + 2)
    if cfg.depthwise:
        # The depthwise group's input word offset (hw/sequencer.py): a word and a lane
        # register, their adders, and the offset added to the group's start address.
        est.blocks["control"] = Usage(luts=3 * acc + n.bit_length() + 2,
                                      ffs=acc + n.bit_length())
    if cfg.dw_window:
        # hw/dw_window.py: the K x K window of words and the stage-B word, the taps' pick
        # per row (the group's lane offset: lanes / tm choices) and the window/pass-through
        # select, the position counters; the weight and bias addresses' two more delays.
        k = cfg.dw_window
        est.blocks["dw_window"] = Usage(
            luts=tm * k * k * db * (n // tm) + 8 * cfg.dim_bits,
            ffs=(k * k + 1) * n * db + 4 * cfg.dim_bits + 2 * (cfg.weight_addr_bits
                                                              + cfg.bias_addr_bits))
    if cfg.resize:
        # Resize views (hw/sequencer.py, VIEW_STEPS): a select of the even or the odd step in
        # front of six levels' address adders, a LUT per address bit (docs/engine.md,
        # "Resize x2").
        est.blocks["control"] = est.blocks.get("control", Usage()) + Usage(luts=6 * acc)
    if cfg.rect_pool:
        # Rectangular pools (hw/sequencer.py): dy's own count field and its registered
        # compares (== 1, == 2, the limit), docs/engine.md "Rectangular max pools".
        est.blocks["control"] = est.blocks.get("control", Usage()) + Usage(
            luts=2 * cfg.dim_bits, ffs=cfg.dim_bits + 4)
    if cfg.m_spram:
        # One map port (hw/sequencer.py): the window ends' shift register, the hold, and the
        # write/read address select in front of the SPRAM.
        est.blocks["control"] = est.blocks.get("control", Usage()) + Usage(
            luts=acc + 2, ffs=write_delay(cfg) + cfg.wb_words)
    if cfg.w_bulk:
        # The weight ring (hw/weight_ring.py) besides its memory: the bulk reader's counters
        # and burst logic, the beat position and the slices' write enables, the ring's
        # pointers; the sequencer's tile end and wait. Fitted to yosys synth_ice40 of the
        # ring alone over five word and bus widths (docs/engine.md, "Weights from bulk
        # memory").
        pos = cfg.weight_addr_bits
        est.blocks["weight_ring"] = Usage(luts=160 + 2 * cfg.word_beats + 3 * pos,
                                          ffs=40 + 4 * pos)
    if cfg.w_index_bits:
        # The codebook lookup (hw/codebook.py): per weight of a word a 2**b-to-1 multiplexer
        # over the current codebook's registers (2**b - 1 LUT4s per weight bit, as yosys
        # maps it without abc) and its output register; the codebook's registers and their
        # load from the table of constants the entry's ``cb`` selects (a LUT4 per bit for
        # each 16 tables).
        size = cfg.codebook_entries
        est.blocks["codebook"] = Usage(
            luts=n * tm * wb * (size - 1) + size * wb * -(-cfg.codebooks // 16),
            ffs=n * tm * wb + size * wb)
    if cfg.m_bulk:
        for name, use in map_bulk_usage(cfg).items():
            est.blocks[name] = est.blocks.get(name, Usage()) + use
    layout_bits = entry_layout(cfg).size
    dims = cfg.dim_bits
    # Controller, sequencer (nested loop counters and address steps), two map walkers,
    # write-back addressing, cycle counters.
    ctrl_luts = (12 * dims + 8 * acc + cfg.weight_addr_bits + cfg.bias_addr_bits
                 + 2 * (3 * dims + 2 * acc) + 3 * acc + 2 * 32 + 60)
    ctrl_ffs = (layout_bits + 10 * dims + 6 * acc + 2 * (2 * dims + acc) + 3 * acc + 3 * 32
                + 12)
    est.blocks["control"] = est.blocks.get("control", Usage()) + Usage(luts=ctrl_luts,
                                                                        ffs=ctrl_ffs)

    for mem in engine_memories(cfg):
        use, how = memory_usage(mem, dev)
        est.blocks[f"mem_{mem.name}"] = use
        est.memories[mem.name] = f"{mem.depth} x {mem.width}: {how}"
    for name, use in (extra or {}).items():
        est.blocks[name] = Usage(luts=use.luts, ffs=use.ffs, dsps=use.dsps, brams=use.brams,
                                 sprams=use.sprams)

    if lut4:
        return est
    # From LUT4s and FFs to the unit nextpnr reports.
    for name, u in est.blocks.items():
        u.luts = u.luts * dev.family.lut_factor + u.ffs * dev.family.ff_packing
    return est
