#!/usr/bin/env python3
"""Train the bundled edge-layer example on the digits data; write dynfix/data/digits_edge.*.

Network (NCHW, 1 x 8 x 8 input in [0, 1])::

    conv3x3(1->8, pad 1) -> ReLU                                          (stem)
    -> conv3x3(8->8, pad 1) -> ReLU -> conv3x3(8->8, pad 1) -> Add(stem) -> ReLU   (residual)
    -> depthwise conv3x3(8, groups 8, pad 1) -> Clip(0, 6)                 (ReLU6)
    -> conv1x1(8->16) -> ReLU -> maxpool 2x2 -> GlobalAveragePool -> Flatten -> linear(16->10)

It exercises the layers beyond ``digits`` the engine runs: a residual Add, a depthwise conv,
ReLU6 and a global average pool (folded into the Linear when compiled). The maxpool before
the global pool keeps the engine's feature maps small (4 x 4 x 16 instead of 8 x 8 x 16).

Data, training and export are those of ``tools/train_digits.py`` (imported from it: im2col
and col2im, He init, Adam with cosine decay, weight decay 1e-4, batch 32, +-1 pixel shifts,
softmax cross-entropy, one BLAS thread, everything random from
``np.random.default_rng(SEED)``), with more epochs because the network is smaller. The
backward passes of Add, the depthwise conv, Clip and the global average pool are written
here (vectorized numpy; ``tests/flow/test_edge_example.py`` checks them by finite differences).
A rerun on the same machine gives the same bytes; it takes about 30 s on one core.

Outputs (overwritten atomically): ``dynfix/data/digits_edge.onnx`` (opset 13: Conv with
group=8 for the depthwise, Add, Clip with min/max inputs, GlobalAveragePool, Flatten, Gemm)
and ``dynfix/data/digits_edge.yaml`` + ``digits_edge.npz`` (dynfix's own format).

Usage: ``python tools/train_digits_edge.py [--epochs N] [--out DIR]``
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # deterministic, one core
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_digits import (TrainConfig, col2im, conv_bwd, conv_fwd, he, im2col,  # noqa: E402
                          pool_bwd, pool_fwd, softmax_xent, train, write_and_report)

SEED = 2025
STEM, WIDE, CLASSES = 8, 16, 10
RELU6 = (0.0, 6.0)


@dataclass
class EdgeConfig(TrainConfig):
    epochs: int = 120


# ----------------------------------------------------------------------------- layers

def dwconv_fwd(x, w, b):
    """Depthwise pad-1 3x3 convolution (groups = channels, weight C x 1 x 3 x 3)."""
    n, c, h, wd = x.shape
    cols = im2col(x).reshape(n, h, wd, c, 9)
    y = np.einsum("nhwck,ck->nchw", cols, w.reshape(c, 9)) + b[:, None, None]
    return y, cols


def dwconv_bwd(dy, cols, w, x_shape):
    """Gradients of :func:`dwconv_fwd`: (dx, dw, db)."""
    c = x_shape[1]
    dyt = dy.transpose(0, 2, 3, 1)                      # N, H, W, C
    dw = np.einsum("nhwc,nhwck->ck", dyt, cols).reshape(w.shape)
    db = dy.sum(axis=(0, 2, 3))
    dcols = dyt[..., None] * w.reshape(c, 9)            # N, H, W, C, 9
    return col2im(dcols, x_shape), dw, db


def pwconv_fwd(x, w, b):
    """1x1 convolution (weight M x C x 1 x 1)."""
    return np.einsum("nchw,mc->nmhw", x, w[:, :, 0, 0]) + b[:, None, None]


def pwconv_bwd(dy, x, w):
    dw = np.einsum("nmhw,nchw->mc", dy, x)[:, :, None, None]
    return np.einsum("nmhw,mc->nchw", dy, w[:, :, 0, 0]), dw, dy.sum(axis=(0, 2, 3))


def add_bwd(dy):
    """Gradients of a + b: the same for both inputs."""
    return dy, dy


def clip_fwd(z, lo=RELU6[0], hi=RELU6[1]):
    return np.clip(z, lo, hi)


def clip_bwd(dy, z, lo=RELU6[0], hi=RELU6[1]):
    """Gradient of Clip(lo, hi): passes where the input was strictly inside the range."""
    return dy * ((z > lo) & (z < hi))


def gap_fwd(x):
    """Global average pool to N x C (the flatten after it is a reshape)."""
    return x.mean(axis=(2, 3))


def gap_bwd(dy, x_shape):
    n, c, h, w = x_shape
    return np.broadcast_to(dy[:, :, None, None] / (h * w), x_shape).copy()


# ----------------------------------------------------------------------------- model

def init_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    def zeros(k):
        return np.zeros(k, np.float32)
    return {"w1": he(rng, STEM, 1, 3, 3), "b1": zeros(STEM),
            "w2": he(rng, STEM, STEM, 3, 3), "b2": zeros(STEM),
            # the residual branch starts small, so the block starts near the identity
            "w3": he(rng, STEM, STEM, 3, 3) * np.float32(0.5), "b3": zeros(STEM),
            "w4": he(rng, STEM, 1, 3, 3), "b4": zeros(STEM),
            "w5": he(rng, WIDE, STEM, 1, 1), "b5": zeros(WIDE),
            "w6": he(rng, CLASSES, WIDE) / np.float32(np.sqrt(2)), "b6": zeros(CLASSES)}


def forward(p, x):
    z1, c1 = conv_fwd(x, p["w1"], p["b1"])
    a1 = np.maximum(z1, 0)
    z2, c2 = conv_fwd(a1, p["w2"], p["b2"])
    a2 = np.maximum(z2, 0)
    z3, c3 = conv_fwd(a2, p["w3"], p["b3"])
    s = z3 + a1
    a3 = np.maximum(s, 0)
    z4, c4 = dwconv_fwd(a3, p["w4"], p["b4"])
    a4 = clip_fwd(z4)
    z5 = pwconv_fwd(a4, p["w5"], p["b5"])
    a5 = np.maximum(z5, 0)
    pooled, mask = pool_fwd(a5)
    g = gap_fwd(pooled)
    logits = g @ p["w6"].T + p["b6"]
    return logits, (x, z1, c1, a1, z2, c2, a2, c3, s, a3, z4, c4, a4, z5, mask, pooled, g)


def loss_grad(p, x, y):
    logits, (x, z1, c1, a1, z2, c2, a2, c3, s, a3, z4, c4, a4, z5, mask, pooled, g) = \
        forward(p, x)
    loss, d = softmax_xent(logits, y)
    grads = {"w6": d.T @ g, "b6": d.sum(axis=0)}
    dpooled = gap_bwd(d @ p["w6"], pooled.shape)
    dz5 = pool_bwd(dpooled, mask) * (z5 > 0)
    da4, grads["w5"], grads["b5"] = pwconv_bwd(dz5, a4, p["w5"])
    dz4 = clip_bwd(da4, z4)
    da3, grads["w4"], grads["b4"] = dwconv_bwd(dz4, c4, p["w4"], a3.shape)
    ds = da3 * (s > 0)
    dz3, da1_skip = add_bwd(ds)
    da2, grads["w3"], grads["b3"] = conv_bwd(dz3, c3, p["w3"], a2.shape)
    dz2 = da2 * (z2 > 0)
    da1, grads["w2"], grads["b2"] = conv_bwd(dz2, c2, p["w2"], a1.shape)
    dz1 = (da1 + da1_skip) * (z1 > 0)
    _, grads["w1"], grads["b1"] = conv_bwd(dz1, c1, p["w1"], x.shape)
    return loss, grads


def to_model(p: dict):
    """The trained parameters as a dynfix IR model."""
    from dynfix.quant.ir import (Add, Clip, Conv2d, Flatten, GlobalAvgPool, Linear, MaxPool2d,
                                 Model, ReLU)
    pad = (1, 1, 1, 1)
    layers = [
        Conv2d("conv1", ("input",), weight=p["w1"], bias=p["b1"], pads=pad),
        ReLU("relu1", ("conv1",)),
        Conv2d("res_conv1", ("relu1",), weight=p["w2"], bias=p["b2"], pads=pad),
        ReLU("res_relu1", ("res_conv1",)),
        Conv2d("res_conv2", ("res_relu1",), weight=p["w3"], bias=p["b3"], pads=pad),
        Add("res_add", ("res_conv2", "relu1")),
        ReLU("res_relu2", ("res_add",)),
        Conv2d("dw", ("res_relu2",), weight=p["w4"], bias=p["b4"], pads=pad, groups=STEM),
        Clip("relu6", ("dw",), lo=RELU6[0], hi=RELU6[1]),
        Conv2d("pw", ("relu6",), weight=p["w5"], bias=p["b5"]),
        ReLU("relu_pw", ("pw",)),
        MaxPool2d("pool", ("relu_pw",), kernel=(2, 2), stride=(2, 2)),
        GlobalAvgPool("gap", ("pool",)),
        Flatten("flatten", ("gap",)),
        Linear("fc", ("flatten",), weight=p["w6"], bias=p["b6"]),
    ]
    return Model("digits-edge", "input", (1, 8, 8), layers)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=EdgeConfig.epochs)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1]
                    / "dynfix" / "data", help="output folder (default: dynfix/data)")
    args = ap.parse_args(argv)

    from dynfix.quant.datasets import load_digits

    x, y = load_digits("train")
    t0 = time.perf_counter()
    params = train(EdgeConfig(epochs=args.epochs), x, y, seed=SEED, init=init_params,
                   grad=loss_grad)
    elapsed = time.perf_counter() - t0
    write_and_report(to_model(params), args.out / "digits_edge.onnx", elapsed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
