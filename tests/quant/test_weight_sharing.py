"""Weight sharing on the fixed-point grid (quant/weight_sharing.py) and ``dynfix quantize
--share``."""

import numpy as np
import pytest

import dynfix
from cli_helpers import run_cli
from dynfix.errors import DynfixError
from dynfix.inputs import load_inputs, load_spec
from dynfix.quant.int_model import IntModel, row_fls
from dynfix.quant.ir import Linear
from dynfix.quant.qspec import LayerFormat
from dynfix.quant.huffman import huffman_decode, huffman_encode, huffman_lengths
from dynfix.quant.weight_sharing import (kmeans_1d, nearest, on_grid, parse_share,
                                         share_layer, with_zero)
from dynfix.quant.weight_sharing import summary as share_summary
from hw_models import channel_net


@pytest.fixture(scope="module")
def shared_digits():
    """digits, greedy-paper formats, then 3-bit sharing of every layer."""
    return dynfix.quantize("digits", "digits", method="greedy-paper", share=3)


def test_per_channel_and_depthwise_shared_in_the_integer_domain():
    x = np.random.default_rng(6).standard_normal((64, 2, 6, 6)).astype(np.float32)
    q = dynfix.quantize(channel_net(), x, method="greedy-paper",
                        options={"per_channel": True}, share={"c1": 3, "dw": 2})
    assert q.spec.layers["c1"].ch_fl and [r.layer for r in q.sharing] == ["c1", "dw"]
    im = IntModel(q.model, q.spec)
    for name, b in (("c1", 3), ("dw", 2)):
        f = q.spec.layers[name]
        w = q.spec.params[name]["weight"].astype(np.float64)
        scaled = w * np.ldexp(1.0, row_fls(f.fl_w, f.ch_fl, w))
        assert np.array_equal(scaled, np.round(scaled))
        assert len(np.unique(scaled)) <= 2 ** b          # one integer codebook per layer
        np.testing.assert_array_equal(im.weights[name], scaled)
    assert len(np.unique(im.weights["fc"])) > 8


def test_kmeans_finds_known_clusters():
    rng = np.random.default_rng(1)
    centers = np.array([-3.0, -1.0, 2.0, 5.0])
    truth = rng.integers(0, 4, 400)
    v = centers[truth] + 0.05 * rng.standard_normal(400)
    c, idx = kmeans_1d(v, 4)
    np.testing.assert_allclose(c, centers, atol=0.02)
    np.testing.assert_array_equal(idx, truth)
    np.testing.assert_array_equal(nearest(np.array([0.0, 1.0, 3.0]), [0.4, 0.6, 2.1, 9]),
                                  [0, 1, 2, 2])
    np.testing.assert_array_equal(on_grid(np.array([-200.0, 0.4, 0.6, 1.49, 300.0]), 8),
                                  [-128, 0, 1, 127])


def test_shared_weights_on_grid_and_few_values(shared_digits):
    q = shared_digits
    assert [r.layer for r in q.sharing] == ["conv1", "conv2", "fc"]
    im = IntModel(q.model, q.spec)
    for name in ("conv1", "conv2", "fc"):
        f = q.spec.layers[name]
        w = q.spec.params[name]["weight"].astype(np.float64)
        scaled = w * np.ldexp(1.0, row_fls(f.fl_w, f.ch_fl, w))
        assert np.array_equal(scaled, np.round(scaled))              # on the grid
        assert np.abs(scaled).max() <= 128
        assert len(np.unique(scaled)) <= 8
        assert len(np.unique(im.weights[name])) <= 8
        rep = next(r for r in q.sharing if r.layer == name)
        assert rep.bits_after == w.size * 3 + 8 * 8 and rep.bits_before == w.size * 8
    y = q.logits(_digits_x(20))
    assert y.shape == (20, 10)


def _digits_x(n: int) -> np.ndarray:
    return load_inputs("digits", split="test")[0][:n]


def _response_error(layer, wf, xf, w, xd) -> float:
    """The squared pre-activation error once each channel's mean error is removed (what
    the bias correction leaves)."""
    d = layer.products(xd, w) - layer.products(xf, wf)
    d = d - d.mean(axis=tuple(i for i in range(d.ndim) if i != 1), keepdims=True)
    return float(np.sum(d ** 2))


def test_refinement_lowers_the_response_error():
    """Two inputs 100x larger than the other fourteen, their weights all near 0.3, the
    others' all over -1..1: k-means in weight space spreads its entries over -1..1; the
    refinement on the layer's response moves one onto the weights that matter."""
    rng = np.random.default_rng(3)
    scale = np.r_[np.ones(2), np.full(14, 0.01)]
    xf = rng.standard_normal((300, 16)) * scale
    wf = np.c_[rng.uniform(0.3, 0.31, (6, 2)), rng.uniform(-1, 1, (6, 14))].astype(np.float32)
    layer = Linear("fc", ("x",), weight=wf, bias=np.zeros(6, np.float32))
    fmt = LayerFormat("fc", 8, 7, 16, 14, 8, 7, 8, 4, 30)
    q = np.clip(np.floor(wf * 128.0 + 0.5), -128, 127).astype(np.int64)
    xd = np.round(xf * 128) / 128
    shared, rep = share_layer(layer, fmt, wf, q, xd, xf, 2)
    c, _ = kmeans_1d(wf * 128.0, 4)
    c = with_zero(on_grid(c, 8))            # one entry at 0, as share_layer's codebooks
    kq = c[nearest(c, wf * 128.0)].reshape(q.shape)
    e_km = _response_error(layer, wf, xf, kq / 128.0, xd)
    e_sh = _response_error(layer, wf, xf, shared / 128.0, xd)
    assert len(np.unique(shared)) <= 4 and np.all(np.abs(shared) <= 128)
    assert e_sh < 0.5 * e_km
    np.testing.assert_allclose(10 * np.log10(np.sum(layer.products(xf, wf) ** 2) / e_km),
                               rep.sqnr_kmeans_db, atol=1e-6)


def test_zero_entry_forced_only_when_asked():
    """Weights spread over -1..-0.3 and 0.3..1 (none near 0), shared at 2 bits: with the
    zero entry one of the at most 4 values is 0; without it none is, and the response
    error is lower (the entry goes where the weights are)."""
    rng = np.random.default_rng(4)
    xf = rng.standard_normal((300, 12))
    wf = (rng.choice([-1, 1], (5, 12)) * rng.uniform(0.3, 1, (5, 12))).astype(np.float32)
    layer = Linear("fc", ("x",), weight=wf, bias=np.zeros(5, np.float32))
    fmt = LayerFormat("fc", 8, 7, 16, 14, 8, 7, 8, 4, 30)
    q = np.clip(np.floor(wf * 128.0 + 0.5), -128, 127).astype(np.int64)
    xd = np.round(xf * 128) / 128
    with_0, rep0 = share_layer(layer, fmt, wf, q, xd, xf, 2)
    free, rep = share_layer(layer, fmt, wf, q, xd, xf, 2, zero=False)
    assert 0 in with_0 and len(np.unique(with_0)) <= 4 and rep0.zero
    assert 0 not in free and len(np.unique(free)) <= 4 and not rep.zero
    assert _response_error(layer, wf, xf, free / 128.0, xd) \
        < _response_error(layer, wf, xf, with_0 / 128.0, xd)
    assert rep.sqnr_db > rep0.sqnr_db


def test_share_zero_off_through_the_api_and_cli(tmp_path):
    """``share_zero=False``: every layer of the net at most 2**b values, the summary says
    no entry was forced to 0; without sharing the option is an error."""
    x = np.random.default_rng(6).standard_normal((32, 2, 6, 6)).astype(np.float32)
    q = dynfix.quantize(channel_net(), x, method="greedy-paper", share=2, share_zero=False)
    assert [r.zero for r in q.sharing] == [False] * 3
    im = IntModel(q.model, q.spec)
    assert all(len(np.unique(im.weights[n])) <= 4 for n in ("c1", "dw", "fc"))
    assert "no entry forced to 0" in share_summary(q.sharing)
    with pytest.raises(DynfixError, match="share_zero chooses the codebooks"):
        dynfix.quantize(channel_net(), x, method="greedy-paper", share_zero=False)
    code, _, err = run_cli(["quantize", "digits", "--calib", "digits", "--share-zero", "off",
                            "-o", str(tmp_path / "Q.yaml")])
    assert code == 1 and "--share-zero chooses the codebooks of weight sharing: give " \
        "--share too" in err[-1]


def test_refinement_never_worse_on_calibration(shared_digits):
    for r in shared_digits.sharing:
        assert r.sqnr_db >= r.sqnr_kmeans_db
        assert r.sqnr_fixed_db > r.sqnr_db            # 3-bit sharing costs something


def test_huffman_hand_computed_and_round_trip():
    lengths = huffman_lengths(np.array([5, 2, 1, 1]))
    np.testing.assert_array_equal(lengths, [1, 2, 3, 3])
    data, n = huffman_encode(np.array([0, 1, 2, 3, 0]), lengths)   # 0 10 110 111 0
    assert n == 10 and data == bytes([0b01011011, 0b10000000])
    rng = np.random.default_rng(0)
    s = rng.choice(8, 3000, p=[0.4, 0.2, 0.15, 0.1, 0.08, 0.04, 0.02, 0.01])
    lengths = huffman_lengths(np.bincount(s, minlength=8))
    data, n = huffman_encode(s, lengths)
    assert n == int(lengths[s].sum()) < 3 * len(s)
    np.testing.assert_array_equal(huffman_decode(data, n, lengths), s)
    one = huffman_lengths(np.array([0, 7, 0]))
    assert list(one) == [0, 1, 0]
    np.testing.assert_array_equal(huffman_decode(*huffman_encode(np.ones(7, int), one), one),
                                  np.ones(7))


def test_parse_and_errors():
    assert parse_share("4") == 4 and parse_share("conv1=3, fc=5") == {"conv1": 3, "fc": 5}
    for bad in ("1", "9", "conv1=x", "=4"):
        with pytest.raises(DynfixError):
            parse_share(bad)
    with pytest.raises(DynfixError, match="'nope' is not a Conv2d or Linear layer"):
        dynfix.quantize("digits", "digits", method="greedy-paper", share={"nope": 4})


def test_cli_share(tmp_path):
    code, out, err = run_cli(["quantize", "digits", "--calib", "digits", "--method",
                              "greedy-paper", "--share", "conv2=4", "-o",
                              str(tmp_path / "Q.yaml")])
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.startswith("conv2 ")]
    assert rows[-1][1:3] == ["4", "16"]             # the sharing table's row: b, values
    assert "Huffman-coded" in out and (tmp_path / "Q.params.npz").exists()
    spec = dynfix.quantize("digits", "digits", method="greedy-paper").spec
    m = dynfix.load_model("digits")
    back = IntModel(m, load_spec(m, tmp_path / "Q.yaml"))
    assert len(np.unique(back.weights["conv2"])) <= 16
    assert len(np.unique(back.weights["conv1"])) > 16     # not shared
    assert spec.layers["conv2"].fl_w == back.spec.layers["conv2"].fl_w
    for args, msg in ((["--share", "9"], "9-bit indices; choose 2 to 8"),
                      (["--share", "fc=1"], "1-bit indices"),
                      (["--share", "nope=4"], "'nope' is not a Conv2d or Linear layer")):
        code, _, err = run_cli(["quantize", "digits", "--calib", "digits", "-o",
                                str(tmp_path / "E.yaml"), *args])
        assert code == 1 and msg in err[-1]


@pytest.mark.slow
@pytest.mark.usefixtures("icarus")
def test_shared_generate_simulate_bit_exact(shared_digits, tmp_path):
    q = shared_digits
    gen = dynfix.generate(q, tmp_path / "gen", config={"tn": 9, "tm": 1})
    s = dynfix.simulate(gen, q, data=_digits_x(3), images=3)
    assert s.n == 3 and s.mismatches == 0
    np.testing.assert_array_equal(s.outputs.reshape(3, -1), q.logits(_digits_x(3)))


def test_bias_corrected_for_the_mean_shift():
    """The first shared layer's mean response error per channel, on the calibration inputs,
    is what its bias's rounding leaves; with the float bias it is larger."""
    x = np.random.default_rng(6).standard_normal((64, 2, 6, 6)).astype(np.float32) + 1.0
    m = channel_net()
    q = dynfix.quantize(m, x, method="greedy-paper", share={"c1": 2})
    im = IntModel(q.model, q.spec)
    f, layer = q.spec.layers["c1"], m.layer("c1")
    xd = np.ldexp(im.quantize_input(x).astype(np.float64) - q.spec.input_zp, -q.spec.input_fl)
    ws = np.ldexp(im.weights["c1"].astype(np.float64), -f.fl_w)
    bs = np.ldexp(im.biases["c1"].astype(np.float64), -f.fl_b)
    ref = layer.products(x.astype(np.float64), layer.weight.astype(np.float64))
    shifted = (ref - layer.products(xd, ws)).mean(axis=(0, 2, 3))   # float bias 0
    left = shifted - bs
    assert np.abs(left).max() <= np.ldexp(1.0, -f.fl_b) / 2 + 1e-9
    assert np.abs(shifted).max() > 4 * np.abs(left).max()
