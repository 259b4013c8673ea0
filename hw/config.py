"""Engine configuration: what the user or the fit chooses (parallelism, the multiplier
backend, where weights and maps live), and the widths, depths and datapath stages the compiler
fits to the program.

The engine works in *channel mode*: a feature-map word holds ``lanes = tn`` values of one
pixel (consecutive channels), and each cycle ``tm`` output channels take a dot product of one
map word with ``tm`` weight words, so the engine has ``tm * lanes`` multipliers (products per
cycle). The :class:`Multiplier` backend says where they are computed: in the fabric (yosys
maps them), pairwise on iCE40 SB_MAC16 blocks in their dual 8x8 mode
(``hw/ice40_dual_mac.py``, half as many DSP blocks), each on an ECP5 MULT18X18D instantiated
with its own registers (``hw/ecp5_mul.py``), or two per MULT18X18D (``hw/ecp5_packed_mul.py``);
with weights of at most 2 bits, all in LUTs without multipliers (``hw/sign_product.py``).
With ``lut_products`` the last of them (row-major: output channel, then lane) are computed in
LUTs and carry chains instead (``hw/lut_mul.py``), so an engine can have more products per
cycle than the device has DSP blocks.

Three kinds of field, kept apart:

* **choices** (:data:`CHOICE_KEYS`): ``tn``, ``tm``, ``im2col``, ``multiplier``,
  ``lut_products``, ``w_spram``, ``m_spram``, ``w_bulk``, ``bulk_bits``, ``bulk_store``,
  ``m_bulk``, ``w_index_bits``; what ``engine.yaml`` holds and
  ``dynfix boards --fit`` chooses;
* **bounds** (:data:`FITTED_KEYS`): widths and depths; 0 means "fit to the program", a value
  given is an upper bound the program must fit;
* **derived** (:data:`DERIVED_KEYS`): the datapath stages the program needs (residual add,
  depthwise window, ...), set by the compiler only; a configuration file cannot set them.

Older configurations also had ``k`` (lanes were ``tn * k * k``) and the flags ``dual_mac``,
``ecp5_dsp`` and ``packed_dsp``: :meth:`EngineConfig.from_dict` converts them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields, replace
from math import gcd

from dynfix.errors import DynfixError, member

#: Parallelism keys; the widths and depths are fitted to the program unless given.
PARALLEL_KEYS = ("tn", "tm")
#: Widest data or weight operand of a ``dual_mac`` engine (an SB_MAC16 half is 8 x 8).
DUAL_MAC_BITS = 8
#: Widest data or weight operand of an ``ecp5_dsp`` engine (a MULT18X18D is 18 x 18).
ECP5_DSP_BITS = 18
#: Widest weight of a ``sign`` engine (``hw/sign_product.py``: -2, -1, 0, 1).
SIGN_WEIGHT_BITS = 2
#: The bulk port's data width when ``bulk_bits`` is 0.
DEFAULT_BULK_BITS = 64
#: Fields the compiler fits to the program when they are 0.
FITTED_KEYS = ("data_bits", "weight_bits", "bias_bits", "acc_bits", "fmap_depth",
               "weight_depth", "bias_depth", "prog_depth", "dim_bits")
#: What the user or the fit chooses: the keys of ``engine.yaml``.
CHOICE_KEYS = ("tn", "tm", "im2col", "multiplier", "lut_products", "w_spram", "m_spram",
               "w_bulk", "bulk_bits", "bulk_store", "m_bulk", "w_index_bits")
#: Choice keys whose values are names (enums), not integers.
NAMED_KEYS = ("multiplier", "bulk_store")
#: Datapath stages and sizes the compiler derives from the program; never set by a user.
DERIVED_KEYS = ("residual", "add_align", "sc_depth", "depthwise", "w_share", "offsets",
                "ch_shift", "slope", "round_even", "dw_window", "dw_line", "map_bulk", "resize",
                "rect_pool", "codebooks")
#: Widest weight index (``w_index_bits``): a codebook of ``2**8`` entries at most.
MAX_INDEX_BITS = 8


def _parse_named(cls, key: str, value, where: str):
    """The member of the enum ``cls`` (a config key's values) named ``value``."""
    return member(cls, value, f"{where}: {key}")


class Multiplier(enum.Enum):
    """Where an engine computes its products: the multiplier backend."""

    #: ``$mul`` cells that yosys maps (to DSP blocks where it infers them).
    FABRIC = "fabric"
    #: Two products of at most 8-bit operands per iCE40 SB_MAC16, in its dual 8x8 mode.
    ICE40_DUAL = "ice40-dual"
    #: One product per instantiated ECP5 MULT18X18D with its registers on.
    ECP5 = "ecp5"
    #: As ``ECP5``, and two products of one map value (8-bit maps, weights of at most 4 bits)
    #: per MULT18X18D where the rows pair up.
    ECP5_PACKED = "ecp5-packed"
    #: Every product in LUTs without a multiplier, for weights of at most 2 bits (-2..1):
    #: the map value selected, doubled or zeroed and complemented (``hw/sign_product.py``),
    #: on any family.
    SIGN = "sign"

    @classmethod
    def parse(cls, value, where: str = "engine config") -> "Multiplier":
        """A backend from its name (``fabric``, ``ice40-dual``, ``ecp5``, ``ecp5-packed``,
        ``sign``)."""
        return _parse_named(cls, "multiplier", value, where)

    @classmethod
    def from_flags(cls, dual_mac: int = 0, ecp5_dsp: int = 0, packed_dsp: int = 0,
                   where: str = "engine config") -> "Multiplier":
        """The backend of an older configuration's ``dual_mac``/``ecp5_dsp``/``packed_dsp``
        flags (combinations that never were valid are refused as they were)."""
        for key, v in (("dual_mac", dual_mac), ("ecp5_dsp", ecp5_dsp),
                       ("packed_dsp", packed_dsp)):
            if v not in (0, 1):
                raise DynfixError(f"{where}: {key}={v!r} must be 0 or 1")
        if dual_mac and ecp5_dsp:
            raise DynfixError(f"{where}: dual_mac (iCE40 SB_MAC16) and ecp5_dsp (ECP5 "
                              f"MULT18X18D) exclude each other")
        if packed_dsp and not ecp5_dsp:
            raise DynfixError(f"{where}: packed_dsp (two products per MULT18X18D) needs "
                              f"ecp5_dsp: 1")
        return (cls.ICE40_DUAL if dual_mac else cls.ECP5_PACKED if packed_dsp
                else cls.ECP5 if ecp5_dsp else cls.FABRIC)


class BulkStore(enum.Enum):
    """What holds an engine's bulk memory (``w_bulk``), which sets the memory's timing
    (:func:`dynfix.hw.timing.bulk_timing`) and what the board top puts behind the port."""

    #: RAM answering a burst a few cycles after its address, then a beat per cycle: iCE40
    #: SPRAM filled from the flash at power-up (``hw/spram_axi.py``), or the simulation's.
    RAM = "ram"
    #: The board's quad-SPI NOR flash, read at run time (``hw/qspi_flash_axi.py``): a read
    #: command per pass, then a nibble per two cycles.
    FLASH = "flash"
    #: An SDR SDRAM chip behind the controller of ``hw/sdram_axi.py``: a few cycles to open
    #: a row, then a 16-bit word per cycle; row changes and refreshes cost more (the cycle
    #: model is then a lower bound).
    SDRAM = "sdram"

    @classmethod
    def parse(cls, value, where: str = "engine config") -> "BulkStore":
        """A store from its name (``ram``, ``flash``, ``sdram``)."""
        return _parse_named(cls, "bulk_store", value, where)


def packable(a_bits: int, b_bits: int) -> bool:
    """Whether two products of one ``a_bits`` operand (a map value) and two ``b_bits``
    operands (weights) fit one MULT18X18D (``packed_dsp``, ``hw/ecp5_packed_mul.py``): the
    two weights with a product's width between them and a bit for the sign correction,
    ``a_bits + 2 * b_bits + 1 <= 18`` (8-bit maps with 4-bit weights)."""
    return a_bits >= 1 and b_bits >= 1 and a_bits + 2 * b_bits + 1 <= ECP5_DSP_BITS


def clog2(n: int) -> int:
    """Bits to address ``n`` items (at least 1)."""
    return max(1, (int(n) - 1).bit_length())


@dataclass(frozen=True)
class EngineConfig:
    """All parameters of one engine instance.

    ``tn`` (lanes) and ``tm`` fix the parallelism, ``multiplier`` the backend. The widths and
    depths default to 0, meaning "fit to the program" (:func:`dynfix.hw.compiler.compile_model`
    fills them in); a value given explicitly is an upper bound the program must fit.
    """

    tn: int = 1
    tm: int = 1
    im2col: int = 0         # 1: the host streams the first conv's windows (see compiler)
    multiplier: Multiplier = Multiplier.FABRIC
                            # where the products are computed (the fit chooses the family's:
                            #    ICE40_DUAL needs data and weights of at most 8 bits, ECP5
                            #    at most 18, ECP5_PACKED 8-bit maps with weights of at most
                            #    4 bits and no dw_window, whose rows take other values;
                            #    SIGN weights of at most 2 bits, on any family)
    lut_products: int = 0   # products computed in LUTs (hw/lut_mul.py) instead of DSP blocks:
                            #    the last ones in row-major order (output channel, lane;
                            #    pair-major with ECP5_PACKED: product_index);
                            #    not with ICE40_DUAL (the fit sets it on ECP5 boards when the
                            #    LUTs allow more products than the DSP blocks)
    w_spram: int = 0        # 1: weights in iCE40 SPRAM, written through the weight-load port
                            #    after configuration (the fit sets it when block RAM is short)
    m_spram: int = 0        # 1: feature maps in iCE40 SPRAM (one port: the sequencer holds its
                            #    reads while the write-back writes; the fit sets it when
                            #    block RAM is short)
    w_bulk: int = 0         # 1: weights in bulk memory behind an AXI4 read port, streamed
                            #    into an on-chip ring of ``w_ring`` words that the engine
                            #    computes from (hw/weight_ring.py); not with w_spram
    bulk_bits: int = 0      # the bulk port's data width with w_bulk: a power of two from 8
                            #    to 1024 (0: DEFAULT_BULK_BITS)
    bulk_store: BulkStore = BulkStore.RAM
                            # what holds the bulk memory with w_bulk (sets its timing)
    m_bulk: int = 0         # 0: every map on chip; N: the map memory holds at most N words,
                            #    maps that do not fit live in bulk memory and the layers
                            #    reading or writing them run in row strips moved by the map
                            #    DMA (hw/map_dma.py); needs w_bulk (the bulk port) and a
                            #    two-port map memory
    map_bulk: int = 0       # bus words of the maps in bulk memory (m_bulk; fitted), above
                            #    the weight image at ``maps_base``
    w_index_bits: int = 0   # b: every weight word holds b-bit indices into the group's
                            #    codebook of 2**b weights (hw/codebook.py), not weights
                            #    (weight sharing); 0: weights (the fit sets it when every
                            #    layer's weights take at most 2**b values and it helps)
    w_ring: int = 0         # ring words with w_bulk, a power of two; 0: fitted (the smallest
                            #    holding two of the program's largest weight tiles)
    data_bits: int = 0      # feature-map values (max over the program's bw_in / bw_x)
    weight_bits: int = 0    # max bw_w
    bias_bits: int = 0      # max bw_b
    acc_bits: int = 0       # max acc_bits
    fmap_depth: int = 0     # feature-map words, both ping-pong regions
    weight_depth: int = 0   # weight words (tm * lanes weights each)
    bias_depth: int = 0     # bias words (tm biases each)
    prog_depth: int = 0     # program entries
    dim_bits: int = 0       # width of map coordinates and loop counters
    # Derived from the program by the compiler (0 when the model has no residual Add):
    residual: int = 0       # 1: the residual-add stage after the requantizer (hw/residual_add.py)
    add_align: int = 0      # largest left shift aligning an Add's operands
    sc_depth: int = 0       # entries of the shortcut FIFO (windows in flight)
    depthwise: int = 0      # 1: depthwise convolutions (per-group input word offset, t_px)
    w_share: int = 0        # 1: kernels whose taps share their weights (a folded average pool)
    offsets: int = 0        # 1: unsigned maps (a padding value and an output offset per layer)
    ch_shift: int = 0       # 1: a data shift per output channel (stored with its bias)
    slope: int = 0          # 1: a LeakyReLU slope stage in the requantizers (a slope per layer)
    round_even: int = 0     # 1: requantizers that round half to even where a group's program
                            #    bit says so (even, add_even); 0: half up everywhere
    dw_window: int = 0      # K: depthwise K x K convolutions run on the window datapath
                            #    (hw/dw_window.py: line buffer, K x K window, one output
                            #    pixel of tm channels per input pixel); 0: none
    dw_line: int = 0        # line-buffer depth: the widest padded row of a window layer
    resize: int = 0         # 1: a group reads its input through a Resize view (each stored
                            #    pixel twice per axis): each loop level's map-address step
                            #    from an even and from an odd view coordinate (hw/sequencer.py)
    rect_pool: int = 0      # 1: max-pool windows whose rows and columns differ (a MaxPool1d's
                            #    1 x k): the pooling rows (dy) count to their own field
    codebooks: int = 0      # with w_index_bits: the codebooks (distinct per-layer tables of
                            #    2**w_index_bits weights) the program names (its ``cb``)

    def __post_init__(self) -> None:
        object.__setattr__(self, "multiplier", Multiplier.parse(self.multiplier))
        object.__setattr__(self, "bulk_store", BulkStore.parse(self.bulk_store))

    @property
    def lanes(self) -> int:
        return self.tn

    @property
    def dual_mac(self) -> int:
        """1: products in pairs on iCE40 SB_MAC16 blocks (``Multiplier.ICE40_DUAL``)."""
        return int(self.multiplier is Multiplier.ICE40_DUAL)

    @property
    def ecp5_dsp(self) -> int:
        """1: products on instantiated ECP5 MULT18X18D cells (``ECP5``, ``ECP5_PACKED``)."""
        return int(self.multiplier in (Multiplier.ECP5, Multiplier.ECP5_PACKED))

    @property
    def packed_dsp(self) -> int:
        """1: two products per MULT18X18D where rows pair (``Multiplier.ECP5_PACKED``)."""
        return int(self.multiplier is Multiplier.ECP5_PACKED)

    @property
    def multipliers(self) -> int:
        return self.tm * self.lanes

    @property
    def sign_products(self) -> int:
        """1: every product without a multiplier, in LUTs (``Multiplier.SIGN``, weights of
        at most ``SIGN_WEIGHT_BITS`` bits)."""
        return int(self.multiplier is Multiplier.SIGN)

    @property
    def logic_products(self) -> int:
        """Products computed in the fabric's logic rather than on DSP blocks: every one with
        ``sign_products``, else the ``lut_products``."""
        return self.multipliers if self.sign_products else self.lut_products

    @property
    def dsp_blocks(self) -> int:
        """Hard multiplier blocks the MAC array uses when every product fits one block: one
        per product not in LUTs and not packed, one per packed pair (``packed_dsp``), or one
        per pair of products with ``dual_mac``; none with ``sign_products``
        (``hw/resources.py`` counts the blocks of products wider than a block)."""
        return -(-self.multipliers // 2) if self.dual_mac else (self.multipliers
                                                                 - self.logic_products
                                                                 - self.packed_pairs)

    def product_index(self, j: int, lane: int) -> int:
        """Position of output channel ``j``'s product of ``lane`` in the order products go
        to LUTs from the end (``lut_products``): row-major, or with ``packed_dsp`` pair-major
        (rows 2r and 2r+1 lane by lane, so the products left on DSP blocks stay in pairs),
        an odd ``tm``'s unpaired last row last (one block per product: the first to go)."""
        if not self.packed_dsp or (self.tm % 2 and j == self.tm - 1):
            return j * self.lanes + lane
        return (j // 2) * 2 * self.lanes + 2 * lane + j % 2

    def lut_product(self, j: int, lane: int) -> bool:
        """Whether output channel ``j``'s product of ``lane`` is computed in LUTs: the last
        ``lut_products`` in :meth:`product_index` order."""
        return self.product_index(j, lane) >= self.multipliers - self.lut_products

    def packed_pair(self, j: int, lane: int) -> bool:
        """Whether output channel ``j``'s product of ``lane`` shares a MULT18X18D with its
        partner row's (``j ^ 1``; ``packed_dsp``): rows 2r and 2r+1 pair in every lane
        where neither product is in LUTs (an odd ``tm``'s last row has no partner)."""
        top = j | 1
        return bool(self.packed_dsp) and top < self.tm and not self.lut_product(top, lane)

    @property
    def packed_pairs(self) -> int:
        """MULT18X18D cells that take two products each (``packed_dsp``)."""
        if not self.packed_dsp:
            return 0
        return sum(self.packed_pair(j, lane) for j in range(0, self.tm - 1, 2)
                   for lane in range(self.lanes))

    @property
    def pairable(self) -> bool:
        """Whether the products fit SB_MAC16 halves (``dual_mac`` possible): data and
        weights of at most ``DUAL_MAC_BITS`` bits."""
        return max(self.data_bits, self.weight_bits) <= DUAL_MAC_BITS

    @property
    def ecp5_sized(self) -> bool:
        """Whether the products fit one MULT18X18D each (``ecp5_dsp`` possible): data and
        weights of at most ``ECP5_DSP_BITS`` bits."""
        return max(self.data_bits, self.weight_bits) <= ECP5_DSP_BITS

    def summary(self) -> str:
        """The parallelism in one phrase: ``tn=4 tm=4`` (+ `` im2col``, `` dual 8x8``,
        `` ecp5 dsp``, `` +20 lut`` (``lut_products``), `` spram weights+maps``,
        `` dw window 3x3``, `` 4-bit weight indices``)."""
        spram = "+".join(name for name, on in (("weights", self.w_spram), ("maps", self.m_spram))
                         if on)
        return (f"tn={self.tn} tm={self.tm}" + (" im2col" if self.im2col else "")
                + (" dual 8x8" if self.dual_mac else "") + (" ecp5 dsp" if self.ecp5_dsp else "")
                + (" packed" if self.packed_dsp else "")
                + (" sign" if self.sign_products else "")
                + (f" +{self.lut_products} lut" if self.lut_products else "")
                + (f" spram {spram}" if spram else "")
                + (f" bulk weights{'+maps' if self.m_bulk else ''} {self.bus_bits}b"
                   if self.w_bulk else "")
                + (f" in {self.bulk_store.value}" if self.bulk_store is not BulkStore.RAM
                   else "")
                + (f" dw window {self.dw_window}x{self.dw_window}" if self.dw_window else "")
                + (f" {self.w_index_bits}-bit weight indices" if self.w_index_bits else ""))

    def multipliers_text(self) -> str:
        """``8 multipliers``, ``16 multipliers on 8 DSP blocks`` with ``dual_mac``,
        ``12 multipliers (5 in LUTs, 7 DSP blocks)`` with ``lut_products``, or
        ``16 multipliers (12 packed in pairs, 10 DSP blocks)`` with ``packed_dsp``, or
        ``64 multipliers in LUTs (sign products)`` with ``sign_products``."""
        if self.sign_products:
            return f"{self.multipliers} multipliers in LUTs (sign products)"
        on = f" on {self.dsp_blocks} DSP blocks" if self.dual_mac else ""
        parts = ([f"{2 * self.packed_pairs} packed in pairs"] if self.packed_dsp else []) + (
            [f"{self.lut_products} in LUTs"] if self.lut_products else [])
        if parts:
            on = f" ({', '.join(parts)}, {self.dsp_blocks} DSP blocks)"
        return f"{self.multipliers} multipliers{on}"

    def choice(self) -> dict:
        """What a fit chooses (:data:`CHOICE_KEYS`): the keys to rebuild this engine from, as
        ``engine.yaml`` holds them (the multiplier by its name)."""
        return {key: (getattr(self, key).value if key in NAMED_KEYS else getattr(self, key))
                for key in CHOICE_KEYS}

    @property
    def packed_writeback(self) -> bool:
        """Whether ``tm`` divides ``lanes``: every output group then lands in one map word at
        a lane offset that is a multiple of ``tm`` (one write, no rotation)."""
        return self.lanes % self.tm == 0

    @property
    def wb_step(self) -> int:
        """Granularity of a group's lane offset: offsets ``(g * tm) % lanes`` are multiples of
        ``gcd(tm, lanes)``."""
        return gcd(self.tm, self.lanes)

    @property
    def wb_words(self) -> int:
        """Map words the write-back writes per pooled output (the most a ``tm``-channel group
        can straddle, at the largest lane offset ``lanes - wb_step``)."""
        return -(-(self.lanes - self.wb_step + self.tm) // self.lanes)

    @property
    def sc_slots(self) -> int:
        """Map words a residual group reads per output pixel for its shortcut: the words
        its ``tm`` channels can straddle (``wb_words``, as the write-back)."""
        return self.wb_words

    @property
    def dw_words(self) -> int:
        """Input words a depthwise group of ``tm`` channels reads per tap pixel: the words
        its channels can straddle (as ``wb_words`` for the output)."""
        return self.wb_words

    def window_fits(self) -> bool:
        """Whether this engine's parallelism admits the depthwise window datapath for some
        kernel (``hw/dw_window.py``): a group of ``tm`` channels lies in one map word
        (``tm`` divides the lanes), at least a 2 x 2 kernel's taps fit the lanes, and the
        map memory has a read and a write port (not ``m_spram``), and the rows do not share
        cells (not ``packed_dsp``: the window gives every row its own values)."""
        return (self.lanes % self.tm == 0 and self.lanes >= 4 and not self.m_spram
                and not self.packed_dsp)

    @property
    def sum_bits(self) -> int:
        """Width of a residual Add's aligned sum: ``data_bits + add_align + 1``."""
        return self.data_bits + self.add_align + 1

    @property
    def align_bits(self) -> int:
        return max(1, self.add_align.bit_length())

    @property
    def add_shift_bits(self) -> int:
        """Signed width of an Add's data shift (range ``-data_bits .. sum_bits``)."""
        return max(self.sum_bits, self.data_bits).bit_length() + 1

    @property
    def fmap_lane_bits(self) -> int:
        """Bits a map value takes in the map memory: ``data_bits``, or with ``m_spram`` rounded
        up to whole nibbles (an SPRAM writes nibbles: each lane has its own enables)."""
        return -(-self.data_bits // 4) * 4 if self.m_spram else self.data_bits

    @property
    def weight_store_bits(self) -> int:
        """Bits a weight takes in the weight memory, ring or bulk image: ``weight_bits``, or
        with ``w_index_bits`` its codebook index's."""
        return self.w_index_bits or self.weight_bits

    @property
    def weight_word_bits(self) -> int:
        """Bits of a weight word: ``tm * lanes`` weights (or codebook indices)."""
        return self.tm * self.lanes * self.weight_store_bits

    @property
    def codebook_entries(self) -> int:
        """Weights in a codebook (``w_index_bits``): ``2**w_index_bits``."""
        return 1 << self.w_index_bits if self.w_index_bits else 0

    @property
    def fmap_addr_bits(self) -> int:
        return clog2(self.fmap_depth)

    @property
    def weight_addr_bits(self) -> int:
        """Bits of a weight address: of the weight memory, or with ``w_bulk`` of a position
        in the endless weight stream modulo twice the ring (a ring slot and a lap bit)."""
        return self.ring_bits + 1 if self.w_bulk else clog2(self.weight_depth)

    @property
    def ring_bits(self) -> int:
        """Bits of a ring slot (``w_bulk``)."""
        return clog2(self.w_ring)

    @property
    def bus_bits(self) -> int:
        """The bulk port's data width (``w_bulk``)."""
        return self.bulk_bits or DEFAULT_BULK_BITS

    @property
    def word_beats(self) -> int:
        """Bus words (beats) one weight word takes in bulk memory (``w_bulk``)."""
        return -(-self.weight_word_bits // self.bus_bits)

    @property
    def maps_base(self) -> int:
        """Bus-word address of the maps in bulk memory (``m_bulk``): the first 4 KiB page
        above the weight image."""
        page = 4096 * 8 // self.bus_bits
        return -(-self.weight_depth * self.word_beats // page) * page

    @property
    def map_beats(self) -> int:
        """Bus words (beats) one map word takes in bulk memory (``m_bulk``)."""
        return -(-self.lanes * self.data_bits // self.bus_bits)

    @property
    def bulk_addr_bits(self) -> int:
        """Byte-address bits of the bulk port: the weight image's bus words (at address 0)
        and the maps above it (``m_bulk``), at least a 4 KiB page."""
        words = self.maps_base + self.map_bulk if self.map_bulk else (
            self.weight_depth * self.word_beats)
        return max(12, clog2(words) + (self.bus_bits // 8).bit_length() - 1)

    @property
    def bulk_word_bits(self) -> int:
        """Bits of a bus-word address on the bulk port."""
        return self.bulk_addr_bits - ((self.bus_bits // 8).bit_length() - 1)

    @property
    def bias_addr_bits(self) -> int:
        return clog2(self.bias_depth)

    @property
    def prog_addr_bits(self) -> int:
        return clog2(self.prog_depth)

    @property
    def shift_bits(self) -> int:
        """Signed width of the data-shift field (range ``-data_bits .. acc_bits``)."""
        return max(self.acc_bits, self.data_bits).bit_length() + 1

    @property
    def bias_lane_bits(self) -> int:
        """Bits of one lane of a bias word: the bias, and with ``ch_shift`` its channel's
        data shift above it."""
        return self.bias_bits + (self.shift_bits if self.ch_shift else 0)

    @property
    def bias_shift_bits(self) -> int:
        return max(1, (self.acc_bits - 1).bit_length())

    def check_parallelism(self) -> None:
        bad = [f"{key}={getattr(self, key)!r}" for key in PARALLEL_KEYS
               if not isinstance(getattr(self, key), int) or getattr(self, key) < 1]
        if bad:
            raise DynfixError(f"engine config: {', '.join(bad)} must be positive integers")
        for key in ("im2col", "w_spram", "m_spram", "w_bulk", "residual", "depthwise",
                    "w_share"):
            if getattr(self, key) not in (0, 1):
                raise DynfixError(f"engine config: {key}={getattr(self, key)!r} must be 0 or 1")
        if not isinstance(self.w_index_bits, int) or not (
                0 <= self.w_index_bits <= MAX_INDEX_BITS):
            raise DynfixError(f"engine config: w_index_bits={self.w_index_bits!r} must be 0 "
                              f"(weights stored as such) or an index width of 1 to "
                              f"{MAX_INDEX_BITS} bits")
        if self.w_bulk and self.w_spram:
            raise DynfixError("engine config: w_bulk (weights in bulk memory) and w_spram "
                              "(weights in SPRAM) exclude each other")
        if self.bulk_bits and (self.bulk_bits < 8 or self.bulk_bits > 1024
                               or self.bulk_bits & (self.bulk_bits - 1)):
            raise DynfixError(f"engine config: bulk_bits={self.bulk_bits} must be a power of "
                              f"two from 8 to 1024 (0: {DEFAULT_BULK_BITS})")
        if self.bulk_store is not BulkStore.RAM and not self.w_bulk:
            raise DynfixError(f"engine config: bulk_store {self.bulk_store.value!r} needs "
                              f"w_bulk: 1 (weights in bulk memory)")
        if not isinstance(self.m_bulk, int) or self.m_bulk < 0:
            raise DynfixError(f"engine config: m_bulk={self.m_bulk!r} must be 0 (maps on "
                              f"chip) or the map memory's words")
        if self.m_bulk and (not self.w_bulk or self.m_spram):
            raise DynfixError("engine config: m_bulk (maps in bulk memory) needs w_bulk: 1 "
                              "(the bulk port) and m_spram: 0 (a two-port map memory)")
        if self.w_ring and (self.w_ring < 2 or self.w_ring & (self.w_ring - 1)):
            raise DynfixError(f"engine config: w_ring={self.w_ring} must be a power of two "
                              f"of at least 2 (0: fitted)")
        if self.lut_products > self.multipliers:
            raise DynfixError(f"engine config: lut_products={self.lut_products} is more than "
                              f"the engine's {self.multipliers} products (tm * lanes)")
        if self.lut_products and self.sign_products:
            raise DynfixError("engine config: lut_products (some products in LUTs beside the "
                              "DSP blocks) and the sign multiplier (every product in LUTs) "
                              "exclude each other")
        if self.lut_products and self.dual_mac:
            raise DynfixError("engine config: lut_products (products in LUTs) and the "
                              "ice40-dual multiplier (pairs on iCE40 SB_MAC16) exclude each "
                              "other")
        if self.packed_dsp and self.dw_window:
            raise DynfixError("engine config: the ecp5-packed multiplier shares a cell between "
                              "two rows' products of one map value; dw_window gives every row "
                              "its own values (use the ecp5 multiplier)")
        if self.dw_window == 1 or (self.dw_window and self.dw_window ** 2 > self.lanes):
            raise DynfixError(f"engine config: dw_window={self.dw_window} must be 0 or a "
                              f"window side K >= 2 with K * K <= lanes ({self.lanes})")
        if self.dw_window and (self.lanes % self.tm or self.m_spram):
            raise DynfixError(f"engine config: dw_window needs tm ({self.tm}) to divide the "
                              f"lanes ({self.lanes}) and a two-port map memory (m_spram: 0)")

    def check_fitted(self) -> None:
        """Raise unless every width and depth is set: an engine cannot be built before
        :func:`dynfix.hw.compiler.compile_model` has fitted them to a model."""
        unfitted = [key for key in FITTED_KEYS if getattr(self, key) < 1]
        if unfitted:
            raise DynfixError(f"engine config is not fitted: {', '.join(unfitted)} "
                              f"{'is' if len(unfitted) == 1 else 'are'} 0; the compiler "
                              f"(compile_model) fills them in from the model")
        if self.dual_mac and not self.pairable:
            raise DynfixError(f"engine config: the ice40-dual multiplier pairs products of at "
                              f"most {DUAL_MAC_BITS}-bit operands on one SB_MAC16; this model "
                              f"has {self.data_bits}-bit data and {self.weight_bits}-bit "
                              f"weights (use the fabric multiplier)")
        if self.ecp5_dsp and not self.ecp5_sized:
            raise DynfixError(f"engine config: the {self.multiplier.value} multiplier puts "
                              f"each product on one {ECP5_DSP_BITS} x {ECP5_DSP_BITS} "
                              f"MULT18X18D; this model has {self.data_bits}-bit data and "
                              f"{self.weight_bits}-bit weights (use the fabric multiplier)")
        if self.sign_products and self.weight_bits > SIGN_WEIGHT_BITS:
            raise DynfixError(f"engine config: the sign multiplier computes products of "
                              f"weights of at most {SIGN_WEIGHT_BITS} bits (-2..1) without "
                              f"multipliers; this model has {self.weight_bits}-bit weights "
                              f"(use the fabric multiplier)")
        if self.packed_dsp and not packable(self.data_bits, self.weight_bits):
            raise DynfixError(f"engine config: the ecp5-packed multiplier puts two products on "
                              f"one {ECP5_DSP_BITS}-bit MULT18X18D port, which takes data_bits "
                              f"+ 2 * weight_bits + 1 <= {ECP5_DSP_BITS} bits (8-bit data with "
                              f"4-bit weights); this model has {self.data_bits}-bit data and "
                              f"{self.weight_bits}-bit weights (use the ecp5 multiplier)")

    def to_dict(self) -> dict:
        """Every field, the multiplier by its name (what ``report.json`` records)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for key in NAMED_KEYS:
            d[key] = getattr(self, key).value
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "engine config", *,
                  derived: bool = False) -> "EngineConfig":
        """A config from plain data: an ``engine.yaml``, a ``--config`` mapping, or (with
        ``derived``, which admits :data:`DERIVED_KEYS`) a report's. An older form converts:
        ``k`` multiplies into the lanes (``tn * k * k``: a map word always held that many
        channels of one pixel), the ``dual_mac``/``ecp5_dsp``/``packed_dsp`` flags become the
        ``multiplier``."""
        if not isinstance(d, dict):
            raise DynfixError(f"{where}: expected a mapping of keys to integers")
        d = dict(d)
        legacy = {key: d.pop(key) for key in ("k", "dual_mac", "ecp5_dsp", "packed_dsp")
                  if key in d}
        known = {f.name for f in fields(cls)} - (set() if derived else set(DERIVED_KEYS))
        unknown = sorted(set(d) - known)
        if unknown:
            derived_hint = (" (derived from the model by the compiler, not set)"
                            if set(unknown) & set(DERIVED_KEYS) else "")
            raise DynfixError(f"{where}: unknown key(s) {', '.join(unknown)}{derived_hint}; "
                              f"known: {', '.join(sorted(known | set(legacy)))}")
        multiplier = d.pop("multiplier", None)
        store = d.pop("bulk_store", None)
        bad = sorted(key for key, v in {**d, **legacy}.items()
                     if not isinstance(v, int) or isinstance(v, bool) or v < 0)
        if bad:
            raise DynfixError(f"{where}: {', '.join(bad)} must be non-negative integers")
        flags = {key: legacy[key] for key in ("dual_mac", "ecp5_dsp", "packed_dsp")
                 if key in legacy}
        if flags and multiplier is not None:
            raise DynfixError(f"{where}: give the multiplier or the older "
                              f"{'/'.join(flags)} flags, not both")
        d["multiplier"] = (Multiplier.from_flags(**flags, where=where) if multiplier is None
                           else Multiplier.parse(multiplier, where))
        if store is not None:
            d["bulk_store"] = BulkStore.parse(store, where)
        k = legacy.get("k", 1)
        if k < 1:
            raise DynfixError(f"{where}: k={k!r} must be a positive integer")
        d["tn"] = d.get("tn", 1) * k * k
        cfg = cls(**d)
        cfg.check_parallelism()
        return cfg

    @classmethod
    def from_report(cls, engine: dict, where: str = "engine config") -> "EngineConfig":
        """The config in a ``report.json``'s ``engine`` object, which also holds derived
        figures (``lanes``, ``multipliers``, ...): those are left out."""
        if not isinstance(engine, dict):
            raise DynfixError(f"{where}: expected a mapping of keys to integers")
        known = {f.name for f in fields(cls)} | {"k", "dual_mac", "ecp5_dsp", "packed_dsp"}
        return cls.from_dict({k: v for k, v in engine.items() if k in known}, where,
                             derived=True)

    def fitted(self, **need: int) -> "EngineConfig":
        """This config with every 0 field set to ``need[field]``; explicit values must be
        large enough (one DynfixError lists every field that is too small)."""
        small = [f"{key} {getattr(self, key)} < {v} needed" for key, v in sorted(need.items())
                 if getattr(self, key) and getattr(self, key) < v]
        if small:
            raise DynfixError(f"the model does not fit the engine config: {'; '.join(small)}")
        return replace(self, **{key: v for key, v in need.items() if not getattr(self, key)})
