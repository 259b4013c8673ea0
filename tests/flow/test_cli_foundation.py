"""The foundation commands (info, infer, evaluate) run as a user runs them: a subprocess."""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from dynfix.quant.datasets import load_digits
from dynfix.quant.float_model import predict
from dynfix.quant.load import load_model

from onnx_graphs import GraphBuilder

VENV_DYNFIX = Path(sys.executable).with_name("dynfix")
CMD = [str(VENV_DYNFIX)] if VENV_DYNFIX.exists() else [sys.executable, "-m", "dynfix.cli"]


def dynfix(*args, ok=True, timeout=120) -> subprocess.CompletedProcess:
    r = subprocess.run(CMD + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    if ok:
        assert r.returncode == 0, r.stderr
    else:
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dynfix: error: "), r.stderr
    return r


def test_help_everywhere():
    for cmd in ([], ["info"], ["infer"], ["evaluate"]):
        r = dynfix(*cmd, "--help")
        assert "usage: dynfix" in r.stdout


def test_info_digits():
    r = dynfix("info", "digits", "--json")
    s = json.loads(r.stdout)
    # Independent count: conv1 1->8 and conv2 8->16 on 8x8 (3x3, pad 1), fc 256->10.
    assert s["total_macs"] == 8 * 64 * 9 + 16 * 64 * 8 * 9 + 256 * 10
    assert s["total_params"] == (8 * 9 + 8) + (16 * 72 + 16) + (2560 + 10)
    assert [l["op"] for l in s["layers"]][:2] == ["conv", "relu"]
    assert s["layers"][-1]["output_shape"] == [10]
    table = dynfix("info", "digits").stdout
    assert "conv2" in table and "80,896" in table and "total" in table


def test_a_closed_pipe_ends_quietly():
    """``dynfix info digits | head``: the reader is gone before dynfix writes (its end of
    the pipe is closed at once), so every write fails; dynfix stops with 141 (128 +
    SIGPIPE) and no traceback, as Unix tools do."""
    p = subprocess.Popen(CMD + ["info", "digits"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    p.stdout.close()
    err = p.stderr.read()
    p.stderr.close()
    assert p.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "Error" not in err


def test_evaluate_digits_accuracy():
    r = dynfix("evaluate", "digits", "--json")
    res = json.loads(r.stdout)
    assert res["n"] == 360 and res["accuracy"] >= 0.97
    x, y = load_digits("test")  # the same number from the library
    acc = float(np.mean(predict(load_model("digits"), x).argmax(1) == y))
    assert abs(acc - res["accuracy"]) < 1e-12


def test_evaluate_npz_and_yaml(tmp_path):
    x, y = load_digits("calib")
    np.savez(tmp_path / "d.npz", x=x[:50], y=y[:50])
    yaml_model = Path(__file__).resolve().parents[2] / "dynfix" / "data" / "digits.yaml"
    res = json.loads(dynfix("evaluate", yaml_model, "--data", tmp_path / "d.npz",
                            "--json").stdout)
    assert res["n"] == 50 and 0.9 <= res["accuracy"] <= 1.0
    np.savez(tmp_path / "nolabels.npz", x=x[:5])
    r = dynfix("evaluate", "digits", "--data", tmp_path / "nolabels.npz", ok=False)
    assert "labels" in r.stderr


def test_infer_writes_outputs_atomically(tmp_path):
    x, _ = load_digits("test")
    np.save(tmp_path / "x.npy", x[:7])
    out = tmp_path / "y.npy"
    dynfix("infer", "digits", "--input", tmp_path / "x.npy", "--output", out)
    y = np.load(out)
    assert y.shape == (7, 10) and y.dtype == np.float32
    np.testing.assert_array_equal(y, predict(load_model("digits"), x[:7]))
    # A failing run (wrong input shape) leaves the old output untouched and no temp files.
    np.save(tmp_path / "bad.npy", np.zeros((2, 1, 9, 9), np.float32))
    r = dynfix("infer", "digits", "-i", tmp_path / "bad.npy", "-o", out, ok=False)
    assert "shape" in r.stderr
    np.testing.assert_array_equal(np.load(out), y)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npy", "x.npy", "y.npy"]
    r = dynfix("infer", "digits", "-i", tmp_path / "x.npy", "-o",
               tmp_path / "no" / "dir" / "y.npy", ok=False)
    assert "does not exist" in r.stderr


@pytest.mark.parametrize("args,match", [
    (["info", "missing.onnx"], "does not exist"),
    (["info", "model.pt"], "not found"),
    (["evaluate", "digits", "--data", "nothere.npz"], "neither 'digits'"),
])
def test_user_errors_are_one_line(args, match):
    assert match in dynfix(*args, ok=False).stderr


def test_corrupt_model_file(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"\x00\x01garbage" * 50)
    assert "bad.onnx" in dynfix("info", tmp_path / "bad.onnx", ok=False).stderr
    (tmp_path / "bad.yaml").write_text("format: [\n")
    assert "bad.yaml" in dynfix("info", tmp_path / "bad.yaml", ok=False).stderr


# ----------------------------------------------------------------------------- ImageNet-size

VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
         512, 512, 512, "M"]


def vgg16_reference() -> tuple[int, int]:
    """VGG16 at 224x224: (MACs, params), counted here from the architecture alone."""
    macs = params = 0
    c, hw = 3, 224
    for v in VGG16:
        if v == "M":
            hw //= 2
            continue
        macs += v * hw * hw * c * 9
        params += v * c * 9 + v
        c = v
    for fin, fout in ((512 * 7 * 7, 4096), (4096, 4096), (4096, 1000)):
        macs += fin * fout
        params += fin * fout + fout
    return macs, params


def external_zeros(name: str, shape: tuple[int, ...], offset: int) -> onnx.TensorProto:
    t = onnx.TensorProto(name=name, data_type=TensorProto.FLOAT, dims=shape)
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "weights.bin"), ("offset", str(offset)),
                 ("length", str(4 * int(np.prod(shape))))):
        t.external_data.add(key=k, value=v)
    return t


def write_vgg16(folder: Path) -> Path:
    """VGG16 as torchvision exports it, weights as zeros in a sparse external-data file."""
    nodes, inits, offset = [], [], 0
    x, c, k = "input", 3, 0

    def param(name, shape):
        nonlocal offset
        inits.append(external_zeros(name, shape, offset))
        offset += -(-4 * int(np.prod(shape)) // 4096) * 4096
        return name

    for v in VGG16:
        k += 1
        if v == "M":
            nodes.append(helper.make_node("MaxPool", [x], [f"p{k}"], f"/features/{k}/MaxPool",
                                          kernel_shape=[2, 2], strides=[2, 2]))
            x = f"p{k}"
            continue
        nodes.append(helper.make_node(
            "Conv", [x, param(f"features.{k}.weight", (v, c, 3, 3)),
                     param(f"features.{k}.bias", (v,))], [f"c{k}"], f"/features/{k}/Conv",
            kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{k}"], [f"r{k}"], f"/features/{k}/Relu"))
        x, c = f"r{k}", v
    nodes.append(helper.make_node("Flatten", [x], ["flat"], "/Flatten", axis=1))
    x = "flat"
    for i, (fin, fout) in enumerate(((25088, 4096), (4096, 4096), (4096, 1000))):
        nodes.append(helper.make_node("Gemm", [x, param(f"classifier.{i}.weight", (fout, fin)),
                                               param(f"classifier.{i}.bias", (fout,))],
                                      [f"fc{i}"], f"/classifier/{i}/Gemm", transB=1))
        x = f"fc{i}"
        if i < 2:
            nodes.append(helper.make_node("Relu", [x], [f"fr{i}"], f"/classifier/{i}/Relu"))
            nodes.append(helper.make_node("Dropout", [f"fr{i}"], [f"d{i}"],
                                          f"/classifier/{i}/Dropout"))
            x = f"d{i}"
    graph = helper.make_graph(
        nodes, "main_graph",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", 1000])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with open(folder / "weights.bin", "wb") as f:
        f.truncate(offset)  # sparse: no disk space, reads back as zeros
    onnx.save(model, str(folder / "vgg16.onnx"))
    return folder / "vgg16.onnx"


def test_info_vgg16(tmp_path):
    path = write_vgg16(tmp_path)
    t0 = time.perf_counter()
    s = json.loads(dynfix("info", path, "--json").stdout)
    elapsed = time.perf_counter() - t0
    macs, params = vgg16_reference()
    assert s["total_macs"] == macs and 15.4e9 < macs < 15.6e9
    assert s["total_params"] == params and 138.3e6 < params < 138.4e6
    assert len(s["layers"]) == 13 * 2 + 5 + 1 + 3 + 2
    assert elapsed < 30, f"dynfix info took {elapsed:.1f} s"


def test_alexnet_lrn_lists_nodes(tmp_path):
    g = GraphBuilder((3, 64, 64), opset=9)
    g.conv(16, 11, stride=4, pads=[2, 2, 2, 2]).relu()
    g.op("LRN", size=5, alpha=1e-4, beta=0.75, bias=1.0).maxpool(3, 2)
    g.conv(32, 5, pads=[2, 2, 2, 2]).relu()
    g.op("LRN", size=5, alpha=1e-4, beta=0.75, bias=1.0).maxpool(3, 2)
    g.conv(24).relu().maxpool(3, 2).op("Flatten", axis=1).gemm(10, features=24 * 1 * 1)
    path = g.save(tmp_path / "alexnet.onnx")
    err = dynfix("info", path, ok=False).stderr
    assert "2 unsupported nodes" in err
    lrns = [n.name for n in g.nodes if n.op_type == "LRN"]
    assert len(lrns) == 2 and all(f"{n} (LRN)" in err for n in lrns)
