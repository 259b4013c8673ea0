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

The layer kinds live in :mod:`dynfix.quant.layers` (one module each) and are re-exported
here, so ``from dynfix.quant.ir import Conv2d, Model`` names the whole IR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynfix.errors import DynfixError
from .layers import *  # noqa: F401,F403  (the layer kinds: every name in layers.__all__)
from .layers import KINDS, Layer, Shape
from .layers import __all__ as _KIND_NAMES

__all__ = ["LAYER_TYPES", "Model", *_KIND_NAMES]


#: Every layer kind by its ``op`` (the registry, :data:`.layers.KINDS`).
LAYER_TYPES: dict[str, type[Layer]] = KINDS


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
