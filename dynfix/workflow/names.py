"""Names shown to a person: a short, unique name per layer, and a model's name.

Converters name a node after everything they fused into it: tflite2onnx calls a convolution
with its batch norm and ReLU ``TFLITE2ONNX_FAF_functional_1/activation_1/Relu;functional_1/
batch_normalization_1/FusedBatchNormV3;functional_1/conv2d_1/BiasAdd;...``, hundreds of
characters that push progress lines far past the terminal's width and leave matplotlib no
room for tick labels. :func:`display_names` gives every layer a short unique name for what a
person reads (progress lines, ``summary.md``, plots, command summaries); what a program reads
(``quant.yaml``, ``report.json``) keeps the full names. A model whose names all fit keeps
them as they are.

Converters also leave a placeholder where the model's name goes (``pre-alpha``,
``main_graph``, ...): :func:`model_name` shows the file's name instead.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Any, Callable, Iterator

from dynfix.quant.ir import is_placeholder

#: The longest name shown for a layer: keeps a progress line or a summary row within a
#: terminal's width beside its figures, and leaves room for a plot's tick labels.
DISPLAY_LIMIT = 24
#: What converters put before a node's own name (tflite2onnx: ``TFLITE2ONNX_FAF_`` on the
#: node before a fused activation, ``TFLITE2ONNX_Transpose_`` ...; ONNX: ``onnx::``).
_CONVERTER_PREFIX = re.compile(r"^(?:TFLITE2ONNX_(?:[A-Z][A-Za-z]*_)?|onnx::)")
#: A fused name's part that names the layer's own operation (the part a TFLite name lists
#: among its activation, batch norm and parameters).
_MAIN_PART = re.compile(r"conv|matmul|gemm|dense|fully|linear", re.I)
#: An operation's type as a scope's last segment (``Conv2D``, ``BiasAdd``, ``Relu``,
#: ``Conv__12``): the scope before it names the layer.
_OP_SEGMENT = re.compile(r"^[A-Z][A-Za-z0-9]*(?:_+\d+)?$")
#: Marks a name cut to :data:`DISPLAY_LIMIT` (its tail is kept).
_CUT = ".."


def display_names(model: Any, limit: int = DISPLAY_LIMIT) -> dict[str, str]:
    """Every layer's full name -> the name to show: at most ``limit`` characters and unique.

    ``model``: a model (its layers, in order) or the layer names alone. When every name fits,
    each is shown as it is. Otherwise each name is cut down to what tells the layer apart:
    converter prefixes go, of a fused name (``a;b;c``) the part of the layer's own operation
    stays, the scopes every layer shares and a trailing operation type go, and what is still
    too long keeps its tail. Names that end up alike get the layer's kind (``:relu``) or a
    number (``~2``) after them, in model order."""
    layers = getattr(model, "layers", None)
    names = [layer.name for layer in layers] if layers is not None else list(model)
    ops = [getattr(layer, "op", "") for layer in layers] if layers is not None \
        else [""] * len(names)
    if all(len(n) <= limit for n in names):
        return {n: n for n in names}
    paths = [_path(n) for n in names]
    many = [p[:-1] for p in paths if len(p) > 1]
    common = _common_prefix(many) if len(many) > 1 else []
    short = []
    for full, p in zip(names, paths):
        if len(p) > len(common) and p[:len(common)] == common:
            p = p[len(common):]
        if len(p) > 1 and (_OP_SEGMENT.match(p[-1]) or p[-1].lower() in p[-2].lower()):
            p = p[:-1]
        short.append(_fit("/".join(p) or full, limit))
    return _unique(names, short, ops, limit)


def relabel(names: dict[str, str]) -> Callable[[str], str]:
    """A function that writes every full layer name of ``names`` in a text as its display
    name: for progress lines that lower stages write with the full names."""
    changed = {full: shown for full, shown in names.items() if full != shown}
    if not changed:
        return lambda text: text
    # Longest first: a name that holds another is replaced whole.
    pattern = re.compile("|".join(re.escape(n) for n in sorted(changed, key=len,
                                                                 reverse=True)))
    return lambda text: pattern.sub(lambda m: changed[m.group(0)], text)


def model_name(name: str, source: Any) -> str:
    """The name to show for a model called ``name`` in its file, loaded from ``source`` (a
    path or bundled name; anything else is taken as it is): the file's stem when ``name``
    is a converter's placeholder, else ``name``."""
    if not isinstance(source, (str, Path)) or not is_placeholder(name):
        return name
    stem = Path(source).stem
    return stem if Path(source).suffix and stem else name


def _path(name: str) -> list[str]:
    """The scope segments of the part of ``name`` that names the layer."""
    name = _CONVERTER_PREFIX.sub("", name)
    parts = [p for p in name.split(";") if p.strip("/")] or [name]
    part = next((p for p in parts if _MAIN_PART.search(p)), parts[0])
    return [s for s in part.split("/") if s] or [part]


def _common_prefix(paths: list[list[str]]) -> list[str]:
    first = paths[0]
    n = 0
    while n < len(first) and all(len(p) > n and p[n] == first[n] for p in paths):
        n += 1
    return first[:n]


def _fit(name: str, limit: int) -> str:
    """``name``, or its tail after :data:`_CUT` when it is longer than ``limit``."""
    return name if len(name) <= limit else _CUT + name[len(name) - limit + len(_CUT):]


def _unique(names: list[str], short: list[str], ops: list[str], limit: int
            ) -> dict[str, str]:
    """``names`` -> ``short`` told apart: a name shown as it is keeps it; of the others that
    end up alike, the first in model order keeps the short name and each later one gets its
    layer's kind, else a number."""
    kept = {full for full, base in zip(names, short) if full == base}
    taken = set(kept)
    out = {full: full for full in kept}
    for full, base, op in zip(names, short, ops):
        if full in kept:
            continue
        for tag in _tags(op):
            shown = _fit(base, limit - len(tag)) + tag
            if shown not in taken:
                break
        taken.add(shown)
        out[full] = shown
    return {full: out[full] for full in names}


def _tags(op: str) -> Iterator[str]:
    """What may follow a short name to tell it apart: nothing, ``:kind``, ``~2``, ``~3``..."""
    yield ""
    if op:
        yield f":{op}"
    yield from (f"~{k}" for k in itertools.count(2))
