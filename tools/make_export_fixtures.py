#!/usr/bin/env python3
"""Write the exporter fixtures: small models exported by PyTorch and by Keras (tf2onnx),
random weights from fixed seeds, into ``tests/fixtures/exporters/``.

They are ONNX files as real exporters write them (node names, Unsqueeze/Squeeze around
1-D layers, the NHWC transposes tf2onnx adds, opset 17-20), so that the import is tested
on what users bring, not only on graphs built by hand (``tests/onnx_graphs.py``).
``tests/quant/test_export_fixtures.py`` loads each one, compares its float model with
onnxruntime in the model's own input layout, and runs some through the engine.

Two parts, each in an environment that has its exporter (the Keras part does not import
dynfix; TensorFlow is not a dynfix dependency)::

    .venv/bin/python tools/make_export_fixtures.py torch
    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu tf2onnx
    /tmp/tfvenv/bin/python tools/make_export_fixtures.py keras

(written with torch 2.13.0 + onnxscript 0.7.2; tensorflow-cpu 2.21.0, keras 3.15.1,
tf2onnx 1.17.0). The models, and what each one exercises:

* ``torch_mlp_bn.onnx`` (TorchScript exporter): Linear -> BatchNorm1d -> ReLU -> Linear ->
  BatchNorm1d -> ReLU -> Linear on N x 12 features; BatchNormalization on N x F, folded
  into the Linear before it.
* ``torch_conv1d.onnx`` (torch.export exporter, opset 18): Conv1d -> BatchNorm1d -> ReLU ->
  two strided Conv1d -> AdaptiveAvgPool1d(1) -> Linear on N x 2 x 32 (layout NCW); the
  exporter's Unsqueeze -> ReduceMean -> Squeeze -> Reshape for the pool.
* ``torch_mlp_bn_input.onnx`` (TorchScript exporter): BatchNorm1d -> Linear -> ReLU ->
  Linear on N x 12 features: a BatchNorm of the input itself, which becomes the host's
  input normalization.
* ``torch_cnn_bn_input.onnx`` (TorchScript exporter): BatchNorm2d -> Conv2d (zero padding)
  -> ReLU -> MaxPool2d -> Flatten -> Linear on N x 3 x 8 x 8, the same on an image.
* ``torch_cnn.onnx`` (TorchScript exporter): Conv2d -> BatchNorm2d -> ReLU -> MaxPool2d ->
  Conv2d -> ReLU -> MaxPool2d -> Flatten -> Linear -> Sigmoid on N x 1 x 8 x 8, four
  independent binary outputs (a multi-label head).
* ``keras_cnn_nhwc.onnx``: Conv2D -> MaxPooling2D -> Conv2D -> BatchNormalization -> ReLU
  -> Flatten -> Dense -> Softmax on N x 8 x 8 x 3 (layout NHWC: the input Transpose, and
  the NHWC Transpose before the flatten).
* ``keras_conv1d_nwc.onnx``: Conv1D -> MaxPooling1D -> Conv1D -> Flatten -> Dense(1) ->
  Sigmoid on N x 16 x 2 (layout NWC: Unsqueeze + Transpose at the input, Squeeze /
  Unsqueeze around every layer, a Transpose before the flatten); a binary classifier.
* ``keras_mlp_bn.onnx``: Dense -> BatchNormalization -> ReLU -> Dense -> ReLU -> Dense(1)
  -> Sigmoid on N x 10 features (BatchNormalization written as Mul + Add).

A binary head's bias is set so that half of 256 random inputs come out positive (random
weights alone leave one class empty, and a test of ``evaluate``'s binary reading needs
both). Every file is a few KB. A rerun with the same versions gives the same weights, and the
same bytes for the PyTorch files; tf2onnx's generated tensor names (and whether it folds
Keras's flatten shape into a constant) can differ from run to run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "exporters"
SEED = 31


def _random_bn(net, mean: float, var: tuple[float, float]) -> None:
    """Random BatchNorm statistics and affine parameters for ``net``'s BatchNorms."""
    import torch
    nn = torch.nn
    for mod in net.modules():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                mod.running_mean.uniform_(-mean, mean)
                mod.running_var.uniform_(*var)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.3, 0.3)


def _torch_models():
    """The PyTorch models, in eval mode, with random BatchNorm statistics (the ones with a
    BatchNorm of the input from a seed of their own, so the others' bytes stay as they
    were)."""
    import torch
    nn = torch.nn
    torch.manual_seed(SEED)
    mlp = nn.Sequential(nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 8),
                        nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    conv1d = nn.Sequential(nn.Conv1d(2, 4, 5, padding=2), nn.BatchNorm1d(4), nn.ReLU(),
                           nn.Conv1d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
                           nn.Conv1d(8, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
                           nn.Flatten(), nn.Linear(8, 3))
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 2 * 2, 4), nn.Sigmoid())
    for net in (mlp, conv1d, cnn):
        net.eval()
        _random_bn(net, 0.5, (0.5, 2.0))
    torch.manual_seed(SEED + 1)
    mlp_in = nn.Sequential(nn.BatchNorm1d(12), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))
    cnn_in = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                           nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    for net in (mlp_in, cnn_in):        # data far from zero mean and unit variance
        net.eval()
        _random_bn(net, 2.0, (0.25, 9.0))
    return {"torch_mlp_bn": (mlp, (12,), "torchscript"),
            "torch_conv1d": (conv1d, (2, 32), "dynamo"),
            "torch_cnn": (cnn, (1, 8, 8), "torchscript"),
            "torch_mlp_bn_input": (mlp_in, (12,), "torchscript"),
            "torch_cnn_bn_input": (cnn_in, (3, 8, 8), "torchscript")}


def export_torch() -> None:
    """Export the PyTorch models with ``torch.onnx.export`` (dynamic batch)."""
    import warnings
    import torch
    for name, (net, shape, how) in _torch_models().items():
        x = torch.randn((2,) + shape)
        path = OUT / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if how == "dynamo":
                torch.onnx.export(net, (x,), str(path), input_names=["x"],
                                  output_names=["y"], opset_version=18,
                                  dynamic_shapes=({0: torch.export.Dim("batch")},),
                                  external_data=False)
            else:
                torch.onnx.export(net, (x,), str(path), input_names=["x"],
                                  output_names=["y"], dynamo=False,
                                  dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
        print(f"wrote {path.relative_to(OUT.parent.parent.parent)} "
              f"({path.stat().st_size:,} bytes)")


def _keras_models():
    """The three Keras models, with random weights (BatchNorm statistics included)."""
    import tensorflow as tf
    keras = tf.keras
    tf.random.set_seed(SEED)
    layers = keras.layers
    cnn = keras.Sequential([
        keras.Input((8, 8, 3)), layers.Conv2D(4, 3, padding="same", activation="relu"),
        layers.MaxPooling2D(2), layers.Conv2D(6, 3), layers.BatchNormalization(),
        layers.ReLU(), layers.Flatten(), layers.Dense(3), layers.Softmax()])
    conv1d = keras.Sequential([
        keras.Input((16, 2)), layers.Conv1D(4, 3, padding="same", activation="relu"),
        layers.MaxPooling1D(2), layers.Conv1D(6, 3, strides=2, activation="relu"),
        layers.Flatten(), layers.Dense(1, activation="sigmoid")])
    mlp = keras.Sequential([
        keras.Input((10,)), layers.Dense(16), layers.BatchNormalization(), layers.ReLU(),
        layers.Dense(8, activation="relu"), layers.Dense(1, activation="sigmoid")])
    rng = np.random.default_rng(SEED)
    for model in (cnn, conv1d, mlp):
        for layer in model.layers:
            weights = layer.get_weights()
            if isinstance(layer, layers.BatchNormalization):   # gamma, beta, mean, var
                new = [rng.uniform(0.5, 1.5, w.shape) if i == 0 else
                       rng.uniform(0.5, 2.0, w.shape) if i == 3 else
                       rng.uniform(-0.3, 0.3, w.shape) for i, w in enumerate(weights)]
            else:       # kernels scaled by their fan-in, small biases (balanced classes)
                new = [rng.normal(0.0, 0.1 if w.ndim == 1 else 1.0 / np.sqrt(
                    np.prod(w.shape[:-1])), w.shape) for w in weights]
            layer.set_weights([w.astype(np.float32) for w in new])
    shapes = {"keras_cnn_nhwc": (cnn, (8, 8, 3)), "keras_conv1d_nwc": (conv1d, (16, 2)),
              "keras_mlp_bn": (mlp, (10,))}
    for model, shape in shapes.values():
        if model.output_shape[-1] == 1:      # a binary head: half the random inputs positive
            x = rng.standard_normal((256,) + shape).astype(np.float32)
            p = np.clip(model(x, training=False).numpy()[:, 0], 1e-6, 1 - 1e-6)
            w, b = model.layers[-1].get_weights()
            b = b - np.median(np.log(p / (1 - p)))
            model.layers[-1].set_weights([w, b.astype(np.float32)])
    return shapes


def export_keras() -> None:
    """Convert the Keras models with tf2onnx (opset 17), as a function of the model in
    inference mode (tf2onnx's from_keras does not read Keras 3 models)."""
    import onnx
    import tensorflow as tf
    import tf2onnx
    for name, (model, shape) in _keras_models().items():
        spec = (tf.TensorSpec((None,) + shape, tf.float32, name="input"),)
        fn = tf.function(lambda x, model=model: model(x, training=False))
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=17)
        proto.graph.name = name
        inits = sorted(proto.graph.initializer, key=lambda t: t.name)
        del proto.graph.initializer[:]
        proto.graph.initializer.extend(inits)
        path = OUT / f"{name}.onnx"
        onnx.save(proto, str(path))
        print(f"wrote {path.relative_to(OUT.parent.parent.parent)} "
              f"({path.stat().st_size:,} bytes)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=["torch", "keras"],
                   help="torch: the PyTorch models (dynfix's .venv); keras: the Keras models "
                        "(an environment with tensorflow-cpu and tf2onnx)")
    args = p.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    export_torch() if args.part == "torch" else export_keras()
    return 0


if __name__ == "__main__":
    sys.exit(main())
