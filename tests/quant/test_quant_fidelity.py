"""The greedy search's additions beyond the paper, the fidelity measures and the AD training
script: greedy-paper is the paper's search byte for byte, every addition is a descent of
the calibration objective, bias correction and adaptive rounding do what they claim, the
measures match hand-computed values, the adjusted parameters survive Q.yaml."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dynfix.errors import DynfixError, flag
from dynfix.quant import adjust, fixed
from dynfix.quant.fidelity import Fidelity, Objective, fidelity, output_kind, outputs, sqnr_db
from dynfix.quant.float_model import forward
from dynfix.quant.int_model import IntModel, with_params
from dynfix.quant.ir import Linear, Model, ReLU, Softmax
from dynfix.quant.qspec import LayerFormat, QuantOptions, QuantSpec
from dynfix.quant.qspec_io import load_qspec, save_qspec
from dynfix.quant.search import GREEDY, method_options, search, search_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from graph_nets import calib as graph_calib, res_dw_model  # noqa: E402
from quant_helpers import OLD_DIGITS_Q, digits_like_net  # noqa: E402

# What `dynfix quantize digits --calib digits -o Q.yaml` wrote before the additions (commit
# 66638b1, method greedy), with the method now named greedy-paper.
PAPER_DIGITS_Q = OLD_DIGITS_Q.replace("method: greedy\n", "method: greedy-paper\n")

ADDITIONS = [QuantOptions(criterion="mse"), QuantOptions(start="percentile"),
             QuantOptions(bias_correction=True), QuantOptions(rounding="adaptive"),
             QuantOptions(refine=True), QuantOptions(fill=True), GREEDY]


def test_greedy_paper_reproduces_the_papers_digits_qyaml(tmp_path):
    from dynfix.quant.datasets import load_digits
    from dynfix.quant.load import load_model
    m = load_model("digits")
    x, _ = load_digits("calib")
    save_qspec(search(m, x, "8", "greedy-paper"), tmp_path / "q.yaml")
    assert (tmp_path / "q.yaml").read_text() == PAPER_DIGITS_Q
    # all options off is greedy-paper, whichever greedy was named
    assert search(m, x, "8", "greedy", options=QuantOptions()).method == "greedy-paper"


def small_cnn():
    """test_search's digits-like net (conv, ReLU, pool, fc) with a trailing Softmax."""
    m, x = digits_like_net()
    return Model("cnn", "x", (1, 8, 8), m.layers + [Softmax("sm", ("fc",))]), x[:120]


def small_ae(seed=4):
    """16 -> 8 -> 2 -> 8 -> 16 with ReLUs: an output that is not classes."""
    rng = np.random.default_rng(seed)
    dims, layers, prev = [16, 8, 2, 8, 16], [], "x"
    for i, (k, m) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(Linear(f"d{i}", (prev,),
                             weight=rng.normal(0, 1 / np.sqrt(k), (m, k)).astype(np.float32),
                             bias=rng.normal(0, 0.2, m).astype(np.float32)))
        prev = f"d{i}"
        if i < 3:
            layers.append(ReLU(f"r{i}", (prev,)))
            prev = f"r{i}"
    x = (rng.normal(0, 1, (150, 16)) * np.linspace(0.2, 3, 16)).astype(np.float32)
    return Model("ae", "x", (16,), layers), x


@pytest.fixture(scope="module")
def nets():
    return {"cnn": small_cnn(), "ae": small_ae(), "res": (res_dw_model(2), graph_calib(80, 5))}


@pytest.mark.parametrize("bits", ["8", "6"])
def test_every_addition_is_a_descent_of_the_calibration_objective(nets, bits):
    for name, (m, x) in nets.items():
        paper = search_model(m, x, bits, "greedy-paper")
        f0 = fidelity(*outputs(m, paper.spec, x))
        for o in ADDITIONS:
            r = search_model(m, x, bits, options=o)
            # scored independently, by the integer model on the whole calibration batch
            f = fidelity(*outputs(m, r.spec, x, r.model))
            assert f == r.fidelity, (name, o)           # the search's own score is exact
            assert r.paper_fidelity == f0
            assert r.objective.key(f) >= r.objective.key(f0), (name, bits, o)
    # an output that is not classes is scored by SQNR alone, a classifier by agreement first
    assert output_kind(nets["ae"][0]) == "values" and output_kind(nets["cnn"][0]) == "classes"
    assert search_model(*nets["ae"], "8").objective.name == "sqnr"
    assert search_model(*nets["cnn"], "8").objective.name == "agreement"


def ae_inputs(n: int, seed: int = 99) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 1, (n, 16)) * np.linspace(0.2, 3, 16)).astype(np.float32)


def test_refine_improves_a_poor_start():
    # greedy-paper's L1 weight criterion clips this autoencoder's weights hard; refine alone
    # must win back SQNR on the output (and report every step it keeps), on the calibration
    # inputs and on others: 18.17 -> 19.23 dB and 16.46 -> 17.49 dB
    m, _ = small_ae(5)
    x = ae_inputs(1500)
    said = []
    r = search_model(m, x[:500], "6", options=QuantOptions(refine=True), progress=said.append)
    assert r.objective.key(r.fidelity) > r.objective.key(r.paper_fidelity)
    assert any(s.startswith("refine: ") and "->" in s for s in said)
    paper = search_model(m, x[:500], "6", "greedy-paper")
    held = sqnr_db(*outputs(m, r.spec, x[500:], r.model))
    assert held > sqnr_db(*outputs(m, paper.spec, x[500:])) + 0.5


def test_refine_keeps_no_step_that_only_fits_the_batch(monkeypatch):
    # On 150 inputs the same kind of start has steps that gain 0.8 dB on them and lose on
    # others (19.68 -> 19.28 dB on 2000 held-out inputs): no step passes the paired test.
    from dynfix.quant import refine as refine_mod
    m, x = small_ae(7)
    held = ae_inputs(2000)
    r = search_model(m, x, "6", options=QuantOptions(refine=True))
    assert r.fidelity == r.paper_fidelity
    monkeypatch.setattr(refine_mod, "SIGMAS", 0.0)          # any gain on the batch: taken
    loose = search_model(m, x, "6", options=QuantOptions(refine=True))
    assert loose.fidelity.sqnr_db > r.fidelity.sqnr_db + 0.5
    assert sqnr_db(*outputs(m, loose.spec, held, loose.model)) < \
        sqnr_db(*outputs(m, r.spec, held, r.model))


def test_objective_bands():
    def f(agree, s):
        return Fidelity(agree, 200, s)
    strict = Objective("agreement", anchor=190, tol=0)
    assert strict.key(f(191, 10.0)) > strict.key(f(190, 30.0))
    banded = Objective("agreement", anchor=190, tol=1)
    assert banded.key(f(189, 30.0)) > banded.key(f(190, 20.0))     # one input: a tie
    assert banded.key(f(188, 90.0)) < banded.key(f(190, 20.0))     # two: worse
    assert banded.key(f(192, 10.0)) > banded.key(f(191, 99.0))     # next band up
    assert Objective("sqnr").key(f(0, 12.0)) == (12.0,)


def test_bias_correction_removes_the_mean_output_error():
    # Every weight 0.3 at 4 bits, fl 3: 2.4 rounds to 2, each weight is 0.05 short; inputs
    # in [0.5, 1.5] (mean 1): the output is 8 * 0.05 = 0.4 low on average. The corrected
    # bias adds exactly that mean.
    w = np.full((2, 8), 0.3, np.float32)
    layer = Linear("fc", ("x",), weight=w, bias=np.zeros(2, np.float32))
    x = np.random.default_rng(0).uniform(0.5, 1.5, (500, 8))
    wq = fixed.dequantize(fixed.quantize(w, 4, 3), 3)
    b = adjust.corrected_bias(layer, layer.bias, w, x, wq, x)
    err0 = (x @ wq.T - x @ w.T).mean(axis=0)
    err1 = (x @ wq.T + b - x @ w.T).mean(axis=0)
    np.testing.assert_allclose(b, 0.4 * x.mean(axis=0).sum() / 8 * np.ones(2), rtol=1e-5)
    assert np.all(np.abs(err0) > 0.35) and np.all(np.abs(err1) < 1e-6)
    # through the search: the integer model's mean output error shrinks
    m = Model("t", "x", (8,), [layer])
    xs = x.astype(np.float32)
    e = {}
    for bc in (False, True):
        r = search_model(m, xs, "4", options=QuantOptions(bias_correction=bc))
        f, q = outputs(m, r.spec, xs, r.model)
        e[bc] = np.abs((q - f).mean(axis=0)).max()
    assert e[True] < 0.25 * e[False]


def test_adaptive_rounding_lowers_the_layer_error_and_stays_between_floor_and_ceil():
    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.5, (6, 12)).astype(np.float32)
    layer = Linear("fc", ("x",), weight=w)
    x = rng.normal(0.5, 1, (400, 12))
    x[:, :6] += x[:, 6:]                                   # correlated inputs
    fl, bw = 4, 8
    near = fixed.quantize(w, bw, fl)
    ada = adjust.adaptive_round(layer, w, near, bw, fl, x, x)
    v = w * 2.0 ** fl
    assert np.all((ada == np.floor(v)) | (ada == np.ceil(v)))
    assert np.any(ada != near)

    def err(q):
        return float(((x @ fixed.dequantize(q, fl).T - x @ w.T) ** 2).sum())
    assert err(ada) < 0.8 * err(near)


def test_evaluate_sqnr_and_agreement_hand_computed():
    from dynfix import api
    # y = x (one Linear, weight 1); input and output at fl 2 (steps of 0.25), weight fl 6.
    m = Model("id", "x", (2,), [Linear("fc", ("x",), weight=np.eye(2, dtype=np.float32))])
    spec = QuantSpec("id", "greedy-paper", "8", 8, 2, {
        "fc": LayerFormat("fc", 8, 6, 16, 8, 8, 2, 8, 2, 20)})
    x = np.array([[0.3, -0.7], [1.1, 1.0]], np.float32)
    # quantized: 0.3 -> 0.25, -0.7 -> -0.75, 1.1 -> 1.0, 1.0 -> 1.0; errors 0.05, 0.05,
    # 0.1, 0: noise 0.0025 + 0.0025 + 0.01 = 0.015; signal 0.09 + 0.49 + 1.21 + 1.0 = 2.79;
    # SQNR 10 log10(186) = 22.695 dB. Two outputs for two inputs: not classes, so SQNR.
    r = api.evaluate(m, x, spec)
    assert r.output == "values" and r.metric == "sqnr"
    assert r.sqnr_db == pytest.approx(22.6951, abs=1e-4) == r.value
    # argmax: float [0, 0], quantized [0, 0] (1.0 vs 1.0: ties take the lowest index)
    assert r.agreement == 1.0 and r.correct is None
    assert api.evaluate(m, x, spec, "sqnr").value == pytest.approx(r.sqnr_db)
    assert sqnr_db(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == float("inf")
    with pytest.raises(DynfixError, match="top-1 accuracy needs labelled data"):
        api.evaluate(m, x, spec, "accuracy")
    with pytest.raises(DynfixError, match="pass quant Q.yaml") as e:   # the API's words;
        api.evaluate(m, x, None, "sqnr")
    assert "--" not in str(e.value)
    assert "pass --quant Q.yaml" in e.value.render(flag)           # the CLI's


def test_adjusted_parameters_round_trip_through_qyaml(tmp_path):
    m, x = small_cnn()
    r = search_model(m, x, "8", options=replace(GREEDY, rounding="adaptive",
                                                bias_correction=True))
    assert r.spec.params and r.model is not m
    save_qspec(r.spec, tmp_path / "q.yaml")
    assert (tmp_path / "q.params.npz").is_file()
    back = load_qspec(tmp_path / "q.yaml", m)
    assert back.options == r.spec.options and back.params.keys() == r.spec.params.keys()
    a = IntModel(with_params(m, back), back).logits(x)
    np.testing.assert_array_equal(a, IntModel(r.model, r.spec).logits(x))
    # the adjusted weights are the chosen integers exactly (nearest rounding finds them)
    f = back.layers["fc"]
    w = back.params["fc"]["weight"]
    np.testing.assert_array_equal(fixed.dequantize(fixed.quantize(w, f.bw_w, f.fl_w), f.fl_w),
                                  w)
    (tmp_path / "q.params.npz").unlink()
    with pytest.raises(DynfixError, match="cannot read q.params.npz"):
        load_qspec(tmp_path / "q.yaml", m)


def test_option_errors():
    with pytest.raises(DynfixError, match="option criterion='l2'"):
        QuantOptions(criterion="l2")
    with pytest.raises(DynfixError, match="takes no greedy options"):
        method_options("range", {"refine": True})
    with pytest.raises(DynfixError, match="unknown option"):
        method_options("greedy", {"refines": True})
    assert method_options("greedy-paper", {"refine": True}) == QuantOptions(refine=True)


def test_autoencoder_training_is_deterministic(tmp_path):
    import train_autoencoder as tae
    cfg = tae.TrainConfig(epochs=1, train=128)
    a = tae.build(tmp_path / "a", cfg, log=lambda s: None)
    b = tae.build(tmp_path / "b", cfg, log=lambda s: None)
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes()
    from dynfix.quant.load import load_model
    m = load_model(str(a[0]))
    assert [l.weight.shape for l in m.layers if isinstance(l, Linear)][4] == (8, 128)
    assert output_kind(m) == "values"
    with np.load(a[1]) as d:
        assert d["x"].shape == (1000, 640) and d["y"].sum() == 500
        s = tae.anomaly_scores(d["x"], forward(m, d["x"])[m.output_name])
        assert 0.0 <= tae.auc(s, d["y"]) <= 1.0
    assert tae.auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75


def test_flow_measures_a_values_model_by_sqnr():
    from dynfix import api
    from dynfix.workflow.options import FlowOptions
    from dynfix.workflow.report import sweep_metric
    from dynfix.workflow.run import _accuracies, _sweep
    m, x = small_ae()
    q = api.quantize(m, x, "8")
    acc = _accuracies(m, q, x, np.zeros(len(x), np.int64))    # labels that are not classes
    assert acc["output"] == "values" and acc["float"] is None and acc["integer"] is None
    assert acc["sqnr_db"] == pytest.approx(sqnr_db(*outputs(m, q.spec, x, q.model)))
    assert sweep_metric(acc) == "sqnr"
    rows = _sweep(m, q, FlowOptions(sweep=("6",)), x, x, None, "sqnr", lambda s: None)
    assert [r["bits"] for r in rows] == ["6", "8"]
    assert rows[1]["value"] == acc["sqnr_db"] > rows[0]["value"]
    cnn, xc = small_cnn()
    assert sweep_metric(_accuracies(cnn, api.quantize(cnn, xc, "8"), xc, None)) == "agreement"
