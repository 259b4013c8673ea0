"""The model IR: a small typed DAG of layers with shapes inferred at load time.

Every loader (ONNX, dynfix YAML+NPZ) produces a :class:`Model`; every later stage (float
reference, integer model, quantizer, compiler) consumes one. Shapes exclude the batch
dimension: images are ``(C, H, W)``, flat tensors ``(F,)``.

Each layer produces one tensor named after the layer and reads the tensors named in its
``inputs``: the model input or earlier layers (``model.layers`` is in topological order). A
tensor may feed any number of later layers (a residual branch); the model output is the last
layer, and every other layer must feed some later one. :meth:`Model.validate` checks all this
and infers every shape; :meth:`Model.is_chain` tells the plain chains the engine runs today.

Parameters are float32 numpy arrays in PyTorch/ONNX layout: conv weight
``(M, C // groups, kh, kw)``, linear weight ``(M, F)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from dynfix.errors import DynfixError

Shape = tuple[int, ...]


@dataclass
class Layer:
    """Base of all layers: a name, the names of its inputs, and its inferred output shape."""

    name: str
    inputs: tuple[str, ...] = ()
    out_shape: Shape = field(default=(), kw_only=True)   # set by Model.validate

    op: ClassVar[str] = "?"
    arity: ClassVar[int] = 1        # number of input tensors the layer reads

    def params(self) -> dict[str, np.ndarray]:
        """Named parameter arrays of this layer (empty for parameter-free layers)."""
        return {}

    def infer(self, *in_shapes: Shape) -> Shape:
        """Output shape for the given input shapes (one per input); DynfixError if they do
        not fit the layer."""
        raise NotImplementedError

    def macs(self, *in_shapes: Shape) -> int:
        """Multiply-accumulates of one forward pass on inputs of these shapes."""
        return 0

    def check(self) -> None:
        """Check the layer's own attributes (not its inputs); DynfixError if invalid."""


def _pool_out(size: int, k: int, s: int, p0: int, p1: int, ceil: bool = False) -> int:
    """Output length; in ceil mode the last window must start inside input + begin pad
    (the PyTorch/onnxruntime rule)."""
    span = size + p0 + p1 - k
    if span < 0:
        return 0
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + p0:
        out -= 1
    return out


@dataclass
class Conv2d(Layer):
    """2-D convolution. ``pads`` is (top, left, bottom, right).

    With ``groups`` g the C input and M output channels split into g groups; output group j
    sees only input group j, so the weight is ``(M, C // g, kh, kw)``. ``groups == C`` is a
    depthwise convolution (depth multiplier M // C).
    """

    weight: np.ndarray = field(default=None, repr=False)
    bias: np.ndarray | None = field(default=None, repr=False)
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    op: ClassVar[str] = "conv"

    @property
    def kernel(self) -> tuple[int, int]:
        return tuple(self.weight.shape[2:])

    def params(self):
        p = {"weight": self.weight}
        if self.bias is not None:
            p["bias"] = self.bias
        return p

    @property
    def fan_in(self) -> int:
        """Products summed per output value: (C // groups) * kh * kw."""
        return int(np.prod(self.weight.shape[1:]))

    def check(self):
        g = self.groups
        if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 1:
            raise DynfixError(f"layer {self.name!r} (Conv): groups must be a positive "
                              f"integer, got {g!r}")
        m = self.weight.shape[0]
        if m % g:
            raise DynfixError(f"layer {self.name!r} (Conv): groups={g} does not divide its "
                              f"{m} output channels")

    def infer(self, in_shape):
        if len(in_shape) != 3:
            raise DynfixError(f"layer {self.name!r} (Conv): expects a C x H x W input, "
                              f"got shape {in_shape}")
        c, h, w = in_shape
        m, wc, kh, kw = self.weight.shape
        g = self.groups
        if c % g:
            raise DynfixError(f"layer {self.name!r} (Conv): groups={g} does not divide its "
                              f"{c} input channels")
        if wc * g != c:
            if g == 1:
                raise DynfixError(f"layer {self.name!r} (Conv): weight has {wc} input "
                                  f"channels, input has {c}")
            raise DynfixError(f"layer {self.name!r} (Conv): weight has {wc} input channels "
                              f"per group, input has {c // g} per group ({c} in {g} groups)")
        ekh = (kh - 1) * self.dilation[0] + 1
        ekw = (kw - 1) * self.dilation[1] + 1
        t, l, b, r = self.pads
        oh = _pool_out(h, ekh, self.stride[0], t, b)
        ow = _pool_out(w, ekw, self.stride[1], l, r)
        if oh < 1 or ow < 1:
            raise DynfixError(f"layer {self.name!r} (Conv): {kh}x{kw} kernel does not fit "
                              f"a {h}x{w} input")
        return (m, oh, ow)

    def macs(self, in_shape):
        m, oh, ow = self.infer(in_shape)
        return int(m * oh * ow * self.fan_in)


@dataclass
class Linear(Layer):
    """Fully connected layer y = W x + b on a flat input."""

    weight: np.ndarray = field(default=None, repr=False)
    bias: np.ndarray | None = field(default=None, repr=False)

    op: ClassVar[str] = "linear"

    def params(self):
        p = {"weight": self.weight}
        if self.bias is not None:
            p["bias"] = self.bias
        return p

    def infer(self, in_shape):
        if len(in_shape) != 1:
            raise DynfixError(f"layer {self.name!r} (Linear): expects a flat input, got "
                              f"shape {in_shape}; add a Flatten before it")
        if self.weight.shape[1] != in_shape[0]:
            raise DynfixError(f"layer {self.name!r} (Linear): weight takes "
                              f"{self.weight.shape[1]} features, input has {in_shape[0]}")
        return (int(self.weight.shape[0]),)

    def macs(self, in_shape):
        return int(self.weight.shape[0] * self.weight.shape[1])


@dataclass
class ReLU(Layer):
    op: ClassVar[str] = "relu"

    def infer(self, in_shape):
        return in_shape


@dataclass
class Clip(Layer):
    """Clamp to [lo, hi]; ReLU6 is Clip(0, 6). An infinite bound leaves that side open."""

    lo: float = 0.0
    hi: float = 6.0

    op: ClassVar[str] = "clip"

    def check(self):
        for which, v in (("lo", self.lo), ("hi", self.hi)):
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) \
                    or np.isnan(v):
                raise DynfixError(f"layer {self.name!r} (Clip): {which} must be a number, "
                                  f"got {v!r}")
        if self.lo > self.hi:
            raise DynfixError(f"layer {self.name!r} (Clip): lo={self.lo} is above "
                              f"hi={self.hi}")

    def infer(self, in_shape):
        return in_shape


@dataclass
class Add(Layer):
    """Element-wise sum of two tensors of equal shape (a residual connection)."""

    op: ClassVar[str] = "add"
    arity: ClassVar[int] = 2

    def infer(self, a, b):
        if tuple(a) != tuple(b):
            raise DynfixError(f"layer {self.name!r} (Add): input shapes differ: "
                              f"{self.inputs[0]!r} is {tuple(a)}, {self.inputs[1]!r} is "
                              f"{tuple(b)}")
        return a


@dataclass
class MaxPool2d(Layer):
    """Max pooling; ``pads`` is (top, left, bottom, right), padded cells never win."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    ceil_mode: bool = False

    op: ClassVar[str] = "maxpool"

    def infer(self, in_shape):
        if len(in_shape) != 3:
            raise DynfixError(f"layer {self.name!r} ({type(self).__name__}): expects a "
                              f"C x H x W input, got shape {in_shape}")
        c, h, w = in_shape
        t, l, b, r = self.pads
        oh = _pool_out(h, self.kernel[0], self.stride[0], t, b, self.ceil_mode)
        ow = _pool_out(w, self.kernel[1], self.stride[1], l, r, self.ceil_mode)
        if oh < 1 or ow < 1:
            raise DynfixError(f"layer {self.name!r} ({type(self).__name__}): window "
                              f"{self.kernel} does not fit a {h}x{w} input")
        return (c, oh, ow)


@dataclass
class AvgPool2d(MaxPool2d):
    """Average pooling; with ``count_include_pad`` the divisor counts padded cells."""

    count_include_pad: bool = False

    op: ClassVar[str] = "avgpool"


@dataclass
class GlobalAvgPool(Layer):
    """Mean over H and W; keeps the (C, 1, 1) shape as ONNX does."""

    op: ClassVar[str] = "gap"

    def infer(self, in_shape):
        if len(in_shape) != 3:
            raise DynfixError(f"layer {self.name!r} (GlobalAveragePool): expects a "
                              f"C x H x W input, got shape {in_shape}")
        return (in_shape[0], 1, 1)


@dataclass
class Flatten(Layer):
    """Flatten to (F,) in C, H, W order (what ONNX Flatten/Reshape to 2-D do)."""

    op: ClassVar[str] = "flatten"

    def infer(self, in_shape):
        return (int(np.prod(in_shape)),)


@dataclass
class Affine(Layer):
    """Per-channel y = scale * x + shift (a BatchNorm that could not be folded)."""

    scale: np.ndarray = field(default=None, repr=False)
    shift: np.ndarray = field(default=None, repr=False)

    op: ClassVar[str] = "affine"

    def params(self):
        return {"scale": self.scale, "shift": self.shift}

    def infer(self, in_shape):
        if in_shape[0] != self.scale.shape[0]:
            raise DynfixError(f"layer {self.name!r} (BatchNormalization): has "
                              f"{self.scale.shape[0]} channels, input has {in_shape[0]}")
        return in_shape

    def macs(self, in_shape):
        return int(np.prod(in_shape))


@dataclass
class Softmax(Layer):
    """Trailing softmax: kept in the float model, run on the host (it keeps the class)."""

    op: ClassVar[str] = "softmax"

    def infer(self, in_shape):
        return in_shape


_PARAM_RANKS = {(Conv2d, "weight"): 4, (Linear, "weight"): 2}


def _check_param_shapes(layer: Layer) -> None:
    """Weights have their layout's rank; bias/scale/shift are one value per output channel."""
    params = layer.params()
    for pname, arr in params.items():
        rank = _PARAM_RANKS.get((type(layer), pname), 1)
        if isinstance(arr, np.ndarray) and arr.ndim != rank:
            raise DynfixError(f"layer {layer.name!r}: parameter {pname!r} has shape "
                              f"{arr.shape}; expected rank {rank}")
    lead = params.get("weight", params.get("scale"))
    for pname in ("bias", "shift"):
        if pname in params and params[pname].shape[0] != lead.shape[0]:
            raise DynfixError(f"layer {layer.name!r}: parameter {pname!r} has "
                              f"{params[pname].shape[0]} values for {lead.shape[0]} channels")


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.op: cls for cls in (Conv2d, Linear, ReLU, Clip, MaxPool2d, AvgPool2d, GlobalAvgPool,
                            Flatten, Affine, Add, Softmax)
}


@dataclass
class Model:
    """A named DAG of layers on one input tensor of shape ``input_shape`` (no batch).

    ``layers`` is in topological order; the output is the last layer's tensor.
    """

    name: str
    input_name: str
    input_shape: Shape
    layers: list[Layer]

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check the graph and the parameters (finite float arrays of the right shapes) and
        infer every shape."""
        if not self.layers:
            raise DynfixError(f"model {self.name!r} has no layers")
        if any(d < 1 for d in self.input_shape):
            raise DynfixError(f"model {self.name!r}: input shape {self.input_shape} is not "
                              f"a concrete positive shape")
        shapes: dict[str, Shape] = {self.input_name: tuple(int(d) for d in self.input_shape)}
        later = {layer.name for layer in self.layers}
        for layer in self.layers:
            if layer.name in shapes:
                raise DynfixError(f"model {self.name!r}: layer name {layer.name!r} is used "
                                  f"twice" + (" (it is the model input's name)"
                                              if layer.name == self.input_name else ""))
            if len(layer.inputs) != layer.arity:
                raise DynfixError(f"layer {layer.name!r} ({layer.op}) takes {layer.arity} "
                                  f"input(s), got {len(layer.inputs)}: {list(layer.inputs)}")
            for t in layer.inputs:
                if t not in shapes:
                    why = ("it is defined later or by the layer itself (a cycle, or layers "
                           "out of order)" if t in later else "no such tensor")
                    raise DynfixError(f"layer {layer.name!r} reads {t!r}, which is not the "
                                      f"model input or an earlier layer: {why}")
            for pname, arr in layer.params().items():
                if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
                    raise DynfixError(f"layer {layer.name!r}: parameter {pname!r} is not a "
                                      f"float array")
                if not np.all(np.isfinite(arr)):
                    n = int(np.count_nonzero(~np.isfinite(arr)))
                    raise DynfixError(f"layer {layer.name!r}: parameter {pname!r} has {n} "
                                      f"NaN/Inf values")
            _check_param_shapes(layer)
            layer.check()
            shape = layer.infer(*(shapes[t] for t in layer.inputs))
            layer.out_shape = tuple(int(d) for d in shape)
            shapes[layer.name] = layer.out_shape
        used = {t for layer in self.layers for t in layer.inputs}
        dead = [layer.name for layer in self.layers[:-1] if layer.name not in used]
        if dead:
            raise DynfixError(f"model {self.name!r}: the output of layer(s) {dead} is never "
                              f"used (the model output is the last layer, "
                              f"{self.layers[-1].name!r})")

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].out_shape

    @property
    def output_name(self) -> str:
        return self.layers[-1].name

    def shape(self, tensor: str) -> Shape:
        """Shape of a tensor: the model input or a layer's output."""
        if tensor == self.input_name:
            return tuple(self.input_shape)
        return self.layer(tensor).out_shape

    def in_shapes(self, layer: Layer | str | int) -> tuple[Shape, ...]:
        """Shapes of a layer's inputs (the layer, its name or its index)."""
        return tuple(self.shape(t) for t in self._get(layer).inputs)

    def in_shape(self, index: int) -> Shape:
        """Shape of the first input of layer ``index`` (the input of a chain layer)."""
        return self.in_shapes(index)[0]

    def consumers(self, tensor: str) -> list[Layer]:
        """Layers that read ``tensor``, in order."""
        return [layer for layer in self.layers if tensor in layer.inputs]

    def producer(self, tensor: str) -> Layer | None:
        """The layer that writes ``tensor`` (None for the model input)."""
        return None if tensor == self.input_name else self.layer(tensor)

    def last_use(self) -> dict[str, int]:
        """Tensor name -> index of the last layer that reads it (so it can be freed)."""
        return {t: i for i, layer in enumerate(self.layers) for t in layer.inputs}

    def is_chain(self) -> bool:
        """True when each layer reads exactly the previous layer's output (the first reads
        the model input): the plain chains the engine runs."""
        prev = self.input_name
        for layer in self.layers:
            if tuple(layer.inputs) != (prev,):
                return False
            prev = layer.name
        return True

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise DynfixError(f"model {self.name!r} has no layer {name!r}")

    def _get(self, layer: Layer | str | int) -> Layer:
        if isinstance(layer, Layer):
            return layer
        if isinstance(layer, str):
            return self.layer(layer)
        return self.layers[layer]

    def summary(self) -> dict:
        """Per-layer name, op, inputs, output shape, parameter count and MACs, plus totals
        and whether the model is a plain chain."""
        rows = []
        for layer in self.layers:
            params = sum(int(a.size) for a in layer.params().values())
            rows.append({"name": layer.name, "op": layer.op, "inputs": list(layer.inputs),
                         "output_shape": list(layer.out_shape),
                         "params": params, "macs": layer.macs(*self.in_shapes(layer))})
        return {"model": self.name, "input_name": self.input_name,
                "input_shape": list(self.input_shape), "chain": self.is_chain(), "layers": rows,
                "total_params": sum(r["params"] for r in rows),
                "total_macs": sum(r["macs"] for r in rows)}
