"""Compiler: (model, quantization, engine config) -> layer program and memory images.

The model's graph is fused into groups (:mod:`.plan`), each group's output placed in map
memory by lifetime (:mod:`.memory`), and the program entries, weight and bias words built
(:mod:`.images`); :func:`compile_model` also sizes the engine's widths and depths to the
program. The contract with the gateware is ``hw/config.py`` and ``hw/program.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from dynfix.quant import fixed, int_model
from dynfix.quant.int_model import IntModel, MapFormat
from dynfix.quant.ir import Model
from dynfix.errors import DynfixError
from dynfix.quant.qspec import LayerFormat, QuantSpec
from ..config import EngineConfig
from ..timing import shortcut_fifo_depth
from ..program import (OWN_WIDTH_KINDS, VIEW_FIELDS, check_entry, entry_fields,
                       pack_entry)
from .images import _dense_weights, codebook, pack_biases, pack_weights
from .memory import _words, allocate
from .strips import MapPlacement, Transfer, place_maps, split, transfers
from .plan import (LayerPlan, Shape3, _ceil_div, _reads_once, address_steps, identity_copy,
                   im2col_first, loop_counts, mark_windows, plan_groups, plan_model,
                   spread_concats, spread_weights, unspread, window_extent, window_items)

__all__ = ["CompiledModel", "LayerPlan", "allocate", "bias_units", "check_concats",
           "clamp_shift", "compile_model", "folded_bias", "identity_copy",
           "im2col_first", "loop_counts", "pack_biases", "pack_weights", "plan_groups",
           "plan_model", "rounded_acc_bits", "spread_concats", "unspread", "window_items"]


#: The program's address steps of the loop levels py .. ky (from an even view coordinate in
#: engines with Resize views, whose fields for odd ones add a ``1``: ``VIEW_FIELDS``).
EVEN_STEPS = ("st_py", "st_px", "st_dy", "st_dx", "st_ky")


@dataclass
class CompiledModel:
    config: EngineConfig
    plans: list[LayerPlan]
    program: list[int]
    biases: list[int]
    output_name: str                # the layer whose integers the engine streams out
    input_shape: Shape3             # the map the host streams (C, H, W order)
    #: The first conv's (in_shape, kernel, stride, pads) when the host streams its windows
    #: (``im2col``); None when it streams the image itself.
    input_window: tuple | None = None
    #: The input map's offset (its padding value in the windows).
    input_zp: int = 0
    #: With maps in bulk memory (``m_bulk``): the rows of each host load strip when the
    #: input lives there (the host streams it strip by strip, ``host_input``), and of each
    #: unload strip when the output does (``output_order``); 0: whole, in C, H, W order.
    input_rows: int = 0
    output_rows: int = 0
    #: C, H, W of the output map the engine streams (the last group's, whole).
    output_shape: Shape3 = (0, 0, 0)
    #: With groups in strips (``m_bulk``): the weight stream as runs of the weight image,
    #: ``(first word, words)`` in stream order (a group's run again for each of its strips),
    #: which the ring reads one after the other; empty: the image once, in order.
    weight_segments: list[tuple[int, int]] = field(default_factory=list)
    #: The weight memory's words, packed when first asked for (:attr:`weights`): the fit
    #: compiles many candidates and needs only their sizes.
    packed_weights: list[int] | None = field(default=None, init=False, repr=False,
                                             compare=False)
    #: With weight indices (``w_index_bits``): the codebooks the program's ``cb`` fields
    #: name, each its layer's distinct weights ascending (identical ones once).
    codebooks: list[list[int]] = field(default_factory=list)

    @property
    def weights(self) -> list[int]:
        """The weight memory's words in sequencer order (:func:`pack_weights`)."""
        if self.packed_weights is None:
            self.packed_weights = pack_weights(self.config, self.plans, self.codebooks)
        return self.packed_weights

    @property
    def output_len(self) -> int:
        return int(np.prod(self.output_shape))

    def host_input(self, xq: np.ndarray) -> np.ndarray:
        """What the host streams for one quantized input: the image in C, H, W order, or
        with ``im2col`` the first conv's windows, channel ``(ky*kw + kx)*C + c`` of output
        pixel ``(oy, ox)`` holding ``x[c, oy*sy - top + ky, ox*sx - left + kx]`` (a real 0,
        ``input_zp``, in the padding)."""
        xq = np.asarray(xq, dtype=np.int64)
        if self.input_window is None:
            return _by_strips(xq.reshape(self.input_shape), self.input_rows)
        (c, h, w), (kh, kw), (sy, sx), (top, left, bottom, right) = self.input_window
        _, oh, ow = self.input_shape
        xp = np.full((c, h + top + bottom + kh, w + left + right + kw), self.input_zp,
                     np.int64)
        xp[:, top:top + h, left:left + w] = xq.reshape(c, h, w)
        cols = [xp[:, ky:ky + sy * oh:sy, kx:kx + sx * ow:sx]
                for ky in range(kh) for kx in range(kw)]
        return _by_strips(np.concatenate(cols, axis=0), self.input_rows)

    def output_order(self, values: np.ndarray) -> np.ndarray:
        """The engine's output stream (``output_len`` values) in the C, H, W order of the
        output layer: as it comes, or, when the output lives in bulk memory, reassembled
        from its unload strips (each strip's rows in C, rows, W order)."""
        values = np.asarray(values)
        if not self.output_rows:
            return values
        c, h, w = self.output_shape
        order = _by_strips(np.arange(c * h * w).reshape(c, h, w), self.output_rows)
        out = np.empty_like(values)
        out[order] = values
        return out


def check_concats(plans: list[LayerPlan], cfg: EngineConfig, name: str) -> None:
    """Lay the Concats of ``plans`` out for ``cfg``'s lanes (:func:`~.plan.spread_concats`:
    after the weights are built, which it then spreads too); DynfixError when a group
    cannot read such a layout, or with maps in bulk memory (whose strips write maps of
    their own)."""
    joined = sorted({p.slot.tensor for p in plans if p.slot is not None})
    if joined and cfg.m_bulk:
        raise DynfixError(f"model {name!r}: Concat {joined[0]!r} cannot run with maps in "
                          f"bulk memory (m_bulk): its inputs' groups write into one map on "
                          f"chip")
    bad = spread_concats(plans, cfg.lanes)
    if bad:
        raise DynfixError(f"model {name!r} cannot run on an engine of {cfg.lanes} lanes: "
                          f"{'; '.join(bad)} (an engine with lanes dividing the channels of "
                          f"every input but the last lays the map out without gaps)")
    for p in plans:
        p.weights = spread_weights(p.weights, p.spread, p.in_shape[0])


#: The loop level each map-address step belongs to, by its count field (``pool`` stands for
#: the window's rows in an engine with rectangular pools: ``pool_h``).
STEP_COUNTS = {"st_py": "n_py", "st_px": "n_px", "st_dy": "pool", "st_dx": "pool",
               "st_ky": "kh"}


def _still_steps(entry: dict[str, int], cfg: EngineConfig) -> None:
    """Zero the map-address steps that do not fit the map address on loop levels that run
    once (count 1). The sequencer adds a level's step only when the level advances, which
    such a level never does, but its step may reach one row past the whole map, wider than
    the address the fit sizes to the memory. Steps that fit keep their value, so programs
    that always compiled keep their words."""
    limit = 1 << cfg.fmap_addr_bits
    for step, count in STEP_COUNTS.items():
        if count == "pool" and step == "st_dy" and cfg.rect_pool:
            count = "pool_h"
        if entry[count] == 1:
            for key in (step, f"{step}1"):
                if entry.get(key, 0) >= limit:
                    entry[key] = 0


def _extend(segments: list[list[int]], first: int, words: int) -> None:
    """Append the run ``first .. first + words - 1`` of the weight image to ``segments``,
    merged into the last run when it continues it."""
    if not words:
        return
    if segments and segments[-1][0] + segments[-1][1] == first:
        segments[-1][1] += words
    else:
        segments.append([first, words])


def _by_strips(a: np.ndarray, rows: int) -> np.ndarray:
    """A ``C x H x W`` array flattened in C, H, W order, or with ``rows`` strip by strip
    (each strip's ``rows`` rows in C, rows, W order)."""
    if not rows:
        return a.reshape(-1)
    return np.concatenate([a[:, r:r + rows].reshape(-1) for r in range(0, a.shape[1], rows)])


def clamp_shift(data_shift: int, bw_x: int, acc_bits: int) -> int:
    """The data shift clamped to ``[-bw_x, acc_bits]``, which keeps every result (a left shift
    by ``bw_x`` or more saturates any non-zero value, a right shift by ``acc_bits`` or more
    rounds every accumulator value to 0)."""
    return max(-bw_x, min(acc_bits, data_shift))


def compile_model(model: Model, spec: QuantSpec, cfg: EngineConfig) -> CompiledModel:
    """Plan, size the engine (filling ``cfg``'s zero fields) and build memory images."""
    cfg.check_parallelism()
    im = IntModel(model, spec)
    # The integer model's graph: lowered, with the spec's adjusted parameters (a range
    # fill's Clip bounds among them, which the plans' clamp bounds come from).
    plans, out_name = plan_groups(im.model)
    n = cfg.lanes

    fmts = [avg_format(p, im.formats[p.input]) if p.avg else spec.layers[p.name]
            for p in plans]
    for p, f in zip(plans, fmts):
        if p.avg:                       # unit weights, no bias (avg_format)
            wq = np.ones((p.in_shape[0], 1) + p.kernel, np.int64)
            bq = np.zeros(p.in_shape[0], np.int64)
        else:
            wq, bq = im.weights[p.name], im.biases[p.name]
        p.weights = wq if p.avg else _dense_weights(im.model.layer(p.name), wq, p)
        p.shared = (p.kind != "dwconv" and p.kernel != (1, 1)
                    and bool(np.all(p.weights == p.weights[:, :, :1, :1])))
        p.shifts = np.array([clamp_shift(int(s), f.bw_x, f.acc_bits)
                             for s in f.data_shifts(len(bq))], np.int64)
        p.bias_shift = bias_units(f, p.shifts)
        p.biases = folded_bias(f, bq, wq, p.shifts)
        p.acc_bits = (f.acc_bits if p.avg
                      else rounded_acc_bits(f, im.model.layer(p.name), p.shifts))
    check_concats(plans, cfg, model.name)
    window = im2col_first(plans[0], n) if cfg.im2col and _reads_once(plans) else None
    side = mark_windows(plans, cfg)
    tables, table_of = _codebooks(plans, cfg)
    data_bits = max([spec.input_bw] + [f.bw_x for f in fmts])
    words = {plans[0].input: _words(plans[0].in_shape, n)}
    words.update((p.writes, _words(p.map_shape, n)) for p in plans)
    input_shape = plans[0].in_shape
    # Map words in bulk memory (m_bulk): the port's beats per map word at the map width
    # the engine gets (its bound when given).
    map_beats = _ceil_div(n * (cfg.data_bits or data_bits), cfg.bus_bits)
    place = (place_maps(plans, words, plans[0].input, cfg.m_bulk, n, map_beats)
             if cfg.m_bulk else MapPlacement(base=allocate(plans, words, plans[0].input)))
    base = place.base
    adds = [_add_fields(p, f, spec) for p, f in zip(plans, fmts)]
    evens = [_even_fields(p, f, spec) for p, f in zip(plans, fmts)]
    # The residual stage: fitted like the widths (0: as the model needs; an explicit value
    # is a bound), so a config with ``residual: 1`` also runs models without an Add.
    offsets = spec.input_zp != 0 or any(f.zp_out != 0 for f in fmts)
    cfg = cfg.fitted(offsets=int(offsets), ch_shift=int(any(f.ch_fl for f in fmts)),
                     depthwise=int(any(p.kind == "dwconv" for p in plans)),
                     w_share=int(any(p.shared for p in plans)),
                     slope=int(any(p.slope is not None for p in plans)),
                     round_even=int(any(any(e.values()) for e in evens)),
                     resize=int(any(p.resize != (1, 1) for p in plans)),
                     rect_pool=int(any(p.pool_h for p in plans)),
                     residual=int(any(p.add is not None for p in plans)),
                     add_align=max(max(a["add_sa"], a["add_sb"]) for a in adds),
                     dw_window=side,
                     dw_line=max([2] + [window_extent(p)[1] for p in plans if p.window])
                     if side else 0)

    entries, w_base, b_base = [], 0, 0
    image, src, segments = 0, {}, []    # weight image words, each group's first, the stream
    sc_depth = 1
    runs: list[LayerPlan] = []          # the program's plans: a group's strips in order
    buffers = 0                         # the end of the strip buffers used (m_bulk)
    strips = [(st, i, f) for i, (p, f) in enumerate(zip(plans, fmts))
              for st in split(p, place, i, n, map_beats)]
    for st, i, f in strips:
        p = st.plan
        c, h, w = p.in_shape
        m_out, ph, pw = p.out_shape
        lc = loop_counts(p, cfg)
        t_in, t_out, n_mg = lc["t_in"], lc["t_out"], lc["n_mg"]
        (kh, kw), (sy, sx), (pool_h, pool_w) = p.kernel, p.stride, p.pool_hw
        top, left = p.pads[0], p.pads[1]
        clamp_lo, clamp_hi = p.clamp_range(f.bw_x, f.fl_out, f.zp_out)
        in_base, out_base = st.in_base, st.out_base
        t_px = _ceil_div(c, n)          # words per input pixel (t_in but for depthwise)
        steps = address_steps(p, t_px)
        (fy, fx), w_map = p.resize, p.stored_shape[2]
        p.entry = {
            "in_base": in_base, "out_base": out_base,
            # The first tap's stored pixel: view row -top is stored row (-top) // fy.
            "addr0": in_base + ((-top) // fy * w_map + (-left) // fx) * t_px,
            "iy0": -top, "ix0": -left,
            # in_pix: the whole input's pixels (entry 0's image load), also in a strip.
            "in_c": c, "in_pix": plans[i].in_shape[1] * w, "in_h": h, "in_w": w,
            "t_in": t_in,
            "n_mg": n_mg, **{k: lc[k] for k in ("n_py", "n_px", "pool", "kh", "kw")},
            "cs_py": pool_h * sy, "cs_px": pool_w * sx, "cs_dy": sy, "cs_dx": sx,
            "t_out": t_out, "out_pix": ph * pw, "out_c": m_out, "gap": lc["gap"],
            **{k: steps[k] for k in EVEN_STEPS},
            "w_base": w_base, "b_base": b_base - (n_mg if p.strip else 0),
            "bias_shift": p.bias_shift,         # folded_bias: the biases' units
            "data_shift": clamp_shift(f.data_shift, f.bw_x, f.acc_bits),
            "clamp_lo": clamp_lo, "clamp_hi": clamp_hi, "last": int(st is strips[-1][0]),
        }
        if cfg.rect_pool:
            p.entry.update(pool_h=pool_h)
        if cfg.w_index_bits:
            p.entry.update(cb=table_of[i])
        if cfg.offsets:
            p.entry.update(pad_q=f.zp_in, zp_out=f.zp_out)
        if cfg.slope:
            a, s = p.slope.slope() if p.slope is not None else (1, 0)
            p.entry.update(slope_a=a, slope_s=s)
        if cfg.round_even:
            p.entry.update(even=evens[i]["even"],
                           **({"add_even": evens[i]["add_even"]} if cfg.residual else {}))
        if cfg.depthwise:
            p.entry.update(dw=int(p.kind == "dwconv"), t_px=t_px)
        if cfg.w_share:
            p.entry.update(w_share=int(p.shared))
        tile = (1 if p.shared or p.window else kh * kw) * t_in
        if cfg.w_bulk:
            # A group that reads each weight word once streams them (``w_stream``).
            once = (lc["n_py"] * lc["n_px"] * pool_h * pool_w == 1 and not p.shared
                    and not p.window
                    and p.add is None and lc["gap"] == 0 and not cfg.m_spram)
            p.entry.update(w_tile=0 if once else tile, w_stream=int(once))
        if cfg.dw_window:
            p.entry.update(win=int(bool(p.window)), win_sy=sy, win_sx=sx, win_wy=0, win_wx=0)
            if p.window:
                # One item per pixel from the map's first row and column, row by row
                # (plan.window_extent); the window supplies the top and left padding.
                p.entry.update(addr0=in_base, iy0=0, ix0=0, cs_py=1, cs_px=1, cs_dy=1,
                               cs_dx=1, st_py=w * t_px, st_px=t_px, st_dy=w * t_px,
                               st_dx=t_px, win_wy=kh - 1 - top, win_wx=kw - 1 - left)
        if cfg.resize:
            # The steps from odd view coordinates; a group read as stored (a window group
            # with its walk's steps, set above) steps alike from even and odd ones.
            p.entry.update({k: steps[k] for k in VIEW_FIELDS} if p.resize != (1, 1) else
                           {"st_kx0": t_px, **{f"{k}1": p.entry[k] for k in EVEN_STEPS}})
        if cfg.residual:
            p.entry.update(adds[i], sc_base=base[p.shortcut] if p.add is not None else 0)
            if p.add is not None:
                sc_depth = max(sc_depth, shortcut_fifo_depth(cfg, window_items(p, cfg),
                                                             lc["gap"]))
        if cfg.m_bulk:
            # Bulk offsets from the maps' region; its base is added once the weight image's
            # size is known (below).
            (di, di_bulk, di_fmap), (do, do_bulk, do_fmap) = (st.load or (0, 0, 0),
                                                              st.store or (0, 0, 0))
            p.entry.update(di_words=di, di_bulk=di_bulk, di_fmap=di_fmap, do_words=do,
                           do_bulk=do_bulk, do_fmap=do_fmap)
            buffers = max(buffers, di_fmap + di, do_fmap + do)
        entries.append(p.entry)
        runs.append(p)
        # The weight stream reads a group's words again for each of its strips (w_base
        # counts on); the image holds them once (the ring's segments, weight_segments).
        if not p.strip:
            src[i] = image
            image += n_mg * tile
        _extend(segments, src[i], n_mg * tile)
        w_base += n_mg * tile
        b_base += 0 if p.strip else n_mg
    if cfg.residual:
        cfg = cfg.fitted(sc_depth=sc_depth)
    if cfg.m_bulk:
        entries, runs, buffers = _with_transfers(cfg, plans, place, entries, runs, buffers,
                                                 map_beats)

    # A depthwise group (not on the window) reads its dw_words words from its first word on:
    # at a map's last pixel those can run past the map's end (zero weights meet them), so
    # the memory keeps that many words more (a read past the end would give undefined data).
    spill = max([0] + [cfg.dw_words - 1 for p in plans if p.kind == "dwconv" and not p.window])
    if cfg.w_bulk:
        held = [e["w_tile"] for e in entries if not e["w_stream"] and e["n_mg"]]
        streams = any(e["w_stream"] for e in entries)
        cfg = cfg.fitted(w_ring=ring_depth(max(held + [STREAM_TILE] * streams or [1])))
        for e in entries:
            # Ring positions count modulo twice the ring, from the inference's start.
            # A segmented stream (weight_segments) is walked by the ring, not w_total.
            e.update(w_base=e["w_base"] % (2 * cfg.w_ring),
                     w_total=w_base if len(segments) < 2 else 0)
    kinds = entry_fields(cfg)
    counts = [v for e in entries for k, v in e.items() if kinds[k][0] not in OWN_WIDTH_KINDS]
    reach = [abs(e["iy0"]) + e["in_h"] + e["kh"] + e["cs_py"] for e in entries]
    reach += [abs(e["ix0"]) + e["in_w"] + e["kw"] + e["cs_px"] for e in entries]
    cfg = cfg.fitted(
        data_bits=data_bits,
        weight_bits=max(f.bw_w for f in fmts),
        bias_bits=max([f.bw_b for f in fmts]
                      + [int(np.abs(p.biases).max(initial=0)).bit_length() + 1 for p in plans]),
        acc_bits=max(p.acc_bits for p in plans),
        fmap_depth=max([base[t] + words[t] for t in base] + [buffers]) + spill,
        weight_depth=max(1, image),
        bias_depth=max(1, b_base),
        prog_depth=len(entries),
        dim_bits=max(abs(v) for v in counts + reach).bit_length(),
        map_bulk=place.bulk_words,
        codebooks=len(tables),
    )
    if cfg.m_bulk:
        for e in entries:
            for d in ("di", "do"):
                if e[f"{d}_words"]:
                    e[f"{d}_bulk"] += cfg.maps_base
    for p in runs:
        _still_steps(p.entry, cfg)
        check_entry(cfg, p.entry, f"layer {p.name!r}")
    return CompiledModel(cfg, runs, [pack_entry(cfg, e) for e in entries],
                         pack_biases(cfg, runs), out_name, input_shape, window,
                         spec.input_zp, input_rows=place.in_rows, output_rows=place.out_rows,
                         output_shape=plans[-1].out_shape,
                         weight_segments=segments if len(segments) > 1 else [],
                         codebooks=tables)


def _codebooks(plans: list[LayerPlan], cfg: EngineConfig
               ) -> tuple[list[list[int]], dict[int, int]]:
    """With weight indices (``cfg.w_index_bits``): the program's codebooks, each group's
    distinct weights (:func:`~.images.codebook`; a group with the same as an earlier one
    names that one), and which one each of ``plans`` names, by position; none without."""
    tables: list[list[int]] = []
    table_of: dict[int, int] = {}
    if not cfg.w_index_bits:
        return tables, table_of
    seen: dict[tuple[int, ...], int] = {}
    for i, p in enumerate(plans):
        t = tuple(codebook(cfg, p))
        if t not in seen:
            seen[t] = len(tables)
            tables.append(list(t))
        table_of[i] = seen[t]
    return tables, table_of


def _with_transfers(cfg: EngineConfig, plans: list[LayerPlan], place: MapPlacement,
                    entries: list[dict], runs: list[LayerPlan], buffers: int, map_beats: int
                    ) -> tuple[list[dict], list[LayerPlan], int]:
    """The program of an engine with maps in bulk memory (``m_bulk``): the compute entries
    with their phase flags (``ld``: the entry loads host values first, ``run``: it
    computes, ``ul``: it streams its output map to the host at its end), after the host
    load strips of an input in bulk memory and before the unload strips of an output
    there (:func:`~.strips.transfers`). An output on chip that a stripped group wrote is
    unloaded whole by an entry of its own."""
    n = cfg.lanes
    first, last = plans[0], plans[-1]
    loads = transfers(place, first.input, first.in_shape, True, n, map_beats)
    unloads = transfers(place, last.output, last.out_shape, False, n, map_beats)
    if not unloads and runs[-1].strip:
        unloads = [Transfer(last.output, last.out_shape, last.out_shape[1], False,
                            place.base[last.output], (0, 0, 0))]
    for e in entries:
        e.update(ld=0, run=1, ul=0, last=0)
    entries[0]["ld"] = int(not loads)
    entries[-1]["ul"] = int(not unloads)
    extra = [(t, _transfer_entry(cfg, t)) for t in loads + unloads]
    for t, e in extra:
        buffers = max(buffers, e["di_fmap"] + e["di_words"], e["do_fmap"] + e["do_words"])
    pre = [_transfer_plan(t, k, e) for k, (t, e) in enumerate(x for x in extra if x[0].load)]
    post = [_transfer_plan(t, k, e)
            for k, (t, e) in enumerate(x for x in extra if not x[0].load)]
    runs = pre + runs + post
    entries = [p.entry for p in pre] + entries + [p.entry for p in post]
    entries[-1]["last"] = 1
    return entries, runs, buffers


def _transfer_plan(t: Transfer, k: int, entry: dict[str, int]) -> LayerPlan:
    """The plan of transfer ``t``, strip ``k`` of its map: ``"x (load)"`` or
    ``"y (unload)"``, its rows as the map it moves, ``entry`` its program entry."""
    kind = "load" if t.load else "unload"
    shape = (t.shape[0], t.rows, t.shape[2])
    return LayerPlan(f"{t.tensor} ({kind})", [t.tensor], kind, shape, shape, (1, 1),
                     input=t.tensor, output=t.tensor, strip=k, entry=entry)


def _transfer_entry(cfg: EngineConfig, t: Transfer) -> dict[str, int]:
    """The program entry of a host load strip or an unload strip: the loader's or the
    unloader's walk of the strip buffer (every other field 0: the sequencer does not run)
    and its DMA transfer (a store after the load, a load before the unload)."""
    c, _, w = t.shape
    words = _ceil_div(c, cfg.lanes)
    e = {name: 0 for name in entry_fields(cfg)}
    if t.load:
        e.update(in_base=t.base, in_c=c, in_pix=t.rows * w, t_in=words, ld=1,
                 **({"t_px": words} if cfg.depthwise else {}))
        e.update(zip(("do_words", "do_bulk", "do_fmap"), t.dma))
    else:
        e.update(out_base=t.base, out_c=c, out_pix=t.rows * w, t_out=words, ul=1)
        e.update(zip(("di_words", "di_bulk", "di_fmap"), t.dma))
    return e


#: The tile the ring is sized for when streaming groups need more than the others: their
#: words pass through, and a ring of a few words keeps the bulk reads in bursts.
STREAM_TILE = 8


def ring_depth(tile: int) -> int:
    """The weight ring's depth for a largest tile of ``tile`` words: the smallest power of
    two holding two such tiles, so the next group's tile loads while the current one
    computes (double buffering)."""
    return 1 << max(1, (2 * tile - 1).bit_length())


def avg_format(p: LayerPlan, m: MapFormat) -> LayerFormat:
    """The formats an average pool of ``p.avg = 2**s`` cells per window runs in as a
    depthwise convolution on the engine (``docs/arithmetic.md``, "Average pooling on the
    engine"): unit weights at ``fl_w = s`` (the real ``2**-s``), no bias, the input map's
    format ``m`` in and out (so the data shift is ``s``, rounding in the map's mode, half
    up or half to even: the integer model's ``avg_round``), and an accumulator for ``2**s``
    cells of ``bw + 1`` bits (a map offset's ``-zp * 2**s`` folded into the start value)
    plus the rounding constant."""
    s = p.avg.bit_length() - 1
    return LayerFormat(p.name, bw_w=2, fl_w=s, bw_b=2, fl_b=m.fl + s, bw_in=m.bw,
                       fl_in=m.fl, bw_x=m.bw, fl_out=m.fl,
                       acc_bits=((p.avg << m.bw) + p.avg).bit_length() + 1,
                       zp_in=m.zp, zp_out=m.zp, rounding=m.rounding)


def bias_units(f: LayerFormat, shifts: np.ndarray) -> int:
    """The engine's bias shift for a layer with data shifts ``shifts`` (one per channel):
    the units :func:`folded_bias` keeps its start values in. The layer's ``bias_shift``
    unless a rounding constant ``2**(s-1)`` is finer (then ``min(s) - 1`` over its right
    shifts, so every constant is a whole number of units), and 0 for a layer reading a map
    with an offset (its folded ``-zp_in * sum(w)`` is in accumulator units)."""
    if f.zp_in:
        return 0
    return min([f.bias_shift] + [int(s) - 1 for s in shifts if s > 0])


def folded_bias(f: LayerFormat, bq: np.ndarray, wq: np.ndarray, shifts: np.ndarray
                ) -> np.ndarray:
    """The biases the engine starts each accumulator from, in units of
    ``2**bias_units(f, shifts)`` (the program's bias shift): ``q_b << bias_shift``, plus
    the channel's rounding constant ``2**(s-1)`` for a right data shift ``s > 0``, so the
    requantizer only shifts (floor): ``(acc + 2**(s-1)) >> s`` is ``shift_round(acc, s)``
    (``docs/arithmetic.md``, "On the engine: the rounding constant"). A layer reading a map
    with an offset multiplies the stored ``q`` where the arithmetic has ``q - zp_in`` (the
    MAC array takes 8-bit operands; the padding is ``zp_in`` too), so ``-zp_in * sum(w)``
    over each output channel's weights is added too. Every term is a whole number of units,
    so the division is exact."""
    start = np.asarray(bq, np.int64) << f.bias_shift
    if f.zp_in:
        start = start - f.zp_in * np.asarray(wq, np.int64).reshape(len(wq), -1).sum(axis=1)
    start = start + fixed.rounding_constant(shifts)
    return start >> bias_units(f, shifts)


def rounded_acc_bits(f: LayerFormat, layer, shifts: np.ndarray) -> int:
    """The accumulator width the engine needs for a layer whose start values hold the
    rounding constants: ``f.acc_bits``, or one bit more where ``|acc| + 2**(s-1)`` can
    exceed it. The integer model's ``|acc|`` is at most ``fixed.acc_bound`` of the layer's
    formats, so the engine's final sum ``acc + 2**(s-1)`` lies in ``[-bound, bound +
    2**(s-1)]``; the accumulator wraps modulo ``2**acc_bits`` in between (partial sums of a
    layer with a map offset may leave the range, the final sum does not), so it is exact
    when that range fits."""
    half = int(fixed.rounding_constant(shifts).max(initial=0))
    bound = fixed.acc_bound(int_model.fan_in(layer), int_model.data_bits(f), f.bw_w, f.bw_b,
                            f.bias_shift)
    return max(f.acc_bits, (bound + half).bit_length() + 1)


def _even_fields(p: LayerPlan, f: LayerFormat, spec: QuantSpec) -> dict[str, int]:
    """The program's rounding bits of group ``p`` (format ``f``): 1 where the group's data
    shift, or its fused Add's, rounds half to even and shifts right (a shift <= 0 rounds
    nothing, so it needs no half-to-even requantizer)."""
    add = spec.layers[p.add.name] if p.add is not None else None
    return {"even": int(f.rounding == fixed.HALF_EVEN and bool(np.any(p.shifts > 0))),
            "add_even": int(add is not None and add.rounding == fixed.HALF_EVEN
                            and add.data_shift > 0)}


def _add_fields(p: LayerPlan, f: LayerFormat, spec: QuantSpec) -> dict[str, int]:
    """The program's residual-add fields of group ``p`` (format ``f``; the identity without
    an Add): alignment shifts, data shift (clamped like a compute layer's) and clamp range of
    the Add's format with its ReLUs / Clips (``docs/arithmetic.md``, "Add")."""
    if p.add is None:
        return {"add": 0, "add_sa": 0, "add_sb": 0, "add_shift": 0,
                "add_lo": fixed.qmin(f.bw_x), "add_hi": fixed.qmax(f.bw_x)}
    a = spec.layers[p.add.name]
    if a.zp_out or any(a.zp_in):
        raise DynfixError(f"layer {p.add.name!r} (Add): the engine adds signed maps only; "
                          f"this spec has an unsigned input or output (zp) at the Add "
                          f"(quantize with unsigned maps off, or let the search keep the "
                          f"maps around Adds signed, as it does)")
    sa, sb = a.align[p.add_index], a.align[1 - p.add_index]
    lo, hi = LayerPlan.clamp_range(replace(p, acts=p.add_acts), a.bw_x, a.fl_out)
    return {"add": 1, "add_sa": sa, "add_sb": sb,
            "add_shift": clamp_shift(a.data_shift, a.bw_x, a.sum_bits),
            "add_lo": lo, "add_hi": hi}
