"""Reading and writing ``Q.yaml``, the quantization result of ``dynfix quantize``.

Layout: one row per layer with a format, in network order; a compute layer's row has its
weight, bias, input and output formats, an Add's row (``op: add``) its two inputs'
fractional lengths and its output format. Input widths (``bw_in``) are not stored: each is
the width of the tensor the layer reads (an earlier row's ``bw_x``, or ``input_bw``)::

    model: digits
    method: greedy
    options: {criterion: mse, start: max, bias_correction: true, rounding: adaptive, ...}
    bits: '8'
    input_bw: 8
    input_fl: 7
    params: Q.params.npz
    layers:
    - {name: conv1, bw_w: 8, fl_w: 7, bw_b: 16, fl_b: 12, bw_x: 8, fl_in: 7, fl_out: 5,
       acc_bits: 21, sqnr_db: 38.1, saturated: 0}
    - {name: conv2, bw_w: 8, fl_w: 6, ..., ch_fl: [0, 2, 1, 0, ...]}
    - {name: add1, op: add, fl_in: [5, 4], bw_x: 8, fl_out: 4, sqnr_db: 35.2, saturated: 0}

``zp_out`` (optional, default 0) is an output map's offset: ``-2**(bw_x-1)`` for an
*unsigned* map, whose values are ``(q - zp_out) * 2**-fl_out``; ``input_zp`` the input's.
``rounding`` (optional, default ``half_up``) is how a row's data shift rounds:
``half_even`` rounds a value exactly halfway between two steps to the even one.
Input offsets, like input widths, come from the graph. ``ch_fl`` (optional) gives per-output-channel weight formats: channel ``m``'s weights are at
``fl_w + ch_fl[m]``, its bias at ``fl_b + ch_fl[m]`` (:class:`~dynfix.quant.qspec.LayerFormat`).
``share`` (optional, default 0) is the index width of a layer whose weights weight sharing
chose (``--share``): they take at most ``2**share`` values, and ``generate`` may store
them as indices (``w_index_bits``).
``options`` (greedy only) records the search's additions beyond the paper
(:class:`~dynfix.quant.qspec.QuantOptions`); greedy-paper, range and static write none.
``params`` is there when equalization, bias correction, adaptive rounding or weight sharing
chose other integer weights or biases than the nearest rounding of the model's own: it names
an ``.npz`` beside the file with the float values they round to (arrays ``LAYER:weight`` and
``LAYER:bias``, or ``scale``/``shift`` for an Affine), which replace the model's own wherever
the spec is used (``int_model.with_params``; ``IntModel`` applies them). The formats and the
arithmetic mean the same either way. A range-filled model (:mod:`~dynfix.quant.fill`) also
changes Clip bounds (arrays ``LAYER:lo`` / ``LAYER:hi``, 0-d) and has host scales:
``input_scale`` (the input is multiplied by it before it is quantized) and ``output_scale``
(the output is divided by it after it is dequantized), written only when not 1.

Files are written atomically (temporary file, then rename) and deterministically (fixed key
order, no timestamps). :func:`load_qspec` validates the file against the model, *lowered*
(:func:`~dynfix.quant.lower.lower`) as the quantizer and the integer model see it: a Linear
after a folded average pool has the fan-in and the weight shape of ``W / (H*W)`` on the
whole map. The layers listed are the same either way (a pool has no row of its own).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import yaml

from dynfix.errors import DynfixError
from dynfix.fileio import atomic_write_bytes, atomic_write_text
from . import fixed
from .int_model import check_listed, check_spec, is_compute, is_sum
from .ir import Layer, Model, is_placeholder
from .lower import lower
from .qspec import AddFormat, Format, LayerFormat, QuantOptions, QuantSpec

INT_KEYS = ("bw_w", "fl_w", "bw_b", "fl_b", "bw_x", "fl_in", "fl_out", "acc_bits")
ADD_KEYS = ("fl_in", "bw_x", "fl_out")
TOP_KEYS = ("model", "method", "bits", "input_bw", "input_fl", "layers")


def spec_to_dict(spec: QuantSpec) -> dict:
    """Plain, ordered dict of ``spec`` (what Q.yaml and ``--json`` hold)."""
    layers = []
    for f in spec.layers.values():
        row = {"name": f.name}
        if isinstance(f, AddFormat):
            row.update(op="add", fl_in=[int(v) for v in f.fl_in], bw_x=int(f.bw_x),
                       fl_out=int(f.fl_out))
        else:
            row.update({k: int(getattr(f, k)) for k in INT_KEYS})
            if f.ch_fl:
                row["ch_fl"] = [int(v) for v in f.ch_fl]
            if f.share:
                row["share"] = int(f.share)
        if f.zp_out:
            row["zp_out"] = int(f.zp_out)
        if f.rounding != fixed.HALF_UP:
            row["rounding"] = f.rounding
        row["sqnr_db"] = None if f.sqnr_db is None else round(float(f.sqnr_db), 2)
        row["saturated"] = None if f.saturated is None else int(f.saturated)
        layers.append(row)
    d = {"model": spec.model, "method": spec.method}
    if spec.options is not None:
        d["options"] = spec.options.to_dict()
    d.update(bits=str(spec.bits), input_bw=int(spec.input_bw), input_fl=int(spec.input_fl))
    if spec.input_zp:
        d["input_zp"] = int(spec.input_zp)
    for key in ("input_scale", "output_scale"):
        if getattr(spec, key) != 1.0:
            d[key] = float(getattr(spec, key))
    if spec.params:
        d["params"] = sorted(spec.params)
    d["layers"] = layers
    return d


def params_path(path: str | Path) -> Path:
    """Where the adjusted parameters of ``path`` (a Q.yaml) go: ``Q.params.npz`` beside it."""
    path = Path(path)
    return path.with_name(path.stem + ".params.npz")


def param_names(layer: Layer) -> tuple[str, str]:
    """The names of a compute layer's two quantized parameters (weights, bias)."""
    return layer.weight_param, layer.bias_param


class _Flow(dict):
    """A mapping written on one line (the options)."""


class _Row(dict):
    """A ``layers`` row, written on one line even when it holds a list (an Add's fl_in)."""


class _Dumper(yaml.SafeDumper):
    pass


for _cls in (_Row, _Flow):
    _Dumper.add_representer(
        _cls, lambda d, row: d.represent_mapping("tag:yaml.org,2002:map", row,
                                                 flow_style=True))


def save_qspec(spec: QuantSpec, path: str | Path) -> None:
    """Write ``spec`` to ``path`` as YAML, atomically (and its adjusted parameters, if any,
    to :func:`params_path`)."""
    path = Path(path)
    d = spec_to_dict(spec)
    d["layers"] = [_Row(row) for row in d["layers"]]
    if "options" in d:
        d["options"] = _Flow(d["options"])
    if spec.params:
        buf = io.BytesIO()
        np.savez(buf, **{f"{layer}:{k}": v for layer, p in sorted(spec.params.items())
                         for k, v in p.items()})
        atomic_write_bytes(params_path(path), buf.getvalue())
        d["params"] = params_path(path).name
    text = yaml.dump(d, Dumper=_Dumper, sort_keys=False, default_flow_style=None,
                     width=200)  # one line per layer
    atomic_write_text(path, text)


def _int(v, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise DynfixError(f"{where} must be an integer, got {v!r}")
    return v


def _rows(d: dict, source: str) -> dict[str, dict]:
    """The ``layers`` rows by name (each a mapping with a string name, listed once)."""
    if not isinstance(d["layers"], list):
        raise DynfixError(f"{source}: 'layers' must be a list")
    rows: dict[str, dict] = {}
    for i, row in enumerate(d["layers"]):
        if not isinstance(row, dict) or not isinstance(row.get("name"), str):
            raise DynfixError(f"{source}: layers[{i}] needs a 'name'")
        if row["name"] in rows:
            raise DynfixError(f"{source}, layer {row['name']!r}: listed twice")
        rows[row["name"]] = row
    return rows


def _values(row: dict, layer: Layer, where: str) -> dict:
    """A row's integer fields, checked against the kind of layer it describes."""
    op = row.get("op")
    if op not in (None, "add"):
        raise DynfixError(f"{where}: op {op!r} has no format of its own (expected add, or "
                          f"no op for a compute layer)")
    if (op == "add") != is_sum(layer):
        raise DynfixError(f"{where}: the layer is {layer.op!r}; its row must "
                          f"{'' if is_sum(layer) else 'not '}have op: add")
    keys = ADD_KEYS if op == "add" else INT_KEYS
    absent = [k for k in keys if k not in row]
    if absent:
        raise DynfixError(f"{where}: missing key(s) {', '.join(absent)}")
    v = {k: _int(row[k], f"{where}: {k}") for k in keys if k != "fl_in" or op != "add"}
    if op == "add":
        fl_in = row["fl_in"]
        if not isinstance(fl_in, list) or len(fl_in) != 2:
            raise DynfixError(f"{where}: fl_in must be a list of two integers (one per "
                              f"input), got {fl_in!r:.40}")
        v["fl_in"] = tuple(_int(f, f"{where}: fl_in") for f in fl_in)
    ch = row.get("ch_fl", [])
    if op == "add" and "ch_fl" in row:
        raise DynfixError(f"{where}: an Add has no weights, so no ch_fl")
    if not isinstance(ch, list):
        raise DynfixError(f"{where}: ch_fl must be a list of integers (one per output "
                          f"channel), got {ch!r:.40}")
    v["ch_fl"] = tuple(_int(c, f"{where}: ch_fl") for c in ch)
    v["zp_out"] = _int(row.get("zp_out", 0), f"{where}: zp_out")
    if op == "add" and "share" in row:
        raise DynfixError(f"{where}: an Add has no weights, so no share")
    v["share"] = _int(row.get("share", 0), f"{where}: share")
    v["rounding"] = fixed.check_rounding(row.get("rounding", fixed.HALF_UP),
                                         f"{where}: rounding")
    sq = row.get("sqnr_db")
    v.update(sqnr_db=None if sq is None else float(sq), saturated=row.get("saturated"))
    return v


def spec_from_dict(d: dict, model: Model, source: str = "quantization spec") -> QuantSpec:
    """Build and validate a :class:`QuantSpec` from a plain dict (the parsed Q.yaml) against
    ``lower(model)``."""
    if not isinstance(d, dict):
        raise DynfixError(f"{source}: expected a mapping with keys {', '.join(TOP_KEYS)}")
    missing = [k for k in TOP_KEYS if k not in d]
    if missing:
        raise DynfixError(f"{source}: missing key(s) {', '.join(missing)}")
    # A spec written before the reader named placeholder graphs ("pre-alpha", ...) after
    # their files carries the placeholder: the layers below still have to match.
    if d["model"] != model.name and not is_placeholder(str(d["model"])):
        raise DynfixError(f"{source} was made for model {d['model']!r}, not {model.name!r}")
    model = lower(model)
    rows = _rows(d, source)
    check_listed(model, list(rows))
    # Input widths come from the graph: the bw_x of the row that made each tensor.
    widths = {model.input_name: _int(d["input_bw"], f"{source}: input_bw")}
    zps = {model.input_name: _int(d.get("input_zp", 0), f"{source}: input_zp")}
    formats: dict[str, Format] = {}
    for layer in model.layers:
        bw_in = [widths[t] for t in layer.inputs]
        zp_in = [zps[t] for t in layer.inputs]
        widths[layer.name], zps[layer.name] = bw_in[0], zp_in[0]
        if layer.name not in rows:
            continue
        v = _values(rows[layer.name], layer, f"{source}, layer {layer.name!r}")
        widths[layer.name], zps[layer.name] = v["bw_x"], v["zp_out"]
        stats = {"sqnr_db": v["sqnr_db"], "saturated": v["saturated"]}
        if is_sum(layer):
            formats[layer.name] = AddFormat(layer.name, tuple(bw_in), v["fl_in"], v["bw_x"],
                                            v["fl_out"], zp_in=tuple(zp_in),
                                            zp_out=v["zp_out"], rounding=v["rounding"],
                                            **stats)
        else:
            formats[layer.name] = LayerFormat(
                name=layer.name, bw_w=v["bw_w"], fl_w=v["fl_w"], bw_b=v["bw_b"],
                fl_b=v["fl_b"], bw_in=bw_in[0], fl_in=v["fl_in"], bw_x=v["bw_x"],
                fl_out=v["fl_out"], acc_bits=v["acc_bits"], ch_fl=v["ch_fl"],
                zp_in=zp_in[0], zp_out=v["zp_out"], rounding=v["rounding"],
                share=v["share"], **stats)
    layers = {name: formats[name] for name in rows}     # the file's order, checked below
    options = d.get("options")
    spec = QuantSpec(model=str(d["model"]), method=str(d["method"]), bits=str(d["bits"]),
                     input_bw=_int(d["input_bw"], f"{source}: input_bw"),
                     input_fl=_int(d["input_fl"], f"{source}: input_fl"), layers=layers,
                     input_zp=zps[model.input_name],
                     input_scale=_scale(d, "input_scale", source),
                     output_scale=_scale(d, "output_scale", source),
                     options=None if options is None else
                     QuantOptions.from_dict(options, f"{source}: options"))
    check_spec(model, spec)
    order = [layer.name for layer in model.layers if layer.name in layers]
    if order != list(layers):
        raise DynfixError(f"{source}: layers must be listed in network order "
                          f"({', '.join(order)})")
    return spec


def _scale(d: dict, key: str, source: str) -> float:
    """A host scale of the file (1 when absent): a positive finite number."""
    v = d.get(key, 1.0)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or v <= 0:
        raise DynfixError(f"{source}: {key} must be a positive number, got {v!r}")
    return float(v)


def load_qspec(path: str | Path, model: Model) -> QuantSpec:
    """Read a Q.yaml and check that it matches ``model`` (one clear error otherwise)."""
    path = Path(path)
    try:
        d = yaml.safe_load(path.read_text())
    except OSError as e:
        raise DynfixError(f"cannot read {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        at = f" (line {line + 1})" if line is not None else ""
        raise DynfixError(f"{path.name} is not valid YAML{at}") from None
    spec = spec_from_dict(d, model, path.name)
    if d.get("params") is not None:
        if not isinstance(d["params"], str):
            raise DynfixError(f"{path.name}: params must name an .npz file beside it")
        spec.params = load_params(path.parent / d["params"], lower(model),
                                  f"{path.name}: params")
    return spec


def load_params(path: Path, model: Model, where: str) -> dict[str, dict[str, np.ndarray]]:
    """The adjusted parameters in ``path``, checked against the model's compute layers
    (same names and shapes, finite float values; pass the lowered model)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except OSError as e:
        raise DynfixError(f"{where}: cannot read {path.name}: {e.strerror or e}") from None
    except Exception as e:          # numpy raises many types for a corrupt file
        raise DynfixError(f"{where}: {path.name} is not a readable .npz ({e})") from None
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, arr in arrays.items():
        layer_name, _, pname = key.rpartition(":")
        layer = next((l for l in model.layers if l.name == layer_name), None)
        if layer is not None and pname in layer.scalars:
            if arr.shape != () or arr.dtype.kind != "f" or np.isnan(arr):
                raise DynfixError(f"{where}: {key} in {path.name} must be one number "
                                  f"(a Clip bound), got shape {arr.shape} ({arr.dtype})")
            out.setdefault(layer_name, {})[pname] = arr.astype(np.float64)
            continue
        if layer is None or not is_compute(layer) or pname not in param_names(layer):
            raise DynfixError(f"{where}: {path.name} holds {key!r}, which is not a weight or "
                              f"bias of a compute layer of model {model.name!r}")
        own = layer.params().get(pname)
        shape = own.shape if own is not None else (layer.weight.shape[0],)
        if arr.shape != shape or arr.dtype.kind != "f" or not np.all(np.isfinite(arr)):
            raise DynfixError(f"{where}: {key} in {path.name} has shape {arr.shape} "
                              f"({arr.dtype}); the model's is {shape}, finite floats")
        out.setdefault(layer_name, {})[pname] = arr.astype(np.float32)
    return out


def finite_or_none(v: float | None) -> float | None:
    """JSON has no infinity: map non-finite SQNR values to None."""
    return None if v is None or not math.isfinite(v) else v
