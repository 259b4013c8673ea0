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

The graph always computes on channels-first maps; ``Model.input_layout`` records how the
user's data is laid out (:data:`LAYOUTS`: a Keras model's N x H x W x C input, a 1-D model's
N x C x L or N x L x C), and :meth:`Model.to_internal` turns such data into the graph's
input, once, where the data comes in (:func:`dynfix.quant.float_model.check_input`). A
per-channel normalization of that input (a BatchNorm or Mul/Add by constants right on the
model input, which the ONNX import moves there) is ``Model.input_affine``: the host applies it
in the same place (:meth:`Model.normalize`), so the quantized input is the normalized one and
the first layer is the one after it.

The layer kinds live in :mod:`dynfix.quant.layers` (one module each) and are re-exported
here, so ``from dynfix.quant.ir import Conv2d, Model`` names the whole IR.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from dynfix.errors import DynfixError
from .layers import *  # noqa: F401,F403  (the layer kinds: every name in layers.__all__)
from .layers import KINDS, Layer, Shape
from .layers import __all__ as _KIND_NAMES

#: Graph names converters write when the model has none of its own (compared in lower case,
#: after dropping a trailing ``_N`` as Keras numbers its default names): the model is then
#: named after its file (the ONNX reader; the flow's display names). The one list of
#: them.
PLACEHOLDER_MODEL_NAMES = frozenset({
    "", "pre-alpha", "main_graph", "torch_jit", "torch-jit-export", "torch-jit", "tf2onnx",
    "tflite2onnx", "keras2onnx", "onnx", "graph", "model", "net", "network", "sequential",
    "functional", "untitled", "default"})


def is_placeholder(name: str) -> bool:
    """Whether ``name`` is a converter's stand-in for a model name
    (:data:`PLACEHOLDER_MODEL_NAMES`)."""
    return re.sub(r"_\d+$", "", name.strip().lower()) in PLACEHOLDER_MODEL_NAMES


__all__ = ["LAYER_TYPES", "LAYOUTS", "Model", "PLACEHOLDER_MODEL_NAMES", "is_placeholder",
           *_KIND_NAMES]


#: Every layer kind by its ``op`` (the registry, :data:`.layers.KINDS`).
LAYER_TYPES: dict[str, type[Layer]] = KINDS

#: The data layouts a model's input may have -> what they mean. ``NCHW`` (the default) is
#: the graph's own: the data is N x ``input_shape`` (also a flat N x F input). The others
#: are transposed or reshaped to it on the way in (:meth:`Model.to_internal`); a 1-D map is
#: held as C x 1 x L.
LAYOUTS = {"NCHW": "N x C x H x W (or N x F): the graph's own layout",
           "NHWC": "N x H x W x C (channels last, as Keras writes it)",
           "NCW": "N x C x L (a 1-D signal, channels first, as PyTorch writes it)",
           "NWC": "N x L x C (a 1-D signal, channels last, as Keras writes it)"}


@dataclass
class Model:
    """A named DAG of layers on one input tensor of shape ``input_shape`` (no batch).

    ``layers`` is in topological order; the output is the last layer's tensor.
    ``input_layout`` (:data:`LAYOUTS`) is the layout of the user's data, which may differ
    from ``input_shape``'s (:attr:`data_shape`). ``input_affine``, when set, is a
    per-channel ``(scale, shift)`` (float32, one value per channel of ``input_shape``) that
    the host applies to the input before anything else (:meth:`normalize`).
    """

    name: str
    input_name: str
    input_shape: Shape
    layers: list[Layer]
    input_layout: str = "NCHW"
    input_affine: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

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
        self._check_layout()
        self._check_affine()
        shapes: dict[str, Shape] = {self.input_name: tuple(int(d) for d in self.input_shape)}
        later = {layer.name for layer in self.layers}
        for layer in self.layers:
            if layer.name in shapes:
                raise DynfixError(f"model {self.name!r}: layer name {layer.name!r} is used "
                                  f"twice" + (" (it is the model input's name)"
                                              if layer.name == self.input_name else ""))
            n = len(layer.inputs)
            if (n != layer.arity) if layer.arity else (n < 2):
                raise DynfixError(f"layer {layer.name!r} ({layer.op}) takes "
                                  f"{layer.arity or 'two or more'} input(s), got {n}: "
                                  f"{list(layer.inputs)}")
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
            layer.check_params()
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

    def _check_layout(self) -> None:
        """The layout is known and fits the input shape (a 1-D layout: C x 1 x L)."""
        lay, shape = self.input_layout, tuple(self.input_shape)
        if lay not in LAYOUTS:
            raise DynfixError(f"model {self.name!r}: unknown input layout {lay!r}; choose "
                              f"one of {', '.join(LAYOUTS)}")
        if lay != "NCHW" and (len(shape) != 3 or (lay in ("NCW", "NWC") and shape[1] != 1)):
            need = "C x 1 x L" if lay in ("NCW", "NWC") else "C x H x W"
            raise DynfixError(f"model {self.name!r}: input layout {lay} needs a {need} input "
                              f"shape, got {shape}")

    def _check_affine(self) -> None:
        """``input_affine`` is None or two finite float arrays of one value per channel."""
        if self.input_affine is None:
            return
        c = int(self.input_shape[0])
        if not isinstance(self.input_affine, tuple) or len(self.input_affine) != 2:
            raise DynfixError(f"model {self.name!r}: the input normalization must be a "
                              f"(scale, shift) pair")
        for what, a in zip(("scale", "shift"), self.input_affine):
            if not isinstance(a, np.ndarray) or a.dtype.kind != "f" or a.shape != (c,):
                raise DynfixError(f"model {self.name!r}: the input normalization's {what} "
                                  f"must be a float array of {c} values (one per channel)")
            if not np.all(np.isfinite(a)):
                raise DynfixError(f"model {self.name!r}: the input normalization's {what} "
                                  f"has NaN/Inf values")

    @property
    def data_shape(self) -> Shape:
        """The shape of one input as the user's data holds it (``input_layout``)."""
        shape = tuple(int(d) for d in self.input_shape)
        if self.input_layout == "NHWC":
            return shape[1:] + shape[:1]
        if self.input_layout == "NCW":
            return (shape[0], shape[2])
        if self.input_layout == "NWC":
            return (shape[2], shape[0])
        return shape

    def to_internal(self, x: np.ndarray) -> np.ndarray:
        """A batch of the user's data (N x :attr:`data_shape`) as the graph's input
        (N x ``input_shape``): transposed to channels first, a 1-D signal as C x 1 x L."""
        if self.input_layout == "NHWC":
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if self.input_layout == "NCW":
            return x[:, :, None, :]
        if self.input_layout == "NWC":
            return np.ascontiguousarray(x.transpose(0, 2, 1))[:, :, None, :]
        return x

    def from_internal(self, x: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`to_internal`: the graph's input in the user's layout."""
        if self.input_layout == "NHWC":
            return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        if self.input_layout == "NCW":
            return x[:, :, 0, :]
        if self.input_layout == "NWC":
            return np.ascontiguousarray(x[:, :, 0, :].transpose(0, 2, 1))
        return x

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """A batch of the graph's input (N x ``input_shape``, float32) with ``input_affine``
        applied per channel (``x * scale + shift`` in float32); ``x`` itself without one."""
        if self.input_affine is None:
            return x
        view = (-1,) + (1,) * (x.ndim - 2)
        scale, shift = (np.asarray(a, np.float32).reshape(view) for a in self.input_affine)
        return x * scale + shift

    def to_data_output(self, y: np.ndarray) -> np.ndarray:
        """A batch of outputs as the model's data has them: a 1-D model's (``NCW``,
        ``NWC``) C x 1 x L map as N x C x L (as its ONNX graph computes it)."""
        if self.input_layout in ("NCW", "NWC") and y.ndim == 4 and y.shape[2] == 1:
            return y[:, :, 0, :]
        return y

    def with_layers(self, layers: list[Layer]) -> "Model":
        """The same model (name, input, layout, input normalization) on other layers: what
        the passes over a model (lowering, range fill, adjusted parameters, SVD) build."""
        return Model(self.name, self.input_name, tuple(self.input_shape), layers,
                     self.input_layout, self.input_affine)

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
        """Per-layer name, op, inputs, output shape, parameter count and MACs, plus totals,
        whether the model is a plain chain and the host's input normalization (None, or its
        per-channel scale and shift)."""
        rows = []
        for layer in self.layers:
            params = sum(int(a.size) for a in layer.params().values())
            rows.append({"name": layer.name, "op": layer.op, "inputs": list(layer.inputs),
                         "output_shape": list(layer.out_shape),
                         "params": params, "macs": layer.macs(*self.in_shapes(layer))})
        return {"model": self.name, "input_name": self.input_name,
                "input_shape": list(self.input_shape), "input_layout": self.input_layout,
                "data_shape": list(self.data_shape),
                "input_affine": None if self.input_affine is None else {
                    k: [float(v) for v in a] for k, a in zip(("scale", "shift"),
                                                             self.input_affine)},
                "chain": self.is_chain(), "layers": rows,
                "total_params": sum(r["params"] for r in rows),
                "total_macs": sum(r["macs"] for r in rows)}
