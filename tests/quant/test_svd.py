"""Truncated-SVD compression of Linear layers, and ``dynfix compress``."""

import subprocess
import sys

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.quant.float_model import forward
from dynfix.quant.ir import Linear, Model, ReLU
from dynfix.quant.svd import compress, parse_svd


def two_fc():
    w = np.array([[3, 0, 0], [0, 1, 0]], np.float32)  # singular values 3 and 1
    return Model("m", "x", (3,), [Linear("fc", ("x",), weight=w,
                                         bias=np.array([0.5, -0.5], np.float32)),
                                  ReLU("r", ("fc",))])


def test_rank_one_hand_computed():
    new, [rep] = compress(two_fc(), {"fc": 1})
    assert [layer.name for layer in new.layers] == ["fc_svd", "fc", "r"]
    a, b = new.layers[0], new.layers[1]
    assert a.weight.shape == (1, 3) and a.bias is None and b.weight.shape == (2, 1)
    np.testing.assert_allclose(b.weight @ a.weight, [[3, 0, 0], [0, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(np.abs(a.weight), [[np.sqrt(3), 0, 0]], atol=1e-6)
    # x = [1, 2, 3]: fc = [3 + 0.5, 0 - 0.5] -> relu [3.5, 0]
    out = forward(new, np.array([[1, 2, 3]], np.float32))["r"]
    np.testing.assert_allclose(out, [[3.5, 0]], atol=1e-6)
    assert (rep.params_before, rep.params_after) == (6, 5)
    assert rep.rel_error == pytest.approx(np.sqrt(1 / 10))


@pytest.mark.parametrize("ranks,match", [({"fc": 2}, "rank must be in 1..1"),
                                         ({"fc": 0}, "rank must be in"),
                                         ({"zz": 1}, "no layer 'zz'"),
                                         ({"r": 1}, "not a fully connected")])
def test_errors(ranks, match):
    with pytest.raises(DynfixError, match=match):
        compress(two_fc(), ranks)


def test_parse_svd():
    assert parse_svd(["fc=4", " fc2 = 16 "]) == {"fc": 4, "fc2": 16}
    for bad in (["fc"], ["fc=x"], ["=3"], ["fc=1", "fc=2"], []):
        with pytest.raises(DynfixError):
            parse_svd(bad)


def test_cli_compress_yaml_round_trip(tmp_path):
    yaml_io = pytest.importorskip("dynfix.quant.yaml_io")
    rng = np.random.default_rng(0)
    m = Model("m", "x", (6,), [Linear("fc", ("x",), weight=rng.normal(size=(5, 6))
                                      .astype(np.float32))])
    yaml_io.save_yaml(m, tmp_path / "m.yaml")
    r = subprocess.run([sys.executable, "-m", "dynfix.cli", "compress", str(tmp_path / "m.yaml"),
                        "--svd", "fc=2", "-o", str(tmp_path / "m2.yaml")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "30 -> 22 weights" in r.stdout, r.stderr
    m2 = yaml_io.load_yaml(tmp_path / "m2.yaml")
    assert [layer.name for layer in m2.layers] == ["fc_svd", "fc"]


def test_compress_in_a_graph():
    # x -> fc (diag(3, 1, 0, 0) + bias) -> add(fc, x): rank 1 keeps the singular value 3;
    # the Add still reads 'fc' (now the second factor) and the model input.
    from dynfix.quant.ir import Add
    w = np.diag([3, 1, 0, 0]).astype(np.float32)
    m = Model("g", "x", (4,), [Linear("fc", ("x",), weight=w,
                                      bias=np.array([0.5, -0.5, 0, 0], np.float32)),
                               Add("add", ("fc", "x"))])
    new, [rep] = compress(m, {"fc": 1})
    assert [(layer.name, layer.inputs) for layer in new.layers] == [
        ("fc_svd", ("x",)), ("fc", ("fc_svd",)), ("add", ("fc", "x"))]
    # x = [1, 2, 3, 4]: fc = [3 + 0.5, 0 - 0.5, 0, 0]; add = [4.5, 1.5, 3, 4]
    out = forward(new, np.array([[1, 2, 3, 4]], np.float32))["add"]
    np.testing.assert_allclose(out, [[4.5, 1.5, 3, 4]], atol=1e-5)
    assert rep.params_before == 16 and rep.params_after == 8


def test_compress_the_head_of_the_residual_depthwise_net():
    from graph_nets import calib, res_dw_model
    m = res_dw_model()
    new, [rep] = compress(m, {"fc": 3})
    assert [layer.name for layer in new.layers][-3:] == ["flat", "fc_svd", "fc"]
    assert new.summary()["total_params"] == m.summary()["total_params"] - 160 + 3 * (16 + 10)
    x = calib(8)
    assert forward(new, x)["fc"].shape == (8, 10)
    np.testing.assert_array_equal(forward(new, x)["a2"], forward(m, x)["a2"])
