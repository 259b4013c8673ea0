"""The layer program: one entry per fused layer group (Conv/Linear + ReLU / Clip + MaxPool).

Every loop bound and address step the hardware needs is precomputed by the compiler, so the
controller and the sequencer only count and add (no multipliers in the address logic).
"""

from __future__ import annotations

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data

from dynfix.errors import DynfixError
from dynfix.quant.layers.leaky_relu import SLOPE_BITS
from .config import EngineConfig, clog2
from .requantizer import SLOPE_SHIFT_BITS

#: Every field of a program entry, in bit order (the first field in the lowest bits):
#: ``name: (kind, meaning)``. The kind fixes the field's shape (:func:`kind_shapes`). Loops are
#: the sequencer's (``hw/sequencer.py``: ``mg`` output-channel groups, ``py``/``px`` pooled
#: output rows/columns, ``dy``/``dx`` conv pixels in a pooling window, ``ky``/``kx`` kernel
#: taps, ``t`` input words of a pixel); map addresses and steps are in map words (``lanes``
#: values each); a window's row and column are input-map coordinates.
FIELDS: dict[str, tuple[str, str]] = {
    "in_base": ("map_addr", "first word of the input map (the compiler allocates map memory "
                            "by tensor lifetime)"),
    "out_base": ("map_addr", "first word of the output map"),
    "addr0": ("map_corner", "map address of the first window's top-left tap (in_base minus "
                            "the padding: may lie before in_base)"),
    "iy0": ("coord", "input row of the first window's top tap: -(top padding)"),
    "ix0": ("coord", "input column of the first window's left tap: -(left padding)"),
    "in_c": ("count", "input channels (entry 0's: the image load's map walker)"),
    "in_pix": ("count", "input pixels, in_h * in_w (entry 0's: the image load's map walker)"),
    "in_h": ("count", "input rows: a tap at a row < 0 or >= in_h reads zero padding"),
    "in_w": ("count", "input columns: a tap at a column < 0 or >= in_w reads zero padding"),
    "t_in": ("count", "words per input pixel, ceil(in_c / lanes): t's count, kx's map step"),
    "n_mg": ("count", "output-channel groups of tm, ceil(out_c / tm): mg's count (outermost)"),
    "n_py": ("count", "pooled output rows: py's count"),
    "n_px": ("count", "pooled output columns: px's count"),
    "pool": ("count", "pooling window side p (1: no pooling): dy's and dx's count (dx's "
                      "alone with rect_pool)"),
    "kh": ("count", "kernel rows: ky's count"),
    "kw": ("count", "kernel columns: kx's count"),
    "cs_py": ("count", "input rows per py step: pool * row stride"),
    "cs_px": ("count", "input columns per px step: pool * column stride"),
    "cs_dy": ("count", "input rows per dy step: the row stride"),
    "cs_dx": ("count", "input columns per dx step: the column stride"),
    "t_out": ("count", "words per output pixel, ceil(out_c / lanes) (write-back, unload)"),
    "out_pix": ("count", "output pixels after pooling, n_py * n_px (write-back, unload)"),
    "out_c": ("count", "output channels (unload); the write-back skips lanes at or past it"),
    "gap": ("count", "idle cycles after each pooling window, so pooled results reach the "
                     "write-back at least wb_words cycles apart"),
    "st_py": ("map_step", "map words per py step: cs_py input rows, cs_py * in_w * t_in"),
    "st_px": ("map_step", "map words per px step: cs_px input columns, cs_px * t_in"),
    "st_dy": ("map_step", "map words per dy step: cs_dy input rows, cs_dy * in_w * t_in"),
    "st_dx": ("map_step", "map words per dx step: cs_dx input columns, cs_dx * t_in"),
    "st_ky": ("map_step", "map words per ky step: one input row, in_w * t_in"),
    "w_base": ("weight_addr", "the layer's first weight word (of group 0)"),
    "b_base": ("bias_addr", "the layer's first bias word (of group 0)"),
    "bias_shift": ("bias_shift", "left shift of a bias into the accumulator's format"),
    "data_shift": ("data_shift", "requantizing shift from the accumulator to the output "
                                 "format: right when > 0, left when < 0"),
    # The requantizer clamps the shifted accumulator to [clamp_lo, clamp_hi]: the saturation
    # to the output width bw_x and the group's ReLUs / Clips in one range, in the output
    # format (compiler: LayerPlan.clamp_range). No activation: [qmin(bw_x), qmax(bw_x)];
    # ReLU: [0, qmax(bw_x)]; ReLU6 at fl 4, 8 bits: [0, 96].
    "clamp_lo": ("value", "lowest output value: qmin(bw_x), or a ReLU's zp / a Clip's lo_q"),
    "clamp_hi": ("value", "highest output value: qmax(bw_x), or a Clip's hi_q"),
    "last": ("flag", "1: the program's last layer (its output map is streamed out)"),
}

#: The residual-add fields, after :data:`FIELDS` in engines with ``cfg.residual``.
ADD_FIELDS: dict[str, tuple[str, str]] = {
    # A residual Add fused into the group (hw/residual_add.py): before each output pixel's
    # items the sequencer reads the shortcut's sc_slots words at sc_base + pixel * t_out +
    # the group's word; the add stage computes min(max(shift_round((y << add_sa) +
    # (s << add_sb), add_shift), add_lo), add_hi) from the requantized y and the shortcut s.
    # Without an Add: add = 0, the shifts 0 and [add_lo, add_hi] = [qmin, qmax] (identity).
    # Only engines with ``cfg.residual`` have these fields (the others are unchanged).
    "add": ("flag", "1: add the shortcut map to the group's results (a residual Add)"),
    "sc_base": ("map_addr", "first word of the shortcut map (same shape as the output)"),
    "add_sa": ("align", "left shift of the requantized result onto the Add's binary point"),
    "add_sb": ("align", "left shift of the shortcut value onto the Add's binary point"),
    "add_shift": ("add_shift", "the Add's data shift: right when > 0, left when < 0"),
    "add_lo": ("value", "lowest Add output: qmin(bw_x), or a ReLU's 0 / a Clip's lo_q"),
    "add_hi": ("value", "highest Add output: qmax(bw_x), or a Clip's hi_q"),
}

#: The depthwise fields, after the others in engines with ``cfg.depthwise``.
DW_FIELDS: dict[str, tuple[str, str]] = {
    # A depthwise group (tm output channels) reads only the input word(s) holding its own
    # channels: t_in (= cfg.dw_words) words per tap pixel from word (g * tm) // lanes of
    # the pixel, the word advancing from group to group by constants (sequencer). The map
    # address steps by t_px words per pixel; t_px = t_in for every other layer.
    "dw": ("flag", "1: a depthwise convolution (per-group input word offset)"),
    "t_px": ("count", "words per input pixel, ceil(in_c / lanes): kx's map step"),
}

#: The depthwise-window fields, in engines with ``cfg.dw_window``.
WIN_FIELDS: dict[str, tuple[str, str]] = {
    # A window group (hw/dw_window.py) walks its input map once per group of tm channels,
    # one item (one map word) per pixel, row by row from the first row and column (the
    # window supplies the top and left padding): n_py x n_px pixels, kh = kw = pool = 1.
    # The window keeps the K - 1 rows above in a line buffer and a K x K window register,
    # and emits an output pixel (tm channels, K * K taps each) for every item that
    # completes a window at the layer's stride.
    "win": ("flag", "1: a depthwise group on the window datapath"),
    "win_sy": ("count", "the window layer's row stride"),
    "win_sx": ("count", "the window layer's column stride"),
    "win_wy": ("count", "rows walked before the first window: K - 1 - top padding"),
    "win_wx": ("count", "columns walked before a row's first window: K - 1 - left padding"),
}

#: The weight-sharing field, in engines with ``cfg.w_share``.
SHARE_FIELDS: dict[str, tuple[str, str]] = {
    # Every kernel tap of the group uses the same weight words (t_in of them per group):
    # the weight address restarts at the group's first word at every tap, not only at
    # every output pixel. A global average pool folded into a Linear has such weights
    # (W / (H * W) at every pixel), so they are stored once.
    "w_share": ("flag", "1: the kernel's taps share one weight word per input word"),
}

#: The weight-ring field, in engines with ``cfg.w_bulk`` (weights streamed from bulk memory
#: into a ring, ``hw/weight_ring.py``): a group may start once its whole tile is there.
RING_FIELDS: dict[str, tuple[str, str]] = {
    "w_tile": ("weight_addr", "weight words of each output-channel group (its ring tile; "
                              "0 in a streaming group, which holds none)"),
    # A group that reads each of its weight words once (one output pixel: a Linear) need
    # not hold its tile: its items issue as their words arrive, and the ring frees each
    # word once read, so its tile may be larger than the ring.
    "w_stream": ("flag", "1: each item waits for its own word (not the group's tile)"),
    # The same in every entry: the ring reads it from whichever entry is current when an
    # inference starts.
    "w_total": ("weight_count", "weight words of the whole program, streamed per inference"),
}

#: The map-DMA fields, in engines with ``cfg.m_bulk`` (maps in bulk memory): an entry may
#: load a strip of its input map from bulk memory before it runs and store a strip of its
#: output after its pipeline has drained (``hw/map_dma.py``; the compiler's strips,
#: ``hw/compiler/strips.py``). Bulk addresses are bus words; a map word takes
#: ``cfg.map_beats`` of them.
DMA_FIELDS: dict[str, tuple[str, str]] = {
    # The entry's phases, in this order: ld, di, run, do, ul (each only when set).
    "ld": ("flag", "1: load host values into the map memory first (the loader's walk of "
                   "in_base, in_c, in_pix, t_in): the image, or a strip of it"),
    "run": ("flag", "1: the entry computes (the sequencer runs); 0: it only moves a map"),
    "ul": ("flag", "1: stream the map at out_base (out_c, out_pix, t_out) to the host last"),
    "di_words": ("map_count", "map words to load before the entry runs (0: none)"),
    "di_bulk": ("bulk_addr", "bulk address (bus word) of the first word to load"),
    "di_fmap": ("map_addr", "map-memory word the load starts at"),
    "do_words": ("map_count", "map words to store after the entry ran (0: none)"),
    "do_bulk": ("bulk_addr", "bulk address (bus word) the store starts at"),
    "do_fmap": ("map_addr", "map-memory word of the first word to store"),
}

#: The map-offset fields, in engines with ``cfg.offsets`` (some map is unsigned).
OFFSET_FIELDS: dict[str, tuple[str, str]] = {
    # An unsigned map holds q = v + zp, zp = -2**(bw-1), for v = 0 .. 2**bw - 1 (the
    # real value v * 2**-fl). A layer reading one pads with pad_q (the integer of a real 0)
    # and its biases carry -zp_in * sum(w) (compiler). A layer writing one computes
    # clamp(shift_round(acc) + zp_out, clamp_lo, clamp_hi) (hw/requantizer.py).
    "pad_q": ("value", "the padding value: the input map's zp (0 for a signed map)"),
    "zp_out": ("value", "the output map's zp, added after the data shift (0: signed)"),
}

#: The LeakyReLU slope fields, in engines with ``cfg.slope``.
SLOPE_FIELDS: dict[str, tuple[str, str]] = {
    # The requantizer's third stage (hw/requantizer.py): a clamped value v < 0 becomes
    # (v * slope_a + 2**(slope_s - 1)) >> slope_s; a group without a LeakyReLU has 1, 0.
    "slope_a": ("slope", "the LeakyReLU slope's integer (1 with slope_s 0: none)"),
    "slope_s": ("slope_shift", "the slope's shift: the slope is slope_a * 2**-slope_s"),
}

#: The rounding-mode fields, in engines with ``cfg.round_even``.
ROUND_FIELDS: dict[str, tuple[str, str]] = {
    # The requantizer's right shift rounds half up; with the bit set a value exactly halfway
    # goes to the even neighbour instead (hw/requantizer.py, LayerFormat.rounding).
    "even": ("flag", "1: the group's data shift rounds half to even (0: half up)"),
}
#: The residual Add's rounding-mode field, in engines with ``cfg.round_even`` and
#: ``cfg.residual``.
ADD_ROUND_FIELDS: dict[str, tuple[str, str]] = {
    "add_even": ("flag", "1: the Add's data shift rounds half to even (0: half up)"),
}

#: The Resize-view fields, in engines with ``cfg.resize``.
VIEW_FIELDS: dict[str, tuple[str, str]] = {
    # A group reading its input through a nearest-neighbour Resize by 2 walks a view twice
    # the stored map's size (in_h, in_w, iy0, ix0 and the cs_* steps are the view's); its map
    # address moves by the stored pixels: when a level's view coordinate v steps by cs, by
    # floor((v % 2 + cs) / 2) of them. The sequencer adds the step from an even coordinate
    # (st_py .. st_ky, st_kx0) or from an odd one (st_py1 .. st_ky1, and kx's t_in / t_px),
    # as the level's coordinate register is. A group without a view has equal pairs.
    "st_py1": ("map_step", "map words per py step from an odd view row"),
    "st_px1": ("map_step", "map words per px step from an odd view column"),
    "st_dy1": ("map_step", "map words per dy step from an odd view row"),
    "st_dx1": ("map_step", "map words per dx step from an odd view column"),
    "st_ky1": ("map_step", "map words per ky step from an odd view row: one stored row"),
    "st_kx0": ("map_step", "map words per kx step from an even view column: 0 in a view "
                           "(its next column reads the same stored pixel), else t_px"),
}

#: The rectangular-pool field, in engines with ``cfg.rect_pool``.
RECT_POOL_FIELDS: dict[str, tuple[str, str]] = {
    # A max-pool window of pool_h rows and pool columns (a MaxPool1d on a height-1 map: 1 x
    # k): dy counts to pool_h, dx to pool; cs_py is then pool_h * row stride.
    "pool_h": ("count", "pooling window rows: dy's count (pool: its columns, dx's)"),
}

#: The codebook field, in engines with weight indices (``cfg.w_index_bits``): the weight
#: words hold indices that the codebook lookup (``hw/codebook.py``) turns into weights.
CODEBOOK_FIELDS: dict[str, tuple[str, str]] = {
    "cb": ("codebook", "the group's codebook: the table of its layer's distinct weights"),
}

#: Kinds whose width follows a memory's address width or ``data_bits``; the compiler sizes
#: ``dim_bits`` to the largest value of every other field.
OWN_WIDTH_KINDS = ("map_addr", "map_corner", "map_step", "weight_addr", "weight_count",
                   "bias_addr", "value", "map_count", "bulk_addr",
                   "align", "add_shift", "slope", "slope_shift", "codebook")


def kind_shapes(cfg: EngineConfig) -> dict[str, Shape]:
    """The shape of each kind of field in :data:`FIELDS` on ``cfg``."""
    ab, db = cfg.fmap_addr_bits, cfg.dim_bits
    return {
        "map_addr": unsigned(ab),
        "map_corner": signed(ab + 2),
        "coord": signed(db + 1),
        "count": unsigned(db),
        "map_step": unsigned(ab),
        "map_count": unsigned(ab + 1),
        "bulk_addr": unsigned(max(1, cfg.bulk_word_bits)),
        "weight_addr": unsigned(cfg.weight_addr_bits),
        "weight_count": unsigned(clog2(cfg.weight_depth + 1)),
        "bias_addr": unsigned(cfg.bias_addr_bits),
        "bias_shift": unsigned(cfg.bias_shift_bits),
        "data_shift": signed(cfg.shift_bits),
        "value": signed(cfg.data_bits),         # a map value (the widest output format)
        "align": unsigned(cfg.align_bits),
        "add_shift": signed(cfg.add_shift_bits),
        "flag": unsigned(1),
        "slope": unsigned(SLOPE_BITS),
        "slope_shift": unsigned(SLOPE_SHIFT_BITS),
        "codebook": unsigned(clog2(cfg.codebooks)),
    }


def entry_fields(cfg: EngineConfig) -> dict[str, tuple[str, str]]:
    """The fields of ``cfg``'s program entries: :data:`FIELDS` (+ :data:`ADD_FIELDS`)."""
    return {**FIELDS, **(ADD_FIELDS if cfg.residual else {}),
            **(DW_FIELDS if cfg.depthwise else {}), **(WIN_FIELDS if cfg.dw_window else {}),
            **(SHARE_FIELDS if cfg.w_share else {}), **(RING_FIELDS if cfg.w_bulk else {}),
            **(DMA_FIELDS if cfg.m_bulk else {}),
            **(OFFSET_FIELDS if cfg.offsets else {}), **(SLOPE_FIELDS if cfg.slope else {}),
            **(ROUND_FIELDS if cfg.round_even else {}),
            **(ADD_ROUND_FIELDS if cfg.round_even and cfg.residual else {}),
            **(VIEW_FIELDS if cfg.resize else {}),
            **(RECT_POOL_FIELDS if cfg.rect_pool else {}),
            **(CODEBOOK_FIELDS if cfg.w_index_bits else {})}


def entry_layout(cfg: EngineConfig) -> data.StructLayout:
    """The program entry of ``cfg``: :func:`entry_fields` with their shapes."""
    shapes = kind_shapes(cfg)
    return data.StructLayout({name: shapes[kind]
                              for name, (kind, _) in entry_fields(cfg).items()})


def check_entry(cfg: EngineConfig, entry: dict[str, int], where: str) -> None:
    """Raise if a value does not fit its field (a compiler bug or an undersized config)."""
    layout = entry_layout(cfg)
    for name, field in layout:
        v = entry[name]
        shape = field.shape
        lo = -(1 << (shape.width - 1)) if shape.signed else 0
        hi = (1 << (shape.width - 1)) - 1 if shape.signed else (1 << shape.width) - 1
        if not lo <= v <= hi:
            raise DynfixError(f"{where}: program field {name}={v} does not fit {shape}")
    missing = set(entry) ^ {name for name, _ in layout}
    if missing:
        raise DynfixError(f"{where}: program fields differ from the layout: {sorted(missing)}")


def pack_entry(cfg: EngineConfig, entry: dict[str, int]) -> int:
    """One program word as an integer (for memory init and hex images)."""
    return entry_layout(cfg).const(entry).as_value().value
