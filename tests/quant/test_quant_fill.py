"""Range fill (quant/fill.py): the rescaled model computes the float function, each filled
map's threshold lands on a format's top, maps next to an Add keep their scale, the host
scales survive Q.yaml, and the search gains from it where a ReLU6 wastes a quarter of its
format."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.quant import fill
from dynfix.quant.fidelity import outputs, sqnr_db
from dynfix.quant.float_model import forward
from dynfix.quant.int_model import IntModel, is_compute, with_params
from dynfix.quant.ir import Clip, Linear, Model
from dynfix.quant.lower import lower
from dynfix.quant.qspec_io import load_qspec, save_qspec
from dynfix.quant.search import GREEDY, search_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from graph_nets import calib as graph_calib, res_dw_model  # noqa: E402


def _all_maps(model: Model) -> tuple[dict, dict, dict]:
    """Every compute layer's own output and the input as stored maps, 8-bit unsigned where
    a ReLU / Clip follows, else signed (a stand-in for the search's choices)."""
    names = [model.input_name] + [l.name for l in model.layers if is_compute(l)]
    stored, kinds = {}, {}
    for n in names:
        t, after = n, model.consumers(n)
        while len(after) == 1 and not is_compute(after[0]) and after[0].op in ("relu", "clip"):
            t, after = after[0].name, model.consumers(after[0].name)
        stored[n] = t
        kinds[n] = "unsigned" if t != n else "signed"
    return stored, kinds, {n: 8 for n in names}


def test_filled_model_computes_the_float_function():
    m = lower(res_dw_model(3))
    x = graph_calib(60, 2)
    trace = forward(m, x)
    stored, kinds, widths = _all_maps(m)
    f = fill.fill_ranges(m, trace, stored, kinds, widths, "mse")
    # the maps a scale can reach: the input, c1, c3, dw, pw, fc (the output); those read by
    # an Add (c0 -> r0, c2, c4, proj) keep theirs
    assert set(f.scales) == {"x", "c1", "c3", "dw", "pw", "fc"}
    assert all(1 <= c < 2 for c in f.scales.values())
    assert f.input_scale == f.scales["x"] and f.output_scale == f.scales["fc"]
    y = forward(f.model, x * f.input_scale)["fc"] / f.output_scale
    np.testing.assert_allclose(y, trace["fc"], rtol=2e-4, atol=2e-4 * np.abs(trace["fc"]).max())
    # the Clips after dw and pw are scaled with their maps; nothing else changed
    clips = fill.changed_clips(m, f.model)
    assert set(clips) == {"r6", "r6b"}
    assert float(clips["r6"]["hi"]) == pytest.approx(6 * f.scales["dw"])
    # a layer's weights times the scale of the map it makes over that of the map it reads
    sc = f.scales
    made_by = {"c0": 1, "c1": sc["c1"], "c2": 1, "c3": sc["c3"], "c4": 1, "proj": 1,
               "dw": sc["dw"], "pw": sc["pw"], "fc": sc["fc"]}
    reads = {"c0": sc["x"], "c1": 1, "c2": sc["c1"], "c3": 1, "c4": sc["c3"], "proj": 1,
             "dw": 1, "pw": sc["dw"], "fc": sc["pw"]}
    for a, b in zip(m.layers, f.model.layers):
        if is_compute(a):
            np.testing.assert_allclose(b.weight, a.weight * made_by[a.name] / reads[a.name],
                                       rtol=1e-6, err_msg=a.name)
            np.testing.assert_allclose(b.bias, a.bias * made_by[a.name], rtol=1e-6)


def test_threshold_lands_on_a_format_top():
    rng = np.random.default_rng(0)
    # a saturating ReLU6 map: most of the mass at 6, so the threshold is the bound itself
    v = np.clip(rng.normal(4, 3, 20000), 0, 6)
    t, top = fill.threshold(v, "unsigned", 8, "mse")
    assert (t, top) == (6.0, 255)
    c = fill.scale_for(t, top)
    assert c == 255 / 192                       # 6 -> 7.96875 = 255 * 2**-5
    # heavy tails are clipped below the largest value, by the criterion
    lap = rng.laplace(0, 1, 50000)
    t_mse, _ = fill.threshold(lap, "signed", 4, "mse")
    assert t_mse < 0.6 * np.abs(lap).max()
    # a centred map's threshold is half its range around the middle
    u = rng.uniform(-50, 14, 20000)
    t_c, top_c = fill.threshold(u, "centred", 8, "mse")
    assert top_c == 127 and t_c == pytest.approx(32, rel=0.02)
    scale = fill.scale_for(t_c, top_c)
    assert np.log2(top_c / (t_c * scale)) == pytest.approx(round(np.log2(top_c / (t_c * scale))))


def relu6_net(seed=0):
    """16 -> 64 -> ReLU6 -> 10, the hidden map mostly at its bound (a ReLU6 whose [0, 6]
    uses 6/8 of an unsigned 8-bit map's steps at fl 5)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 1.2, (64, 16)).astype(np.float32)
    w2 = rng.normal(0, 0.3, (10, 64)).astype(np.float32)
    layers = [Linear("l1", ("x",), weight=w1, bias=np.full(64, 2.0, np.float32)),
              Clip("r6", ("l1",), lo=0.0, hi=6.0),
              Linear("l2", ("r6",), weight=w2, bias=np.zeros(10, np.float32))]
    x = rng.normal(0, 1, (400, 16)).astype(np.float32)
    return Model("r6net", "x", (16,), layers), x


def test_search_gains_from_filling_a_relu6_map():
    m, x = relu6_net()
    calib, test = x[:200], x[200:]
    no = search_model(m, calib, "8", options=replace(GREEDY, fill=False))
    yes = search_model(m, calib, "8", options=GREEDY)
    assert yes.spec.params.get("r6")                    # the filled start was kept
    assert yes.fidelity.sqnr_db > no.fidelity.sqnr_db + 1.0
    # the ReLU6 map itself (its SQNR does not depend on its scale): 39.6 -> 41.3 dB
    assert yes.spec.layers["l1"].sqnr_db > no.spec.layers["l1"].sqnr_db + 1.0
    # and the output on inputs the search has not seen: 38.0 -> 38.6 dB
    s_no = sqnr_db(*outputs(m, no.spec, test, no.model))
    s_yes = sqnr_db(*outputs(m, yes.spec, test, yes.model))
    assert s_yes > s_no + 0.3, (s_no, s_yes)
    # the filled ReLU6 map spends all 256 steps on [0, 6]
    im = IntModel(yes.model, yes.spec)
    hi = float(yes.spec.params["r6"]["hi"][()])
    assert np.ldexp(hi, im.formats["l1"].fl) == pytest.approx(255, abs=1e-9)
    assert im.formats["l1"].zp == -128


def test_host_scales_and_clip_bounds_round_trip_through_qyaml(tmp_path):
    m, x = relu6_net()
    r = search_model(m, x[:200], "8", options=GREEDY)
    assert r.spec.output_scale != 1.0 and "r6" in r.spec.params
    save_qspec(r.spec, tmp_path / "q.yaml")
    text = (tmp_path / "q.yaml").read_text()
    assert "output_scale:" in text
    back = load_qspec(tmp_path / "q.yaml", m)
    assert (back.input_scale, back.output_scale) == (r.spec.input_scale, r.spec.output_scale)
    a, b = IntModel(with_params(m, back), back), IntModel(r.model, r.spec)
    np.testing.assert_array_equal(a.logits(x), b.logits(x))
    # the dequantized output is in the float model's units: the host divides by the scale
    q = a.logits(x[:50])
    y = a.dequantize(a.output_name, q)
    f = forward(m, x[:50])["l2"]
    assert sqnr_db(f, y) > 30
    assert sqnr_db(f, y * back.output_scale) < 20          # undivided: off by the scale
    # a bad scale is one clear error
    (tmp_path / "bad.yaml").write_text(text.replace("output_scale:", "output_scale: -")
                                       .replace("output_scale: - ", "output_scale: -"))
    with pytest.raises(DynfixError, match="output_scale must be a positive number"):
        load_qspec(tmp_path / "bad.yaml", m)


def test_clip_bound_in_params_must_be_one_number(tmp_path):
    m, x = relu6_net()
    r = search_model(m, x[:200], "8", options=GREEDY)
    save_qspec(r.spec, tmp_path / "q.yaml")
    arrays = dict(np.load(tmp_path / "q.params.npz"))
    arrays["r6:hi"] = np.array([6.0, 7.0])
    np.savez(tmp_path / "q.params.npz", **arrays)
    with pytest.raises(DynfixError, match=r"r6:hi in q.params.npz must be one number"):
        load_qspec(tmp_path / "q.yaml", m)
