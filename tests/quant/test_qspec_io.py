"""Q.yaml: round trip, determinism and validation against the model."""

import numpy as np
import pytest
import yaml

from dynfix.errors import DynfixError
from dynfix.quant.ir import Flatten, Linear, Model, ReLU
from dynfix.quant.qspec_io import load_qspec, save_qspec
from dynfix.quant.search import search

from quant_helpers import OLD_DIGITS_Q


def net(name="net"):
    rng = np.random.default_rng(0)
    return Model(name, "x", (2, 3), [
        Flatten("f", ("x",)),
        Linear("a", ("f",), weight=rng.normal(0, 0.5, (4, 6)).astype(np.float32),
               bias=rng.normal(0, 0.1, 4).astype(np.float32)),
        ReLU("r", ("a",)),
        Linear("b", ("r",), weight=rng.normal(0, 0.5, (3, 4)).astype(np.float32))])


def search_and_save(tmp_path, m, x, bits, overrides=None, method="greedy"):
    """(model, spec, path of its saved Q.yaml)."""
    spec = search(m, x, bits, method, overrides=overrides)
    path = tmp_path / "q.yaml"
    save_qspec(spec, path)
    return m, spec, path


@pytest.fixture
def saved(tmp_path):
    x = np.random.default_rng(1).uniform(-1, 1, (50, 2, 3)).astype(np.float32)
    return search_and_save(tmp_path, net(), x, "8/6")


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
    assert (tmp_path / "again.yaml").read_text().replace("again.params", "q.params") == \
        path.read_text()
    assert (tmp_path / "again.params.npz").read_bytes() == \
        (tmp_path / "q.params.npz").read_bytes()
    d = yaml.safe_load(path.read_text())
    # default greedy: its options, and the biases bias correction chose (and the input's
    # offset when it is not 0)
    assert [k for k in d if k != "input_zp"] == ["model", "method", "options", "bits",
                                                 "input_bw", "input_fl", "params", "layers"]
    assert d["params"] == "q.params.npz" and sorted(back.params) == ["a", "b"]
    assert [r["name"] for r in d["layers"]] == ["a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "again.params.npz", "again.yaml", "q.params.npz", "q.yaml"]  # no temps


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


# ----------------------------------------------------------------------------- graphs

from graph_nets import calib, res_dw_model  # noqa: E402
from dynfix.quant.int_model import IntModel  # noqa: E402
from dynfix.quant.qspec import AddFormat  # noqa: E402


def test_old_chain_file_loads_and_saves_byte_identical(tmp_path):
    from dynfix.quant.load import load_model
    m = load_model("digits")
    (tmp_path / "old.yaml").write_text(OLD_DIGITS_Q)
    spec = load_qspec(tmp_path / "old.yaml", m)
    f = spec.layers["conv2"]
    assert (f.bw_in, f.fl_in, f.fl_out, f.acc_bits, f.saturated) == (8, 5, 4, 22, 2056)
    save_qspec(spec, tmp_path / "new.yaml")
    assert (tmp_path / "new.yaml").read_text() == OLD_DIGITS_Q


@pytest.fixture
def graph_saved(tmp_path):
    return search_and_save(tmp_path, res_dw_model(), calib(60), "8", {"c2": {"bw_x": 6}},
                           "greedy-paper")


def test_graph_round_trip(graph_saved, tmp_path):
    m, spec, path = graph_saved
    back = load_qspec(path, m)
    assert list(back.layers) == list(spec.layers)
    for name, f in spec.layers.items():
        g = back.layers[name]
        assert type(g) is type(f)
        assert g == type(f)(**{**vars(f), "sqnr_db": g.sqnr_db}), name
        assert g.sqnr_db == pytest.approx(f.sqnr_db, abs=0.005)
    a = back.layers["add1"]
    assert isinstance(a, AddFormat) and a.bw_in == (6, 8)       # widths from the graph
    assert back.layers["c3"].bw_in == 8
    text = path.read_text()
    line = next(s for s in text.splitlines() if "name: add1" in s)
    assert line == (f"- {{name: add1, op: add, fl_in: [{a.fl_in[0]}, {a.fl_in[1]}], bw_x: 8, "
                    f"fl_out: {a.fl_out}, sqnr_db: {round(a.sqnr_db, 2)}, "
                    f"saturated: {a.saturated}}}")
    save_qspec(back, tmp_path / "again.yaml")
    assert (tmp_path / "again.yaml").read_text() == text
    x = calib(20, 5)
    np.testing.assert_array_equal(IntModel(m, back).logits(x), IntModel(m, spec).logits(x))


def row_of(name, fn):
    def change(d):
        fn(next(r for r in d["layers"] if r["name"] == name))
    return change


@pytest.mark.parametrize("change,match", [
    (row_of("add1", lambda r: r.pop("op")),
     "'add1': the layer is 'add'; its row must have op: add"),
    (row_of("add1", lambda r: r.update(op="mul")), "add1.*op 'mul' has no format"),
    (row_of("add1", lambda r: r.pop("fl_out")), "add1.*missing key\\(s\\) fl_out"),
    (row_of("add1", lambda r: r.update(fl_in=3)), "add1.*fl_in must be a list of two"),
    (row_of("add1", lambda r: r.update(fl_in=[1, 2, 3])), "fl_in must be a list of two"),
    (row_of("add1", lambda r: r.update(fl_in=[1, "2"])), "add1.*fl_in must be an integer"),
    (row_of("add1", lambda r: r.update(fl_in=[r["fl_in"][1], r["fl_in"][0] + 1])),
     "add1.*do not match the maps it reads"),
    (row_of("add1", lambda r: r.update(bw_x=1)), "add1.*bw_x 1 is outside"),
    (row_of("c1", lambda r: r.update(op="add")), "'c1': the layer is 'conv'; its row must not"),
    (row_of("c3", lambda r: r.update(fl_in=r["fl_in"] + 1)), "'c3'.*does not match the map"),
    (lambda d: d["layers"].pop(3), "no format for layer\\(s\\) add1"),
    (lambda d: d["layers"].insert(0, d["layers"].pop(3)), "network order"),
    (lambda d: d["layers"][0].update(name=["c0"]), "layers\\[0\\] needs a 'name'"),
])
def test_graph_mismatch_errors(graph_saved, change, match):
    m, _, path = graph_saved
    edit(path, change)
    with pytest.raises(DynfixError, match=match):
        load_qspec(path, m)
