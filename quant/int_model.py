"""The bit-exact integer reference model (the "golden model") of a quantized network.

:class:`IntModel` runs a :class:`~dynfix.quant.ir.Model` under a
:class:`~dynfix.quant.qspec.QuantSpec` on int64 arrays, exactly as ``docs/arithmetic.md``
defines: exact products, an accumulator of ``acc_bits`` bits, the bias shifted left into it,
the data shift rounded (half up, or per layer half to even) and saturated, then ReLU / Clip /
pooling / flatten on the integers; an Add aligns its two inputs to the finer binary point,
adds exactly and requantizes the sum the same way. It walks the model's DAG in topological
order. The hardware is tested against :meth:`IntModel.forward` bit for bit.

The integer model is defined on the *lowered* graph (:func:`~dynfix.quant.lower.lower`): a
global average pool followed by Flatten and Linear is folded into that Linear, so it costs no
rounding of its own. :func:`with_params` (and so :class:`IntModel`) lowers the model first; a
quantization spec's formats and adjusted parameters are those of the lowered graph.

Layer-level functions (:func:`accumulate`, :func:`add_sum`, :func:`narrow`,
:func:`apply_plain`) are public so the quantizer's search runs the very same arithmetic while
it picks fractional lengths.

Speed: when ``acc_bits <= 53`` the dot products run in float64 BLAS. Every partial sum of
integer products is then an integer below 2**53 in magnitude (``acc_bits`` bounds the sum of
the absolute products), so float64 represents each one exactly and the result is bit-exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from dynfix.errors import DynfixError
from . import fixed
from .float_model import check_input
from .ir import Clip, Layer, Model
from .layers.base import bias_view
from .lower import lower
from .qspec import AddFormat, Format, LayerFormat, QuantSpec

EXACT_FLOAT_BITS = 53
#: Largest per-channel weight fl offset (``LayerFormat.ch_fl``) a spec may hold.
MAX_CH_FL = 24
#: A channel whose largest weight is more than this many binades below the layer's largest
#: is dead (float32's significand: below the resolution of the layer's largest weight).
DEAD_BINADES = 24


def live_channels(rows_max: np.ndarray) -> np.ndarray:
    """Which channels are live, given each channel's largest weight magnitude: those within
    :data:`DEAD_BINADES` of the largest. Trained networks have dead channels (a folded
    BatchNorm with gamma near 0 leaves weights around 1e-30); a format or a scale derived
    from such a channel's own range inflates whatever shares it (its bias, the next layer's
    weights), so they get the layer's format and are left alone."""
    r = np.abs(np.asarray(rows_max, np.float64))
    top = float(r.max()) if r.size else 0.0
    return r > np.ldexp(top, -DEAD_BINADES)


def is_compute(layer: Layer) -> bool:
    """Layers with weights and a fixed-point format of their own (``layer.compute``)."""
    return layer.compute


def has_format(layer: Layer) -> bool:
    """Layers whose output gets a format of its own: the compute layers and Add (every
    other layer keeps its input's format)."""
    return layer.formatted


def is_sum(layer: Layer) -> bool:
    """A layer with a format of its own and no weights (an Add): its format is an
    :class:`~dynfix.quant.qspec.AddFormat`."""
    return layer.formatted and not layer.compute


def fan_in(layer: Layer) -> int:
    """Number of products summed into one accumulator."""
    return layer.fan_in


def weight_array(layer: Layer) -> np.ndarray:
    """The float array quantized with (bw_w, fl_w): weight, or an Affine's scale."""
    return layer.weight_array()


def bias_array(layer: Layer) -> np.ndarray:
    """The float bias (an Affine's shift); zeros when the layer has none."""
    return layer.bias_array()


def row_fls(fl_w: int, ch_fl: tuple[int, ...], w: np.ndarray) -> np.ndarray:
    """The fl of every output channel's weights, ``fl_w + ch_fl[m]`` (``ch_fl`` empty: all
    ``fl_w``), shaped to broadcast over ``w`` (M, ...)."""
    d = np.asarray(ch_fl, np.int64) if ch_fl else np.zeros(len(w), np.int64)
    return (fl_w + d).reshape((-1,) + (1,) * (w.ndim - 1))


def weight_integers(w: np.ndarray, fmt: LayerFormat) -> np.ndarray:
    """Float weights (an Affine's scale) -> integers at each channel's weight fl."""
    return fixed.quantize(w, fmt.bw_w, row_fls(fmt.fl_w, fmt.ch_fl, w))


def bias_integers(b: np.ndarray, fmt: LayerFormat) -> np.ndarray:
    """Float bias -> integers at each channel's bias fl, ``fl_b + ch_fl[m]``."""
    return fixed.quantize(b, fmt.bw_b, fmt.fl_b + fmt.offsets(len(b)))


def accumulate(layer: Layer, xq: np.ndarray, wq: np.ndarray, bq: np.ndarray, fmt: LayerFormat
               ) -> np.ndarray:
    """The accumulator ``sum (q_x - zp_in)*q_w + (q_b << bias_shift)`` at binary point
    fl_in + fl_w (zero padding pads ``q_x - zp_in`` with 0: the real value 0)."""
    exact = fmt.acc_bits <= EXACT_FLOAT_BITS
    dt = np.float64 if exact else np.int64
    x, w = (np.asarray(xq, np.int64) - fmt.zp_in).astype(dt), wq.astype(dt)
    acc = layer.products(x, w)
    if exact:
        acc = np.rint(acc).astype(np.int64)
    bias = bq.astype(np.int64) << fmt.bias_shift
    return acc + bias_view(bias, acc.ndim)


def add_sum(a: np.ndarray, b: np.ndarray, fmt: AddFormat) -> np.ndarray:
    """An Add's exact sum at binary point ``fl_sum``: each input shifted left onto it."""
    sa, sb = fmt.align
    za, zb = fmt.zp_in
    return ((np.asarray(a, np.int64) - za) << sa) + ((np.asarray(b, np.int64) - zb) << sb)


def shifts(acc: np.ndarray, fmt: Format) -> int | np.ndarray:
    """The data shift of ``acc`` (N x channels x ...): one number, or with per-channel
    weight formats one per channel shaped to broadcast over ``acc``."""
    if isinstance(fmt, LayerFormat) and fmt.ch_fl:
        return fmt.data_shifts(acc.shape[1]).reshape((1, -1) + (1,) * (acc.ndim - 2))
    return fmt.data_shift


def narrow(acc: np.ndarray, fmt: Format) -> np.ndarray:
    """The data shift: round by ``data_shift`` (left if negative; per channel with
    ``ch_fl``) half up or, with ``fmt.rounding`` half_even, half to even; add the output
    offset ``zp_out``, saturate to bw_x."""
    return fixed.requantize(acc, shifts(acc, fmt), fmt.bw_x, fmt.zp_out, fmt.rounding)


def saturation_count(acc: np.ndarray, fmt: Format) -> int:
    """How many accumulator values the data shift saturates (calibration statistic)."""
    acc = np.asarray(acc, np.int64)
    s = np.asarray(shifts(acc, fmt))
    lo, hi = fixed.qmin(fmt.bw_x) - fmt.zp_out, fixed.qmax(fmt.bw_x) - fmt.zp_out
    # acc << k saturates iff acc is outside [ceil(lo / 2^k), floor(hi / 2^k)]
    k = np.maximum(-s, 0)
    left = (acc < -((-lo) >> k)) | (acc > (hi >> k))
    r = np.maximum(s, 0)
    biased = acc + np.where(r > 0, np.left_shift(1, np.maximum(r - 1, 0)), 0)
    v = biased >> r
    if fmt.rounding == fixed.HALF_EVEN:
        v = fixed.to_even(v, biased, r)
    right = (v < lo) | (v > hi)
    return int(np.count_nonzero(np.where(s < 0, left, right)))


@dataclass(frozen=True)
class MapFormat:
    """Format of a feature map: ``bw``-bit integers ``q`` with fractional length ``fl`` and
    offset ``zp`` (the value is ``(q - zp) * 2**-fl``; ``zp = qmin(bw)``: unsigned).

    ``rounding`` is the rounding mode of the layer that wrote the map (half up for the
    model input): an average pool, which keeps the map's format, rounds its mean so too.
    It is not part of the format's identity (maps joined or added need not share it)."""

    bw: int
    fl: int
    zp: int = 0
    rounding: str = field(default=fixed.HALF_UP, compare=False)


def clip_bounds(layer: Clip, fmt: MapFormat) -> tuple[int, int]:
    """A Clip's integer bounds in its input's format (:meth:`Clip.bounds`)."""
    return layer.bounds(fmt)


def apply_plain(layer: Layer, x: np.ndarray, fmt: MapFormat) -> np.ndarray:
    """A layer without a format of its own, on integers in format ``fmt``; keeps the
    format (:meth:`~dynfix.quant.layers.Layer.forward_int`). Softmax is the identity here:
    it runs on the host in float and keeps the class (:meth:`IntModel.dequantize` applies
    it)."""
    return layer.forward_int(x, fmt)


def plain_input(layer: Layer, tensors: dict[str, np.ndarray]) -> np.ndarray | list:
    """What :func:`apply_plain` takes for ``layer`` from the computed ``tensors``: its one
    input, or the list of the maps a layer reading several joins (a Concat)."""
    if len(layer.inputs) == 1:
        return tensors[layer.inputs[0]]
    return [tensors[t] for t in layer.inputs]


def check_listed(model: Model, names) -> None:
    """The spec lists exactly the layers with a format of their own (:func:`has_format`)."""
    wanted = [layer.name for layer in model.layers if has_format(layer)]
    missing = [n for n in wanted if n not in names]
    extra = [n for n in names if n not in wanted]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no format for layer(s) {', '.join(missing)}")
        if extra:
            parts.append(f"unknown layer(s) {', '.join(extra)}")
        raise DynfixError(f"quantization spec does not match model {model.name!r}: "
                          f"{'; '.join(parts)}")


def check_add(f: AddFormat, ins: list[MapFormat], where: str) -> None:
    """An Add's format: widths, input formats matching the maps it reads, sum width."""
    fixed.check_bits(f.bw_x, f"{where}: bw_x")
    have = [MapFormat(b, fl, z) for b, fl, z in zip(f.bw_in, f.fl_in, f.zp_in)]
    if have != ins:
        raise DynfixError(f"{where}: input formats (bw, fl, zp) "
                          f"{[(m.bw, m.fl, m.zp) for m in have]} do not match the maps it "
                          f"reads {[(m.bw, m.fl, m.zp) for m in ins]}")
    check_zp(f.zp_out, f.bw_x, where)
    if f.sum_bits > fixed.MAX_ACC_BITS:
        raise DynfixError(f"{where}: aligning inputs at fl {f.fl_in[0]} and {f.fl_in[1]} "
                          f"needs a {f.sum_bits}-bit sum; at most {fixed.MAX_ACC_BITS} are "
                          f"supported")


def check_zp(zp: int, bw: int, where: str) -> None:
    """A map's offset is a ``bw``-bit integer: 0 (signed), ``qmin(bw)`` (unsigned) or any
    other (a range centred elsewhere)."""
    if not fixed.qmin(bw) <= zp <= fixed.qmax(bw):
        raise DynfixError(f"{where}: offset zp={zp} is outside the {bw}-bit range "
                          f"{fixed.qmin(bw)}..{fixed.qmax(bw)}")


def data_bits(f: LayerFormat) -> int:
    """Width of the values a compute layer multiplies, ``q - zp_in``: one more bit than the
    map for an unsigned map (0 .. 2**bw - 1)."""
    return f.bw_in + int(f.zp_in != 0)


def check_spec(model: Model, spec: QuantSpec) -> dict[str, MapFormat]:
    """Validate ``spec`` against ``model``; returns every tensor's format by name.

    Checks: exactly the compute and Add layers are listed, each with the right kind of
    format; widths in 2..32; each layer's input formats equal those of the maps it reads;
    the bias shift is >= 0 and the accumulator width holds the layer's worst case (and at
    most ``fixed.MAX_ACC_BITS``), as does an Add's sum; every Clip keeps at least one value.
    """
    check_listed(model, list(spec.layers))
    fmts = {model.input_name: MapFormat(fixed.check_bits(spec.input_bw, "input bit width"),
                                        int(spec.input_fl), int(spec.input_zp))}
    check_zp(spec.input_zp, spec.input_bw, "quantization spec, input")
    for layer in model.layers:
        ins = [fmts[t] for t in layer.inputs]
        cur = ins[0]
        where = f"quantization spec, layer {layer.name!r}"
        f = spec.layers.get(layer.name)
        if f is not None and isinstance(f, AddFormat) != is_sum(layer):
            kind = "an Add's" if isinstance(f, AddFormat) else "a compute layer's"
            raise DynfixError(f"{where}: the layer is {layer.op!r} but its format is {kind}")
        if is_sum(layer):
            check_add(f, ins, where)
            fixed.check_rounding(f.rounding, f"{where}: rounding")
            cur = MapFormat(f.bw_x, f.fl_out, f.zp_out, f.rounding)
        elif not is_compute(layer):
            if any(m != cur for m in ins):
                raise DynfixError(f"{where}: the maps it joins have formats (bw, fl, zp) "
                                  f"{[(m.bw, m.fl, m.zp) for m in ins]}; they must share "
                                  f"one (a Concat's inputs are one map)")
            layer.check_format(cur)
        else:
            for key in ("bw_w", "bw_b", "bw_x", "bw_in"):
                fixed.check_bits(getattr(f, key), f"{where}: {key}")
            if (f.bw_in, f.fl_in, f.zp_in) != (cur.bw, cur.fl, cur.zp):
                raise DynfixError(f"{where}: input format (bw_in={f.bw_in}, fl_in={f.fl_in}, "
                                  f"zp_in={f.zp_in}) does not match the map it reads "
                                  f"(bw={cur.bw}, fl={cur.fl}, zp={cur.zp})")
            check_zp(f.zp_out, f.bw_x, where)
            if f.bias_shift < 0:
                raise DynfixError(f"{where}: fl_b={f.fl_b} exceeds fl_in + fl_w = "
                                  f"{f.fl_in + f.fl_w} (the bias shift must be >= 0)")
            channels = int(weight_array(layer).shape[0])
            if f.ch_fl and (len(f.ch_fl) != channels or min(f.ch_fl) < 0
                            or max(f.ch_fl) > MAX_CH_FL):
                raise DynfixError(f"{where}: ch_fl must list {channels} integers in "
                                  f"0..{MAX_CH_FL} (one per output channel), got "
                                  f"{len(f.ch_fl)} in {min(f.ch_fl)}..{max(f.ch_fl)}")
            need = fixed.acc_bits(fan_in(layer), data_bits(f), f.bw_w, f.bw_b, f.bias_shift)
            if f.acc_bits < need:
                raise DynfixError(f"{where}: acc_bits={f.acc_bits} can overflow; this layer "
                                  f"needs {need}")
            if f.acc_bits > fixed.MAX_ACC_BITS:
                raise DynfixError(f"{where}: acc_bits={f.acc_bits} exceeds "
                                  f"{fixed.MAX_ACC_BITS}")
            fixed.check_rounding(f.rounding, f"{where}: rounding")
            cur = MapFormat(f.bw_x, f.fl_out, f.zp_out, f.rounding)
        fmts[layer.name] = cur
    return fmts


def with_params(model: Model, spec: QuantSpec) -> Model:
    """The model the spec's integers are computed on: :func:`~dynfix.quant.lower.lower` of
    ``model`` with the spec's adjusted parameters in place of its own (the same object when
    nothing is folded and the spec has none). Lowering comes first because the parameters
    were chosen on the lowered graph (a folded Linear's weight is ``(M, C*H*W)``)."""
    model = lower(model)
    if not spec.params:
        return model
    layers = [replace(layer, **_values(layer, spec.params[layer.name]))
              if layer.name in spec.params else layer for layer in model.layers]
    return model.with_layers(layers)


def _values(layer: Layer, params: dict[str, np.ndarray]) -> dict:
    """A layer's adjusted parameters as its fields hold them (a Clip's bounds: floats)."""
    return {k: float(v) if k in layer.scalars else v for k, v in params.items()}


class IntModel:
    """Integer model of ``model`` quantized by ``spec`` (see the module docstring).

    ``self.model`` is the lowered model the integers run on (``with_params(model, spec)``):
    a folded average pool has no tensor of its own in the trace or in ``formats``.
    Attributes: ``weights`` / ``biases`` (int64 by layer name, in (bw_w, fl_w) / (bw_b, fl_b);
    zero biases for layers without one), ``formats`` (every feature map's
    :class:`MapFormat` by name, the input included), ``output_name``.
    """

    def __init__(self, model: Model, spec: QuantSpec):
        model = with_params(model, spec)        # lowered; a spec's adjusted weights win
        self.model = model
        self.spec = spec
        self.formats = check_spec(model, spec)
        self.weights: dict[str, np.ndarray] = {}
        self.biases: dict[str, np.ndarray] = {}
        for layer in model.layers:
            if is_compute(layer):
                f = spec.layers[layer.name]
                self.weights[layer.name] = weight_integers(weight_array(layer), f)
                self.biases[layer.name] = bias_integers(bias_array(layer), f)
        self.output_name = model.layers[-1].name

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float input batch (N x input_shape, or one sample) -> int64 in the input format."""
        x = check_input(self.model, x)
        return fixed.quantize(x * self.spec.input_scale, self.spec.input_bw,
                              self.spec.input_fl, self.spec.input_zp)

    def forward(self, xq: np.ndarray) -> dict[str, np.ndarray]:
        """Integer trace: the input and every layer's int64 output, keyed by tensor name."""
        xq = np.asarray(xq)
        if xq.dtype.kind not in "iu":
            raise DynfixError(f"integer model input has dtype {xq.dtype}; quantize it first "
                              f"(quantize_input)")
        want = tuple(self.model.input_shape)
        if xq.ndim != len(want) + 1 or tuple(xq.shape[1:]) != want:
            raise DynfixError(f"integer input has shape {tuple(xq.shape)}; expected "
                              f"N x {' x '.join(map(str, want))}")
        trace = {self.model.input_name: xq.astype(np.int64)}
        for layer in self.model.layers:
            x = trace[layer.inputs[0]]
            if is_sum(layer):
                f = self.spec.layers[layer.name]
                y = narrow(add_sum(x, trace[layer.inputs[1]], f), f)
            elif is_compute(layer):
                f = self.spec.layers[layer.name]
                y = narrow(accumulate(layer, x, self.weights[layer.name],
                                      self.biases[layer.name], f), f)
            else:
                y = apply_plain(layer, plain_input(layer, trace),
                                self.formats[layer.inputs[0]])
            trace[layer.name] = y
        return trace

    def logits(self, x: np.ndarray, batch: int = 1024) -> np.ndarray:
        """Float inputs -> the last layer's int64 output, in chunks of ``batch``."""
        xq = self.quantize_input(x)
        return np.concatenate([self.forward(xq[i:i + batch])[self.output_name]
                               for i in range(0, xq.shape[0], batch)])

    def dequantize(self, name: str, q: np.ndarray) -> np.ndarray:
        """Integers of feature map ``name`` -> float64 (softmax applied on the host)."""
        if name not in self.formats:
            raise DynfixError(f"model {self.model.name!r} has no feature map {name!r}")
        v = fixed.dequantize(q, self.formats[name].fl, self.formats[name].zp)
        if name == self.model.input_name:                # the host's scales (quant/fill.py)
            v /= self.spec.input_scale
        elif name == self.output_name or (self.model.layers[-1].host
                                          and name == self.model.layers[-1].inputs[0]):
            v /= self.spec.output_scale
        if name != self.model.input_name and self.model.layer(name).host:
            v = self.model.layer(name).forward(v)
        return v
