"""The exporter fixtures (tests/fixtures/exporters, written by tools/make_export_fixtures.py
with PyTorch and with Keras + tf2onnx): each loads, with the input layout and the layers
its exporter implies, and its float model equals onnxruntime on random inputs given in the
model's own layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dynfix.quant.float_model import predict
from dynfix.quant.onnx import load_onnx
from onnx_graphs import max_rel_err, run_ort

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "exporters"

#: fixture -> (input layout, data shape, layer ops after the import)
EXPECTED = {
    "torch_mlp_bn": ("NCHW", (12,), ["linear", "relu", "linear", "relu", "linear"]),
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
    x = np.random.default_rng(5).standard_normal((16,) + shape).astype(np.float32)
    ref = run_ort(str(path), x)
    y = predict(model, x)
    assert y.shape == ref.shape
    assert max_rel_err(y, ref) <= 1e-5
