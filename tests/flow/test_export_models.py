"""Models as PyTorch and Keras (tf2onnx) export them (tests/fixtures/exporters), through the
API and the commands with data in the model's own layout: bit-exact on the engine under
Icarus, ``info`` naming the layout, ``infer`` / ``evaluate`` / ``quantize --calib`` /
``flow --data`` taking N x H x W x C data, and a trailing Sigmoid read as a binary
classifier. onnxruntime gives the reference outputs and labels."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

import dynfix
from dynfix.cli import main
from onnx_graphs import max_rel_err, run_ort

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "exporters"


def fixture(name: str) -> str:
    return str(FIXTURES / f"{name}.onnx")


def cli(*args: str) -> tuple[int, str, str]:
    """``dynfix ARGS`` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def labelled(name: str, n: int, path: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random inputs in the model's layout and onnxruntime's classes for them (argmax, or
    sigmoid > 0.5 for a single output), saved as ``path`` (arrays x, y)."""
    shape = dynfix.load_model(fixture(name)).data_shape
    x = np.random.default_rng(seed).standard_normal((n,) + shape).astype(np.float32)
    ref = run_ort(fixture(name), x)
    y = (ref[:, 0] > 0.5).astype(np.int64) if ref.shape[1] == 1 else ref.argmax(axis=1)
    np.savez(path, x=x, y=y)
    return x, y


def saved(tmp_path: Path, x: np.ndarray) -> Path:
    """``x`` as ``tmp_path/x.npy``."""
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "x.npy"


@pytest.mark.usefixtures("icarus")
@pytest.mark.parametrize("name", ["torch_mlp_bn", "keras_cnn_nhwc", "keras_mlp_bn",
                                  "torch_conv1d", "keras_conv1d_nwc"])
def test_exported_model_is_bit_exact_on_the_engine(name, tmp_path):
    """Quantize on data in the model's layout, generate, simulate from the generate folder
    (its model.yaml keeps the layout): the engine's outputs are the integer model's."""
    m = dynfix.load_model(fixture(name))
    x = np.random.default_rng(1).standard_normal((48,) + m.data_shape).astype(np.float32)
    q = dynfix.quantize(m, calib=x, bits="8")
    dynfix.generate(q, tmp_path / "gen", config={"tn": 4, "tm": 1})
    s = dynfix.simulate(tmp_path / "gen", data=x, images=3)
    assert s.mismatches == 0
    np.testing.assert_array_equal(s.outputs, q.logits(x[:3]))


@pytest.mark.usefixtures("icarus")
@pytest.mark.parametrize("name", ["torch_mlp_bn_input", "torch_cnn_bn_input"])
def test_batchnorm_of_the_input_on_the_host_and_the_rest_on_the_engine(name, tmp_path):
    """A BatchNorm of the input: the host normalizes the data before quantizing it, the
    engine starts at the layer after it (bit-exact, from the generate folder's model.yaml,
    which keeps the normalization), and the quantized outputs follow onnxruntime's on data
    far from the normalized range."""
    m = dynfix.load_model(fixture(name))
    rng = np.random.default_rng(3)
    x = (3 * rng.standard_normal((48,) + m.data_shape) + 2).astype(np.float32)
    q = dynfix.quantize(m, calib=x, bits="8")
    dynfix.generate(q, tmp_path / "gen", config={"tn": 4, "tm": 1})
    s = dynfix.simulate(tmp_path / "gen", data=x, images=3)
    assert s.mismatches == 0
    np.testing.assert_array_equal(s.outputs, q.logits(x[:3]))
    ref = run_ort(fixture(name), x)
    assert max_rel_err(dynfix.infer(fixture(name), x, q), ref) < 0.05
    code, _, err = cli("infer", fixture(name), "-i", saved(tmp_path, x),
                       "-o", tmp_path / "y.npy")
    assert code == 0, err
    assert max_rel_err(np.load(tmp_path / "y.npy"), ref) <= 1e-5


def test_info_says_the_input_is_normalized_on_the_host():
    """The first line says so; ``--json`` gives BatchNorm1d's per-channel scale and shift
    (from the file's own initializers)."""
    import onnx
    from onnx import numpy_helper
    code, out, _ = cli("info", fixture("torch_mlp_bn_input"))
    assert code == 0
    assert out.splitlines()[0].startswith("model torch_mlp_bn_input: input 12, normalized on "
                                          "the host (per-channel scale and shift, 12 "
                                          "channels), 3 layers")
    graph = onnx.load(fixture("torch_mlp_bn_input")).graph
    bn = next(n for n in graph.node if n.op_type == "BatchNormalization")
    inits = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}
    gamma, beta, mean, var = (inits[t] for t in bn.input[1:5])
    eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
    scale = gamma / np.sqrt(var + eps)
    code, out, _ = cli("info", fixture("torch_mlp_bn_input"), "--json")
    summary = json.loads(out)
    np.testing.assert_allclose(summary["input_affine"]["scale"], scale, rtol=1e-6)
    np.testing.assert_allclose(summary["input_affine"]["shift"], beta - mean * scale,
                               rtol=1e-5, atol=1e-6)
    assert [r["op"] for r in summary["layers"]] == ["linear", "relu", "linear"]
    code, out, _ = cli("info", fixture("torch_mlp_bn"), "--json")
    assert json.loads(out)["input_affine"] is None


def test_info_names_the_layout():
    code, out, _ = cli("info", fixture("keras_cnn_nhwc"))
    assert code == 0
    assert "input 8x8x3 (NHWC; the layers take 3x8x8, channels first)" in out.splitlines()[0]
    code, out, _ = cli("info", fixture("torch_conv1d"), "--json")
    summary = json.loads(out)
    assert summary["input_layout"] == "NCW" and summary["data_shape"] == [2, 32]
    assert summary["input_shape"] == [2, 1, 32]


def test_infer_takes_nhwc_data(tmp_path):
    x = np.random.default_rng(2).standard_normal((5, 8, 8, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, _, err = cli("infer", fixture("keras_cnn_nhwc"), "-i", tmp_path / "x.npy",
                       "-o", tmp_path / "y.npy")
    assert code == 0, err
    assert max_rel_err(np.load(tmp_path / "y.npy"), run_ort(fixture("keras_cnn_nhwc"), x)) \
        <= 1e-5
    code, _, err = cli("infer", fixture("keras_cnn_nhwc"), "-i", tmp_path / "x.npy",
                       "-o", tmp_path / "y.npy", "--quant", tmp_path / "none.yaml")
    assert code == 1 and err.count("\n") == 1


def test_binary_classifier_through_quantize_and_evaluate(tmp_path):
    """A trailing Sigmoid: evaluate reads class 1 where the sigmoid is above 0.5; the
    float model agrees with onnxruntime's classes on every input, both classes occur."""
    x, y = labelled("keras_mlp_bn", 200, tmp_path / "d.npz")
    assert 0.2 < y.mean() < 0.8
    code, out, err = cli("evaluate", fixture("keras_mlp_bn"), "--data", tmp_path / "d.npz",
                         "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["output"] == "classes" and r["accuracy"] == 1.0
    code, _, err = cli("quantize", fixture("keras_mlp_bn"), "--calib", tmp_path / "d.npz",
                       "-o", tmp_path / "q.yaml")
    assert code == 0, err
    code, out, err = cli("evaluate", fixture("keras_mlp_bn"), "--data", tmp_path / "d.npz",
                         "--quant", tmp_path / "q.yaml", "--json")
    r = json.loads(out)
    assert code == 0 and r["accuracy"] >= 0.9 and r["agreement"] >= 0.9


def test_nhwc_data_in_the_wrong_layout_is_one_line(tmp_path):
    x, y = labelled("keras_cnn_nhwc", 8, tmp_path / "d.npz")
    np.savez(tmp_path / "nchw.npz", x=x.transpose(0, 3, 1, 2), y=y)
    code, _, err = cli("evaluate", fixture("keras_cnn_nhwc"), "--data",
                       tmp_path / "nchw.npz")
    assert code == 1 and err.count("\n") == 1
    assert "takes N x 8 x 8 x 3 (NHWC)" in err
    code, _, err = cli("quantize", fixture("keras_cnn_nhwc"), "--calib", "digits", "-o",
                       tmp_path / "q.yaml")
    assert code == 1 and "takes 8x8x3 (NHWC) inputs but the digits images are 1x8x8" in err


@pytest.mark.usefixtures("icarus")
def test_flow_with_nhwc_data(tmp_path):
    _, y = labelled("keras_cnn_nhwc", 64, tmp_path / "d.npz")
    code, out, err = cli("flow", fixture("keras_cnn_nhwc"), "--data", tmp_path / "d.npz",
                         "--images", "2", "--output", tmp_path / "out", "--json")
    assert code == 0, err
    rep = json.loads(out)
    assert rep["simulation"]["mismatches"] == 0
    assert rep["accuracy"]["float"] == 1.0               # onnxruntime's classes, exactly


def test_flow_refuses_an_overlapping_1d_pool_up_front(tmp_path):
    """The engine's max pool takes windows of stride = kernel: an overlapping MaxPool1d
    (1 x 3, stride 1 x 2 on the engine) loads, quantizes and evaluates, but the flow
    refuses it before any work, naming the layer."""
    from onnx_graphs import GraphBuilder
    g = GraphBuilder((2, 16), opset=13).conv1d(4).relu()
    g.op("MaxPool", kernel_shape=[3], strides=[2])
    path = g.flatten().gemm(2).save(tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((16, 2, 16)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=run_ort(path, x).argmax(axis=1))
    code, _, err = cli("flow", path, "--data", tmp_path / "d.npz", "--output",
                       tmp_path / "out")
    assert code == 1 and err.count("\n") == 1
    assert "cannot run on the engine" in err and "kernel (1, 3) stride (1, 2)" in err
    assert not (tmp_path / "out").exists()


def test_1d_map_output_in_the_datas_rank(tmp_path):
    """A 1-D model's map output is N x C x L from the float and the integer model alike
    (onnxruntime's shape), though the layers compute C x 1 x L."""
    from onnx_graphs import GraphBuilder
    path = GraphBuilder((3, 10), opset=13).conv1d(4, k=3).relu().save(tmp_path / "m.onnx")
    x = np.random.default_rng(4).standard_normal((6, 3, 10)).astype(np.float32)
    q = dynfix.quantize(path, calib=x)
    ref = run_ort(path, x)
    assert dynfix.infer(path, x).shape == ref.shape == (6, 4, 10)
    y = dynfix.infer(path, x, q)
    assert y.shape == ref.shape and max_rel_err(y, ref) < 0.05
    assert dynfix.infer(path, x, q, raw=True).shape == ref.shape
