"""QONNX import: a model whose quantization is marked with QONNX ``Quant`` nodes.

Brevitas (``export_qonnx``), QKeras through qonnx, hls4ml and FINN mark quantization with
custom nodes of domain ``qonnx.custom_op.general`` (older files: ``finn.custom_op.general``):
``Quant`` / ``IntQuant`` (x, scale, zeropt, bitwidth; ``signed``, ``narrow``,
``rounding_mode``) computes ``(clip(round(x / scale + zeropt), lo, hi) - zeropt) * scale``
and ``BipolarQuant`` (x, scale) ``sign(x) * scale`` (0 -> +1); ``Trunc`` (version 2: x,
scale, zeropt, input bit width, output scale, output bit width), which Brevitas writes after
an average pool, rounds onto the output scale's grid. :func:`strip` turns such a graph into
the float graph the reader imports: a Quant on a constant (a weight or a bias) becomes its
dequantized values, which lie exactly on the Quant's grid; a Quant or Trunc on the data path
becomes an Identity, its format recorded. :func:`import_qonnx` then reads the QuantSpec off
the recorded formats when every scale is a power of two and every zero point 0 (Brevitas'
``*FixedPoint`` quantizers): a Quant of ``b`` bits and scale ``2**-f`` is the dynamic
fixed-point format ``bw = b, fl = f`` (unsigned: the map offset ``-2**(b-1)``). A weight
scale per output channel (``Int8WeightPerChannelFixedPoint``) gives per-channel weight
formats (``LayerFormat.ch_fl``), and the bias Quant that goes with it (scale = input scale x
weight scale) a bias per channel at ``fl_b + ch_fl[m]``. A Trunc after an average pool must
keep the pooled map's format (dynfix's average pool does); one after a global pool that
:func:`~dynfix.quant.lower.lower` folds into the next Linear is dropped with a note (the
fold sums exactly, no mean is rounded).

Binary weights (``BipolarQuant``, or a 1-bit signed Quant) are held in a 2-bit format: the
engine's narrowest weights are 2 bits, and {-1, +1} are exact 2-bit integers, so the
products are the same. A binary activation has no dynfix format (dynfix rounds, it cannot
take a sign) and is refused.

Rounding: a layer's data shift rounds half up or half to even (``LayerFormat.rounding``,
``quant/fixed.py``) and saturates to the full two's complement range. A ``ROUND`` /
``HALF_EVEN`` Quant on a layer's output (Brevitas' default) makes that layer round half to
even, exactly as QONNX; a ``HALF_UP`` Quant on a map that cannot be negative (after a ReLU)
matches half up exactly. A ``Trunc`` that keeps its map's format rounds the mean half to
even (qonnx's ``Trunc`` rounds onto the input's grid with ``np.round`` first), as dynfix's
average pool does on a map written half to even (it rounds in its map's mode). The model
input is quantized on the host half up. What dynfix cannot honour falls back to half up
with a note (:attr:`QonnxImport.notes` says which nodes): a signed ``HALF_UP`` map (negative
ties away from zero), ``FLOOR``/``CEIL``/... (up to one step), a signed ``narrow`` map
(which never holds ``-2**(b-1)``), a ``ROUND`` input Quant (a tie may differ by one step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dynfix.errors import DynfixError
from .. import fixed
from ..int_model import (MAX_CH_FL, bias_array, check_spec, data_bits, has_format,
                         is_compute, is_sum, row_fls, weight_array, weight_integers)
from ..ir import Model
from ..lower import foldable, lower
from ..qspec import AddFormat, LayerFormat, QuantSpec
from . import file
from .qonnx_graph import QFormat, QonnxGraph, has_quant, node_attr, strip
from .reader import _Importer

@dataclass
class QonnxImport:
    """A QONNX model imported: the float model (dequantized weights), the spec read off its
    Quant nodes (None when some scale is not a power of two or some zero point is not 0:
    ``reason`` says which) and what differs from the QONNX model's own arithmetic
    (``notes``, one line each)."""

    model: Model
    spec: QuantSpec | None
    reason: str = ""
    notes: list[str] = field(default_factory=list)


#: Operators between a Quant on a constant and the layer reading it that the import follows
#: (the TorchScript exporter writes a Linear without bias as Transpose(Quant(W)) -> MatMul).
CONST_VIEWS = frozenset({"Transpose", "Identity", "Cast", "Reshape", "Squeeze", "Unsqueeze",
                         "Flatten"})


#: How far (in steps) a weight may lie off its Quant's grid and still be taken as on it: a
#: BatchNormalization that is the identity up to its epsilon, folded in, moves weights by
#: far less; any other folded scale by far more.
GRID_TOLERANCE = 1e-3


class _NotFixedPoint(Exception):
    """The Quant nodes give no dynfix spec (the message says why): search instead."""


@dataclass(frozen=True)
class _Param:
    """A compute layer's weight or bias as a Quant gives it: the Quant's format,
    ``-log2(scale)`` in the shape the layer reads (None: a scale per element reshaped on the
    way, so its channels are unknown) and the axis of the layer's output channels there."""

    fmt: QFormat
    fl: np.ndarray | None
    axis: int


def _weight_roles(q: QonnxGraph) -> dict[str, dict[str, _Param]]:
    """Output tensor of each Conv/Gemm/MatMul -> its ``weight`` and ``bias`` given by Quant
    nodes on constants: its input 1 and 2, or the constant of an Add after a MatMul
    (PyTorch's Linear without Gemm), through :data:`CONST_VIEWS`."""
    made = {t: n for n in q.proto.graph.node for t in n.output}
    src = {t: (t, q.const_fl.get(t)) for t in q.on_const}
    for n in q.proto.graph.node:
        if n.op_type not in CONST_VIEWS or not n.input or n.input[0] not in src:
            continue
        origin, fl = src[n.input[0]]
        if fl is not None and n.op_type == "Transpose":
            fl = np.transpose(fl, node_attr(n, "perm", None))
        elif fl is not None and n.op_type not in ("Identity", "Cast"):
            one = fl.size > 0 and bool(np.all(fl == fl.reshape(-1)[0]))
            fl = fl.reshape(-1)[0] * np.ones((), np.int64) if one else None
        src[n.output[0]] = (origin, fl)
    roles: dict[str, dict[str, _Param]] = {}
    for n in q.proto.graph.node:
        if n.op_type in ("Conv", "Gemm", "MatMul"):
            axis = {"Conv": 0, "MatMul": -1}.get(n.op_type,
                                                 0 if node_attr(n, "transB", 0) else -1)
            for pos, role in ((1, "weight"), (2, "bias")):
                if len(n.input) > pos and n.input[pos] in src:
                    origin, fl = src[n.input[pos]]
                    roles.setdefault(n.output[0], {})[role] = _Param(
                        q.formats[origin], fl, axis if role == "weight" else -1)
        elif n.op_type == "Add" and len(n.input) == 2:
            for a, b in (n.input, n.input[::-1]):
                if a in src and b in made and made[b].op_type == "MatMul":
                    origin, fl = src[a]
                    roles.setdefault(b, {})["bias"] = _Param(q.formats[origin], fl, -1)
    return roles


def _channel_fls(p: _Param, channels: int, what: str) -> np.ndarray:
    """``-log2(scale)`` of each of the layer's ``channels`` output channels (int64): one
    scale for the tensor, or one per output channel."""
    fl = p.fl
    if fl is not None and fl.size and np.all(fl == fl.reshape(-1)[0]):
        return np.full(channels, int(fl.reshape(-1)[0]), np.int64)
    rows = None if fl is None or fl.ndim == 0 else np.moveaxis(fl, p.axis, 0)
    if rows is None or rows.shape[0] != channels or np.any(
            rows.reshape(channels, -1) != rows.reshape(channels, -1)[:, :1]):
        raise _NotFixedPoint(f"Quant node {p.fmt.node} gives {what} a scale that is not one "
                             f"per output channel (dynfix's per-channel formats are)")
    return rows.reshape(channels, -1)[:, 0].astype(np.int64)


def _map_owner(model: Model, ir: str) -> str:
    """The formatted layer (or the input) whose format feature map ``ir`` has."""
    while ir != model.input_name:
        layer = model.layer(ir)
        if has_format(layer):
            return ir
        ir = layer.inputs[0]
    return ir


def _pool_shift(wf: np.ndarray, fl_w: int, ch: np.ndarray, bits: int) -> int:
    """How many bits finer than their Quant's grid a layer's weights are: 0, or ``log2 N``
    when a global average pool of ``N`` (a power of two) cells was folded into them
    (``quant/lower.py``: the weights divided by ``N``, the same integers)."""
    d = ch.reshape((-1,) + (1,) * (wf.ndim - 1))
    for k in range(0, 17):
        v = wf * np.ldexp(1.0, fl_w + k + d)
        if np.array_equal(v, np.rint(v)) and v.min(initial=0) >= fixed.qmin(bits) \
                and v.max(initial=0) <= fixed.qmax(bits):
            return k
    return 0


def _layer_format(layer, w: dict[str, _Param], fin: tuple[int, int, int]
                  ) -> tuple[LayerFormat, list[str]]:
    """A compute layer's format from the Quants on its weight and bias (``w``) and the map
    it reads (``fin``: bw, fl, zp), its output format still to be set; and the notes on
    what differs from the QONNX arithmetic.

    Per-channel power-of-two weight scales are per-channel weight formats: ``fl_w`` the
    coarsest channel's, ``ch_fl`` the others' offsets. A Quant bias (Brevitas' ``Int*Bias``:
    scale = input scale x weight scale, per channel with the weights) is held where channel
    ``m`` is at ``fl_b + ch_fl[m]``, with as many more bits as a coarser channel needs; a
    float bias, or one finer than the accumulator, at the accumulator's binary point."""
    channels = int(weight_array(layer).shape[0])
    wq = w["weight"]
    fls = _channel_fls(wq, channels, f"the weights of {layer.name}")
    fl_w = int(fls.min())
    ch = fls - fl_w
    if ch.max() > MAX_CH_FL:
        raise _NotFixedPoint(f"the weight scales of Quant node {wq.fmt.node} span "
                             f"{int(ch.max())} binades (dynfix's per-channel formats at most "
                             f"{MAX_CH_FL})")
    bw_w = max(2, wq.fmt.bits)                  # binary weights held in 2 bits
    wf = weight_array(layer).astype(np.float64)
    fl_w += _pool_shift(wf, fl_w, ch, bw_w)
    fl_acc = fin[1] + fl_w
    notes = []
    b = bias_array(layer).astype(np.float64).reshape(-1)
    bq = w.get("bias")
    bfl = None if bq is None else _channel_fls(bq, channels, f"the bias of {layer.name}")
    if bfl is not None and int((bfl - ch).max()) <= fl_acc:
        fl_b = int((bfl - ch).max())
        bw_b = bq.fmt.bits + int((fl_b + ch - bfl).max())
    else:                                       # at the accumulator's binary point
        fl_b = fl_acc
        v = np.abs(b) * np.ldexp(1.0, fl_b + ch)
        bw_b = min(32, max(2, int(np.ceil(np.log2(v.max(initial=0.0) + 1))) + 2))
        if not np.array_equal(np.rint(v), v):
            notes.append(f"layer {layer.name}: its {'float' if bq is None else 'fine'} bias "
                         f"is rounded to the accumulator's step (QONNX adds it as it is)")
    f = LayerFormat(layer.name, bw_w, fl_w, bw_b, fl_b, fin[0], fin[1], 0, 0, 0, zp_in=fin[2],
                    ch_fl=tuple(int(c) for c in ch) if ch.any() else ())
    off = np.abs(weight_integers(wf, f) - wf * np.ldexp(1.0, row_fls(fl_w, f.ch_fl, wf)))
    if off.max(initial=0.0) > GRID_TOLERANCE:
        raise _NotFixedPoint(f"the weights of layer {layer.name} are not on the grid of their "
                             f"Quant node {wq.fmt.node} (a BatchNormalization or a scale "
                             f"folded into them)")
    f.acc_bits = fixed.acc_bits(layer.fan_in, data_bits(f), bw_w, bw_b, f.bias_shift)
    return f, notes


def _only_adds_read(model: Model, name: str) -> bool:
    """Is the map ``name`` read (through layers without a format of their own) only by Adds?
    Brevitas leaves a residual branch unquantized up to the Add, whose Quant follows it:
    the branch then keeps its exact accumulator, as QONNX does."""
    readers = [layer for layer in model.layers if name in layer.inputs]
    return bool(readers) and all(
        is_sum(r) if has_format(r) else _only_adds_read(model, r.name) for r in readers)


def _spec(unlowered: Model, q: QonnxGraph, tensors: dict[str, str], name: str
          ) -> tuple[QuantSpec, list[str]]:
    """The QuantSpec of the formats of ``q`` on the lowered model; ``tensors``: ONNX tensor
    -> IR tensor of ``unlowered``."""
    model = lower(unlowered)
    names = {layer.name for layer in model.layers} | {model.input_name}
    pools = {pool.name: pool for pool, _, _ in foldable(unlowered)}
    maps: dict[str, QFormat] = {}
    on_pools: list[tuple[QFormat, str]] = []
    for t, fmt in q.formats.items():
        if t in q.on_const:
            continue
        ir = tensors.get(t)
        if ir in pools:                         # a mean dynfix folds into the next Linear
            on_pools.append((fmt, pools[ir].inputs[0]))
            continue
        if ir not in names:
            raise DynfixError(f"{name}: Quant node {fmt.node} quantizes a tensor that "
                              f"dynfix folded away; it cannot place its format")
        owner = _map_owner(model, ir)
        if owner in maps and maps[owner].map_format() != fmt.map_format():
            raise DynfixError(f"{name}: Quant nodes {maps[owner].node} and {fmt.node} give "
                              f"one feature map ({owner}) two formats")
        if owner not in maps or (maps[owner].trunc and not fmt.trunc):
            maps[owner] = fmt           # the layer rounds as the Quant on its output
    notes = []
    for fmt, inp in on_pools:
        mean = maps.get(_map_owner(model, inp))
        if mean is None or mean.map_format() != fmt.map_format():
            raise DynfixError(f"{name}: node {fmt.node} gives the mean of a global average "
                              f"pool a format other than its input's; dynfix folds that pool "
                              f"into the next Linear, an exact sum with no format of its own")
        notes.append(f"{fmt.node}: the global average pool it rounds is folded into the next "
                     f"Linear, which sums exactly (QONNX rounds the mean first)")
    params = {tensors[t]: p for t, p in _weight_roles(q).items() if t in tensors}
    if model.input_name not in maps:
        raise DynfixError(f"{name}: the model input has no Quant node; dynfix needs the "
                          f"input's format (a Quant on the input)")
    bw, fl, zp = maps[model.input_name].map_format()
    cur = {model.input_name: (bw, fl, zp)}
    layers, missing = {}, []
    last = model.layers[-1].name
    for layer in model.layers:
        ins = [cur[t] for t in layer.inputs]
        if not has_format(layer):
            cur[layer.name] = ins[0]
            continue
        if is_compute(layer):
            w = params.get(layer.name, {})
            if "weight" not in w:
                missing.append(f"{layer.name} weights")
                cur[layer.name] = ins[0]
                continue
            f, note = _layer_format(layer, w, ins[0])
            notes += note
            if layer.name in maps:
                f.bw_x, f.fl_out, f.zp_out = maps[layer.name].map_format()
                f.rounding = _rounding(maps[layer.name])
            elif layer.name != last and not _only_adds_read(model, layer.name):
                missing.append(f"{layer.name} output")
            else:           # the unquantized output, or a residual branch before its Add
                top = max(f.ch_fl, default=0)           # every channel's accumulator, left-
                f.bw_x, f.fl_out = f.acc_bits + top, f.fl_in + f.fl_w + top     # aligned
                if f.bw_x > 32:
                    missing.append(f"{layer.name} output (its exact {f.bw_x}-bit "
                                   f"accumulator is wider than 32 bits)")
        else:
            if layer.name not in maps:
                missing.append(f"{layer.name} output")
                cur[layer.name] = ins[0]
                continue
            bw_x, fl_out, zp_out = maps[layer.name].map_format()
            f = AddFormat(layer.name, tuple(i[0] for i in ins), tuple(i[1] for i in ins),
                          bw_x, fl_out, zp_in=tuple(i[2] for i in ins), zp_out=zp_out,
                          rounding=_rounding(maps[layer.name]))
        layers[layer.name] = f
        cur[layer.name] = (f.bw_x, f.fl_out, f.zp_out)
    if missing:
        raise DynfixError(f"{name}: no Quant node gives the format of "
                          f"{', '.join(missing)}; quantize every weight and feature map "
                          f"(the last layer's output may stay float), or use a search method")
    spec = QuantSpec(model.name, "qonnx", "qonnx", bw, fl, layers, input_zp=zp)
    check_spec(model, spec)
    return spec, notes


#: The QONNX rounding modes a layer's data shift honours, and as which dynfix mode.
HONOURED = {"ROUND": fixed.HALF_EVEN, "HALF_EVEN": fixed.HALF_EVEN,
            "HALF_UP": fixed.HALF_UP}


def _rounding(fmt: QFormat) -> str:
    """The dynfix rounding mode of the layer whose output the Quant ``fmt`` quantizes: half
    to even for ``ROUND`` / ``HALF_EVEN``, half up otherwise (exact for ``HALF_UP`` on a map
    that cannot be negative; :func:`_rounding_notes` states the other differences). A
    ``Trunc`` rounds its mean half to even whatever its mode (qonnx's ``np.round`` onto the
    input's grid comes first)."""
    if fmt.trunc:
        return fixed.HALF_EVEN
    return HONOURED.get(fmt.rounding, fixed.HALF_UP)


def _pool_notes(spec: QuantSpec, model: Model, q: QonnxGraph, tensors: dict[str, str]
                ) -> list[str]:
    """A line for each Trunc whose average pool reads a map written in another rounding
    mode than the Trunc's (dynfix's pool rounds in its map's mode)."""
    notes = []
    lowered = lower(model)
    names = {layer.name for layer in lowered.layers}
    for t, fmt in q.formats.items():
        ir = tensors.get(t)
        if not fmt.trunc or ir not in names:
            continue
        owner = _map_owner(lowered, ir)
        mode = spec.layers[owner].rounding if owner in spec.layers else fixed.HALF_UP
        if mode != _rounding(fmt):
            notes.append(f"{fmt.node}: rounds its mean half to even; dynfix's average pool "
                         f"rounds in the mode of the map it reads ({mode}): a mean exactly "
                         f"halfway may differ by one step")
    return notes


def _rounding_notes(q: QonnxGraph, inputs: list[str]) -> list[str]:
    """One line per kind of activation Quant (or Trunc) whose arithmetic differs from
    dynfix's; ``inputs``: the tensors of the Quants on the model input."""
    acts = [f for t, f in q.formats.items() if t not in q.on_const]
    notes = []
    ties = [q.formats[t].node for t in inputs
            if q.formats[t].rounding in ("ROUND", "HALF_EVEN")]
    if ties:
        notes.append(f"input Quant {ties[0]} rounds half to even; dynfix quantizes the "
                     f"input on the host half up: an input exactly halfway between two "
                     f"steps may differ by one step")
    half_up = [f.node for f in acts if f.rounding == "HALF_UP" and f.signed]
    if half_up:
        notes.append(f"signed HALF_UP Quant(s) {', '.join(half_up[:3])} round negative ties "
                     f"away from zero; dynfix rounds them up (toward zero)")
    other = [f"{f.node} ({f.rounding})" for f in acts
             if f.rounding not in HONOURED and not f.trunc]
    if other:
        notes.append(f"activation Quant/Trunc node(s) {', '.join(other[:3])} do not round "
                     f"to nearest; dynfix rounds half up: results differ by up to one step")
    narrow = [f.node for f in acts if f.narrow]
    if narrow:
        notes.append(f"narrow-range activation Quant(s) {', '.join(narrow[:3])}: dynfix "
                     f"saturates to the full range (one more step at the end)")
    return notes


def import_qonnx(path: str | Path) -> QonnxImport:
    """Import the QONNX file ``path``: the float model and, when every Quant is a
    power-of-two, zero-offset format, the spec read off the Quant nodes."""
    path = Path(path)
    proto = file.read(path)
    if not has_quant(proto):
        raise DynfixError(f"{path.name}: has no QONNX Quant nodes (method qonnx reads the "
                          f"formats from them)")
    q = strip(proto, path.name)
    imp = _Importer(q.proto, path)
    with np.errstate(all="ignore"):
        model = imp.run()
    if q.inexact:
        n = len(q.inexact)
        reason = (f"{n} Quant node{'s' * (n > 1)} ({', '.join(q.inexact[:3])}"
                  f"{'...' * (n > 3)}) {'have' if n > 1 else 'has'} a scale that is not a power "
                  f"of two (one per tensor on a feature map) or a nonzero zero point")
        return QonnxImport(model, None, reason)
    if model.input_affine is not None:      # the engine's input is the normalized one
        return QonnxImport(model, None, "the model input is normalized (a per-channel scale "
                                        "and shift) before its first layer, which the Quant "
                                        "nodes do not give a format")
    tensors = {t: x.ir for t, x in imp.data.items()}
    try:
        spec, notes = _spec(model, q, tensors, path.name)
    except _NotFixedPoint as e:
        return QonnxImport(model, None, str(e))
    notes += _pool_notes(spec, model, q, tensors)
    inputs = [t for t in q.formats if t not in q.on_const and tensors.get(t) == model.input_name]
    return QonnxImport(model, spec, notes=notes + _rounding_notes(q, inputs))
