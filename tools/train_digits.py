#!/usr/bin/env python3
"""Train the bundled default model on scikit-learn's digits and write dynfix/data/digits.*.

Network (NCHW, 1 x 8 x 8 input in [0, 1])::

    conv3x3(1->8, pad 1) -> ReLU -> conv3x3(8->16, pad 1) -> ReLU -> maxpool 2x2
    -> flatten (256) -> linear(256->10)

Data: ``dynfix.quant.datasets.load_digits`` (fixed split, seed 0): 1077 train, 360 calib,
360 test images. Only ``train`` is used for training; calib/test accuracies are reported.

Training: numpy only (im2col convolutions, hand-written backward pass), He init, Adam
(lr 3e-3, cosine decay to 0), batch 32, 60 epochs, weight decay 1e-4, softmax
cross-entropy, random +-1 pixel shifts as augmentation. Everything random comes from
``np.random.default_rng(SEED)`` and BLAS runs on one thread, so a rerun on the same machine
gives the same weights. It takes well under a minute on one core.

Outputs (overwritten atomically): ``dynfix/data/digits.onnx`` (opset 13) and
``dynfix/data/digits.yaml`` + ``digits.npz`` (the same model in dynfix's own format).

Usage: ``python tools/train_digits.py [--epochs N] [--out DIR]``
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # deterministic, one core
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

SEED = 2024


@dataclass
class TrainConfig:
    epochs: int = 60
    batch: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    shift: int = 1  # augmentation: random shifts of up to this many pixels


# ----------------------------------------------------------------------------- layers

def im2col(x: np.ndarray) -> np.ndarray:
    """3x3 windows of a zero-padded (pad 1) N x C x H x W batch: (N, H, W, C*9)."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    v = sliding_window_view(xp, (3, 3), axis=(2, 3))  # N, C, H, W, 3, 3
    n, c, h, w = x.shape
    return v.transpose(0, 2, 3, 1, 4, 5).reshape(n, h, w, c * 9)


def conv_fwd(x, w, b):
    cols = im2col(x)
    y = cols @ w.reshape(w.shape[0], -1).T + b  # N, H, W, M
    return y.transpose(0, 3, 1, 2), cols


def conv_bwd(dy, cols, w, x_shape):
    """Gradients of a pad-1 3x3 convolution: (dx, dw, db)."""
    n, c, h, wd = x_shape
    m = w.shape[0]
    dy2 = dy.transpose(0, 2, 3, 1).reshape(-1, m)
    dw = (dy2.T @ cols.reshape(-1, c * 9)).reshape(w.shape)
    db = dy2.sum(axis=0)
    dcols = dy2 @ w.reshape(m, -1)
    return col2im(dcols, x_shape), dw, db


def col2im(dcols, x_shape):
    """Adjoint of :func:`im2col`: scatter gradients of the 3x3 windows (N*H*W rows, or
    N, H, W, C*9) back onto the N x C x H x W input."""
    n, c, h, wd = x_shape
    dcols = dcols.reshape(n, h, wd, c, 3, 3)
    dxp = np.zeros((n, c, h + 2, wd + 2), dcols.dtype)
    for i in range(3):  # scatter the nine kernel taps back
        for j in range(3):
            dxp[:, :, i:i + h, j:j + wd] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dxp[:, :, 1:-1, 1:-1]


def pool_fwd(x):
    n, c, h, w = x.shape
    r = x.reshape(n, c, h // 2, 2, w // 2, 2)
    y = r.max(axis=(3, 5))
    mask = r == y[:, :, :, None, :, None]
    return y, mask


def pool_bwd(dy, mask):
    n, c, h, _, w, _ = mask.shape
    return (mask * dy[:, :, :, None, :, None]).reshape(n, c, h * 2, w * 2)


# ----------------------------------------------------------------------------- model

def he(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """He-normal float32 weights; fan-in is the product of all but the first dimension."""
    fan_in = int(np.prod(shape[1:]))
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def init_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"w1": he(rng, 8, 1, 3, 3), "b1": np.zeros(8, np.float32),
            "w2": he(rng, 16, 8, 3, 3), "b2": np.zeros(16, np.float32),
            "w3": he(rng, 10, 256) / np.float32(np.sqrt(2)), "b3": np.zeros(10, np.float32)}


def forward(p, x):
    z1, c1 = conv_fwd(x, p["w1"], p["b1"])
    a1 = np.maximum(z1, 0)
    z2, c2 = conv_fwd(a1, p["w2"], p["b2"])
    a2 = np.maximum(z2, 0)
    pooled, mask = pool_fwd(a2)
    flat = pooled.reshape(len(x), -1)
    logits = flat @ p["w3"].T + p["b3"]
    return logits, (x, z1, c1, a1, z2, c2, mask, flat)


def loss_grad(p, x, y):
    logits, (x, z1, c1, a1, z2, c2, mask, flat) = forward(p, x)
    loss, d = softmax_xent(logits, y)
    n = len(y)
    g = {"w3": d.T @ flat, "b3": d.sum(axis=0)}
    dpool = (d @ p["w3"]).reshape(n, 16, 4, 4)
    dz2 = pool_bwd(dpool, mask) * (z2 > 0)
    da1, g["w2"], g["b2"] = conv_bwd(dz2, c2, p["w2"], a1.shape)
    dz1 = da1 * (z1 > 0)
    _, g["w1"], g["b1"] = conv_bwd(dz1, c1, p["w1"], x.shape)
    return loss, g


def softmax_xent(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy of a batch and its gradient with respect to the logits."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob = e / e.sum(axis=1, keepdims=True)
    n = len(y)
    loss = -np.log(prob[np.arange(n), y] + 1e-12).mean()
    d = prob
    d[np.arange(n), y] -= 1
    d /= n
    return float(loss), d


def augment(x: np.ndarray, rng: np.random.Generator, s: int) -> np.ndarray:
    """Shift each image by up to ``s`` pixels in each direction (zero fill)."""
    if s == 0:
        return x
    n, _, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (s, s), (s, s)))
    dy, dx = rng.integers(0, 2 * s + 1, size=(2, n))
    rows = dy[:, None] + np.arange(h)[None, :]
    cols = dx[:, None] + np.arange(w)[None, :]
    return xp[np.arange(n)[:, None, None], 0, rows[:, :, None], cols[:, None, :]][:, None]


def train(cfg: TrainConfig, x: np.ndarray, y: np.ndarray, log=print, *, seed: int = SEED,
          init=init_params, grad=loss_grad) -> dict:
    """Adam (cosine-decayed lr, weight decay on the ``w*`` parameters) over shuffled,
    augmented batches; ``init(rng)`` makes the parameters, ``grad(p, x, y)`` returns
    ``(loss, gradients)``."""
    rng = np.random.default_rng(seed)
    p = init(rng)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(a) for k, a in p.items()}
    steps_per_epoch = -(-len(x) // cfg.batch)
    total, t = cfg.epochs * steps_per_epoch, 0
    b1, b2, eps = 0.9, 0.999, 1e-8
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(x))
        losses = []
        for i in range(0, len(x), cfg.batch):
            idx = order[i:i + cfg.batch]
            loss, g = grad(p, augment(x[idx], rng, cfg.shift), y[idx])
            losses.append(loss)
            t += 1
            lr = cfg.lr * 0.5 * (1 + np.cos(np.pi * (t - 1) / total))
            for k in p:
                gk = g[k] + (cfg.weight_decay * p[k] if k.startswith("w") else 0)
                m[k] = b1 * m[k] + (1 - b1) * gk
                v[k] = b2 * v[k] + (1 - b2) * gk * gk
                mh, vh = m[k] / (1 - b1 ** t), v[k] / (1 - b2 ** t)
                p[k] = (p[k] - lr * mh / (np.sqrt(vh) + eps)).astype(np.float32)
        if epoch % 10 == 9 or epoch == cfg.epochs - 1:
            log(f"epoch {epoch + 1:3d}  loss {np.mean(losses):.4f}")
    return p


def to_model(p: dict):
    """The trained parameters as a dynfix IR model."""
    from dynfix.quant.ir import Conv2d, Flatten, Linear, MaxPool2d, Model, ReLU
    layers = [
        Conv2d("conv1", ("input",), weight=p["w1"], bias=p["b1"], pads=(1, 1, 1, 1)),
        ReLU("relu1", ("conv1",)),
        Conv2d("conv2", ("relu1",), weight=p["w2"], bias=p["b2"], pads=(1, 1, 1, 1)),
        ReLU("relu2", ("conv2",)),
        MaxPool2d("pool", ("relu2",), kernel=(2, 2), stride=(2, 2)),
        Flatten("flatten", ("pool",)),
        Linear("fc", ("flatten",), weight=p["w3"], bias=p["b3"]),
    ]
    return Model("digits", "input", (1, 8, 8), layers)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1]
                    / "dynfix" / "data", help="output folder (default: dynfix/data)")
    args = ap.parse_args(argv)

    from dynfix.quant.datasets import load_digits

    x, y = load_digits("train")
    t0 = time.perf_counter()
    params = train(TrainConfig(epochs=args.epochs), x, y)
    elapsed = time.perf_counter() - t0
    write_and_report(to_model(params), args.out / "digits.onnx", elapsed)
    return 0


def write_and_report(model, onnx_path: Path, elapsed: float) -> dict[str, float]:
    """Write ``model`` as ``onnx_path`` and the same-named ``.yaml`` (+ ``.npz``), then load
    the written ONNX file back and print (and return) its float accuracy on each split."""
    from dynfix.quant.datasets import load_digits
    from dynfix.quant.float_model import predict
    from dynfix.quant.onnx import load_onnx, save_onnx
    from dynfix.quant.yaml_io import save_yaml

    save_onnx(model, onnx_path)
    save_yaml(model, onnx_path.with_suffix(".yaml"))
    check = load_onnx(onnx_path)  # report what the written file does
    print(f"trained in {elapsed:.1f} s; wrote {onnx_path}")
    accs = {}
    for split in ("train", "calib", "test"):
        xs, ys = load_digits(split)
        acc = accs[split] = float(np.mean(predict(check, xs).argmax(axis=1) == ys))
        print(f"{split:5s} accuracy {acc * 100:6.2f} %  ({len(ys)} images)")
    return accs


if __name__ == "__main__":
    raise SystemExit(main())
