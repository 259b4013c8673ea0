"""Choosing a compute layer's integer weights and bias beyond rounding each to nearest.

Two post-training adjustments the greedy search can make (``QuantOptions.rounding`` and
``QuantOptions.bias_correction``; docs/quantization.md). Neither changes the arithmetic or
the formats: they change *which* integers the layer holds. The search records the result as
float parameters that round (to nearest, as always) to the chosen integers, so the integer
model and the engine use them unchanged.

Both work on the layer's *pre-activation* (its accumulator before the bias, as a real
number) over the calibration batch: the float model's, ``P_f = W * x_f`` (float weights on
the float model's input), against the quantized one's, ``P_q = W_q * x_q`` (the integer
weights on the partly-quantized model's input, both dequantized).

* **Adaptive rounding** (:func:`adaptive_round`, an AdaRound-style greedy): each weight may
  round down or up (never further); starting from nearest, a coordinate pass over the inputs
  flips a weight whenever that lowers ``sum (P_q - P_f)^2`` over the calibration rows (all
  output channels at once, exact loss change from the rows' Gram matrix). Two passes.
* **Bias correction** (:func:`corrected_bias`): the bias gets the per-output-channel mean of
  ``P_f - P_q`` added, so the quantized layer's output has the float layer's mean.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import fixed
from .int_model import live_channels
from .ir import Layer, Model

MAX_ROWS = 8192          # calibration rows (inputs x output positions) used for the Gram matrix
ROUND_PASSES = 2


def preactivation(layer: Layer, x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``W * x`` without the bias, float64 (N x channels x ...)."""
    return layer.products(np.asarray(x, np.float64), np.asarray(w, np.float64))


def corrected_bias(layer: Layer, bias: np.ndarray, w: np.ndarray, xf: np.ndarray,
                   wq: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """``bias + mean(W x_f - W_q x_q)`` per output channel (float32); ``wq``, ``xq`` are
    the dequantized integer weights and inputs."""
    diff = preactivation(layer, xf, w) - preactivation(layer, xq, wq)
    axes = tuple(i for i in range(diff.ndim) if i != 1)
    return (np.asarray(bias, np.float64) + diff.mean(axis=axes)).astype(np.float32)


def _greedy_round(v: np.ndarray, q: np.ndarray, xq: np.ndarray, xf: np.ndarray,
                  w: np.ndarray, step: np.ndarray, lo_q: int, hi_q: int) -> np.ndarray:
    """Flip weights between floor and ceil of ``v`` (= w / step) while the squared
    pre-activation error ``|xq (step q)^T - xf w^T|^2`` falls. q: nearest, (M, K); step:
    each row's weight step (M,)."""
    q = q.copy()
    h = xq.T @ xq                                            # K x K
    g = step[:, None] * (q @ h) - w @ (xf.T @ xq)            # d loss / d (step q) / 2
    down = np.floor(v)
    for _ in range(ROUND_PASSES):
        changed = False
        for k in range(q.shape[1]):
            col = q[:, k]
            alt = np.where(col == down[:, k], down[:, k] + 1, down[:, k])
            ok = (np.abs(alt - v[:, k]) < 1) & (alt >= lo_q) & (alt <= hi_q)
            d = (alt - col) * step
            gain = 2 * d * g[:, k] + d * d * h[k, k]
            take = ok & (gain < 0)
            if take.any():
                q[take, k] = alt[take]
                g[take] += d[take, None] * h[k][None, :]
                changed = True
        if not changed:
            break
    return q


def tied_columns(w: np.ndarray) -> int:
    """The longest run length ``P > 1`` such that a Linear weight ``(M, F)`` is constant over
    each run of ``P`` consecutive columns; 1 when there is none (or ``w`` is not 2-D)."""
    if w.ndim != 2:
        return 1
    f = w.shape[1]
    for p in range(f // 2, 1, -1):
        if f % p == 0:
            runs = w.reshape(w.shape[0], f // p, p)
            if np.all(runs == runs[:, :, :1]):
                return p
    return 1


def adaptive_round(layer: Layer, w: np.ndarray, wq: np.ndarray, bw: int,
                   fl: int | np.ndarray, xf: np.ndarray, xq: np.ndarray) -> np.ndarray:
    """Integer weights (int64, ``w``'s shape) chosen per layer as the module docstring says;
    ``fl`` is the weights' fl (or one per output channel), ``wq`` the nearest-rounded
    integers, ``xf``/``xq`` the float and the dequantized
    quantized inputs of the calibration batch. Affine layers keep ``wq``, and so does a Linear
    whose columns come in runs of equal weights (a global average pool folded into it,
    :mod:`.lower`): the engine stores such weights once per run, which per-weight rounding
    decisions would undo."""
    if not layer.dot_product or tied_columns(w) > 1:
        return wq
    w64 = np.asarray(w, np.float64)
    steps = np.broadcast_to(np.ldexp(1.0, -np.asarray(fl, np.int64)), (w.shape[0],))
    groups = layer.groups
    m = w.shape[0] // groups
    out = np.array(wq, dtype=np.int64, copy=True)
    rng = np.random.default_rng(0)
    for j in range(groups):
        rq, rf = layer.input_rows(xq, j), layer.input_rows(xf, j)
        if len(rq) > MAX_ROWS:
            keep = np.sort(rng.choice(len(rq), MAX_ROWS, replace=False))
            rq, rf = rq[keep], rf[keep]
        wj = w64[j * m:(j + 1) * m].reshape(m, -1)
        qj = out[j * m:(j + 1) * m].reshape(m, -1)
        step = steps[j * m:(j + 1) * m]
        new = _greedy_round(wj / step[:, None], qj.astype(np.float64),
                            np.asarray(rq, np.float64), np.asarray(rf, np.float64), wj, step,
                            fixed.qmin(bw), fixed.qmax(bw))
        out[j * m:(j + 1) * m] = new.astype(np.int64).reshape(out[j * m:(j + 1) * m].shape)
    return out


# ----------------------------------------------------------------------------- equalization

EQUALIZE_SWEEPS = 8


def equalizable_pairs(model: Model) -> list[tuple[Layer, Layer, int]]:
    """(A, B, block): dot-product layers where A's output reaches only B, through
    homogeneous layers alone (``Layer.homogeneous``: relu(s x) = s relu(x), the max and the
    mean of s x are s times those of x, flatten keeps channel order; a Clip (ReLU6) is not,
    its bound is one number for all channels); ``block`` is how many of B's input columns
    one of A's channels became (``H * W`` after a Flatten of an H x W map, else 1)."""
    pairs = []
    for a in model.layers:
        if not (a.compute and a.dot_product):
            continue
        t, block = a.name, 1
        while len(model.consumers(t)) == 1:
            nxt = model.consumers(t)[0]
            if nxt.compute and nxt.dot_product:
                pairs.append((a, nxt, block))
                break
            if not nxt.homogeneous:
                break
            shape = model.shape(t)
            if len(shape) == 3 and len(nxt.out_shape) == 1:     # a Flatten
                block = int(np.prod(shape[1:]))
            t = nxt.name
    return pairs


def equalize(model: Model) -> Model:
    """Cross-layer equalization (Nagel et al., "Data-Free Quantization", 2019): for every
    pair of :func:`equalizable_pairs`, scale A's output channel ``c`` (its weights and
    bias) by ``1 / s_c`` and B's weights on that channel by ``s_c``, with
    ``s_c = sqrt(r_A,c / r_B,c)`` (the two channels' largest weight magnitudes), so both
    become ``sqrt(r_A,c * r_B,c)``; repeated over all pairs a few times. A channel that is
    dead on either side (:func:`~.int_model.live_channels`) is not scaled: its tiny range
    would scale its bias (or B's live weights) by the inverse. The float model
    computes the same function (up to float32 rounding); per-layer weight formats waste
    less range on the channels with the largest weights. Layers it does not change keep
    their arrays (the same objects)."""
    pairs = equalizable_pairs(model)
    if not pairs:
        return model
    params = {layer.name: {"weight": layer.weight.astype(np.float64),
                           "bias": None if layer.bias is None else
                           layer.bias.astype(np.float64)}
              for a, b, _ in pairs for layer in (a, b)}
    for _ in range(EQUALIZE_SWEEPS):
        for a, b, block in pairs:
            wa, wb = params[a.name]["weight"], params[b.name]["weight"]
            c = wa.shape[0]
            ra = np.abs(wa.reshape(c, -1)).max(axis=1)
            cols = b.input_columns(wb, c, block)
            rb = np.abs(cols.reshape(c, -1)).max(axis=1)
            s = np.ones(c)
            ok = live_channels(ra) & live_channels(rb)      # dead channels keep their scale
            s[ok] = np.sqrt(ra[ok] / rb[ok])
            wa /= s.reshape((c,) + (1,) * (wa.ndim - 1))
            if params[a.name]["bias"] is not None:
                params[a.name]["bias"] /= s
            params[b.name]["weight"] = b.scale_inputs(wb, s, block)
    layers = []
    for layer in model.layers:
        p = params.get(layer.name)
        if p is None:
            layers.append(layer)
            continue
        bias = None if p["bias"] is None else p["bias"].astype(np.float32)
        layers.append(replace(layer, weight=p["weight"].astype(np.float32), bias=bias))
    return model.with_layers(layers)
