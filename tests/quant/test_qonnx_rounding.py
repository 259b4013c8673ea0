"""The rounding mode a QONNX Quant gives the layer whose output it quantizes: ROUND (half to
even) and HALF_UP are honoured, bit-exact against qonnx's executor; a mode dynfix cannot
take falls back to half up and the import says so."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from dynfix.quant.int_model import IntModel
from dynfix.quant.onnx.qonnx import import_qonnx
from qonnx_graphs import cnn, run_qonnx


def _with_act_rounding(mode: str, tmp_path) -> str:
    """The hand-built CNN (``qonnx_graphs.cnn``) with its ReLU's Quant rounding ``mode``."""
    model = cnn().build()
    for n in model.graph.node:
        if n.name == "act_quant":
            for a in n.attribute:
                if a.name == "rounding_mode":
                    a.s = mode.encode()
    path = str(tmp_path / f"cnn_{mode}.onnx")
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("mode,rounding", [("ROUND", "half_even"), ("HALF_EVEN", "half_even"),
                                           ("HALF_UP", "half_up")])
def test_honoured_modes_are_bit_exact(mode, rounding, tmp_path):
    """The conv under a ROUND / HALF_EVEN / HALF_UP Quant rounds half to even / half up,
    and the integer model equals qonnx's execution of the file; no note on that Quant."""
    path = _with_act_rounding(mode, tmp_path)
    imp = import_qonnx(path)
    assert imp.spec.layers["Conv1"].rounding == rounding
    assert not any("act_quant" in n for n in imp.notes)
    x = (2 * np.random.default_rng(4).standard_normal((24, 1, 8, 8))).astype(np.float32)
    im = IntModel(imp.model, imp.spec)
    y = im.dequantize(im.output_name, im.logits(x)).reshape(len(x), -1)
    ref = run_qonnx(onnx.load(path), x).reshape(len(x), -1)
    assert np.abs(ref).max() > 0
    np.testing.assert_array_equal(y, ref)


def test_floor_falls_back_to_half_up_with_a_note(tmp_path):
    """A FLOOR activation Quant: the layer rounds half up, and one note names the node and
    the mode."""
    imp = import_qonnx(_with_act_rounding("FLOOR", tmp_path))
    assert imp.spec.layers["Conv1"].rounding == "half_up"
    assert [n for n in imp.notes if "act_quant (FLOOR)" in n and "half up" in n]
