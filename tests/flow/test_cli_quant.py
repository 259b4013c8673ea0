"""``dynfix quantize`` (and the quantized evaluate/infer/compress) through a subprocess."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from dynfix.quant.ir import Conv2d, Flatten, Linear, MaxPool2d, Model, ReLU

yaml_io = pytest.importorskip("dynfix.quant.yaml_io")


def dynfix(*args, cwd=None):
    r = subprocess.run([sys.executable, "-m", "dynfix.cli", *map(str, args)],
                       capture_output=True, text=True, cwd=cwd)
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    rng = np.random.default_rng(0)
    m = Model("small", "x", (1, 8, 8), [
        Conv2d("c1", ("x",), weight=rng.normal(0, 0.3, (4, 1, 3, 3)).astype(np.float32),
               bias=rng.normal(0, 0.1, 4).astype(np.float32), pads=(1, 1, 1, 1)),
        ReLU("r1", ("c1",)), MaxPool2d("p1", ("r1",)), Flatten("f", ("p1",)),
        Linear("fc", ("f",), weight=rng.normal(0, 0.3, (10, 64)).astype(np.float32),
               bias=rng.normal(0, 0.1, 10).astype(np.float32))])
    path = tmp_path_factory.mktemp("m") / "small.yaml"
    yaml_io.save_yaml(m, path)
    return path


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    """Calibration inputs as .npy (the digits split needs scikit-learn: slow to import)."""
    path = tmp_path_factory.mktemp("c") / "calib.npy"
    np.save(path, np.random.default_rng(0).uniform(0, 1, (40, 1, 8, 8)).astype(np.float32))
    return path


def test_quantize_writes_qyaml(model_path, tmp_path):
    q = tmp_path / "q.yaml"
    r = dynfix("quantize", model_path, "--calib", "digits", "--bits", "8/4", "--output", q)
    assert r.returncode == 0, r.stderr
    assert "[1/2] c1" in r.stderr and "[2/2] fc" in r.stderr and "search took" in r.stderr
    assert "SQNR dB" in r.stdout
    d = yaml.safe_load(q.read_text())
    assert d["model"] == "small" and d["bits"] == "8/4" and d["method"] == "greedy"
    assert [(row["name"], row["bw_w"], row["bw_x"]) for row in d["layers"]] == [
        ("c1", 8, 8), ("fc", 4, 8)]
    assert d["layers"][1]["fl_in"] == d["layers"][0]["fl_out"]


def test_quantize_json_and_methods(model_path, calib, tmp_path):
    for method in ("static", "range"):
        r = dynfix("quantize", model_path, "--calib", calib, "--bits", "6",
                   "--method", method, "--output", tmp_path / f"{method}.yaml", "--json")
        assert r.returncode == 0, r.stderr
        d = json.loads(r.stdout)
        assert d["method"] == method and d["calib_inputs"] == 40
        assert all(row["bw_x"] == 6 for row in d["layers"])


def test_quantize_npy_calib_and_overrides(model_path, tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).uniform(0, 1, (20, 1, 8, 8)))
    (tmp_path / "ov.yaml").write_text("c1: {bw_x: 6}\nfc: {bw_w: 3}\n")
    r = dynfix("quantize", model_path, "--calib", tmp_path / "x.npy", "--bits", "8",
               "--overrides", tmp_path / "ov.yaml", "--output", tmp_path / "q.yaml", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["calib_inputs"] == 20
    assert [(row["bw_x"], row["bw_w"]) for row in d["layers"]] == [(6, 8), (8, 3)]


@pytest.mark.parametrize("extra,match", [
    (("--bits", "1"), "outside 2..32"),
    (("--bits", "8/4/2/1"), "bits spec"),
    (("--calib", "wrong.npy"), "neither 'digits' nor an existing"),
    (("--calib", "bad.npy"), "calibration data: input has shape"),
    (("--calib", "empty.npy"), "empty"),
    (("--overrides", "ov.yaml"), "no compute layer 'nope'"),
])
def test_quantize_errors(model_path, calib, tmp_path, monkeypatch, capsys, extra, match):
    # In-process (the subprocess path is covered by test_quantize_error_subprocess).
    from dynfix.cli import main
    monkeypatch.chdir(tmp_path)
    np.save("bad.npy", np.zeros((3, 8, 8), np.float32))
    np.save("empty.npy", np.zeros((0, 1, 8, 8), np.float32))
    (tmp_path / "ov.yaml").write_text("nope: {bw_x: 6}\n")
    args = {"--calib": str(calib), "--bits": "8"}
    args.update(dict(zip(extra[::2], extra[1::2])))
    flat = [v for kv in args.items() for v in kv]
    assert main(["quantize", str(model_path), *flat, "--output", "q.yaml"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dynfix: error: ") and match in err, err
    assert not (tmp_path / "q.yaml").exists()


def test_quantize_error_subprocess(model_path, calib, tmp_path):
    r = dynfix("quantize", model_path, "--calib", calib, "--bits", "33", "-o", tmp_path / "q")
    assert r.returncode == 1 and r.stderr.startswith("dynfix: error: ")
    assert r.stderr.count("\n") == 1


def test_evaluate_and_infer_quant(model_path, calib, tmp_path):
    q, raw, deq = tmp_path / "q.yaml", tmp_path / "raw.npy", tmp_path / "deq.npy"
    assert dynfix("quantize", model_path, "--calib", calib, "-o", q).returncode == 0
    x = np.load(calib)
    y = np.arange(len(x)) % 10
    np.savez(tmp_path / "d.npz", x=x, y=y)
    assert dynfix("infer", model_path, "-i", calib, "-o", raw, "--quant", q,
                  "--raw").returncode == 0
    assert dynfix("infer", model_path, "-i", calib, "-o", deq, "--quant", q).returncode == 0
    r, d = np.load(raw), np.load(deq)
    assert r.dtype == np.int64 and d.dtype == np.float32 and r.shape == (40, 10)
    qd = yaml.safe_load(q.read_text())
    last = qd["layers"][-1]
    # dequantized in the float model's units: divided by the host's output scale, if any
    want = (r - last.get("zp_out", 0)) * 2.0 ** -last["fl_out"] / qd.get("output_scale", 1.0)
    np.testing.assert_array_equal(d, want.astype(np.float32))
    res = dynfix("evaluate", model_path, "--data", tmp_path / "d.npz", "--quant", q, "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["mode"] == "quant" and out["correct"] == int((r.argmax(1) == y).sum())


def test_quant_mismatch_and_raw_errors(model_path, calib, tmp_path):
    q = tmp_path / "q.yaml"
    q.write_text("model: other\nmethod: greedy\nbits: '8'\ninput_bw: 8\ninput_fl: 7\n"
                 "layers: []\n")
    r = dynfix("infer", model_path, "-i", calib, "-o", tmp_path / "y.npy", "--quant", q)
    assert r.returncode == 1 and "made for model 'other'" in r.stderr
    r = dynfix("infer", model_path, "-i", calib, "-o", tmp_path / "y.npy", "--raw")
    assert r.returncode == 1 and "--raw needs --quant" in r.stderr


def test_quantize_options_params_and_evaluate_measures(model_path, calib, tmp_path):
    q = tmp_path / "q.yaml"
    r = dynfix("quantize", model_path, "--calib", calib, "-o", q, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["method"] == "greedy" and d["options"]["refine"] is True
    assert "calibration objective: agreement" in r.stderr
    # bias correction changed the biases: they are beside Q.yaml, which names them
    assert yaml.safe_load(q.read_text())["params"] == "q.params.npz"
    assert (tmp_path / "q.params.npz").is_file() and "q.params.npz" in r.stderr
    # greedy-paper plus one addition, recorded as greedy with that option alone
    r = dynfix("quantize", model_path, "--calib", calib, "--method", "greedy-paper",
               "--criterion", "mse", "-o", tmp_path / "b.yaml", "--json")
    d = json.loads(r.stdout)
    assert d["method"] == "greedy" and d["options"]["criterion"] == "mse"
    assert d["options"]["refine"] is False and "params" not in d
    # no labels: agreement is the headline for class outputs, SQNR on request
    r = dynfix("evaluate", model_path, "--data", calib, "--quant", q, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["metric"] == "agreement" and out["output"] == "classes"
    assert "accuracy" not in out and 0.9 <= out["agreement"] <= 1 and out["sqnr_db"] > 20
    r = dynfix("evaluate", model_path, "--data", calib, "--quant", q, "--metric", "sqnr")
    assert r.returncode == 0 and "[measure: output SQNR against the float model]" in r.stdout
    r = dynfix("evaluate", model_path, "--data", calib)
    assert r.returncode == 1 and "top-1 accuracy needs labelled data" in r.stderr
