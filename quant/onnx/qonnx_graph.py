"""QONNX graphs into float graphs: :func:`strip` folds the quantization nodes of a QONNX
graph (``Quant``, ``IntQuant``, ``BipolarQuant``, ``Trunc``) and records each one's format;
the reader calls :func:`strip_file` on every file, :mod:`.qonnx` reads the spec off the
formats (its docstring says what each node means and how dynfix's arithmetic compares)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from dynfix.errors import DynfixError
from .. import fixed

#: The domains QONNX quantization nodes are written in.
DOMAINS = frozenset({"qonnx.custom_op.general", "finn.custom_op.general", "finn"})
#: The quantization operators :func:`strip` imports (the inputs each needs).
QUANT_INPUTS = {"Quant": ("x", "scale", "zeropt", "bitwidth"),
                "IntQuant": ("x", "scale", "zeropt", "bitwidth"),
                "BipolarQuant": ("x", "scale"),
                "Trunc": ("x", "scale", "zeropt", "input_bit_width", "output_scale",
                          "output_bit_width")}
#: The rounding modes of a Quant, as numpy functions (qonnx's ``resolve_rounding_mode``).
ROUNDING = {"ROUND": np.round, "HALF_EVEN": np.round, "CEIL": np.ceil, "FLOOR": np.floor,
            "UP": lambda v: np.sign(v) * np.ceil(np.abs(v)), "DOWN": np.fix,
            "HALF_UP": lambda v: np.sign(v) * np.floor(np.abs(v) + 0.5),
            "HALF_DOWN": lambda v: np.sign(v) * np.ceil(np.abs(v) - 0.5)}


@dataclass(frozen=True)
class QFormat:
    """One Quant node's format: ``bits`` wide, ``fl = -log2(scale)`` (None when the scale
    is not one power of two or the zero point is not 0), signed or not, narrow or not,
    its rounding mode, its node's name (for messages) and whether the node is a Trunc."""

    bits: int
    fl: int | None
    signed: bool
    narrow: bool
    rounding: str
    node: str
    trunc: bool = False

    def map_format(self) -> tuple[int, int, int]:
        """(bw, fl, zp) of a feature map in this format (unsigned: the offset qmin(bw))."""
        return self.bits, int(self.fl), 0 if self.signed else fixed.qmin(self.bits)


@dataclass
class QonnxGraph:
    """What :func:`strip` made of a QONNX graph: the float ``proto``, every Quant output
    tensor's format (``formats``), which of those were constants (``on_const``), the
    Quant nodes whose formats are not dynfix formats (``inexact``: scales that are not powers
    of two, nonzero zero points, a scale per channel on a feature map) and, for every Quant
    on a constant whose scales are all powers of two with zero point 0, ``-log2(scale)``
    broadcast to the constant's shape (``const_fl``: per-channel weight formats)."""

    proto: onnx.ModelProto
    formats: dict[str, QFormat] = field(default_factory=dict)
    on_const: set[str] = field(default_factory=set)
    inexact: list[str] = field(default_factory=list)
    const_fl: dict[str, np.ndarray] = field(default_factory=dict)


def is_quant(node: onnx.NodeProto) -> bool:
    """Is ``node`` a QONNX quantization node?"""
    return node.domain in DOMAINS and node.op_type in QUANT_INPUTS


def has_quant(proto: onnx.ModelProto) -> bool:
    """Does the graph hold QONNX quantization nodes?"""
    return any(is_quant(n) for n in proto.graph.node)


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers and Constant nodes' values by tensor name."""
    out = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            for a in n.attribute:
                if a.name == "value":
                    out[n.output[0]] = numpy_helper.to_array(a.t)
    return out


def node_attr(node: onnx.NodeProto, name: str, default):
    """Attribute ``name`` of ``node`` (strings decoded), or ``default``."""
    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def _quant_node(node: onnx.NodeProto, consts: dict[str, np.ndarray], what: str
                ) -> tuple[QFormat, np.ndarray, np.ndarray, bool]:
    """A Quant node's format, scale and zero point (broadcastable arrays) and whether every
    scale is a power of two and every zero point 0 (one scale for the tensor: ``fmt.fl``;
    one per channel: ``fmt.fl`` None)."""
    names = QUANT_INPUTS[node.op_type]
    given = [t for t in node.input]
    if len(given) < len(names) or not all(given[:len(names)]):
        raise DynfixError(f"{what}: needs inputs {', '.join(names)}"
                          f"{' (QONNX Trunc version 2)' * (node.op_type == 'Trunc')}; it has "
                          f"{sum(1 for t in given if t)}")
    for role, t in zip(names[1:], given[1:]):
        if t not in consts:
            raise DynfixError(f"{what}: its {role} input {t!r} is not a constant; dynfix "
                              f"imports Quant nodes with constant {', '.join(names[1:])}")
    scale = np.asarray(consts[given[1]], np.float64)
    if scale.size == 0 or not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        raise DynfixError(f"{what}: its scale must be positive and finite")
    if node.op_type == "BipolarQuant":
        zp, bits, signed, narrow, rounding = np.zeros(1), 1, True, False, "SIGN"
    else:
        zp = np.asarray(consts[given[2]], np.float64)
        b = np.asarray(consts[given[names.index("bitwidth" if "bitwidth" in names
                                                else "output_bit_width")]], np.float64)
        if b.size != 1 or not float(b.reshape(-1)[0]).is_integer() \
                or not 1 <= float(b.reshape(-1)[0]) <= 32:
            raise DynfixError(f"{what}: its bitwidth must be one integer in 1..32, got "
                              f"{b.reshape(-1)[:4].tolist()}")
        bits = int(b.reshape(-1)[0])
        signed = bool(node_attr(node, "signed", 1))
        narrow = bool(node_attr(node, "narrow", 0))
        rounding = str(node_attr(node, "rounding_mode",
                                 "FLOOR" if node.op_type == "Trunc" else "ROUND")).upper()
        if rounding not in ROUNDING:
            raise DynfixError(f"{what}: unknown rounding_mode {rounding!r}; QONNX has "
                              f"{', '.join(ROUNDING)}")
    log = np.log2(scale)
    pot = bool(np.all(log == np.rint(log)) and np.all(zp == 0))
    if node.op_type == "Trunc":     # its output is on the output scale's grid
        log = np.log2(np.asarray(consts[given[4]], np.float64))
        pot = pot and bool(np.all(log == np.rint(log)))
    one = pot and bool(np.all(log == log.reshape(-1)[0]))
    fmt = QFormat(bits, -int(log.reshape(-1)[0]) if one else None, signed, narrow, rounding,
                  node.name or node.output[0], node.op_type == "Trunc")
    return fmt, scale, zp, pot


def quant_values(x: np.ndarray, fmt: QFormat, scale: np.ndarray, zp: np.ndarray
                 ) -> np.ndarray:
    """What a Quant (or BipolarQuant) node computes on ``x``, in float64 (qonnx's
    ``int_quant`` / ``binary_quant``: clip, then round)."""
    x = np.asarray(x, np.float64)
    if fmt.bits == 1 and fmt.signed:
        return np.where(x >= 0, 1.0, -1.0) * scale
    lo = (-(1 << (fmt.bits - 1)) + int(fmt.narrow)) if fmt.signed else 0
    hi = ((1 << (fmt.bits - 1)) - 1) if fmt.signed else (1 << fmt.bits) - 1 - int(fmt.narrow)
    v = np.clip(x / scale + zp, lo, hi)
    return (ROUNDING[fmt.rounding](v) - zp) * scale


def strip(proto: onnx.ModelProto, name: str) -> QonnxGraph:
    """The float graph of a QONNX graph (see the module docstring); every malformed Quant
    node is one DynfixError line."""
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    graph = proto.graph
    consts = _constants(graph)
    out = QonnxGraph(proto)
    nodes = []
    for i, node in enumerate(graph.node):
        if not is_quant(node):
            nodes.append(node)
            continue
        what = f"{name}: node {node.name or f'#{i}'} ({node.op_type})"
        if not node.output or not node.output[0]:
            raise DynfixError(f"{what}: has no output")
        fmt, scale, zp, pot = _quant_node(node, consts, what)
        y = node.output[0]
        out.formats[y] = fmt
        if node.input[0] in consts:
            if node.op_type == "Trunc":
                raise DynfixError(f"{what}: a Trunc on a constant is not supported (dynfix "
                                  f"imports a Trunc after an average pool)")
            v = quant_values(consts[node.input[0]], fmt, scale, zp).astype(np.float32)
            graph.initializer.append(numpy_helper.from_array(v, y))
            consts[y] = v
            out.on_const.add(y)
            if pot:                             # one format per channel is still exact
                fl = -np.rint(np.log2(scale)).astype(np.int64)
                out.const_fl[y] = np.broadcast_to(fl, v.shape)
            else:
                out.inexact.append(fmt.node)
        else:
            if fmt.fl is None:                  # a map has one format
                out.inexact.append(fmt.node)
            if fmt.bits == 1:
                raise DynfixError(f"{what}: a binary (1-bit) activation has no dynfix "
                                  f"format; only binary weights are supported")
            nodes.append(helper.make_node("Identity", [node.input[0]], [y],
                                          (node.name or y) + "_dequant"))
    del graph.node[:]
    graph.node.extend(nodes)
    for vi in list(graph.value_info):       # the Quant outputs' declared types go with them
        if vi.name in out.on_const:
            graph.value_info.remove(vi)
    return out



def strip_file(proto: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """The reader's hook: a QONNX graph's float graph (its Quant nodes folded away)."""
    return strip(proto, name).proto if has_quant(proto) else proto
