"""Compiler: (model, quantization, engine config) -> layer program and memory images.

A model runs on the engine as a sequence of *groups*: a Conv2d or Linear layer with optional
ReLUs and Clips (ReLU6) and an optional non-overlapping MaxPool, or with a residual Add
(and ReLUs / Clips after it) whose other input is already in map memory (Flatten is free:
the map layout already is the flatten order). The group's ReLUs and Clips and the saturation
to its output width become one clamp range in the requantizer
(:meth:`LayerPlan.clamp_range`); the Add's, one in the residual-add stage. Each group reads
stored maps (the model input, earlier groups' outputs) and writes one, placed in map memory
by lifetime (:func:`allocate`). A Linear layer runs as a convolution whose kernel covers its
whole input map, with the weight matrix reordered from flatten order (C, H, W) to kernel
order. A trailing Softmax stays on the host. Anything else is rejected with one error
naming every layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from dynfix.errors import DynfixError
from dynfix.quant import fixed
from dynfix.quant.int_model import IntModel, MapFormat, clip_bounds
from dynfix.quant.ir import (Add, AvgPool2d, Clip, Conv2d, Flatten, Layer, Linear, MaxPool2d,
                             Model, ReLU, Softmax)
from dynfix.quant.lower import lower
from dynfix.quant.qspec import QuantSpec
from .config import EngineConfig
from .engine import shortcut_fifo_depth
from .program import OWN_WIDTH_KINDS, check_entry, entry_fields, pack_entry

Shape3 = tuple[int, int, int]


@dataclass
class LayerPlan:
    """One fused group as the engine runs it."""

    name: str                       # the Conv2d / Linear layer
    layers: list[str]               # every model layer folded into the group
    kind: str                       # "conv", "dwconv" (depthwise) or "linear"
    in_shape: Shape3                # C, H, W of the map it reads
    out_shape: Shape3               # M, H', W' of the map it writes (after pooling)
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    pool: int = 1
    acts: list[Layer] = field(default_factory=list)     # its ReLUs and Clips, in model order
    input: str = ""                 # the stored tensor it reads
    output: str = ""                # the tensor it writes (its last layer)
    add: Add | None = None          # a residual Add fused into the group
    shortcut: str = ""              # the Add's other input (a stored tensor)
    add_index: int = 0              # which input of the Add the group's own result is
    shared: bool = False            # every kernel tap has the same weights (stored once)
    add_acts: list[Layer] = field(default_factory=list)   # ReLUs and Clips after the Add
    macs: int = 0                   # useful multiply-accumulates (the model's count)
    entry: dict[str, int] = field(default_factory=dict)
    weights: np.ndarray | None = field(default=None, repr=False)   # M, C, kh, kw (int)
    biases: np.ndarray | None = field(default=None, repr=False)    # M (int)

    @property
    def conv_out(self) -> tuple[int, int]:
        """Conv pixels computed (rows, columns): the pooled map times the pool size."""
        return self.out_shape[1] * self.pool, self.out_shape[2] * self.pool

    def clamp_range(self, bw: int, fl: int) -> tuple[int, int]:
        """The one range ``[lo, hi]`` the requantizer clamps to, in the group's output format
        (``bw``, ``fl``): the saturation to ``bw`` bits, then every ReLU (``[0, qmax]``) and
        Clip (``int_model.clip_bounds``: ``[lo_q, hi_q]``) of the group in order.

        Clamps compose into one clamp: clamping ``[lo, hi]`` by ``[l, h]`` gives
        ``[clamp(lo, l, h), clamp(hi, l, h)]`` (disjoint ranges give a constant, as applying
        them one after the other does). A clamp is monotonic, so it commutes with max-pooling
        (``max(clamp(a), clamp(b)) == clamp(max(a, b))``): where the ReLU or Clip sits
        relative to the group's MaxPool does not matter, only the order of the clamps."""
        lo, hi = fixed.qmin(bw), fixed.qmax(bw)
        for act in self.acts:
            if isinstance(act, Clip):
                l, h = clip_bounds(act, MapFormat(bw, fl))
            else:
                l, h = 0, fixed.qmax(bw)
            lo, hi = min(max(lo, l), h), min(max(hi, l), h)
        return lo, hi


@dataclass
class CompiledModel:
    config: EngineConfig
    plans: list[LayerPlan]
    program: list[int]
    weights: list[int]
    biases: list[int]
    output_name: str                # the layer whose integers the engine streams out
    input_shape: Shape3             # the map the host streams (C, H, W order)
    #: The first conv's (in_shape, kernel, stride, pads) when the host streams its windows
    #: (``im2col``); None when it streams the image itself.
    input_window: tuple | None = None

    @property
    def output_len(self) -> int:
        return int(np.prod(self.plans[-1].out_shape))

    def host_input(self, xq: np.ndarray) -> np.ndarray:
        """What the host streams for one quantized input: the image in C, H, W order, or
        with ``im2col`` the first conv's windows, channel ``(ky*kw + kx)*C + c`` of output
        pixel ``(oy, ox)`` holding ``x[c, oy*sy - top + ky, ox*sx - left + kx]`` (0 in the
        padding)."""
        xq = np.asarray(xq, dtype=np.int64)
        if self.input_window is None:
            return xq.reshape(-1)
        (c, h, w), (kh, kw), (sy, sx), (top, left, bottom, right) = self.input_window
        _, oh, ow = self.input_shape
        xp = np.zeros((c, h + top + bottom + kh, w + left + right + kw), np.int64)
        xp[:, top:top + h, left:left + w] = xq.reshape(c, h, w)
        cols = [xp[:, ky:ky + sy * oh:sy, kx:kx + sx * ow:sx]
                for ky in range(kh) for kx in range(kw)]
        return np.concatenate(cols, axis=0).reshape(-1)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _as_map(shape: tuple[int, ...]) -> Shape3 | None:
    if len(shape) == 3:
        return tuple(int(d) for d in shape)
    if len(shape) == 1:
        return (int(shape[0]), 1, 1)
    return None


def plan_groups(model: Model) -> tuple[list[LayerPlan], str]:
    """Fuse the model's DAG into engine groups, in the order of their Conv/Linear layers;
    raise one DynfixError listing every problem.

    A layer after a Conv/Linear joins its group when it reads the group's latest tensor and
    nothing else reads that tensor: ReLU, Clip, MaxPool, Flatten, and a residual Add, which
    is fused into the group that produces one of its inputs (the later of the two, so the
    other input, the *shortcut*, is already in memory). Every other tensor a Conv/Linear or
    an Add reads must be a group's output or the model input: those are the maps the engine
    stores. The graph is first lowered (:func:`dynfix.quant.lower.lower`: a global average
    pool before a Linear folds into it), as the integer model does. Returns the groups and
    the name of the layer whose output the engine produces.
    """
    model = lower(model)
    problems: list[str] = []
    plans: list[LayerPlan] = []
    owner: dict[str, LayerPlan] = {}          # tensor -> the group it belongs to
    alias: dict[str, str] = {}                # a Flatten of a stored map -> that map
    shapes = {model.input_name: _as_map(tuple(model.input_shape))}
    if shapes[model.input_name] is None:
        problems.append(f"input {model.input_name!r}: shape {tuple(model.input_shape)} is "
                        f"neither C x H x W nor flat")
    consumers = {t: [c.name for c in model.consumers(t)] for t in
                 [model.input_name] + [layer.name for layer in model.layers]}
    last = len(model.layers) - 1

    def stored(t: str, what: str) -> Shape3 | None:
        """The map shape of tensor ``t`` if the engine stores it (else note a problem)."""
        t = alias.get(t, t)
        g = owner.get(t)
        if t == model.input_name or (g is not None and g.output == t):
            return shapes.get(t) or (1, 1, 1)
        if g is None:
            return None                 # made by a layer already reported
        problems.append(f"{what} reads {t!r}, which lies inside the fused group of "
                        f"{g.name} (a branch from before that group's end)")
        return None

    def extends(layer: Layer, t: str) -> LayerPlan | None:
        """The group ``layer`` can join through tensor ``t``, if any."""
        g = owner.get(t)
        return g if g is not None and g.output == t and consumers[t] == [layer.name] else None

    for idx, layer in enumerate(model.layers):
        what = f"{layer.name} ({type(layer).__name__})"
        if isinstance(layer, (Conv2d, Linear)):
            src = layer.inputs[0]
            in_shape = stored(src, what) or (1, 1, 1)
            if isinstance(layer, Conv2d):
                if tuple(layer.dilation) != (1, 1):
                    problems.append(f"{what}: dilation {tuple(layer.dilation)} (only 1)")
                g = LayerPlan(layer.name, [layer.name], _conv_kind(layer), in_shape,
                              tuple(layer.out_shape), tuple(layer.kernel),
                              tuple(layer.stride), tuple(layer.pads),
                              macs=layer.macs(model.in_shape(idx)))
            else:
                c, h, w = in_shape
                if c * h * w != int(layer.weight.shape[1]):
                    c, h, w = int(layer.weight.shape[1]), 1, 1
                g = LayerPlan(layer.name, [layer.name], "linear", (c, h, w),
                              (int(layer.weight.shape[0]), 1, 1), (h, w),
                              macs=layer.macs(model.in_shape(idx)))
            g.input, g.output = alias.get(src, src), layer.name
            plans.append(g)
        elif isinstance(layer, Softmax) and idx == last:
            continue                            # on the host
        elif isinstance(layer, Add):
            g = _fuse_add(layer, [extends(layer, t) for t in layer.inputs], plans, owner,
                          problems)
            if g is not None:
                g.add_index = layer.inputs.index(g.output)
                other = layer.inputs[1 - g.add_index]
                if stored(other, what) is not None:
                    g.add, g.shortcut = layer, alias.get(other, other)
        elif isinstance(layer, (ReLU, Clip, MaxPool2d, Flatten)) and type(layer) is not AvgPool2d:
            g = extends(layer, layer.inputs[0])
            if g is None and isinstance(layer, Flatten):
                alias[layer.name] = alias.get(layer.inputs[0], layer.inputs[0])
                continue
            if g is None:
                if layer.inputs[0] in owner:
                    problems.append(f"{what}: reads {layer.inputs[0]!r}, which other layers "
                                    f"read too (a branch before the end of a fused group)")
                else:
                    problems.append(f"{what}: not after a Conv/Linear layer")
                continue
            if isinstance(layer, MaxPool2d):
                why = _pool_problems(layer, g)
                if why:
                    problems.append(f"{what}: {'; '.join(why)}")
                    continue
                g.pool = layer.kernel[0]
                g.out_shape = tuple(layer.out_shape)
            elif isinstance(layer, (ReLU, Clip)):
                (g.add_acts if g.add is not None else g.acts).append(layer)
        else:
            why = {"avgpool": "average pooling", "gap": "global average pooling",
                   "affine": "unfolded BatchNorm/affine", "softmax": "softmax before the end"}
            hint = (" yet (a global one folds into a Linear layer right after it)"
                    if layer.op in ("gap", "avgpool") else "")
            problems.append(f"{what}: {why.get(layer.op, f'op {layer.op!r}')} is not "
                            f"supported by the engine{hint}")
            continue
        if g is not None:
            if layer.name not in g.layers:
                g.layers.append(layer.name)
            g.output = layer.name
            owner[layer.name] = g
            shapes[layer.name] = g.out_shape
    out_name = next((layer.name for layer in reversed(model.layers)
                     if not isinstance(layer, Softmax)), model.input_name)
    if not plans:
        problems.append("no Conv/Linear layer")
    elif not problems and owner.get(out_name) is not plans[-1]:
        problems.append(f"the output {out_name!r} is not produced by the last Conv/Linear "
                        f"group")
    if problems:
        raise DynfixError(f"model {model.name!r} cannot run on the engine: "
                          + "; ".join(problems))
    return plans, out_name


def _conv_kind(layer: Conv2d) -> str:
    """``dwconv`` for a depthwise convolution (groups = input = output channels), which the
    engine runs reading only each group's own input words; ``conv`` otherwise (a grouped
    convolution runs as the dense one with zero weights across groups)."""
    c, m = layer.weight.shape[1] * layer.groups, layer.weight.shape[0]
    return "dwconv" if layer.groups > 1 and layer.groups == c == m else "conv"


def _pool_problems(layer: MaxPool2d, g: LayerPlan) -> list[str]:
    """Why a MaxPool cannot join group ``g`` (empty: it can)."""
    k, s = tuple(layer.kernel), tuple(layer.stride)
    why = []
    if g.kind not in ("conv", "dwconv") or g.pool > 1 or g.add is not None:
        why.append("not directly after a Conv layer (with optional ReLU / Clip)")
    if k[0] != k[1] or k != s:
        why.append(f"kernel {k} stride {s} (only square, stride = kernel)")
    if any(layer.pads):
        why.append(f"padding {tuple(layer.pads)}")
    if g.kind != "linear" and layer.ceil_mode and (g.out_shape[1] % k[0] or g.out_shape[2] % k[1]):
        why.append("ceil_mode with a partial window")
    return why


def _fuse_add(layer: Add, groups: list[LayerPlan | None], plans: list[LayerPlan],
              owner: dict[str, LayerPlan], problems: list[str]) -> LayerPlan | None:
    """The group a residual Add fuses into: one whose latest tensor is an input that nothing
    else reads, with no pooling and no Add yet, and computed after the other input (so the
    shortcut is in memory while the group runs). The later such group wins."""
    order = {id(p): i for i, p in enumerate(plans)}
    best = None
    for g, other in zip(groups, reversed(layer.inputs)):
        if g is None or g.add is not None or g.pool > 1:
            continue
        src = owner.get(other)
        if src is g or (src is not None and order[id(src)] > order[id(g)]):
            continue
        if best is None or order[id(g)] > order[id(best)]:
            best = g
    if best is None:
        problems.append(f"{layer.name} (Add): the engine fuses an Add into the Conv/Linear "
                        f"group producing one input (that input read by nothing else, no "
                        f"pooling in the group) after the other input is computed; "
                        f"{list(layer.inputs)} have no such group")
    return best


def loop_counts(p: LayerPlan, cfg: EngineConfig) -> dict[str, int]:
    """The loop counts of group ``p`` on ``cfg``: what the sequencer walks and the cycle
    model counts (no quantization or memory layout needed)."""
    c = p.in_shape[0]
    m_out, ph, pw = p.out_shape
    t_in = cfg.dw_words if p.kind == "dwconv" else _ceil_div(c, cfg.lanes)
    window = p.pool ** 2 * p.kernel[0] * p.kernel[1] * t_in + slots(p, cfg)  # per result
    return {"t_in": t_in, "t_out": _ceil_div(m_out, cfg.lanes),
            "n_mg": _ceil_div(m_out, cfg.tm), "n_py": ph, "n_px": pw, "pool": p.pool,
            "kh": p.kernel[0], "kw": p.kernel[1],
            "gap": max(0, cfg.wb_words - window)}


def slots(p: LayerPlan, cfg: EngineConfig) -> int:
    """Shortcut slot items per output pixel: ``cfg.sc_slots`` for a group with an Add."""
    return cfg.sc_slots if p.add is not None else 0


def allocate(plans: list[LayerPlan], sizes: dict[str, int], first: str) -> dict[str, int]:
    """Map-memory base of every stored tensor, by lifetime: the model input ``first`` at 0
    or right above the largest map (whichever needs fewer words: above, the first layers'
    outputs can take the bottom once the input is dead), then each group's output at the
    lowest address where it overlaps no tensor still to be read (by this group or a later
    one; the last output is read by the unload). A group's output never overlaps what it
    reads, except that a residual group writes over its shortcut when it is the shortcut's
    last reader (in place: same size, read first)."""
    last_use = {first: 0}
    for i, p in enumerate(plans):
        for t in (p.input, p.shortcut):
            if t:
                last_use[t] = i
    last_use[plans[-1].output] = len(plans)
    best = None
    for input_at in sorted({0, max(sizes[p.output] for p in plans)}):
        base = _first_fit(plans, sizes, last_use, {first: input_at})
        depth = max(base[t] + sizes[t] for t in base)
        if best is None or depth < best[0]:
            best = (depth, base)
    return best[1]


def _first_fit(plans: list[LayerPlan], sizes: dict[str, int], last_use: dict[str, int],
               base: dict[str, int]) -> dict[str, int]:
    """:func:`allocate`'s placement of every group's output, given the input's."""
    for i, p in enumerate(plans):
        sc = p.shortcut
        if sc and sc != p.input and last_use[sc] == i and sizes[sc] == sizes[p.output]:
            # In place: the residual group reads pixel q's shortcut words before it writes
            # pixel q's results (many cycles later), each group only its own lanes, and
            # nothing reads the shortcut afterwards.
            base[p.output] = base[sc]
            continue
        live = sorted((base[t], base[t] + sizes[t]) for t in base if last_use.get(t, -1) >= i)
        at = 0
        for lo, hi in live:
            if at + sizes[p.output] <= lo:
                break
            at = max(at, hi)
        base[p.output] = at
    return base


def plan_model(model: Model, cfg: EngineConfig) -> list[LayerPlan]:
    """Shape-only compile for analysis: the groups with their loop counts as ``entry``
    (enough for :func:`dynfix.hw.cycle_model.layer_cycles`), the first conv turned into a
    1x1 conv over its windows when ``cfg.im2col`` asks and that pays; no weights are packed,
    so a model as large as VGG16 plans instantly. ``cfg``'s parallelism is not checked."""
    plans, _ = plan_groups(model)
    if cfg.im2col and _reads_once(plans):
        im2col_first(plans[0], cfg.lanes)
    for p in plans:
        p.entry = loop_counts(p, cfg)
    return plans


def clamp_shift(data_shift: int, bw_x: int, acc_bits: int) -> int:
    """The data shift clamped to ``[-bw_x, acc_bits]``, which keeps every result (a left shift
    by ``bw_x`` or more saturates any non-zero value, a right shift by ``acc_bits`` or more
    rounds every accumulator value to 0)."""
    return max(-bw_x, min(acc_bits, data_shift))


def compile_model(model: Model, spec: QuantSpec, cfg: EngineConfig) -> CompiledModel:
    """Plan, size the engine (filling ``cfg``'s zero fields) and build memory images."""
    cfg.check_parallelism()
    plans, out_name = plan_groups(model)
    im = IntModel(model, spec)
    n = cfg.lanes

    for p in plans:
        f = spec.layers[p.name]
        p.weights = _dense_weights(model_layer(im, p.name), im.weights[p.name], p)
        p.shared = (p.kind != "dwconv" and p.kernel != (1, 1)
                    and bool(np.all(p.weights == p.weights[:, :, :1, :1])))
        p.biases = im.biases[p.name]
    window = im2col_first(plans[0], n) if cfg.im2col and _reads_once(plans) else None
    fmts = [spec.layers[p.name] for p in plans]
    data_bits = max([spec.input_bw] + [f.bw_x for f in fmts])
    words = {plans[0].input: _words(plans[0].in_shape, n)}
    words.update((p.output, _words(p.out_shape, n)) for p in plans)
    base = allocate(plans, words, plans[0].input)
    adds = [_add_fields(p, spec, im) for p in plans]
    # The residual stage: fitted like the widths (0: as the model needs; an explicit value
    # is a bound), so a config with ``residual: 1`` also runs models without an Add.
    cfg = cfg.fitted(depthwise=int(any(p.kind == "dwconv" for p in plans)),
                     w_share=int(any(p.shared for p in plans)),
                     residual=int(any(p.add is not None for p in plans)),
                     add_align=max(max(a["add_sa"], a["add_sb"]) for a in adds))

    entries, w_base, b_base = [], 0, 0
    sc_depth = 1
    for i, (p, f) in enumerate(zip(plans, fmts)):
        c, h, w = p.in_shape
        m_out, ph, pw = p.out_shape
        lc = loop_counts(p, cfg)
        t_in, t_out, n_mg = lc["t_in"], lc["t_out"], lc["n_mg"]
        (kh, kw), (sy, sx), pool = p.kernel, p.stride, p.pool
        top, left = p.pads[0], p.pads[1]
        clamp_lo, clamp_hi = p.clamp_range(f.bw_x, f.fl_out)
        in_base, out_base = base[p.input], base[p.output]
        t_px = _ceil_div(c, n)          # words per input pixel (t_in but for depthwise)
        p.entry = {
            "in_base": in_base, "out_base": out_base,
            "addr0": in_base - (top * w + left) * t_px, "iy0": -top, "ix0": -left,
            "in_c": c, "in_pix": h * w, "in_h": h, "in_w": w, "t_in": t_in,
            "n_mg": n_mg, "n_py": ph, "n_px": pw, "pool": pool, "kh": kh, "kw": kw,
            "cs_py": pool * sy, "cs_px": pool * sx, "cs_dy": sy, "cs_dx": sx,
            "t_out": t_out, "out_pix": ph * pw, "out_c": m_out, "gap": lc["gap"],
            "st_py": pool * sy * w * t_px, "st_px": pool * sx * t_px,
            "st_dy": sy * w * t_px, "st_dx": sx * t_px, "st_ky": w * t_px,
            "w_base": w_base, "b_base": b_base,
            "bias_shift": f.bias_shift,
            "data_shift": clamp_shift(f.data_shift, f.bw_x, f.acc_bits),
            "clamp_lo": clamp_lo, "clamp_hi": clamp_hi, "last": int(i == len(plans) - 1),
        }
        if cfg.depthwise:
            p.entry.update(dw=int(p.kind == "dwconv"), t_px=t_px)
        if cfg.w_share:
            p.entry.update(w_share=int(p.shared))
        if cfg.residual:
            p.entry.update(adds[i], sc_base=base[p.shortcut] if p.add is not None else 0)
            if p.add is not None:
                items = kh * kw * t_in + slots(p, cfg)
                sc_depth = max(sc_depth, shortcut_fifo_depth(cfg, items, lc["gap"]))
        entries.append(p.entry)
        w_base += n_mg * (1 if p.shared else kh * kw) * t_in
        b_base += n_mg
    if cfg.residual:
        cfg = cfg.fitted(sc_depth=sc_depth)

    kinds = entry_fields(cfg)
    counts = [v for e in entries for k, v in e.items() if kinds[k][0] not in OWN_WIDTH_KINDS]
    reach = [abs(e["iy0"]) + e["in_h"] + e["kh"] + e["cs_py"] for e in entries]
    reach += [abs(e["ix0"]) + e["in_w"] + e["kw"] + e["cs_px"] for e in entries]
    cfg = cfg.fitted(
        data_bits=data_bits,
        weight_bits=max(f.bw_w for f in fmts),
        bias_bits=max(f.bw_b for f in fmts),
        acc_bits=max(f.acc_bits for f in fmts),
        fmap_depth=max(base[t] + words[t] for t in words), weight_depth=max(1, w_base),
        bias_depth=max(1, b_base),
        prog_depth=len(entries),
        dim_bits=max(abs(v) for v in counts + reach).bit_length(),
    )
    for p in plans:
        check_entry(cfg, p.entry, f"layer {p.name!r}")
    return CompiledModel(cfg, plans, [pack_entry(cfg, e) for e in entries],
                         pack_weights(cfg, plans), pack_biases(cfg, plans), out_name,
                         plans[0].in_shape, window)


def model_layer(im: IntModel, name: str) -> Layer:
    """Layer ``name`` of the integer model's (lowered) graph."""
    return im.model.layer(name)


def _dense_weights(layer: Layer, wq: np.ndarray, p: LayerPlan) -> np.ndarray:
    """Integer weights as ``(M, C, kh, kw)`` over all input channels: a grouped
    convolution's block-diagonal expansion (zeros across groups); a depthwise one keeps its
    ``(C, 1, kh, kw)``, which the depthwise packing reads."""
    groups = getattr(layer, "groups", 1)
    m_out = wq.shape[0]
    if p.kind == "dwconv" or groups == 1:
        return wq.reshape((m_out, -1) + p.kernel if p.kind == "dwconv"
                          else (m_out,) + p.in_shape[:1] + p.kernel)
    cin_g, cout_g = wq.shape[1], m_out // groups
    dense = np.zeros((m_out, cin_g * groups) + p.kernel, np.int64)
    for gi in range(groups):
        rows = slice(gi * cout_g, (gi + 1) * cout_g)
        dense[rows, gi * cin_g:(gi + 1) * cin_g] = wq[rows]
    return dense


def _depthwise_words(w: np.ndarray, cfg: EngineConfig) -> np.ndarray:
    """Weight words of a depthwise layer (``w``: C x 1 x kh x kw) in sequencer order: per
    group ``g``, kernel row, column and word ``t`` of the ``dw_words`` words from the
    group's first word ``(g * tm) // lanes``; lane ``(j, l)`` holds ``w[g*tm + j]`` where
    input channel ``(first + t) * lanes + l`` is output channel ``g*tm + j``, else 0."""
    n, tm, words = cfg.lanes, cfg.tm, cfg.dw_words
    c, _, kh, kw = w.shape
    n_mg = _ceil_div(c, tm)
    out = np.zeros((n_mg, kh, kw, words, tm, n), np.int64)
    for g in range(n_mg):
        first = (g * tm) // n
        for j in range(min(tm, c - g * tm)):
            ch = g * tm + j
            t, lane = divmod(ch - first * n, n)
            out[g, :, :, t, j, lane] = w[ch, 0]
    return out.reshape(-1, tm * n)


def _reads_once(plans: list[LayerPlan]) -> bool:
    """Whether only the first group reads the model input (``im2col`` replaces the stored
    input by the first conv's windows, so no other group may read it)."""
    first = plans[0].input
    return sum((p.input == first) + (p.shortcut == first) for p in plans) == 1


def _words(shape: Shape3, lanes: int) -> int:
    """Map words of a C x H x W map: ``H * W * ceil(C / lanes)``."""
    c, h, w = shape
    return h * w * _ceil_div(c, lanes)


def _add_fields(p: LayerPlan, spec: QuantSpec, im: IntModel) -> dict[str, int]:
    """The program's residual-add fields of group ``p`` (the identity without an Add):
    alignment shifts, data shift (clamped like a compute layer's) and clamp range of the
    Add's format with its ReLUs / Clips (``docs/arithmetic.md``, "Add")."""
    f = spec.layers[p.name]
    if p.add is None:
        return {"add": 0, "add_sa": 0, "add_sb": 0, "add_shift": 0,
                "add_lo": fixed.qmin(f.bw_x), "add_hi": fixed.qmax(f.bw_x)}
    a = spec.layers[p.add.name]
    sa, sb = a.align[p.add_index], a.align[1 - p.add_index]
    lo, hi = LayerPlan.clamp_range(replace(p, acts=p.add_acts), a.bw_x, a.fl_out)
    return {"add": 1, "add_sa": sa, "add_sb": sb,
            "add_shift": clamp_shift(a.data_shift, a.bw_x, a.sum_bits),
            "add_lo": lo, "add_hi": hi}


def im2col_first(plan: LayerPlan, lanes: int) -> tuple | None:
    """Turn the first conv into a 1x1 conv over its windows, streamed by the host, when that
    takes fewer cycles per pixel (a layer with few input channels fills only C of the lanes;
    its C*kh*kw window values fill them all). Returns the original geometry, or None."""
    c, h, w = plan.in_shape
    kh, kw = plan.kernel
    if plan.kind != "conv" or _ceil_div(c * kh * kw, lanes) >= kh * kw * _ceil_div(c, lanes):
        return None
    window = (plan.in_shape, plan.kernel, plan.stride, plan.pads)
    oh, ow = plan.conv_out
    plan.in_shape = (c * kh * kw, oh, ow)
    if plan.weights is not None:            # None in the shape-only plan
        m = plan.weights.shape[0]
        plan.weights = plan.weights.transpose(0, 2, 3, 1).reshape(m, c * kh * kw, 1, 1)
    plan.kernel, plan.stride, plan.pads = (1, 1), (1, 1), (0, 0, 0, 0)
    return window


def _pack(values: np.ndarray, bits: int) -> list[int]:
    """Rows of signed integers -> one integer per row, element 0 in the low bits."""
    mask = (1 << bits) - 1
    out = []
    for row in values.reshape(values.shape[0], -1):
        word = 0
        for j, v in enumerate(row.tolist()):
            word |= (int(v) & mask) << (j * bits)
        out.append(word)
    return out


def pack_weights(cfg: EngineConfig, plans: list[LayerPlan]) -> list[int]:
    """Weight words in sequencer order: per group mg, kernel row, column, input word t;
    lane (j, l) holds weight[mg*tm + j, t*lanes + l, ky, kx] (0 beyond the layer)."""
    n, tm = cfg.lanes, cfg.tm
    words = []
    for p in plans:
        if p.kind == "dwconv":
            words += _pack(_depthwise_words(p.weights, cfg), cfg.weight_bits)
            continue
        weights = p.weights[:, :, :1, :1] if p.shared else p.weights   # one tap serves all
        m_out, c, kh, kw = weights.shape
        t_in, n_mg = _ceil_div(c, n), _ceil_div(m_out, tm)
        w = np.zeros((n_mg * tm, t_in * n, kh, kw), np.int64)
        w[:m_out, :c] = weights
        # (mg, j, t, l, ky, kx) -> (mg, ky, kx, t, j, l)
        w = w.reshape(n_mg, tm, t_in, n, kh, kw).transpose(0, 4, 5, 2, 1, 3)
        words += _pack(w.reshape(-1, tm * n), cfg.weight_bits)
    return words


def pack_biases(cfg: EngineConfig, plans: list[LayerPlan]) -> list[int]:
    words = []
    for p in plans:
        n_mg = _ceil_div(len(p.biases), cfg.tm)
        b = np.zeros(n_mg * cfg.tm, np.int64)
        b[:len(p.biases)] = p.biases
        words += _pack(b.reshape(n_mg, cfg.tm), cfg.bias_bits)
    return words
