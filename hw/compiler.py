"""Compiler: (model, quantization, engine config) -> layer program and memory images.

A model runs on the engine as a chain of *groups*: a Conv2d or Linear layer with optional
ReLUs and Clips (ReLU6) and an optional non-overlapping MaxPool (Flatten is free: the map
layout already is the flatten order). The group's ReLUs and Clips and the saturation to its
output width become one clamp range in the requantizer (:meth:`LayerPlan.clamp_range`). A
Linear layer runs as a convolution whose kernel covers its whole input map, with the weight
matrix reordered from flatten order (C, H, W) to kernel order. A trailing Softmax stays on
the host. Anything else is rejected with one error naming every layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dynfix.errors import DynfixError
from dynfix.quant import fixed
from dynfix.quant.int_model import IntModel, MapFormat, clip_bounds
from dynfix.quant.ir import Clip, Conv2d, Flatten, Layer, Linear, MaxPool2d, Model, ReLU, Softmax
from dynfix.quant.qspec import QuantSpec
from .config import EngineConfig
from .program import FIELDS, OWN_WIDTH_KINDS, check_entry, pack_entry

Shape3 = tuple[int, int, int]


@dataclass
class LayerPlan:
    """One fused group as the engine runs it."""

    name: str                       # the Conv2d / Linear layer
    layers: list[str]               # every model layer folded into the group
    kind: str                       # "conv" or "linear"
    in_shape: Shape3                # C, H, W of the map it reads
    out_shape: Shape3               # M, H', W' of the map it writes (after pooling)
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    pool: int = 1
    acts: list[Layer] = field(default_factory=list)     # its ReLUs and Clips, in model order
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
    """Fuse the model into engine groups; raise one DynfixError listing every problem.

    Returns the groups and the name of the layer whose output the engine produces.
    """
    problems: list[str] = []
    plans: list[LayerPlan] = []
    cur: LayerPlan | None = None
    out_name = model.input_name
    map_shape = _as_map(tuple(model.input_shape))
    if map_shape is None:
        problems.append(f"input {model.input_name!r}: shape {tuple(model.input_shape)} is "
                        f"neither C x H x W nor flat")
    last = len(model.layers) - 1
    prev = model.input_name
    for idx, layer in enumerate(model.layers):
        what = f"{layer.name} ({type(layer).__name__})"
        if len(layer.inputs) == 1 and layer.inputs[0] != prev:
            problems.append(f"layer {layer.name} reads a tensor other than the previous "
                            f"layer's output (a branch): {layer.inputs[0]!r}, not {prev!r}")
        prev = layer.name
        if isinstance(layer, Conv2d):
            if tuple(layer.dilation) != (1, 1):
                problems.append(f"{what}: dilation {tuple(layer.dilation)} (only 1)")
            if layer.groups != 1:
                problems.append(f"{what}: grouped convolution (groups={layer.groups}) is not "
                                f"supported by the engine yet")
            cur = LayerPlan(layer.name, [layer.name], "conv", map_shape or (1, 1, 1),
                            tuple(layer.out_shape), tuple(layer.kernel),
                            tuple(layer.stride), tuple(layer.pads),
                            macs=layer.macs(model.in_shape(idx)))
            plans.append(cur)
        elif isinstance(layer, Linear):
            c, h, w = map_shape or (int(layer.weight.shape[1]), 1, 1)
            cur = LayerPlan(layer.name, [layer.name], "linear", (c, h, w),
                            (int(layer.weight.shape[0]), 1, 1), (h, w),
                            macs=layer.macs(model.in_shape(idx)))
            plans.append(cur)
        elif isinstance(layer, (ReLU, Clip)):
            if cur is None:
                problems.append(f"{what}: not after a Conv/Linear layer")
            else:
                cur.acts.append(layer)
                cur.layers.append(layer.name)
        elif isinstance(layer, MaxPool2d) and type(layer) is MaxPool2d:
            k, s = tuple(layer.kernel), tuple(layer.stride)
            why = []
            if cur is None or cur.kind != "conv" or cur.pool > 1:
                why.append("not directly after a Conv layer (with optional ReLU / Clip)")
            if k[0] != k[1] or k != s:
                why.append(f"kernel {k} stride {s} (only square, stride = kernel)")
            if any(layer.pads):
                why.append(f"padding {tuple(layer.pads)}")
            if cur is not None and cur.kind == "conv" and layer.ceil_mode and (
                    cur.out_shape[1] % k[0] or cur.out_shape[2] % k[1]):
                why.append("ceil_mode with a partial window")
            if why:
                problems.append(f"{what}: {'; '.join(why)}")
            elif cur is not None:
                cur.pool = k[0]
                cur.out_shape = tuple(layer.out_shape)
                cur.layers.append(layer.name)
        elif isinstance(layer, Flatten):
            if cur is not None:
                cur.layers.append(layer.name)
        elif isinstance(layer, Softmax) and idx == last:
            continue                            # on the host
        else:
            why = {"avgpool": "average pooling", "gap": "global average pooling",
                   "affine": "unfolded BatchNorm/affine", "softmax": "softmax before the end",
                   "add": "residual add"}
            yet = " yet" if layer.op in ("add", "gap") else ""
            problems.append(f"{what}: {why.get(layer.op, f'op {layer.op!r}')} is not "
                            f"supported by the engine{yet}")
        if cur is not None and layer.name in cur.layers:
            map_shape = cur.out_shape
        out_name = layer.name if not isinstance(layer, Softmax) else out_name
    if not plans:
        problems.append("no Conv/Linear layer")
    if problems:
        raise DynfixError(f"model {model.name!r} cannot run on the engine: "
                          + "; ".join(problems))
    return plans, out_name


def loop_counts(p: LayerPlan, cfg: EngineConfig) -> dict[str, int]:
    """The loop counts of group ``p`` on ``cfg``: what the sequencer walks and the cycle
    model counts (no quantization or memory layout needed)."""
    c = p.in_shape[0]
    m_out, ph, pw = p.out_shape
    t_in = _ceil_div(c, cfg.lanes)
    window = p.pool ** 2 * p.kernel[0] * p.kernel[1] * t_in    # issue cycles per result
    return {"t_in": t_in, "t_out": _ceil_div(m_out, cfg.lanes),
            "n_mg": _ceil_div(m_out, cfg.tm), "n_py": ph, "n_px": pw, "pool": p.pool,
            "kh": p.kernel[0], "kw": p.kernel[1],
            "gap": max(0, cfg.wb_words - window)}


def plan_model(model: Model, cfg: EngineConfig) -> list[LayerPlan]:
    """Shape-only compile for analysis: the groups with their loop counts as ``entry``
    (enough for :func:`dynfix.hw.cycle_model.layer_cycles`), the first conv turned into a
    1x1 conv over its windows when ``cfg.im2col`` asks and that pays; no weights are packed,
    so a model as large as VGG16 plans instantly. ``cfg``'s parallelism is not checked."""
    plans, _ = plan_groups(model)
    if cfg.im2col:
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
        wq = im.weights[p.name]
        p.weights = wq.reshape((wq.shape[0],) + p.in_shape[:1] + p.kernel)
        p.biases = im.biases[p.name]
    window = im2col_first(plans[0], n) if cfg.im2col else None
    fmts = [spec.layers[p.name] for p in plans]
    data_bits = max([spec.input_bw] + [f.bw_x for f in fmts])
    sizes = [p.in_shape for p in plans[:1]] + [p.out_shape for p in plans]
    region = max(h * w * _ceil_div(c, n) for c, h, w in sizes)

    entries, w_base, b_base = [], 0, 0
    for i, (p, f) in enumerate(zip(plans, fmts)):
        c, h, w = p.in_shape
        m_out, ph, pw = p.out_shape
        lc = loop_counts(p, cfg)
        t_in, t_out, n_mg = lc["t_in"], lc["t_out"], lc["n_mg"]
        (kh, kw), (sy, sx), pool = p.kernel, p.stride, p.pool
        top, left = p.pads[0], p.pads[1]
        clamp_lo, clamp_hi = p.clamp_range(f.bw_x, f.fl_out)
        in_base, out_base = (i % 2) * region, ((i + 1) % 2) * region
        p.entry = {
            "in_base": in_base, "out_base": out_base,
            "addr0": in_base - (top * w + left) * t_in, "iy0": -top, "ix0": -left,
            "in_c": c, "in_pix": h * w, "in_h": h, "in_w": w, "t_in": t_in,
            "n_mg": n_mg, "n_py": ph, "n_px": pw, "pool": pool, "kh": kh, "kw": kw,
            "cs_py": pool * sy, "cs_px": pool * sx, "cs_dy": sy, "cs_dx": sx,
            "t_out": t_out, "out_pix": ph * pw, "out_c": m_out, "gap": lc["gap"],
            "st_py": pool * sy * w * t_in, "st_px": pool * sx * t_in,
            "st_dy": sy * w * t_in, "st_dx": sx * t_in, "st_ky": w * t_in,
            "w_base": w_base, "b_base": b_base,
            "bias_shift": f.bias_shift,
            "data_shift": clamp_shift(f.data_shift, f.bw_x, f.acc_bits),
            "clamp_lo": clamp_lo, "clamp_hi": clamp_hi, "last": int(i == len(plans) - 1),
        }
        entries.append(p.entry)
        w_base += n_mg * kh * kw * t_in
        b_base += n_mg

    counts = [v for e in entries for k, v in e.items() if FIELDS[k][0] not in OWN_WIDTH_KINDS]
    reach = [abs(e["iy0"]) + e["in_h"] + e["kh"] + e["cs_py"] for e in entries]
    reach += [abs(e["ix0"]) + e["in_w"] + e["kw"] + e["cs_px"] for e in entries]
    cfg = cfg.fitted(
        data_bits=data_bits,
        weight_bits=max(f.bw_w for f in fmts),
        bias_bits=max(f.bw_b for f in fmts),
        acc_bits=max(f.acc_bits for f in fmts),
        fmap_depth=2 * region, weight_depth=max(1, w_base), bias_depth=max(1, b_base),
        prog_depth=len(entries),
        dim_bits=max(abs(v) for v in counts + reach).bit_length(),
    )
    for p in plans:
        check_entry(cfg, p.entry, f"layer {p.name!r}")
    return CompiledModel(cfg, plans, [pack_entry(cfg, e) for e in entries],
                         pack_weights(cfg, plans), pack_biases(cfg, plans), out_name,
                         plans[0].in_shape, window)


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
        m_out, c, kh, kw = p.weights.shape
        t_in, n_mg = _ceil_div(c, n), _ceil_div(m_out, tm)
        w = np.zeros((n_mg * tm, t_in * n, kh, kw), np.int64)
        w[:m_out, :c] = p.weights
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
