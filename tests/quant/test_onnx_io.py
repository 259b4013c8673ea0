"""ONNX import: the float reference against onnxruntime, folding, and the error messages."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dynfix.errors import DynfixError
from dynfix.quant.datasets import load_digits
from dynfix.quant.float_model import predict
from dynfix.quant.ir import Affine, Conv2d, Flatten, Linear, MaxPool2d, Softmax
from dynfix.quant.load import bundled_path, load_model
from dynfix.quant.onnx import load_onnx, save_onnx

from onnx_graphs import GraphBuilder, check_vs_ort, max_rel_err, run_ort, torch_export

pytest.importorskip("onnxruntime")
TOL = 1e-5


def test_bundled_model_matches_onnxruntime():
    x, _ = load_digits("test")
    path = bundled_path("digits")
    model = load_model("digits")
    assert max_rel_err(predict(model, x), run_ort(str(path), x)) <= TOL
    assert [l.op for l in model.layers] == ["conv", "relu", "conv", "relu", "maxpool",
                                            "flatten", "linear"]


@pytest.mark.parametrize("opset", [9, 11, 13, 17])
def test_pytorch_style_cnn(tmp_path, opset):
    """Conv+BN (folded), asymmetric pads, torch flatten chain, Dropout, MatMul+Add, Gemm."""
    g = GraphBuilder((3, 11, 10), opset=opset)
    g.conv(8, 3, stride=2, pads=[0, 1, 2, 0]).bn().relu()
    g.conv(6, (1, 3), bias=False).bn().relu().maxpool(3, 2, pads=[1, 1, 1, 1])
    g.identity().flatten_torch().dropout().gemm(20).relu().matmul_add(7)
    g.gemm(5, trans_b=False, alpha=0.5, beta=2.0)
    m = check_vs_ort(g, tmp_path)
    ops = [l.op for l in m.layers]
    assert ops == ["conv", "relu", "conv", "relu", "maxpool", "flatten", "linear", "relu",
                   "linear", "linear"]
    assert m.layers[2].bias is not None  # the BN shift became the bias
    assert m.layers[8].bias is not None  # MatMul + Add -> one Linear


@pytest.mark.parametrize("k,stride,pads,dilation,bias", [
    (3, 1, [1, 1, 1, 1], 1, True), (3, 2, [0, 0, 0, 0], 1, False),
    (5, 2, [2, 1, 0, 2], 1, True), ((3, 1), (1, 2), [1, 0, 1, 0], 1, False),
    (3, 1, [2, 2, 2, 2], 2, True), (1, 3, [0, 0, 0, 0], 1, True), (4, 3, [3, 0, 1, 2], 1, True)])
def test_conv_variants(tmp_path, k, stride, pads, dilation, bias):
    g = GraphBuilder((3, 12, 11))
    g.conv(5, k, stride=stride, pads=pads, bias=bias, dilation=dilation)
    m = check_vs_ort(g, tmp_path)
    assert isinstance(m.layers[0], Conv2d) and (m.layers[0].bias is None) == (not bias)


@pytest.mark.parametrize("auto_pad", ["VALID", "SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv_auto_pad(tmp_path, auto_pad, stride):
    g = GraphBuilder((2, 9, 8))
    g.conv(4, (4, 3), stride=stride, auto_pad=auto_pad)
    check_vs_ort(g, tmp_path)


POOLS = [
    # kind, kernel, stride, pads, ceil_mode, count_include_pad
    ("max", 2, 2, None, False, False), ("max", 3, 2, [1, 1, 1, 1], False, False),
    ("max", 3, 2, [0, 1, 1, 0], True, False), ("max", 2, 3, None, True, False),
    ("avg", 2, 2, None, False, False), ("avg", 3, 1, [1, 1, 1, 1], False, True),
    ("avg", 3, 1, [1, 1, 1, 1], False, False), ("avg", 3, 2, [1, 0, 0, 1], True, True),
    ("avg", 3, 2, [0, 1, 1, 0], True, False), ("avg", 2, 3, None, True, False),
    ("max", (3, 2), (1, 2), [1, 0, 2, 1], True, False),
]


@pytest.mark.parametrize("kind,k,s,pads,ceil,cip", POOLS)
@pytest.mark.parametrize("hw", [(7, 7), (8, 9)])
def test_pool_variants(tmp_path, kind, k, s, pads, ceil, cip, hw):
    g = GraphBuilder((2,) + hw)
    if kind == "max":
        g.maxpool(k, s, pads, ceil)
    else:
        g.avgpool(k, s, pads, ceil, cip)
    check_vs_ort(g, tmp_path)


def test_ceil_mode_drops_window_starting_in_padding(tmp_path):
    """5 wide, k=3, s=3, pads 1/1, ceil: a third window would start in the end padding."""
    g = GraphBuilder((1, 5, 5)).maxpool(3, 3, [1, 1, 1, 1], ceil_mode=True)
    m = check_vs_ort(g, tmp_path)
    assert m.output_shape == (1, 2, 2)


def test_gap_gmp_squeeze_softmax(tmp_path):
    g = GraphBuilder((3, 6, 6)).conv(8).relu().gap()
    g.op("Squeeze", g.constant(np.array([2, 3], np.int64))).gemm(4).softmax()
    m = check_vs_ort(g, tmp_path)
    assert isinstance(m.layers[-1], Softmax)
    g2 = GraphBuilder((3, 6, 5)).conv(4).op("GlobalMaxPool").flatten().gemm(3, bias=False)
    m2 = check_vs_ort(g2, tmp_path, name="g2.onnx")
    assert isinstance(m2.layers[1], MaxPool2d) and m2.layers[1].kernel == (6, 5)


def test_standalone_bn_and_input_normalization(tmp_path):
    """Per-channel Sub/Div at the input -> the host's input normalization (one scale and
    shift per channel); BN after ReLU -> Affine; Mul after conv folds into it."""
    g = GraphBuilder((3, 6, 6))
    g.op("Sub", g.constant(np.array([0.5, 0.4, 0.3], np.float32).reshape(1, 3, 1, 1)))
    g.op("Div", g.constant(np.array([0.2, 0.25, 0.3], np.float32).reshape(3, 1, 1)))
    g.conv(4).op("Mul", g.constant(np.array([1.5, -2, 0.5, 3], np.float32).reshape(4, 1, 1)))
    g.relu().bn().flatten().bn().gemm(3)
    m = check_vs_ort(g, tmp_path)
    assert [l.op for l in m.layers] == ["conv", "relu", "affine", "flatten", "affine",
                                        "linear"]
    assert m.layers[0].inputs == (m.input_name,)
    scale, shift = m.input_affine
    np.testing.assert_allclose(scale, [5, 4, 1 / 0.3], rtol=1e-6)
    np.testing.assert_allclose(shift, [-2.5, -1.6, -1], rtol=1e-6)


def test_folded_shape_arithmetic(tmp_path):
    """Reshape target built from Shape/Gather/Slice/Mul/Div/Cast/ConstantOfShape/Squeeze."""
    g = GraphBuilder((4, 5, 3), opset=13).conv(6).relu()
    shape = g.node("Shape", [g.x])
    i64 = lambda v: g.constant(np.array(v, np.int64))  # noqa: E731
    c = g.node("Gather", [shape, i64(1)], axis=0)
    hw = g.node("Mul", [g.node("Gather", [shape, i64(2)], axis=0),
                        g.node("Gather", [shape, i64(3)], axis=0)])
    f = g.node("Div", [g.node("Mul", [g.node("Mul", [c, hw]), i64(3)]), i64(3)])
    f = g.node("Cast", [g.node("Cast", [f], to=TensorProto.FLOAT)], to=TensorProto.INT64)
    n = g.node("Slice", [shape, i64([0]), i64([1]), i64([0]), i64([1])])
    n = g.node("Squeeze", [g.node("Unsqueeze", [n, i64([1])]), i64([1])])
    one = g.node("ConstantOfShape", [i64([1])],
                 value=numpy_helper.from_array(np.array([1], np.int64)))
    f = g.node("Mul", [g.node("Unsqueeze", [f, i64([0])]), one])
    target = g.node("Concat", [n, f], axis=0)
    g.x = g.node("Reshape", [g.x, target])
    g.c = 6 * 5 * 3
    g.gemm(2)
    m = check_vs_ort(g, tmp_path)
    assert isinstance(m.layers[2], Flatten) and isinstance(m.layers[3], Linear)


def test_static_batch_and_constant_reshape(tmp_path):
    """torch export with a fixed batch of 1 folds the flatten into Reshape(x, [1, -1])."""
    g = GraphBuilder((2, 4, 4), batch=1).conv(3)
    g.op("Reshape", g.init("shape", np.array([1, -1], np.int64)))
    g.c = 48
    g.gemm(5)
    path = g.save(tmp_path / "m.onnx")
    m = load_onnx(path)
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    assert max_rel_err(predict(m, x), run_ort(path, x)) <= TOL
    assert predict(m, np.repeat(x, 3, axis=0)).shape == (3, 5)  # the IR is batch-generic


def test_save_onnx_round_trip(tmp_path):
    g = GraphBuilder((3, 9, 9)).conv(4, stride=2).relu().bn()
    g.avgpool(2, 1, [0, 1, 1, 0], ceil_mode=True, count_include_pad=True)
    g.flatten().gemm(6, bias=False).softmax()
    m = load_onnx(g.save(tmp_path / "a.onnx"))
    save_onnx(m, tmp_path / "b.onnx")
    m2 = load_onnx(tmp_path / "b.onnx")
    assert [(l.name, l.op, l.out_shape) for l in m.layers] == \
        [(l.name, l.op, l.out_shape) for l in m2.layers]
    x = np.random.default_rng(2).standard_normal((4, 3, 9, 9)).astype(np.float32)
    assert np.array_equal(predict(m, x), predict(m2, x))
    assert max_rel_err(predict(m2, x), run_ort(str(tmp_path / "b.onnx"), x)) <= TOL
    assert isinstance(m2.layers[2], Affine)
    save_onnx(m, tmp_path / "c.onnx")  # deterministic bytes
    assert (tmp_path / "b.onnx").read_bytes() == (tmp_path / "c.onnx").read_bytes()


def test_external_data(tmp_path):
    g = GraphBuilder((3, 8, 8)).conv(16).relu().flatten().gemm(10)
    onnx.save_model(g.build(), str(tmp_path / "ext.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="ext.bin", size_threshold=0)
    m = load_onnx(tmp_path / "ext.onnx")
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert max_rel_err(predict(m, x), run_ort(str(tmp_path / "ext.onnx"), x)) <= TOL
    data = (tmp_path / "ext.bin").read_bytes()
    (tmp_path / "ext.bin").write_bytes(data[:len(data) // 2])
    with pytest.raises(DynfixError, match="truncated"):
        load_onnx(tmp_path / "ext.onnx")


# ----------------------------------------------------------------------------- errors

def test_unsupported_ops_are_all_listed(tmp_path):
    g = GraphBuilder((3, 16, 16)).conv(8).relu()
    g.op("LRN", size=5)
    g.op("Pad", g.constant(np.zeros(8, np.int64)), mode="reflect")  # was group=2 Conv
    g.conv(8)
    g.op("Elu").op("LRN", size=3).op("Flatten", axis=1)
    # Other problems that later checks would report: the operator check comes first.
    g.inits[0].CopyFrom(numpy_helper.from_array(np.full((8, 3, 3, 3), np.nan, np.float32),
                                                g.inits[0].name))
    model = g.build()
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                ["N", 3, "H", "W"]))
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(DynfixError) as e:
        load_onnx(tmp_path / "m.onnx")
    msg = str(e.value)
    assert "\n" not in msg and "4 unsupported nodes" in msg
    for name in ("/lrn3/LRN (LRN)", "/pad5/Pad (Pad with mode=reflect)",
                 "/elu7/Elu (Elu)", "/lrn8/LRN (LRN)"):
        assert name in msg


@pytest.mark.parametrize("content,match", [
    (b"", "no nodes"), (b"\x08\x07\x12\x05junk\xff\xff\xff", "not a valid ONNX file"),
    (b"hello world, not protobuf at all" * 3, "not a valid ONNX file")])
def test_corrupt_files(tmp_path, content, match):
    (tmp_path / "bad.onnx").write_bytes(content)
    with pytest.raises(DynfixError, match=match):
        load_onnx(tmp_path / "bad.onnx")


def test_missing_file(tmp_path):
    with pytest.raises(DynfixError, match="does not exist"):
        load_onnx(tmp_path / "nope.onnx")


def test_truncated_file(tmp_path):
    data = bundled_path("digits").read_bytes()
    (tmp_path / "t.onnx").write_bytes(data[:len(data) - 700])
    with pytest.raises(DynfixError):
        load_onnx(tmp_path / "t.onnx")


@pytest.mark.parametrize("shape,match", [(["N", 3, "H", 8], "static"), (["N"], "static"),
                                         ([1, 3, 0, 8], "static")])
def test_non_static_input(tmp_path, shape, match):
    g = GraphBuilder((3, 8, 8)).conv(2)
    model = g.build()
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                shape))
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(DynfixError, match=match):
        load_onnx(tmp_path / "m.onnx")


def test_wrong_input_shape_for_layers(tmp_path):
    g = GraphBuilder((3, 8, 8)).conv(2)
    model = g.build()
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                ["N", 4, 8, 8]))
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(DynfixError, match="input channels"):
        load_onnx(tmp_path / "m.onnx")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights(tmp_path, bad):
    g = GraphBuilder((1, 6, 6)).conv(2).relu().flatten().gemm(3)
    w = numpy_helper.to_array(g.inits[0]).copy()
    w[1, 0, 1, 1] = bad
    g.inits[0].CopyFrom(numpy_helper.from_array(w, g.inits[0].name))
    with pytest.raises(DynfixError, match="NaN/Inf"):
        load_onnx(g.save(tmp_path / "m.onnx"))


def test_bn_with_nan_is_rejected(tmp_path):
    g = GraphBuilder((2, 5, 5)).conv(3).bn()
    var = g.inits[-1]
    g.inits[-1].CopyFrom(numpy_helper.from_array(np.array([1, np.nan, 1], np.float32),
                                                 var.name))
    with pytest.raises(DynfixError, match="NaN/Inf"):
        load_onnx(g.save(tmp_path / "m.onnx"))


def test_residual_add_loads(tmp_path):
    """Was refused while the IR was a chain; now an Add layer (tests/quant/test_onnx_graph.py)."""
    g = GraphBuilder((2, 5, 5)).conv(2)
    skip = g.x
    g.relu().conv(2)
    g.x = g.node("Add", [g.x, skip])
    m = check_vs_ort(g, tmp_path)
    assert m.layers[-1].op == "add" and m.layers[-1].inputs == (m.layers[2].name,
                                                                  m.layers[0].name)


def test_branch_is_rejected(tmp_path):
    g = GraphBuilder((2, 5, 5)).conv(2)
    first = g.x
    g.relu()
    g.x = g.node("Mul", [first, g.x])
    with pytest.raises(DynfixError, match="residual|branch"):
        load_onnx(g.save(tmp_path / "m.onnx"))


def test_old_opset_and_two_outputs(tmp_path):
    """Opset < 7 is upgraded by onnx's version converter; a failed upgrade says so."""
    g = GraphBuilder((2, 5, 5), opset=6).relu()
    assert [l.op for l in load_onnx(g.save(tmp_path / "old.onnx")).layers] == ["relu"]
    g = GraphBuilder((2, 5, 5), opset=6).relu().op("Dropout", is_test=0)
    with pytest.raises(DynfixError, match="opset 6 .*version converter could not") as e:
        load_onnx(g.save(tmp_path / "old.onnx"))
    assert "\n" not in str(e.value) and ".h:" not in str(e.value)
    g = GraphBuilder((2, 5, 5)).relu()
    model = g.build()
    model.graph.output.append(helper.make_tensor_value_info("input", TensorProto.FLOAT, None))
    onnx.save(model, str(tmp_path / "two.onnx"))
    with pytest.raises(DynfixError, match="2 outputs"):
        load_onnx(tmp_path / "two.onnx")


def test_softmax_must_be_last(tmp_path):
    g = GraphBuilder((6,)).softmax().gemm(3, features=6)
    with pytest.raises(DynfixError, match="Softmax"):
        load_onnx(g.save(tmp_path / "m.onnx"))


def test_unsupported_reshape(tmp_path):
    g = GraphBuilder((2, 4, 4)).conv(2)
    g.op("Reshape", g.init("shape", np.array([0, 4, 8], np.int64)))
    with pytest.raises(DynfixError, match="only flattening"):
        load_onnx(g.save(tmp_path / "m.onnx"))


@pytest.mark.parametrize("opset,keepdims", [(13, 1), (13, 0), (18, 0)])
def test_reduce_mean_over_hw(tmp_path, opset, keepdims):
    """torch's dynamo exporter writes adaptive_avg_pool2d(x, 1) as ReduceMean."""
    g = GraphBuilder((3, 5, 6), opset=opset).conv(4).relu()
    if opset >= 18:
        g.op("ReduceMean", g.constant(np.array([-1, -2], np.int64)), keepdims=keepdims)
    else:
        g.op("ReduceMean", axes=[2, 3], keepdims=keepdims)
    m = check_vs_ort(g, tmp_path)
    assert [l.op for l in m.layers][2:] == ["gap"] + ["flatten"] * (1 - keepdims)
    bad = GraphBuilder((3, 5, 6), opset=13).op("ReduceMean", axes=[1], keepdims=1)
    with pytest.raises(DynfixError, match="mean over H and W"):
        load_onnx(bad.save(tmp_path / "bad.onnx"))


@pytest.mark.slow
def test_torch_export(tmp_path):
    """A real torch.onnx.export (TorchScript exporter, dynamic batch) of a BN-heavy CNN."""
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.f = nn.Sequential(
                nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU(),
                nn.MaxPool2d(2, ceil_mode=True), nn.Conv2d(8, 12, 3, 2, 0, bias=False),
                nn.BatchNorm2d(12), nn.ReLU(), nn.AvgPool2d(3, 1, 1, count_include_pad=False),
                nn.Dropout(0.3))
            self.fc1, self.bn, self.fc2 = nn.Linear(108, 32), nn.BatchNorm1d(32), nn.Linear(32, 10)

        def forward(self, x):
            x = self.f(x)
            x = x.view(x.size(0), -1)
            return torch.softmax(self.fc2(torch.relu(self.bn(self.fc1(x)))), dim=1)

    net = Net()
    x = torch.randn(2, 3, 15, 15)
    path = torch_export(net, x, tmp_path / "net.onnx")
    m = load_onnx(path)
    assert [l.op for l in m.layers] == ["conv", "relu", "maxpool", "conv", "relu", "avgpool",
                                        "flatten", "linear", "relu", "linear", "softmax"]
    y = predict(m, x.numpy())
    assert max_rel_err(y, run_ort(path, x.numpy())) <= TOL
    assert max_rel_err(y, net(x).detach().numpy()) <= TOL



def test_model_zoo_mnist_style(tmp_path):
    """Like the ONNX model zoo's mnist-8: opset 8, bias-free Conv + Add of a (C,1,1)
    constant, auto_pad SAME_UPPER, a weight Reshape folded at load, MatMul + Add."""
    g = GraphBuilder((1, 12, 12), opset=8, batch=1)
    for cout in (4, 8):
        g.conv(cout, 5, bias=False, auto_pad="SAME_UPPER")
        g.op("Add", g.init(f"b{cout}", g.weights(cout, 1, 1, scale=0.1)))
        g.relu().maxpool(2, 2)
    g.op("Reshape", g.init("flat", np.array([1, 72], np.int64)))
    w = g.node("Reshape", [g.init("w_flat", g.weights(72 * 10)),
                           g.init("w_shape", np.array([72, 10], np.int64))])
    g.x = g.node("MatMul", [g.x, w])
    g.op("Add", g.init("fc_b", g.weights(1, 10, scale=0.1)))
    m = check_vs_ort(g, tmp_path, n=1)
    assert [l.op for l in m.layers] == ["conv", "relu", "maxpool", "conv", "relu", "maxpool",
                                        "flatten", "linear"]
    assert m.layers[0].bias is not None and m.layers[-1].bias is not None


def test_mlp_on_flat_input(tmp_path):
    g = GraphBuilder((20,)).gemm(16, features=20).relu().gemm(3, trans_b=False)
    m = check_vs_ort(g, tmp_path, n=5)
    assert m.input_shape == (20,) and m.output_shape == (3,)
