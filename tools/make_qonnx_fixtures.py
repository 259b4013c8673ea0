#!/usr/bin/env python3
"""Write the QONNX fixtures: small quantization-aware models exported by Brevitas
(``brevitas.export.export_qonnx``), random weights from fixed seeds and activation scales
calibrated on synthetic data, into ``tests/fixtures/qonnx/``.

They are QONNX files as the real exporter writes them (its node and tensor names, constants
shared between Quant nodes, a Quant on every bias, ``Reshape`` for ``flatten``, opset 20 and
QONNX domain version 2), so that the import (``quant/onnx/qonnx.py``) is tested on what
users bring, not only on the graphs ``tests/qonnx_graphs.py`` builds by hand.
``tests/quant/test_qonnx_brevitas.py`` loads each one, compares it with qonnx's own
executor and runs some through the engine; ``tests/fixtures/qonnx/README.md`` lists them and
what the exporter writes.

Brevitas is not a dynfix dependency: run this in an environment of its own (qonnx is not
needed here)::

    python3 -m venv /tmp/brevitas-venv
    /tmp/brevitas-venv/bin/pip install brevitas torch onnx onnxscript onnxoptimizer
    /tmp/brevitas-venv/bin/python tools/make_qonnx_fixtures.py

(written with brevitas 0.13.4, torch 2.13.0+cpu, onnx 1.23.2, onnxscript 0.7.2,
onnxoptimizer 0.4.2: torch >= 2.9 makes ``export_qonnx`` use the dynamo exporter, older
ones the TorchScript exporter; ``brevitas_mlp_binary`` is written with the TorchScript one
so that both kinds of graph are covered). The models, and what each one exercises:

* ``brevitas_cnn_fixed.onnx``: QuantIdentity (``Int8ActPerTensorFixedPoint``) -> QuantConv2d
  1->4 3x3 (``Int8WeightPerTensorFixedPoint``, ``Int16Bias``) -> QuantReLU
  (``Uint8ActPerTensorFixedPoint``) -> MaxPool2d -> QuantConv2d 4->8 3x3 (the same at 4
  bits) -> QuantReLU (4 bits) -> TruncAvgPool2d 2x2 (4 bits: ``AveragePool`` -> ``Trunc``)
  -> flatten -> QuantLinear 32->10 (8 bits, its output unquantized) on N x 1 x 8 x 8: every
  scale a power of two, the spec read off.
* ``brevitas_mlp_binary.onnx`` (TorchScript exporter): QuantIdentity
  (``Uint8ActPerTensorFixedPoint``, inputs in [0, 1)) -> QuantLinear 16->12
  (``SignedBinaryWeightPerTensorConst`` at scale 1/8: ``BipolarQuant``) -> QuantReLU (4
  bits) -> QuantLinear 12->4 (binary at 1/4, no bias) on N x 16.
* ``brevitas_cnn_ternary.onnx``: QuantIdentity -> QuantConv2d 1->6 3x3
  (``SignedTernaryWeightPerTensorConst`` at scale 1/4: a 2-bit narrow Quant) -> QuantReLU
  -> MaxPool2d -> flatten -> QuantLinear 54->5 (ternary at 1/8) on N x 1 x 6 x 6.
* ``brevitas_cnn_perchannel.onnx``: QuantIdentity -> QuantConv2d 2->8 3x3
  (``Int8WeightPerChannelFixedPoint``, its output channels' ranges spread over 2**-3..2**3)
  -> QuantReLU -> QuantConv2d 8->4 1x1 (per channel) -> QuantReLU -> flatten ->
  QuantLinear 64->3 (per tensor) on N x 2 x 4 x 4: per-channel power-of-two scales, and a
  bias whose scale is per channel too (``Int16Bias`` takes the weights' scales).
* ``brevitas_residual.onnx``: QuantIdentity -> QuantConv2d 2->2 3x3 -> QuantReLU ->
  QuantConv2d 2->2 3x3 (its output unquantized) -> + the quantized input -> QuantIdentity
  (``Int8ActPerTensorFixedPoint``) -> flatten -> QuantLinear 32->3 on N x 2 x 4 x 4: a
  residual branch that stays at full precision up to the Add, whose Quant follows it.

The constant scales of the binary and ternary quantizers are set to powers of two (Brevitas'
default, 0.1, is not one: such a model is searched, not read off). The exporter's
``metadata_props`` of the graph and of each node (the exported program as text, Python stack
traces with this machine's paths) are dropped and the weights kept inside the file (no
external data): every file is a few KB, and a rerun with the same versions gives the same
bytes.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "qonnx"
SEED = 31


def _models() -> dict:
    """name -> (module, input shape, dynamo exporter?, calibration data)."""
    import torch
    import brevitas.nn as qnn
    from brevitas.quant import (Int16Bias, Int8ActPerTensorFixedPoint,
                                Int8WeightPerTensorFixedPoint, SignedBinaryWeightPerTensorConst,
                                SignedTernaryWeightPerTensorConst, Uint8ActPerTensorFixedPoint)
    from brevitas.quant.fixed_point import Int8WeightPerChannelFixedPoint
    nn = torch.nn
    torch.manual_seed(SEED)

    def act_in():
        return qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint,
                                 return_quant_tensor=True)

    def relu(bits=8):
        return qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=bits,
                             return_quant_tensor=True)

    def conv(cin, cout, k, quant, bits=8, **kw):
        return qnn.QuantConv2d(cin, cout, k, weight_quant=quant, weight_bit_width=bits,
                               bias_quant=Int16Bias, return_quant_tensor=True, **kw)

    cnn = nn.Sequential(
        act_in(), conv(1, 4, 3, Int8WeightPerTensorFixedPoint, padding=1), relu(),
        nn.MaxPool2d(2), conv(4, 8, 3, Int8WeightPerTensorFixedPoint, bits=4, padding=1),
        relu(4), qnn.TruncAvgPool2d(2, 2, bit_width=4, return_quant_tensor=True),
        nn.Flatten(),
        qnn.QuantLinear(32, 10, weight_quant=Int8WeightPerTensorFixedPoint,
                        bias_quant=Int16Bias))
    binary = nn.Sequential(
        qnn.QuantIdentity(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True),
        qnn.QuantLinear(16, 12, weight_quant=SignedBinaryWeightPerTensorConst,
                        weight_scaling_const=0.125, bias_quant=Int16Bias,
                        return_quant_tensor=True),
        relu(4),
        qnn.QuantLinear(12, 4, bias=False, weight_quant=SignedBinaryWeightPerTensorConst,
                        weight_scaling_const=0.25))
    ternary = nn.Sequential(
        act_in(), conv(1, 6, 3, SignedTernaryWeightPerTensorConst, bits=2,
                       weight_scaling_const=0.25, padding=1), relu(),
        nn.MaxPool2d(2), nn.Flatten(),
        qnn.QuantLinear(54, 5, weight_quant=SignedTernaryWeightPerTensorConst,
                        weight_scaling_const=0.125, bias_quant=Int16Bias))
    perchannel = nn.Sequential(
        act_in(), conv(2, 8, 3, Int8WeightPerChannelFixedPoint, padding=1), relu(),
        conv(8, 4, 1, Int8WeightPerChannelFixedPoint), relu(), nn.Flatten(),
        qnn.QuantLinear(64, 3, weight_quant=Int8WeightPerTensorFixedPoint,
                        bias_quant=Int16Bias))
    class Residual(nn.Module):
        """x -> conv -> ReLU -> conv (unquantized output) -> + x -> QuantIdentity -> linear."""

        def __init__(self):
            super().__init__()
            self.inp = act_in()
            self.conv1 = conv(2, 2, 3, Int8WeightPerTensorFixedPoint, padding=1)
            self.relu = relu()
            self.conv2 = qnn.QuantConv2d(2, 2, 3, padding=1,
                                         weight_quant=Int8WeightPerTensorFixedPoint,
                                         bias_quant=Int16Bias)
            self.out = act_in()
            self.fc = qnn.QuantLinear(32, 3, weight_quant=Int8WeightPerTensorFixedPoint,
                                      bias_quant=Int16Bias)

        def forward(self, x):
            x = self.inp(x)
            y = self.conv2(self.relu(self.conv1(x)))
            x = getattr(x, "value", x)      # a QuantTensor, but not while calibrating
            return self.fc(self.out(y + x).flatten(1))

    with torch.no_grad():       # spread the output channels' ranges (2**-3 .. 2**3)
        for layer in (perchannel[1], perchannel[3]):
            w = layer.weight
            w.mul_(2.0 ** torch.randint(-3, 4, (w.shape[0],) + (1,) * (w.dim() - 1)))
    residual = Residual()
    g = torch.Generator().manual_seed(SEED)
    return {"brevitas_cnn_fixed": (cnn, (1, 8, 8), True, torch.randn(64, 1, 8, 8,
                                                                      generator=g)),
            "brevitas_mlp_binary": (binary, (16,), False, torch.rand(64, 16, generator=g)),
            "brevitas_cnn_ternary": (ternary, (1, 6, 6), True, torch.randn(64, 1, 6, 6,
                                                                           generator=g)),
            "brevitas_cnn_perchannel": (perchannel, (2, 4, 4), True,
                                        torch.randn(64, 2, 4, 4, generator=g)),
            "brevitas_residual": (residual, (2, 4, 4), True, torch.randn(64, 2, 4, 4,
                                                                         generator=g))}


def _tidy(path: Path) -> None:
    """Drop the exporter's metadata (the exported program as text, stack traces with local
    paths) and keep the weights inside the file."""
    import onnx
    proto = onnx.load(str(path))                # reads external data, if any, back in
    del proto.graph.metadata_props[:]           # the exported program, as text
    for node in proto.graph.node:
        del node.metadata_props[:]
    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()
    onnx.save(proto, str(path))


def export() -> None:
    """Calibrate each model's activation scales on its data, then export it."""
    import torch
    from brevitas.export import export_qonnx
    from brevitas.graph.calibrate import calibration_mode
    for name, (net, shape, dynamo, data) in _models().items():
        net.eval()
        with torch.no_grad(), calibration_mode(net):
            net(data)
        path = OUT / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_qonnx(net, torch.zeros((1,) + shape), str(path), dynamo=dynamo,
                         input_names=["x"])
        _tidy(path)
        print(f"wrote {path.relative_to(OUT.parent.parent.parent)} "
              f"({path.stat().st_size:,} bytes)")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    export()
    return 0


if __name__ == "__main__":
    sys.exit(main())
