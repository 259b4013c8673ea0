"""Reading an ONNX file: the protobuf, its names, its opset, its data input, and weights held
in external data files (memory-mapped, not copied)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from dynfix.errors import DynfixError
from .fold import one_line

_EXT_DTYPES = {TensorProto.FLOAT: "<f4", TensorProto.DOUBLE: "<f8", TensorProto.FLOAT16: "<f2",
               TensorProto.INT64: "<i8", TensorProto.INT32: "<i4"}


def read(path: Path) -> onnx.ModelProto:
    """The model in ``path`` (external data not loaded), with valid names."""
    if not path.is_file():
        raise DynfixError(f"model file {str(path)!r} does not exist")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError, onnx ValueError/OSError
        raise DynfixError(f"cannot read {path.name}: not a valid ONNX file "
                          f"({one_line(e)})") from None
    if not proto.graph.node:
        raise DynfixError(f"{path.name}: the ONNX graph has no nodes (not an ONNX model?)")
    check_names(proto.graph, path.name)
    return proto


def check_names(graph: onnx.GraphProto, name: str) -> None:
    """Protobuf hands out invalid UTF-8 in string fields as bytes: reject such files."""
    texts = [graph.name]
    for node in graph.node:
        texts += [node.name, node.op_type, node.domain, *node.input, *node.output]
        texts += [a.name for a in node.attribute]
    texts += [t.name for t in graph.initializer]
    texts += [v.name for v in (*graph.input, *graph.output)]
    if not all(isinstance(t, str) for t in texts):
        raise DynfixError(f"{name}: corrupt ONNX file (a name is not valid UTF-8 text)")


def opset(proto: onnx.ModelProto, name: str) -> int:
    """The model's ai.onnx opset."""
    versions = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise DynfixError(f"{name}: the model declares no ai.onnx opset")
    return int(versions[0])


def input_shape(graph: onnx.GraphProto, name: str, inits: set[str]
                ) -> tuple[str, tuple[int, ...]]:
    """The one data input's name and static shape (a symbolic batch taken as 1)."""
    inputs = [i for i in graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise DynfixError(f"{name}: the graph has {len(inputs)} data inputs; dynfix needs "
                          f"exactly one")
    vi = inputs[0]
    tt = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or tt.elem_type != TensorProto.FLOAT:
        raise DynfixError(f"{name}: input {vi.name!r} is not a float32 tensor")
    if not tt.HasField("shape"):
        raise DynfixError(f"{name}: input {vi.name!r} has no shape; dynfix needs a static "
                          f"N x C x H x W (or N x F) input")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    shown = "x".join("?" if d is None else str(d) for d in dims)
    if len(dims) < 2 or any(d is None or d < 1 for d in dims[1:]):
        raise DynfixError(f"{name}: input {vi.name!r} has shape {shown}; dynfix needs a "
                          f"static N x C x H x W (or N x F) input, only N may be symbolic")
    batch = dims[0] if dims[0] and dims[0] > 0 else 1
    return vi.name, (batch,) + tuple(int(d) for d in dims[1:])


def external(t: TensorProto, path: Path) -> np.ndarray:
    """Initializer ``t`` of the model in ``path`` whose data is in an external file."""
    info = {e.key: e.value for e in t.external_data}
    loc = info.get("location", "")
    what = f"{path.name}: tensor {t.name!r}"
    if not loc or Path(loc).is_absolute() or ".." in Path(loc).parts:
        raise DynfixError(f"{what}: invalid external data location {loc!r}")
    dtype = _EXT_DTYPES.get(t.data_type)
    if dtype is None:
        raise DynfixError(f"{what}: external data of type {t.data_type} not supported")
    file = path.parent / loc
    shape = tuple(int(d) for d in t.dims)
    try:
        offset = int(info.get("offset", 0))
        count = int(np.prod(shape, dtype=np.int64))
        size = file.stat().st_size
        if min(shape, default=1) < 0 or offset < 0 \
                or offset + count * np.dtype(dtype).itemsize > size:
            raise DynfixError(f"{what}: external data in {loc!r} is truncated")
        if count == 0:
            return np.zeros(shape, dtype)
        return np.memmap(file, dtype=dtype, mode="r", offset=offset, shape=shape)
    except DynfixError:
        raise
    except (OSError, ValueError) as e:
        raise DynfixError(f"{what}: cannot read external data {loc!r} "
                          f"({one_line(e)})") from None
