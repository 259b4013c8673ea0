"""Maps in bulk memory: which maps leave the chip, and the row strips of the groups that read
or write them (``EngineConfig.m_bulk``).

The paper's design keeps weights and maps in external memory and computes from tiles in
on-chip buffers (Qiu et al., FPGA'16). Here a map that the on-chip map memory cannot hold
lives in bulk memory in the on-chip layout (pixel-major, ``ceil(C / lanes)`` words per
pixel), so a band of whole rows is one run of consecutive words in either memory. A group
that reads such a map runs in *strips* of output rows: before each strip the map DMA
(``hw/map_dma.py``) loads the input rows the strip's windows cover (its halo included) into
a strip buffer on chip; a group that writes such a map computes each strip's rows into an
output strip buffer and the DMA stores them after the strip. A strip is an ordinary program
entry: a convolution of the loaded rows, with the top padding only in the first strip and
the bottom padding only in the last, so the sequencer, the write-back and the cycle model
need nothing new; only the controller runs the entry's load before it and its store after
it.

Which maps go: the largest first, until the maps left on chip (placed by lifetime,
:func:`~.memory.allocate`) and the largest strip buffers fit the map memory. Shortcut maps
and the outputs of residual groups (read or written in place by the residual stage), the
maps around depthwise-window groups (whose window walks the whole map) and around groups
that read a Resize view (whose strips would walk the view's rows) stay on chip. The
model input may go too: the host then streams it strip by strip, each strip stored to bulk
memory by a program entry of its own (:func:`transfers`); and the output: entries at the
program's end load it back strip by strip and stream it out. The strip buffers sit above
every on-chip map; each group takes as many output rows per strip as its buffers allow
there, in strips as even as that allows (:func:`balanced`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from dynfix.errors import DynfixError
from .memory import allocate
from .plan import LayerPlan, _ceil_div


@dataclass
class MapPlacement:
    """Where the maps live with ``m_bulk``: ``base`` the on-chip maps' map-memory words,
    ``bulk`` the bulk maps' offsets in bus words from the maps' region, ``area`` the first
    word of the strip buffers, ``rows`` each stripped group's pooled output rows per strip
    (by group index), ``bulk_words`` the bus words of the bulk maps."""

    base: dict[str, int]
    bulk: dict[str, int] = field(default_factory=dict)
    area: int = 0
    rows: dict[int, int] = field(default_factory=dict)
    bulk_words: int = 0
    in_rows: int = 0                # rows per host load strip (the input in bulk memory)
    out_rows: int = 0               # rows per unload strip (the output in bulk memory)


def _t(c: int, lanes: int) -> int:
    return _ceil_div(c, lanes)


def in_rows(p: LayerPlan, rows: int) -> int:
    """Input rows the windows of ``rows`` pooled output rows cover at most (an interior
    strip's, the halo included; at most the map's height)."""
    (kh, _), (sy, _) = p.kernel, p.stride
    return min(p.in_shape[1], (rows * p.pool_hw[0] - 1) * sy + kh)


def strip_words(p: LayerPlan, rows: int, lanes: int, load: bool, store: bool) -> int:
    """Map words the strip buffers of group ``p`` take at ``rows`` pooled output rows per
    strip: the input rows if it loads them, the output rows if it stores them."""
    c, _, w = p.in_shape
    m, _, pw = p.out_shape
    return ((in_rows(p, rows) * w * _t(c, lanes) if load else 0)
            + (rows * pw * _t(m, lanes) if store else 0))


def row_words(shape: tuple[int, int, int], lanes: int) -> int:
    """Map words of one row of a ``C x H x W`` map."""
    return shape[2] * _t(shape[0], lanes)


def _stays(plans: list[LayerPlan]) -> set[str]:
    """The maps that stay on chip whatever the memory: see the module's docstring."""
    keep: set[str] = set()
    for p in plans:
        if p.shortcut:
            keep.add(p.shortcut)
        if p.add is not None:
            keep.add(p.output)
        if p.window or p.resize != (1, 1):
            keep.update((p.input, p.output))
    return keep


def place_maps(plans: list[LayerPlan], words: dict[str, int], first: str, budget: int,
               lanes: int, map_beats: int) -> MapPlacement:
    """The placement of every map for a map memory of ``budget`` words (the module's
    docstring); raises one DynfixError naming the map or group that cannot fit."""
    keep = _stays(plans)
    last = plans[-1].output
    ends = {first: row_words(plans[0].in_shape, lanes), last: row_words(plans[-1].out_shape,
                                                                       lanes)}
    bulk: list[str] = []
    while True:
        out = set(bulk)
        sizes = {t: 0 if t in out else n for t, n in words.items()}
        base = allocate(plans, sizes, first)
        depth = max(base[t] + sizes[t] for t in base)
        need = max([0] + [strip_words(p, 1, lanes, p.input in out, p.output in out)
                          for p in plans if p.input in out or p.output in out]
                   + [n for t, n in ends.items() if t in out])
        if depth + need <= budget:
            break
        left = [t for t in words if t not in out and t not in keep and words[t]]
        if not left:
            worst = max([(strip_words(p, 1, lanes, p.input in out, p.output in out),
                          f"group {p.name!r}")
                         for p in plans if p.input in out or p.output in out]
                        + [(n, f"the {'input' if t == first else 'output'} {t!r}")
                           for t, n in ends.items() if t in out], default=None)
            what = (f"the on-chip maps take {depth} words" if worst is None or depth >= budget
                    else f"{worst[1]} needs {worst[0]} words of strip buffers for one "
                         f"row above the {depth} words of on-chip maps")
            stay = f"; maps that must stay on chip: {sorted(keep)}" if keep else ""
            raise DynfixError(f"the map memory of {budget} words (m_bulk) is too small: "
                              f"{what}{stay}")
        bulk.append(max(left, key=lambda t: (words[t], t)))
    place = MapPlacement(base={t: b for t, b in base.items() if t not in out}, area=depth)
    for t in bulk:
        place.bulk[t] = place.bulk_words
        place.bulk_words += words[t] * map_beats
    for i, p in enumerate(plans):
        load, store = p.input in out, p.output in out
        if load or store:
            rows = p.out_shape[1]
            while strip_words(p, rows, lanes, load, store) > budget - depth:
                rows -= 1
            place.rows[i] = balanced(p.out_shape[1], rows)
    room = budget - depth
    if first in out:
        place.in_rows = balanced(plans[0].in_shape[1], room // ends[first])
    if last in out:
        place.out_rows = balanced(plans[-1].out_shape[1], room // ends[last])
    return place


def balanced(total: int, most: int) -> int:
    """Rows per strip for ``total`` rows in strips of at most ``most``: as few strips as
    that allows, as even as can be (no short last strip)."""
    return -(-total // -(-total // max(1, most)))


@dataclass
class Transfer:
    """A program entry that only moves a map between the host and the bulk memory through
    the strip buffer (``m_bulk``): ``rows`` rows of map ``tensor``, loaded from the host
    and stored (``load``), or loaded from bulk memory and unloaded to the host; ``dma`` is
    its DMA transfer (words, bulk offset, map word), which says where the rows lie."""

    tensor: str
    shape: tuple[int, int, int]
    rows: int
    load: bool
    base: int
    dma: tuple[int, int, int]


def transfers(place: MapPlacement, tensor: str, shape: tuple[int, int, int], load: bool,
              lanes: int, map_beats: int) -> list[Transfer]:
    """The host load strips of the model input (``load``) or the unload strips of the
    output when ``tensor`` lives in bulk memory with ``place`` (else none)."""
    if tensor not in place.bulk:
        return []
    rows = place.in_rows if load else place.out_rows
    per = row_words(shape, lanes)
    out = []
    for r in range(0, shape[1], rows):
        n = min(rows, shape[1] - r)
        out.append(Transfer(tensor, shape, n, load, place.area,
                            (n * per, place.bulk[tensor] + r * per * map_beats, place.area)))
    return out


@dataclass
class Strip:
    """One strip of a group: its plan (the geometry of the rows it computes), where it reads
    and writes in map memory, and its DMA transfers (``(words, bulk offset, map word)``, or
    None)."""

    plan: LayerPlan
    in_base: int
    out_base: int
    load: tuple[int, int, int] | None = None
    store: tuple[int, int, int] | None = None


def split(p: LayerPlan, place: MapPlacement, index: int, lanes: int, map_beats: int
          ) -> list[Strip]:
    """Group ``p`` (``index`` in the program) as it runs with ``place``: one :class:`Strip`
    with its own maps' bases when it touches no bulk map, else one per ``place.rows`` pooled
    output rows (the last may have fewer)."""
    c, h, w = p.in_shape
    m, ph, pw = p.out_shape
    t_in, t_out = _t(c, lanes), _t(m, lanes)
    load, store = p.input in place.bulk, p.output in place.bulk
    if not (load or store):
        return [Strip(p, place.base[p.input], place.base[p.writes] + p.out_word(lanes))]
    rows = place.rows[index]
    (kh, _), (sy, _) = p.kernel, p.stride
    top, left, _, right = p.pads
    in_buf = place.area
    out_buf = place.area + (strip_words(p, rows, lanes, True, False) if load else 0)
    n = _ceil_div(ph, rows)
    out = []
    for s in range(n):
        py0, py1 = s * rows, min(ph, (s + 1) * rows)
        lo = py0 * p.pool_hw[0] * sy - top
        hi = (py1 * p.pool_hw[0] - 1) * sy - top + kh - 1
        r_lo = min(max(0, lo), h - 1)
        r_hi = max(min(h - 1, hi), r_lo)
        n_rows = r_hi - r_lo + 1
        macs = p.macs * py1 // ph - p.macs * py0 // ph
        plan = replace(p, in_shape=(c, n_rows, w), out_shape=(m, py1 - py0, pw),
                       pads=(r_lo - lo, left, max(0, hi - r_hi), right), macs=macs,
                       entry={}, strip=s)
        st = Strip(plan, in_base=in_buf if load else place.base[p.input] + r_lo * w * t_in,
                   out_base=out_buf if store else place.base[p.output] + py0 * pw * t_out)
        if load:
            st.load = (n_rows * w * t_in, place.bulk[p.input] + r_lo * w * t_in * map_beats,
                       in_buf)
        if store:
            st.store = ((py1 - py0) * pw * t_out,
                        place.bulk[p.output] + py0 * pw * t_out * map_beats, out_buf)
        out.append(st)
    return out
