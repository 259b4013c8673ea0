#!/usr/bin/env python3
"""Train an MLPerf Tiny AD-shaped autoencoder on synthetic "machine sound" frames.

Nothing is downloaded: the data are made here, deterministically. Network (the MLPerf Tiny
anomaly-detection reference, ``/work/shared/reference/mlperf_tiny.md``)::

    640 -> 128 -> 128 -> 128 -> 128 -> 8 -> 128 -> 128 -> 128 -> 128 -> 640
    (Dense + BatchNorm + ReLU after every layer but the last)

Data (:func:`make_data`): a frame is 5 consecutive 128-bin log-mel spectra (dB-like values,
concatenated: 640 values, the DCASE baseline's input). A machine has ``MODES`` operating
modes; each mode is a smooth spectral template: a falling background (about -10 dB at the low
bins to -45 dB at the high ones) plus harmonic peaks at a mode-specific spacing. A normal
frame is a template with a random level offset, a small random stretch of the harmonic
positions, a slow amplitude modulation across the 5 frames and 1.5 dB of noise per value.
An anomalous frame is the same with its harmonics shifted by 1.5 to 3 bins, or one extra
6 dB peak, or one harmonic 5 dB louder (a third of each). Splits: ``train`` and ``calib`` hold
normal frames only (what an AD model is trained and calibrated on); ``test`` holds
``TEST_NORMAL`` normal and ``TEST_ANOMALY`` anomalous frames, ``y`` = 1 for an anomaly.

Training: numpy only, float32, He init, Adam (lr 1e-3, cosine decay to 0), batch 64, MSE
loss, BatchNorm in training mode (batch statistics, running averages with momentum 0.9).
For export each BatchNorm is folded into the Dense layer before it with its running
statistics (``W' = W * g / sqrt(v + eps)``, ``b' = (b - mu) * g / sqrt(v + eps) + beta``), so
the ONNX file is Gemm + Relu only. Everything random comes from
``np.random.default_rng(SEED)`` and BLAS runs on one thread: a rerun on the same machine
gives the same bytes. About 10 s for the default 24 epochs on one core.

Anomaly score = mean squared error between a frame and its reconstruction (the MLPerf Tiny
AD metric is the AUC of that score over normal vs anomalous test frames).

Usage: ``python tools/train_autoencoder.py [--epochs N] --out DIR`` writes
``DIR/ad_autoencoder.onnx`` and ``DIR/ad_data.npz`` (``x_train``, ``x_calib``, ``x``
(test), ``y`` (test, 1 = anomaly)) and prints the float model's test AUC.
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

SEED = 2025
MELS, FRAMES = 128, 5
DIMS = [MELS * FRAMES, 128, 128, 128, 128, 8, 128, 128, 128, 128, MELS * FRAMES]
MODES = 4
TRAIN, CALIB, TEST_NORMAL, TEST_ANOMALY = 6000, 500, 500, 500
BN_EPS, BN_MOMENTUM = 1e-3, 0.9
MODEL_FILE, DATA_FILE = "ad_autoencoder.onnx", "ad_data.npz"


@dataclass
class TrainConfig:
    epochs: int = 24
    batch: int = 64
    lr: float = 1e-3
    train: int = TRAIN


# ----------------------------------------------------------------------------- data

def _templates(rng: np.random.Generator) -> list[dict]:
    """One spectral recipe per operating mode: harmonic spacing, amplitudes, background."""
    modes = []
    for _ in range(MODES):
        f0 = rng.uniform(6.0, 14.0)                     # harmonic spacing in bins
        n = int((MELS - 8) // f0)
        modes.append({"f0": f0, "amp": rng.uniform(6.0, 18.0, n) * 0.85 ** np.arange(n),
                      "width": rng.uniform(1.0, 2.5), "tilt": rng.uniform(-38, -30),
                      "mod": rng.uniform(0.5, 2.0)})
    return modes


def _bumps(centres: np.ndarray, amps: np.ndarray, width: float) -> np.ndarray:
    """Sum of Gaussian peaks over the mel bins: (N, bins) for (N, K) centres/amplitudes."""
    b = np.arange(MELS, dtype=np.float64)
    return (amps[..., None] * np.exp(-0.5 * ((b - centres[..., None]) / width) ** 2)).sum(-2)


def _frames(rng: np.random.Generator, modes: list[dict], n: int, anomaly: bool) -> np.ndarray:
    bins = np.arange(MELS, dtype=np.float64)
    out = np.empty((n, FRAMES, MELS))
    which = rng.integers(0, MODES, n)
    kind = rng.integers(0, 3, n)                       # anomaly kind (unused when normal)
    for i in range(n):
        t = modes[which[i]]
        k = np.arange(1, len(t["amp"]) + 1)
        centres = 4.0 + k * t["f0"] * rng.uniform(0.98, 1.02)
        amps = t["amp"].copy()
        if anomaly and kind[i] == 0:
            centres = centres + rng.choice([-1, 1]) * rng.uniform(1.5, 3.0)
        if anomaly and kind[i] == 2:
            amps[rng.integers(0, len(amps))] += 5.0
        spec = -10.0 + (t["tilt"] + 10.0) * (bins / MELS) ** 0.7 + _bumps(centres, amps,
                                                                          t["width"])
        if anomaly and kind[i] == 1:
            spec = spec + _bumps(np.array([rng.uniform(10, MELS - 10)]), np.array([6.0]),
                                 1.5)
        phase = rng.uniform(0, 2 * np.pi)
        mod = t["mod"] * np.sin(phase + np.arange(FRAMES) * 0.9)[:, None]
        out[i] = spec[None, :] + rng.normal(0, 2.0) + mod + rng.normal(0, 1.5, (FRAMES, MELS))
    return out.reshape(n, FRAMES * MELS).astype(np.float32)


def make_data(train: int = TRAIN, seed: int = SEED) -> dict[str, np.ndarray]:
    """The splits (see the module docstring): ``x_train``, ``x_calib``, ``x``, ``y``."""
    rng = np.random.default_rng(seed)
    modes = _templates(rng)
    d = {"x_train": _frames(rng, modes, train, False),
         "x_calib": _frames(rng, modes, CALIB, False)}
    normal = _frames(rng, modes, TEST_NORMAL, False)
    anomal = _frames(rng, modes, TEST_ANOMALY, True)
    d["x"] = np.concatenate([normal, anomal])
    d["y"] = np.concatenate([np.zeros(TEST_NORMAL, np.int64), np.ones(TEST_ANOMALY, np.int64)])
    return d


# ----------------------------------------------------------------------------- model

def init_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    p = {}
    for i, (k, m) in enumerate(zip(DIMS[:-1], DIMS[1:]), start=1):
        gain = 2.0 if i < len(DIMS) - 1 else 1.0
        p[f"w{i}"] = (rng.standard_normal((m, k)) * np.sqrt(gain / k)).astype(np.float32)
        p[f"b{i}"] = np.zeros(m, np.float32)
        if i < len(DIMS) - 1:
            p[f"g{i}"] = np.ones(m, np.float32)
            p[f"beta{i}"] = np.zeros(m, np.float32)
    return p


def layers() -> int:
    return len(DIMS) - 1


def forward(p, stats, x, training: bool):
    """Returns the output and, when training, the cache for the backward pass (and updates
    the running statistics in ``stats``)."""
    cache, a = [], x
    for i in range(1, layers() + 1):
        z = a @ p[f"w{i}"].T + p[f"b{i}"]
        if i == layers():
            cache.append((a, None))
            return z, cache
        if training:
            mu, var = z.mean(0), z.var(0)
            stats[f"mu{i}"] = BN_MOMENTUM * stats[f"mu{i}"] + (1 - BN_MOMENTUM) * mu
            stats[f"var{i}"] = BN_MOMENTUM * stats[f"var{i}"] + (1 - BN_MOMENTUM) * var
        else:
            mu, var = stats[f"mu{i}"], stats[f"var{i}"]
        inv = 1.0 / np.sqrt(var + BN_EPS)
        zh = (z - mu) * inv
        h = zh * p[f"g{i}"] + p[f"beta{i}"]
        cache.append((a, (zh, inv, h)))
        a = np.maximum(h, 0)
    raise AssertionError("unreachable")


def loss_grad(p, stats, x):
    y, cache = forward(p, stats, x, True)
    n = len(x)
    d = 2.0 * (y - x) / (n * x.shape[1])
    loss = float(((y - x) ** 2).mean())
    g = {}
    for i in range(layers(), 0, -1):
        a, bn = cache[i - 1]
        if bn is not None:
            zh, inv, h = bn
            d = d * (h > 0)
            g[f"g{i}"] = (d * zh).sum(0)
            g[f"beta{i}"] = d.sum(0)
            dzh = d * p[f"g{i}"]
            d = inv * (dzh - dzh.mean(0) - zh * (dzh * zh).mean(0))
        g[f"w{i}"] = d.T @ a
        g[f"b{i}"] = d.sum(0)
        if i > 1:
            d = d @ p[f"w{i}"]
    return loss, g


class Adam:
    """Adam (beta 0.9, 0.999) with a cosine learning-rate decay to 0 over ``total`` steps."""

    def __init__(self, params: dict, lr: float, total: int):
        self.lr, self.total, self.t = lr, total, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params: dict, grads: dict) -> None:
        self.t += 1
        lr = self.lr * 0.5 * (1 + np.cos(np.pi * (self.t - 1) / self.total))
        for k, g in grads.items():
            self.m[k] = 0.9 * self.m[k] + 0.1 * g
            self.v[k] = 0.999 * self.v[k] + 0.001 * g * g
            mh = self.m[k] / (1 - 0.9 ** self.t)
            vh = self.v[k] / (1 - 0.999 ** self.t)
            params[k] = (params[k] - lr * mh / (np.sqrt(vh) + 1e-8)).astype(np.float32)


def train(cfg: TrainConfig, x: np.ndarray, log=print) -> tuple[dict, dict]:
    rng = np.random.default_rng(SEED + 1)
    p = init_params(rng)
    stats = {f"{s}{i}": (np.zeros if s == "mu" else np.ones)(DIMS[i], np.float32)
             for i in range(1, layers()) for s in ("mu", "var")}
    opt = Adam(p, cfg.lr, cfg.epochs * -(-len(x) // cfg.batch))
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(x))
        batches = [order[i:i + cfg.batch] for i in range(0, len(x), cfg.batch)]
        losses = []
        for idx in (b for b in batches if len(b) > 1):      # BatchNorm needs a batch
            loss, g = loss_grad(p, stats, x[idx])
            losses.append(loss)
            opt.step(p, g)
        if epoch % 8 == 7 or epoch == cfg.epochs - 1:
            log(f"epoch {epoch + 1:3d}  loss {np.mean(losses):.4f}")
    return p, stats


def folded(p: dict, stats: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) per Dense layer with its BatchNorm folded in (running statistics)."""
    out = []
    for i in range(1, layers() + 1):
        w, b = p[f"w{i}"].astype(np.float64), p[f"b{i}"].astype(np.float64)
        if i < layers():
            s = p[f"g{i}"] / np.sqrt(stats[f"var{i}"].astype(np.float64) + BN_EPS)
            w, b = w * s[:, None], (b - stats[f"mu{i}"]) * s + p[f"beta{i}"]
        out.append((w.astype(np.float32), b.astype(np.float32)))
    return out


def to_model(params: list[tuple[np.ndarray, np.ndarray]]):
    """The folded network as a dynfix IR model (Linear + ReLU)."""
    from dynfix.quant.ir import Linear, Model, ReLU
    ls, prev = [], "input"
    for i, (w, b) in enumerate(params, start=1):
        ls.append(Linear(f"dense{i}", (prev,), weight=w, bias=b))
        prev = f"dense{i}"
        if i < len(params):
            ls.append(ReLU(f"relu{i}", (prev,)))
            prev = f"relu{i}"
    return Model("ad_autoencoder", "input", (DIMS[0],), ls)


def anomaly_scores(x: np.ndarray, recon: np.ndarray) -> np.ndarray:
    """MSE between each frame and its reconstruction."""
    x = x.reshape(len(x), -1).astype(np.float64)
    return ((x - recon.reshape(len(x), -1)) ** 2).mean(axis=1)


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve: P(score of an anomaly > score of a normal), ties half."""
    pos, neg = scores[y == 1], scores[y == 0]
    order = np.argsort(np.concatenate([neg, pos]), kind="stable")
    ranks = np.empty(len(order))
    allv = np.concatenate([neg, pos])[order]
    # average ranks over ties
    _, first, counts = np.unique(allv, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(avg, counts)
    r_pos = ranks[len(neg):].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def build(out: str | Path, cfg: TrainConfig | None = None, log=print) -> tuple[Path, Path]:
    """Make the data, train, fold, write ``out/ad_autoencoder.onnx`` and ``out/ad_data.npz``."""
    from dynfix.quant.onnx import save_onnx
    cfg = cfg or TrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = make_data(cfg.train)
    p, stats = train(cfg, data["x_train"], log)
    model = to_model(folded(p, stats))
    onnx_path, data_path = out / MODEL_FILE, out / DATA_FILE
    save_onnx(model, onnx_path)
    np.savez(data_path, **data)
    return onnx_path, data_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--out", type=Path, required=True, help="output folder")
    args = ap.parse_args(argv)
    from dynfix.quant.float_model import predict
    from dynfix.quant.onnx import load_onnx
    t0 = time.perf_counter()
    onnx_path, data_path = build(args.out, TrainConfig(epochs=args.epochs))
    model = load_onnx(onnx_path)
    with np.load(data_path) as d:
        x, y = d["x"], d["y"]
    s = anomaly_scores(x, predict(model, x))
    print(f"trained in {time.perf_counter() - t0:.1f} s; wrote {onnx_path} and {data_path}")
    print(f"float test AUC {auc(s, y):.4f}; mean score normal {s[y == 0].mean():.3f}, "
          f"anomaly {s[y == 1].mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
