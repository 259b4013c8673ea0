"""The bit-exact integer reference model (the "golden model") of a quantized network.

:class:`IntModel` runs a :class:`~dynfix.quant.ir.Model` under a
:class:`~dynfix.quant.qspec.QuantSpec` on int64 arrays, exactly as ``docs/arithmetic.md``
defines: exact products, an accumulator of ``acc_bits`` bits, the bias shifted left into it,
the data shift rounded half up and saturated, then ReLU / Clip / pooling / flatten on the
integers; an Add aligns its two inputs to the finer binary point, adds exactly and
requantizes the sum the same way. It walks the model's DAG in topological order. The
hardware is tested against :meth:`IntModel.forward` bit for bit.

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

from dataclasses import dataclass, replace

import numpy as np

from dynfix.errors import DynfixError
from . import fixed
from .float_model import check_input, conv2d, pool_divisor, windows
from .ir import (Add, Affine, AvgPool2d, Clip, Conv2d, Flatten, GlobalAvgPool, Layer, Linear,
                 MaxPool2d, Model, ReLU, Softmax)
from .lower import lower
from .qspec import AddFormat, Format, LayerFormat, QuantSpec

COMPUTE = (Conv2d, Linear, Affine)
EXACT_FLOAT_BITS = 53


def is_compute(layer: Layer) -> bool:
    """Conv2d, Linear and Affine carry weights and a fixed-point format of their own."""
    return isinstance(layer, COMPUTE)


def has_format(layer: Layer) -> bool:
    """Layers whose output gets a format of its own: the compute layers and Add (every
    other layer keeps its input's format)."""
    return isinstance(layer, COMPUTE + (Add,))


def fan_in(layer: Layer) -> int:
    """Number of products summed into one accumulator."""
    if isinstance(layer, Conv2d):
        return layer.fan_in                 # (C // groups) * kh * kw
    if isinstance(layer, Linear):
        return int(layer.weight.shape[1])
    return 1  # Affine: one product per output


def weight_array(layer: Layer) -> np.ndarray:
    """The float array quantized with (bw_w, fl_w): weight, or an Affine's scale."""
    return layer.scale if isinstance(layer, Affine) else layer.weight


def bias_array(layer: Layer) -> np.ndarray:
    """The float bias (an Affine's shift); zeros when the layer has none."""
    b = layer.shift if isinstance(layer, Affine) else layer.bias
    if b is None:
        n = layer.weight.shape[0]
        return np.zeros(n, np.float32)
    return b


def _bias_view(layer: Layer, b: np.ndarray, ndim: int) -> np.ndarray:
    """Broadcast a per-channel vector over an (N, C, ...) array."""
    return b.reshape((1, -1) + (1,) * (ndim - 2))


def accumulate(layer: Layer, xq: np.ndarray, wq: np.ndarray, bq: np.ndarray, fmt: LayerFormat
               ) -> np.ndarray:
    """The accumulator ``sum q_x*q_w + (q_b << bias_shift)`` at binary point fl_in + fl_w."""
    exact = fmt.acc_bits <= EXACT_FLOAT_BITS
    dt = np.float64 if exact else np.int64
    x, w = xq.astype(dt), wq.astype(dt)
    if isinstance(layer, Conv2d):
        acc = conv2d(x, w, layer.stride, layer.pads, layer.dilation, layer.groups)
    elif isinstance(layer, Linear):
        acc = x @ w.T
    else:
        acc = x * _bias_view(layer, w, x.ndim)
    if exact:
        acc = np.rint(acc).astype(np.int64)
    bias = bq.astype(np.int64) << fmt.bias_shift
    if isinstance(layer, Linear):
        return acc + bias
    return acc + _bias_view(layer, bias, acc.ndim)


def add_sum(a: np.ndarray, b: np.ndarray, fmt: AddFormat) -> np.ndarray:
    """An Add's exact sum at binary point ``fl_sum``: each input shifted left onto it."""
    sa, sb = fmt.align
    return (np.asarray(a, np.int64) << sa) + (np.asarray(b, np.int64) << sb)


def narrow(acc: np.ndarray, fmt: Format) -> np.ndarray:
    """The data shift: round half up by ``data_shift`` (left if negative), saturate to bw_x."""
    return fixed.requantize(acc, fmt.data_shift, fmt.bw_x)


def saturation_count(acc: np.ndarray, fmt: Format) -> int:
    """How many accumulator values the data shift saturates (calibration statistic)."""
    s, lo, hi = fmt.data_shift, fixed.qmin(fmt.bw_x), fixed.qmax(fmt.bw_x)
    if s < 0:  # acc << k saturates iff acc is outside [ceil(lo / 2^k), floor(hi / 2^k)]
        lo, hi = -((-lo) >> -s), hi >> -s
    else:
        acc = fixed.shift_round(acc, s)
    return int(np.count_nonzero((acc < lo) | (acc > hi)))


def avg_round(s: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """Mean rounded half up: ``floor((2*s + n) / (2*n))`` (arithmetic.md, average pooling).
    Only pools that :func:`~dynfix.quant.lower.lower` does not fold get here."""
    n = np.asarray(n, dtype=np.int64)
    return (2 * s + n) // (2 * n)


@dataclass(frozen=True)
class MapFormat:
    """Format of a feature map: ``bw``-bit integers with fractional length ``fl``."""

    bw: int
    fl: int


def clip_bounds(layer: Clip, fmt: MapFormat) -> tuple[int, int]:
    """A Clip's integer bounds in its input's format: ``[max(qmin, ceil(lo * 2^fl)),
    min(qmax, floor(hi * 2^fl))]``, the representable values inside [lo, hi]."""
    lo = max(float(fixed.qmin(fmt.bw)), float(np.ceil(np.ldexp(float(layer.lo), fmt.fl))))
    hi = min(float(fixed.qmax(fmt.bw)), float(np.floor(np.ldexp(float(layer.hi), fmt.fl))))
    if lo > hi:
        raise DynfixError(f"layer {layer.name!r} (Clip): no {fmt.bw}-bit value at fl {fmt.fl} "
                          f"lies in [{layer.lo}, {layer.hi}]")
    return int(lo), int(hi)


def apply_plain(layer: Layer, x: np.ndarray, fmt: MapFormat) -> np.ndarray:
    """A parameter-free single-input layer on integers in format ``fmt``; keeps the format.

    Softmax is the identity here: it runs on the host in float and keeps the class
    (:meth:`IntModel.dequantize` applies it).
    """
    if isinstance(layer, ReLU):
        return np.maximum(x, 0)
    if isinstance(layer, Clip):
        return np.clip(x, *clip_bounds(layer, fmt))
    if isinstance(layer, AvgPool2d):
        out_hw = layer.out_shape[1:]
        s = windows(x, layer.kernel, layer.stride, layer.pads, 0, out_hw=out_hw)
        return avg_round(s.sum(axis=(-1, -2)), pool_divisor(layer, x.shape[2:], out_hw))
    if isinstance(layer, MaxPool2d):
        lo = np.iinfo(np.int64).min
        return windows(x, layer.kernel, layer.stride, layer.pads, lo,
                       out_hw=layer.out_shape[1:]).max(axis=(-1, -2))
    if isinstance(layer, GlobalAvgPool):
        n = x.shape[2] * x.shape[3]
        return avg_round(x.sum(axis=(2, 3), keepdims=True), n)
    if isinstance(layer, Flatten):
        return x.reshape(x.shape[0], -1)
    if isinstance(layer, Softmax):
        return x
    raise DynfixError(f"layer {layer.name!r}: op {layer.op!r} has no integer implementation")


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
    have = [MapFormat(b, fl) for b, fl in zip(f.bw_in, f.fl_in)]
    if have != ins:
        raise DynfixError(f"{where}: input formats (bw, fl) {[(m.bw, m.fl) for m in have]} "
                          f"do not match the maps it reads {[(m.bw, m.fl) for m in ins]}")
    if f.sum_bits > fixed.MAX_ACC_BITS:
        raise DynfixError(f"{where}: aligning inputs at fl {f.fl_in[0]} and {f.fl_in[1]} "
                          f"needs a {f.sum_bits}-bit sum; at most {fixed.MAX_ACC_BITS} are "
                          f"supported")


def check_spec(model: Model, spec: QuantSpec) -> dict[str, MapFormat]:
    """Validate ``spec`` against ``model``; returns every tensor's format by name.

    Checks: exactly the compute and Add layers are listed, each with the right kind of
    format; widths in 2..32; each layer's input formats equal those of the maps it reads;
    the bias shift is >= 0 and the accumulator width holds the layer's worst case (and at
    most ``fixed.MAX_ACC_BITS``), as does an Add's sum; every Clip keeps at least one value.
    """
    check_listed(model, list(spec.layers))
    fmts = {model.input_name: MapFormat(fixed.check_bits(spec.input_bw, "input bit width"),
                                        int(spec.input_fl))}
    for layer in model.layers:
        ins = [fmts[t] for t in layer.inputs]
        cur = ins[0]
        where = f"quantization spec, layer {layer.name!r}"
        f = spec.layers.get(layer.name)
        if f is not None and isinstance(f, AddFormat) != isinstance(layer, Add):
            kind = "an Add's" if isinstance(f, AddFormat) else "a compute layer's"
            raise DynfixError(f"{where}: the layer is {layer.op!r} but its format is {kind}")
        if isinstance(layer, Add):
            check_add(f, ins, where)
            cur = MapFormat(f.bw_x, f.fl_out)
        elif isinstance(layer, Clip):
            clip_bounds(layer, cur)
        elif is_compute(layer):
            for key in ("bw_w", "bw_b", "bw_x", "bw_in"):
                fixed.check_bits(getattr(f, key), f"{where}: {key}")
            if (f.bw_in, f.fl_in) != (cur.bw, cur.fl):
                raise DynfixError(f"{where}: input format (bw_in={f.bw_in}, fl_in={f.fl_in}) "
                                  f"does not match the map it reads (bw={cur.bw}, "
                                  f"fl={cur.fl})")
            if f.bias_shift < 0:
                raise DynfixError(f"{where}: fl_b={f.fl_b} exceeds fl_in + fl_w = "
                                  f"{f.fl_in + f.fl_w} (the bias shift must be >= 0)")
            need = fixed.acc_bits(fan_in(layer), f.bw_in, f.bw_w, f.bw_b, f.bias_shift)
            if f.acc_bits < need:
                raise DynfixError(f"{where}: acc_bits={f.acc_bits} can overflow; this layer "
                                  f"needs {need}")
            if f.acc_bits > fixed.MAX_ACC_BITS:
                raise DynfixError(f"{where}: acc_bits={f.acc_bits} exceeds "
                                  f"{fixed.MAX_ACC_BITS}")
            cur = MapFormat(f.bw_x, f.fl_out)
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
    layers = [replace(layer, **spec.params[layer.name]) if layer.name in spec.params
              else layer for layer in model.layers]
    return Model(model.name, model.input_name, model.input_shape, layers)


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
                self.weights[layer.name] = fixed.quantize(weight_array(layer), f.bw_w, f.fl_w)
                self.biases[layer.name] = fixed.quantize(bias_array(layer), f.bw_b, f.fl_b)
        self.output_name = model.layers[-1].name

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float input batch (N x input_shape, or one sample) -> int64 in the input format."""
        x = check_input(self.model, x)
        return fixed.quantize(x, self.spec.input_bw, self.spec.input_fl)

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
            if isinstance(layer, Add):
                f = self.spec.layers[layer.name]
                y = narrow(add_sum(x, trace[layer.inputs[1]], f), f)
            elif is_compute(layer):
                f = self.spec.layers[layer.name]
                y = narrow(accumulate(layer, x, self.weights[layer.name],
                                      self.biases[layer.name], f), f)
            else:
                y = apply_plain(layer, x, self.formats[layer.inputs[0]])
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
        v = fixed.dequantize(q, self.formats[name].fl)
        if name != self.model.input_name and isinstance(self.model.layer(name), Softmax):
            e = np.exp(v - v.max(axis=-1, keepdims=True))
            v = e / e.sum(axis=-1, keepdims=True)
        return v
