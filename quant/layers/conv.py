"""Conv2d: 2-D convolution, with its grouped and depthwise forms (a 1-D one, over an
N x C x L tensor, is a Conv2d of height 1: kernel 1 x k over the map C x 1 x L)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from dynfix.errors import DynfixError
from .base import Compute, EngineRole, Importer, ParamWriter, onnx_import, onnx_node, register
from .kernels import conv2d, pool_out, windows


@register
@dataclass
class Conv2d(Compute):
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
    dot_product: ClassVar[bool] = True
    engine: ClassVar[EngineRole] = EngineRole.GROUP

    @property
    def kernel(self) -> tuple[int, int]:
        return tuple(self.weight.shape[2:])

    def param_ranks(self):
        return {"weight": 4}

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
        oh = pool_out(h, ekh, self.stride[0], t, b)
        ow = pool_out(w, ekw, self.stride[1], l, r)
        if oh < 1 or ow < 1:
            raise DynfixError(f"layer {self.name!r} (Conv): {kh}x{kw} kernel does not fit "
                              f"a {h}x{w} input")
        return (m, oh, ow)

    def macs(self, in_shape):
        m, oh, ow = self.infer(in_shape)
        return int(m * oh * ow * self.fan_in)

    def products(self, x, w):
        return conv2d(x, w, self.stride, self.pads, self.dilation, self.groups)

    def input_rows(self, x, group):
        cg = self.weight.shape[1]
        v = windows(x, self.kernel, self.stride, self.pads, 0, self.dilation)
        v = v[:, group * cg:(group + 1) * cg]                     # N, Cg, OH, OW, kh, kw
        return v.transpose(0, 2, 3, 1, 4, 5).reshape(-1, v.shape[1] * v.shape[4] * v.shape[5])

    def input_columns(self, w, channels, block):
        g = self.groups
        cg = w.shape[1]                                 # input channels per group
        mg = w.shape[0] // g
        # input channel c = j * cg + k: output channels of group j, column k
        v = w.reshape(g, mg, cg, -1).transpose(0, 2, 1, 3)          # g, cg, mg, kh*kw
        return v.reshape(channels, mg, -1)

    def scale_inputs(self, w, s, block):
        g, cg = self.groups, w.shape[1]
        mg = w.shape[0] // g
        return w * s.reshape(g, 1, cg, 1, 1).repeat(mg, axis=1).reshape(w.shape[0], cg, 1, 1)

    def onnx_nodes(self, param: ParamWriter):
        ins = [self.inputs[0], param("weight", self.weight)]
        if self.bias is not None:
            ins.append(param("bias", self.bias))
        return [onnx_node(self, "Conv", ins, kernel_shape=list(self.kernel),
                          strides=list(self.stride), pads=list(self.pads),
                          dilations=list(self.dilation), group=int(self.groups))]


@onnx_import("Conv")
def import_conv(imp: Importer, node, what: str) -> None:
    """A 2-D Conv, or a 1-D one as a Conv2d of height 1 (its weight gets a unit kh)."""
    x, at = imp.x(node), imp.attrs(node, what)
    nd = imp.spatial(x, what, "convolutions")
    w = imp.weights(node.input[1], what, rank=nd + 2)
    bias = imp.opt(node, 2, what)
    ks = tuple(at.ints("kernel_shape", list(w.shape[2:])))
    if ks != w.shape[2:]:
        raise DynfixError(f"{what}: kernel_shape {list(ks)} disagrees with weights "
                          f"{w.shape}")
    win = imp.window(node, x, ks, what, "convolutions")
    w = w.reshape(w.shape[:2] + win["kernel"])
    imp.bind(node, imp.add(Conv2d, node, [x], what, weight=w, bias=bias,
                           stride=win["stride"], pads=win["pads"], dilation=win["dilation"],
                           groups=at.int("group", 1)))
