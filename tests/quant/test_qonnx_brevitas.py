"""The Brevitas QONNX fixtures (tests/fixtures/qonnx, written by tools/make_qonnx_fixtures.py
with ``brevitas.export.export_qonnx``): each loads, its float model equals qonnx's execution
of the graph without its activation Quants, method qonnx reads the spec off the Quant nodes
(per-channel weight scales as per-channel formats, ROUND Quants as layers rounding half to
even) and the integer model equals qonnx's execution of the file as exported (and, every
layer rounding half up, of the file with its activations patched to round half up); some
run on the engine bit-exact."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

import dynfix
from dynfix.quant.float_model import predict
from dynfix.quant.int_model import IntModel
from dynfix.quant.onnx.qonnx import import_qonnx
from onnx_graphs import max_rel_err
from qonnx_graphs import rounding_as_dynfix, run_qonnx, without_act_quants

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "qonnx"

#: fixture -> (data shape, inputs >= 0, layer ops after the import)
EXPECTED = {
    "brevitas_cnn_fixed": ((1, 8, 8), False, ["conv", "relu", "maxpool", "conv", "relu",
                                              "avgpool", "flatten", "linear"]),
    "brevitas_cnn_perchannel": ((2, 4, 4), False, ["conv", "relu", "conv", "relu",
                                                   "flatten", "linear"]),
    "brevitas_cnn_ternary": ((1, 6, 6), False, ["conv", "relu", "maxpool", "flatten",
                                                "linear"]),
    "brevitas_mlp_binary": ((16,), True, ["linear", "relu", "linear"]),
    "brevitas_residual": ((2, 4, 4), False, ["conv", "relu", "conv", "add", "flatten",
                                             "linear"]),
}


def _path(name: str) -> Path:
    return FIXTURES / f"{name}.onnx"


def _inputs(name: str, n: int, seed: int = 3) -> np.ndarray:
    shape, unsigned, _ = EXPECTED[name]
    rng = np.random.default_rng(seed)
    x = rng.random((n,) + shape) if unsigned else 2 * rng.standard_normal((n,) + shape)
    return x.astype(np.float32)


def _fmt(spec, i: int) -> tuple:
    """(bw_w, fl_w, bw_b, fl_b, bw_in, fl_in, zp_in, bw_x, fl_out, zp_out, ch_fl) of the
    ``i``-th formatted layer."""
    f = list(spec.layers.values())[i]
    return (f.bw_w, f.fl_w, f.bw_b, f.fl_b, f.bw_in, f.fl_in, f.zp_in, f.bw_x, f.fl_out,
            f.zp_out, f.ch_fl)


def test_every_fixture_is_listed():
    assert sorted(p.stem for p in FIXTURES.glob("*.onnx")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_float_model_equals_qonnx(name):
    """The float model (weights dequantized, activation Quants dropped) is qonnx's execution
    of the graph with its activation Quants bypassed."""
    shape, _, ops = EXPECTED[name]
    imp = import_qonnx(_path(name))
    assert imp.model.data_shape == shape
    assert [layer.op for layer in imp.model.layers] == ops
    x = _inputs(name, 6)
    ref = run_qonnx(without_act_quants(onnx.load(_path(name))), x)
    y = predict(imp.model, x)
    assert max_rel_err(y.reshape(ref.shape), ref) <= 1e-5


def _half_up(spec):
    """``spec`` with every layer rounding half up (dynfix's arithmetic before rounding
    modes)."""
    return replace(spec, layers={k: replace(f, rounding="half_up")
                                 for k, f in spec.layers.items()})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_int_model_equals_qonnx(name):
    """The integer model, dequantized, is qonnx's execution of the QONNX file as exported:
    Brevitas writes ROUND (half to even) and the import makes each layer with such a Quant
    on its output round half to even (the only note left is the input's, quantized on the
    host half up). The same spec rounding half up everywhere is qonnx's execution once its
    activation Quants and Truncs round half up."""
    imp = import_qonnx(_path(name))
    assert imp.spec is not None and imp.spec.method == "qonnx"
    assert [n for n in imp.notes if "half to even" in n and "input" not in n] == []
    assert any(f.rounding == "half_even" for f in imp.spec.layers.values())
    x = _inputs(name, 16)
    for spec, graph in ((imp.spec, onnx.load(_path(name))),
                        (_half_up(imp.spec), rounding_as_dynfix(onnx.load(_path(name))))):
        im = IntModel(imp.model, spec)
        y = im.dequantize(im.output_name, im.logits(x)).reshape(len(x), -1)
        ref = run_qonnx(graph, x).reshape(len(x), -1)
        assert np.abs(ref).max() > 0
        np.testing.assert_array_equal(y, ref)


def test_fixed_point_spec():
    """Each format is its Quant's (read off the file: scale 2**-fl, bit width): the 4-bit
    second conv and its 4-bit unsigned ReLU map, the unquantized output's exact
    accumulator."""
    s = import_qonnx(_path("brevitas_cnn_fixed")).spec
    assert (s.input_bw, s.input_fl, s.input_zp) == (8, 4, 0)
    assert _fmt(s, 0) == (8, 8, 16, 12, 8, 4, 0, 8, 6, -128, ())
    assert _fmt(s, 1) == (4, 5, 16, 11, 8, 6, -128, 4, 4, -8, ())
    assert _fmt(s, 2)[:7] == (8, 9, 16, 13, 4, 4, -8)
    assert _fmt(s, 2)[8:] == (13, 0, ())


def test_per_channel_weight_formats():
    """``Int8WeightPerChannelFixedPoint``: the channels' scales 2**-fl_m are per-channel
    formats (fl_w the coarsest, ch_fl the offsets), the per-channel Int16Bias at
    fl_b + ch_fl[m] (its scale the input's times the weights')."""
    path = _path("brevitas_cnn_perchannel")
    model = onnx.load(path)
    scales = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    quants = [n for n in model.graph.node if n.op_type == "Quant"]
    w1 = -np.log2(scales[quants[1].input[1]].reshape(-1))        # the first conv's weights
    assert len(set(w1.tolist())) > 1
    s = import_qonnx(path).spec
    f = list(s.layers.values())[0]
    assert f.fl_w == w1.min() and f.ch_fl == tuple((w1 - w1.min()).astype(int).tolist())
    assert f.fl_b == s.input_fl + f.fl_w and f.bias_shift == 0
    assert _fmt(s, 1)[-1] != () and _fmt(s, 2)[-1] == ()


def test_residual_branch_keeps_its_accumulator():
    """The second conv's output has no Quant (Brevitas quantizes after the Add): it keeps
    its exact accumulator (fl_in + fl_w), which the Add aligns with the input."""
    s = import_qonnx(_path("brevitas_residual")).spec
    conv2, add = list(s.layers.values())[1:3]
    assert (conv2.bw_x, conv2.fl_out) == (conv2.acc_bits, conv2.fl_in + conv2.fl_w)
    assert add.fl_in == (conv2.fl_out, s.input_fl) and (add.bw_x, add.zp_out) == (8, 0)


def test_binary_and_ternary_weights_are_2_bit():
    """BipolarQuant weights (scales 1/8 and 1/4; the second behind the TorchScript
    exporter's Transpose) and 2-bit narrow ternary ones (1/4, 1/8) are 2-bit formats."""
    b = import_qonnx(_path("brevitas_mlp_binary"))
    assert [_fmt(b.spec, i)[:2] for i in range(2)] == [(2, 3), (2, 2)]
    assert set(np.unique(b.model.layers[0].weight).tolist()) == {-0.125, 0.125}
    t = import_qonnx(_path("brevitas_cnn_ternary"))
    assert [_fmt(t.spec, i)[:2] for i in range(2)] == [(2, 2), (2, 3)]
    assert set(np.unique(t.model.layers[0].weight).tolist()) == {-0.25, 0.0, 0.25}


def _engine(name: str, tmp_path, images: int = 2) -> tuple:
    """quantize(method qonnx) -> generate -> simulate on Icarus: no mismatch, and the
    engine's outputs are qonnx's execution of the file as exported (layers rounding half
    to even; the engine rounds so where a group's program bit says). Returns the engine's
    outputs, the quantization and the inputs."""
    said = []
    q = dynfix.quantize(str(_path(name)), method="qonnx", output=tmp_path / "Q.yaml",
                        progress=said.append)
    assert q.spec.method == "qonnx" and not any("searching" in m for m in said)
    x = _inputs(name, images, seed=5)
    gen = dynfix.generate(q, tmp_path / "gen", config={"tn": 9, "tm": 1})
    s = dynfix.simulate(gen, q, data=x, images=images)
    assert s.n == images and s.mismatches == 0
    im = IntModel(q.model, q.spec)
    y = im.dequantize(im.output_name, s.outputs.reshape(images, -1))
    ref = run_qonnx(onnx.load(_path(name)), x)
    np.testing.assert_array_equal(y, ref.reshape(images, -1))
    assert gen.compiled.config.round_even == 1
    return s.outputs.reshape(images, -1), q, x


@pytest.mark.usefixtures("icarus")
def test_ternary_on_the_engine(tmp_path):
    """Ternary conv and linear weights (2-bit formats) on the engine, the conv rounding
    half to even: on these inputs rounding half up would give other outputs."""
    y, q, x = _engine("brevitas_cnn_ternary", tmp_path)
    assert np.any(IntModel(q.model, _half_up(q.spec)).logits(x).reshape(y.shape) != y)


@pytest.mark.slow
@pytest.mark.usefixtures("icarus")
@pytest.mark.parametrize("name", ["brevitas_cnn_perchannel", "brevitas_mlp_binary",
                                  "brevitas_cnn_fixed", "brevitas_residual"])
def test_engine_bit_exact_slow(name, tmp_path):
    """Per-channel formats (a data shift per channel), binary weights, 4- and 8-bit
    fixed point with a truncating average pool, a residual branch at full precision up
    to its Add, on the engine."""
    _engine(name, tmp_path, images=3)
