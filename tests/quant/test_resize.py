"""Nearest-neighbour Resize x2 (``quant/layers/resize.py``): what PyTorch's exporters and
hand-built Resize / Upsample graphs of every opset dynfix reads give, against onnxruntime;
which interpolation modes repeat each pixel; the refusals; the quantizer keeps the map's
format through it and the integer model repeats the integers."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.quant.int_model import IntModel
from dynfix.quant.ir import Resize
from dynfix.quant.layers.resize import EXACT_MODES
from dynfix.quant.onnx import load_onnx

from hw_models import resize_net
from onnx_graphs import GraphBuilder, check_vs_ort, max_rel_err, run_ort, torch_export

#: Every coordinate_transformation_mode and nearest_mode of ONNX Resize (opset 19).
TRANSFORMS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
              "asymmetric", "tf_half_pixel_for_nn")
NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def torch_net(one_d: bool, size=None):
    """conv -> ReLU -> nn.Upsample(scale_factor=2 or size, nearest) -> conv (padding 1)."""
    import torch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            conv = torch.nn.Conv1d if one_d else torch.nn.Conv2d
            self.a, self.b = conv(3, 4, 3, padding=1), conv(4, 2, 3, padding=1)
            self.up = torch.nn.Upsample(scale_factor=None if size else 2, size=size,
                                        mode="nearest")

        def forward(self, x):
            return self.b(self.up(torch.relu(self.a(x))))

    torch.manual_seed(0)
    return Net()


@pytest.mark.parametrize("one_d,size,opset", [
    (False, None, 9), (False, None, 11), (False, None, 13), (False, None, 18),
    (True, None, 9), (True, None, 13), (False, (10, 12), 11), (False, (10, 12), 13)])
def test_torch_upsample_matches_onnxruntime(tmp_path, one_d, size, opset):
    """nn.Upsample(scale_factor=2) (or a size of twice the input) as the TorchScript
    exporter writes it: Upsample at opset 9, Resize (asymmetric, floor; scales, or sizes
    from a Shape chain) later; on N x C x H x W and on N x C x L (Conv1d): one Resize layer,
    equal to onnxruntime."""
    import torch
    x = torch.randn(2, 3, 5) if one_d else torch.randn(2, 3, 5, 6)
    path = torch_export(torch_net(one_d, size), x, tmp_path / "up.onnx", opset)
    model = load_onnx(path)
    assert [type(layer).__name__ for layer in model.layers] == \
        ["Conv2d", "ReLU", "Resize", "Conv2d"]
    assert model.layers[2].scale == ((1, 2) if one_d else (2, 2))
    from dynfix.quant.float_model import predict
    y = predict(model, x.numpy())
    assert max_rel_err(y, run_ort(path, x.numpy())) <= 1e-5


def test_torch_dynamo_export_reads(tmp_path):
    """The default (torch.export-based) exporter writes an opset-18 Resize with every
    attribute spelled out (antialias, keep_aspect_ratio_policy, ...)."""
    import torch
    x = torch.randn(2, 3, 5, 6)
    path = str(tmp_path / "dyn.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch_net(False), (x,), path, input_names=["x"],
                          dynamic_shapes={"x": {0: "batch"}})
    from dynfix.quant.float_model import predict
    model = load_onnx(path)
    assert [layer.op for layer in model.layers] == ["conv", "relu", "resize", "conv"]
    assert max_rel_err(predict(model, x.numpy()), run_ort(path, x.numpy())) <= 1e-5


def resize_graph(opset: int, resize, shape=(3, 4, 5)) -> GraphBuilder:
    """conv -> ``resize(g)`` (adds the Resize / Upsample node) -> conv with padding 1."""
    g = GraphBuilder(shape, opset=opset)
    g.conv(4) if len(shape) == 3 else g.conv1d(4)
    resize(g)
    g.conv(2) if len(shape) == 3 else g.conv1d(2)
    return g


def f32(*v):
    return np.array(v, np.float32)


HAND_BUILT = {
    # opset: what the Resize / Upsample node takes there
    "upsample-7 (scales attribute)": (7, lambda g: g.op("Upsample", mode="nearest",
                                                        scales=[1.0, 1.0, 2.0, 2.0])),
    "upsample-9 (scales input)": (9, lambda g: g.op("Upsample", g.constant(f32(1, 1, 2, 2)),
                                                    mode="nearest")),
    "resize-10": (10, lambda g: g.op("Resize", g.constant(f32(1, 1, 2, 2)))),
    "resize-11, ONNX's default modes": (11, lambda g: g.op(
        "Resize", g.constant(f32()), g.constant(f32(1, 1, 2, 2)))),
    "resize-11, sizes": (11, lambda g: g.op(
        "Resize", g.constant(f32()), g.constant(f32()),
        g.constant(np.array([1, 4, 8, 10], np.int64)), mode="nearest",
        coordinate_transformation_mode="asymmetric", nearest_mode="floor")),
    "resize-13, tf2onnx's (Keras 2 UpSampling2D)": (13, lambda g: g.op(
        "Resize", g.constant(f32()), g.constant(f32(1, 1, 2, 2)), mode="nearest",
        coordinate_transformation_mode="tf_half_pixel_for_nn", nearest_mode="floor",
        exclude_outside=0)),
    "resize-13, H only": (13, lambda g: g.op("Resize", "", g.constant(f32(1, 1, 2, 1)),
                                             mode="nearest")),
    "resize-18, axes": (18, lambda g: g.op("Resize", "", g.constant(f32(2, 2)),
                                           mode="nearest", axes=[3, 2])),
    "resize-19, half_pixel_symmetric": (19, lambda g: g.op(
        "Resize", "", g.constant(f32(1, 1, 2, 2)),
        coordinate_transformation_mode="half_pixel_symmetric")),
}


@pytest.mark.parametrize("case", sorted(HAND_BUILT))
def test_hand_built_graphs_match_onnxruntime(tmp_path, case):
    opset, resize = HAND_BUILT[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # onnx's checker on the deprecated Upsample
        # Constant sizes hold the batch too (1): one image at a time.
        model = check_vs_ort(resize_graph(opset, resize), tmp_path,
                             n=1 if "sizes" in case else 3)
    up = next(layer for layer in model.layers if isinstance(layer, Resize))
    assert up.scale == ((2, 1) if "H only" in case else (2, 2))


def test_one_d_resize_and_identity(tmp_path):
    """A Resize of an N x C x L tensor by 2 on L (scales of three axes), and one by 1
    everywhere, which is the tensor itself (no layer)."""
    model = check_vs_ort(resize_graph(13, lambda g: g.op(
        "Resize", "", g.constant(f32(1, 1, 2)), mode="nearest",
        coordinate_transformation_mode="asymmetric", nearest_mode="floor"), shape=(3, 7)),
        tmp_path)
    assert [layer.scale for layer in model.layers if isinstance(layer, Resize)] == [(1, 2)]
    same = check_vs_ort(resize_graph(13, lambda g: g.op(
        "Resize", "", g.constant(f32(1, 1, 1, 1)), mode="nearest")), tmp_path)
    assert not any(isinstance(layer, Resize) for layer in same.layers)


def test_exact_modes_are_the_ones_that_repeat_each_pixel(tmp_path):
    """Every (coordinate_transformation_mode, nearest_mode) pair on maps of even and odd
    sides (1 to 7) at scales 2 and 1: onnxruntime repeats each pixel exactly for the pairs
    in EXACT_MODES, and dynfix loads exactly those (the others are refused naming both
    attributes)."""
    x = np.random.default_rng(0).standard_normal((1, 2, 7, 6)).astype(np.float32)
    for ctm, nearest in itertools.product(TRANSFORMS, NEAREST):
        repeats = True
        for (h, w), scales in itertools.product(((1, 2), (3, 5), (7, 6), (4, 1)),
                                                ((1, 1, 2, 2), (1, 1, 1, 2))):
            g = GraphBuilder((2, h, w), opset=19)
            g.op("Resize", "", g.constant(f32(*scales)), mode="nearest",
                 coordinate_transformation_mode=ctm, nearest_mode=nearest)
            xs = x[:, :, :h, :w]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y = run_ort(g.build(), xs)
            repeats &= np.array_equal(y, xs.repeat(scales[2], 2).repeat(scales[3], 3))
        assert repeats == ((ctm, nearest) in EXACT_MODES), (ctm, nearest)
        g = resize_graph(19, lambda g: g.op("Resize", "", g.constant(f32(1, 1, 2, 2)),
                                            mode="nearest", nearest_mode=nearest,
                                            coordinate_transformation_mode=ctm))
        if repeats:
            check_vs_ort(g, tmp_path)
        else:
            with pytest.raises(DynfixError, match=f"coordinate_transformation_mode='{ctm}' "
                                                  f"with nearest_mode='{nearest}'"):
                load_onnx(g.save(tmp_path / "m.onnx"))


@pytest.mark.parametrize("opset,resize,match", [
    (13, lambda g: g.op("Resize", "", g.constant(f32(1, 1, 2, 2)), mode="linear"),
     r"node /resize\d+/Resize \(Resize\): mode='linear'; dynfix reads only mode='nearest'"),
    (9, lambda g: g.op("Upsample", g.constant(f32(1, 1, 2, 2)), mode="bilinear"),
     r"\(Upsample\): mode='bilinear'"),
    (13, lambda g: g.op("Resize", "", g.constant(f32(1, 2, 2, 2)), mode="nearest"),
     r"scales \[1.0, 2.0, 2.0, 2.0\] on a \[1, 4, 4, 5\] tensor; dynfix reads a "
     r"nearest-neighbour upsampling by 2 \(or 1\) on H and W"),
    (13, lambda g: g.op("Resize", "", g.constant(f32(1, 1, 3, 3)), mode="nearest"),
     r"scales \[1.0, 1.0, 3.0, 3.0\]"),
    (13, lambda g: g.op("Resize", "", g.constant(f32(1, 1, 1.5, 2)), mode="nearest"),
     r"scales \[1.0, 1.0, 1.5, 2.0\]"),
    (13, lambda g: g.op("Resize", "", g.constant(f32(1, 1, 0.5, 0.5)), mode="nearest"),
     r"scales \[1.0, 1.0, 0.5, 0.5\]"),
    (13, lambda g: g.op("Resize", "", "", g.constant(np.array([1, 4, 9, 10], np.int64)),
                        mode="nearest"),
     r"sizes \[1, 4, 9, 10\] \(scales \[1.0, 1.0, 2.25, 2.0\]\)"),
    (7, lambda g: g.op("Upsample", mode="nearest", scales=[1.0, 1.0, 2.0]),
     r"scales \[1.0, 1.0, 2.0\] on a \[1, 4, 4, 5\] tensor"),
    (13, lambda g: g.op("Resize", "", g.constant(f32(1, 1, 2, 2)), mode="nearest",
                        coordinate_transformation_mode="tf_crop_and_resize"),
     r"coordinate_transformation_mode='tf_crop_and_resize' with nearest_mode="
     r"'round_prefer_floor' does not repeat each pixel"),
])
def test_refusals_name_the_node_and_the_attribute(tmp_path, opset, resize, match):
    path = resize_graph(opset, resize).save(tmp_path / "m.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DynfixError, match=match) as e:
            load_onnx(path)
    assert "\n" not in str(e.value)


def test_integer_model_repeats_the_integers_in_their_format():
    """The quantizer gives the Resize no format: it reads and writes its input's (bw, fl,
    zp, an unsigned map after the ReLU included), and the integer model's output is the
    input's integers repeated twice down and across."""
    model, spec, calib = resize_net()
    assert "up" not in spec.layers
    im = IntModel(model, spec)
    assert im.formats["up"] == im.formats["r1"]
    trace = im.forward(im.quantize_input(calib[:3]))
    assert np.array_equal(trace["up"], trace["r1"].repeat(2, axis=2).repeat(2, axis=3))
