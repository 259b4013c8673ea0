"""Shared model builders for the hardware tests: the bundled digits network at 8 bits and
small random networks, quantized by the real quantizer."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from dynfix.quant.datasets import load_digits
from dynfix.quant.ir import Conv2d, Flatten, Linear, MaxPool2d, Model, ReLU
from dynfix.quant.load import load_model
from dynfix.quant.qspec import LayerFormat, QuantSpec
from dynfix.quant.search import search


@lru_cache(maxsize=None)
def digits_8bit():
    model = load_model("digits")
    x, _ = load_digits("calib")
    return model, search(model, x, bits="8")


@lru_cache(maxsize=None)
def digits_4bit_weights():
    """The digits network with 8-bit maps and 4-bit weights (``--bits 8/4/4``): two
    products per ECP5 MULT18X18D (``packed_dsp``)."""
    model = load_model("digits")
    x, _ = load_digits("calib")
    return model, search(model, x, bits="8/4/4")


def conv(rng, name, inp, m, c, kh, kw, **kw_args):
    return Conv2d(name, (inp,), weight=rng.standard_normal((m, c, kh, kw)).astype(np.float32)
                  * 0.3, bias=rng.standard_normal(m).astype(np.float32) * 0.1, **kw_args)


def small_net(seed: int = 3, bits: str = "8"):
    """Padding (asymmetric), stride 2, channels not a multiple of the lanes, a 2x2 pool and an
    FC layer on a 2x1 map (the pool drops a column)."""
    rng = np.random.default_rng(seed)
    layers = [
        conv(rng, "c1", "x", 7, 5, 3, 3, stride=(2, 2), pads=(1, 0, 1, 2)),
        ReLU("r1", ("c1",)),
        conv(rng, "c2", "r1", 11, 7, 2, 3, pads=(1, 1, 0, 1)),
        MaxPool2d("p2", ("c2",), kernel=(2, 2), stride=(2, 2)),
        ReLU("r2", ("p2",)),
        Flatten("f", ("r2",)),
        Linear("fc", ("f",), weight=rng.standard_normal((4, 11 * 2 * 1)).astype(np.float32)
               * 0.3, bias=rng.standard_normal(4).astype(np.float32) * 0.1),
    ]
    model = Model("small", "x", (5, 7, 6), layers)
    calib = rng.standard_normal((64, 5, 7, 6)).astype(np.float32)
    return model, search(model, calib, bits=bits), calib


def residual_net(seed: int = 5, bits: str = "8"):
    """ResNet-style blocks: an identity shortcut from a ReLU output, a 1x1 stride-2
    projection branch computed before the block's second conv, the Add's shortcut being the
    model input's consumer's output, ReLUs after the Adds, and a ReLU6 (Clip) after the last
    Add; channels not a multiple of the lanes."""
    from dynfix.quant.ir import Add, Clip
    rng = np.random.default_rng(seed)
    layers = [
        conv(rng, "c0", "x", 6, 3, 3, 3, pads=(1, 1, 1, 1)),
        ReLU("r0", ("c0",)),
        conv(rng, "c1", "r0", 6, 6, 3, 3, pads=(1, 1, 1, 1)),
        ReLU("r1", ("c1",)),
        conv(rng, "c2", "r1", 6, 6, 3, 3, pads=(1, 1, 1, 1)),
        Add("add1", ("c2", "r0")),
        ReLU("a1", ("add1",)),
        conv(rng, "proj", "a1", 10, 6, 1, 1, stride=(2, 2)),
        conv(rng, "c3", "a1", 10, 6, 3, 3, stride=(2, 2), pads=(1, 1, 1, 1)),
        ReLU("r3", ("c3",)),
        conv(rng, "c4", "r3", 10, 10, 3, 3, pads=(1, 1, 1, 1)),
        Add("add2", ("proj", "c4")),
        Clip("a2", ("add2",), lo=0.0, hi=6.0),
        Flatten("f", ("a2",)),
        Linear("fc", ("f",), weight=rng.standard_normal((5, 10 * 3 * 3)).astype(np.float32)
               * 0.2, bias=rng.standard_normal(5).astype(np.float32) * 0.1),
    ]
    model = Model("residual", "x", (3, 6, 6), layers)
    calib = rng.standard_normal((64, 3, 6, 6)).astype(np.float32)
    return model, search(model, calib, bits=bits), calib


def tiny_net() -> tuple[Model, np.ndarray]:
    """conv 2 -> 3 with a bias, ReLU, 2x2 max pool, flatten, Linear 12 -> 4 without a bias,
    on 2 x 4 x 4 inputs; and 16 inputs."""
    rng = np.random.default_rng(1)
    model = Model("tiny", "x", (2, 4, 4), [
        Conv2d("c1", ("x",), weight=rng.standard_normal((3, 2, 3, 3)).astype(np.float32),
               bias=rng.standard_normal(3).astype(np.float32), pads=(1, 1, 1, 1)),
        ReLU("r1", ("c1",)),
        MaxPool2d("p1", ("r1",), kernel=(2, 2), stride=(2, 2)),
        Flatten("f", ("p1",)),
        Linear("fc", ("f",), weight=rng.standard_normal((4, 12)).astype(np.float32),
               bias=None)])
    return model, rng.standard_normal((16, 2, 4, 4)).astype(np.float32)


def channel_net(name: str = "chan", spread: bool = True) -> Model:
    """conv 2 -> 6 (with ``spread``, its output channels' weights differ 16x in range, so
    per-channel formats pay), a depthwise 3x3 conv, ReLU, flatten, Linear, on 2 x 6 x 6
    inputs."""
    rng = np.random.default_rng(5)
    w1 = rng.standard_normal((6, 2, 3, 3))
    if spread:
        w1 = w1 * np.array([1, 1 / 16] * 3)[:, None, None, None]
    return Model(name, "x", (2, 6, 6), [
        Conv2d("c1", ("x",), weight=w1.astype(np.float32),
               bias=np.zeros(6, np.float32), pads=(1, 1, 1, 1)),
        Conv2d("dw", ("c1",), weight=rng.standard_normal((6, 1, 3, 3)).astype(np.float32),
               bias=np.zeros(6, np.float32), groups=6),
        ReLU("r", ("dw",)), Flatten("f", ("r",)),
        Linear("fc", ("f",), weight=(0.2 * rng.standard_normal((3, 96))).astype(np.float32),
               bias=np.zeros(3, np.float32))])


@lru_cache(maxsize=None)
def shared_small_net(share: int = 3):
    """:func:`small_net` at 8 bits with weight sharing (``quant.weight_sharing``) of every
    layer at ``share``-bit indices: each layer's integer weights take at most ``2**share``
    values (the spec's ``params`` hold them)."""
    model, _, calib = small_net()
    return model, search(model, calib, bits="8", share=share), calib


def strip_net(seed: int = 7, bits: str = "8"):
    """Maps larger than the input (so a small map memory sends them to bulk memory and the
    layers around them run in row strips): a 3x3 conv to 8 channels, a conv with asymmetric
    padding and a 2x2 pool (floor mode drops a row), a stride-2 conv whose windows overlap
    the strip edges, an FC layer."""
    rng = np.random.default_rng(seed)
    layers = [
        conv(rng, "c1", "x", 8, 3, 3, 3, pads=(1, 1, 1, 1)),
        ReLU("r1", ("c1",)),
        conv(rng, "c2", "r1", 6, 8, 3, 3, pads=(1, 0, 1, 1)),
        MaxPool2d("p2", ("c2",), kernel=(2, 2), stride=(2, 2)),
        ReLU("r2", ("p2",)),
        conv(rng, "c3", "r2", 5, 6, 3, 3, stride=(2, 2), pads=(0, 1, 1, 0)),
        ReLU("r3", ("c3",)),
        Flatten("f", ("r3",)),
        Linear("fc", ("f",), weight=rng.standard_normal((4, 45)).astype(np.float32) * 0.2,
               bias=rng.standard_normal(4).astype(np.float32) * 0.1),
    ]
    model = Model("strips", "x", (3, 15, 14), layers)
    calib = rng.standard_normal((32, 3, 15, 14)).astype(np.float32)
    return model, search(model, calib, bits=bits), calib


def fcn_net(seed: int = 11, bits: str = "8"):
    """A fully convolutional network (a map in, a map out, no FC): a 3x3 conv to 8 channels
    and a strided 3x3 conv to 5 channels with ReLUs, so with a small map memory the input,
    the hidden map and the output all live in bulk memory."""
    rng = np.random.default_rng(seed)
    layers = [
        conv(rng, "c1", "x", 8, 3, 3, 3, pads=(1, 1, 1, 1)),
        ReLU("r1", ("c1",)),
        conv(rng, "c2", "r1", 5, 8, 3, 3, stride=(2, 1), pads=(1, 1, 1, 1)),
        ReLU("r2", ("c2",)),
    ]
    model = Model("fcn", "x", (3, 17, 12), layers)
    calib = rng.standard_normal((32, 3, 17, 12)).astype(np.float32)
    return model, search(model, calib, bits=bits), calib


def resize_net(seed: int = 13, bits: str = "8"):
    """conv -> ReLU -> nearest Resize x2 -> 3x3 conv with padding 1 (its windows cross the
    resized map's border) -> ReLU -> 2x2 max pool -> FC: the second conv reads the first
    one's stored 4 x 5 map as an 8 x 10 view."""
    from dynfix.quant.ir import Resize
    rng = np.random.default_rng(seed)
    layers = [
        conv(rng, "c1", "x", 6, 3, 3, 3, pads=(1, 1, 1, 1)),
        ReLU("r1", ("c1",)),
        Resize("up", ("r1",)),
        conv(rng, "c2", "up", 5, 6, 3, 3, pads=(1, 1, 1, 1)),
        ReLU("r2", ("c2",)),
        MaxPool2d("p2", ("r2",), kernel=(2, 2), stride=(2, 2)),
        Flatten("f", ("p2",)),
        Linear("fc", ("f",), weight=rng.standard_normal((4, 5 * 4 * 5)).astype(np.float32)
               * 0.2, bias=rng.standard_normal(4).astype(np.float32) * 0.1),
    ]
    model = Model("resize", "x", (3, 4, 5), layers)
    calib = rng.standard_normal((32, 3, 4, 5)).astype(np.float32)
    return model, search(model, calib, bits=bits), calib


def view_net(seed: int = 1, bits: str = "8"):
    """Groups reading Resize views in every way the sequencer walks them: two convs reading
    one view (3x3 with padding at the view's border, 1x1 with a residual Add), a 3x3 conv
    with strides (3, 2) (an odd row step: even and odd view rows alternate) and asymmetric
    padding, pooled 2x2 (dy's step is odd too); a depthwise 3x3 conv reading a view resized
    on W only (scale 1 x 2), an average pool run as a depthwise conv and a Linear, each
    reading a view."""
    from dynfix.quant.ir import Add, AvgPool2d, Resize
    rng = np.random.default_rng(seed)
    layers = [conv(rng, "a", "x", 6, 3, 3, 3, pads=(1, 1, 1, 1)), ReLU("ra", ("a",)),
              Resize("up", ("ra",)),
              conv(rng, "b", "up", 4, 6, 3, 3, pads=(1, 1, 1, 1)),
              conv(rng, "e", "up", 4, 6, 1, 1),
              Add("s", ("e", "b")),
              Resize("up2", ("s",)),
              conv(rng, "c", "up2", 5, 4, 3, 3, stride=(3, 2), pads=(2, 1, 0, 2)),
              MaxPool2d("mp", ("c",)),
              Resize("up3", ("mp",), scale=(1, 2)),
              conv(rng, "d", "up3", 5, 1, 3, 3, pads=(1, 1, 1, 1), groups=5),
              Resize("up4", ("d",)),
              AvgPool2d("ap", ("up4",), kernel=(2, 2), stride=(2, 2)),
              Resize("up5", ("ap",)),
              Flatten("f", ("up5",)),
              Linear("fc", ("f",), weight=rng.standard_normal((3, 320)).astype(np.float32)
                     * 0.1)]
    model = Model("view", "x", (3, 3, 4), layers)
    calib = rng.standard_normal((16, 3, 3, 4)).astype(np.float32)
    return model, search(model, calib, bits=bits), calib


def rect_pool_net(seed: int = 4, bits: str = "8"):
    """Max pools whose windows are not square, stride = kernel: 2 x 3 after a 3x3 conv
    (floor mode drops a row), 1 x 2 (a MaxPool1d's window on a height-1 map's view) after
    a 1 x 3 conv; ReLUs before and after them, an FC."""
    rng = np.random.default_rng(seed)
    layers = [conv(rng, "a", "x", 5, 3, 3, 3, pads=(1, 1, 1, 1)),
              ReLU("ra", ("a",)),
              MaxPool2d("pa", ("ra",), kernel=(2, 3), stride=(2, 3)),
              conv(rng, "b", "pa", 4, 5, 1, 3, pads=(0, 1, 0, 1)),
              MaxPool2d("pb", ("b",), kernel=(1, 2), stride=(1, 2)),
              ReLU("rb", ("pb",)),
              Flatten("f", ("rb",)),
              Linear("c", ("f",), weight=rng.standard_normal((3, 4 * 3 * 2)).astype(np.float32)
                     * 0.3, bias=rng.standard_normal(3).astype(np.float32) * 0.1)]
    model = Model("rect", "x", (3, 7, 12), layers)
    calib = rng.standard_normal((16, 3, 7, 12)).astype(np.float32)
    return model, search(model, calib, bits=bits), calib


def fc_model(outputs: int, inputs: int = 64) -> tuple[Model, QuantSpec]:
    """One Linear layer, ``outputs`` x ``inputs`` 8-bit weights."""
    rng = np.random.default_rng(0)
    fc = Linear("fc", inputs=("flat",),
                weight=rng.normal(size=(outputs, inputs)).astype(np.float32),
                bias=np.zeros(outputs, np.float32))
    model = Model("big", "input", (1, 8, inputs // 8), [Flatten("flat", inputs=("input",)),
                                                        fc])
    fmt = LayerFormat("fc", bw_w=8, fl_w=7, bw_b=16, fl_b=10, bw_in=8, fl_in=6, bw_x=8,
                      fl_out=4, acc_bits=24)
    return model, QuantSpec("big", "static", "8", 8, 6, {"fc": fmt})


def concat_branches(seed: int = 0) -> tuple[Model, np.ndarray]:
    """U-Net-like: a conv + ReLU + 2x2 max-pool branch and a strided conv + ReLU branch of
    4 channels each, joined (a Concat: both maps unsigned), then a conv + ReLU; on 4 lanes
    (or 2, or 1) both inputs write into the Concat's map in place. Returns the model and
    calibration inputs."""
    from dynfix.quant.ir import Concat
    rng = np.random.default_rng(seed)
    layers = [conv(rng, "a", "x", 4, 3, 3, 3, pads=(1, 1, 1, 1)), ReLU("ra", ("a",)),
              MaxPool2d("pa", ("ra",)),
              conv(rng, "b", "x", 4, 3, 3, 3, stride=(2, 2), pads=(1, 1, 1, 1)),
              ReLU("rb", ("b",)),
              Concat("cat", ("pa", "rb")),
              conv(rng, "c", "cat", 5, 8, 3, 3, pads=(1, 1, 1, 1)), ReLU("rc", ("c",))]
    x = rng.standard_normal((32, 3, 8, 6)).astype(np.float32)
    return Model("branches", "x", (3, 8, 6), layers), x


def concat_copies(seed: int = 1) -> tuple[Model, np.ndarray]:
    """A Concat of the model input (4 channels), a skip map the next conv reads too, and
    that conv's output (3 channels), then a conv: the first two are copied into the
    Concat's map, the last is written in place."""
    from dynfix.quant.ir import Concat
    rng = np.random.default_rng(seed)
    layers = [conv(rng, "a", "x", 4, 4, 3, 3, pads=(1, 1, 1, 1)), ReLU("ra", ("a",)),
              conv(rng, "b", "ra", 3, 4, 1, 1),
              Concat("cat", ("x", "ra", "b")),
              conv(rng, "c", "cat", 5, 11, 3, 3, pads=(1, 1, 1, 1))]
    x = rng.standard_normal((32, 4, 5, 6)).astype(np.float32)
    return Model("copies", "x", (4, 5, 6), layers), x


def unet_step(seed: int = 3) -> tuple[Model, np.ndarray]:
    """One U-Net step: a conv (the skip map, read by the next conv too), a stride-2 conv,
    a nearest Resize x2 of it, the Concat of the Resize and the skip map, then a conv. Both
    Concat inputs are copied into its map: the skip map because another conv reads it, the
    Resize by a copy that walks its view."""
    from dynfix.quant.ir import Concat, Resize
    rng = np.random.default_rng(seed)
    layers = [conv(rng, "e1", "x", 4, 3, 3, 3, pads=(1, 1, 1, 1)), ReLU("r1", ("e1",)),
              conv(rng, "e2", "r1", 6, 4, 3, 3, pads=(1, 1, 1, 1), stride=(2, 2)),
              ReLU("r2", ("e2",)), Resize("up", ("r2",)),
              Concat("cat", ("up", "r1")),
              conv(rng, "d1", "cat", 5, 10, 3, 3, pads=(1, 1, 1, 1))]
    x = rng.standard_normal((32, 3, 6, 8)).astype(np.float32)
    return Model("unet", "x", (3, 6, 8), layers), x
