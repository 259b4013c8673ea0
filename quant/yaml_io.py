"""dynfix's own model format: ``model.yaml`` (the layers) + ``model.npz`` (the weights).

The YAML names the model and its input and lists the layers in order; each layer has a
``name``, an ``op`` (an IR op: conv, linear, relu, clip, maxpool, avgpool, gap, flatten,
affine, add, concat, softmax, sigmoid, leaky_relu, resize), its ``inputs`` (tensor names:
the model input or earlier layers; an ``add`` has two, a ``concat`` two or more), its
attributes (the IR fields, e.g. ``stride: [1, 1]``, ``groups: 8``, ``hi: 6.0``,
``scale: [2, 2]``) and ``params``, which map parameter names to array names in the ``.npz``
(named by ``weights:``, relative to the YAML file). Writing then reading gives back the same
model bit for bit::

    format: dynfix-model
    version: 1
    name: digits
    input: {name: input, shape: [1, 8, 8]}
    weights: digits.npz
    layers:
    - name: conv1
      op: conv
      inputs: [input]
      stride: [1, 1]
      pads: [1, 1, 1, 1]
      dilation: [1, 1]
      params: {weight: conv1.weight, bias: conv1.bias}

The input's ``layout`` (``NHWC``, ``NCW``, ``NWC``: how the user's data is laid out,
``Model.input_layout``) is written only when it is not the default ``NCHW``, and the host's
input normalization (``Model.input_affine``) only when the model has one, as
``affine: {scale: <array>, shift: <array>}`` naming its two arrays in the ``.npz``. Every
attribute is written, except a conv's ``groups`` when it is 1 (attributes added to
format version 1 later are written only when they differ from their default, so a plain
chain's file stays what earlier dynfix versions wrote and read). Both files are written
atomically and deterministically (the ``.npz`` carries no timestamps). Schema errors name
the file, the layer and the field.
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
from pathlib import Path

import numpy as np
import yaml

from dynfix.errors import DynfixError
from dynfix.fileio import atomic_write_bytes, atomic_write_text
from .ir import LAYER_TYPES, LAYOUTS, Layer, Model

FORMAT = "dynfix-model"
VERSION = 1
MAX_DIM = 1 << 31
_BASE_FIELDS = {"name", "inputs", "out_shape"}
_TOP_KEYS = {"format", "version", "name", "input", "weights", "layers"}
_ADDED_LATER = {"groups": 1}   # attribute -> default: written only when it differs


def _fields(cls: type[Layer]) -> tuple[dict, dict]:
    """(attributes: name -> default, params: name -> required) of a layer class."""
    attrs, params = {}, {}
    for f in dataclasses.fields(cls):
        if f.name in _BASE_FIELDS:
            continue
        if "ndarray" in str(f.type):
            params[f.name] = "None" not in str(f.type)
        else:
            attrs[f.name] = f.default
    return attrs, params


# ----------------------------------------------------------------------------- writing

def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz archive with fixed timestamps, so equal models give equal files."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for key, arr in arrays.items():
            data = io.BytesIO()
            np.lib.format.write_array(data, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data.getvalue())
    return buf.getvalue()


def _plain(v):
    if isinstance(v, (tuple, list)):
        return [_plain(a) for a in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def to_yaml(model: Model, weights_name: str) -> tuple[str, dict[str, np.ndarray]]:
    """The YAML text and the weight arrays (by npz key) of ``model``."""
    layers, arrays = [], {}
    inp = {"name": model.input_name, "shape": list(model.input_shape),
           **({"layout": model.input_layout} if model.input_layout != "NCHW" else {})}
    if model.input_affine is not None:
        inp["affine"] = {}
        for what, arr in zip(("scale", "shift"), model.input_affine):
            arrays[f"input_affine.{what}"] = arr
            inp["affine"][what] = f"input_affine.{what}"
    for layer in model.layers:
        attrs, _ = _fields(type(layer))
        entry = {"name": layer.name, "op": layer.op, "inputs": list(layer.inputs)}
        entry.update({k: _plain(getattr(layer, k)) for k in attrs
                      if k not in _ADDED_LATER or getattr(layer, k) != _ADDED_LATER[k]})
        refs = {}
        for pname, arr in layer.params().items():
            key = f"{layer.name.strip('/').replace('/', '.')}.{pname}"
            if key in arrays:  # two names that differ only in '/' vs '.'
                key = f"{len(layers)}.{key}"
            arrays[key] = arr
            refs[pname] = key
        if refs:
            entry["params"] = refs
        layers.append(entry)
    doc = {"format": FORMAT, "version": VERSION, "name": model.name, "input": inp,
           "weights": weights_name, "layers": layers}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None), arrays


def save_yaml(model: Model, path: str | Path) -> tuple[Path, Path]:
    """Write ``path`` (YAML) and the weights next to it (same stem, ``.npz``)."""
    path = Path(path)
    npz = path.with_suffix(".npz")
    text, arrays = to_yaml(model, npz.name)
    atomic_write_bytes(npz, _npz_bytes(arrays))
    atomic_write_text(path, text)
    return path, npz


# ----------------------------------------------------------------------------- reading

class _Schema:
    """Field checks that name the file, the layer and the field in their errors."""

    def __init__(self, fname: str):
        self.fname = fname

    def fail(self, where: str, msg: str):
        raise DynfixError(f"{self.fname}: {where}: {msg}")

    def mapping(self, v, where: str) -> dict:
        if not isinstance(v, dict):
            self.fail(where, f"expected a mapping, got {type(v).__name__}")
        return v

    def string(self, v, where: str) -> str:
        if not isinstance(v, str) or not v:
            self.fail(where, f"expected a non-empty string, got {v!r:.60}")
        return v

    def ints(self, v, where: str, n: int | None = None, low: int = 0) -> tuple[int, ...]:
        ok = isinstance(v, list) and all(type(a) is int and low <= a < MAX_DIM for a in v)
        if not ok or (n is not None and len(v) != n):
            size = f"{n} " if n is not None else ""
            self.fail(where, f"expected a list of {size}integers >= {low}, got {v!r:.60}")
        return tuple(v)

    def attr(self, v, default, where: str):
        """An attribute value of the same kind as its default (bool, int, float, tuple)."""
        if isinstance(default, bool):
            if not isinstance(v, bool):
                self.fail(where, f"must be true or false, got {v!r:.40}")
            return v
        if isinstance(default, int):
            if type(v) is not int or not 1 <= v < MAX_DIM:
                self.fail(where, f"expected an integer >= 1, got {v!r:.40}")
            return v
        if isinstance(default, float):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                self.fail(where, f"expected a number (.inf allowed), got {v!r:.40}")
            return float(v)
        return self.ints(v, where, len(default), low=0 if where.endswith("'pads'") else 1)


def _layer(s: _Schema, i: int, entry, arrays) -> Layer:
    entry = s.mapping(entry, f"layer {i}")
    name = s.string(entry.get("name"), f"layer {i}: field 'name'")
    where = f"layer {i} ({name!r})"
    op = entry.get("op")
    if not isinstance(op, str) or op not in LAYER_TYPES:
        s.fail(where, f"field 'op' is {op!r:.40}; expected one of {', '.join(LAYER_TYPES)}")
    cls = LAYER_TYPES[op]
    attrs, params = _fields(cls)
    unknown = set(entry) - {"name", "op", "inputs", "params"} - set(attrs)
    if unknown:
        s.fail(where, f"unknown field(s) {', '.join(sorted(map(str, unknown)))} for op {op}")
    inputs = entry.get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(a, str) for a in inputs):
        s.fail(where, "field 'inputs' must be a list of names")
    kw = {key: s.attr(entry[key], default, f"{where}: field {key!r}")
          for key, default in attrs.items() if key in entry}
    refs = s.mapping(entry.get("params", {}), f"{where}: field 'params'")
    if set(refs) - set(params):
        s.fail(where, f"unknown param(s) {', '.join(sorted(map(str, set(refs) - set(params))))}")
    for pname, required in params.items():
        if pname not in refs:
            if required:
                s.fail(where, f"missing param {pname!r}")
            continue
        key = refs[pname]
        if not isinstance(key, str) or key not in arrays:
            s.fail(where, f"param {pname!r} refers to {key!r:.60}, which is not in the "
                          f"weights file")
        kw[pname] = arrays[key]
    return cls(name, tuple(inputs), **kw)


def _read_npz(path: Path, fname: str) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DynfixError(f"{fname}: weights file {path.name!r} does not exist")
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # zipfile/numpy raise many types for corrupt archives
        raise DynfixError(f"cannot read weights {path.name}: corrupt .npz "
                          f"({type(e).__name__})") from None
    for k, a in arrays.items():
        if a.dtype.kind != "f":
            raise DynfixError(f"{path.name}: array {k!r} has type {a.dtype}, expected float")
        if a.dtype != np.float32:
            arrays[k] = a.astype(np.float32)
    return arrays


def load_yaml(path: str | Path) -> Model:
    """Read a dynfix ``.yaml`` model and its ``.npz`` weights."""
    path = Path(path)
    fname = path.name
    if not path.is_file():
        raise DynfixError(f"model file {str(path)!r} does not exist")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        first = str(e).strip().splitlines()
        raise DynfixError(f"cannot read {fname}: not valid YAML "
                          f"({first[0][:120] if first else type(e).__name__})") from None
    s = _Schema(fname)
    doc = s.mapping(doc, "top level")
    if doc.get("format") != FORMAT:
        s.fail("field 'format'", f"expected {FORMAT!r}, got {doc.get('format')!r:.40}")
    if doc.get("version") != VERSION:
        s.fail("field 'version'", f"expected {VERSION}, got {doc.get('version')!r:.40}")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        s.fail("top level", f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    name = s.string(doc.get("name"), "field 'name'")
    inp = s.mapping(doc.get("input"), "field 'input'")
    input_name = s.string(inp.get("name"), "field 'input.name'")
    shape = s.ints(inp.get("shape"), "field 'input.shape'", low=1)
    if not shape:
        s.fail("field 'input.shape'", "must not be empty")
    layout = inp.get("layout", "NCHW")
    if layout not in LAYOUTS:
        s.fail("field 'input.layout'", f"expected one of {', '.join(LAYOUTS)}, got "
                                       f"{layout!r:.40}")
    weights = s.string(doc.get("weights", path.with_suffix(".npz").name), "field 'weights'")
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        s.fail("field 'layers'", "expected a non-empty list")
    arrays = _read_npz(path.parent / weights, fname)
    affine = None
    if "affine" in inp:
        refs = s.mapping(inp["affine"], "field 'input.affine'")
        if set(refs) != {"scale", "shift"}:
            s.fail("field 'input.affine'", f"expected keys scale and shift, got "
                                           f"{', '.join(sorted(map(str, refs))) or 'none'}")
        for what, key in refs.items():
            if not isinstance(key, str) or key not in arrays:
                s.fail(f"field 'input.affine.{what}'", f"refers to {key!r:.60}, which is not "
                                                       f"in the weights file")
        affine = (arrays[refs["scale"]], arrays[refs["shift"]])
    built = [_layer(s, i, e, arrays) for i, e in enumerate(layers)]
    return Model(name, input_name, shape, built, layout, affine)
