"""Opset upgrade: a file older than :data:`MIN_OPSET` goes through onnx's version converter
to :data:`UPGRADE_OPSET` (after the reader has checked its operators, so that an unsupported
operator is named as the file has it)."""

from __future__ import annotations

import re

import onnx
from onnx import version_converter

from dynfix.errors import DynfixError
from ..file import opset
from ..fold import one_line

#: Oldest opset read as is; older files are upgraded to UPGRADE_OPSET by onnx's converter.
MIN_OPSET = 7
UPGRADE_OPSET = 13


def upgrade_opset(proto: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """``proto`` if its opset is at least MIN_OPSET, else its upgrade to UPGRADE_OPSET (with
    a symbolic batch size fixed to 1, which the converter's broadcasting checks need)."""
    version = opset(proto, name)
    if version >= MIN_OPSET:
        return proto
    fixed = onnx.ModelProto()
    fixed.CopyFrom(proto)
    for vi in fixed.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = 1
    try:
        return version_converter.convert_version(fixed, UPGRADE_OPSET)
    except Exception as e:  # RuntimeError (no adapter), onnx's ConvertError, InferenceError
        # "file.h:61: function(): Assertion `...` failed: what" -> "what"
        why = re.sub(r"^\S+:\d+: [\w()]+: (Assertion `.*` failed: )?", "", one_line(e))
        raise DynfixError(f"{name}: opset {version} is older than dynfix reads ({MIN_OPSET} "
                          f"and newer), and onnx's version converter could not upgrade it "
                          f"to opset {UPGRADE_OPSET} ({why}); re-export it with a newer "
                          f"exporter") from None
