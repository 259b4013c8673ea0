"""The importer's passes (quant/onnx/passes), each on a small imported graph built by hand.

Expected values come from numpy on the unfolded graph (the explicit BatchNorm, zeros,
transpose), never from the pass under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.quant.float_model import predict
from dynfix.quant.ir import Affine, AvgPool2d, Conv2d, Flatten, Layer, Linear, ReLU
from dynfix.quant.onnx import passes
from dynfix.quant.onnx.graph import HeldPad, HeldTranspose, ImportGraph
from dynfix.quant.onnx.passes import fold_affine, fold_pad, fold_transpose, prune

RNG = np.random.default_rng(7)


def graph(in_shape, *layers: Layer, output: str | None = None,
          exact: dict | None = None) -> ImportGraph:
    """An imported graph of ``layers`` (each reading what its ``inputs`` name), shapes
    inferred as the reader does."""
    g = ImportGraph("t.onnx", "t", "x", tuple(in_shape))
    for layer in layers:
        layer.out_shape = tuple(layer.infer(*(g.shape(t) for t in layer.inputs)))
        g.layers[layer.name] = layer
        g.origin[layer.name] = f"node {layer.name} ({layer.op})"
    g.output = output or layers[-1].name
    g.exact.update(exact or {})
    return g


def conv(name, src, c_in, c_out, k=3, pads=(0, 0, 0, 0), bias=True):
    w = RNG.normal(size=(c_out, c_in, k, k)).astype(np.float32)
    b = RNG.normal(size=c_out).astype(np.float32) if bias else None
    return Conv2d(name, (src,), weight=w, bias=b, pads=pads)


def affine(name, src, c):
    scale, shift = RNG.normal(size=c), RNG.normal(size=c)
    layer = Affine(name, (src,), scale=scale.astype(np.float32), shift=shift.astype(np.float32))
    return layer, {name: (scale, shift)}


def test_batchnorm_folds_into_the_conv_before_it():
    c = conv("c", "x", 2, 3, bias=False)
    w0 = c.weight.astype(np.float64)
    bn, exact = affine("bn", "c", 3)
    g = graph((2, 5, 5), c, bn, exact=exact)
    x = RNG.normal(size=(4, 2, 5, 5)).astype(np.float32)
    want = predict(g.model(), x)           # the explicit Affine, in float
    fold_affine(g)
    assert list(g.layers) == ["c"] and g.output == "c"
    scale, shift = exact["bn"]
    np.testing.assert_array_equal(c.weight, (w0 * scale[:, None, None, None]).astype(np.float32))
    np.testing.assert_array_equal(c.bias, shift.astype(np.float32))
    np.testing.assert_allclose(predict(g.model(), x), want, rtol=1e-4, atol=1e-5)


def test_affine_stays_where_another_layer_reads_the_conv():
    c = conv("c", "x", 2, 3)
    bn, exact = affine("bn", "c", 3)
    r = ReLU("r", ("c",))
    g = graph((2, 5, 5), c, bn, r, output="bn", exact=exact)
    fold_affine(g)
    assert "bn" in g.layers                 # the ReLU reads the conv too


def test_affine_after_a_relu_stays_and_a_second_one_folds_into_it():
    c = conv("c", "x", 2, 3)
    r = ReLU("r", ("c",))
    a1, e1 = affine("a1", "r", 3)
    a2, e2 = affine("a2", "a1", 3)
    g = graph((2, 5, 5), c, r, a1, a2, exact={**e1, **e2})
    x = RNG.normal(size=(2, 2, 5, 5)).astype(np.float32)
    want = predict(g.model(), x)
    fold_affine(g)
    assert list(g.layers) == ["c", "r", "a1"] and g.output == "a1"
    np.testing.assert_allclose(predict(g.model(), x), want, rtol=1e-4, atol=1e-5)


def test_two_affines_on_the_input_become_the_hosts_normalization():
    """A chain of two at the input folds into one (fold_affine), which the host then
    applies: the first layer is the padded conv, reading the input; the float model is the
    explicit graph's on the same data."""
    a1, e1 = affine("a1", "x", 2)
    a2, e2 = affine("a2", "a1", 2)
    c = conv("c", "a2", 2, 3, pads=(1, 1, 1, 1))
    g = graph((2, 5, 5), a1, a2, c, exact={**e1, **e2})
    x = RNG.normal(size=(3, 2, 5, 5)).astype(np.float32)
    (s1, t1), (s2, t2) = e1["a1"], e2["a2"]
    xn = (x * s1[:, None, None] + t1[:, None, None]) * s2[:, None, None] + t2[:, None, None]
    ref = Conv2d("ref", ("x",), weight=c.weight, bias=c.bias, pads=(1, 1, 1, 1))
    want = predict(graph((2, 5, 5), ref).model(), xn.astype(np.float32))
    fold_affine(g)
    passes.hoist_input_affine(g)
    assert list(g.layers) == ["c"] and c.inputs == ("x",)
    np.testing.assert_allclose(g.input_affine[0], s1 * s2, rtol=1e-6)
    np.testing.assert_allclose(g.input_affine[1], t1 * s2 + t2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predict(g.model(), x), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shared", [True, False])
def test_affine_on_the_input_stays_when_it_is_not_the_only_reader_or_the_output(shared):
    a, exact = affine("a", "x", 2)
    if shared:          # a residual branch reads the raw input too
        g = graph((2, 4, 4), a, conv("c", "a", 2, 2, pads=(1, 1, 1, 1)),
                  conv("d", "x", 2, 2, pads=(1, 1, 1, 1)), output="c", exact=exact)
    else:               # nothing after it: the model would have no layer left
        g = graph((2, 4, 4), a, exact=exact)
    passes.hoist_input_affine(g)
    assert "a" in g.layers and g.input_affine is None


def test_zero_pads_fold_into_the_conv_and_merge():
    p1 = HeldPad("p1", ("x",), pads=(1, 0, 0, 2))
    p2 = HeldPad("p2", ("p1",), pads=(0, 1, 1, 0))
    c = conv("c", "p2", 2, 3, pads=(1, 1, 1, 1))
    g = graph((2, 6, 6), p1, p2, c)
    x = RNG.normal(size=(2, 2, 6, 6)).astype(np.float32)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 2)))   # the two Pads, explicit
    ref = Conv2d("ref", ("x",), weight=c.weight, bias=c.bias, pads=(1, 1, 1, 1))
    want = predict(graph((2, 8, 9), ref).model(), xp)
    fold_pad(g)
    prune(g)
    assert list(g.layers) == ["c"] and c.inputs == ("x",) and c.pads == (2, 2, 2, 3)
    np.testing.assert_allclose(predict(g.model(), x), want, rtol=1e-5, atol=1e-5)


def test_pad_into_an_average_pool_counts_the_zeros():
    p = HeldPad("p", ("x",), pads=(1, 1, 1, 1))
    pool = AvgPool2d("a", ("p",), kernel=(3, 3), stride=(1, 1))
    g = graph((1, 4, 4), p, pool)
    x = RNG.normal(size=(1, 1, 4, 4)).astype(np.float32)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.stack([[xp[0, 0, i:i + 3, j:j + 3].mean() for j in range(4)] for i in range(4)])
    fold_pad(g)
    assert pool.pads == (1, 1, 1, 1) and pool.count_include_pad
    np.testing.assert_allclose(predict(g.model(), x)[0, 0], want, rtol=1e-5)


def test_pad_into_a_pool_with_its_own_exclusive_padding_is_refused():
    p = HeldPad("p", ("x",), pads=(1, 1, 1, 1))
    pool = AvgPool2d("a", ("p",), kernel=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1))
    g = graph((1, 4, 4), p, pool)
    with pytest.raises(DynfixError, match=r"t.onnx: node a \(avgpool\): reads the output of "
                                          r"node p .*count_include_pad=0"):
        fold_pad(g)


def test_transpose_folds_into_the_fc_columns_through_a_relu():
    t = HeldTranspose("t", ("x",), perm=(0, 2, 3, 1))          # NCHW -> NHWC
    r = ReLU("r", ("t",))
    f = Flatten("f", ("r",))
    w = RNG.normal(size=(5, 24)).astype(np.float32)
    fc = Linear("fc", ("f",), weight=w.copy(), bias=np.zeros(5, np.float32))
    g = graph((2, 3, 4), t, r, f, fc)
    x = RNG.normal(size=(3, 2, 3, 4)).astype(np.float32)
    want = np.maximum(x.transpose(0, 2, 3, 1), 0).reshape(3, -1) @ w.T   # explicit
    fold_transpose(g)
    assert list(g.layers) == ["r", "f", "fc"] and r.inputs == ("x",)
    assert r.out_shape == (2, 3, 4)
    np.testing.assert_allclose(predict(g.model(), x), want, rtol=1e-5, atol=1e-5)


def test_two_transposes_compose_and_cancel():
    t1 = HeldTranspose("t1", ("x",), perm=(0, 2, 3, 1))
    r = ReLU("r", ("t1",))
    t2 = HeldTranspose("t2", ("r",), perm=(0, 3, 1, 2))       # back to NCHW
    c = conv("c", "t2", 2, 2, k=1)
    g = graph((2, 3, 4), t1, r, t2, c)
    fold_transpose(g)
    assert list(g.layers) == ["r", "c"] and c.inputs == ("r",) and r.inputs == ("x",)


def test_prune_drops_what_nothing_reads():
    c = conv("c", "x", 1, 2)
    dead = ReLU("dead", ("c",))
    r = ReLU("r", ("c",))
    g = graph((1, 4, 4), c, dead, r)
    prune(g)
    assert list(g.layers) == ["c", "r"]


def test_every_held_kind_has_a_fold_and_a_sentence():
    """The reader refuses a node that reads a held transform by these tables: each kind
    names the operators that take it and where it folds."""
    assert set(passes.HELD) == {"pad", "perm", "cols"}
    for kind, (takes, sentence) in passes.HELD.items():
        assert takes and sentence.startswith("into "), kind
    # folds first, then the dead layers, then the input's normalization (it needs the
    # input's live readers)
    assert passes.GRAPH_PASSES[-2:] == (prune, passes.hoist_input_affine)
