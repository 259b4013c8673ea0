"""Choosing fractional lengths: the greedy two-phase search and its two baselines.

One code path, three ways to pick an ``fl`` for a tensor (method.md section 2):

* ``greedy`` (default): start at the overflow-free ``fl`` for the tensor's largest magnitude,
  then keep the ``fl`` in a small window around it that minimizes the L1 error. Weights and
  biases are compared with their float values (weight phase); a feature map is compared
  with the float model's on the calibration batch, computed by the partly-quantized model
  (data phase, layer by layer in network order, every earlier choice already fixed).
* ``range`` (Ristretto): integer length ``il = ceil(log2 max|v|)``, plus one for weights and
  biases, ``fl = bw - il``; no error search. As in Ristretto's code, activations get no sign
  bit, so their largest values may saturate.
* ``static``: the ``range`` rule applied once to the whole network: one ``fl`` for all
  feature maps (the input included), one for all weights and one for all biases of a given
  width.

Where a feature map is compared: at the *stored* map, i.e. after the compute layer's data
shift and the parameter-free layers that follow it (ReLU, pooling, flatten) up to the next
compute layer; that is what the next layer reads and what the engine writes to memory, and
negatives removed by a ReLU cost nothing there. A trailing Softmax is excluded (the logits
are compared). SQNR (dB) is measured at the same place; the saturation count is taken at the
data shift itself (so it includes negatives that a following ReLU clears).

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
from .int_model import (accumulate, apply_plain, bias_array, fan_in, is_compute, narrow,
                        saturation_count, weight_array)
from .ir import Layer, Model, Softmax
from .qspec import LayerFormat, QuantSpec

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
    """A compute layer and the parameter-free layers after it, up to the next compute layer."""

    layer: Layer
    tail: list[Layer]

    @property
    def compare_at(self) -> str:
        """Name of the stored feature map (the last tail layer that is not a Softmax)."""
        names = [t.name for t in self.tail if not isinstance(t, Softmax)]
        return names[-1] if names else self.layer.name


def segments(model: Model) -> tuple[list[Layer], list[Segment]]:
    """Split the chain: the layers before the first compute layer, then the segments."""
    head: list[Layer] = []
    segs: list[Segment] = []
    for layer in model.layers:
        if is_compute(layer):
            segs.append(Segment(layer, []))
        elif segs:
            segs[-1].tail.append(layer)
        else:
            head.append(layer)
    if not segs:
        raise DynfixError(f"model {model.name!r} has no Conv/Linear/Affine layer to quantize")
    return head, segs


def run_plain(layers: list[Layer], x: np.ndarray, trace: dict | None = None) -> np.ndarray:
    """Parameter-free layers on integers; records each output in ``trace`` if given."""
    for layer in layers:
        x = apply_plain(layer, x)
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


def search(model: Model, calib: np.ndarray, bits: str = "8", method: str = "greedy",
           overrides: dict | None = None, progress: Callable[[str], None] | None = None
           ) -> QuantSpec:
    """Quantize ``model``: fractional lengths for every tensor, plus SQNR and saturation."""
    if method not in METHODS:
        raise DynfixError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    x = check_calib(model, calib)
    input_bw, widths = layer_widths(model, bits, overrides)
    head, segs = segments(model)
    ftrace = forward(model, x)
    picker = Picker(method, _static_fls(model, segs, widths, input_bw, ftrace))
    say = progress or (lambda msg: None)

    # Weight phase: independent per layer.
    params = {}
    for s in segs:
        w, b, wd = weight_array(s.layer), bias_array(s.layer), widths[s.layer.name]
        fl_w = picker.pick("weight", float(np.abs(w).max()), wd.bw_w, _param_error(w, wd.bw_w))
        fl_b = picker.pick("bias", float(np.abs(b).max()), wd.bw_b, _param_error(b, wd.bw_b))
        params[s.layer.name] = (fl_w, fl_b, fixed.quantize(w, wd.bw_w, fl_w))

    # Data phase: the input, then layer by layer in network order.
    ref = ftrace[model.input_name]
    fl = picker.pick("data", float(np.abs(ref).max()), input_bw,
                     lambda f: l1_error(ref, fixed.quantize(ref, input_bw, f), f))
    spec = QuantSpec(model.name, method, str(bits), input_bw, fl)
    cur = run_plain(head, fixed.quantize(x, input_bw, fl))
    for i, s in enumerate(segs):
        name, wd = s.layer.name, widths[s.layer.name]
        fl_w, fl_b, wq = params[name]
        fl_b = min(fl_b, fl + fl_w)
        bq = fixed.quantize(bias_array(s.layer), wd.bw_b, fl_b)
        acc_w = fixed.acc_bits(fan_in(s.layer), wd.bw_in, wd.bw_w, wd.bw_b, fl + fl_w - fl_b)
        f = LayerFormat(name, wd.bw_w, fl_w, wd.bw_b, fl_b, wd.bw_in, fl, wd.bw_x, 0, acc_w)
        acc = accumulate(s.layer, cur, wq, bq, f)
        ref = ftrace[s.compare_at].astype(np.float64)

        def stored(fl_out: int) -> np.ndarray:
            f.fl_out = fl_out
            return run_plain(s.tail, narrow(acc, f))

        def err(fl_out: int) -> float:
            return l1_error(ref, stored(fl_out), fl_out)

        fl = picker.pick("data", float(np.abs(ref).max()), wd.bw_x, err)
        cur = stored(fl)
        f.saturated = saturation_count(acc, f)
        f.sqnr_db = sqnr_db(ref, fixed.dequantize(cur, fl))
        spec.layers[name] = f
        say(f"[{i + 1}/{len(segs)}] {name}: w {wd.bw_w}b fl {fl_w}, x {wd.bw_x}b fl {fl}, "
            f"SQNR {f.sqnr_db:.1f} dB, {f.saturated} saturated")
    return spec
