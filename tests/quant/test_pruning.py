"""Structured channel pruning (quant/pruning.py) and ``dynfix compress --prune``."""

import json
from dataclasses import replace

import numpy as np
import pytest

import dynfix
from cli_helpers import run_cli
from dynfix.errors import DynfixError
from dynfix.quant.float_model import forward
from dynfix.quant.ir import Add, Concat, Conv2d, Flatten, Linear, MaxPool2d, Model, ReLU
from dynfix.quant.pruning import channel_units, on_tile, parse_prune, prune, remove


def conv(rng, name, inp, m, c, k, groups=1, **kw):
    return Conv2d(name, (inp,), weight=(rng.standard_normal((m, c // groups, k, k))
                                        / np.sqrt(c * k * k / groups)).astype(np.float32),
                  bias=(0.2 * rng.standard_normal(m)).astype(np.float32), groups=groups, **kw)


def fc(rng, name, inp, m, f):
    return Linear(name, (inp,), weight=(rng.standard_normal((m, f)) / np.sqrt(f))
                  .astype(np.float32), bias=(0.1 * rng.standard_normal(m)).astype(np.float32))


def chain(seed: int = 0, dead: tuple[int, ...] = ()) -> Model:
    """c1 3x3 4->8, ReLU, c2 3x3 8->6 (no padding), ReLU, pool, flatten, FC 6*3*3 -> 5, on
    4 x 8 x 8 inputs; c1's ``dead`` channels have zero weights and a negative bias."""
    rng = np.random.default_rng(seed)
    c1 = conv(rng, "c1", "x", 8, 4, 3, pads=(1, 1, 1, 1))
    for j in dead:
        c1.weight[j], c1.bias[j] = 0, -1
    return Model("chain", "x", (4, 8, 8), [
        c1, ReLU("r1", ("c1",)), conv(rng, "c2", "r1", 6, 8, 3), ReLU("r2", ("c2",)),
        MaxPool2d("p", ("r2",)), Flatten("f", ("p",)), fc(rng, "fc", "f", 5, 54)])


def graph(seed: int = 0) -> Model:
    """A residual Add (c1 and c3 tied), a depthwise conv after c3's sum, a Concat of two
    convs and an FC: every kind of channel bookkeeping on 3 x 6 x 6 inputs."""
    rng = np.random.default_rng(seed)
    return Model("graph", "x", (3, 6, 6), [
        conv(rng, "c1", "x", 6, 3, 3, pads=(1, 1, 1, 1)), ReLU("r1", ("c1",)),
        conv(rng, "c2", "r1", 5, 6, 3, pads=(1, 1, 1, 1)), ReLU("r2", ("c2",)),
        conv(rng, "c3", "r2", 6, 5, 1), Add("a", ("r1", "c3")), ReLU("ra", ("a",)),
        conv(rng, "dw", "ra", 12, 6, 3, groups=6, pads=(1, 1, 1, 1)), ReLU("rd", ("dw",)),
        conv(rng, "ca", "rd", 4, 12, 1), conv(rng, "cb", "rd", 3, 12, 1),
        Concat("cat", ("ca", "cb")), ReLU("rc", ("cat",)), Flatten("f", ("rc",)),
        fc(rng, "fc", "f", 4, 7 * 36)])


def data(model: Model, n: int, seed: int) -> np.ndarray:
    shape = (n,) + tuple(model.input_shape)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def zeroed(model: Model, pruned: set[int]) -> Model:
    """``model`` with every channel of the units ``pruned`` made zero (the producers'
    filters and biases, a depthwise conv's bias on those channels), shapes unchanged."""
    ch = channel_units(model)
    m = model.with_layers([replace(layer) for layer in model.layers])
    for layer in m.layers:
        if isinstance(layer, (Conv2d, Linear)):
            layer.weight, layer.bias = layer.weight.copy(), layer.bias.copy()
            gone = ~ch.keep(layer.name, pruned)
            layer.weight[gone], layer.bias[gone] = 0, 0
    return m


def test_channels_removed_consistently_and_equal_to_zeroing():
    m = graph()
    ch = channel_units(m)
    fams = {"+".join(k): len(v) for k, v in ch.families.items()}
    assert fams == {"c1+c3": 6, "c2": 5, "ca": 4, "cb": 3}
    assert set(ch.blocked) == {"fc"}
    rng = np.random.default_rng(1)
    pruned = {int(r) for rs in ch.families.values() for r in rng.choice(rs, 2, replace=False)}
    p = remove(m, ch, pruned)
    w = {layer.name: layer.weight.shape for layer in p.layers if hasattr(layer, "weight")}
    assert w == {"c1": (4, 3, 3, 3), "c2": (3, 4, 3, 3), "c3": (4, 3, 1, 1),
                 "dw": (8, 1, 3, 3), "ca": (2, 8, 1, 1), "cb": (1, 8, 1, 1), "fc": (4, 3 * 36)}
    assert p.layer("dw").groups == 4 and p.layer("cat").out_shape == (3, 6, 6)
    x = data(m, 4, 2)
    np.testing.assert_allclose(forward(p, x)["fc"], forward(zeroed(m, pruned), x)["fc"],
                               rtol=1e-4, atol=1e-5)
    assert m.layer("c1").weight.shape == (6, 3, 3, 3)         # the original is untouched
    assert m.layer("r1").out_shape == (6, 6, 6)


def test_dead_channels_removed_without_changing_the_output():
    """c1's dead channels are zero after the ReLU: pruning them (ranked first by both
    rankings, at exactly their share) leaves every output as it was; the MACs fall by the
    hand-computed amount."""
    m = chain(dead=(2, 5))
    x = data(m, 16, 3)
    for rank in ("response", "l1"):
        r = prune(m, x, {"c1": 0.25}, rank=rank)
        assert r.model.layer("c1").weight.shape == (6, 4, 3, 3)
        assert r.model.layer("c2").weight.shape == (6, 6, 3, 3)
        np.testing.assert_allclose(forward(r.model, x)["fc"], forward(m, x)["fc"],
                                   rtol=1e-5, atol=1e-5)
        assert r.sqnr_db > 80 and r.agreement == 1
    # c1: 2 of 8 filters of 4*9 on 8x8; c2: 2 of 8 input channels, 6 filters of 3x3 on 6x6
    assert r.macs_before - r.macs_after == 2 * 36 * 64 + 6 * 2 * 9 * 36
    [c1] = [x for x in r.layers if x.layer == "c1"]
    assert (c1.out_before, c1.out_after, c1.sparsity) == (8, 6, 0.25)


def test_constant_channel_refitted_into_the_next_bias():
    """A channel with zero weights and a positive bias outputs a constant: removing it
    and refitting c2's bias (no padding there) keeps the output exact; without the refit
    it does not."""
    m = chain()
    m.layer("c1").weight[3], m.layer("c1").bias[3] = 0, 0.7
    x = data(m, 16, 4)
    r = prune(m, x, {"c1": 0.125})
    assert r.model.layer("c1").weight.shape[0] == 7
    np.testing.assert_allclose(forward(r.model, x)["fc"], forward(m, x)["fc"],
                               rtol=1e-4, atol=1e-5)
    ch = channel_units(m)
    plain = remove(m, ch, {int(ch.roots["c1"][3])})
    assert np.abs(forward(plain, x)["fc"] - forward(m, x)["fc"]).max() > 1e-2


def test_sweep_finds_the_dead_layer_free_to_prune():
    """c1 has half its channels dead, c2 none: the sweep shows c1 free up to half, and a
    target the dead channels can meet is met by c1 alone."""
    m = chain(dead=(0, 1, 4, 7))
    x = data(m, 32, 5)
    dead_macs = 4 * 36 * 64 + 6 * 4 * 9 * 36
    r = prune(m, x, target=0.9 * dead_macs / m.summary()["total_macs"])
    fam = {f.name: f for f in r.families}
    assert all(p.sqnr_db == np.inf for p in fam["c1"].sweep if p.fraction <= 0.5)
    assert all(p.sqnr_db < 60 for p in fam["c1"].sweep if p.fraction > 0.5)
    assert all(p.sqnr_db < 60 for p in fam["c2"].sweep)
    assert fam["c2"].pruned == 0 and 1 <= fam["c1"].pruned <= 4
    assert r.sqnr_db > 80
    assert 1 - r.macs_after / r.macs_before >= 0.9 * dead_macs / r.macs_before


def test_target_met_by_macs_and_weights():
    m = graph()
    x = data(m, 16, 6)
    for by in ("macs", "weights"):
        r = prune(m, x, target=0.3, by=by)
        before, after = ((r.macs_before, r.macs_after) if by == "macs"
                         else (r.weights_before, r.weights_after))
        assert 0.3 <= 1 - after / before < 0.6
        s = r.model.summary()
        assert r.macs_after == s["total_macs"]


def test_on_tile_rounds_the_kept_count_up():
    """Kept counts rounded up to a multiple of 16: 64 - 5 keeps all 64, 64 - 20 keeps 48,
    64 - 47 keeps 32; a family of 20 keeps 16 or all 20; one of at most 16 keeps all."""
    assert [on_tile(64, p, 16) for p in (0, 5, 16, 20, 47, 63)] == [0, 0, 16, 16, 32, 48]
    assert [on_tile(20, p, 16) for p in (3, 4, 19)] == [0, 4, 4]
    assert [on_tile(16, p, 16) for p in (1, 15)] == [0, 0] and on_tile(8, 7, 16) == 0
    assert on_tile(64, 5, 1) == 5


def test_pruned_counts_on_the_tile():
    """chain (c1: 8 channels, c2: 6) with kept counts multiples of 4: each fraction is
    rounded to fewer channels pruned, by less than 4; c2 (6) can only keep 4 or 6; with 8
    c2 is left alone; a target is met with whole multiples."""
    m = chain()
    x = data(m, 16, 3)
    for f1, f2, want in ((0.5, 0.5, (4, 2)), (0.25, 0.2, (0, 0)), (0.6, 0.7, (4, 2)),
                         (0.9, 0.1, (4, 0))):
        r = prune(m, x, {"c1": f1, "c2": f2}, multiple=4)
        got = tuple(f.pruned for f in r.families)
        assert got == want and r.multiple == 4
        for f, frac in zip(r.families, (f1, f2)):
            asked = min(round(frac * f.units), f.units - 1)
            assert 0 <= asked - f.pruned < 4
            assert f.pruned == 0 or (f.units - f.pruned) % 4 == 0
        assert [r.model.layer(n).weight.shape[0] for n in ("c1", "c2")] == \
            [8 - want[0], 6 - want[1]]
    r = prune(m, x, {"c1": 0.5, "c2": 0.5}, multiple=8)
    assert [f.pruned for f in r.families] == [0, 0]
    r = prune(m, x, target=0.3, multiple=4)
    assert 1 - r.macs_after / r.macs_before >= 0.3
    assert all(f.pruned == 0 or (f.units - f.pruned) % 4 == 0 for f in r.families)
    assert any(f.pruned for f in r.families)


def test_residual_and_model_input_constraints():
    m = graph()
    x = data(m, 8, 7)
    r = prune(m, x, {"c3": 0.5})                        # c1 goes alike
    assert r.model.layer("c1").weight.shape[0] == 3 == r.model.layer("c3").weight.shape[0]
    with pytest.raises(DynfixError, match="share their channels .* pruned alike"):
        prune(m, x, {"c1": 0.5, "c3": 0.25})
    rng = np.random.default_rng(0)
    skip = Model("skip", "x", (3, 6, 6), [
        conv(rng, "c1", "x", 3, 3, 3, pads=(1, 1, 1, 1)), Add("a", ("x", "c1")),
        Flatten("f", ("a",)), fc(rng, "fc", "f", 2, 108)])
    with pytest.raises(DynfixError, match="'c1' cannot be pruned: it is the model input"):
        prune(skip, data(skip, 4, 1), {"c1": 0.5})


@pytest.mark.parametrize("kw, match", [
    ({"fractions": {"zz": 0.5}}, "prune: model 'chain' has no layer 'zz'"),
    ({"fractions": {"c1": 1.0}}, r"prune c1=1: the fraction must be at least 0 and below 1"),
    ({"fractions": {"r1": 0.5}}, "'r1' cannot be pruned: it is a relu layer"),
    ({"fractions": {"fc": 0.5}}, "'fc' cannot be pruned: its channels are the model output"),
    ({"target": 1.5}, "prune_target must be above 0 and below 1"),
    ({"target": 0.99}, "prune_target 0.99 is out of reach"),
    ({"fractions": {"c1": 0.5}, "rank": "l2"}, "prune_rank 'l2': choose one of"),
    ({"fractions": {"c1": 0.5}, "multiple": 0}, "prune_multiple 0: a number of channels"),
    ({}, "nothing to prune")])
def test_errors(kw, match):
    m = chain()
    with pytest.raises(DynfixError, match=match):
        prune(m, data(m, 4, 1), **kw)


def test_parse_prune():
    assert parse_prune(["c1=0.25,c2=.5", "fc=0"]) == {"c1": 0.25, "c2": 0.5, "fc": 0.0}
    for bad in (["c1"], ["c1=x"], ["c1=0.1,c1=0.2"], [""], "c1=-0.5"):
        with pytest.raises(DynfixError):
            parse_prune(bad)


def test_cli(tmp_path):
    yaml_io = pytest.importorskip("dynfix.quant.yaml_io")
    m = chain(dead=(2, 5))
    yaml_io.save_yaml(m, tmp_path / "n.yaml")
    np.save(tmp_path / "x.npy", data(m, 16, 1))
    base = ["compress", str(tmp_path / "n.yaml"), "-o", str(tmp_path / "p.yaml")]
    calib = ["--calib", str(tmp_path / "x.npy")]
    code, out, err = run_cli(base + ["--prune", "c1=0.25", *calib, "--json"])
    assert code == 0, err
    rep = json.loads(out, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))["pruning"]
    assert {f["name"]: f["pruned"] for f in rep["families"]} == {"c1": 2, "c2": 0}
    assert dynfix.load_model(tmp_path / "p.yaml").layer("c2").weight.shape == (6, 6, 3, 3)
    code, out, err = run_cli(base + ["--prune", "c1=0.25", "--prune-multiple", "4", *calib,
                                     "--json"])
    assert code == 0, err
    rep = json.loads(out)["pruning"]
    assert rep["multiple"] == 4 and [f["pruned"] for f in rep["families"]] == [0, 0]
    code, out, err = run_cli(base + ["--prune", "c1=0.5", "--prune-multiple", "4", *calib])
    assert code == 0 and "kept channels multiples of 4" in out, err
    code, out, err = run_cli(base + ["--prune-target", "0.1", *calib])
    assert code == 0, err
    assert "c1: 8 -> " in out and "fc: not pruned (its channels are the model output)" in out
    for args, msg in [
            (["--prune", "c1=0.25"], "pruning is fitted on calibration inputs: give --calib"),
            (["--prune", "c1", *calib], "--prune 'c1': expected LAYER=FRACTION"),
            (["--prune-target", "2", *calib], "--prune-target must be above 0 and below 1"),
            (["--prune", "r1=0.5", *calib], "--prune: layer 'r1' cannot be pruned"),
            ([], "give --svd, --lowrank or --speedup (or --prune, --prune-target)"),
            (["--prune-multiple", "4", "--svd", "fc=2"],
             "--prune-multiple rounds the pruned channel counts: give --prune or "
             "--prune-target too")]:
        code, _, err = run_cli(base + args)
        assert code == 1 and len(err) == 1 and msg in err[0], err


def engine_net() -> Model:
    """:func:`chain` with a padded c2 (a shape the engine tiles), 4 dead c1 channels."""
    m = chain(dead=(1, 3, 4, 6))
    m.layer("c2").pads = (1, 1, 1, 1)
    return Model("chain", "x", (4, 8, 8), m.layers[:-1] + [
        fc(np.random.default_rng(9), "fc", "f", 5, 6 * 16)])


def test_pruned_model_needs_fewer_cycles_and_weight_words():
    from dynfix.hw.compiler import compile_model
    from dynfix.hw.config import EngineConfig
    from dynfix.hw.cycle_model import estimate
    from dynfix.quant.search import search
    m = engine_net()
    x = data(m, 16, 2)
    p = prune(m, x, {"c1": 0.5, "c2": 1 / 3}).model
    cfg = EngineConfig(tn=2, tm=2)
    cm = {k: compile_model(mm, search(mm, x, method="greedy-paper"), cfg)
          for k, mm in (("full", m), ("pruned", p))}
    cycles = {k: estimate(c)["cycles_per_image"] for k, c in cm.items()}
    assert cycles["pruned"] < 0.8 * cycles["full"]
    words = {k: c.config.weight_depth for k, c in cm.items()}
    assert words["pruned"] < 0.8 * words["full"], words


@pytest.mark.slow
@pytest.mark.usefixtures("icarus")
def test_pruned_model_runs_bit_exact_on_the_engine(tmp_path):
    """The pruned model is an ordinary smaller model: the generated engine runs it bit for
    bit like the integer model, in fewer cycles than the unpruned one."""
    from dynfix.hw.compiler import compile_model
    from dynfix.hw.config import EngineConfig
    from dynfix.hw.cycle_model import estimate
    from dynfix.quant.search import search
    from sim_helpers import check, simulate
    m = engine_net()
    x = data(m, 16, 2)
    p = prune(m, x, {"c1": 0.5, "c2": 1 / 3}).model
    cfg = EngineConfig(tn=2, tm=2)
    cm, ref, res = simulate(p, search(p, x, method="greedy-paper"), cfg, x[:2], tmp_path)
    check(cm, ref, res)
    full = estimate(compile_model(m, search(m, x, method="greedy-paper"), cfg))
    assert res.cycles[0] < full["cycles_per_image"]
