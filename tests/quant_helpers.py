"""Helpers the quantizer tests share: a digits-like network with calibration inputs, and a
Q.yaml of the bundled digits model in the layout dynfix wrote before graphs."""

from __future__ import annotations

import numpy as np

from dynfix.quant.ir import Conv2d, Flatten, Linear, MaxPool2d, Model, ReLU


def digits_like_net():
    rng = np.random.default_rng(3)
    layers = [
        Conv2d("c1", ("x",), weight=rng.normal(0, 0.3, (4, 1, 3, 3)).astype(np.float32),
               bias=rng.normal(0, 0.1, 4).astype(np.float32), pads=(1, 1, 1, 1)),
        ReLU("r1", ("c1",)), MaxPool2d("p1", ("r1",)), Flatten("f", ("p1",)),
        Linear("fc", ("f",), weight=rng.normal(0, 0.3, (10, 64)).astype(np.float32),
               bias=rng.normal(0, 0.1, 10).astype(np.float32))]
    x = rng.uniform(0, 1, (200, 1, 8, 8)).astype(np.float32)
    return Model("net", "x", (1, 8, 8), layers), x


# Q.yaml of the bundled digits model as dynfix wrote it before graphs (chain-only layout).
OLD_DIGITS_Q = """\
model: digits
method: greedy
bits: '8'
input_bw: 8
input_fl: 6
layers:
- {name: conv1, bw_w: 8, fl_w: 6, bw_b: 16, fl_b: 12, bw_x: 8, fl_in: 6, fl_out: 5, acc_bits: 19, sqnr_db: 39.18, saturated: 30}
- {name: conv2, bw_w: 8, fl_w: 7, bw_b: 16, fl_b: 12, bw_x: 8, fl_in: 5, fl_out: 4, acc_bits: 22, sqnr_db: 37.14, saturated: 2056}
- {name: fc, bw_w: 8, fl_w: 7, bw_b: 16, fl_b: 11, bw_x: 8, fl_in: 4, fl_out: 2, acc_bits: 24, sqnr_db: 35.17, saturated: 0}
"""  # noqa: E501
