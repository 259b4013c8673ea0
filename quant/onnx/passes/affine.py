"""BatchNorm folding: an ``Affine`` (an inference BatchNormalization, or a per-channel
Mul/Add/Sub/Div with a constant) folds into the compute layer before it when nothing else
reads that layer's output: its output channels are scaled and its bias becomes
``bias * scale + shift``. One that cannot fold stays an ``Affine`` layer, unless it is the
only reader of the model input (a BatchNorm, Normalization or Rescaling of the data, nothing
before it to fold into): :func:`hoist_input_affine` then makes it the host's normalization of
the input (``Model.input_affine``), applied where the data comes in, so the engine starts at
the layer after it."""

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


def hoist_input_affine(g: ImportGraph) -> None:
    """Move an Affine that alone reads the model input (and is not the output) into
    ``g.input_affine``; its readers then read the input. After :func:`fold_affine`, so a
    chain of them at the input is one Affine already (its float32 parameters: the folds
    changed those, not its ``g.exact`` entry)."""
    readers = g.readers(g.input)
    a = readers[0] if len(readers) == 1 else None
    if not isinstance(a, Affine) or g.output in (g.input, a.name):
        return
    g.exact.pop(a.name, None)
    g.input_affine = (np.array(a.scale, np.float32), np.array(a.shift, np.float32))
    g.bypass(a)
