"""What the windowed pools share: a kernel, a stride, pads and the ceil-mode shape rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dynfix.errors import DynfixError
from .base import Importer, Layer, spatial_input
from .kernels import pool_out


@dataclass
class Pool2d(Layer):
    """A window ``kernel`` at ``stride`` over each channel; ``pads`` is (top, left, bottom,
    right). Not a kind of its own: :class:`~.maxpool.MaxPool2d` and
    :class:`~.avgpool.AvgPool2d` are."""

    kernel: tuple[int, int] = (2, 2)
    stride: tuple[int, int] = (2, 2)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    ceil_mode: bool = False

    homogeneous: ClassVar[bool] = True

    def infer(self, in_shape):
        kind = type(self).__name__
        c, h, w = spatial_input(self, in_shape, kind)
        t, l, b, r = self.pads
        oh = pool_out(h, self.kernel[0], self.stride[0], t, b, self.ceil_mode)
        ow = pool_out(w, self.kernel[1], self.stride[1], l, r, self.ceil_mode)
        if oh < 1 or ow < 1:
            raise DynfixError(f"layer {self.name!r} ({kind}): window {self.kernel} does not "
                              f"fit a {h}x{w} input")
        return (c, oh, ow)

    def onnx_attrs(self) -> dict:
        return dict(kernel_shape=list(self.kernel), strides=list(self.stride),
                    pads=list(self.pads), ceil_mode=int(self.ceil_mode))


def pool_args(imp: Importer, node, what: str, x) -> dict:
    """A MaxPool's or AveragePool's window arguments from its ONNX attributes (a 1-D
    window over N x C x L: one of height 1 over the map C x 1 x L)."""
    at = imp.attrs(node, what)
    ks = tuple(at.ints("kernel_shape", []))
    if len(ks) not in (1, 2) or min(ks) < 1:
        raise DynfixError(f"{what}: only 1-D and 2-D pooling windows are supported, got "
                          f"kernel_shape {list(ks)}")
    win = imp.window(node, x, ks, what, "pooling windows")
    return dict(kernel=win["kernel"], stride=win["stride"], pads=win["pads"],
                ceil_mode=bool(at.int("ceil_mode", 0)))
