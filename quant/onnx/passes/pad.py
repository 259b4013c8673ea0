"""Zero-Pad folding: a zero Pad of H and W (a :class:`~..graph.HeldPad`) adds its pads to
the Conv that reads it, or to an AveragePool where the divisor and the output size stay the
same (the pool then counts the padding, as the explicit zeros were counted)."""

from __future__ import annotations

from dataclasses import replace

from dynfix.errors import DynfixError
from ...ir import AvgPool2d, Conv2d
from ..graph import HeldPad, ImportGraph

#: ONNX operators that may read a held Pad (the reader refuses any other), and where it
#: folds, as messages say it.
TAKES = frozenset({"Conv", "AveragePool", "Pad"})
FOLDS_INTO = "into a Conv (or an AveragePool) that reads it"


def _add(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(x + y for x, y in zip(a, b))


def fold_pad(g: ImportGraph) -> None:
    """Fold every held Pad into its readers, in order (a Pad of a Pad merges first)."""
    for pad in g.held(HeldPad):
        for reader in g.readers(pad.name):
            if isinstance(reader, HeldPad):
                reader.pads = _add(reader.pads, pad.pads)
            elif isinstance(reader, AvgPool2d):
                _into_avgpool(g, pad, reader)
            elif isinstance(reader, Conv2d):
                reader.pads = _add(reader.pads, pad.pads)
            else:  # the reader checked the readers' operators
                raise AssertionError(f"{reader.op} reads a held Pad")
        g.bypass(pad)


def _into_avgpool(g: ImportGraph, pad: HeldPad, pool: AvgPool2d) -> None:
    """The Pad into ``pool``; refused where the divisor or the output size would change."""
    what, origin = g.what(pool.name), g.origin[pad.name]
    if any(pool.pads) and not pool.count_include_pad:
        raise DynfixError(f"{what}: reads the output of {origin}; with its own padding "
                          f"and count_include_pad=0 the Pad's zeros cannot be folded in")
    folded = replace(pool, pads=_add(pool.pads, pad.pads), count_include_pad=True)
    if folded.infer(g.shape(pad.inputs[0])) != pool.out_shape:
        raise DynfixError(f"{what}: reads the output of {origin}; folded into this "
                          f"ceil-mode AveragePool it would change the output size")
    pool.pads, pool.count_include_pad = folded.pads, True
