"""ONNX in and out: :func:`load_onnx` (the reader, :mod:`.reader`, and its passes,
:mod:`.passes`) and :func:`save_onnx` / :func:`to_onnx` (:mod:`.write`)."""

from .reader import DATA_OPS, READER_OPS, SUPPORTED_OPS, load_onnx
from .write import WRITE_OPSET, save_onnx, to_onnx

__all__ = ["DATA_OPS", "READER_OPS", "SUPPORTED_OPS", "WRITE_OPSET", "load_onnx",
           "save_onnx", "to_onnx"]
