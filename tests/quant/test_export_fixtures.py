"""The exporter fixtures (tests/fixtures/exporters, written by tools/make_export_fixtures.py
with PyTorch and with Keras + tf2onnx): each loads, with the input layout and the layers
its exporter implies (a BatchNorm of the input as the host's input normalization), and its
float model equals onnxruntime on random inputs given in the model's own layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from dynfix.quant.float_model import predict
from dynfix.quant.onnx import load_onnx, save_onnx
from dynfix.quant.yaml_io import load_yaml, save_yaml
from onnx_graphs import max_rel_err, run_ort

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "exporters"

#: fixture -> (input layout, data shape, layer ops after the import)
EXPECTED = {
    "torch_mlp_bn": ("NCHW", (12,), ["linear", "relu", "linear", "relu", "linear"]),
    "torch_mlp_bn_input": ("NCHW", (12,), ["linear", "relu", "linear"]),
    "torch_cnn_bn_input": ("NCHW", (3, 8, 8), ["conv", "relu", "maxpool", "flatten",
                                               "linear"]),
    "torch_conv1d": ("NCW", (2, 32), ["conv", "relu", "conv", "relu", "conv", "relu", "gap",
                                      "flatten", "linear"]),
    "torch_cnn": ("NCHW", (1, 8, 8), ["conv", "relu", "maxpool", "conv", "relu", "maxpool",
                                      "flatten", "linear", "sigmoid"]),
    "keras_cnn_nhwc": ("NHWC", (8, 8, 3), ["conv", "relu", "maxpool", "conv", "relu",
                                           "flatten", "linear", "softmax"]),
    "keras_conv1d_nwc": ("NWC", (16, 2), ["conv", "relu", "maxpool", "conv", "relu",
                                          "flatten", "linear", "sigmoid"]),
    "keras_mlp_bn": ("NCHW", (10,), ["linear", "relu", "linear", "relu", "linear",
                                     "sigmoid"]),
}


def test_every_fixture_is_listed():
    assert sorted(p.stem for p in FIXTURES.glob("*.onnx")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_loads_and_matches_onnxruntime(name):
    layout, shape, ops = EXPECTED[name]
    path = FIXTURES / f"{name}.onnx"
    model = load_onnx(path)
    assert model.input_layout == layout and model.data_shape == shape
    assert [layer.op for layer in model.layers] == ops     # BatchNorms folded, no transposes
    # a BatchNorm of the input itself: the host's normalization, one per channel
    assert (model.input_affine is not None) == name.endswith("_bn_input")
    x = np.random.default_rng(5).standard_normal((16,) + shape).astype(np.float32)
    ref = run_ort(str(path), x)
    y = predict(model, x)
    assert y.shape == ref.shape
    assert max_rel_err(y, ref) <= 1e-5


@pytest.mark.parametrize("name", ["torch_mlp_bn_input", "torch_cnn_bn_input"])
def test_input_normalization_survives_yaml_and_onnx(name, tmp_path):
    """model.yaml + .npz and a written ONNX file keep the host's input normalization: the
    same arrays, the same float outputs, and onnxruntime on the written file (which has it
    as a BatchNormalization) equals onnxruntime on the exporter's."""
    model = load_onnx(FIXTURES / f"{name}.onnx")
    x = (2 * np.random.default_rng(6).standard_normal((8,) + model.data_shape) + 1
         ).astype(np.float32)
    y = predict(model, x)
    save_yaml(model, tmp_path / "m.yaml")
    save_onnx(model, tmp_path / "m.onnx")
    written = onnx.load(tmp_path / "m.onnx").graph
    assert written.node[0].op_type == "BatchNormalization"
    assert written.node[0].input[0] == written.input[0].name
    assert max_rel_err(run_ort(str(tmp_path / "m.onnx"), x),
                       run_ort(str(FIXTURES / f"{name}.onnx"), x)) <= 1e-5
    for back in (load_yaml(tmp_path / "m.yaml"), load_onnx(tmp_path / "m.onnx")):
        assert [layer.op for layer in back.layers] == EXPECTED[name][2]
        for a, b in zip(back.input_affine, model.input_affine):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(predict(back, x), y)
