"""The model-side commands on a graph model (residual Adds, depthwise conv, ReLU6, GAP):
info, quantize, evaluate, infer and compress, in process through the CLI."""

import json

import numpy as np
import pytest

from dynfix.cli import main
from dynfix.quant.float_model import predict
from dynfix.quant.int_model import IntModel, with_params
from dynfix.quant.qspec_io import load_qspec
from dynfix.quant.yaml_io import load_yaml, save_yaml
from graph_nets import calib, res_dw_model


def run(capsys, *args) -> str:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = res_dw_model()
    save_yaml(m, "g.yaml")
    x = calib(120)
    np.savez("d.npz", x=x, y=predict(m, x).argmax(1))
    np.save("x.npy", x[:5])
    return m, x


def test_info(files, capsys):
    s = json.loads(run(capsys, "info", "g.yaml", "--json"))
    assert s["chain"] is False and s["total_macs"] == res_dw_model().summary()["total_macs"]
    assert {r["name"]: r["inputs"] for r in s["layers"]}["add2"] == ["c4", "proj"]
    table = run(capsys, "info", "g.yaml")
    assert "inputs" in table and "c4, proj" in table


def test_quantize_evaluate_infer(files, capsys):
    m, x = files
    d = json.loads(run(capsys, "quantize", "g.yaml", "--calib", "d.npz", "-o", "q.yaml",
                       "--json"))
    rows = {r["name"]: r for r in d["layers"]}
    assert rows["add1"]["op"] == "add" and len(rows["add1"]["fl_in"]) == 2
    assert "bw_w" not in rows["add1"] and rows["dw"]["bw_w"] == 8
    table = run(capsys, "quantize", "g.yaml", "--calib", "d.npz", "-o", "q.yaml")
    add_row = next(line for line in table.splitlines() if line.startswith("add1 "))
    assert add_row.split()[1:5] == ["-"] * 4
    spec = load_qspec("q.yaml", m)
    out = run(capsys, "evaluate", "g.yaml", "--data", "d.npz", "--quant", "q.yaml", "--json")
    assert json.loads(out)["accuracy"] >= 0.8      # labels: the float model's classes
    run(capsys, "infer", "g.yaml", "--input", "x.npy", "--output", "y.npy", "--quant",
        "q.yaml", "--raw")
    # with the adjusted parameters beside q.yaml (bias correction etc.), as infer uses them
    np.testing.assert_array_equal(np.load("y.npy"),
                                  IntModel(with_params(m, spec), spec).logits(x[:5]))
    run(capsys, "infer", "g.yaml", "--input", "x.npy", "--output", "f.npy")
    np.testing.assert_allclose(np.load("f.npy"), predict(m, x[:5]), rtol=1e-6)


def test_compress(files, capsys):
    m, x = files
    run(capsys, "compress", "g.yaml", "--svd", "fc=4", "-o", "g2.yaml")
    m2 = load_yaml("g2.yaml")
    assert [layer.name for layer in m2.layers][-2:] == ["fc_svd", "fc"]
    assert predict(m2, x[:3]).shape == (3, 10)
