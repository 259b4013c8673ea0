"""Transpose folding: a Transpose that keeps the batch axis first (NCHW -> NHWC before a
flatten, as Keras exports write it; a :class:`~..graph.HeldTranspose`) folds into the column
order of the Gemm/MatMul weights after the flatten. Element-wise layers between them (ReLU,
Clip) then run on the untransposed tensor, and a Transpose after one composes with it.

A Transpose that keeps every input's values in order makes no held-back layer at all (the
reader views the same tensor differently, ``reader._Tensor``): the channels-first transpose
of an NHWC input, one that moves only unit axes, and one that moves the batch axis of N x F
features."""

from __future__ import annotations

import numpy as np

from dynfix.errors import DynfixError
from ...ir import Flatten, Layer, Linear
from ..graph import HeldTranspose, ImportGraph

#: ONNX operators that may read a held Transpose, or the flattened tensor after one (the
#: reader refuses any other), and where each folds, as messages say it.
TAKES = {"perm": frozenset({"Transpose", "Flatten", "Reshape", "Squeeze", "Relu", "Clip"}),
         "cols": frozenset({"Gemm", "MatMul", "Flatten", "Reshape", "Squeeze", "Relu",
                            "Clip"})}
FOLDS_INTO = {"perm": "into a Flatten/Reshape to N x F that feeds a Gemm/MatMul",
              "cols": "into the Gemm/MatMul that reads the flattened tensor"}


def compose(first: tuple[int, ...], then: tuple[int, ...]) -> tuple[int, ...]:
    """The permutation of ``first`` followed by ``then`` (batch axis included)."""
    return tuple(first[p] for p in then)


def flat_order(shape: tuple[int, ...], perm: tuple[int, ...]) -> np.ndarray:
    """Flat feature j of the tensor of ``shape`` (no batch) transposed by ``perm`` (batch
    first) is feature ``flat_order[j]`` of the untransposed tensor."""
    n = int(np.prod(shape))
    return np.arange(n).reshape(shape).transpose([p - 1 for p in perm[1:]]).reshape(-1)


def fold_transpose(g: ImportGraph) -> None:
    """Fold every held Transpose, in order (one after another composes into the later)."""
    for t in g.held(HeldTranspose):
        if t.perm == tuple(range(len(t.perm))):   # composed back to the identity
            g.bypass(t)
            continue
        src = t.inputs[0]
        carried = _carry(g, t, src, t.perm)
        g.bypass(t)
        for layer in carried:                     # now on the untransposed tensor
            layer.out_shape = layer.infer(g.shape(layer.inputs[0]))


def _carry(g: ImportGraph, start: Layer, src: str, perm: tuple[int, ...]) -> list[Layer]:
    """Push ``perm`` (the transpose of ``src``) through the readers of ``start``; returns
    the element-wise layers it passed, in order."""
    carried, todo = [], [start]
    while todo:
        for reader in g.readers(todo.pop(0).name):
            if isinstance(reader, HeldTranspose):
                reader.perm = compose(perm, reader.perm)
            elif isinstance(reader, Flatten):
                cols = flat_order(g.shape(src), perm)
                if np.any(cols != np.arange(len(cols))):
                    _permute_columns(g, reader, cols)
            elif reader.elementwise:
                carried.append(reader)
                todo.append(reader)
            else:  # the reader checked the readers' operators
                raise AssertionError(f"{reader.op} reads a held Transpose")
    return carried


def _permute_columns(g: ImportGraph, flat: Layer, cols: np.ndarray) -> None:
    """The Linear layers reading ``flat`` (through element-wise layers) take the features
    in the untransposed order."""
    todo = [flat]
    while todo:
        for reader in g.readers(todo.pop(0).name):
            if isinstance(reader, Linear):
                w = reader.weight
                if w.shape[1] != len(cols):
                    raise DynfixError(f"{g.what(reader.name)}: weight takes {w.shape[1]} "
                                      f"features, input has {len(cols)}")
                out = np.empty_like(w)
                out[:, cols] = w
                reader.weight = out
            elif reader.elementwise:
                todo.append(reader)
            else:  # the reader checked the readers' operators
                raise AssertionError(f"{reader.op} reads a transposed flatten")
