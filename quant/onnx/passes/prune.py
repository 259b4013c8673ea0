"""Dead-layer removal: layers whose values nothing reads (a branch whose only use was a
Shape) are dropped."""

from __future__ import annotations

from ..graph import ImportGraph


def prune(g: ImportGraph) -> None:
    """Keep the layers the graph output depends on."""
    needed = {g.output}
    for layer in reversed(list(g.layers.values())):
        if layer.name in needed:
            needed.update(layer.inputs)
        else:
            del g.layers[layer.name]
