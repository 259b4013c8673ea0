"""Models as Keras (tf2onnx) and PyTorch export them: channels-last inputs (the leading
Transpose folded into the model's input layout), 1-D layers (run as 2-D ones of height 1),
BatchNormalization on N x F features (wrapped in Unsqueeze/Squeeze or Transposes) and a
trailing Sigmoid. Graphs are built by hand (tests/onnx_graphs.py); onnxruntime is the
oracle, always fed the data in the model's own layout."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from dynfix.errors import DynfixError
from dynfix.quant.fidelity import output_kind, top1
from dynfix.quant.float_model import check_input, forward, predict
from dynfix.quant.int_model import IntModel
from dynfix.quant.ir import Conv2d, Model, ReLU
from dynfix.quant.onnx import load_onnx, save_onnx
from dynfix.quant.search import search_model
from dynfix.quant.yaml_io import load_yaml, save_yaml
from onnx_graphs import GraphBuilder, check_vs_ort, max_rel_err, run_ort

TOL = 1e-5


def ops(model) -> list[str]:
    return [layer.op for layer in model.layers]


def refused(g: GraphBuilder, tmp_path, match: str) -> None:
    path = g.save(tmp_path / "bad.onnx")
    with pytest.raises(DynfixError, match=match) as e:
        load_onnx(path)
    assert "\n" not in str(e.value)


def data(model_or_shape, n: int = 4, seed: int = 3) -> np.ndarray:
    shape = model_or_shape if isinstance(model_or_shape, tuple) else model_or_shape.data_shape
    return np.random.default_rng(seed).standard_normal((n,) + tuple(shape)).astype(np.float32)


def keras_cnn(opset: int = 13) -> GraphBuilder:
    """tf2onnx's NHWC CNN: Transpose to NCHW at the input, Conv / BN / ReLU, the NHWC
    Transpose before the flatten, MatMul + Add, Softmax."""
    g = GraphBuilder((6, 5, 3), opset=opset)
    g.c = 3
    g.transpose([0, 3, 1, 2]).conv(4, stride=2).bn().relu().transpose([0, 2, 3, 1])
    g.flatten().matmul_add(5).softmax()
    return g


# ----------------------------------------------------------------------------- NHWC input

def test_nhwc_input_becomes_the_models_layout(tmp_path):
    m = check_vs_ort(keras_cnn(), tmp_path)
    assert m.input_layout == "NHWC" and m.input_shape == (3, 6, 5)
    assert m.data_shape == (6, 5, 3)
    assert ops(m) == ["conv", "relu", "flatten", "linear", "softmax"]   # BN folded
    assert m.summary()["input_layout"] == "NHWC" and m.summary()["data_shape"] == [6, 5, 3]


@pytest.mark.parametrize("scale,shift", [
    (np.array([2.0, 0.5, 1.5]), np.array([-1.0, 0.2, 0.3])),       # Normalization, (C,)
    (np.float32(1 / 255), np.float32(-0.5)),                        # Rescaling, scalars
], ids=["normalization", "rescaling"])
def test_keras_normalization_before_the_nhwc_transpose(tmp_path, scale, shift):
    """Keras's Normalization / Rescaling as tf2onnx writes them: Mul and Add by constants
    on the NHWC input (per channel on its last axis), then the Transpose to NCHW. The
    layout is NHWC and the Mul + Add the host's input normalization; a written ONNX file
    keeps both."""
    g = GraphBuilder((6, 5, 3), opset=13)
    g.op("Mul", g.constant(np.asarray(scale, np.float32)))
    g.op("Add", g.constant(np.asarray(shift, np.float32)))
    g.c = 3
    g.transpose([0, 3, 1, 2]).conv(4).relu()
    m = check_vs_ort(g, tmp_path)
    assert m.input_layout == "NHWC" and ops(m) == ["conv", "relu"]
    np.testing.assert_allclose(m.input_affine[0], np.broadcast_to(scale, (3,)), rtol=1e-7)
    np.testing.assert_allclose(m.input_affine[1], np.broadcast_to(shift, (3,)), rtol=1e-7)
    save_onnx(m, tmp_path / "w.onnx")
    back = load_onnx(tmp_path / "w.onnx")
    assert back.input_layout == "NHWC" and ops(back) == ["conv", "relu"]
    x = 4 * data(m)
    assert max_rel_err(run_ort(str(tmp_path / "w.onnx"), x), run_ort(str(tmp_path / "m.onnx"),
                                                                       x)) <= TOL


def test_nhwc_data_is_transposed_once_everywhere(tmp_path):
    """The NHWC model quantizes and runs exactly as the same layers do on NCHW data: the
    data is transposed once on the way in (calibration, float and integer models)."""
    m = load_onnx(keras_cnn().save(tmp_path / "k.onnx"))
    same = Model(m.name, m.input_name, m.input_shape, m.layers)          # NCHW, same layers
    x = data(m, n=32)
    xc = x.transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(predict(m, x), predict(same, xc))
    r, rc = search_model(m, x, "8"), search_model(same, xc, "8")
    assert r.spec.layers == rc.spec.layers and r.model.input_layout == "NHWC"
    np.testing.assert_array_equal(IntModel(r.model, r.spec).logits(x),
                                  IntModel(rc.model, rc.spec).logits(xc))
    with pytest.raises(DynfixError, match=r"input has shape \(32, 3, 6, 5\); model .* takes "
                                          r"N x 6 x 5 x 3 \(NHWC\)"):
        check_input(m, xc)


def test_nhwc_with_a_1x1_input_transposes_like_any_other(tmp_path):
    """A single-pixel NHWC input (N x 1 x 1 x C, a dense model written with Conv 1x1)."""
    g = GraphBuilder((1, 1, 4), opset=13)
    g.c = 4
    g.transpose([0, 3, 1, 2]).conv(3, k=1, pads=[0, 0, 0, 0]).relu().flatten().gemm(2)
    m = check_vs_ort(g, tmp_path)
    assert m.input_layout == "NHWC" and m.input_shape == (4, 1, 1)


def second_reader(g: GraphBuilder) -> GraphBuilder:
    """The input read by its Transpose and by a ReLU (transposed later): no layout."""
    g.transpose([0, 3, 1, 2]).conv(3, k=1, pads=[0, 0, 0, 0])
    return g.residual(g.node("Transpose", [g.node("Relu", [g.input_name])], perm=[0, 3, 1, 2]))


@pytest.mark.parametrize("build,match", [
    # the input's Transpose is not its only reader: no layout, and the Transpose is held
    (second_reader, r"reads the output of node /transpose\d/Transpose \(Transpose\), which "
                    r"dynfix folds only into a Flatten/Reshape"),
    # NCHW -> NHWC at the input (not channels first) and a Transpose in the middle
    (lambda g: g.transpose([0, 2, 3, 1]).conv(2), "which dynfix folds only into a Flatten"),
    (lambda g: g.transpose([0, 3, 1, 2]).conv(3).transpose([0, 1, 3, 2]).conv(2),
     "which dynfix folds only into a Flatten"),
    (lambda g: g.transpose([0, 3, 1, 2]).transpose([1, 0, 2, 3]).relu(),
     "moves the batch axis"),
])
def test_other_transposes_are_still_refused(tmp_path, build, match):
    g = GraphBuilder((4, 4, 3), opset=13)
    g.c = 3
    build(g)
    refused(g, tmp_path, match)


# ----------------------------------------------------------------------------- 1-D models

def test_nwc_input_with_1d_layers(tmp_path):
    """Channels-last 1-D input (N x L x C) read by a Transpose [0, 2, 1], then Conv1d,
    MaxPool1d, a strided SAME Conv1d and a global pool over L."""
    g = GraphBuilder((16, 2), opset=13)
    g.c = 2
    g.transpose([0, 2, 1]).conv1d(4, k=5, pads=[2, 2]).relu()
    g.op("MaxPool", kernel_shape=[2], strides=[2])
    g.conv1d(6, k=3, stride=2, auto_pad="SAME_UPPER").relu().gap().flatten().gemm(3)
    m = check_vs_ort(g, tmp_path)
    assert m.input_layout == "NWC" and m.input_shape == (2, 1, 16) and m.data_shape == (16, 2)
    conv = m.layers[0]
    assert conv.kernel == (1, 5) and conv.pads == (0, 2, 0, 2)
    assert m.layers[2].kernel == (1, 2) and m.layers[3].stride == (1, 2)


def test_tf2onnx_conv1d_unsqueeze_transpose_squeeze(tmp_path):
    """tf2onnx's Conv1D: Unsqueeze(1) + Transpose [0, 3, 1, 2] at the input, a 2-D Conv of
    height 1, Squeeze(2), the bias as a per-channel Add, Unsqueeze(2) before the pool, and
    the NWC Transpose before the flatten; a Sigmoid at the end."""
    g = GraphBuilder((12, 3), opset=13)
    g.c = 3
    g.unsqueeze([1]).transpose([0, 3, 1, 2]).conv(4, k=(1, 3), pads=[0, 1, 0, 1], bias=False)
    g.squeeze([2]).op("Add", g.init("b", g.weights(4, 1, scale=0.3))).relu()
    g.unsqueeze([2]).op("MaxPool", kernel_shape=[1, 2], strides=[1, 2]).squeeze([2])
    g.transpose([0, 2, 1]).flatten().gemm(1).sigmoid()
    m = check_vs_ort(g, tmp_path)
    assert m.input_layout == "NWC" and m.data_shape == (12, 3)
    assert ops(m) == ["conv", "relu", "maxpool", "flatten", "linear", "sigmoid"]


@pytest.mark.parametrize("variant", ["dilated", "grouped", "strided_uneven", "same_lower",
                                     "avgpool", "pad", "reducemean", "dynamo_pool",
                                     "opset11"])
def test_ncw_pytorch_conv1d_forms(tmp_path, variant):
    """PyTorch's N x C x L (layout NCW): Conv1d attributes, 1-D pools, a zero Pad of L,
    and the ways exporters write adaptive_avg_pool1d(x, 1)."""
    g = GraphBuilder((4, 18), opset={"opset11": 11, "dynamo_pool": 18}.get(variant, 13))
    if variant == "dilated":
        g.conv1d(5, k=3, dilation=2, pads=[2, 2])
    elif variant == "grouped":
        g.conv1d(6, k=3, groups=2)
    elif variant == "strided_uneven":
        g.conv1d(5, k=4, stride=3, pads=[1, 0])
    elif variant == "same_lower":
        g.conv1d(5, k=4, stride=2, auto_pad="SAME_LOWER")
    elif variant == "avgpool":
        g.op("AveragePool", kernel_shape=[3], strides=[2], pads=[1, 1], count_include_pad=1)
    elif variant == "pad":
        g.pad([0, 0, 1, 0, 0, 2]).conv1d(5, k=3, pads=[0, 0])
    else:
        g.conv1d(5, k=3)
    g.relu()
    if variant == "reducemean":
        g.op("ReduceMean", axes=[2], keepdims=0)
    elif variant == "dynamo_pool":
        g.unsqueeze([-2]).op("ReduceMean", g.constant(np.array([-1, -2], np.int64)),
                             keepdims=1).squeeze([-2])
        g.op("Reshape", g.constant(np.array([-1, g.c], np.int64)))
    else:
        g.flatten()
    g.c = g.features()
    m = check_vs_ort(g.gemm(3), tmp_path)
    assert m.input_layout == "NCW" and m.input_shape == (4, 1, 18) and m.data_shape == (4, 18)


def test_1d_map_output_keeps_its_rank(tmp_path):
    """A 1-D model whose output is a map: N x C x L out, as onnxruntime gives it."""
    g = GraphBuilder((3, 10), opset=13).conv1d(4, k=3).relu()
    m = check_vs_ort(g, tmp_path)
    assert predict(m, data(m)).shape == (4, 4, 10)


@pytest.mark.parametrize("build,match", [
    (lambda g: g.unsqueeze([3]).conv(2, k=(3, 1), pads=[1, 0, 1, 0]),
     "whose axes do not map onto dynfix's channels-first maps"),
    (lambda g: g.op("MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
     r"a 2-D window \[2, 2\] on a 1-D input"),
    (lambda g: g.conv1d(2, k=3).unsqueeze([1, 2]).relu().conv(2),
     "only 1-D and 2-D convolutions"),
    (lambda g: g.op("Reshape", g.constant(np.array([0, 2, -1], np.int64))),
     r"reshaping \[1, 4, 10\] to \[1, 2, 20\] is not supported"),
])
def test_1d_errors(tmp_path, build, match):
    g = GraphBuilder((4, 10), opset=13)
    build(g)
    refused(g, tmp_path, match)


# ----------------------------------------------------------------------------- BN on features

@pytest.mark.parametrize("axes", [[2], [2, 3]])
def test_batchnorm1d_unsqueezed_folds_into_the_linear_before(tmp_path, axes):
    """PyTorch's BatchNorm1d on N x F as older exporters write it: Unsqueeze -> BN ->
    Squeeze; folded into the Linear before it."""
    g = GraphBuilder((10,), opset=13).gemm(8, features=10)
    g.unsqueeze(axes).bn().squeeze(axes).relu().gemm(3)
    m = check_vs_ort(g, tmp_path)
    assert ops(m) == ["linear", "relu", "linear"]


def test_batchnorm_between_transposes_folds(tmp_path):
    """Keras-style BN on features wrapped in Transposes [1, 0] (batch on axis 1 in
    between): as BatchNormalization over (1, F, N), and as Mul / Add constants over
    (F, N); both fold into the Linear before."""
    g = GraphBuilder((10,), opset=13).gemm(8, features=10)
    g.transpose([1, 0]).unsqueeze([0]).bn().squeeze([0]).transpose([1, 0]).relu()
    g.gemm(6).transpose([1, 0])
    g.op("Mul", g.init("s", (1 + 0.3 * g.rng.standard_normal((6, 1))).astype(np.float32)))
    g.op("Add", g.init("t", (0.2 * g.rng.standard_normal((6, 1))).astype(np.float32)))
    g.transpose([1, 0]).gemm(2)
    m = check_vs_ort(g, tmp_path)
    assert ops(m) == ["linear", "relu", "linear", "linear"]


def test_batchnorm_on_input_features_is_the_hosts_normalization(tmp_path):
    g = GraphBuilder((10,), opset=13).unsqueeze([2]).bn().squeeze([2]).gemm(3)
    m = check_vs_ort(g, tmp_path)
    assert ops(m) == ["linear"] and m.input_affine[0].shape == (10,)


@pytest.mark.parametrize("build,match", [
    (lambda g: g.transpose([1, 0]).gemm(3),
     r"reads the output of node /transpose\d/Transpose \(Transpose\), which dynfix folds "
     r"only around per-feature operators"),
    (lambda g: g.transpose([1, 0]).relu(), "graph output is the output of node /transpose"),
    (lambda g: g.transpose([1, 0]).bn(), "works per channel on ONNX axis 1, which holds the "
                                         "batch"),
    (lambda g: g.transpose([1, 0]).squeeze([1]), "squeezes the batch axis"),
])
def test_moved_batch_axis_errors(tmp_path, build, match):
    g = GraphBuilder((10,), opset=13).gemm(8, features=10)
    build(g)
    refused(g, tmp_path, match)


# ----------------------------------------------------------------------------- Sigmoid

def test_trailing_sigmoid_runs_on_the_host(tmp_path):
    g = GraphBuilder((6,), opset=13).gemm(5, features=6).relu().gemm(1).sigmoid()
    m = check_vs_ort(g, tmp_path)
    assert ops(m)[-1] == "sigmoid" and output_kind(m) == "classes"
    x = data(m, n=64)
    r = search_model(m, x, "8")
    im = IntModel(r.model, r.spec)
    logits = im.logits(x)                           # the engine's output: before the sigmoid
    probs = im.dequantize(im.output_name, logits)
    assert np.all((probs > 0) & (probs < 1))
    before = forward(m, x)[m.layers[-2].name]
    ref = run_ort(str(tmp_path / "m.onnx"), x)
    assert np.array_equal(top1(before), (ref[:, 0] > 0.5).astype(np.int64))


def test_sigmoid_before_the_end_is_refused(tmp_path):
    g = GraphBuilder((6,), opset=13).gemm(5, features=6).sigmoid().gemm(2)
    refused(g, tmp_path, "Sigmoid '/sigmoid.*' is not the last layer; only a trailing "
                         "Sigmoid is supported")


def test_top1_of_a_single_logit_is_its_sign():
    assert top1(np.array([[-0.5], [0.0], [2.0]])).tolist() == [0, 0, 1]
    assert top1(np.array([[0.1, 0.3], [2.0, -1.0]])).tolist() == [1, 0]   # argmax as before


# ----------------------------------------------------------------------------- keeping the layout

@pytest.mark.parametrize("which", ["nhwc", "nwc", "ncw"])
def test_layout_survives_yaml_and_onnx(tmp_path, which):
    if which == "nhwc":
        g = keras_cnn()
    else:
        g = GraphBuilder((12, 3) if which == "nwc" else (3, 12), opset=13)
        if which == "nwc":
            g.c = 3
            g.transpose([0, 2, 1])
        g.conv1d(4, k=3).relu().flatten().gemm(2)
    m = load_onnx(g.save(tmp_path / "m.onnx"))
    x = data(m)
    y = predict(m, x)
    ypath, _ = save_yaml(m, tmp_path / "m.yaml")
    back = load_yaml(ypath)
    assert back.input_layout == m.input_layout == which.upper()
    np.testing.assert_array_equal(predict(back, x), y)
    save_onnx(m, tmp_path / "w.onnx")
    again = load_onnx(tmp_path / "w.onnx")
    assert again.input_layout == m.input_layout and again.input_shape == m.input_shape
    assert max_rel_err(predict(again, x), y) <= TOL
    assert max_rel_err(run_ort(str(tmp_path / "w.onnx"), x), y) <= TOL
    dims = onnx.load(str(tmp_path / "w.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == list(m.data_shape)


def test_bad_layouts_are_one_line_errors(tmp_path):
    conv = Conv2d("c", ("x",), weight=np.ones((2, 3, 1, 1), np.float32))
    with pytest.raises(DynfixError, match="unknown input layout 'NDHWC'"):
        Model("m", "x", (3, 4, 4), [conv], "NDHWC")
    with pytest.raises(DynfixError, match=r"input layout NWC needs a C x 1 x L input shape"):
        Model("m", "x", (3, 4, 4), [conv], "NWC")
    m = Model("m", "x", (3, 1, 4), [conv, ReLU("r", ("c",))], "NWC")
    assert m.data_shape == (4, 3)
    ypath, _ = save_yaml(m, tmp_path / "m.yaml")
    ypath.write_text(ypath.read_text().replace("layout: NWC", "layout: nwc"))
    with pytest.raises(DynfixError, match=r"m.yaml: field 'input.layout': expected one of "):
        load_yaml(ypath)
