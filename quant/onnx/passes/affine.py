"""BatchNorm folding: an ``Affine`` (an inference BatchNormalization, or a per-channel
Mul/Add/Sub/Div with a constant) folds into the compute layer before it when nothing else
reads that layer's output: its output channels are scaled and its bias becomes
``bias * scale + shift``. One that cannot fold stays an ``Affine`` layer."""

from __future__ import annotations

import numpy as np

from ...ir import Affine
from ..graph import ImportGraph


def fold_affine(g: ImportGraph) -> None:
    """Fold every foldable Affine, in order (a chain of them folds one by one)."""
    for a in g.held(Affine):
        prev = g.layers.get(a.inputs[0])
        if prev is None or not prev.compute or g.reads(prev.name) != 1:
            continue
        scale, shift = g.exact.pop(a.name)
        w = prev.weight_array().astype(np.float64)
        setattr(prev, prev.weight_param,
                (w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.float32))
        b = prev.bias_array().astype(np.float64)
        setattr(prev, prev.bias_param, (b * scale + shift).astype(np.float32))
        g.bypass(a)
