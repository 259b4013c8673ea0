"""Low-rank convolutions fitted on calibration responses (Zhang et al.), and ``dynfix compress
--lowrank/--speedup``."""

import json
import subprocess
import sys

import numpy as np
import pytest

import dynfix
from dynfix.errors import DynfixError
from dynfix.quant.float_model import forward
from dynfix.quant.ir import Conv2d, Flatten, Linear, MaxPool2d, Model, ReLU
from dynfix.quant.lowrank_conv import (METHODS, Regression, compress_convs, fit_nonlinear,
                                       parse_lowrank, select_ranks, z_step)


def inputs(n: int, seed: int, shape=(4, 8, 8), dims: int = 2, noise: float = 0.05):
    """Images whose pixels lie near a ``dims``-dimensional subspace of the channels (as a
    trained network's feature maps do): the responses of any conv on them are low rank."""
    rng = np.random.default_rng(100)                # one subspace for every call
    basis = rng.standard_normal((shape[0], dims))
    r = np.random.default_rng(seed)
    s = r.standard_normal((n, dims) + shape[1:])
    x = np.einsum("cd,ndhw->nchw", basis, s) + noise * r.standard_normal((n,) + shape)
    return x.astype(np.float32)


def conv(rng, name, inp, m, c, k, **kw):
    return Conv2d(name, (inp,), weight=(rng.standard_normal((m, c, k, k)) / np.sqrt(c * k * k))
                  .astype(np.float32), bias=(0.2 * rng.standard_normal(m)).astype(np.float32),
                  **kw)


def net(seed: int = 0) -> Model:
    """c1 3x3 4->8, ReLU, c2 3x3 8->12, ReLU, c3 1x1 12->12 (feeds a pool, not a ReLU),
    pool, FC 12*4*4 -> 5, on 4 x 8 x 8 inputs."""
    rng = np.random.default_rng(seed)
    return Model("n", "x", (4, 8, 8), [
        conv(rng, "c1", "x", 8, 4, 3, pads=(1, 1, 1, 1)), ReLU("r1", ("c1",)),
        conv(rng, "c2", "r1", 12, 8, 3, pads=(1, 1, 1, 1)), ReLU("r2", ("c2",)),
        conv(rng, "c3", "r2", 12, 12, 1), MaxPool2d("p", ("c3",)), Flatten("f", ("p",)),
        Linear("fc", ("f",), weight=(0.1 * rng.standard_normal((5, 192))).astype(np.float32),
               bias=np.zeros(5, np.float32))])


def conv_macs(model: Model) -> int:
    """The convs' MACs from the weights and output shapes."""
    return sum(int(np.prod(layer.out_shape)) * int(np.prod(layer.weight.shape[1:]))
               for layer in model.layers if isinstance(layer, Conv2d))


def test_decomposed_layers_macs_and_params_by_hand():
    m = net()
    r = compress_convs(m, inputs(16, 1), {"c2": 3})
    assert [layer.name for layer in r.model.layers][:5] == ["c1", "r1", "c2_lr", "c2", "r2"]
    first, second = r.model.layer("c2_lr"), r.model.layer("c2")
    assert first.weight.shape == (3, 8, 3, 3) and first.bias is None
    assert first.pads == (1, 1, 1, 1)
    assert second.weight.shape == (12, 3, 1, 1) and second.bias.shape == (12,)
    assert second.inputs == ("c2_lr",) and r.model.layer("r2").inputs == ("c2",)
    [rep] = r.layers
    # 12 filters of 3x3x8 on 8x8: 12*72*64; rank 3: 3*(72 + 12)*64
    assert (rep.macs_before, rep.macs_after) == (55296, 16128)
    assert (rep.params_before, rep.params_after) == (12 * 72 + 12, 3 * 72 + 12 * 3 + 12)
    assert r.conv_macs_before == conv_macs(m) and r.conv_macs_after == conv_macs(r.model)
    assert conv_macs(m) - conv_macs(r.model) == 55296 - 16128
    assert rep.relu and rep.layer == "c2" and rep.rank == 3 and rep.filters == 12


@pytest.mark.parametrize("method", ["linear", "nonlinear", "asymmetric"])
def test_full_rank_reproduces_the_layer(method):
    m = net()
    x = inputs(8, 2)
    r = compress_convs(m, inputs(16, 1), {"c1": 8, "c2": 12, "c3": 12}, method=method)
    want, got = forward(m, x), forward(r.model, x)
    for name in ("c1", "c2", "c3", "fc"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)


def test_responses_beat_the_weights_svd_on_low_rank_inputs():
    """Inputs whose pixels span 1 of 8 channel dimensions (plus a little noise): a 3x3 conv's
    16 responses span about 9 dimensions, which rank 9 keeps, while the weight matrix
    (16 x 72, random) has no such structure."""
    rng = np.random.default_rng(3)
    m = Model("one", "x", (8, 8, 8), [conv(rng, "c", "x", 16, 8, 3, pads=(1, 1, 1, 1))])
    calib, test = inputs(32, 1, (8, 8, 8), 1, 0.01), inputs(16, 2, (8, 8, 8), 1, 0.01)
    want = forward(m, test)["c"]

    def err(method):
        got = forward(compress_convs(m, calib, {"c": 9}, method=method).model, test)["c"]
        return np.linalg.norm(got - want) / np.linalg.norm(want - want.mean((0, 2, 3),
                                                                            keepdims=True))
    svd, linear = err("svd"), err("linear")
    assert linear < 0.1 * svd and svd > 0.2, (linear, svd)


def relu_error(model: Model, ref: Model, x: np.ndarray, name: str) -> float:
    got, want = forward(model, x)[name], forward(ref, x)[name]
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def test_nonlinear_and_asymmetric_do_not_lose_to_linear_after_the_relu():
    m = net(1)
    calib = inputs(32, 1)                     # 32 x 64 positions: every one is sampled
    fits = {k: compress_convs(m, calib, {"c1": 2, "c2": 3}, method=k).model
            for k in ("linear", "nonlinear", "asymmetric")}
    e1 = {k: relu_error(f, m, calib, "r1") for k, f in fits.items()}
    assert e1["nonlinear"] <= e1["linear"] + 1e-9 and e1["asymmetric"] <= e1["linear"] + 1e-9
    assert e1["nonlinear"] < 0.97 * e1["linear"], e1       # the ReLU is worth modelling
    e2 = {k: relu_error(f, m, calib, "r2") for k, f in fits.items()}
    assert e2["asymmetric"] < e2["nonlinear"] and e2["asymmetric"] < e2["linear"], e2
    # held-out inputs keep the order
    test = inputs(16, 5)
    assert (relu_error(fits["asymmetric"], m, test, "r2")
            < relu_error(fits["linear"], m, test, "r2"))


def test_z_step_is_the_elementwise_minimum():
    rng = np.random.default_rng(0)
    t = np.maximum(rng.standard_normal(200), 0)
    v = rng.standard_normal(200)
    grid = np.linspace(-4, 4, 8001)
    for lam in (0.01, 1.0):
        z = z_step(t, v, lam)
        cost = (t[:, None] - np.maximum(grid, 0)) ** 2 + lam * (grid - v[:, None]) ** 2
        best = cost.min(axis=1)
        got = (t - np.maximum(z, 0)) ** 2 + lam * (z - v) ** 2
        assert np.all(got <= best + 1e-9)


def test_without_a_relu_the_fit_is_the_pca():
    rng = np.random.default_rng(1)
    y = rng.standard_normal((6, 3)) @ rng.standard_normal((3, 500)) + 0.1 * rng.standard_normal(
        (6, 500))
    f = fit_nonlinear(y, y, 3, relu=False)
    yc = y - y.mean(axis=1, keepdims=True)
    u = np.linalg.svd(yc, full_matrices=False)[0][:, :3]
    np.testing.assert_allclose(f.p @ f.qt, u @ u.T, atol=1e-6)


def test_reduced_rank_regression():
    """At full rank it is least squares with an intercept; at rank r it is no worse than
    least squares projected onto any r directions, here the top ones of the fitted values."""
    rng = np.random.default_rng(2)
    y = rng.standard_normal((5, 400))
    z = rng.standard_normal((4, 5)) @ y + 0.3 * rng.standard_normal((4, 400)) + 1.0
    a = np.vstack([y, np.ones(400)]).T
    coef = np.linalg.lstsq(a, z.T, rcond=None)[0].T
    f = Regression(y, 4).fit(z)
    np.testing.assert_allclose(f.apply(y), coef @ a.T, atol=1e-6)
    f2 = Regression(y, 2).fit(z)
    fitted = coef @ a.T
    u = np.linalg.svd(fitted - fitted.mean(1, keepdims=True))[0][:, :2]
    proj = u @ u.T @ (fitted - fitted.mean(1, keepdims=True)) + fitted.mean(1, keepdims=True)
    assert np.linalg.norm(z - f2.apply(y)) <= np.linalg.norm(z - proj) + 1e-9
    assert np.linalg.matrix_rank(f2.p @ f2.qt) == 2


@pytest.mark.parametrize("target", [1.5, 2.5])
def test_speedup_target_is_met(target):
    m = net()
    r = compress_convs(m, inputs(16, 1), speedup=target)
    assert conv_macs(m) / conv_macs(r.model) >= target
    for rep in r.layers:           # every decomposed layer saves MACs
        assert rep.macs_after < rep.macs_before
    assert {rep.layer for rep in r.layers} | set(r.skipped) == {"c1", "c2", "c3"}


def test_speedup_prefers_the_layer_with_low_rank_responses():
    """With a planted rank-2 weight, c2's responses have two directions: dropping its other
    eigenvalues costs no energy, so the greedy cuts only c2, and stops as soon as the budget
    is met. Convs: c1 8*36*64 = 18432, c2 12*72*64 = 55296, c3 12*12*64 = 9216 MACs; at
    1.5x the budget is 55296, so c2 may cost 27648: rank 5 (5*(72 + 12)*64 = 26880)."""
    m = net()
    rng = np.random.default_rng(7)
    c2 = m.layer("c2")
    c2.weight = (rng.standard_normal((12, 2)) @ rng.standard_normal((2, 72)) / 8
                 ).reshape(12, 8, 3, 3).astype(np.float32)
    r = compress_convs(m.with_layers(m.layers), inputs(16, 1), speedup=1.5)
    assert {rep.layer: rep.rank for rep in r.layers} == {"c2": 5}


def test_greedy_rank_selection_by_hand():
    """Convs of :func:`net`: c1 18432 MACs (44*64 per rank, saves from rank 6 down), c2
    55296 (84*64 = 5376 per rank, from 10), c3 9216 (24*64 = 1536, from 5); 82944 in all.
    c3's responses have 5 directions, c1's and c2's are flat: dropping c3's 7 empty ones
    is free (rank 5 saves 1536), then c2's cost the least energy per MAC: at rank 10 it
    saves 1536, at 9 6912. A budget of 78000 is met at c2 = 9 (74496), which leaves room to
    undo c3's small saving (76032 <= 78000)."""
    eps = [1e-12] * 7
    energies = {"c1": np.ones(8), "c2": np.ones(12), "c3": np.array([1.0] * 5 + eps)}
    assert select_ranks(net(), energies, {}, 82944 / 78000) == {"c2": 9}
    # at a budget of 75000, c3's saving is needed: 74496 + 1536 > 75000
    assert select_ranks(net(), energies, {}, 82944 / 75000) == {"c2": 9, "c3": 5}
    # a fixed rank counts at its cost: c1 at rank 1 (2816) leaves the rest within 78000
    assert select_ranks(net(), {k: energies[k] for k in ("c2", "c3")}, {"c1": 1},
                        82944 / 78000) == {}


def test_grouped_convs_are_skipped_and_refused():
    rng = np.random.default_rng(0)
    dw = Conv2d("dw", ("x",), weight=rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
                bias=None, pads=(1, 1, 1, 1), groups=4)
    m = Model("g", "x", (4, 8, 8), [dw, ReLU("r", ("dw",)),
                                    conv(rng, "pw", "r", 8, 4, 1)])
    r = compress_convs(m, inputs(8, 1), speedup=1.2)
    assert "grouped" in r.skipped["dw"] and [rep.layer for rep in r.layers] == ["pw"]
    with pytest.raises(DynfixError, match="grouped"):
        compress_convs(m, inputs(8, 1), {"dw": 2})


@pytest.mark.parametrize("ranks,speedup,match", [
    ({"zz": 2}, None, "no layer 'zz'"),
    ({"fc": 2}, None, "is a linear, not a convolution"),
    ({"c2": 13}, None, r"rank must be in 1\.\.12"),
    ({"c2": 0}, None, "rank must be in"),
    ({}, 40.0, "out of reach"),
    ({}, 0.5, "must be above 1"),
    ({}, None, "nothing to compress")])
def test_errors(ranks, speedup, match):
    with pytest.raises(DynfixError, match=match):
        compress_convs(net(), inputs(4, 1), ranks, speedup)


def test_parse_lowrank():
    assert parse_lowrank(["c2=8,c3=16", " c4 = 2"]) == {"c2": 8, "c3": 16, "c4": 2}
    assert parse_lowrank("c2=8") == {"c2": 8}
    for bad in (["c2"], ["c2=x"], ["c2=1,c2=2"], ["c2=1,"], [], [""]):
        with pytest.raises(DynfixError):
            parse_lowrank(bad)


def test_compressed_model_quantizes_and_its_integer_model_runs():
    m = net()
    calib = inputs(32, 1)
    c = dynfix.compress(m, lowrank={"c2": 4}, speedup=1.5, calib=calib)
    q = dynfix.quantize(c.model, calib=calib, bits="8")
    e = dynfix.evaluate(c.model, data=inputs(16, 3), quant=q, metric="sqnr")
    assert e.sqnr_db > 25
    assert c.conv_macs_before / c.conv_macs_after >= 1.5
    assert c.macs_before - c.macs_after == c.conv_macs_before - c.conv_macs_after


def test_api_errors():
    with pytest.raises(DynfixError, match="calibration inputs: give calib"):
        dynfix.compress(net(), lowrank="c2=4")
    with pytest.raises(DynfixError, match="nothing to compress: give svd, lowrank or speedup"):
        dynfix.compress(net())
    with pytest.raises(DynfixError, match="lowrank_method 'pca'"):
        dynfix.compress(net(), lowrank="c2=4", calib=inputs(4, 1), lowrank_method="pca")


def test_cli_methods_match_the_library():
    from dynfix.commands.compress import METHODS as CLI_METHODS
    assert sorted(CLI_METHODS) == sorted(METHODS)


def test_cli_lowrank_and_speedup(tmp_path, capsys):
    from dynfix.cli import main
    yaml_io = pytest.importorskip("dynfix.quant.yaml_io")
    yaml_io.save_yaml(net(), tmp_path / "n.yaml")
    np.save(tmp_path / "x.npy", inputs(16, 1))
    r = subprocess.run([sys.executable, "-m", "dynfix.cli", "compress", str(tmp_path / "n.yaml"),
                        "--lowrank", "c2=3", "--speedup", "1.5", "--calib",
                        str(tmp_path / "x.npy"), "-o", str(tmp_path / "n2.onnx"), "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert {x["layer"]: x["rank"] for x in out["conv_layers"]}["c2"] == 3
    assert out["conv_macs_before"] / out["conv_macs_after"] >= 1.5
    m2 = dynfix.load_model(tmp_path / "n2.onnx")
    assert m2.layer("c2_lr").weight.shape == (3, 8, 3, 3)
    assert conv_macs(m2) == out["conv_macs_after"]
    base = ["compress", str(tmp_path / "n.yaml"), "-o", str(tmp_path / "n3.yaml")]
    calib = ["--calib", str(tmp_path / "x.npy")]
    for args, msg in [
            (["--lowrank", "c2=3"],
             "low-rank convolutions are fitted on calibration inputs: give --calib"),
            (["--lowrank", "zz=3", *calib], "--lowrank: model 'n' has no layer 'zz'"),
            (["--lowrank", "c2=20", *calib], "--lowrank c2=20: rank must be in 1..12"),
            (["--speedup", "40", *calib], "--speedup 40 is out of reach"),
            ([], "nothing to compress: give --svd, --lowrank or --speedup")]:
        assert main(base + args) == 1
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err
    assert main(base + ["--lowrank", "c2=3,c3=4", *calib]) == 0
    text = capsys.readouterr().out
    assert "c2: rank 3/12, 55296 -> 16128 MACs" in text and "c3: rank 4/12" in text
    assert [layer.name for layer in yaml_io.load_yaml(tmp_path / "n3.yaml").layers][2:4] == [
        "c2_lr", "c2"]


@pytest.mark.slow
@pytest.mark.usefixtures("icarus")
def test_decomposed_convs_run_bit_exact_on_the_engine(tmp_path):
    """The two convs of each decomposed layer are ordinary convs (a k x k one into d'
    channels, a 1 x 1 one): the generated engine runs them bit for bit like the integer
    model."""
    from dynfix.hw.config import EngineConfig
    from dynfix.quant.search import search
    from sim_helpers import check, simulate
    calib = inputs(32, 1)
    c = compress_convs(net(), calib, {"c1": 3, "c2": 4})
    spec = search(c.model, calib)
    cm, ref, res = simulate(c.model, spec, EngineConfig(tn=4, tm=2), calib[:2], tmp_path)
    assert [p.name for p in cm.plans][:4] == ["c1_lr", "c1", "c2_lr", "c2"]
    check(cm, ref, res)
