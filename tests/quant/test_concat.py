"""Concat along channels: the ONNX import (2-D and 1-D maps, features) against
onnxruntime, its refusals, the writers' round trips, and the quantizer's tie of the joined
maps' formats (the integer model's Concat is then a pure concatenation)."""

from __future__ import annotations

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.quant.float_model import predict
from dynfix.quant.int_model import IntModel
from dynfix.quant.ir import Concat, Model, ReLU
from dynfix.quant.onnx import load_onnx, save_onnx
from dynfix.quant.qspec_io import load_qspec, save_qspec
from dynfix.quant.search import search, tie, tied_maps
from dynfix.quant.yaml_io import load_yaml, save_yaml

from hw_models import conv
from onnx_graphs import GraphBuilder, check_vs_ort


def branches(g: GraphBuilder, axis: int = 1, conv1d: bool = False) -> GraphBuilder:
    """Two conv branches of the input joined along ``axis``, then a conv."""
    x, c = g.x, g.c
    (g.conv1d(4, 3) if conv1d else g.conv(4, 3)).relu()
    a = g.x
    g.x, g.c = x, c
    g.conv1d(3, 1) if conv1d else g.conv(3, 1)
    g.x = g.node("Concat", [a, g.x], axis=axis)
    g.c = 7
    g.conv1d(5, 3) if conv1d else g.conv(5, 3)
    return g


@pytest.mark.parametrize("shape, axis, conv1d", [((3, 6, 5), 1, False), ((3, 6, 5), -3, False),
                                                 ((3, 9), 1, True)], ids=["2d", "2d-neg", "1d"])
def test_concat_matches_onnxruntime(tmp_path, shape, axis, conv1d):
    """A Concat of two conv branches (N x C x H x W, or N x C x L as a map of height 1)
    loads as one Concat layer of 4 + 3 channels; the float model equals onnxruntime."""
    model = check_vs_ort(branches(GraphBuilder(shape), axis, conv1d), tmp_path)
    cat = [layer for layer in model.layers if isinstance(layer, Concat)]
    assert len(cat) == 1 and cat[0].out_shape[0] == 7 and len(cat[0].inputs) == 2
    assert cat[0].offsets(model.in_shapes(cat[0])) == [0, 4]


def test_concat_of_features_matches_onnxruntime(tmp_path):
    """N x F features joined on axis 1 (two Gemms) are one Concat of F1 + F2."""
    g = GraphBuilder((6,))
    x = g.x
    g.gemm(4, features=6)
    a = g.x
    g.x = x
    g.gemm(2, features=6)
    g.x = g.node("Concat", [a, g.x], axis=1)
    g.gemm(3, features=6)
    model = check_vs_ort(g, tmp_path)
    assert [layer.op for layer in model.layers] == ["linear", "linear", "concat", "linear"]


def test_concat_along_another_axis_is_refused(tmp_path):
    """Only the channel axis: a Concat along H names the node and the axis."""
    g = GraphBuilder((3, 6, 5))
    g.conv(4, 3)
    g.x = g.node("Concat", [g.x, g.x], axis=2)
    with pytest.raises(DynfixError, match=r"node /concat2/Concat \(Concat\): concatenates "
                                          r"along axis 2 of a 4-D tensor; only the channel "
                                          r"axis \(1\) is supported"):
        load_onnx(g.save(tmp_path / "m.onnx"))


def test_concat_with_a_constant_is_refused(tmp_path):
    g = GraphBuilder((3, 4, 4))
    g.conv(2, 1)
    g.x = g.node("Concat", [g.constant(np.zeros((1, 2, 4, 4), np.float32)), g.x], axis=1)
    with pytest.raises(DynfixError, match="concatenates constant input"):
        load_onnx(g.save(tmp_path / "m.onnx"))


def unet(seed: int = 0) -> tuple[Model, np.ndarray]:
    """Two branches joined (a ReLU map and a signed one) and a conv after the join."""
    rng = np.random.default_rng(seed)
    layers = [conv(rng, "a", "x", 4, 3, 3, 3, pads=(1, 1, 1, 1)), ReLU("ra", ("a",)),
              conv(rng, "b", "x", 3, 3, 1, 1),
              Concat("cat", ("ra", "b")),
              conv(rng, "c", "cat", 5, 7, 3, 3, pads=(1, 1, 1, 1)), ReLU("rc", ("c",))]
    x = rng.standard_normal((48, 3, 6, 5)).astype(np.float32)
    return Model("unet", "x", (3, 6, 5), layers), x


def test_concat_round_trips_through_onnx_and_yaml(tmp_path):
    model, x = unet()
    save_onnx(model, tmp_path / "m.onnx")
    save_yaml(model, tmp_path / "m.yaml")
    for back in (load_onnx(tmp_path / "m.onnx"), load_yaml(tmp_path / "m.yaml")):
        assert [layer.op for layer in back.layers] == [layer.op for layer in model.layers]
        np.testing.assert_allclose(predict(back, x[:4]), predict(model, x[:4]), rtol=1e-6,
                                   atol=1e-6)


def test_tie_takes_the_fewest_fractional_bits():
    """Hand-made: a group of three at fl 5, 3, 6 all get 3; the untied map keeps its 7."""
    ties = {n: ("a", "b", "c") for n in "abc"}
    assert tie({"x": 7, "a": 5, "b": 3, "c": 6}, ties) == {"x": 7, "a": 3, "b": 3, "c": 3}


def test_tied_maps_follow_joins_through_plain_layers_and_chains():
    """The sources of a join are the layers with a format above it (through ReLUs), or the
    input; a Concat of a Concat ties both joins' sources into one group."""
    rng = np.random.default_rng(1)
    layers = [conv(rng, "a", "x", 2, 3, 1, 1), ReLU("ra", ("a",)),
              conv(rng, "b", "x", 2, 3, 1, 1), conv(rng, "d", "x", 2, 3, 1, 1),
              Concat("j1", ("ra", "x")), Concat("j2", ("j1", "b")),
              conv(rng, "e", "j2", 2, 7, 1, 1)]
    model = Model("chain", "x", (3, 4, 4), layers + [Concat("j3", ("e", "d"))])
    group = ("x", "a", "b")
    assert tied_maps(model) == {"x": group, "a": group, "b": group,
                                "d": ("d", "e"), "e": ("d", "e")}


@pytest.mark.parametrize("method", ["greedy", "greedy-paper", "range", "static"])
def test_joined_maps_share_one_format(method, tmp_path):
    """Every method gives the Concat's inputs and output one format (the ReLU branch could
    be unsigned alone; joined with a signed map it is signed), the integer Concat is the
    concatenation of its inputs' integers, and Q.yaml round-trips the spec."""
    model, x = unet()
    spec = search(model, x, method=method)
    im = IntModel(model, spec)
    assert im.formats["ra"] == im.formats["b"] == im.formats["cat"]
    assert im.formats["cat"].zp == 0
    trace = im.forward(im.quantize_input(x[:8]))
    np.testing.assert_array_equal(trace["cat"], np.concatenate([trace["ra"], trace["b"]], 1))
    save_qspec(spec, tmp_path / "q.yaml")
    back = IntModel(model, load_qspec(tmp_path / "q.yaml", model))
    np.testing.assert_array_equal(back.logits(x[:8]), im.logits(x[:8]))


def test_unsigned_maps_joined_stay_unsigned():
    """Two ReLU branches joined: both unsigned (greedy's unsigned maps), one offset."""
    model, x = unet()
    layers = list(model.layers)
    layers.insert(3, ReLU("rb", ("b",)))
    layers[4] = Concat("cat", ("ra", "rb"))
    model = model.with_layers(layers)
    im = IntModel(model, search(model, x))
    assert im.formats["ra"] == im.formats["rb"] == im.formats["cat"]
    assert im.formats["cat"].zp == -128


def test_untied_spec_and_mixed_widths_are_refused():
    """A spec whose joined maps differ is refused when checked; maps of other widths cannot
    be tied."""
    model, x = unet()
    spec = search(model, x, method="greedy-paper")
    spec.layers["b"].fl_out += 1
    with pytest.raises(DynfixError, match="layer 'cat'.*the maps it joins have formats"):
        IntModel(model, spec)
    with pytest.raises(DynfixError, match=r"maps \['a', 'b'\] are joined \(a Concat\) and "
                                          r"so share one format, but have widths \[8, 6\]"):
        search(model, x, overrides={"b": {"bw_x": 6}})
