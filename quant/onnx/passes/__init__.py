"""The importer's passes, in the order they run (see ``docs/architecture.md``, "Adding an
import pass").

:data:`FILE_PASSES` rewrite the ONNX model before the reader walks it; :data:`GRAPH_PASSES`
rewrite the reader's :class:`~..graph.ImportGraph` (IR layers, with held-back transforms
still in it) into the model. A pass that folds a held-back transform also says which ONNX
operators may read what it holds (:data:`HELD`): the reader checks that while it walks, so
an import that cannot fold is refused at the node that reads the transform.
"""

from __future__ import annotations

from . import pad, transpose
from .affine import fold_affine, hoist_input_affine
from .pad import fold_pad
from .prune import prune
from .transpose import fold_transpose
from .upgrade import MIN_OPSET, UPGRADE_OPSET, upgrade_opset

FILE_PASSES = (upgrade_opset,)
GRAPH_PASSES = (fold_affine, fold_pad, fold_transpose, prune, hoist_input_affine)

#: Held-back transform -> (ONNX operators that may read it, where it folds).
HELD = {"pad": (pad.TAKES, pad.FOLDS_INTO),
        **{kind: (transpose.TAKES[kind], transpose.FOLDS_INTO[kind])
           for kind in transpose.TAKES}}

__all__ = ["FILE_PASSES", "GRAPH_PASSES", "HELD", "MIN_OPSET", "UPGRADE_OPSET",
           "fold_affine", "fold_pad", "fold_transpose", "hoist_input_affine", "prune",
           "upgrade_opset"]
