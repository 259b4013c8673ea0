"""Q.yaml: round trip, determinism and validation against the model."""

import numpy as np
import pytest
import yaml

from dynfix.errors import DynfixError
from dynfix.quant.ir import Flatten, Linear, Model, ReLU
from dynfix.quant.qspec_io import load_qspec, save_qspec
from dynfix.quant.search import search


def net(name="net"):
    rng = np.random.default_rng(0)
    return Model(name, "x", (2, 3), [
        Flatten("f", ("x",)),
        Linear("a", ("f",), weight=rng.normal(0, 0.5, (4, 6)).astype(np.float32),
               bias=rng.normal(0, 0.1, 4).astype(np.float32)),
        ReLU("r", ("a",)),
        Linear("b", ("r",), weight=rng.normal(0, 0.5, (3, 4)).astype(np.float32))])


@pytest.fixture
def saved(tmp_path):
    m = net()
    x = np.random.default_rng(1).uniform(-1, 1, (50, 2, 3)).astype(np.float32)
    spec = search(m, x, "8/6")
    path = tmp_path / "q.yaml"
    save_qspec(spec, path)
    return m, spec, path


def test_round_trip_and_determinism(saved, tmp_path):
    m, spec, path = saved
    back = load_qspec(path, m)
    assert back.layers.keys() == spec.layers.keys()
    for name, f in spec.layers.items():
        g = back.layers[name]
        for k in ("bw_w", "fl_w", "bw_b", "fl_b", "bw_in", "fl_in", "bw_x", "fl_out",
                  "acc_bits", "saturated"):
            assert getattr(g, k) == getattr(f, k), (name, k)
        assert g.sqnr_db == pytest.approx(f.sqnr_db, abs=0.005)
    assert back.layers["b"].bw_in == 8 and back.layers["b"].bw_w == 6
    save_qspec(back, tmp_path / "again.yaml")
    assert (tmp_path / "again.yaml").read_text() == path.read_text()
    d = yaml.safe_load(path.read_text())
    assert list(d) == ["model", "method", "bits", "input_bw", "input_fl", "layers"]
    assert [r["name"] for r in d["layers"]] == ["a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.yaml", "q.yaml"]  # no temps


def edit(path, fn):
    d = yaml.safe_load(path.read_text())
    fn(d)
    path.write_text(yaml.safe_dump(d, sort_keys=False))


@pytest.mark.parametrize("change,match", [
    (lambda d: d.update(model="other"), "made for model 'other'"),
    (lambda d: d["layers"].pop(), "no format for layer.*b"),
    (lambda d: d["layers"][0].update(name="zz"), "unknown layer.*zz"),
    (lambda d: d["layers"][1].update(fl_in=99), "does not match the map it reads"),
    (lambda d: d["layers"][0].pop("fl_w"), "missing key.*fl_w"),
    (lambda d: d["layers"][0].update(bw_w="8"), "bw_w must be an integer"),
    (lambda d: d["layers"][0].update(bw_x=64), "outside 2..32"),
    (lambda d: d["layers"].reverse(), "network order|does not match"),
    (lambda d: d.pop("input_fl"), "missing key.*input_fl"),
])
def test_mismatch_errors(saved, change, match):
    m, _, path = saved
    edit(path, change)
    with pytest.raises(DynfixError, match=match):
        load_qspec(path, m)


def test_unreadable(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(DynfixError, match="not valid YAML"):
        load_qspec(bad, net())
    with pytest.raises(DynfixError, match="cannot read"):
        load_qspec(tmp_path / "missing.yaml", net())
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(DynfixError, match="expected a mapping"):
        load_qspec(bad, net())
