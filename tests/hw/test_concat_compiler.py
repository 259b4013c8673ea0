"""The compiler on Concats: inputs written in place at their channel offsets of one map,
identity copies where they cannot be, the map's lifetime, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest

from dynfix.boards.fit import candidates
from dynfix.errors import DynfixError
from dynfix.hw.compiler import compile_model, plan_groups
from dynfix.hw.config import EngineConfig
from dynfix.quant.ir import Add, AvgPool2d, Concat, Conv2d, Flatten, Linear, Model, ReLU
from dynfix.quant.search import search

from hw_models import concat_branches, concat_copies, conv


def entries(model, x, cfg):
    cm = compile_model(model, search(model, x, method="greedy-paper"), cfg)
    return cm, {p.name: p for p in cm.plans}


def test_word_aligned_inputs_write_in_place():
    """On 4 lanes both 4-channel inputs write into the Concat's 8-channel map (2 words a
    pixel): the pool group from word 0, the conv from word 1, both stepping 2 words a pixel
    and writing their own 4 channels; no copy, and the next conv reads the whole map."""
    model, x = concat_branches()
    cm, p = entries(model, x, EngineConfig(tn=4, tm=2))
    assert list(p) == ["a", "b", "c"]
    a, b, c = p["a"].entry, p["b"].entry, p["c"].entry
    assert (a["t_out"], a["out_c"], b["t_out"], b["out_c"]) == (2, 4, 2, 4)
    assert b["out_base"] == a["out_base"] + 1 == c["in_base"] + 1
    assert (c["in_c"], c["t_in"]) == (8, 2)
    # The map lives from a's write to c's read: b's input (the model input) is not in it.
    assert not (a["out_base"] <= b["in_base"] < a["out_base"] + 2 * 4 * 3)


def test_inputs_that_cannot_be_written_in_place_are_copied():
    """The model input and a map another layer reads are copied into their places by a
    1 x 1 depthwise group with unit weights and no shift (an average pool of one cell);
    the last input is written in place; the copies run after it, before the Concat's
    reader, and the skip map stays alive until its copy has read it."""
    model, x = concat_copies()
    cm, p = entries(model, x, EngineConfig(tn=4, tm=2))
    assert list(p) == ["a", "b", "cat.copy0", "cat.copy1", "c"]
    c0, c1 = p["cat.copy0"], p["cat.copy1"]
    assert (c0.kind, c0.kernel, c0.avg, c0.input, c0.slot.offset) == ("dwconv", (1, 1), 1, "x", 0)
    assert (c1.input, c1.output, c1.slot.offset, p["b"].slot.offset) == ("ra", "ra", 4, 8)
    base = p["c"].entry["in_base"]
    assert [q.entry["out_base"] - base for q in (c0, c1, p["b"])] == [0, 1, 2]
    assert all(q.entry["t_out"] == 3 for q in (c0, c1, p["b"]))
    assert (c1.entry["data_shift"], c1.entry["bias_shift"]) == (0, 0)
    ra = p["a"].entry["out_base"]
    assert not ra <= base < ra + 30 and not base <= ra < base + 90   # ra live at copy1
    assert cm.config.depthwise == 1


def test_a_residual_groups_output_is_copied():
    """A group with a residual Add reads its shortcut at its own pixel stride, so its
    output is copied rather than written into the Concat."""
    rng = np.random.default_rng(2)
    layers = [conv(rng, "a", "x", 4, 4, 1, 1), conv(rng, "b", "a", 4, 4, 1, 1),
              Add("s", ("b", "a")), conv(rng, "d", "x", 4, 4, 1, 1),
              Concat("cat", ("s", "d")), conv(rng, "c", "cat", 2, 8, 1, 1)]
    plans, _ = plan_groups(Model("res", "x", (4, 3, 3), layers))
    assert [(q.name, q.slot.offset if q.slot else None) for q in plans] == [
        ("a", None), ("b", None), ("d", 4), ("cat.copy0", 0), ("c", None)]


def odd_concat(reader: str):
    """3 + 4 channels joined, read by a 1 x 1 conv or by an average pool."""
    rng = np.random.default_rng(3)
    last = (conv(rng, "c", "cat", 2, 7, 1, 1) if reader == "conv"
            else AvgPool2d("c", ("cat",), kernel=(2, 2), stride=(2, 2)))
    layers = [conv(rng, "a", "x", 3, 2, 1, 1), conv(rng, "b", "x", 4, 2, 1, 1),
              Concat("cat", ("a", "b")), last, Flatten("f", ("c",)),
              Linear("o", ("f",), weight=np.ones((2, 2 * 4 if reader == "conv" else 7 * 4),
                                                 np.float32))]
    side = 2 if reader == "conv" else 4
    model = Model("odd", "x", (2, side, side), layers)
    x = rng.standard_normal((16, 2, side, side)).astype(np.float32)
    return model, search(model, x, method="greedy-paper")


def test_an_offset_inside_a_word_leaves_unused_lanes():
    """On 4 lanes the second input (channel 3) starts at the next word: the map has 8
    channels a pixel, channel 3 unused, and the conv reading it gets a zero weight there;
    its other weights are the layer's, in order."""
    model, spec = odd_concat("conv")
    cm = compile_model(model, spec, EngineConfig(tn=4, tm=2))
    p = {q.name: q for q in cm.plans}
    assert (p["a"].slot.offset, p["b"].slot.offset, p["b"].slot.shape[0]) == (0, 4, 8)
    assert p["c"].spread == (0, 1, 2, 4, 5, 6, 7) and p["c"].in_shape[0] == 8
    assert p["b"].entry["out_base"] == p["a"].entry["out_base"] + 1 == p["c"].entry["in_base"] + 1
    w = p["c"].weights
    assert w.shape[1] == 8 and not w[:, 3].any()
    from dynfix.quant.int_model import IntModel
    np.testing.assert_array_equal(np.delete(w, 3, axis=1), IntModel(model, spec).weights["c"])
    assert 4 in {lanes for _, lanes, _, _ in candidates(model, 64)}


def test_a_depthwise_reader_of_unused_lanes_is_refused_and_not_fitted():
    """An average pool (a depthwise group) maps each channel onto its own: it cannot read a
    map with unused lanes; one sentence names it, and the fit keeps only lanes dividing 3."""
    model, spec = odd_concat("avg")
    with pytest.raises(DynfixError, match=r"model 'odd' cannot run on an engine of 4 lanes: "
                                          r"c reads Concat 'cat', whose inputs start inside "
                                          r"a map word on this engine \(channel offsets not "
                                          r"multiples of the lanes\), as a depthwise group"):
        compile_model(model, spec, EngineConfig(tn=4, tm=2))
    assert {lanes for _, lanes, _, _ in candidates(model, 64)} <= {1, 3}


def test_concat_output_flattened_maps_and_bulk_maps_are_refused():
    rng = np.random.default_rng(4)
    last = Model("last", "x", (2, 4, 4), [conv(rng, "a", "x", 2, 2, 1, 1),
                                          Concat("cat", ("a", "x"))])
    with pytest.raises(DynfixError, match=r"cat \(Concat\): the model's output"):
        plan_groups(last)
    flat = Model("flat", "x", (2, 2, 2), [
        conv(rng, "a", "x", 2, 2, 1, 1), Flatten("f", ("a",)),
        Linear("l", ("f",), weight=np.ones((4, 8), np.float32)),
        Concat("cat", ("f", "l")), Linear("o", ("cat",), weight=np.ones((2, 12), np.float32))])
    with pytest.raises(DynfixError, match=r"cat \(Concat\): joins 'f', the flattened 2x2x2 "
                                          r"map"):
        plan_groups(flat)
    model, x = concat_branches()
    spec = search(model, x, method="greedy-paper")
    with pytest.raises(DynfixError, match=r"Concat 'cat' cannot run with maps in bulk "
                                          r"memory \(m_bulk\)"):
        compile_model(model, spec, EngineConfig(tn=4, tm=2, w_bulk=1, m_bulk=256))


def test_models_without_a_concat_compile_as_before():
    """Nothing of a plain chain changes: no copy, every group writes its own map."""
    rng = np.random.default_rng(5)
    layers = [conv(rng, "a", "x", 4, 3, 3, 3), ReLU("r", ("a",)),
              Conv2d("b", ("r",), weight=np.ones((2, 4, 1, 1), np.float32))]
    plans, _ = plan_groups(Model("chain", "x", (3, 5, 5), layers))
    assert [(q.name, q.slot, q.writes) for q in plans] == [("a", None, "r"), ("b", None, "b")]
