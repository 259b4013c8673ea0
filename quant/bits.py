"""Bit widths per layer: the ``--bits`` spec, per-layer overrides and the bias default.

``--bits N`` gives every feature map and every weight ``N`` bits. ``--bits A/B`` gives data
(every feature map, an Add's output included) and conv (grouped and depthwise too) and affine
weights ``A`` bits and fully connected (Linear) weights ``B`` bits: the paper's "8/4".
``--bits A/B/C`` gives data ``A``, conv and affine weights ``B`` and fully connected weights
``C`` bits: ``8/4/4`` is 8-bit maps with 4-bit weights everywhere (two products per ECP5
MULT18X18D, ``hw/ecp5_packed_mul.py``). An
overrides YAML maps a compute layer's name to any of ``bw_w``, ``bw_x``, ``bw_b``, an Add's
name or the model input's name to ``bw_x`` only (the input width).

Bias width default: ``bw_b = min(bw_in + bw_w, 32)``, the width of one product, so the bias is
never the coarsest term of the sum (see docs/arithmetic.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from dynfix.errors import DynfixError
from . import fixed
from .int_model import has_format, is_compute
from .ir import Model

MAX_BIAS_BITS = 32
OVERRIDE_KEYS = ("bw_w", "bw_x", "bw_b")


@dataclass(frozen=True)
class Widths:
    """Bit widths of one compute layer: weights, bias, input and output feature maps.

    An Add has only an output width: its ``bw_w`` and ``bw_b`` are 0 and its ``bw_in`` is
    that of its first input (each input keeps the width of the tensor it is).
    """

    bw_w: int
    bw_b: int
    bw_in: int
    bw_x: int


def parse_bits(text: str) -> tuple[int, int, int]:
    """``'8'`` -> (8, 8, 8); ``'8/4'`` -> (8, 8, 4); ``'8/4/2'`` -> (8, 4, 2): (data, conv
    weights, FC weights)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:/\s*(\d+)\s*(?:/\s*(\d+)\s*)?)?", str(text))
    if not m:
        raise DynfixError(f"bits spec {text!r} is not N, A/B or A/B/C (e.g. 8, 8/4 or 8/4/4)")
    a, b, c = (fixed.check_bits(int(g), f"bits spec {text!r}: width") if g else None
               for g in m.groups())
    return (a, a, b or a) if c is None else (a, b, c)


def load_overrides(path: str | Path | None) -> dict[str, dict[str, int]]:
    """Read an overrides YAML (layer name -> {bw_w, bw_x, bw_b}); ``None`` -> {}."""
    if path is None:
        return {}
    path = Path(path)
    try:
        d = yaml.safe_load(path.read_text())
    except OSError as e:
        raise DynfixError(f"cannot read overrides {path}: {e.strerror or e}") from None
    except yaml.YAMLError:
        raise DynfixError(f"overrides {path.name} is not valid YAML") from None
    if d is None:
        return {}
    if not isinstance(d, dict) or not all(isinstance(v, dict) for v in d.values()):
        raise DynfixError(f"overrides {path.name}: expected a mapping layer -> "
                          f"{{bw_w, bw_x, bw_b}}")
    return {str(k): v for k, v in d.items()}


def layer_widths(model: Model, bits: str, overrides: dict | None = None
                 ) -> tuple[int, dict[str, Widths]]:
    """Input width and :class:`Widths` per compute and Add layer, for a bits spec plus
    overrides; a layer's ``bw_in`` is the width of the tensor it reads."""
    data, conv_w, fc_w = parse_bits(bits)
    overrides = dict(overrides or {})
    formats = {layer.name: layer for layer in model.layers if has_format(layer)}
    for name, ov in overrides.items():
        layer = formats.get(name)
        allowed = OVERRIDE_KEYS if layer is not None and is_compute(layer) else ("bw_x",)
        if layer is None and name != model.input_name:
            raise DynfixError(f"overrides: model {model.name!r} has no compute layer "
                              f"{name!r} (compute and add layers: {', '.join(formats)})")
        bad = [k for k in ov if k not in allowed]
        if bad:
            raise DynfixError(f"overrides, layer {name!r}: unknown key(s) {', '.join(bad)}; "
                              f"allowed: {', '.join(allowed)}")
        for k, v in ov.items():
            if isinstance(v, bool) or not isinstance(v, int):
                raise DynfixError(f"overrides, layer {name!r}: {k} must be an integer")
            fixed.check_bits(v, f"overrides, layer {name!r}: {k}")
    input_bw = overrides.get(model.input_name, {}).get("bw_x", data)
    tensor_bw = {model.input_name: input_bw}
    out: dict[str, Widths] = {}
    for layer in model.layers:
        bw_in = tensor_bw[layer.inputs[0]]
        tensor_bw[layer.name] = bw_in
        if not has_format(layer):
            continue
        ov = overrides.get(layer.name, {})
        bw_x = ov.get("bw_x", data)
        if is_compute(layer):
            bw_w = ov.get("bw_w", fc_w if layer.fully_connected else conv_w)
            bw_b = ov.get("bw_b", min(bw_in + bw_w, MAX_BIAS_BITS))
        else:
            bw_w = bw_b = 0
        out[layer.name] = Widths(bw_w=bw_w, bw_b=bw_b, bw_in=bw_in, bw_x=bw_x)
        tensor_bw[layer.name] = bw_x
    return input_bw, out
