"""Test helper: a small CNN with what trained weights have and random ones lack.

Trained networks break quantizers tuned on random weights (``shared/reference``: the MLPerf
Tiny VWW model): folded BatchNorms with gamma near 0 leave dead channels (weights around
1e-30, or exactly 0), depthwise layers have per-channel ranges spanning five decades, and
feature maps are heavy-tailed, so held-out inputs reach beyond the calibration maxima. This
model has all three, as an ONNX graph the loader has to fold:

conv 3x3 3 -> 16, BN (gamma 1e-30 on :data:`DEAD`, 0 on :data:`ZERO`), ReLU -> depthwise
3x3, BN (gammas 1e-4 .. 10), ReLU -> conv 1x1 16 -> 16, BN, ReLU -> global average pool ->
Gemm 16 -> 4.

:func:`inputs` draws images in [0, 1) with rare bright specks of Pareto amplitude.
"""

from __future__ import annotations

import numpy as np
import onnx

from onnx_graphs import GraphBuilder

SHAPE = (3, 16, 16)
DEAD = (1, 5)       # gamma 1e-30: weights around 1e-30 after folding
ZERO = (9,)         # gamma 0: all-zero weights
CLASSES = 4


def trained_like_onnx(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed + 100)
    gamma = np.exp(0.5 * rng.standard_normal(16))
    gamma[list(DEAD)] = 1e-30
    gamma[list(ZERO)] = 0.0
    g = GraphBuilder(SHAPE, seed=seed)
    g.conv(16).bn(gamma).relu()
    g.group_conv(16, 3, groups=16).bn(np.logspace(-4, 1, 16)[rng.permutation(16)]).relu()
    g.conv(16, k=1).bn().relu()
    return g.gap().flatten().gemm(CLASSES).build()


def inputs(n: int, seed: int) -> np.ndarray:
    """``n`` images, N x 3 x 16 x 16 float32: uniform [0, 1) plus, on one pixel in 64, a
    speck of amplitude Pareto(2) (so the largest values grow with ``n``)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n,) + SHAPE)
    speck = rng.random((n,) + SHAPE) < 1 / 64
    x = x + speck * rng.pareto(2.0, (n,) + SHAPE)
    return x.astype(np.float32)
