"""ONNX import of graphs and edge-CNN patterns, each checked against onnxruntime.

Residual Adds (a tensor feeding several nodes), grouped and depthwise Convs, Clip / ReLU6,
ReduceMean, zero Pads folded into the Conv or AveragePool after them, Transposes folded into
the FC weights or into a constant, and the writer's round trip of all of these. Errors are
one line and name the node and the reason.
"""

import numpy as np
import onnx
import onnx.version_converter
import pytest
from onnx import helper

from dynfix.errors import DynfixError
from dynfix.quant.float_model import predict
from dynfix.quant.ir import Add, Affine, AvgPool2d, Clip, Conv2d, Linear, ReLU
from dynfix.quant.onnx import load_onnx, save_onnx

from onnx_graphs import GraphBuilder, check_vs_ort, max_rel_err, run_ort, torch_export

pytest.importorskip("onnxruntime")
TOL = 1e-5


def refused(g: GraphBuilder, tmp_path, match: str) -> str:
    with pytest.raises(DynfixError, match=match) as e:
        load_onnx(g.save(tmp_path / "bad.onnx"))
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def ops(m) -> list[str]:
    return [layer.op for layer in m.layers]


# ----------------------------------------------------------------------------- DAGs

@pytest.mark.parametrize("opset", [9, 13])
def test_resnet_block(tmp_path, opset):
    """ResNet-8 stacks: identity shortcut, then a strided 1x1 conv shortcut; BN folds into
    the convs whose output only it reads."""
    g = GraphBuilder((3, 8, 8), opset=opset).conv(8).bn().relu()
    skip = g.x
    g.conv(8).bn().relu().conv(8).bn().residual(skip).relu()
    skip = g.x
    g.conv(16, stride=2).bn().relu().conv(16).bn()
    main = g.x
    g.x, g.c = skip, 8
    g.conv(16, k=1, stride=2, pads=[0] * 4)
    g.residual(main).relu().gap().flatten().gemm(10).softmax()
    m = check_vs_ort(g, tmp_path)
    assert ops(m) == ["conv", "relu", "conv", "relu", "conv", "add", "relu", "conv", "relu",
                      "conv", "conv", "add", "relu", "gap", "flatten", "linear", "softmax"]
    adds = [layer for layer in m.layers if isinstance(layer, Add)]
    assert adds[0].inputs == ("/conv7/Conv", "/relu3/Relu")
    assert m.consumers("/relu3/Relu") == [m.layers[2], adds[0]]


def test_bn_after_a_shared_conv_stays_an_affine(tmp_path):
    """The Conv output also feeds the Add: BN cannot fold into it (the Add reads the
    un-normalized values), so it becomes an Affine layer."""
    g = GraphBuilder((2, 6, 6)).conv(4)
    conv = g.x
    g.bn().relu().residual(conv)
    m = check_vs_ort(g, tmp_path)
    assert ops(m) == ["conv", "affine", "relu", "add"]
    assert m.layers[3].inputs == ("/relu3/Relu", "/conv1/Conv")


def test_one_tensor_feeds_many_and_bias_adds_still_fold(tmp_path):
    """x feeds three convs; Add of a per-channel constant stays a bias; Sum of two data
    tensors is an Add; a third branch's Add(x, x)."""
    g = GraphBuilder((3, 5, 5)).relu()
    x = g.x
    a = g.conv(4, bias=False).op("Add", g.init("b", g.weights(4, 1, 1))).x
    g.x, g.c = x, 3
    b = g.conv(4).x
    g.x = a
    g.residual(b, op="Sum").residual(g.x)
    m = check_vs_ort(g, tmp_path)
    assert ops(m) == ["relu", "conv", "conv", "add", "add"]
    assert m.layers[1].bias is not None and m.layers[4].inputs == (m.layers[3].name,) * 2


def test_layer_only_read_by_shape_is_dropped(tmp_path):
    """A branch whose values nothing reads (only its Shape) leaves no layer behind."""
    g = GraphBuilder((2, 4, 4)).conv(3)
    x = g.x
    g.conv(5).relu()
    shape = g.node("Shape", [x])  # shape of the first conv: [N, 3, 4, 4]
    n = g.node("Gather", [shape, g.constant(np.array([0], np.int64))], axis=0)
    g.x = g.node("Reshape", [x, g.node("Concat", [n, g.constant(np.array([-1], np.int64))],
                                       axis=0)])
    m = check_vs_ort(g, tmp_path)
    assert ops(m) == ["conv", "flatten"]


def test_sum_of_three_and_one(tmp_path):
    g = GraphBuilder((2, 4, 4)).relu()
    x = g.x
    y = g.conv(2).x
    g.x = g.node("Sum", [g.x, x, y])
    g.x = g.node("Sum", [g.x])
    m = check_vs_ort(g, tmp_path)
    assert ops(m) == ["relu", "conv", "add", "add"]


def test_graph_errors(tmp_path):
    g = GraphBuilder((2, 5, 5)).conv(2)
    first = g.x
    g.relu()
    g.x = g.node("Mul", [first, g.x])
    assert "/mul3/Mul" in refused(g, tmp_path, "Mul of two data tensors")
    g = GraphBuilder((2, 6, 6)).conv(2)
    first = g.x
    g.maxpool(2, 2).residual(first)
    refused(g, tmp_path, r"/add\d/Add \(Add\): adds data tensors of shapes .*no broadcast")


# ----------------------------------------------------------------------------- convs

@pytest.mark.parametrize("cin,cout,groups", [(4, 4, 4), (4, 8, 4), (6, 4, 2), (3, 6, 3)])
def test_grouped_and_depthwise_conv(tmp_path, cin, cout, groups):
    g = GraphBuilder((cin, 7, 6)).group_conv(cout, 3, groups, stride=2).bn().relu()
    m = check_vs_ort(g, tmp_path)
    assert ops(m) == ["conv", "relu"] and m.layers[0].groups == groups
    assert m.layers[0].weight.shape == (cout, cin // groups, 3, 3)


def test_ds_cnn_block(tmp_path):
    """DS-CNN as tf2onnx writes it: 'same' padding as an explicit asymmetric Pad before
    the first conv, depthwise + pointwise blocks, a global AveragePool, NHWC flatten."""
    g = GraphBuilder((1, 49, 10), opset=13).pad([0, 0, 4, 1, 0, 0, 5, 2])
    g.group_conv(8, (10, 4), 1, stride=2, pads=[0] * 4).bn().relu()
    for _ in range(2):
        g.group_conv(8, 3, 8).bn().relu().group_conv(8, 1, 1, pads=[0] * 4).bn().relu()
    g.avgpool((25, 5), 1).transpose([0, 2, 3, 1]).flatten().gemm(12).softmax()
    m = check_vs_ort(g, tmp_path)
    assert ops(m) == ["conv", "relu"] * 5 + ["avgpool", "flatten", "linear", "softmax"]
    assert m.layers[0].pads == (4, 1, 5, 2) and m.layers[2].groups == 8


@pytest.mark.parametrize("opset", [9, 13, 18])
def test_pad_folds_into_conv(tmp_path, opset):
    g = GraphBuilder((3, 6, 7), opset=opset).relu().pad([0, 0, 1, 2, 0, 0, 3, 0])
    g.conv(4, 3, pads=[1, 0, 0, 1]).relu()
    m = check_vs_ort(g, tmp_path)
    assert ops(m) == ["relu", "conv", "relu"] and m.layers[1].pads == (2, 2, 3, 1)
    if opset >= 18:  # Pad with an axes input
        g = GraphBuilder((3, 6, 7), opset=opset).pad([1, 2, 3, 0], axes=[2, -1]).conv(4)
        m = check_vs_ort(g, tmp_path, name="axes.onnx")
        assert m.layers[0].pads == (2, 3, 4, 1)


@pytest.mark.parametrize("own,cip,ceil", [(None, False, False), (None, False, True),
                                          ([1, 1, 1, 1], True, False),
                                          ([0, 1, 1, 0], True, True)])
def test_pad_folds_into_avgpool(tmp_path, own, cip, ceil):
    g = GraphBuilder((2, 7, 8)).pad([0, 0, 1, 0, 0, 0, 0, 1]).avgpool(3, 2, own, ceil, cip)
    m = check_vs_ort(g, tmp_path)
    assert isinstance(m.layers[0], AvgPool2d) and m.layers[0].count_include_pad


@pytest.mark.parametrize("build,match", [
    (lambda g: g.pad([0, 0, 1, 1, 0, 0, 1, 1]).maxpool(2, 2),
     r"/maxpool\d/MaxPool \(MaxPool\): reads the output of node /pad\d/Pad \(Pad\), "
     r"which dynfix folds only into a Conv"),
    (lambda g: g.pad([0, 0, 1, 1, 0, 0, 1, 1]).relu().conv(2), "reads the output of node /pad"),
    (lambda g: g.pad([0, 0, 1, 1, 0, 0, 1, 1]), "graph output is the output of node /pad"),
    (lambda g: g.pad([0, 0, 1, 1, 0, 0, 1, 1], value=1.0).conv(2), "only a zero Pad of H and W"),
    (lambda g: g.pad([0, 1, 0, 0, 0, 0, 0, 0]).conv(2), "only a zero Pad of H and W"),
    (lambda g: g.pad([0, 0, -1, 0, 0, 0, 0, 0]).conv(2), "only a zero Pad of H and W"),
    (lambda g: g.pad([0, 0, 1, 1, 0, 0, 1, 1], mode="reflect").conv(2), "Pad with mode=reflect"),
    (lambda g: g.pad([0, 0, 1, 1, 0, 0, 1, 1]).avgpool(3, 1, [1, 1, 1, 1]),
     "count_include_pad=0 the Pad's zeros cannot be folded"),
    (lambda g: g.pad([0, 0, 0, 0, 0, 0, 2, 2]).avgpool(2, 4, None, ceil_mode=True),
     "ceil-mode AveragePool it would change the output size"),
])
def test_pad_errors(tmp_path, build, match):
    g = GraphBuilder((2, 7, 7))
    build(g)
    refused(g, tmp_path, match)


# ----------------------------------------------------------------------------- Clip

@pytest.mark.parametrize("opset", [9, 11, 13])
@pytest.mark.parametrize("lo,hi,layer", [(0, 6, Clip), (-1.5, 0.5, Clip), (0, None, ReLU),
                                         (None, 0.25, Clip), (-0.5, None, Clip),
                                         (None, None, None)])
def test_clip(tmp_path, opset, lo, hi, layer):
    g = GraphBuilder((3, 5, 5), opset=opset).conv(4).clip(lo, hi)
    m = check_vs_ort(g, tmp_path)
    if layer is None:
        assert ops(m) == ["conv"]
    else:
        assert type(m.layers[1]) is layer
    if layer is Clip:
        assert (m.layers[1].lo, m.layers[1].hi) == (-np.inf if lo is None else lo,
                                                   np.inf if hi is None else hi)


def test_mobilenet_relu6_block(tmp_path):
    """MobileNetV1 as tf2onnx writes it: Conv + BN + Clip(0, 6), depthwise + pointwise."""
    g = GraphBuilder((3, 12, 12), opset=13).conv(8, stride=2).bn().clip(0, 6)
    g.group_conv(8, 3, 8, stride=2).bn().clip(0, 6).group_conv(16, 1, pads=[0] * 4).bn()
    g.clip(0, 6).op("ReduceMean", axes=[2, 3], keepdims=1)
    g.op("Reshape", g.constant(np.array([-1, 16], np.int64)))
    g.c = 16
    g.gemm(2).softmax()
    m = check_vs_ort(g, tmp_path)
    assert ops(m) == ["conv", "clip", "conv", "clip", "conv", "clip", "gap", "flatten",
                      "linear", "softmax"]
    assert (m.layers[1].lo, m.layers[1].hi) == (0.0, 6.0)


def test_clip_errors(tmp_path):
    g = GraphBuilder((2, 4, 4), opset=13).clip(1.0, -1.0)
    refused(g, tmp_path, r"/clip\d/Clip \(Clip\): clips to \[1.0, -1.0\]")
    g = GraphBuilder((2, 4, 4), opset=13)
    g.op("Clip", g.init("lo", np.zeros(2, np.float32)))
    refused(g, tmp_path, "must be a numeric scalar")


# ----------------------------------------------------------------------------- Transpose

@pytest.mark.parametrize("flat", ["reshape", "flatten", "squeeze_after_gap"])
@pytest.mark.parametrize("fc", ["gemm", "matmul"])
def test_nhwc_flatten_folds_into_fc(tmp_path, flat, fc):
    """Keras exports transpose NCHW -> NHWC before the flatten: the FC weight columns are
    permuted instead (the float model must match onnxruntime)."""
    g = GraphBuilder((3, 6, 5), opset=13).conv(4, stride=2).relu()
    if flat == "squeeze_after_gap":
        g.gap()
    g.transpose([0, 2, 3, 1])
    if flat == "reshape":
        g.op("Reshape", g.constant(np.array([-1, 4 * 3 * 3], np.int64)))
        g.c = 36
    elif flat == "flatten":
        g.flatten()
    else:
        g.op("Squeeze", g.constant(np.array([1, 2], np.int64)))
        g.c = 4
    g.gemm(5) if fc == "gemm" else g.matmul_add(5)
    m = check_vs_ort(g, tmp_path)
    assert ops(m)[-2:] == ["flatten", "linear"] and "transpose" not in ops(m)


def test_transposes_that_cancel_and_relu_in_between(tmp_path):
    g = GraphBuilder((2, 4, 6), opset=13).conv(3).transpose([0, 2, 3, 1]).relu()
    g.transpose([0, 3, 1, 2]).conv(2).transpose([0, 3, 2, 1]).relu().flatten().gemm(4)
    m = check_vs_ort(g, tmp_path)
    assert ops(m) == ["conv", "relu", "conv", "relu", "flatten", "linear"]


def test_transposed_constant_weights(tmp_path):
    """MatMul weights stored as (out, in) behind a Transpose: folded into the constant."""
    g = GraphBuilder((6,), opset=13)
    w = g.node("Transpose", [g.init("w_t", g.weights(4, 6))], perm=[1, 0])
    g.x = g.node("MatMul", [g.x, w])
    g.x = g.node("Add", [g.x, g.init("b", g.weights(4, scale=0.1))])
    m = check_vs_ort(g, tmp_path)
    assert ops(m) == ["linear"] and m.layers[0].bias is not None


@pytest.mark.parametrize("build,match", [
    (lambda g: g.transpose([0, 2, 3, 1]).conv(2),
     r"/conv\d/Conv \(Conv\): reads the output of node /transpose\d/Transpose "
     r"\(Transpose\), which dynfix folds only into a Flatten/Reshape"),
    (lambda g: g.transpose([1, 0, 2, 3]).relu(), "moves the batch axis"),
    (lambda g: g.transpose([0, 2, 3, 1]), "graph output is the output of node /transpose"),
    (lambda g: g.transpose([0, 2, 3, 1]).flatten().relu(), "graph output is the output of"),
    (lambda g: g.transpose([0, 2, 3, 1]).op("Reshape", g.constant(
        np.array([0, 0, -1], np.int64))), r"reshaping .* \(after node /transpose"),
])
def test_transpose_errors(tmp_path, build, match):
    g = GraphBuilder((3, 4, 5), opset=13)
    build(g)
    refused(g, tmp_path, match)


# ----------------------------------------------------------------------------- misc

@pytest.mark.parametrize("opset", [13, 18])
def test_reduce_mean_then_reshape(tmp_path, opset):
    g = GraphBuilder((3, 5, 6), opset=opset).conv(4).relu()
    if opset >= 18:
        g.op("ReduceMean", g.constant(np.array([2, 3], np.int64)), keepdims=1)
    else:
        g.op("ReduceMean", axes=[-2, -1], keepdims=1)
    g.op("Reshape", g.constant(np.array([0, -1], np.int64)))
    g.c = 4
    g.gemm(3)
    m = check_vs_ort(g, tmp_path)
    assert ops(m) == ["conv", "relu", "gap", "flatten", "linear"]


def test_dropout_in_training_mode_is_refused(tmp_path):
    g = GraphBuilder((2, 4, 4), opset=13).relu()
    g.op("Dropout", g.constant(np.array(0.5, np.float32)), g.constant(np.array(True)))
    refused(g, tmp_path, r"/dropout\d/Dropout \(Dropout\): Dropout in training mode")


def test_folding_uses_onnx_semantics_per_opset(tmp_path):
    """Constant arithmetic onnx's evaluator folds: Where/Equal/Expand/Range/Pow/Sqrt."""
    g = GraphBuilder((2, 3, 4), opset=13).conv(3)
    c = lambda v: g.constant(np.array(v))  # noqa: E731
    scale = g.node("Sqrt", [g.node("Pow", [c(np.float32(2.0)), c(np.float32(2.0))])])
    n = g.node("Size", [g.node("Range", [c(3), c(6), c(1)])])  # 3
    scale = g.node("Expand", [scale, g.node("Unsqueeze", [n, c([0])])])  # [2, 2, 2]
    shape3 = g.node("Where", [g.node("Equal", [c([1, 2, 3]), c([1, 0, 3])]), c([3, 1, 1]),
                              c([9, 1, 9])])  # [3, 1, 1]
    g.op("Mul", g.node("Reshape", [scale, shape3]))
    m = check_vs_ort(g, tmp_path)
    assert ops(m) == ["conv"]
    g = GraphBuilder((2, 3, 4), opset=13).conv(3)
    g.op("Mul", g.node("ConstantOfShape", [g.constant(np.array([1 << 20, 1 << 20]))]))
    refused(g, tmp_path, "too large to fold")


# ----------------------------------------------------------------------------- writer

def test_writer_round_trip_dag(tmp_path):
    """Conv groups, Add, Clip (both bounds, one bound), GAP and a DAG survive save/load."""
    g = GraphBuilder((4, 8, 8), opset=13).conv(8).bn().clip(0, 6)
    skip = g.x
    g.group_conv(8, 3, 8).bn().clip(None, 1.5).group_conv(8, 1, 2, pads=[0] * 4)
    g.residual(skip).clip(-1, None).gap().flatten().gemm(5)
    m = load_onnx(g.save(tmp_path / "a.onnx"))
    save_onnx(m, tmp_path / "b.onnx")
    onnx.checker.check_model(str(tmp_path / "b.onnx"))
    m2 = load_onnx(tmp_path / "b.onnx")
    assert [(l.name, l.op, l.inputs, l.out_shape) for l in m.layers] == \
        [(l.name, l.op, l.inputs, l.out_shape) for l in m2.layers]
    assert [(l.lo, l.hi) for l in m2.layers if isinstance(l, Clip)] == \
        [(0.0, 6.0), (-np.inf, 1.5), (-1.0, np.inf)]
    assert [l.groups for l in m2.layers if isinstance(l, Conv2d)] == [1, 8, 2]
    x = np.random.default_rng(2).standard_normal((3, 4, 8, 8)).astype(np.float32)
    assert np.array_equal(predict(m, x), predict(m2, x))
    assert max_rel_err(predict(m2, x), run_ort(str(tmp_path / "b.onnx"), x)) <= TOL
    assert max_rel_err(predict(m2, x), run_ort(str(tmp_path / "a.onnx"), x)) <= TOL
    save_onnx(m2, tmp_path / "c.onnx")  # deterministic bytes
    assert (tmp_path / "b.onnx").read_bytes() == (tmp_path / "c.onnx").read_bytes()


def test_writer_affine_and_linear_in_a_dag(tmp_path):
    """An Affine (BN that could not fold) and a Linear on a shared flat tensor."""
    g = GraphBuilder((6,), opset=13).gemm(8, features=6)
    h = g.x
    g.bn().relu().residual(h).gemm(3)
    m = check_vs_ort(g, tmp_path)
    assert isinstance(m.layers[1], Affine) and isinstance(m.layers[-1], Linear)
    save_onnx(m, tmp_path / "b.onnx")
    x = np.random.default_rng(4).standard_normal((5, 6)).astype(np.float32)
    assert max_rel_err(run_ort(str(tmp_path / "b.onnx"), x), predict(m, x)) <= TOL
    proto = onnx.load(str(tmp_path / "b.onnx"))
    assert [n.op_type for n in proto.graph.node] == ["Gemm", "BatchNormalization", "Relu",
                                                     "Add", "Gemm"]
    assert proto.graph.node[3].input == [m.layers[2].name, m.layers[0].name]


def test_opset_6_is_upgraded_by_onnx(tmp_path):
    """An opset-6 export (BN is_test/spatial, Dropout is_test, Gemm broadcast, symbolic
    batch) is upgraded with onnx's version converter, then imported."""
    g = GraphBuilder((3, 6, 6), opset=6).conv(4, bias=False).bn()
    next(a for a in g.nodes[-1].attribute if a.name == "epsilon").f = 1e-5
    g.nodes[-1].attribute.extend([helper.make_attribute("is_test", 1),
                                  helper.make_attribute("spatial", 1)])
    g.relu().op("Dropout", is_test=1, ratio=0.5).maxpool().op("Flatten", axis=1)
    g.c = 4 * 3 * 3
    g.gemm(5)
    g.nodes[-1].attribute.append(helper.make_attribute("broadcast", 1))
    m = load_onnx(g.save(tmp_path / "old.onnx"))
    # onnxruntime no longer runs opset-6 Add: it runs the file as onnx upgrades it
    model = g.build()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    new = onnx.version_converter.convert_version(model, 13)
    x = np.random.default_rng(0).standard_normal((1, 3, 6, 6)).astype(np.float32)
    assert max_rel_err(predict(m, x), run_ort(new, x)) <= TOL
    assert ops(m) == ["conv", "relu", "maxpool", "flatten", "linear"]
    assert m.layers[0].bias is not None


@pytest.mark.slow
@pytest.mark.parametrize("opset", [11, 17])
def test_torch_export_of_an_edge_cnn(tmp_path, opset):
    """A real torch.onnx.export (TorchScript exporter): residual block, depthwise conv,
    ReLU6 (Clip), F.pad, x.mean((2, 3)) (ReduceMean) and a Linear."""
    torch = pytest.importorskip("torch")
    nn, F = torch.nn, torch.nn.functional
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 0, bias=False), nn.BatchNorm2d(8),
                                      nn.ReLU6())
            self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, groups=8), nn.BatchNorm2d(8),
                                    nn.ReLU(), nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8))
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            x = self.stem(F.pad(x, (0, 1, 0, 1)))      # TF-style 'same' for stride 2
            x = torch.relu(x + self.dw(x))
            return self.fc(x.mean((2, 3)))

    net = Net()
    x = torch.randn(2, 3, 12, 12)
    path = torch_export(net, x, tmp_path / "net.onnx", opset)
    m = load_onnx(path)
    assert ops(m) == ["conv", "clip", "conv", "relu", "conv", "add", "relu", "gap", "flatten",
                      "linear"]
    assert m.layers[0].pads == (0, 0, 1, 1) and m.layers[2].groups == 8
    y = predict(m, x.numpy())
    assert max_rel_err(y, run_ort(path, x.numpy())) <= TOL
    assert max_rel_err(y, net(x).detach().numpy()) <= TOL
