"""What every layer kind is: the :class:`Layer` base, its property flags and the registry.

A layer kind is one class in one module of this package. The class is the IR dataclass and
carries everything the rest of dynfix asks about the kind: its shape rule (:meth:`Layer.infer`),
its float forward (:meth:`Layer.forward`), its integer forward (:meth:`Layer.forward_int`
for the layers without a format of their own; the compute layers give their products in
:meth:`Compute.products`), how it is written as ONNX (:meth:`Layer.onnx_nodes`), how the
engine's compiler plans it (:class:`EngineRole`) and its properties as class flags; the
module also holds the import handlers of the ONNX operators that become the kind
(:func:`onnx_import`). The models, the search, the adjustments and the writer read
these instead of testing classes. :func:`register` enters a kind in :data:`KINDS` under
its ``op`` (the name ``model.yaml`` files use).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol

import numpy as np

from dynfix.errors import DynfixError

if TYPE_CHECKING:
    import onnx

Shape = tuple[int, ...]
#: ``param(suffix, array) -> initializer name``: how an ONNX writer hands a layer's arrays.
ParamWriter = Callable[[str, np.ndarray], str]


class Importer(Protocol):
    """What an ONNX import handler may ask of the reader (``quant/onnx/reader.py``).

    A data-path tensor (``Tensor``) has ``shape`` (the ONNX shape), ``dims`` (the shape of
    the IR tensor that holds it, without the batch: ``(F,)`` or ``(C, H, W)``; a 1-D
    N x C x L tensor is the map C x 1 x L), ``axes`` (what each ONNX axis is: the batch,
    -1; an axis of ``dims``; or None, a unit axis the IR tensor does not have), ``ir`` (the
    IR layer, held-back transform or input holding it) and ``held`` (the kind of held-back
    transform it carries, if any; ``origin``: the node that left it). Handlers make layers
    without folding anything into another layer: the passes do that
    (``quant/onnx/passes``).
    """

    opset: int
    #: ONNX tensor name -> data tensor, for the tensors computed so far.
    data: dict[str, Any]

    def x(self, node: onnx.NodeProto, pos: int = 0) -> Any:
        """The data tensor read at input ``pos``."""

    def attrs(self, node: onnx.NodeProto, what: str) -> Any:
        """The node's attributes (``.int``, ``.float``, ``.ints``, ``.text``)."""

    def weights(self, name: str, what: str, rank: int | None = None) -> np.ndarray:
        """A constant float32 parameter (of ``rank`` dimensions if given)."""

    def opt(self, node: onnx.NodeProto, pos: int, what: str) -> np.ndarray | None:
        """The optional parameter at input ``pos``, or None."""

    def const(self, name: str, what: str) -> np.ndarray:
        """A constant input's value."""

    def scalar(self, node: onnx.NodeProto, pos: int, what: str, default: float) -> float:
        """An optional constant scalar input."""

    def const_axes(self, node: onnx.NodeProto, what: str, pos: int = 1) -> list[int] | None:
        """The ``axes`` attribute, or the constant axes input at ``pos``."""

    def pair(self, v, what: str, attr: str) -> tuple[int, int]:
        """Two positive integers (strides, dilations)."""

    def window(self, node: onnx.NodeProto, x, kernel, what: str, op: str) -> dict:
        """A Conv's or pool's 1-D or 2-D window (``kernel``: the node's, over the data's
        spatial axes) as the 2-D IR layer takes it: ``kernel``, ``stride``, ``pads``
        (top, left, bottom, right), ``dilation``; ``op`` names the kind in messages."""

    def spatial(self, x, what: str, op: str) -> int:
        """1 or 2: the data is an N x C x L or an N x C x H x W view of an IR map."""

    def view(self, node: onnx.NodeProto, x, shape: tuple[int, ...], axes: tuple,
             what: str) -> None:
        """The node's output is ``x`` seen as ONNX ``shape`` with ``axes`` (the values in
        the same order: only unit axes, or the batch axis of features, move)."""

    def channels_on_axis_1(self, x, what: str) -> None:
        """DynfixError unless ONNX axis 1 of ``x`` holds its channels."""

    def add(self, cls: type[Layer], node: onnx.NodeProto, xs: list, what: str,
            suffix: str = "", **kw) -> Any:
        """A new layer of kind ``cls`` reading ``xs``; returns its tensor (an element-wise
        kind's keeps its input's held-back transform)."""

    def bind(self, node: onnx.NodeProto, t) -> None:
        """Make ``t`` the value of the node's output."""

    def alias(self, node: onnx.NodeProto, x) -> None:
        """The node hands on the tensor it reads."""

    def to_shape(self, node: onnx.NodeProto, x, shape: tuple[int, ...], what: str) -> None:
        """A reshape of the data: a no-op, a flatten to N x F, a view that adds or drops
        unit axes, or refused."""

    def affine(self, node: onnx.NodeProto, x, scale, shift, what: str) -> None:
        """``scale * x + shift`` per channel: an Affine (folded into the layer before by
        the passes where it can be)."""

    def operand(self, node: onnx.NodeProto, what: str) -> tuple[Any, np.ndarray, bool]:
        """A binary node with one data input and one constant: the data tensor, the
        constant as one value per channel, and whether the data came first."""

    def add_data(self, node: onnx.NodeProto, xs: list, what: str) -> None:
        """A sum of data tensors of one shape (Add layers)."""

    def per_channel(self, c: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
        """A constant that broadcasts to ``shape`` as one value per channel."""

    def reshape_target(self, shape: tuple[int, ...], target: list[int], allowzero: int,
                       what: str) -> tuple[int, ...]:
        """The shape a Reshape to ``target`` gives ``shape`` (ONNX's 0 and -1 rules)."""


#: ONNX operator -> its import handler ``handler(imp, node, what)`` (:func:`onnx_import`).
ONNX_IMPORTS: dict[str, Callable[[Importer, Any, str], None]] = {}


def onnx_import(*ops: str):
    """Register the decorated function as the import handler of ONNX operators ``ops``
    (in the module of the layer kind it makes)."""
    def register_handler(fn):
        for op in ops:
            if op in ONNX_IMPORTS:
                raise ValueError(f"ONNX operator {op!r} has two import handlers")
            ONNX_IMPORTS[op] = fn
        return fn
    return register_handler


class EngineRole(Enum):
    """How the engine's compiler plans a layer kind (``hw/compiler/plan.py``)."""

    #: Starts a fused group on the MAC array (a Conv2d, or a Linear run as one).
    GROUP = "group"
    #: A group of its own: an average pool run as a depthwise convolution.
    AVERAGE = "average"
    #: Joins the group before it as a clamp range of the requantizer (:meth:`Layer.clamp`).
    CLAMP = "clamp"
    #: Joins the group before it as the requantizer's negative slope (a LeakyReLU).
    SLOPE = "slope"
    #: Joins the group before it as its max-pool stage.
    POOL = "pool"
    #: Costs nothing: the stored map's layout already is its output (a Flatten).
    LAYOUT = "layout"
    #: Costs nothing: the group that reads it reads its input map as a larger one (a
    #: nearest-neighbour Resize, each pixel read twice per axis).
    VIEW = "view"
    #: Fused into the group that produces one of its inputs (a residual Add).
    RESIDUAL = "residual"
    #: Costs nothing: the groups that make its inputs write them at their channel offsets
    #: of one map (a copy group where one cannot, ``hw/compiler/plan.py``).
    CONCAT = "concat"
    #: Runs on the host after the engine when it is the last layer (a Softmax).
    HOST = "host"
    #: The engine does not run it; ``Layer.refusal`` is the sentence the user sees.
    REFUSED = "refused"


@dataclass
class Layer:
    """Base of all layers: a name, the names of its inputs, and its inferred output shape."""

    name: str
    inputs: tuple[str, ...] = ()
    out_shape: Shape = field(default=(), kw_only=True)   # set by Model.validate

    #: The kind's name in ``model.yaml`` and in reports.
    op: ClassVar[str] = "?"
    #: Number of input tensors the layer reads (0: two or more, a Concat).
    arity: ClassVar[int] = 1
    #: Carries weights and a fixed-point format of its own (a :class:`Compute` layer).
    compute: ClassVar[bool] = False
    #: Its output gets a format of its own (the compute layers and Add); every other layer
    #: keeps its input's format.
    formatted: ClassVar[bool] = False
    #: ``f(s * x) == s * f(x)`` for a positive per-channel scale ``s``: a scale on its input
    #: passes through it (equalization and range fill move scales across it).
    homogeneous: ClassVar[bool] = False
    #: ``relu(f(x)) == f(relu(x))``: a ReLU after it may act on its input instead, so the
    #: map before it can be stored unsigned.
    commutes_with_relu: ClassVar[bool] = False
    #: Acts on each value alone, so its output has its input's shape in any layout: a
    #: transpose before it may move after it (the importer's transpose fold).
    elementwise: ClassVar[bool] = False
    #: Runs on the host in float after the engine (the engine's output is its input).
    host: ClassVar[bool] = False
    #: Each output sums products over many inputs (a dot product per output): adaptive
    #: rounding and cross-layer equalization apply, through :meth:`Compute.input_rows`
    #: and its siblings. An Affine has one product per output.
    dot_product: ClassVar[bool] = False
    #: Takes the fully connected layers' weight width of a bit spec (``8/4/4``: the FC
    #: width) rather than the convolutions'.
    fully_connected: ClassVar[bool] = False
    #: Scalar attributes in the map's units (a Clip's bounds): a scale on the map scales
    #: them, and a quantization spec may carry adjusted values for them.
    scalars: ClassVar[tuple[str, ...]] = ()
    #: How the engine's compiler plans it.
    engine: ClassVar[EngineRole] = EngineRole.REFUSED
    #: Why the engine refuses it (a REFUSED kind, or a HOST kind that is not last), as the
    #: user reads it after the layer's name; empty: "op '<op>' is not supported by the
    #: engine".
    refusal: ClassVar[str] = ""

    def params(self) -> dict[str, np.ndarray]:
        """Named parameter arrays of this layer (empty for parameter-free layers)."""
        return {}

    def param_ranks(self) -> dict[str, int]:
        """Rank of each parameter array (those not listed: 1, one value per channel)."""
        return {}

    def check_params(self) -> None:
        """Each parameter array has its rank (:meth:`param_ranks`); DynfixError if not."""
        ranks = self.param_ranks()
        for pname, arr in self.params().items():
            rank = ranks.get(pname, 1)
            if isinstance(arr, np.ndarray) and arr.ndim != rank:
                raise DynfixError(f"layer {self.name!r}: parameter {pname!r} has shape "
                                  f"{arr.shape}; expected rank {rank}")

    def infer(self, *in_shapes: Shape) -> Shape:
        """Output shape for the given input shapes (one per input); DynfixError if they do
        not fit the layer."""
        raise NotImplementedError

    def macs(self, *in_shapes: Shape) -> int:
        """Multiply-accumulates of one forward pass on inputs of these shapes."""
        return 0

    def check(self) -> None:
        """Check the layer's own attributes (not its inputs); DynfixError if invalid."""

    def never_negative(self) -> bool:
        """True when the layer's output is never negative whatever its input (a ReLU, a
        Clip with ``lo >= 0``)."""
        return False

    def check_format(self, fmt) -> None:
        """Check that the layer can run on a map stored in ``fmt`` (bw, fl, zp);
        DynfixError naming the layer if not."""

    def clamp(self, fmt) -> tuple[int, int]:
        """A CLAMP kind's integer range ``[lo, hi]`` on a map stored in ``fmt``."""
        raise NotImplementedError

    def forward(self, *xs: np.ndarray) -> np.ndarray:
        """The float model of the layer on a batch (float32, one array per input)."""
        raise DynfixError(f"layer {self.name!r}: op {self.op!r} has no float implementation")

    def forward_int(self, x: np.ndarray, fmt) -> np.ndarray:
        """The integer model of a layer without a format of its own, on int64 ``x`` stored
        in ``fmt`` (an ``int_model.MapFormat``: ``bw``, ``fl``, ``zp``); keeps the format."""
        raise DynfixError(f"layer {self.name!r}: op {self.op!r} has no integer "
                          f"implementation")

    def onnx_nodes(self, param: ParamWriter) -> list[onnx.NodeProto]:
        """The layer as opset-13 ONNX nodes: one named after the layer, writing the tensor
        named after it and reading the layer's inputs; ``param`` adds an initializer."""
        raise DynfixError(f"layer {self.name!r}: op {self.op!r} cannot be written as ONNX")


@dataclass
class Compute(Layer):
    """A layer with weights: an accumulator ``sum x * w + bias`` per output, then the data
    shift into the output map's format (``docs/arithmetic.md``)."""

    compute: ClassVar[bool] = True
    formatted: ClassVar[bool] = True
    #: Names of the weight-like and the bias-like parameter (an Affine's scale and shift).
    weight_param: ClassVar[str] = "weight"
    bias_param: ClassVar[str] = "bias"

    # Every compute kind has ``groups``, its independent groups of output channels (a
    # field of Conv2d, 1 for the others).

    def params(self):
        """The weights and, when the layer has one, the bias (under their own names)."""
        p = {self.weight_param: getattr(self, self.weight_param)}
        if getattr(self, self.bias_param) is not None:
            p[self.bias_param] = getattr(self, self.bias_param)
        return p

    def check_params(self) -> None:
        """Ranks as :meth:`Layer.check_params`, and one bias value per output channel."""
        super().check_params()
        p = self.params()
        lead, bias = p[self.weight_param], p.get(self.bias_param)
        if bias is not None and bias.shape[0] != lead.shape[0]:
            raise DynfixError(f"layer {self.name!r}: parameter {self.bias_param!r} has "
                              f"{bias.shape[0]} values for {lead.shape[0]} channels")

    @property
    def fan_in(self) -> int:
        """Products summed into one accumulator."""
        raise NotImplementedError

    def weight_array(self) -> np.ndarray:
        """The float array quantized with (bw_w, fl_w): (M, ...) with M output channels."""
        return getattr(self, self.weight_param)

    def bias_array(self) -> np.ndarray:
        """The float bias; zeros when the layer has none."""
        b = getattr(self, self.bias_param)
        if b is None:
            return np.zeros(self.weight_array().shape[0], np.float32)
        return b

    def products(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``W * x`` without the bias, on arrays of any numeric dtype (N x channels x ...):
        the float model's and the integer model's accumulator share it."""
        raise NotImplementedError

    def forward(self, x):
        """``W * x + b`` in float32 (the bias broadcast over the channel axis)."""
        y = self.products(x, self.weight_array())
        b = getattr(self, self.bias_param)
        if b is not None:
            y = y + bias_view(b, y.ndim)
        return y.astype(np.float32)

    def input_rows(self, x: np.ndarray, group: int) -> np.ndarray:
        """The inputs each output of ``group`` sums over, one row per output position:
        (rows, fan-in), columns in the weight's order (dot-product layers)."""
        raise NotImplementedError

    def input_columns(self, w: np.ndarray, channels: int, block: int) -> np.ndarray:
        """``w`` (this layer's weights) as (input channel, everything multiplied by that
        channel) views; ``block``: how many inputs one channel became (``H * W`` after a
        Flatten)."""
        raise NotImplementedError

    def scale_inputs(self, w: np.ndarray, s: np.ndarray, block: int) -> np.ndarray:
        """``w`` with the weights of every input channel ``c`` multiplied by ``s[c]``."""
        raise NotImplementedError


@dataclass
class HostOutput(Layer):
    """What a trailing Softmax and Sigmoid share: the shape of their input, run on the host
    after the engine (the engine's output, and the integer model's, is their input: the
    logits); :meth:`Layer.forward` is each kind's own."""

    host: ClassVar[bool] = True
    engine: ClassVar[EngineRole] = EngineRole.HOST

    def infer(self, in_shape):
        return in_shape

    def forward_int(self, x, fmt):
        """The identity: the engine's output is this layer's input
        (:meth:`~dynfix.quant.int_model.IntModel.dequantize` applies it on the host)."""
        return x


KINDS: dict[str, type[Layer]] = {}


def register(cls: type[Layer]) -> type[Layer]:
    """Enter a layer kind in :data:`KINDS` under its ``op`` (a class decorator)."""
    if cls.op in KINDS:
        raise ValueError(f"layer op {cls.op!r} is registered twice")
    KINDS[cls.op] = cls
    return cls


def bias_view(b: np.ndarray, ndim: int) -> np.ndarray:
    """Broadcast a per-channel vector over an (N, C, ...) array of ``ndim`` dimensions."""
    return np.asarray(b).reshape((1, -1) + (1,) * (ndim - 2))


def spatial_input(layer: Layer, in_shape: Shape, kind: str) -> tuple[int, int, int]:
    """``in_shape`` as (C, H, W); DynfixError naming the layer if it is not an image."""
    if len(in_shape) != 3:
        raise DynfixError(f"layer {layer.name!r} ({kind}): expects a C x H x W input, got "
                          f"shape {in_shape}")
    return tuple(int(d) for d in in_shape)


def onnx_node(layer: Layer, op_type: str, inputs, **attrs) -> onnx.NodeProto:
    """One ONNX node named after ``layer`` that writes the tensor named after it."""
    from onnx import helper
    return helper.make_node(op_type, list(inputs), [layer.name], layer.name, **attrs)
