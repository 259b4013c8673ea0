"""Choosing fractional lengths: the greedy two-phase search, its additions and two baselines.

One code path, four methods (method.md section 2; docs/quantization.md):

* ``greedy-paper``: the paper's search. Start at the overflow-free ``fl`` for the tensor's
  largest magnitude, then keep the ``fl`` in a small window around it that minimizes the L1
  error. Weights and biases are compared with their float values (weight phase); a feature
  map is compared with the float model's on the calibration batch, computed by the
  partly-quantized model (data phase, layer by layer in topological order, every earlier
  choice already fixed). The layers that make a new format are the compute layers and the
  Adds; an Add picks its ``fl_out`` the same way, given the formats of its two inputs.
* ``greedy`` (default): ``greedy-paper`` plus the additions of :class:`QuantOptions`
  (:data:`GREEDY` says which are on): the squared error instead of L1 (``criterion``), a
  data window that also covers the overflow-free ``fl`` of the 99.99th percentile
  (``start``), bias correction and adaptive weight rounding during the data phase
  (:mod:`.adjust`), then a coordinate descent of the ``fl`` choices on the network output
  (``refine``, :mod:`.refine`). The result is never worse on the calibration objective
  (:mod:`.fidelity`) than ``greedy-paper``'s: the search scores both and keeps the better
  before refining.
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

The search quantizes the *lowered* model (:func:`~dynfix.quant.lower.lower`: a global
average pool folded into the Linear after it), the graph the integer model runs: a folded
Linear's ``fl_w`` is that of ``W / (H*W)`` and its adjusted weights, if any, are
``(M, C*H*W)``. Layer names with a format are the same as the original model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from dynfix.errors import DynfixError
from . import adjust, fill, fixed
from .bits import Widths, layer_widths
from .fidelity import (Fidelity, Objective, agreement_tolerance, output_name,
                       resolve_objective, sqnr_db)
from .float_model import check_input, trace
from .int_model import (MAX_CH_FL, MapFormat, accumulate, add_sum, apply_plain, bias_array,
                        bias_integers, check_add, check_spec, fan_in, has_format, is_compute,
                        is_sum, live_channels, narrow, row_fls, saturation_count,
                        weight_array, with_params)
from .ir import Layer, Model
from .lower import lower
from .qspec import AddFormat, Format, LayerFormat, QuantOptions, QuantSpec
from .qspec_io import param_names
from .refine import Evaluator, refine
from .weight_sharing import ShareReport, record_shares, share_bits, share_model
from .ternary import TernaryReport, check_mode, index_bits, ternarize_model, ternary_layers

METHODS = ("greedy", "greedy-paper", "static", "range")
#: What ``dynfix quantize --method`` takes: the searches, and ``qonnx`` (the formats a QONNX
#: model's Quant nodes give, :func:`dynfix.quant.onnx.qonnx.import_qonnx`).
QUANTIZE_METHODS = METHODS + ("qonnx",)
PAPER = QuantOptions()
#: The additions ``greedy`` makes by default (decided by bench/quant_table.py).
GREEDY = QuantOptions(equalize=True, criterion="mse", bias_correction=True,
                      rounding="adaptive", refine=True, unsigned=True, per_channel=True,
                      asymmetric=True, fill=True, headroom=True,
                      unclipped_weights=True)
PARAM_WINDOW = (-1, 3)  # greedy candidates: start-1 .. start+3
DATA_WINDOW = (-1, 5)   # start-1 .. start+5 (heavy-tailed maps may prefer clipping)
PERCENTILE = 99.99      # start="percentile": the window also covers this percentile's start
HEADROOM_BITS = 3       # headroom: at most this many bits coarser than overflow-free
HOLDOUT_MIN_INPUTS = 8  # headroom: fewer calibration inputs give no held-out split
RESOLUTION_BITS = 12    # headroom: a wider map keeps its further bits as headroom
REFINE_SAMPLES = 512    # the calibration objective is scored on at most this many inputs
BIAS_MARGIN = 2         # a layer's bias fl stays this many bits finer than its output's


def range_fl(max_abs: float, bw: int, sign_bit: bool) -> int:
    """Ristretto's rule: ``fl = bw - ceil(log2 max|v|)`` (- 1 more with a sign bit)."""
    if max_abs <= 0:
        return bw - 1
    return bw - int(np.ceil(np.log2(max_abs))) - int(sign_bit)


def input_errors(criterion: str, ref: np.ndarray, q: np.ndarray, fl: int,
                 zp: int = 0) -> np.ndarray:
    """Each input's error (the batch's first axis) of the integers ``q`` against the float
    ``ref``: the sum of |float - dequantized| (``l1``) or of its square (``mse``)."""
    d = ref.astype(np.float64) - fixed.dequantize(q, fl, zp)
    d = np.abs(d) if criterion == "l1" else d * d
    return d.reshape(len(d), -1).sum(axis=1)



@dataclass
class Segment:
    """A layer with a format (compute or Add) and its tail: the parameter-free layers after
    it, each the only reader of the one before, up to the next layer with a format."""

    layer: Layer
    tail: list[Layer]

    @property
    def compare_at(self) -> str:
        """Name of the stored feature map (the last tail layer that is not a Softmax)."""
        names = [t.name for t in self.tail if not t.host]
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
        while len(readers.get(t, ())) == 1 and not has_format(readers[t][0]) \
                and len(readers[t][0].inputs) == 1:
            tail.append(readers[t][0])
            t = tail[-1].name
        segs.append(Segment(layer, tail))
    if not any(is_compute(s.layer) for s in segs):
        raise DynfixError(f"model {model.name!r} has no Conv/Linear/Affine layer to quantize")
    return segs


def tied_maps(model: Model) -> dict[str, tuple[str, ...]]:
    """The maps that must share one format, by name: a layer joining several maps (a
    Concat) keeps one format for all of them (they are one map in the engine's memory), so
    the tensors their formats come from, the layers with a format of their own (or the
    model input) above them, are tied, through chains of such joins too. Each tied name
    maps to its whole tie group, in network order (the input first); untied names are
    absent."""
    layers = {layer.name: layer for layer in model.layers}

    def source(t: str) -> str:
        while t != model.input_name and not has_format(layers[t]):
            t = layers[t].inputs[0]
        return t

    root: dict[str, str] = {}

    def find(t: str) -> str:
        while root.get(t, t) != t:
            t = root[t]
        return t

    for layer in model.layers:
        if not has_format(layer) and len(layer.inputs) > 1:
            first, *rest = (find(source(t)) for t in layer.inputs)
            for r in rest:
                if r != first:
                    root[r] = first
    tied = set(root) | set(root.values())
    groups: dict[str, list[str]] = {}
    for t in [model.input_name] + [layer.name for layer in model.layers]:
        if t in tied:
            groups.setdefault(find(t), []).append(t)
    return {t: tuple(g) for g in groups.values() for t in g}


def tie(fls: dict[str, int], ties: dict[str, tuple[str, ...]]) -> dict[str, int]:
    """``fls`` (the input's and every layer's fl_out) with each tie group of
    :func:`tied_maps` at the fewest fractional bits among its members, so that no member's
    values overflow the shared format (their offsets are tied already, ``offsets``)."""
    out = dict(fls)
    for t, group in ties.items():
        if t == group[0]:
            fl = min(out[n] for n in group)
            out.update((n, fl) for n in group)
    return out


def _joined(layer: Layer, q: dict[str, np.ndarray], fmts: dict[str, MapFormat]
            ) -> tuple[MapFormat, np.ndarray | list]:
    """The format and input of a parameter-free layer outside any segment's tail during
    the data phase: its one input; for a layer joining several maps whose formats are not
    tied yet (the greedy pass picks each on its own, :meth:`_Search.data_pass` ties them
    after it) each requantized to the coarsest of them, as the tied pass will nearly
    have them, so the layers after it pick their formats on the right scale."""
    fs = [fmts[t] for t in layer.inputs]
    if len(fs) == 1:
        return fs[0], q[layer.inputs[0]]
    f = min(fs, key=lambda m: m.fl)
    return f, [q[t] if m == f else
               fixed.requantize(np.asarray(q[t], np.int64) - m.zp, m.fl - f.fl, f.bw, f.zp)
               for t, m in zip(layer.inputs, fs)]


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

    def __init__(self, method: str, static: dict[tuple[str, int], int],
                 options: QuantOptions = PAPER):
        self.method = method
        self.static = static
        self.options = options

    def pick(self, kind: str, max_abs: float, bw: int, err: Callable[[int], float],
             robust_abs: float | None = None, unsigned: bool = False) -> int:
        """``kind`` is 'data', 'weight' or 'bias'; ``err(fl)`` is the greedy error (for
        'data', one per calibration input: :func:`input_errors`); ``robust_abs`` the
        percentile magnitude (used with ``start='percentile'``); ``unsigned``: an unsigned
        map, whose overflow-free start is one fl finer."""
        if self.method == "static":
            return self.static[(kind, bw)]
        if self.method == "range":
            return range_fl(max_abs, bw, kind != "data")
        span = bw + int(unsigned)           # 0 .. 2**bw - 1 is the range of bw + 1 bits
        start = fixed.min_fl_no_overflow(max_abs, span)
        lo, hi = DATA_WINDOW if kind == "data" else PARAM_WINDOW
        top = start
        if robust_abs is not None and self.options.start == "percentile":
            top = max(start, fixed.min_fl_no_overflow(robust_abs, span))
        if kind != "data" and self.options.unclipped_weights:
            hi = 0
        window = range(start + lo, top + hi + 1)
        if kind != "data":
            return _best(window, err, start)
        table = _Table(err)
        fl = _best(window, table.total, start)
        return table.with_headroom(window, start, fl, bw) if self.options.headroom else fl


def _best(window: range, err: Callable[[int], float], start: int) -> int:
    """The fl of ``window`` with the least error. Ties (e.g. data on a coarse grid) go to
    the fl nearest the start, then the lower."""
    return min(window, key=lambda fl: (err(fl), abs(fl - start), fl))


class _Table:
    """A map's per-input errors by fl, computed once each (``err(fl)``: one error per
    calibration input)."""

    def __init__(self, err: Callable[[int], np.ndarray]):
        self.err, self.rows = err, {}

    def __call__(self, fl: int) -> np.ndarray:
        if fl not in self.rows:
            self.rows[fl] = np.asarray(self.err(fl), np.float64).reshape(-1)
        return self.rows[fl]

    def total(self, fl: int, which: np.ndarray | slice = slice(None)) -> float:
        return float(self(fl)[which].sum())

    def with_headroom(self, window: range, start: int, fl: int, bw: int) -> int:
        """A coarser fl than the calibration batch's best ``fl`` for a ``bw``-bit map,
        where new inputs are likely to reach past the calibration maxima; never more than
        :data:`HEADROOM_BITS` coarser than the overflow-free ``start``. The coarser of:

        * a held-out split: the inputs are halved (even and odd positions), each half
          picks its best fl and the other half scores it ``h`` bits coarser; the ``h`` with
          the least held-out error is taken (the smaller on a tie). Where a format fitted
          to one half clips the other (heavy tails), the split buys headroom for it (fewer
          than :data:`HOLDOUT_MIN_INPUTS` inputs: no split);
        * wide maps: a map wider than :data:`RESOLUTION_BITS` keeps its further bits
          (up to :data:`HEADROOM_BITS`) as headroom over the calibration maximum. Inputs
          unlike the calibration set (other photos, other speakers) reach several times
          its maxima; at 16 bits the 13 bits left below the maximum still resolve the map
          far better than any 8-bit format."""
        floor = start - HEADROOM_BITS
        # Rule 2 only: a narrow map is not held to the overflow-free start (the split decides).
        wide = min(HEADROOM_BITS, max(bw - RESOLUTION_BITS, 0))
        out = min(fl, start - wide) if wide else fl
        n = len(self(window[0]))
        if n >= HOLDOUT_MIN_INPUTS:
            halves = [np.arange(n) % 2 == k for k in (0, 1)]
            picks = [_best(window, lambda f, h=h: self.total(f, h), start) for h in halves]

            def held_out(extra: int) -> float:
                return sum(self.total(f - extra, ~h) for f, h in zip(picks, halves))
            out = min(out, fl - min(range(max(fl - floor, 0) + 1),
                                    key=lambda e: (held_out(e), e)))
        return out


def _param_error(v: np.ndarray, bw: int, criterion: str = "l1") -> Callable[[int], float]:
    """fl -> the error of a parameter tensor rounded to ``bw`` bits at ``fl``."""
    return lambda fl: float(input_errors(criterion, v[None], fixed.quantize(v, bw, fl)[None],
                                         fl)[0])


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
    """Validate calibration inputs (numeric, shaped as the model's data, in its layout,
    non-empty, finite); returns them as the graph's input (channels first)."""
    calib = np.asarray(calib)
    if calib.dtype.kind not in "fiu":
        raise DynfixError(f"calibration data has dtype {calib.dtype}; expected numbers")
    try:
        x = check_input(model, calib)
    except DynfixError as e:
        raise DynfixError(f"calibration data: {e}") from None
    return x


@dataclass(frozen=True)
class Params:
    """A compute layer's parameters as the search holds them: the float weights and bias
    its integers round to (the model's own, or adjusted), the weight fl and the bias's own
    fl pick (clamped to ``fl_in + fl_w`` in the format)."""

    w: np.ndarray
    b: np.ndarray
    fl_w: int
    fl_b: int
    #: Per output channel, how much finer than ``fl_w`` (``LayerFormat.ch_fl``; empty: 0).
    ch: tuple[int, ...] = ()

    def fl_rows(self) -> np.ndarray:
        """Every output channel's weight fl, shaped to broadcast over ``w``."""
        return row_fls(self.fl_w, self.ch, self.w)

    def integers(self, bw_w: int) -> np.ndarray:
        return fixed.quantize(self.w, bw_w, self.fl_rows())

    def scaled_bias(self) -> np.ndarray:
        """The bias as its integers see it at ``fl_b``: channel ``m`` times
        ``2**ch[m]`` (it is stored ``ch[m]`` bits finer)."""
        if not self.ch:
            return self.b
        return np.ldexp(np.asarray(self.b, np.float64), np.asarray(self.ch, np.int64))


def layer_format(layer: Layer, ins: list[MapFormat], wd: Widths, p: Params | None,
                 fl_out: int, zp_out: int = 0) -> Format:
    """The format of a compute layer (``p``: its parameters) or an Add, given the formats
    of the maps it reads (raises DynfixError for one the arithmetic cannot hold)."""
    if is_sum(layer):
        f = AddFormat(layer.name, tuple(m.bw for m in ins), tuple(m.fl for m in ins),
                      wd.bw_x, fl_out, zp_in=tuple(m.zp for m in ins), zp_out=zp_out)
        check_add(f, ins, f"layer {layer.name!r}")
        return f
    fl = ins[0].fl
    fl_b = min(p.fl_b, fl + p.fl_w)
    try:
        acc_w = fixed.acc_bits(fan_in(layer), wd.bw_in + int(ins[0].zp != 0), wd.bw_w,
                               wd.bw_b, fl + p.fl_w - fl_b)
    except DynfixError as e:
        ch = f", weight fl offsets up to {max(p.ch)}" if p.ch else ""
        raise DynfixError(f"layer {layer.name!r} (fl_in {fl}, fl_w {p.fl_w}, fl_b {fl_b}, "
                          f"bias shift {fl + p.fl_w - fl_b}{ch}): {e}") from None
    return LayerFormat(layer.name, wd.bw_w, p.fl_w, wd.bw_b, fl_b, wd.bw_in, fl, wd.bw_x,
                       fl_out, acc_w, ch_fl=p.ch, zp_in=ins[0].zp, zp_out=zp_out)


def _unshifted(s: Segment, q: dict[str, np.ndarray], fmts: dict[str, MapFormat], wd: Widths,
               p: Params | None) -> tuple[Format, np.ndarray]:
    """A segment's format (``fl_out`` still open) and its wide result before the data shift:
    the accumulator of a compute layer, the aligned exact sum of an Add."""
    layer = s.layer
    f = layer_format(layer, [fmts[t] for t in layer.inputs], wd, p, 0)
    if is_sum(layer):
        return f, add_sum(q[layer.inputs[0]], q[layer.inputs[1]], f)
    bq = bias_integers(p.b, f)
    return f, accumulate(layer, q[layer.inputs[0]], p.integers(wd.bw_w), bq, f)


def _fix_output(s: Segment, q: dict[str, np.ndarray], fmts: dict[str, MapFormat],
                wd: Widths, p: Params | None, ref: np.ndarray, picker: Picker,
                fl_fixed: int | None = None, zp: int | None = 0) -> Format:
    """The data phase for one segment: pick its ``fl_out`` against the float map ``ref``
    (at ``s.compare_at``; or take ``fl_fixed``) for an output map with offset ``zp`` (None:
    centred at each fl, :func:`centred_zp`), then record its tensors' integers in ``q`` and
    formats in ``fmts``; returns the layer's format with its calibration statistics."""
    f, acc = _unshifted(s, q, fmts, wd, p)
    ref = ref.astype(np.float64)
    crit = picker.options.criterion
    zp_at = _offset_rule(zp, ref, wd.bw_x)

    def stored(fl_out: int, trace: dict | None = None) -> np.ndarray:
        f.fl_out, f.zp_out = fl_out, zp_at(fl_out)
        y = narrow(acc, f)
        if trace is not None:
            trace[f.name] = y
        return run_plain(s.tail, y, MapFormat(wd.bw_x, fl_out, f.zp_out), trace)

    def err(fl_out: int) -> np.ndarray:
        try:
            return input_errors(crit, ref, stored(fl_out), fl_out, zp_at(fl_out))
        except DynfixError:                         # a Clip with no value at this fl
            return np.full(len(ref), np.inf)

    fl = fl_fixed if fl_fixed is not None else picker.pick(
        "data", _reach(ref, zp), wd.bw_x, err, _robust_abs(ref, picker), bool(zp))
    cur = stored(fl, q)
    for t in [s.layer] + s.tail:
        fmts[t.name] = MapFormat(wd.bw_x, fl, f.zp_out)
    f.saturated = saturation_count(acc, f)
    f.sqnr_db = sqnr_db(ref, fixed.dequantize(cur, fl, f.zp_out))
    return f


def centred_zp(ref: np.ndarray, fl: int, bw: int) -> int:
    """The offset that puts the middle of ``ref``'s range at ``q = 0`` at ``fl``:
    ``-round((min + max) / 2 * 2**fl)``, within the ``bw``-bit range."""
    if not ref.size:
        return 0
    mid = (float(ref.min()) + float(ref.max())) / 2
    v = -np.floor(np.ldexp(mid, fl) + 0.5)
    return int(np.clip(v, fixed.qmin(bw), fixed.qmax(bw)))


def _offset_rule(zp: int | None, ref: np.ndarray, bw: int) -> Callable[[int], int]:
    """fl -> the map's offset: ``zp``, or the centred one when ``zp`` is None."""
    if zp is None:
        return lambda fl: centred_zp(ref, fl, bw)
    return lambda fl: zp


def _reach(ref: np.ndarray, zp: int | None) -> float:
    """The magnitude the overflow-free start must hold: max|v|, or for a centred map
    half the range (the values' distance from its middle)."""
    if not ref.size:
        return 0.0
    if zp is None:
        return (float(ref.max()) - float(ref.min())) / 2
    return float(np.abs(ref).max())


def _robust_abs(v: np.ndarray, picker: Picker) -> float | None:
    if picker.options.start != "percentile" or not v.size:
        return None
    return float(np.percentile(np.abs(v), PERCENTILE))


@dataclass
class SearchResult:
    """What :func:`search_model` chose: the spec, the model whose parameters it quantizes
    (the lowered ``model``, or a copy with adjusted weights/biases when bias correction or
    adaptive rounding changed them) and, for greedy with additions, the calibration
    objective it reached and greedy-paper's."""

    spec: QuantSpec
    model: Model
    fidelity: Fidelity | None = None
    paper_fidelity: Fidelity | None = None
    objective: Objective | None = None
    #: True when greedy-paper's choice scored at least as well as the additions' and was
    #: kept instead (then refined, with refine).
    fell_back: bool = False
    #: Weight sharing (``share``): what it did to each shared layer.
    sharing: list[ShareReport] = field(default_factory=list)
    #: Ternary weights (``ternary``): what ternarization did to each layer.
    ternary: list[TernaryReport] = field(default_factory=list)


class _Search:
    """One search: the model, its calibration batch and float trace, the widths."""

    def __init__(self, model: Model, x: np.ndarray, bits: str, overrides: dict | None,
                 method: str, say: Callable[[str], None]):
        self.model, self.x, self.bits, self.method, self.say = model, x, str(bits), method, say
        self.overrides = overrides
        self.input_bw, self.widths = layer_widths(model, bits, overrides)
        self.segs = segments(model)
        self.ties = tied_maps(model)
        bw = {model.input_name: self.input_bw, **{n: w.bw_x for n, w in self.widths.items()}}
        for t, group in self.ties.items():
            if t == group[0] and len({bw[n] for n in group}) > 1:
                raise DynfixError(f"model {model.name!r}: maps {list(group)} are joined "
                                  f"(a Concat) and so share one format, but have widths "
                                  f"{[bw[n] for n in group]}; give them one width")
        keep = {model.input_name, output_name(model)} | {s.compare_at for s in self.segs}
        keep |= {s.layer.inputs[0] for s in self.segs if is_compute(s.layer)}
        self.ftrace = trace(model, x, keep=keep)
        self.static = _static_fls(model, self.segs, self.widths, self.input_bw, self.ftrace)
        # The host's scales of a range-filled model (quant/fill.py): ``x`` is already scaled.
        self.input_scale = self.output_scale = 1.0

    def filled(self, options: QuantOptions) -> "_Search | None":
        """The same search on this model with its maps' ranges filled (:mod:`.fill`), as
        ``options`` would store them; None when no map changes."""
        model = self.model
        stored = {model.input_name: model.input_name,
                  **{s.layer.name: s.compare_at for s in self.segs if is_compute(s.layer)}}
        widths = {model.input_name: self.input_bw,
                  **{n: w.bw_x for n, w in self.widths.items()}}
        zps = self.offsets(options)
        kinds = {n: fill.kind_of(zps.get(n, 0), widths[n]) for n in stored}
        f = fill.fill_ranges(model, self.ftrace, stored, kinds, widths, options.criterion)
        if not f.scales:
            return None
        ctx = _Search(f.model, self.x * f.input_scale, self.bits, self.overrides,
                      self.method, self.say)
        ctx.input_scale, ctx.output_scale = f.input_scale, f.output_scale
        return ctx

    def weight_phase(self, picker: Picker) -> dict[str, Params]:
        """fl_w and the bias's fl per compute layer, independently (the model's own
        parameters)."""
        params = {}
        crit = picker.options.criterion
        for s in self.segs:
            if not is_compute(s.layer):
                continue
            w, b, wd = weight_array(s.layer), bias_array(s.layer), self.widths[s.layer.name]
            fl_w = picker.pick("weight", float(np.abs(w).max()), wd.bw_w,
                               _param_error(w, wd.bw_w, crit))
            ch = ()
            if picker.options.per_channel:
                ch = self.channel_fls(w, wd.bw_w, picker, self.channel_caps(s, b, wd))
            if ch:
                fl_w, ch = ch[0], ch[1]
            p = Params(w, b, fl_w, 0, ch)
            params[s.layer.name] = replace(p, fl_b=self.bias_fl(p, wd.bw_b, picker))
        return params

    def channel_caps(self, s: Segment, b: np.ndarray, wd: Widths) -> np.ndarray:
        """The largest weight fl offset each output channel can take without coarsening the
        layer's bias. A channel ``ch`` bits finer holds its bias ``ch`` bits finer in the
        same ``bw_b`` bits, so one fine channel with a large bias would push the bias fl
        (shared) down for all; the bias must stay :data:`BIAS_MARGIN` bits finer than the
        output map (whose fl is estimated from the float map's range), which bounds each
        channel's offset by its bias's own overflow-free fl."""
        ref = self.ftrace[s.compare_at]
        fl_out = fixed.min_fl_no_overflow(float(np.abs(ref).max()) if ref.size else 0.0,
                                          wd.bw_x)
        b = np.abs(np.asarray(b, np.float64))
        return np.array([fixed.min_fl_no_overflow(float(v), wd.bw_b) - fl_out - BIAS_MARGIN
                         if v > 0 else MAX_CH_FL for v in b], np.int64)

    @staticmethod
    def channel_fls(w: np.ndarray, bw: int, picker: Picker,
                    caps: np.ndarray | None = None) -> tuple:
        """Per-channel weight formats: each live output channel's fl picked like a layer's
        (at most ``caps[m]`` finer than the coarsest, :meth:`channel_caps`), as
        ``(base, offsets)`` with ``base`` the coarsest; () when they would all be equal.
        A dead channel (:func:`~.int_model.live_channels`: all zero, or weights far below
        the layer's) takes the base, where its weights round to 0."""
        rows = w.reshape(len(w), -1)
        live = live_channels(np.abs(rows).max(axis=1))
        if not live.any():
            return ()
        crit = picker.options.criterion
        fls = np.array([picker.pick("weight", float(np.abs(r).max()), bw,
                                    _param_error(r, bw, crit)) for r in rows[live]])
        base = int(fls.min())
        ch = np.zeros(len(rows), np.int64)
        ch[live] = np.minimum(fls - base, MAX_CH_FL)
        if caps is not None:
            ch = np.minimum(ch, np.maximum(caps, 0))
        return (base, tuple(int(d) for d in ch)) if np.any(ch) else ()

    @staticmethod
    def bias_fl(p: Params, bw: int, picker: Picker) -> int:
        """The bias's own fl pick, on the bias as its integers see it (``scaled_bias``)."""
        b = p.scaled_bias()
        return picker.pick("bias", float(np.abs(b).max()), bw,
                           _param_error(b, bw, picker.options.criterion))

    def adjusted(self, layer: Layer, p: Params, xq: np.ndarray, fmt: MapFormat,
                 picker: Picker) -> Params:
        """Adaptive rounding and bias correction of one layer (as ``picker.options`` say),
        given its quantized input ``xq`` in format ``fmt``."""
        o, wd = picker.options, self.widths[layer.name]
        xf = self.ftrace[layer.inputs[0]]
        xd = fixed.dequantize(xq, fmt.fl, fmt.zp)
        wq = p.integers(wd.bw_w)
        w = p.w
        fl_rows = p.fl_rows()
        if o.rounding == "adaptive" and wd.bw_w <= 24:     # float32 holds the snapped value
            wq = adjust.adaptive_round(layer, p.w, wq, wd.bw_w, fl_rows.reshape(-1), xf, xd)
            w = fixed.dequantize(wq, fl_rows).astype(np.float32)
        b = p.b
        if o.bias_correction:
            b = adjust.corrected_bias(layer, p.b, p.w, xf, fixed.dequantize(wq, fl_rows), xd)
        if w is p.w and b is p.b:
            return p
        new = replace(p, w=w, b=b)
        return replace(new, fl_b=self.bias_fl(new, wd.bw_b, picker))

    def offsets(self, options: QuantOptions) -> dict[str, int | None]:
        """The map offsets ``options`` choose, by tensor name (absent: 0): with
        ``unsigned``, ``qmin(bw)`` for the input when the calibration inputs are all >= 0
        and for every compute layer whose stored map cannot be negative
        (:func:`never_negative`); with ``asymmetric``, None (centred at each fl the data
        phase tries, :func:`centred_zp`) for the other maps. The engine's residual Add
        reads and writes signed maps, so a map an Add reads stays signed (0)."""
        model = self.model
        read_by_add = {t for layer in model.layers if is_sum(layer) for t in layer.inputs}
        zps: dict[str, int | None] = {}
        if model.input_name not in read_by_add:
            if options.unsigned and float(self.x.min()) >= 0:
                zps[model.input_name] = fixed.qmin(self.input_bw)
            elif options.asymmetric:
                zps[model.input_name] = None
        for s in self.segs:
            if not is_compute(s.layer) or read_by_add & {s.layer.name,
                                                         *(t.name for t in s.tail)}:
                continue
            if options.unsigned and never_negative(s):
                zps[s.layer.name] = fixed.qmin(self.widths[s.layer.name].bw_x)
            elif options.asymmetric:
                zps[s.layer.name] = None
        for t, group in self.ties.items():      # one offset for maps joined into one
            if t == group[0]:
                rules = {zps.get(n, 0) for n in group}
                if len(rules) > 1 or None in rules:
                    zps.update((n, 0) for n in group)
        return zps

    def data_pass(self, params: dict[str, Params], picker: Picker,
                  fixed_fls: dict[str, int] | None = None, verbose: bool = True,
                  zps: dict[str, int] | None = None) -> tuple[QuantSpec, dict[str, Params]]:
        """The data phase: the input's fl, then layer by layer in topological order (with
        ``fixed_fls``, those fl choices are taken as given and only the statistics are
        measured; otherwise the parameters are adjusted as ``picker.options`` say). The
        map offsets are ``zps`` (default: as ``picker.options`` choose, :meth:`offsets`)."""
        model, segs, ftrace = self.model, self.segs, self.ftrace
        untied = fixed_fls is None and bool(self.ties)   # tied in a second pass (below)
        say = self.say if verbose and not untied else (lambda msg: None)
        params = dict(params)
        if fixed_fls is not None:
            fixed_fls = tie(fixed_fls, self.ties)
        zps = self.offsets(picker.options) if zps is None else zps
        ref = ftrace[model.input_name]
        rule = zps.get(model.input_name, 0)         # an offset, or None: centred
        zp_at = _offset_rule(rule, ref, self.input_bw)
        if fixed_fls is not None:
            fl = fixed_fls[model.input_name]
        else:
            crit = picker.options.criterion
            fl = picker.pick("data", _reach(ref, rule), self.input_bw,
                             lambda f: input_errors(crit, ref,
                                                    fixed.quantize(ref, self.input_bw, f,
                                                                   zp_at(f)), f, zp_at(f)),
                             _robust_abs(ref, picker), bool(rule))
        zp = zp_at(fl)
        spec = QuantSpec(model.name, self.method, self.bits, self.input_bw, fl, input_zp=zp,
                         input_scale=self.input_scale, output_scale=self.output_scale)
        q = {model.input_name: fixed.quantize(self.x, self.input_bw, fl, zp)}   # integers
        fmts = {model.input_name: MapFormat(self.input_bw, fl, zp)}
        seg_of = {s.layer.name: s for s in segs}
        in_tail = {t.name for s in segs for t in s.tail}
        last = model.last_use()
        adjusting = fixed_fls is None and picker.options.adjusts_params
        for i, layer in enumerate(model.layers):
            if layer.name in seg_of:
                s = seg_of[layer.name]
                p = params.get(layer.name)
                if adjusting and p is not None:
                    p = params[layer.name] = self.adjusted(layer, p, q[layer.inputs[0]],
                                                           fmts[layer.inputs[0]], picker)
                f = _fix_output(s, q, fmts, self.widths[layer.name], p, ftrace[s.compare_at],
                                picker, None if fixed_fls is None else fixed_fls[layer.name],
                                zps.get(layer.name, 0))
                spec.layers[layer.name] = f
                what = "add" if isinstance(f, AddFormat) else f"w {f.bw_w}b fl {f.fl_w}"
                if isinstance(f, LayerFormat) and f.ch_fl:
                    what += f"..{f.fl_w + max(f.ch_fl)}"
                sign = "u" if f.zp_out else ""
                say(f"[{len(spec.layers)}/{len(segs)}] {layer.name}: {what}, x {f.bw_x}b{sign} "
                    f"fl {f.fl_out}, SQNR {f.sqnr_db:.1f} dB, {f.saturated} saturated")
            elif layer.name not in in_tail:             # a plain layer outside any tail
                fmts[layer.name], x = _joined(layer, q, fmts)
                q[layer.name] = apply_plain(layer, x, fmts[layer.name])
            for t in layer.inputs:                      # free integer maps no longer needed
                if last[t] == i:
                    q.pop(t, None)
        if untied:
            # Maps joined into one take one format: the greedy choices tied (tie), then
            # every format and statistic again with those choices.
            return self.data_pass(params, picker, tie(fls_of(spec, model), self.ties),
                                  verbose, zps)
        return spec, params

    def build(self, fls: dict[str, int], params: dict[str, Params], zps: dict[str, int]
              ) -> QuantSpec:
        """The spec for given fl choices (``fls``: the input's and each segment's fl_out),
        map offsets and parameters, without statistics; DynfixError if the arithmetic
        cannot hold it."""
        model = self.model
        fls = tie(fls, self.ties)
        zp = zps.get(model.input_name, 0)
        spec = QuantSpec(model.name, self.method, self.bits, self.input_bw,
                         fls[model.input_name], input_zp=zp, input_scale=self.input_scale,
                         output_scale=self.output_scale)
        fmts = {model.input_name: MapFormat(self.input_bw, fls[model.input_name], zp)}
        for layer in model.layers:
            if has_format(layer):
                f = layer_format(layer, [fmts[t] for t in layer.inputs],
                                 self.widths[layer.name], params.get(layer.name),
                                 fls[layer.name], zps.get(layer.name, 0))
                spec.layers[layer.name] = f
                fmts[layer.name] = MapFormat(f.bw_x, f.fl_out, f.zp_out)
            else:
                fmts[layer.name] = fmts[layer.inputs[0]]
        check_spec(model, spec)
        return spec

    def greedy(self, options: QuantOptions, verbose: bool
               ) -> tuple[QuantSpec, dict[str, Params]]:
        picker = Picker(self.method, self.static, options)
        return self.data_pass(self.weight_phase(picker), picker, verbose=verbose)


def fls_of(spec: QuantSpec, model: Model) -> dict[str, int]:
    """A spec's fl choices: the input's and every layer's fl_out, by name."""
    return {model.input_name: spec.input_fl, **{n: f.fl_out for n, f in spec.layers.items()}}


def zps_of(spec: QuantSpec, model: Model) -> dict[str, int]:
    """A spec's map offsets: the input's and every layer's zp_out, by name."""
    return {model.input_name: spec.input_zp, **{n: f.zp_out for n, f in spec.layers.items()}}


def never_negative(s: Segment) -> bool:
    """True when a segment's stored map cannot be negative: its tail reaches a layer whose
    output never is (a ReLU, a Clip with ``lo >= 0``) through layers that commute with a
    ReLU (max-pool, flatten; not an average pool: the mean of a signed map is signed), so
    saturating the layer's output at 0 (an unsigned map) gives the same stored map."""
    for t in s.tail:
        if t.never_negative():
            return True
        if not t.commutes_with_relu:
            return False
    return False


def changed_params(model: Model, params: dict[str, Params]) -> dict[str, dict]:
    """The parameters that differ from the model's own, as ``QuantSpec.params`` holds them."""
    out = {}
    for layer in model.layers:
        p = params.get(layer.name)
        if p is not None and not (np.array_equal(p.w, weight_array(layer))
                                  and np.array_equal(p.b, bias_array(layer))):
            out[layer.name] = dict(zip(param_names(layer), (p.w, p.b)))
    return out


def method_options(method: str, changes: dict | None = None) -> QuantOptions | None:
    """The greedy options of ``method`` (:data:`GREEDY` for greedy, none on for
    greedy-paper) with ``changes`` (option name -> value) applied; None for range and
    static, which take no options."""
    if method not in METHODS:
        raise DynfixError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method in ("range", "static"):
        if changes:
            raise DynfixError(f"method {method} takes no greedy options "
                              f"({', '.join(changes)})")
        return None
    base = GREEDY if method == "greedy" else PAPER
    return QuantOptions.from_dict({**base.to_dict(), **(changes or {})})


def resolve_method(method: str, options: QuantOptions | None
                   ) -> tuple[str, QuantOptions | None]:
    """The method name a spec records and the greedy options (None for greedy-paper, range
    and static): ``options`` replace the method's own (:func:`method_options`); greedy
    options with nothing on are greedy-paper."""
    if options is None:
        options = method_options(method)
    elif method_options(method) is None and not options.is_paper:
        raise DynfixError(f"method {method} takes no greedy options")
    if method in ("range", "static"):
        return method, None
    if options.is_paper:
        return "greedy-paper", None
    return "greedy", options


def search_model(model: Model, calib: np.ndarray, bits: str = "8", method: str = "greedy",
                 overrides: dict | None = None,
                 progress: Callable[[str], None] | None = None,
                 options: QuantOptions | None = None,
                 share: int | str | dict | None = None,
                 ternary: str | list[str] | None = None,
                 ternary_mode: str = "asymmetric", share_zero: bool = True) -> SearchResult:
    """Quantize ``model``: fractional lengths for every tensor, plus SQNR and saturation;
    with bias correction or adaptive rounding, also the adjusted parameters (in
    ``SearchResult.model``). The search runs on ``lower(model)``, and
    ``SearchResult.model`` is lowered too (see the module docstring). ``share``: weight
    sharing of the layers it names, once the formats are chosen (:func:`_share`), each
    codebook with an entry at 0 or (``share_zero`` False) with all its entries free;
    ``ternary``: ternary weights in the layers it names (:func:`_ternarize`), the form
    ``ternary_mode``; not both."""
    method, options = resolve_method(method, options)
    original, model = model, lower(model)
    shared = None if share is None else share_bits(model, share)
    tern = None if ternary is None else ternary_layers(model, ternary)
    check_mode(ternary_mode)
    if shared and tern:
        raise DynfixError("weight sharing and ternary weights cannot be combined; choose one")
    x = check_calib(model, calib)
    say = progress or (lambda msg: None)
    ctx = _Search(model, x, bits, overrides, method, say)
    if options is None:
        picker = Picker(method, ctx.static)
        spec, params = ctx.data_pass(ctx.weight_phase(picker), picker)
        if not shared and not tern:
            return SearchResult(spec, model)
        fls, zps = fls_of(spec, model), zps_of(spec, model)
        reports, treports = [], []
        if shared:
            params, reports = _share(ctx, fls, params, zps, shared, picker, say, share_zero)
        else:
            params, treports = _ternarize(ctx, fls, params, zps, tern, ternary_mode, picker,
                                          say)
        spec, _ = ctx.data_pass(params, picker, fls, zps=zps)
        spec.params = changed_params(model, params)
        record_shares(spec, shared or index_bits(treports))
        return SearchResult(spec, with_params(model, spec), sharing=reports,
                            ternary=treports)

    n = min(len(x), REFINE_SAMPLES)
    out = output_name(model)
    # The objective is scored against the float model of the model as given (the lowered
    # one computes the same function, up to float32 rounding).
    ref = ctx.ftrace[out][:n] if original is model else trace(original, x[:n], {out})[out]
    ev = Evaluator(model, x[:n], ref)
    paper_spec, paper_params = ctx.greedy(PAPER, verbose=False)
    paper = ev.score(paper_spec, paper_params)
    objective = Objective(resolve_objective(model, options.objective), paper.agree,
                          agreement_tolerance(paper))
    say(f"calibration objective: {objective.name} on {n} inputs; greedy-paper "
        f"{paper.text()}")
    # The starts: greedy-paper's choice, the additions', the additions' on the equalized
    # model; the best scoring one is kept (and refined). With headroom or unclipped
    # weights, greedy-paper's choice competes with them too: they cost fidelity on the
    # calibration batch by design (they are for inputs and weights beyond its fit), so it
    # is compared with starts that have them.
    best = (paper, paper_spec, paper_params, ctx, "greedy-paper")
    robust = replace(PAPER, headroom=options.headroom,
                     unclipped_weights=options.unclipped_weights)
    if not robust.is_paper:
        spec, params = ctx.greedy(robust, verbose=False)
        what = " and ".join(w for w, on in (("map headroom", robust.headroom),
                                             ("unclipped weights", robust.unclipped_weights))
                            if on)
        best = (ev.score(spec, params), spec, params, ctx, f"greedy-paper with {what}")
        say(f"{best[4]}: {best[0].text()}")
    plain = replace(options, equalize=False)
    same_pass = replace(plain, refine=False).is_paper       # refine alone: paper's pass
    starts = [] if same_pass else [("the additions", ctx, plain)]
    if options.equalize:
        eq = adjust.equalize(model)
        if eq is not model:
            starts.append((f"{'' if same_pass else 'the additions on '}the equalized "
                           f"model ({len(adjust.equalizable_pairs(model))} pairs)",
                           _Search(eq, x, bits, overrides, method, say), options))
    if options.fill:                    # each start again with its maps' ranges filled
        for what, sctx, opts in list(starts):
            try:
                fctx = sctx.filled(opts)
            except DynfixError as e:
                say(f"{what}, ranges filled: dropped ({e})")
                continue
            if fctx is not None:
                starts.append((f"{what}, ranges filled", fctx, opts))
    for what, sctx, opts in starts:
        try:
            spec, params = sctx.greedy(opts, verbose=False)
            fid = ev.on(sctx.model).score(spec, params)
        except DynfixError as e:            # one start that cannot be held is dropped
            say(f"{what}: dropped ({e})")
            continue
        say(f"{what}: {fid.text()}")
        if objective.key(fid) > objective.key(best[0]):
            best = (fid, spec, params, sctx, what)
    fid, spec, params, actx, what = best
    fell_back = what.startswith("greedy-paper") and bool(starts)
    say(f"kept: {what}")
    fls, zps = fls_of(spec, model), zps_of(spec, model)
    if options.refine:
        fls, params, fid = refine(ev.on(actx.model), objective, actx, fls, params, fid, say,
                                  zps, dict(fls) if options.headroom else None)
    reports = []
    if shared:
        params, reports = _share(actx, fls, params, zps, shared,
                                 Picker(method, actx.static, options), say, share_zero)
        fid = ev.on(actx.model).score(actx.build(fls, params, zps), params)
        say(f"with shared weights: {fid.text()}")
    treports = []
    if tern:
        params, treports = _ternarize(actx, fls, params, zps, tern, ternary_mode,
                                      Picker(method, actx.static, options), say)
        fid = ev.on(actx.model).score(actx.build(fls, params, zps), params)
        say(f"with ternary weights: {fid.text()}")
    # The final formats' statistics on the whole calibration batch (and the progress lines).
    spec, _ = actx.data_pass(params, Picker(method, actx.static, options), fls, zps=zps)
    spec.options = options
    spec.params = {**changed_params(model, params), **fill.changed_clips(model, actx.model)}
    record_shares(spec, shared or index_bits(treports))
    return SearchResult(spec, with_params(model, spec), fid, paper, objective, fell_back,
                        reports, treports)


def _share(ctx: _Search, fls: dict[str, int], params: dict[str, Params],
           zps: dict[str, int], bits: dict[str, int], picker: Picker,
           say: Callable[[str], None], zero: bool = True
           ) -> tuple[dict[str, Params], list[ShareReport]]:
    """Weight sharing (:mod:`.weight_sharing`) of the layers in ``bits`` with the map
    formats already chosen (``fls``, ``zps``), a codebook entry at 0 or not (``zero``):
    the parameters with the shared weights and corrected biases (whose fl is picked
    again), and what sharing did per layer."""
    spec = ctx.build(fls, params, zps)
    spec.params = changed_params(ctx.model, params)
    weights, biases, reports = share_model(ctx.model, spec, ctx.x, bits, zero)
    for r in reports:
        say(f"shared {r.layer}: {r.distinct} values ({r.bits}-bit indices), response SQNR "
            f"{r.sqnr_fixed_db:.1f} dB fixed point, {r.sqnr_kmeans_db:.1f} k-means, "
            f"{r.sqnr_db:.1f} refined")
    params = dict(params)
    for n, w in weights.items():
        p = replace(params[n], w=w, b=biases[n])
        params[n] = replace(p, fl_b=ctx.bias_fl(p, ctx.widths[n].bw_b, picker))
    return params, reports


def _ternarize(ctx: _Search, fls: dict[str, int], params: dict[str, Params],
               zps: dict[str, int], names: list[str], mode: str, picker: Picker,
               say: Callable[[str], None]) -> tuple[dict[str, Params], list[TernaryReport]]:
    """Ternary weights (:mod:`.ternary`) in the layers ``names`` with the map formats
    already chosen (``fls``, ``zps``): the parameters with the ternary weights, their
    formats (the symmetric form's 2-bit weights: ``ctx.widths`` changed) and corrected
    biases (whose fl is picked again), and what ternarization did per layer."""
    spec = ctx.build(fls, params, zps)
    spec.params = changed_params(ctx.model, params)
    done, biases = ternarize_model(ctx.model, spec, ctx.x, names, mode)
    params, widths = dict(params), dict(ctx.widths)
    for n, t in done.items():
        r = t.report
        say(f"ternary {n}: values {r.values}, threshold {r.threshold:.2f} max|w|, response "
            f"SQNR {r.sqnr_fixed_db:.1f} dB fixed point, {r.sqnr_ttq_db:.1f} TTQ threshold "
            f"and mean scales, {r.sqnr_db:.1f} fitted")
        widths[n] = replace(widths[n], bw_w=t.bw_w)
        p = replace(params[n], w=t.weights, b=biases[n], fl_w=t.fl_w, ch=t.ch_fl)
        params[n] = replace(p, fl_b=ctx.bias_fl(p, widths[n].bw_b, picker))
    ctx.widths = widths
    return params, [t.report for t in done.values()]


def search(model: Model, calib: np.ndarray, bits: str = "8", method: str = "greedy",
           overrides: dict | None = None, progress: Callable[[str], None] | None = None,
           options: QuantOptions | None = None,
           share: int | str | dict | None = None, ternary: str | list[str] | None = None,
           ternary_mode: str = "asymmetric", share_zero: bool = True) -> QuantSpec:
    """The spec of :func:`search_model` (whose ``model`` holds any adjusted parameters)."""
    return search_model(model, calib, bits, method, overrides, progress, options, share,
                        ternary, ternary_mode, share_zero).spec
