"""The imported graph between the reader and the passes.

The reader (:mod:`.reader`) turns every ONNX node on the data path into IR layers without
folding anything into another node: a BatchNormalization or per-channel Mul/Add/Sub/Div
becomes an ``Affine`` (its float64 parameters kept in :attr:`ImportGraph.exact`), a zero Pad
a :class:`HeldPad`, a Transpose a :class:`HeldTranspose`. The held nodes exist only here:
the passes (:mod:`.passes`) fold them into the layers that read them, and an import whose
graph still has one after the passes is refused by the reader before that (it checks
that every reader of a held tensor can take it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Iterator

import numpy as np

from dynfix.errors import DynfixError
from ..ir import Layer, Model, Shape


@dataclass
class HeldPad(Layer):
    """A zero Pad of H and W waiting for the Conv (or AveragePool) that reads it."""

    pads: tuple[int, int, int, int] = (0, 0, 0, 0)     # (top, left, bottom, right)
    op: ClassVar[str] = "held-pad"

    def infer(self, in_shape: Shape) -> Shape:
        c, h, w = in_shape
        t, l, b, r = self.pads
        return (c, h + t + b, w + l + r)


@dataclass
class HeldTranspose(Layer):
    """A Transpose that keeps the batch axis first, waiting for the flatten and the
    Gemm/MatMul after it (``perm`` over the IR tensor's axes, batch included: a 1-D
    N x C x L tensor's is over N x C x 1 x L)."""

    perm: tuple[int, ...] = ()
    op: ClassVar[str] = "held-transpose"

    def infer(self, in_shape: Shape) -> Shape:
        return tuple(in_shape[p - 1] for p in self.perm[1:])


@dataclass
class ImportGraph:
    """IR layers in topological order (held nodes included), before the passes."""

    file: str                           # the file's name, for messages
    name: str                           # the model's name
    input: str
    input_shape: Shape                  # without the batch dimension
    input_layout: str = "NCHW"          # the data's layout (Model.input_layout)
    output: str = ""                    # the layer (or the input) the graph output reads
    layers: dict[str, Layer] = field(default_factory=dict)
    #: layer name -> the ONNX node it came from ("node X (Op)"), for messages.
    origin: dict[str, str] = field(default_factory=dict)
    #: Affine layer name -> its (scale, shift) in float64, as the node computed them.
    exact: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    #: The host's normalization of the input (Model.input_affine), float32.
    input_affine: tuple[np.ndarray, np.ndarray] | None = None

    def what(self, name: str) -> str:
        """The message prefix of the node behind layer ``name``."""
        return f"{self.file}: {self.origin[name]}"

    def shape(self, name: str) -> Shape:
        return self.input_shape if name == self.input else self.layers[name].out_shape

    def readers(self, name: str) -> list[Layer]:
        """Layers reading ``name``, once per input that reads it."""
        return [layer for layer in self.layers.values() for t in layer.inputs if t == name]

    def reads(self, name: str) -> int:
        """How many inputs read ``name``, the graph output counted."""
        return len(self.readers(name)) + int(self.output == name)

    def held(self, kind: type[Layer]) -> Iterator[Layer]:
        """The graph's layers of ``kind``, in order (a snapshot: passes may remove them)."""
        return iter([layer for layer in self.layers.values() if isinstance(layer, kind)])

    def bypass(self, layer: Layer) -> None:
        """Remove ``layer``; whatever read it reads its input."""
        src = layer.inputs[0]
        del self.layers[layer.name]
        for other in self.layers.values():
            if layer.name in other.inputs:
                other.inputs = tuple(src if t == layer.name else t for t in other.inputs)
        if self.output == layer.name:
            self.output = src

    def model(self) -> Model:
        """The IR model (after the passes: no held node left)."""
        for layer in self.layers.values():
            if isinstance(layer, (HeldPad, HeldTranspose)):
                raise DynfixError(f"{self.what(layer.name)}: was not folded")  # reader checks
        return Model(self.name, self.input, self.input_shape, list(self.layers.values()),
                     self.input_layout, self.input_affine)
