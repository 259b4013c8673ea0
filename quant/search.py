"""Choosing fractional lengths: the greedy two-phase search and its two baselines.

One code path, three ways to pick an ``fl`` for a tensor (method.md section 2):

* ``greedy`` (default): start at the overflow-free ``fl`` for the tensor's largest magnitude,
  then keep the ``fl`` in a small window around it that minimizes the L1 error. Weights and
  biases are compared with their float values (weight phase); a feature map is compared
  with the float model's on the calibration batch, computed by the partly-quantized model
  (data phase, layer by layer in topological order, every earlier choice already fixed).
  The layers that make a new format are the compute layers and the Adds; an Add picks its
  ``fl_out`` the same way, given the formats of its two inputs.
* ``range`` (Ristretto): integer length ``il = ceil(log2 max|v|)``, plus one for weights and
  biases, ``fl = bw - il``; no error search. As in Ristretto's code, activations get no sign
  bit, so their largest values may saturate.
* ``static``: the ``range`` rule applied once to the whole network: one ``fl`` for all
  feature maps (the input included), one for all weights and one for all biases of a given
  width.

Where a feature map is compared: at the *stored* map, i.e. after the layer's data shift and
its *tail*, the parameter-free layers that follow it (ReLU, Clip, pooling, flatten) up to
the next layer with a format or the first tensor read by more than one layer; that is what
the next layers read and what the engine writes to memory, and negatives removed by a ReLU
cost nothing there. A trailing Softmax is excluded (the logits are compared). SQNR (dB) is
measured at the same place; the saturation count is taken at the data shift itself (so it
includes negatives that a following ReLU clears).

Bias: its ``fl`` is picked like a weight's, then clamped to ``fl_in + fl_w`` so the bias
shift is a left shift (known once the data phase has fixed ``fl_in``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from dynfix.errors import DynfixError
from . import fixed
from .bits import Widths, layer_widths
from .float_model import check_input, forward
from .int_model import (MapFormat, accumulate, add_sum, apply_plain, bias_array, check_add,
                        fan_in, has_format, is_compute, narrow, saturation_count, weight_array)
from .ir import Add, Layer, Model, Softmax
from .qspec import AddFormat, Format, LayerFormat, QuantSpec

METHODS = ("greedy", "static", "range")
PARAM_WINDOW = (-1, 3)  # greedy candidates: start-1 .. start+3
DATA_WINDOW = (-1, 5)   # start-1 .. start+5 (heavy-tailed maps may prefer clipping)


def range_fl(max_abs: float, bw: int, sign_bit: bool) -> int:
    """Ristretto's rule: ``fl = bw - ceil(log2 max|v|)`` (- 1 more with a sign bit)."""
    if max_abs <= 0:
        return bw - 1
    return bw - int(np.ceil(np.log2(max_abs))) - int(sign_bit)


def l1_error(ref: np.ndarray, q: np.ndarray, fl: int) -> float:
    """Sum of |float - dequantized| (float64)."""
    return float(np.abs(ref.astype(np.float64) - fixed.dequantize(q, fl)).sum())


def sqnr_db(ref: np.ndarray, approx: np.ndarray) -> float:
    """10 log10(signal power / noise power); +inf when there is no error."""
    ref = ref.astype(np.float64)
    noise = float(((ref - approx) ** 2).sum())
    signal = float((ref ** 2).sum())
    if noise == 0:
        return float("inf")
    if signal == 0:
        return float("-inf")
    return 10.0 * np.log10(signal / noise)


@dataclass
class Segment:
    """A layer with a format (compute or Add) and its tail: the parameter-free layers after
    it, each the only reader of the one before, up to the next layer with a format."""

    layer: Layer
    tail: list[Layer]

    @property
    def compare_at(self) -> str:
        """Name of the stored feature map (the last tail layer that is not a Softmax)."""
        names = [t.name for t in self.tail if not isinstance(t, Softmax)]
        return names[-1] if names else self.layer.name


def segments(model: Model) -> list[Segment]:
    """Every compute and Add layer with its tail, in topological order."""
    readers: dict[str, list[Layer]] = {}
    for layer in model.layers:
        for t in layer.inputs:
            readers.setdefault(t, []).append(layer)
    segs = []
    for layer in model.layers:
        if not has_format(layer):
            continue
        tail, t = [], layer.name
        while len(readers.get(t, ())) == 1 and not has_format(readers[t][0]):
            tail.append(readers[t][0])
            t = tail[-1].name
        segs.append(Segment(layer, tail))
    if not any(is_compute(s.layer) for s in segs):
        raise DynfixError(f"model {model.name!r} has no Conv/Linear/Affine layer to quantize")
    return segs


def run_plain(layers: list[Layer], x: np.ndarray, fmt: MapFormat,
              trace: dict | None = None) -> np.ndarray:
    """Parameter-free layers on integers in format ``fmt``; records each output in
    ``trace`` if given."""
    for layer in layers:
        x = apply_plain(layer, x, fmt)
        if trace is not None:
            trace[layer.name] = x
    return x


class Picker:
    """Picks an fl for one tensor according to the method (see the module docstring)."""

    def __init__(self, method: str, static: dict[tuple[str, int], int]):
        self.method = method
        self.static = static

    def pick(self, kind: str, max_abs: float, bw: int, err: Callable[[int], float]) -> int:
        """``kind`` is 'data', 'weight' or 'bias'; ``err(fl)`` is the greedy L1 error."""
        if self.method == "static":
            return self.static[(kind, bw)]
        if self.method == "range":
            return range_fl(max_abs, bw, kind != "data")
        start = fixed.min_fl_no_overflow(max_abs, bw)
        lo, hi = DATA_WINDOW if kind == "data" else PARAM_WINDOW
        # Ties (e.g. data on a coarse grid) go to the fl nearest the start, then the lower.
        return min(range(start + lo, start + hi + 1),
                   key=lambda fl: (err(fl), abs(fl - start), fl))


def _param_error(v: np.ndarray, bw: int) -> Callable[[int], float]:
    return lambda fl: l1_error(v, fixed.quantize(v, bw, fl), fl)


def _static_fls(model: Model, segs: list[Segment], widths: dict[str, Widths], input_bw: int,
                ftrace: dict) -> dict[tuple[str, int], int]:
    """The static method's shared fl per (kind, bw), from whole-network maxima."""
    maxima: dict[tuple[str, int], float] = {}

    def add(kind, bw, v):
        m = float(np.abs(v).max()) if v.size else 0.0
        maxima[(kind, bw)] = max(maxima.get((kind, bw), 0.0), m)

    add("data", input_bw, ftrace[model.input_name])
    for s in segs:
        w = widths[s.layer.name]
        add("data", w.bw_x, ftrace[s.compare_at])
        if is_compute(s.layer):
            add("weight", w.bw_w, weight_array(s.layer))
            add("bias", w.bw_b, bias_array(s.layer))
    return {k: range_fl(m, k[1], k[0] != "data") for k, m in maxima.items()}


def check_calib(model: Model, calib: np.ndarray) -> np.ndarray:
    """Validate calibration inputs (numeric, model-shaped, non-empty, finite)."""
    calib = np.asarray(calib)
    if calib.dtype.kind not in "fiu":
        raise DynfixError(f"calibration data has dtype {calib.dtype}; expected numbers")
    try:
        x = check_input(model, calib)
    except DynfixError as e:
        raise DynfixError(f"calibration data: {e}") from None
    return x


def _unshifted(s: Segment, q: dict[str, np.ndarray], fmts: dict[str, MapFormat], wd: Widths,
         param: tuple) -> tuple[Format, np.ndarray]:
    """A segment's format (``fl_out`` still open) and its wide result before the data shift:
    the accumulator of a compute layer, the aligned exact sum of an Add."""
    layer = s.layer
    ins = [fmts[t] for t in layer.inputs]
    if isinstance(layer, Add):
        f = AddFormat(layer.name, tuple(m.bw for m in ins), tuple(m.fl for m in ins),
                      wd.bw_x, 0)
        check_add(f, ins, f"layer {layer.name!r}")
        return f, add_sum(q[layer.inputs[0]], q[layer.inputs[1]], f)
    fl_w, fl_b, wq = param
    fl = ins[0].fl
    fl_b = min(fl_b, fl + fl_w)
    bq = fixed.quantize(bias_array(layer), wd.bw_b, fl_b)
    acc_w = fixed.acc_bits(fan_in(layer), wd.bw_in, wd.bw_w, wd.bw_b, fl + fl_w - fl_b)
    f = LayerFormat(layer.name, wd.bw_w, fl_w, wd.bw_b, fl_b, wd.bw_in, fl, wd.bw_x, 0, acc_w)
    return f, accumulate(layer, q[layer.inputs[0]], wq, bq, f)


def _fix_output(s: Segment, q: dict[str, np.ndarray], fmts: dict[str, MapFormat],
                wd: Widths, param: tuple | None, ref: np.ndarray, picker: Picker) -> Format:
    """The data phase for one segment: pick its ``fl_out`` against the float map ``ref``
    (at ``s.compare_at``), then record its tensors' integers in ``q`` and formats in
    ``fmts``; returns the layer's format with its calibration statistics."""
    f, acc = _unshifted(s, q, fmts, wd, param)
    ref = ref.astype(np.float64)

    def stored(fl_out: int, trace: dict | None = None) -> np.ndarray:
        f.fl_out = fl_out
        y = narrow(acc, f)
        if trace is not None:
            trace[f.name] = y
        return run_plain(s.tail, y, MapFormat(wd.bw_x, fl_out), trace)

    def err(fl_out: int) -> float:
        try:
            return l1_error(ref, stored(fl_out), fl_out)
        except DynfixError:                         # a Clip with no value at this fl
            return float("inf")

    fl = picker.pick("data", float(np.abs(ref).max()), wd.bw_x, err)
    cur = stored(fl, q)
    for t in [s.layer] + s.tail:
        fmts[t.name] = MapFormat(wd.bw_x, fl)
    f.saturated = saturation_count(acc, f)
    f.sqnr_db = sqnr_db(ref, fixed.dequantize(cur, fl))
    return f


def search(model: Model, calib: np.ndarray, bits: str = "8", method: str = "greedy",
           overrides: dict | None = None, progress: Callable[[str], None] | None = None
           ) -> QuantSpec:
    """Quantize ``model``: fractional lengths for every tensor, plus SQNR and saturation."""
    if method not in METHODS:
        raise DynfixError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    x = check_calib(model, calib)
    input_bw, widths = layer_widths(model, bits, overrides)
    segs = segments(model)
    ftrace = forward(model, x, keep={model.input_name} | {s.compare_at for s in segs})
    picker = Picker(method, _static_fls(model, segs, widths, input_bw, ftrace))
    say = progress or (lambda msg: None)

    # Weight phase: independent per compute layer.
    params = {}
    for s in segs:
        if not is_compute(s.layer):
            continue
        w, b, wd = weight_array(s.layer), bias_array(s.layer), widths[s.layer.name]
        fl_w = picker.pick("weight", float(np.abs(w).max()), wd.bw_w, _param_error(w, wd.bw_w))
        fl_b = picker.pick("bias", float(np.abs(b).max()), wd.bw_b, _param_error(b, wd.bw_b))
        params[s.layer.name] = (fl_w, fl_b, fixed.quantize(w, wd.bw_w, fl_w))

    # Data phase: the input, then layer by layer in topological order.
    ref = ftrace[model.input_name]
    fl = picker.pick("data", float(np.abs(ref).max()), input_bw,
                     lambda f: l1_error(ref, fixed.quantize(ref, input_bw, f), f))
    spec = QuantSpec(model.name, method, str(bits), input_bw, fl)
    q = {model.input_name: fixed.quantize(x, input_bw, fl)}      # integer tensors
    fmts = {model.input_name: MapFormat(input_bw, fl)}
    seg_of = {s.layer.name: s for s in segs}
    in_tail = {t.name for s in segs for t in s.tail}
    last = model.last_use()
    for i, layer in enumerate(model.layers):
        if layer.name in seg_of:
            s = seg_of[layer.name]
            f = _fix_output(s, q, fmts, widths[layer.name], params.get(layer.name),
                            ftrace[s.compare_at], picker)
            spec.layers[layer.name] = f
            what = "add" if isinstance(f, AddFormat) else f"w {f.bw_w}b fl {f.fl_w}"
            say(f"[{len(spec.layers)}/{len(segs)}] {layer.name}: {what}, x {f.bw_x}b fl "
                f"{f.fl_out}, SQNR {f.sqnr_db:.1f} dB, {f.saturated} saturated")
        elif layer.name not in in_tail:             # a plain layer outside any tail
            fmts[layer.name] = fmts[layer.inputs[0]]
            q[layer.name] = apply_plain(layer, q[layer.inputs[0]], fmts[layer.name])
        for t in layer.inputs:                      # free integer maps no longer needed
            if last[t] == i:
                q.pop(t, None)
    return spec
