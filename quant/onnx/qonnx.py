"""QONNX import: a model whose quantization is marked with QONNX ``Quant`` nodes.

Brevitas (``export_qonnx``), QKeras through qonnx, hls4ml and FINN mark quantization with
custom nodes of domain ``qonnx.custom_op.general`` (older files: ``finn.custom_op.general``):
``Quant`` / ``IntQuant`` (x, scale, zeropt, bitwidth; ``signed``, ``narrow``,
``rounding_mode``) computes ``(clip(round(x / scale + zeropt), lo, hi) - zeropt) * scale``
and ``BipolarQuant`` (x, scale) ``sign(x) * scale`` (0 -> +1). :func:`strip` turns such a
graph into the float graph the reader imports: a Quant on a constant (a weight or a bias)
becomes its dequantized values, which lie exactly on the Quant's grid; a Quant on the data
path becomes an Identity, its format recorded. :func:`import_qonnx` then reads the
QuantSpec off the recorded formats when every scale is a power of two and every zero point
0 (Brevitas' ``*FixedPoint`` quantizers): a Quant of ``b`` bits and scale ``2**-f`` is the
dynamic fixed-point format ``bw = b, fl = f`` (unsigned: the map offset ``-2**(b-1)``).

Binary weights (``BipolarQuant``, or a 1-bit signed Quant) are held in a 2-bit format: the
engine's narrowest weights are 2 bits, and {-1, +1} are exact 2-bit integers, so the
products are the same. A binary activation has no dynfix format (dynfix rounds, it cannot
take a sign) and is refused.

Rounding: dynfix rounds half up (``quant/fixed.py``) and saturates to the full two's
complement range. A ``HALF_UP`` Quant on a map that cannot be negative (after a ReLU)
matches it exactly; ``ROUND`` (half to even) differs by one step where a value lies exactly
halfway, and ``FLOOR``/``CEIL``/... or a signed ``narrow`` map (which never holds
``-2**(b-1)``) differ more: :attr:`QonnxImport.notes` says which nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from dynfix.errors import DynfixError
from .. import fixed
from ..int_model import (bias_array, check_spec, data_bits, has_format, is_compute,
                         weight_array)
from ..ir import Model
from ..lower import lower
from ..qspec import AddFormat, LayerFormat, QuantSpec
from . import file
from .qonnx_graph import QFormat, QonnxGraph, has_quant, strip
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


def _weight_roles(proto: onnx.ModelProto, on_const: set[str]) -> dict[str, tuple[str, str]]:
    """Quant-on-constant output tensor -> (output tensor of the node it is a weight or bias
    of, ``weight`` / ``bias``): a Conv/Gemm/MatMul's input 1 or 2, or the constant of an
    Add after a MatMul (PyTorch's Linear without Gemm)."""
    made = {t: n for n in proto.graph.node for t in n.output}
    roles = {}
    for n in proto.graph.node:
        if n.op_type in ("Conv", "Gemm", "MatMul"):
            for pos, role in ((1, "weight"), (2, "bias")):
                if len(n.input) > pos and n.input[pos] in on_const:
                    roles[n.input[pos]] = (n.output[0], role)
        elif n.op_type == "Add" and len(n.input) == 2:
            for a, b in (n.input, n.input[::-1]):
                if a in on_const and b in made and made[b].op_type == "MatMul":
                    roles[a] = (b, "bias")
    return roles


def _map_owner(model: Model, ir: str) -> str:
    """The formatted layer (or the input) whose format feature map ``ir`` has."""
    while ir != model.input_name:
        layer = model.layer(ir)
        if has_format(layer):
            return ir
        ir = layer.inputs[0]
    return ir


def _spec(model: Model, q: QonnxGraph, tensors: dict[str, str], name: str
          ) -> tuple[QuantSpec, list[str]]:
    """The QuantSpec of the formats of ``q`` on ``model`` (lowered); ``tensors``: ONNX tensor
    -> IR tensor."""
    names = {layer.name for layer in model.layers} | {model.input_name}
    maps: dict[str, QFormat] = {}
    for t, fmt in q.formats.items():
        if t in q.on_const:
            continue
        ir = tensors.get(t)
        if ir not in names:
            raise DynfixError(f"{name}: Quant node {fmt.node} quantizes a tensor that "
                              f"dynfix folded away; it cannot place its format")
        owner = _map_owner(model, ir)
        if owner in maps and maps[owner].map_format() != fmt.map_format():
            raise DynfixError(f"{name}: Quant nodes {maps[owner].node} and {fmt.node} give "
                              f"one feature map ({owner}) two formats")
        maps[owner] = fmt
    params: dict[str, dict[str, QFormat]] = {}
    for t, (layer_out, role) in _weight_roles(q.proto, q.on_const).items():
        if layer_out in tensors:
            params.setdefault(tensors[layer_out], {})[role] = q.formats[t]
    if model.input_name not in maps:
        raise DynfixError(f"{name}: the model input has no Quant node; dynfix needs the "
                          f"input's format (a Quant on the input)")
    bw, fl, zp = maps[model.input_name].map_format()
    cur = {model.input_name: (bw, fl, zp)}
    layers, missing, notes = {}, [], []
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
            bw_w = max(2, w["weight"].bits)             # binary weights held in 2 bits
            fl_w = int(w["weight"].fl)
            if "bias" in w:
                bw_b, fl_b = w["bias"].bits, int(w["bias"].fl)
            else:                                       # a float bias: at the accumulator's
                fl_b = ins[0][1] + fl_w                 # binary point, as wide as it needs
                b = np.abs(bias_array(layer)).max(initial=0.0)
                bw_b = min(32, max(2, int(np.ceil(np.log2(b * 2.0 ** fl_b + 1))) + 2))
            f = LayerFormat(layer.name, bw_w, fl_w, bw_b, fl_b, ins[0][0], ins[0][1], 0, 0, 0,
                            zp_in=ins[0][2])
            if layer.name in maps:
                f.bw_x, f.fl_out, f.zp_out = maps[layer.name].map_format()
            wf = weight_array(layer).astype(np.float64)
            if not np.array_equal(fixed.dequantize(fixed.quantize(wf, bw_w, fl_w), fl_w), wf):
                notes.append(f"layer {layer.name}: weights not on their Quant grid")
            f.acc_bits = fixed.acc_bits(layer.fan_in, data_bits(f), bw_w, bw_b,
                                        f.bias_shift)
            if layer.name not in maps:
                if layer.name != last:
                    missing.append(f"{layer.name} output")
                elif f.acc_bits > 32:
                    missing.append(f"{layer.name} output (its exact {f.acc_bits}-bit "
                                   f"accumulator is wider than 32 bits)")
                else:                                   # the unquantized output: exact
                    f.bw_x, f.fl_out = f.acc_bits, f.fl_in + f.fl_w
        else:
            if layer.name not in maps:
                missing.append(f"{layer.name} output")
                cur[layer.name] = ins[0]
                continue
            bw_x, fl_out, zp_out = maps[layer.name].map_format()
            f = AddFormat(layer.name, tuple(i[0] for i in ins), tuple(i[1] for i in ins),
                          bw_x, fl_out, zp_in=tuple(i[2] for i in ins), zp_out=zp_out)
        layers[layer.name] = f
        cur[layer.name] = (f.bw_x, f.fl_out, f.zp_out)
    if missing:
        raise DynfixError(f"{name}: no Quant node gives the format of "
                          f"{', '.join(missing)}; quantize every weight and feature map "
                          f"(the last layer's output may stay float), or use a search method")
    spec = QuantSpec(model.name, "qonnx", "qonnx", bw, fl, layers, input_zp=zp)
    check_spec(model, spec)
    return spec, notes


def _rounding_notes(q: QonnxGraph) -> list[str]:
    """One line per kind of activation Quant whose arithmetic differs from dynfix's."""
    acts = [f for t, f in q.formats.items() if t not in q.on_const]
    notes = []
    ties = [f.node for f in acts if f.rounding in ("ROUND", "HALF_EVEN")]
    if ties:
        notes.append(f"{len(ties)} activation Quant(s) round half to even (ROUND: "
                     f"{', '.join(ties[:3])}{'...' * (len(ties) > 3)}); dynfix rounds half "
                     f"up: a value exactly halfway between two steps may differ by one step")
    half_up = [f.node for f in acts if f.rounding == "HALF_UP" and f.signed]
    if half_up:
        notes.append(f"signed HALF_UP Quant(s) {', '.join(half_up[:3])} round negative ties "
                     f"away from zero; dynfix rounds them up (toward zero)")
    other = [f"{f.node} ({f.rounding})" for f in acts
             if f.rounding not in ("ROUND", "HALF_EVEN", "HALF_UP")]
    if other:
        notes.append(f"activation Quant(s) {', '.join(other[:3])} do not round to nearest; "
                     f"dynfix rounds half up: results differ by up to one step")
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
                  f"{'...' * (n > 3)}) {'have' if n > 1 else 'has'} a scale that is not one "
                  f"power of two or a nonzero zero point")
        return QonnxImport(model, None, reason)
    tensors = {t: x.ir for t, x in imp.data.items()}
    spec, notes = _spec(lower(model), q, tensors, path.name)
    return QonnxImport(model, spec, notes=notes + _rounding_notes(q))
