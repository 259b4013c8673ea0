"""Resize: nearest-neighbour upsampling by 2, ``out[c, y, x] = in[c, y // sy, x // sx]``.

The float and the integer model repeat every value (``np.repeat`` on both axes): exact, and
the map keeps its format, as a Flatten or a max pool does. The engine has no pass for it: the
group that reads the resized map reads the stored map before it as a map twice its size
(``docs/engine.md``, "Resize x2: a view of the map before it").

ONNX writes it as ``Resize`` (opset 10: ``X, scales``; 11 and newer: ``X, roi, scales,
sizes``) or ``Upsample`` (opsets 7 to 9: ``scales`` an attribute, then an input), each with
``mode="nearest"``. How an output pixel finds its input pixel depends on
``coordinate_transformation_mode`` and ``nearest_mode`` (opset 11 on). At scale 2, output
``y`` maps to ``y // 2`` exactly for the pairs in :data:`EXACT_MODES`: PyTorch's
``nn.Upsample(scale_factor=2)`` (asymmetric, floor), ONNX's defaults (half_pixel,
round_prefer_floor), tf2onnx's ``ResizeNearestNeighbor`` of a Keras 2 ``UpSampling2D``
(``half_pixel_centers``: tf_half_pixel_for_nn, floor; without it asymmetric, floor;
``align_corners``: align_corners, round_prefer_ceil). The others pick other pixels
(asymmetric with round_prefer_ceil reads ``(y + 1) // 2``, half_pixel with floor
``(y - 1) // 2``) and are refused. (Keras 3's ``UpSampling2D`` repeats with ``ops.repeat``,
which tf2onnx does not write as a Resize.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from dynfix.errors import DynfixError
from .base import (EngineRole, Importer, Layer, ParamWriter, onnx_import, onnx_node,
                   register, spatial_input)

#: The upsampling factors a Resize may have on an axis (H, W): 2, or 1 (that axis kept;
#: a 1-D map C x 1 x L is resized on W only).
FACTORS = (1, 2)

#: (coordinate_transformation_mode, nearest_mode) pairs that give ``out[y] = in[y // 2]`` at
#: scale 2 (and ``out[y] = in[y]`` at scale 1) for every length ``L``. Output ``y = 2k + r``
#: maps to the input coordinate ``k + r / 2`` (asymmetric), ``k - 1/4 + r / 2`` (half_pixel,
#: and pytorch_half_pixel and half_pixel_symmetric, which equal it here), ``k + 1/4 + r / 2``
#: (tf_half_pixel_for_nn), ``y (L - 1) / (2L - 1)`` (align_corners: ``k - k / (2L - 1)``
#: and ``k + (L - 1 - k) / (2L - 1)``, both less than 1/2 from ``k``); the pair's rounding
#: must give ``k`` for ``r = 0`` and ``r = 1``.
EXACT_MODES = frozenset({
    ("align_corners", "round_prefer_floor"), ("align_corners", "round_prefer_ceil"),
    ("asymmetric", "floor"), ("asymmetric", "round_prefer_floor"),
    ("half_pixel", "round_prefer_floor"), ("half_pixel", "round_prefer_ceil"),
    ("pytorch_half_pixel", "round_prefer_floor"), ("pytorch_half_pixel", "round_prefer_ceil"),
    ("half_pixel_symmetric", "round_prefer_floor"),
    ("half_pixel_symmetric", "round_prefer_ceil"),
    ("tf_half_pixel_for_nn", "floor"),
})


@register
@dataclass
class Resize(Layer):
    """Nearest-neighbour upsampling by ``scale`` = (rows, columns), each 1 or 2: every value
    repeated ``scale[0]`` times down and ``scale[1]`` times across."""

    scale: tuple[int, int] = (2, 2)

    op: ClassVar[str] = "resize"
    homogeneous: ClassVar[bool] = True
    commutes_with_relu: ClassVar[bool] = True
    engine: ClassVar[EngineRole] = EngineRole.VIEW

    def check(self):
        s = tuple(self.scale)
        if len(s) != 2 or any(isinstance(f, bool) or f not in FACTORS for f in s):
            raise DynfixError(f"layer {self.name!r} (Resize): scale must be 1 or 2 on each "
                              f"of H and W, got {self.scale!r}")

    def infer(self, in_shape):
        c, h, w = spatial_input(self, in_shape, "Resize")
        return (c, h * self.scale[0], w * self.scale[1])

    def forward(self, x):
        return np.repeat(np.repeat(x, self.scale[0], axis=2), self.scale[1], axis=3)

    def forward_int(self, x, fmt):
        return np.repeat(np.repeat(x, self.scale[0], axis=2), self.scale[1], axis=3)

    def onnx_nodes(self, param: ParamWriter):
        scales = param("scales", np.array([1, 1, *self.scale], np.float32))
        return [onnx_node(self, "Resize", [self.inputs[0], "", scales], mode="nearest",
                          coordinate_transformation_mode="asymmetric", nearest_mode="floor")]


def _modes(imp: Importer, node, what: str) -> None:
    """DynfixError unless the node's interpolation repeats each pixel (:data:`EXACT_MODES`)."""
    at = imp.attrs(node, what)
    mode = at.text("mode", "nearest")
    if mode != "nearest":
        raise DynfixError(f"{what}: mode={mode!r}; dynfix reads only mode='nearest' "
                          f"(nearest-neighbour upsampling by 2)")
    if node.op_type != "Resize" or imp.opset < 11:
        return                  # Upsample, Resize-10: out[y] = in[floor(y / scale)]
    ctm = at.text("coordinate_transformation_mode", "half_pixel")
    nearest = at.text("nearest_mode", "round_prefer_floor")
    if (ctm, nearest) not in EXACT_MODES:
        raise DynfixError(
            f"{what}: coordinate_transformation_mode={ctm!r} with nearest_mode={nearest!r} "
            f"does not repeat each pixel (out[y] = in[y // 2]); dynfix reads asymmetric with "
            f"floor or round_prefer_floor, half_pixel (pytorch_half_pixel, "
            f"half_pixel_symmetric) or align_corners with round_prefer_floor or "
            f"round_prefer_ceil, and tf_half_pixel_for_nn with floor")


def _ratios(imp: Importer, node, x, what: str) -> tuple[str, list[float]]:
    """The node's scale on every ONNX axis of ``x``, and how the node gives it (its
    ``scales``, or its ``sizes`` and the scales they make), for messages."""
    rank = len(x.shape)
    at = imp.attrs(node, what)
    if node.op_type == "Upsample" and imp.opset < 9:
        scales = [float(v) for v in at.get("scales", [])]
        return f"scales {scales}", scales
    # Upsample (9, 10) and Resize-10: X, scales; Resize-11 and newer: X, roi, scales, sizes
    where = ({"scales": 2, "sizes": 3} if node.op_type == "Resize" and imp.opset >= 11
             else {"scales": 1})
    consts = {}
    for name, k in where.items():
        if len(node.input) > k and node.input[k]:
            v = np.asarray(imp.const(node.input[k], what)).reshape(-1)
            if v.size:
                consts[name] = v
    if not consts:
        raise DynfixError(f"{what}: has neither scales nor sizes")
    axes = at.ints("axes", list(range(rank)))          # opset 18: the axes resized
    axes = [a % rank for a in axes if -rank <= a < rank]
    which = "scales" if "scales" in consts else "sizes"
    v = consts[which]
    if len(v) != len(axes) or len(set(axes)) != len(axes):
        raise DynfixError(f"{what}: {which} {v.tolist()} do not fit the axes {axes} of a "
                          f"{rank}-D tensor")
    ratios = [1.0] * rank
    for a, r in zip(axes, v):
        ratios[a] = float(r) / x.shape[a] if which == "sizes" else float(r)
    policy = at.text("keep_aspect_ratio_policy", "stretch")
    if which == "sizes" and policy != "stretch" and len({ratios[a] for a in axes}) > 1:
        raise DynfixError(f"{what}: sizes {v.tolist()} with keep_aspect_ratio_policy="
                          f"{policy!r} (dynfix reads sizes of the same ratio on every axis, "
                          f"or 'stretch')")
    if which == "scales":
        return f"scales {[round(r, 6) for r in ratios]}", ratios
    return f"sizes {v.tolist()} (scales {[round(r, 6) for r in ratios]})", ratios


@onnx_import("Resize", "Upsample")
def import_resize(imp: Importer, node, what: str) -> None:
    """A nearest-neighbour upsampling by 2 on H and W (on L of an N x C x L tensor), or by 1
    on one of them: a Resize layer; by 1 everywhere, the input itself."""
    x = imp.x(node)
    nd = imp.spatial(x, what, "resizes")
    _modes(imp, node, what)
    given, ratios = _ratios(imp, node, x, what)
    lead, spatial = ratios[:2], ratios[2:]
    if len(ratios) != len(x.shape) or lead != [1.0, 1.0] \
            or any(r not in FACTORS for r in spatial):
        raise DynfixError(f"{what}: {given} on a {list(x.shape)} tensor; dynfix reads a "
                          f"nearest-neighbour upsampling by 2 (or 1) on H and W (on L of "
                          f"an N x C x L tensor) and by 1 on N and C")
    scale = (1, int(spatial[0])) if nd == 1 else (int(spatial[0]), int(spatial[1]))
    if scale == (1, 1):
        imp.alias(node, x)
        return
    imp.bind(node, imp.add(Resize, node, [x], what, scale=scale))
