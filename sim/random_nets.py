"""Random single- and two-layer networks with hand-picked fixed-point formats, for differential
tests of the engine against :class:`~dynfix.quant.int_model.IntModel`.

A group is a Conv2d or Linear layer, then ReLUs and Clips (ReLU6, or bounds drawn around the
output format's values: finite or one-sided, between representable values, beyond the
format's range, or disjoint from a following ReLU), a max-pool now and then, and more of them
after the pool. On engines with the edge-layer units (``residual=1, depthwise=1``) a conv is
now and then depthwise (groups = channels), and a conv group is often a residual block
instead: a second conv of the same geometry on the same input (the shortcut,
drawn before or after the main conv, with its own activations), then an Add of the two in
either order with a drawn output format (alignment shifts both ways, data shifts that
round, shift left or saturate) and activations after it. There a group after the first
now and then reads the map before it through a nearest-neighbour Resize by 2 (on both axes,
or on one), which the engine reads as a view of that map, and a max pool's window now and
then has other rows than columns (1 x 2 on a map of height 1 too, as a MaxPool1d's).

Every case is a pure function of its seed (:func:`random_case`), so a failure replays from
the seed alone. Weights, biases and inputs are drawn as integers (uniform, small, or at the
ends of their range) and stored as ``q * 2**-fl``, so quantization gives back exactly those
integers. Data shifts are drawn around a typical value and, now and then, far enough left to
saturate everything or right enough to round everything to zero. The input and every map
outside a residual block's Add has an offset now and then: unsigned (``zp = qmin(bw)``) or
any other ``bw``-bit value; those draws come from a second generator of the seed, so the
networks are those drawn before maps had offsets. Now and then a compute layer's weights get a format per output channel
(``ch_fl``: weights and bias ``ch_fl[m]`` bits finer, the data shift as much larger), drawn
from a third generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynfix.errors import DynfixError
from dynfix.hw.compiler import CompiledModel, compile_model
from dynfix.hw.config import BulkStore, EngineConfig, Multiplier
from dynfix.quant import fixed
from dynfix.quant.int_model import IntModel
from dynfix.quant.ir import (Add, AvgPool2d, Clip, Conv2d, Flatten, Layer, Linear, MaxPool2d,
                             Model, ReLU, Resize)
from dynfix.quant.qspec import AddFormat, LayerFormat, QuantSpec

#: Engine configurations the random suite runs on: widths and depths are explicit upper
#: bounds, so every case compiles to the same Verilog and only the memories change.
BOUNDS = dict(data_bits=8, weight_bits=8, bias_bits=28, acc_bits=28, fmap_depth=512,
              weight_depth=512, bias_depth=16, prog_depth=4, dim_bits=8,
              w_share=1,      # random weights equal at every tap (now and then) are shared
              offsets=1,      # unsigned maps (drawn now and then; biases fold -zp * sum(w))
              ch_shift=1)     # per-channel weight formats (drawn now and then)
#: Bounds of the residual stage, the depthwise mode, Resize views and rectangular pools for
#: the configs that have them.
EDGE = dict(residual=1, add_align=8, sc_depth=16, depthwise=1, resize=1, rect_pool=1)
CONFIGS: dict[str, EngineConfig] = {
    "tn9tm3": EngineConfig(tn=9, tm=3, **BOUNDS),      # 9 lanes, 27 multipliers
    "tn4tm4": EngineConfig(tn=4, tm=4, **BOUNDS),      # 4 lanes, 16 multipliers
    # The host streams the first conv's windows when that fills more lanes (compiler).
    "tn9tm3_im2col": EngineConfig(tn=9, tm=3, im2col=1, **BOUNDS),
    # tm does not divide lanes: output groups straddle map words (write-back bursts, gaps).
    "tn3tm4": EngineConfig(tn=3, tm=4, **BOUNDS),      # 3 lanes, 2 words per result
    "tn3tm2": EngineConfig(tn=3, tm=2, **BOUNDS),      # groups at lanes 0, 2, 1
    "tn2tm7": EngineConfig(tn=2, tm=7, **BOUNDS),      # 4 words per result: gaps
    # The residual-add stage and depthwise groups (cases draw residual blocks and depthwise
    # convs): packed and straddling groups.
    # ... with the depthwise window (3 x 3 depthwise convs, drawn often; a lane offset per
    # group: 3 groups per word).
    "tn9tm3_edge": EngineConfig(tn=9, tm=3, dw_window=3, dw_line=16, **BOUNDS, **EDGE),
    "tn3tm4_edge": EngineConfig(tn=3, tm=4, **BOUNDS, **EDGE),
    # iCE40 SPRAM for weights (loaded by the host) and maps (one port: the sequencer holds
    # for the write-back's 2 and 4 words per result, shortcut slots included).
    "tn3tm4_edge_spram": EngineConfig(tn=3, tm=4, w_spram=1, m_spram=1, **BOUNDS,
                                        **EDGE),
    "tn2tm7_spram": EngineConfig(tn=2, tm=7, w_spram=1, m_spram=1, **BOUNDS),
    # Weights from bulk memory (AXI4) through a ring of tiles (hw/weight_ring.py): a
    # narrow bus (6 beats a word) and a small ring make groups wait for their tiles; with
    # single-port SPRAM maps; and with the depthwise window, from a memory with the quad
    # SPI flash's timing (a read command before the first beat, then a nibble per two cycles).
    "tn3tm4_edge_bulk": EngineConfig(tn=3, tm=4, w_bulk=1, bulk_bits=16, w_ring=128,
                                     m_spram=1, **BOUNDS, **EDGE),
    "tn9tm3_edge_bulk": EngineConfig(tn=9, tm=3, w_bulk=1, bulk_bits=32, w_ring=128,
                                     bulk_store=BulkStore.FLASH, dw_window=3, dw_line=16,
                                     **BOUNDS, **EDGE),
    # More products than DSP blocks (ECP5): 5 of the 12 in LUTs (hw/lut_mul.py: lanes 1
    # and 2 of row 2, row 3 whole), the rest on registered MULT18X18D cells (dynfix's
    # cell model); groups straddle words.
    "tn3tm4_lut": EngineConfig(tn=3, tm=4, multiplier=Multiplier.ECP5, lut_products=5, **BOUNDS),
    # Two products per MULT18X18D (hw/ecp5_packed_mul.py; cases draw weights of at most 4
    # bits): rows 0 and 1 packed in every lane, rows 2 and 3 in lane 0, 4 products in LUTs
    # (pair-major: rows 2 and 3 of lanes 1 and 2).
    "tn3tm4_packed": EngineConfig(tn=3, tm=4, multiplier=Multiplier.ECP5_PACKED, lut_products=4,
                                    **{**BOUNDS, "weight_bits": 4}),
}
MAX_HW = 8
MAX_C = 6


@dataclass
class Case:
    """One random network, its formats and its integer inputs."""

    seed: int
    model: Model
    spec: QuantSpec
    xq: np.ndarray                  # N x C x H x W integers in the input format
    summary: str

    def reference(self) -> dict[str, np.ndarray]:
        return IntModel(self.model, self.spec).forward(self.xq)


def _ints(rng: np.random.Generator, shape, bw: int, small: int = 0) -> np.ndarray:
    """Integers of width ``bw``: uniform over the range, small (|q| <= 2**small), or at the
    two ends of the range, chosen at random for the whole array."""
    lo, hi = fixed.qmin(bw), fixed.qmax(bw)
    mode = rng.choice(["uniform", "small", "extreme", "mixed"], p=[0.45, 0.2, 0.15, 0.2])
    if mode == "uniform":
        return rng.integers(lo, hi + 1, size=shape)
    if mode == "small":
        s = 1 << max(0, min(small or bw - 3, bw - 1))
        return np.clip(rng.integers(-s, s + 1, size=shape), lo, hi)
    if mode == "extreme":
        return rng.choice([lo, hi], size=shape)
    u = rng.integers(lo, hi + 1, size=shape)
    ends = rng.choice([lo, hi, 0], size=shape)
    return np.where(rng.random(shape) < 0.3, ends, u)


def _conv_geometry(rng, h: int, w: int, side: int = 0):
    """Kernel (``side`` x ``side`` if given), stride and (asymmetric) padding giving at
    least one output pixel."""
    for _ in range(100):
        kh, kw = (side, side) if side else (int(v) for v in rng.integers(1, 6, size=2))
        sy, sx = (int(v) for v in rng.integers(1, 3, size=2))
        pads = tuple(int(rng.integers(0, min(k - 1, 2) + 1)) for k in (kh, kw, kh, kw))
        oh = (h + pads[0] + pads[2] - kh) // sy + 1
        ow = (w + pads[1] + pads[3] - kw) // sx + 1
        if oh >= 1 and ow >= 1:
            return (kh, kw), (sy, sx), pads, (oh, ow)
    raise DynfixError("no convolution fits")     # unreachable for h, w >= 1


def _avg_pool(rng, name: str, src: str, shape) -> tuple[AvgPool2d, tuple, str]:
    """An average pool the engine runs (2**k cells in every window: 1 x 2, 2 x 1, 2 x 2 or
    4 x 4 kernels, stride 1 or 2, padding counted by the divisor), its output shape and
    description."""
    c, h, w = shape
    kernels = [kk for kk in ((1, 2), (2, 1), (2, 2), (4, 4)) if kk[0] <= h and kk[1] <= w]
    kh, kw = kernels[int(rng.integers(len(kernels)))]
    sy, sx = (int(v) for v in rng.integers(1, 3, size=2))
    pads = tuple(int(rng.integers(0, k)) if rng.random() < 0.4 else 0
                 for k in (kh, kw, kh, kw))
    oh = (h + pads[0] + pads[2] - kh) // sy + 1
    ow = (w + pads[1] + pads[3] - kw) // sx + 1
    layer = AvgPool2d(name, (src,), kernel=(kh, kw), stride=(sy, sx), pads=pads,
                      count_include_pad=True)
    return layer, (c, oh, ow), f" avg{kh}x{kw} s{sy}{sx} p{''.join(map(str, pads))}"


def _format(rng, name: str, bw_in: int, fl_in: int, fan: int, extreme_shift: bool,
            zp_in: int = 0, max_bw_w: int = 8) -> LayerFormat:
    bw_w = int(rng.integers(2, max_bw_w + 1))
    bw_b = int(rng.integers(4, 17))
    bw_x = int(rng.integers(3, 9))
    fl_w = int(rng.integers(-2, 9))
    bias_shift = int(rng.integers(0, 7))
    fl_b = fl_in + fl_w - bias_shift
    acc = fixed.acc_bits(fan, bw_in + int(zp_in != 0), bw_w, bw_b, bias_shift)
    # A typical shift maps a typical accumulator (sqrt(fan) products) onto bw_x bits.
    typical = int(np.ceil(np.log2(max(1.0, np.sqrt(fan) * 2 ** (bw_in + bw_w - 3)))))
    shift = typical - (bw_x - 1) + int(rng.integers(-3, 3))
    if extreme_shift:
        shift = int(rng.choice([-bw_x - 1, -2, acc, acc + 3]))
    return LayerFormat(name, bw_w, fl_w, bw_b, fl_b, bw_in, fl_in, bw_x,
                       fl_in + fl_w - shift, acc, zp_in=zp_in)


def _offset(zrng, bw: int) -> int:
    """A map's offset: unsigned (qmin) now and then, any other bw-bit value (a centred
    range) now and then, else 0 (signed)."""
    u = zrng.random()
    if u < 0.25:
        return fixed.qmin(bw)
    if u < 0.45:
        return int(zrng.integers(fixed.qmin(bw), fixed.qmax(bw) + 1))
    return 0


def _per_channel(crng, fmt: LayerFormat, m: int) -> None:
    """Now and then, per-channel weight formats: offsets 0..3 per output channel."""
    if crng.random() < 0.35:
        fmt.ch_fl = tuple(int(v) for v in crng.integers(0, 4, m))


def _compute(rng, layer_cls, name: str, inp: str, m: int, c: int, kernel, fmt: LayerFormat,
             **kw) -> Layer:
    wq = _ints(rng, (m, c) + tuple(kernel), fmt.bw_w)
    d = fmt.offsets(m)
    w = (wq * 2.0 ** -(fmt.fl_w + d.reshape(-1, 1, 1, 1))).astype(np.float32)
    if layer_cls is Linear:
        w = w.reshape(m, -1)
    bias = None
    if rng.random() < 0.85:
        bq = _ints(rng, (m,), fmt.bw_b)
        bias = (bq * 2.0 ** -(fmt.fl_b + d)).astype(np.float32)
    return layer_cls(name, (inp,), weight=w, bias=bias, **kw)


def _clip(rng, name: str, inp: str, bw: int, fl: int, zp: int) -> tuple[Clip, str]:
    """ReLU6, or a Clip whose bounds are drawn as integers of the format (``bw``, ``fl``), a
    few beyond its range, each moved outwards by 0, 1/4, 1/2 or 3/4 of a step (the integer
    model rounds them back inwards) or made infinite. Every Clip keeps at least one value."""
    if rng.random() < 0.25:
        lo, hi = 0.0, 6.0
    else:
        q = sorted(int(v) for v in rng.integers(fixed.qmin(bw) - 3, fixed.qmax(bw) + 4, 2))
        q = [min(q[0], fixed.qmax(bw)), max(q[1], fixed.qmin(bw))]     # a value in between
        lo, hi = ((v - zp + sign * float(rng.choice([0, 0.25, 0.5, 0.75]))) * 2.0 ** -fl
                  for v, sign in zip(q, (-1, 1)))
        side = rng.choice(["both", "lo", "hi"], p=[0.6, 0.2, 0.2])
        lo, hi = (-np.inf if side == "hi" else lo), (np.inf if side == "lo" else hi)
    return Clip(name, (inp,), lo=lo, hi=hi), f" clip[{lo:g},{hi:g}]"


def _activations(rng, g: int, at: str, inp: str, bw: int, fl: int, p_none: float,
                 zp: int = 0) -> tuple[list[Layer], str, str]:
    """None, a ReLU, a Clip, or both in either order, after ``inp`` (in the group's output
    format): the layers, the last one's name, a description."""
    odds = np.array([0.35, 0.25, 0.1, 0.1])              # ReLU, Clip, both, both reversed
    kind = rng.choice(["", "r", "c", "rc", "cr"], p=[p_none, *(1 - p_none) * odds / odds.sum()])
    layers, desc = [], ""
    for k, what in enumerate(str(kind)):
        name = f"{what}{g}{at}{k}"
        if what == "r":
            layers.append(ReLU(name, (inp,)))
            desc += " relu"
        else:
            clip, d = _clip(rng, name, inp, bw, fl, zp)
            layers.append(clip)
            desc += d
        inp = name
    return layers, inp, desc


def _add_format(rng, name: str, a: tuple[int, int], b: tuple[int, int], extreme: bool
                ) -> AddFormat:
    """An Add's format on inputs (bw, fl) ``a`` and ``b``: output width 3..8 and a data
    shift around the one keeping the larger input's range, now and then extreme."""
    bw_x = int(rng.integers(3, 9))
    fl_sum = max(a[1], b[1])
    top = max(bw + fl_sum - fl for bw, fl in (a, b)) + 1      # bits of the aligned sum
    shift = top - bw_x + int(rng.integers(-2, 3))
    if extreme:
        shift = int(rng.choice([-bw_x - 1, -1, top + 2]))
    return AddFormat(name, (a[0], b[0]), (a[1], b[1]), bw_x, fl_sum - shift)


def _residual_block(rng, g: int, cur: str, shape, bw: int, fl: int, spec: QuantSpec,
                    zp: int, crng, max_bw_w: int = 8
                    ) -> tuple[list[Layer], str, tuple, int, int, str]:
    """A residual block on ``cur``: main conv and shortcut conv of one geometry, each with
    activations, in a random order, an Add (inputs in a random order) and activations."""
    cc, hh, ww = shape
    kernel, stride, pads, (oh, ow) = _conv_geometry(rng, hh, ww)
    m = int(rng.integers(1, MAX_C + 2))
    layers: list[Layer] = []
    outs = {}
    for role in rng.permutation(["l", "s"]):
        name = f"{role}{g}"
        fmt = _format(rng, name, bw, fl, cc * kernel[0] * kernel[1], rng.random() < 0.08, zp,
                      max_bw_w)
        _per_channel(crng, fmt, m)
        spec.layers[name] = fmt
        layers.append(_compute(rng, Conv2d, name, cur, m, cc, kernel, fmt, stride=stride,
                               pads=pads))
        acts, last, _ = _activations(rng, g, role, name, fmt.bw_x, fmt.fl_out, 0.5)
        layers += acts
        outs[role] = (last, fmt.bw_x, fmt.fl_out)
    first, second = (outs["l"], outs["s"]) if rng.random() < 0.5 else (outs["s"], outs["l"])
    add = _add_format(rng, f"add{g}", first[1:], second[1:], rng.random() < 0.12)
    spec.layers[add.name] = add
    layers.append(Add(add.name, (first[0], second[0])))
    acts, last, d = _activations(rng, g, "c", add.name, add.bw_x, add.fl_out, 0.3)
    layers += acts
    desc = (f"res{cc}x{hh}x{ww}->{m} k{kernel[0]}x{kernel[1]} s{stride[0]}{stride[1]} "
            f"fl{first[2]}+{second[2]}->{add.fl_out}/{add.bw_x}b" + d)
    return layers, last, (m, oh, ow), add.bw_x, add.fl_out, desc


def random_case(seed: int, images: int = 2, layers: int | None = None,
                edge: bool = False, window: int = 0, max_bw_w: int = 8) -> Case:
    """A random network of 1 or 2 engine groups (``layers``, default random) and ``images``
    integer inputs, fully determined by ``seed`` (and ``edge``: draw residual blocks and
    depthwise convs; ``window``: most depthwise convs get that square kernel, which the
    engine's depthwise window runs; ``max_bw_w``: the widest weights drawn, 2..8)."""
    rng = np.random.default_rng(seed)
    wrng = np.random.default_rng([seed, 3])        # window kernels (other draws unchanged)
    arng = np.random.default_rng([seed, 4])        # average pools (edge configs)
    n_groups = layers or int(rng.integers(1, 3))
    c, h, w = int(rng.integers(1, MAX_C + 1)), *(int(v) for v in rng.integers(1, MAX_HW + 1,
                                                                               size=2))
    in_bw, in_fl = int(rng.integers(3, 9)), int(rng.integers(-2, 7))
    zrng = np.random.default_rng([seed, 1])        # the map offsets (module docstring)
    crng = np.random.default_rng([seed, 2])        # per-channel weight formats
    rrng = np.random.default_rng([seed, 5])        # Resize views (edge configs)
    prng = np.random.default_rng([seed, 6])        # rectangular max pools (edge configs)
    zp = _offset(zrng, in_bw)
    spec = QuantSpec(f"rand{seed}", "random", "mixed", in_bw, in_fl, input_zp=zp)
    model_layers: list[Layer] = []
    cur, shape, bw, fl = "x", (c, h, w), in_bw, in_fl
    parts = []
    for g in range(n_groups):
        name = f"l{g}"
        view = ""
        if edge and g > 0 and len(shape) == 3 and rrng.random() < 0.4:
            sy, sx = ((2, 2), (1, 2), (2, 1))[int(rrng.choice(3, p=[0.6, 0.2, 0.2]))]
            model_layers.append(Resize(f"up{g}", (cur,), scale=(sy, sx)))
            cur, shape, view = f"up{g}", (shape[0], shape[1] * sy, shape[2] * sx), \
                f"up{sy}x{sx} "
        cc, hh, ww = shape if len(shape) == 3 else (shape[0], 1, 1)
        linear = (g > 0 and len(shape) == 1) or (           # FC after FC
            g == n_groups - 1 and rng.random() < 0.3) or (hh == ww == 1 and rng.random() < 0.5)
        if edge and not linear and rng.random() < 0.5:
            block, cur, shape, bw, fl, desc = _residual_block(rng, g, cur, (cc, hh, ww), bw,
                                                              fl, spec, zp, crng, max_bw_w)
            model_layers += block
            parts.append(view + desc)
            zp = 0
            continue
        m = int(rng.integers(1, MAX_C + 2))
        extreme = rng.random() < 0.12
        if linear:
            if len(shape) == 3:
                model_layers.append(Flatten(f"f{g}", (cur,)))
                cur = f"f{g}"
            fmt = _format(rng, name, bw, fl, cc * hh * ww, extreme, zp, max_bw_w)
            _per_channel(crng, fmt, m)
            model_layers.append(_compute(rng, Linear, name, cur, m, cc, (hh, ww), fmt))
            shape, desc = (m,), f"fc{cc * hh * ww}->{m}"
        else:
            kernel, stride, pads, (oh, ow) = _conv_geometry(rng, hh, ww)
            dw = edge and cc > 1 and rng.random() < 0.4
            dw = dw or bool(window and cc > 1 and wrng.random() < 0.4)
            if dw and window and wrng.random() < 0.7:
                try:
                    kernel, stride, pads, (oh, ow) = _conv_geometry(wrng, hh, ww, window)
                except DynfixError:
                    pass                            # the map is too small for the window
            m, c_g, groups = (cc, 1, cc) if dw else (m, cc, 1)
            fmt = _format(rng, name, bw, fl, c_g * kernel[0] * kernel[1], extreme, zp, max_bw_w)
            _per_channel(crng, fmt, m)
            model_layers.append(_compute(rng, Conv2d, name, cur, m, c_g, kernel, fmt,
                                         stride=stride, pads=pads, groups=groups))
            shape = (m, oh, ow)
            desc = (f"{'dw' if dw else ''}conv{cc}x{hh}x{ww}->{m} k{kernel[0]}x{kernel[1]} "
                    f"s{stride[0]}{stride[1]} p{''.join(map(str, pads))}")
        fmt.zp_out = _offset(zrng, fmt.bw_x)
        spec.layers[name] = fmt
        acts, cur, d = _activations(rng, g, "a", name, fmt.bw_x, fmt.fl_out, 0.25, fmt.zp_out)
        model_layers += acts
        desc += d
        ph = pw = 0
        if not linear and min(shape[1:]) >= 2 and rng.random() < 0.35:
            ph = pw = int(rng.choice([2, 3])) if min(shape[1:]) >= 3 else 2
            if edge and prng.random() < 0.4:        # a window of other rows than columns
                ph = int(prng.choice([r for r in (1, 2, 3) if r != pw and r <= shape[1]]))
        elif edge and not linear and shape[1] == 1 < shape[2] and prng.random() < 0.35:
            ph, pw = 1, (int(prng.choice([2, 3])) if shape[2] >= 3 else 2)  # a MaxPool1d's
        if pw:
            model_layers.append(MaxPool2d(f"p{g}", (cur,), kernel=(ph, pw), stride=(ph, pw)))
            shape = (shape[0], shape[1] // ph, shape[2] // pw)
            acts, cur, d = _activations(rng, g, "b", f"p{g}", fmt.bw_x, fmt.fl_out, 0.6,
                                        fmt.zp_out)
            model_layers += acts
            desc += (f" pool{pw}" if ph == pw else f" pool{ph}x{pw}") + d
        if edge and not linear and min(shape[1:]) >= 2 and arng.random() < 0.5:
            layer, shape, d = _avg_pool(arng, f"ap{g}", cur, shape)
            model_layers.append(layer)
            cur = layer.name
            if arng.random() < 0.3:
                model_layers.append(ReLU(f"ar{g}", (cur,)))
                cur, d = f"ar{g}", d + " relu"
            desc += d
        desc += (f" sh{fmt.data_shift}{'+ch' if fmt.ch_fl else ''} bw{fmt.bw_w}/{fmt.bw_x}"
                 + (f" zp{fmt.zp_out}" if fmt.zp_out else ""))
        parts.append(view + desc)
        bw, fl, zp = fmt.bw_x, fmt.fl_out, fmt.zp_out
    model = Model(f"rand{seed}", "x", (c, h, w), model_layers)
    xq = _ints(rng, (images, c, h, w), in_bw)
    return Case(seed, model, spec, xq.astype(np.int64),
                f"seed {seed}: in {c}x{h}x{w}/{in_bw}b"
                + (f" zp{spec.input_zp}" if spec.input_zp else "") + "; "
                + "; ".join(parts))


def case_for(seed: int, cfg: EngineConfig, images: int = 2) -> Case:
    """The case of ``seed`` drawn for what ``cfg`` runs: residual blocks and depthwise convs
    with ``residual``, its window's kernels, weights no wider than its bound."""
    return random_case(seed, images, edge=bool(cfg.residual), window=cfg.dw_window,
                       max_bw_w=min(8, cfg.weight_bits or 8))


def fitting_case(seed: int, cfg: EngineConfig, images: int = 2) -> tuple[Case, CompiledModel]:
    """The case of ``seed`` compiled for ``cfg``; if it does not fit the config's bounds,
    the next seeds are tried (deterministically), so every returned case has its own seed."""
    for s in range(seed, seed + 1000):
        case = case_for(s, cfg, images)
        try:
            return case, compile_model(case.model, case.spec, cfg)
        except DynfixError:
            continue
    raise DynfixError(f"no random case from seed {seed} fits {cfg}")
