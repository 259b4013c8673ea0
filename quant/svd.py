"""Low-rank fully connected layers (the paper's VGG16-SVD step), applied before quantization.

A Linear ``y = W x + b`` with ``W`` (M x F) becomes two Linears through a rank-``r`` bottleneck:
``W ~ U_r S_r V_r^T = (U_r S_r^1/2)(S_r^1/2 V_r^T)``. The first (``<name>_svd``, F -> r, no
bias) holds ``S^1/2 V^T``, the second keeps the layer's name (so later layers and the model
output still refer to it) and holds ``U S^1/2`` and the bias. Splitting ``S`` evenly keeps
both factors in a similar range, which suits fixed point. Weights: ``r (M + F)`` instead of
``M F``; worthwhile only when ``r < M F / (M + F)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from dynfix.errors import DynfixError, literal
from .ir import Linear, Model

SUFFIX = "_svd"


@dataclass(frozen=True)
class SvdReport:
    """What one factorization did: weight counts and the relative Frobenius error."""

    layer: str
    rank: int
    params_before: int
    params_after: int
    rel_error: float


def parse_svd(items: list[str]) -> dict[str, int]:
    """``['fc=4', 'fc2=16']`` -> {'fc': 4, 'fc2': 16}."""
    return parse_ranks(items, "svd", "fc=4")


def parse_ranks(items: list[str], key: str, example: str) -> dict[str, int]:
    """``LAYER=RANK`` items -> {layer: rank}, for the option ``key`` (the placeholder its
    errors name: ``svd``, ``lowrank``); each layer once, at least one."""
    out: dict[str, int] = {}
    for item in items:
        m = re.fullmatch(r"\s*([^=\s]+)\s*=\s*(\d+)\s*", item)
        if not m:
            raise DynfixError(f"{{{key}}} {literal(repr(item))}: expected LAYER=RANK (e.g. "
                              f"{example})", (key,))
        if m.group(1) in out:
            raise DynfixError(f"{{{key}}}: layer {literal(repr(m.group(1)))} is given twice",
                              (key,))
        out[m.group(1)] = int(m.group(2))
    if not out:
        raise DynfixError(f"nothing to compress: give at least one {{{key}}} LAYER=RANK",
                          (key,))
    return out


def factor(layer: Linear, rank: int) -> tuple[Linear, Linear, SvdReport]:
    """Split ``layer`` into two thinner Linears through a rank-``rank`` bottleneck."""
    w = layer.weight.astype(np.float64)
    m, f = w.shape
    if not 1 <= rank < min(m, f):
        raise DynfixError(f"{{svd}} {literal(layer.name)}={rank}: rank must be in "
                          f"1..{min(m, f) - 1} for a {f} -> {m} layer", ("svd",))
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    root = np.sqrt(s[:rank])
    first = Linear(layer.name + SUFFIX, tuple(layer.inputs),
                   weight=(root[:, None] * vt[:rank]).astype(np.float32), bias=None)
    second = Linear(layer.name, (first.name,), weight=(u[:, :rank] * root).astype(np.float32),
                    bias=layer.bias)
    err = float(np.sqrt((s[rank:] ** 2).sum() / max((s ** 2).sum(), 1e-300)))
    return first, second, SvdReport(layer.name, rank, m * f, rank * (m + f), err)


def compress(model: Model, ranks: dict[str, int]) -> tuple[Model, list[SvdReport]]:
    """A new model with each named Linear replaced by its rank-r factorization."""
    names = {layer.name for layer in model.layers}
    for name in ranks:
        if name not in names:
            raise DynfixError(f"{{svd}}: model {literal(repr(model.name))} has no layer "
                              f"{literal(repr(name))}", ("svd",))
        if not isinstance(model.layer(name), Linear):
            raise DynfixError(f"{{svd}}: layer {literal(repr(name))} is a "
                              f"{model.layer(name).op}, not a fully connected (Linear) layer",
                              ("svd",))
        if name + SUFFIX in names:
            raise DynfixError(f"{{svd}}: layer name {literal(repr(name + SUFFIX))} is already "
                              f"taken", ("svd",))
    layers, reports = [], []
    for layer in model.layers:
        if layer.name in ranks:
            first, second, rep = factor(layer, ranks[layer.name])
            layers += [first, second]
            reports.append(rep)
        else:
            layers.append(layer)
    return model.with_layers(layers), reports
