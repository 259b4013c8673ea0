"""Lowering: fold a global average pool into the Linear layer that reads it.

A mean over the H x W map followed by a Linear is itself one Linear on the flattened map::

    Linear(W)(mean_p x[c, p]) = Linear(W')(flatten(x)),   W'[o, c*H*W + p] = W[o, c] / (H*W)

(flatten is C, H, W order, so position ``p`` of channel ``c`` is column ``c*H*W + p``). The
integer model and the quantizer work on the lowered graph (docs/arithmetic.md, "Average
pooling and global average pooling"): quantizing ``W'`` instead of rounding the mean saves
one rounding, and the engine, which cannot average, runs a Linear on a map as it is. The cost
is ``H*W`` times the Linear's products and weights (small next to the convolutions).

Pattern folded: a :class:`GlobalAvgPool`, or an :class:`AvgPool2d` whose window is its whole
input (kernel ``(H, W)``, no padding, a 1 x 1 output: any stride, ceil mode or
``count_include_pad`` then gives the plain mean), read only by a :class:`Flatten` that is
read only by a :class:`Linear`. The pool disappears, the Flatten (same name) reads the
pool's input and the Linear (same name and bias) gets ``W'``. Anything else (a pool at the
end of the model, one read by several layers or by a Conv, a partial window) is left as it
is. Layer names with a format of their own are unchanged, so a ``Q.yaml`` names the same
layers either way.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .ir import AvgPool2d, Flatten, GlobalAvgPool, Layer, Linear, Model


def is_global_pool(layer: Layer, in_shape: tuple[int, ...]) -> bool:
    """True for a GlobalAvgPool, or an AvgPool2d whose one window is its whole input."""
    if isinstance(layer, GlobalAvgPool):
        return True
    if not isinstance(layer, AvgPool2d) or len(in_shape) != 3:
        return False
    return (tuple(layer.kernel) == tuple(in_shape[1:]) and not any(layer.pads)
            and tuple(layer.out_shape[1:]) == (1, 1))


def expanded_weight(weight: np.ndarray, hw: int) -> np.ndarray:
    """``W'`` of the module docstring: each column of ``weight`` (M, C) divided by ``hw``
    and repeated ``hw`` times, (M, C*hw) float32."""
    return np.repeat(np.asarray(weight, np.float64) / hw, hw, axis=1).astype(np.float32)


def foldable(model: Model) -> list[tuple[Layer, Flatten, Linear]]:
    """The (pool, flatten, linear) triples :func:`lower` folds, in network order."""
    readers: dict[str, list[Layer]] = {}
    for layer in model.layers:
        for t in layer.inputs:
            readers.setdefault(t, []).append(layer)

    def only_reader(tensor: str) -> Layer | None:
        r = readers.get(tensor, [])
        return r[0] if len(r) == 1 else None

    out = []
    for layer in model.layers:
        if not isinstance(layer, (GlobalAvgPool, AvgPool2d)) or \
                not is_global_pool(layer, model.in_shapes(layer)[0]):
            continue
        flat = only_reader(layer.name)
        fc = only_reader(flat.name) if isinstance(flat, Flatten) else None
        if isinstance(fc, Linear):
            out.append((layer, flat, fc))
    return out


def lower(model: Model) -> Model:
    """``model`` with every foldable average pool folded into its Linear (see the module
    docstring); ``model`` itself when there is none, so ``lower(lower(m)) is lower(m)``."""
    folds = foldable(model)
    if not folds:
        return model
    pools = {pool.name for pool, _, _ in folds}
    new: dict[str, Layer] = {}
    for pool, flat, fc in folds:
        _, h, w = model.in_shapes(pool)[0]
        new[flat.name] = replace(flat, inputs=(pool.inputs[0],))
        new[fc.name] = replace(fc, weight=expanded_weight(fc.weight, h * w))
    layers = [new.get(layer.name, layer) for layer in model.layers if layer.name not in pools]
    return model.with_layers(layers)
