"""QONNX import (quant/onnx/qonnx.py): fixed-point Quant nodes become the QuantSpec, and the
integer model computes what qonnx's own executor computes on the QONNX graph."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest

import dynfix
from dynfix.errors import DynfixError
from dynfix.quant.int_model import IntModel
from dynfix.quant.onnx import load_onnx
from dynfix.quant.onnx.qonnx import import_qonnx
from dynfix.quant.qspec_io import spec_to_dict
from qonnx_graphs import DOMAIN, QGraph, cnn, mlp, pooled, run_qonnx


def _save(g: QGraph, tmp_path, name: str = "q.onnx") -> str:
    path = str(tmp_path / name)
    onnx.save(g.build(), path)
    return path


def _inputs(g: QGraph, n: int, seed: int, unsigned: bool) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n,) + g.input_shape)
    return (np.abs(x) / 4 if unsigned else 2 * x).astype(np.float32)


def _fmt(spec, name: str) -> tuple:
    f = spec.layers[name]
    return (f.bw_w, f.fl_w, f.bw_b, f.fl_b, f.bw_in, f.fl_in, f.zp_in, f.bw_x, f.fl_out,
            f.zp_out)


def test_cnn_spec_is_the_quant_formats(tmp_path):
    """Each format is its Quant node's: bits and -log2(scale); the ReLU's unsigned Quant an
    unsigned map; the unquantized output the exact accumulator."""
    g = cnn()
    imp = import_qonnx(_save(g, tmp_path))
    s = imp.spec
    assert (s.input_bw, s.input_fl, s.input_zp) == (8, 5, 0)
    assert _fmt(s, "Conv1") == (8, 6, 16, 11, 8, 5, 0, 8, 4, -128)
    assert _fmt(s, "Gemm5") == (4, 3, 16, 7, 8, 4, -128, 19, 7, 0)
    assert s.method == "qonnx"
    # the float weights are the Quant's dequantized values: the drawn integers on the grid
    conv = imp.model.layer("Conv1")
    np.testing.assert_array_equal(conv.weight, g.ints["conv.weight"] / 64.0)
    np.testing.assert_array_equal(conv.bias, g.ints["conv.bias"] / 2048.0)
    assert any("half to even" in n for n in imp.notes)


@pytest.mark.parametrize("make,unsigned", [(cnn, False), (mlp, True),
                                           (lambda: mlp(binary=True), True),
                                           (lambda: cnn(per_channel=True), False)],
                         ids=["cnn", "mlp", "mlp-binary", "cnn-per-channel"])
def test_int_model_equals_qonnx_execution(tmp_path, make, unsigned):
    """The integer model's outputs, dequantized, equal qonnx's execution of the QONNX graph
    (HALF_UP activations after ReLU: dynfix's rounding) on random inputs."""
    g = make()
    imp = import_qonnx(_save(g, tmp_path))
    x = _inputs(g, 24, 3, unsigned)
    im = IntModel(imp.model, imp.spec)
    y = im.dequantize(im.output_name, im.logits(x)).reshape(len(x), -1)
    ref = run_qonnx(g.build(), x).reshape(len(x), -1)
    assert np.abs(ref).max() > 0
    np.testing.assert_array_equal(y, ref)


def test_mlp_binary_and_ternary_weights(tmp_path):
    """BipolarQuant weights of scale 1/4 are a 2-bit format at fl 2 ({-1, +1}); 2-bit
    narrow weights (ternary) at fl 1."""
    g = mlp(binary=True)
    imp = import_qonnx(_save(g, tmp_path))
    s = imp.spec
    assert (s.input_bw, s.input_fl, s.input_zp) == (8, 8, -128)
    assert _fmt(s, "MatMul2") == (2, 2, 12, 10, 8, 8, -128, 4, 2, -8)
    assert _fmt(s, "Gemm5")[:2] == (2, 1)
    w = imp.model.layer("MatMul2").weight
    assert set(np.unique(w).tolist()) == {-0.25, 0.25}
    assert set(np.unique(imp.model.layer("Gemm5").weight).tolist()) <= {-0.5, 0.0, 0.5}


def test_cli_method_qonnx_needs_no_calibration(tmp_path, capsys):
    """``dynfix quantize --method qonnx`` without ``--calib`` when the Quant nodes give every
    format (and says it did not search); a file that must be searched then asks for data,
    in one line, as the other methods do."""
    from dynfix.cli import main
    path = _save(cnn(), tmp_path)
    out = tmp_path / "q.yaml"
    assert main(["quantize", path, "--method", "qonnx", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "no search" in err and "calibration inputs" not in err and out.exists()
    searched = _save(cnn(scale_w=0.3 / 64), tmp_path, "s.onnx")
    assert main(["quantize", searched, "--method", "qonnx", "-o", str(out)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a power of two" in err[0] and "calibration" in err[0]
    assert main(["quantize", path, "-o", str(out)]) != 0
    assert "--calib" in capsys.readouterr().err


def test_plain_load_folds_the_quant_nodes(tmp_path):
    """load_onnx (every command) reads a QONNX file as its float model."""
    g = mlp()
    m = load_onnx(_save(g, tmp_path))
    np.testing.assert_array_equal(m.layer("MatMul1").weight, g.ints["fc1.weight"].T / 4.0)


@pytest.mark.parametrize("make", [cnn, lambda: mlp(binary=True)], ids=["cnn", "mlp-binary"])
def test_older_finn_domain_gives_the_same_spec(tmp_path, make):
    """Older files (FINN-era tools) put the custom nodes in domain
    ``finn.custom_op.general``: the same graph then gives the same spec and weights."""
    new = make().build()
    old = onnx.ModelProto()
    old.CopyFrom(new)
    for item in [*old.graph.node, *old.opset_import]:
        if item.domain == DOMAIN:
            item.domain = "finn.custom_op.general"
    assert sum(n.domain == "finn.custom_op.general" for n in old.graph.node) >= 5
    onnx.save(new, tmp_path / "new.onnx")
    onnx.save(old, tmp_path / "old.onnx")
    a, b = import_qonnx(tmp_path / "new.onnx"), import_qonnx(tmp_path / "old.onnx")
    assert a.spec is not None and spec_to_dict(b.spec) == spec_to_dict(a.spec)
    for la, lb in zip(a.model.layers, b.model.layers):
        assert la.name == lb.name
        for k, v in la.params().items():
            np.testing.assert_array_equal(lb.params()[k], v)


def test_non_power_of_two_scale_searches(tmp_path):
    """A scale of 0.3 is no dynfix format: method qonnx folds the fake quantization and
    runs the search, saying so."""
    g = cnn(scale_w=0.3 / 64)
    path = _save(g, tmp_path)
    said = []
    q = dynfix.quantize(path, calib=_inputs(g, 16, 1, False), bits="8", method="qonnx",
                        progress=said.append)
    assert q.spec.method.startswith("greedy")
    assert any("not a power of two" in m and "searching" in m for m in said)
    np.testing.assert_allclose(load_onnx(path).layer("Conv1").weight,
                               g.ints["conv.weight"] * (0.3 / 64), rtol=1e-6)


def test_per_channel_scales_are_per_channel_formats(tmp_path):
    """Conv weights at fl 6, 8, 5, 7 per output channel: fl_w 5 (the coarsest) and ch_fl
    1, 3, 0, 2; the bias, at fl 5 + those, at fl_b 10 with the same offsets."""
    g = cnn(per_channel=True)
    s = import_qonnx(_save(g, tmp_path)).spec
    assert _fmt(s, "Conv1")[:4] == (8, 5, 16, 10)
    assert s.layers["Conv1"].ch_fl == (1, 3, 0, 2) and s.layers["Gemm5"].ch_fl == ()
    assert s.layers["Conv1"].data_shifts(4).tolist() == [7, 9, 6, 8]   # 5 + fl_m - 4


def _edit_scale(g: QGraph, tensor: str, value: np.ndarray) -> onnx.ModelProto:
    model = g.build()
    t = next(t for t in model.graph.initializer if t.name == tensor)
    t.CopyFrom(onnx.numpy_helper.from_array(np.asarray(value, np.float32), tensor))
    return model


@pytest.mark.parametrize("tensor,scale,why", [
    ("act_quant.scale", 2.0 ** -np.array([4, 5, 4, 4]).reshape(1, 4, 1, 1),
     "not a power of two \\(one per tensor on a feature map\\)"),
    ("conv.weight_quant.scale", 2.0 ** -np.array([6, 7, 6]).reshape(1, 1, 1, 3),
     "Quant node conv.weight_quant gives the weights of Conv1 a scale that is not one per "
     "output channel"),
    ("conv.weight_quant.scale", 2.0 ** -np.array([6, 40, 6, 6]).reshape(4, 1, 1, 1),
     "the weight scales of Quant node conv.weight_quant span 34 binades"),
], ids=["map-per-channel", "weights-per-column", "weights-span"])
def test_per_channel_scales_dynfix_cannot_take_search(tmp_path, tensor, scale, why):
    """A scale per channel on a feature map, a weight scale that varies along another axis
    than the output channels, or channels more than 24 binades apart: no spec, and the
    reason in one line (method qonnx then searches)."""
    path = str(tmp_path / "pc.onnx")
    onnx.save(_edit_scale(cnn(), tensor, scale), path)
    imp = import_qonnx(path)
    assert imp.spec is None and "\n" not in imp.reason
    assert re.search(why, imp.reason), imp.reason


def test_batchnorm_of_the_quantized_input_searches(tmp_path):
    """A BatchNormalization right after the input's Quant is the host's normalization: the
    engine's input is then the normalized one, which no Quant node gives a format, so there
    is no spec (method qonnx searches)."""
    g = QGraph((1, 8, 8))
    g.x = g.quant("input", 8, 2.0 ** -5, name="in_quant")
    bn = [g.init(f"bn.{k}", np.full(1, v, np.float32))
          for k, v in (("gamma", 2.0), ("beta", 0.5), ("mean", 0.25), ("var", 1.0))]
    g.node("BatchNormalization", [g.x, *bn])
    g.node("Conv", [g.x, g.qweight("conv.weight", (4, 1, 3, 3), 8, 6)], kernel_shape=[3, 3],
           pads=[1, 1, 1, 1])
    imp = import_qonnx(_save(g, tmp_path))
    assert imp.model.input_affine is not None and imp.spec is None
    assert "input is normalized" in imp.reason and "\n" not in imp.reason


def test_batchnorm_on_quantized_weights_searches(tmp_path):
    """A BatchNormalization after a quantized Conv (FINN-style binary nets) folds a scale
    into its weights, off their Quant's grid: no spec, the reason in one line; an identity
    BatchNormalization (only its epsilon) leaves them on it."""
    def with_bn(gamma) -> str:
        model = cnn().build()
        i, conv = next((i, n) for i, n in enumerate(model.graph.node) if n.op_type == "Conv")
        out = conv.output[0]
        conv.output[0] = out + "_pre"
        names = []
        for k, v in zip(("gamma", "beta", "mean", "var"), (gamma, 0.0, 0.0, 1.0)):
            names.append(f"bn.{k}")
            model.graph.initializer.append(onnx.numpy_helper.from_array(
                np.broadcast_to(np.float32(v), (4,)).copy(), names[-1]))
        model.graph.node.insert(i + 1, onnx.helper.make_node(
            "BatchNormalization", [out + "_pre"] + names, [out], "bn"))
        path = str(tmp_path / f"bn{len(list(tmp_path.iterdir()))}.onnx")
        onnx.save(model, path)
        return path

    imp = import_qonnx(with_bn([1.5, 0.7, 1.2, 0.9]))
    assert imp.spec is None
    assert "the weights of layer Conv1 are not on the grid of their Quant node " \
           "conv.weight_quant" in imp.reason
    assert import_qonnx(with_bn(1.0)).spec is not None


def test_float_bias_is_rounded_and_said(tmp_path):
    """A Conv bias without a Quant (Brevitas' default bias_quant=None) is held at the
    accumulator's binary point, and the import says it is rounded there."""
    model = cnn().build()
    n = next(n for n in model.graph.node if n.name == "conv.bias_quant")
    n.CopyFrom(onnx.helper.make_node("Identity", [n.input[0]], [n.output[0]], "id"))
    path = str(tmp_path / "fb.onnx")
    onnx.save(model, path)
    imp = import_qonnx(path)
    assert imp.spec.layers["Conv1"].fl_b == 5 + 6
    assert any("Conv1: its float bias is rounded" in m for m in imp.notes)


def test_trunc_after_average_pool(tmp_path):
    """AveragePool -> Trunc back to the map's format (Brevitas' TruncAvgPool2d) is dynfix's
    average pool, which keeps its input's format: the integer model is qonnx's execution."""
    g = pooled(global_pool=False)
    imp = import_qonnx(_save(g, tmp_path))
    assert [layer.op for layer in imp.model.layers] == ["conv", "relu", "avgpool", "flatten",
                                                         "linear"]
    x = _inputs(g, 16, 3, False)
    im = IntModel(imp.model, imp.spec)
    y = im.dequantize(im.output_name, im.logits(x)).reshape(len(x), -1)
    np.testing.assert_array_equal(y, run_qonnx(g.build(), x).reshape(len(x), -1))


def test_trunc_after_global_pool(tmp_path):
    """A Trunc on a global average pool that dynfix folds into the next Linear: the Linear's
    weights, divided by the 16 cells, are its Quant's integers at fl 7 + 4; the import says
    the mean is no longer rounded. A Trunc to another format than the pooled map's: one
    line."""
    g = pooled(global_pool=True)
    imp = import_qonnx(_save(g, tmp_path))
    f = imp.spec.layers["Gemm6"]
    assert (f.bw_w, f.fl_w, f.bw_b, f.fl_b) == (8, 11, 16, 11)
    assert any("global average pool it rounds is folded" in n for n in imp.notes)
    assert not any("not on their Quant grid" in n for n in imp.notes)
    x = _inputs(g, 16, 3, False)
    im = IntModel(imp.model, imp.spec)
    y = im.dequantize(im.output_name, im.logits(x)).reshape(len(x), -1)
    ref = run_qonnx(g.build(), x).reshape(len(x), -1)
    step = np.abs(g.ints["fc.weight"]).sum(axis=1).max() * 2.0 ** -7 * 2.0 ** -5
    assert 0 < np.abs(y - ref).max() <= step          # the mean's rounding, no more
    with pytest.raises(DynfixError, match="a format other than its input's"):
        import_qonnx(_save(pooled(global_pool=True, out_bits=6), tmp_path, "b.onnx"))


def _malformed(tmp_path, edit) -> str:
    g = mlp()
    model = g.build()
    edit(model)
    path = str(tmp_path / "bad.onnx")
    onnx.save(model, path)
    return path


def test_malformed_quant_nodes_one_line(tmp_path):
    def drop_bits(m):
        n = next(n for n in m.graph.node if n.name == "act_quant")
        del n.input[3]

    def data_scale(m):
        n = next(n for n in m.graph.node if n.name == "act_quant")
        n.input[1] = n.input[0]

    for edit, match in ((drop_bits, "act_quant.*needs inputs x, scale, zeropt, bitwidth"),
                        (data_scale, "act_quant.*scale input .* is not a constant")):
        with pytest.raises(DynfixError, match=match) as e:
            import_qonnx(_malformed(tmp_path, edit))
        assert "\n" not in str(e.value)


def test_missing_activation_quant_is_named(tmp_path):
    """A hidden map without a Quant: one line naming the layer."""
    def drop_act(m):
        n = next(n for n in m.graph.node if n.name == "act_quant")
        n.CopyFrom(onnx.helper.make_node("Identity", [n.input[0]], [n.output[0]], "id"))

    with pytest.raises(DynfixError, match="no Quant node gives the format of MatMul1 output"):
        import_qonnx(_malformed(tmp_path, drop_act))


def test_method_qonnx_needs_a_file():
    with pytest.raises(DynfixError, match="pass its path"):
        dynfix.quantize(load_onnx_model(), method="qonnx")


def load_onnx_model():
    from dynfix.inputs import load_model
    return load_model("digits")


@pytest.mark.usefixtures("icarus")
def test_qonnx_generate_simulate_bit_exact(tmp_path):
    """quantize(method qonnx) -> generate -> simulate on Icarus: no mismatch, and the
    engine's outputs are qonnx's execution of the QONNX graph."""
    g = cnn()
    path = _save(g, tmp_path)
    q = dynfix.quantize(path, method="qonnx", output=tmp_path / "Q.yaml")
    x = _inputs(g, 4, 5, False)
    gen = dynfix.generate(q, tmp_path / "gen", config={"tn": 9, "tm": 1})
    s = dynfix.simulate(gen, q, data=x, images=3)
    assert s.n == 3 and s.mismatches == 0
    im = IntModel(q.model, q.spec)
    y = im.dequantize(im.output_name, s.outputs.reshape(3, -1))
    np.testing.assert_array_equal(y, run_qonnx(g.build(), x[:3]).reshape(3, -1))
