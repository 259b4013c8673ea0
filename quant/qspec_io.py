"""Reading and writing ``Q.yaml``, the quantization result of ``dynfix quantize``.

Layout (layers in network order; ``bw_in`` is not stored, it is the previous layer's
``bw_x`` or ``input_bw``)::

    model: digits
    method: greedy
    bits: '8'
    input_bw: 8
    input_fl: 7
    layers:
    - {name: conv1, bw_w: 8, fl_w: 7, bw_b: 16, fl_b: 12, bw_x: 8, fl_in: 7, fl_out: 5,
       acc_bits: 21, sqnr_db: 38.1, saturated: 0}

Files are written atomically (temporary file, then rename) and deterministically (fixed key
order, no timestamps). :func:`load_qspec` validates the file against the model.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from dynfix.errors import DynfixError
from dynfix.fileio import atomic_write_text
from .int_model import check_spec
from .ir import Model
from .qspec import LayerFormat, QuantSpec

INT_KEYS = ("bw_w", "fl_w", "bw_b", "fl_b", "bw_x", "fl_in", "fl_out", "acc_bits")
TOP_KEYS = ("model", "method", "bits", "input_bw", "input_fl", "layers")


def spec_to_dict(spec: QuantSpec) -> dict:
    """Plain, ordered dict of ``spec`` (what Q.yaml and ``--json`` hold)."""
    layers = []
    for f in spec.layers.values():
        row = {"name": f.name}
        row.update({k: int(getattr(f, k)) for k in INT_KEYS})
        row["sqnr_db"] = None if f.sqnr_db is None else round(float(f.sqnr_db), 2)
        row["saturated"] = None if f.saturated is None else int(f.saturated)
        layers.append(row)
    return {"model": spec.model, "method": spec.method, "bits": str(spec.bits),
            "input_bw": int(spec.input_bw), "input_fl": int(spec.input_fl), "layers": layers}


def save_qspec(spec: QuantSpec, path: str | Path) -> None:
    """Write ``spec`` to ``path`` as YAML, atomically."""
    path = Path(path)
    text = yaml.safe_dump(spec_to_dict(spec), sort_keys=False, default_flow_style=None,
                          width=200)  # one line per layer
    atomic_write_text(path, text)


def _int(v, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise DynfixError(f"{where} must be an integer, got {v!r}")
    return v


def spec_from_dict(d: dict, model: Model, source: str = "quantization spec") -> QuantSpec:
    """Build and validate a :class:`QuantSpec` from a plain dict (the parsed Q.yaml)."""
    if not isinstance(d, dict):
        raise DynfixError(f"{source}: expected a mapping with keys {', '.join(TOP_KEYS)}")
    missing = [k for k in TOP_KEYS if k not in d]
    if missing:
        raise DynfixError(f"{source}: missing key(s) {', '.join(missing)}")
    if d["model"] != model.name:
        raise DynfixError(f"{source} was made for model {d['model']!r}, not {model.name!r}")
    if not isinstance(d["layers"], list):
        raise DynfixError(f"{source}: 'layers' must be a list")
    bw = _int(d["input_bw"], f"{source}: input_bw")
    layers: dict[str, LayerFormat] = {}
    for i, row in enumerate(d["layers"]):
        if not isinstance(row, dict) or "name" not in row:
            raise DynfixError(f"{source}: layers[{i}] needs a 'name'")
        where = f"{source}, layer {row['name']!r}"
        absent = [k for k in INT_KEYS if k not in row]
        if absent:
            raise DynfixError(f"{where}: missing key(s) {', '.join(absent)}")
        if row["name"] in layers:
            raise DynfixError(f"{where}: listed twice")
        v = {k: _int(row[k], f"{where}: {k}") for k in INT_KEYS}
        sq = row.get("sqnr_db")
        layers[row["name"]] = LayerFormat(
            name=row["name"], bw_w=v["bw_w"], fl_w=v["fl_w"], bw_b=v["bw_b"], fl_b=v["fl_b"],
            bw_in=bw, fl_in=v["fl_in"], bw_x=v["bw_x"], fl_out=v["fl_out"],
            acc_bits=v["acc_bits"], sqnr_db=None if sq is None else float(sq),
            saturated=row.get("saturated"))
        bw = v["bw_x"]
    spec = QuantSpec(model=str(d["model"]), method=str(d["method"]), bits=str(d["bits"]),
                     input_bw=_int(d["input_bw"], f"{source}: input_bw"),
                     input_fl=_int(d["input_fl"], f"{source}: input_fl"), layers=layers)
    check_spec(model, spec)
    order = [layer.name for layer in model.layers if layer.name in layers]
    if order != list(layers):
        raise DynfixError(f"{source}: layers must be listed in network order "
                          f"({', '.join(order)})")
    return spec


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
    return spec_from_dict(d, model, path.name)


def finite_or_none(v: float | None) -> float | None:
    """JSON has no infinity: map non-finite SQNR values to None."""
    return None if v is None or not math.isfinite(v) else v
