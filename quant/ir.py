"""The model IR: a small typed graph of layers with shapes inferred at load time.

Every loader (ONNX, dynfix YAML+NPZ) produces a :class:`Model`; every later stage (float
reference, quantizer, compiler) consumes one. Shapes exclude the batch dimension: images are
``(C, H, W)``, flat tensors ``(F,)``.

Layers name their inputs so the graph can grow to residual ``Add`` / ``Concat`` later; today
a model must be a sequential chain (each layer reads the one before it, the first reads the
model input), which :meth:`Model.validate` checks.

Parameters are float32 numpy arrays in PyTorch/ONNX layout: conv weight ``(M, C, kh, kw)``,
linear weight ``(M, F)``.
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
    out_shape: Shape = ()

    op: ClassVar[str] = "?"

    def params(self) -> dict[str, np.ndarray]:
        """Named parameter arrays of this layer (empty for parameter-free layers)."""
        return {}

    def infer(self, in_shape: Shape) -> Shape:
        raise NotImplementedError

    def macs(self, in_shape: Shape) -> int:
        return 0


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
    """2-D convolution, groups=1. ``pads`` is (top, left, bottom, right)."""

    weight: np.ndarray = field(default=None, repr=False)
    bias: np.ndarray | None = field(default=None, repr=False)
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    dilation: tuple[int, int] = (1, 1)

    op: ClassVar[str] = "conv"

    @property
    def kernel(self) -> tuple[int, int]:
        return tuple(self.weight.shape[2:])

    def params(self):
        p = {"weight": self.weight}
        if self.bias is not None:
            p["bias"] = self.bias
        return p

    def infer(self, in_shape):
        if len(in_shape) != 3:
            raise DynfixError(f"layer {self.name!r} (Conv): expects a C x H x W input, "
                              f"got shape {in_shape}")
        c, h, w = in_shape
        m, wc, kh, kw = self.weight.shape
        if wc != c:
            raise DynfixError(f"layer {self.name!r} (Conv): weight has {wc} input channels, "
                              f"input has {c}")
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
        return int(m * oh * ow * self.weight.shape[1] * self.weight.shape[2]
                   * self.weight.shape[3])


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
    cls.op: cls for cls in (Conv2d, Linear, ReLU, MaxPool2d, AvgPool2d, GlobalAvgPool,
                            Flatten, Affine, Softmax)
}


@dataclass
class Model:
    """A named chain of layers on one input tensor of shape ``input_shape`` (no batch)."""

    name: str
    input_name: str
    input_shape: Shape
    layers: list[Layer]

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check the chain, the parameters (finite, float32) and infer every shape."""
        if not self.layers:
            raise DynfixError(f"model {self.name!r} has no layers")
        if any(d < 1 for d in self.input_shape):
            raise DynfixError(f"model {self.name!r}: input shape {self.input_shape} is not "
                              f"a concrete positive shape")
        seen = {self.input_name}
        prev = self.input_name
        shape = tuple(int(d) for d in self.input_shape)
        for layer in self.layers:
            if layer.name in seen:
                raise DynfixError(f"model {self.name!r}: layer name {layer.name!r} is used "
                                  f"twice")
            if tuple(layer.inputs) != (prev,):
                raise DynfixError(f"layer {layer.name!r} reads {list(layer.inputs)}; only "
                                  f"sequential chains are supported (expected [{prev!r}])")
            for pname, arr in layer.params().items():
                if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f":
                    raise DynfixError(f"layer {layer.name!r}: parameter {pname!r} is not a "
                                      f"float array")
                if not np.all(np.isfinite(arr)):
                    n = int(np.count_nonzero(~np.isfinite(arr)))
                    raise DynfixError(f"layer {layer.name!r}: parameter {pname!r} has {n} "
                                      f"NaN/Inf values")
            _check_param_shapes(layer)
            shape = tuple(int(d) for d in layer.infer(shape))
            layer.out_shape = shape
            seen.add(layer.name)
            prev = layer.name

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].out_shape

    def in_shape(self, index: int) -> Shape:
        """Input shape of layer ``index``."""
        return tuple(self.input_shape) if index == 0 else self.layers[index - 1].out_shape

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise DynfixError(f"model {self.name!r} has no layer {name!r}")

    def summary(self) -> dict:
        """Per-layer name, op, output shape, parameter count and MACs, plus totals."""
        rows = []
        for i, layer in enumerate(self.layers):
            params = sum(int(a.size) for a in layer.params().values())
            rows.append({"name": layer.name, "op": layer.op,
                         "output_shape": list(layer.out_shape),
                         "params": params, "macs": layer.macs(self.in_shape(i))})
        return {"model": self.name, "input_shape": list(self.input_shape), "layers": rows,
                "total_params": sum(r["params"] for r in rows),
                "total_macs": sum(r["macs"] for r in rows)}
