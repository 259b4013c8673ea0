"""The compiler on graphs: residual Adds fused into the right group, map memory allocated by
tensor lifetime (no live tensor overwritten), Resize views read by the groups after them,
clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.hw.compiler import compile_model, plan_groups
from dynfix.hw.config import EngineConfig
from dynfix.quant.ir import Add, Flatten, Linear, MaxPool2d, Model, ReLU, Resize

from hw_models import conv, digits_8bit, residual_net, small_net, view_net


def live_overlaps(cm) -> list[str]:
    """Pairs (group, tensor) where the group writes over a tensor that it or a later group
    still reads, from the program entries alone."""
    plans, n = cm.plans, cm.config.lanes
    region = {}                                   # tensor -> (base, end)

    def words(shape):
        c, h, w = shape
        return h * w * -(-c // n)

    region[plans[0].input] = (plans[0].entry["in_base"],
                              plans[0].entry["in_base"] + words(plans[0].in_shape))
    bad = []
    for i, p in enumerate(plans):
        lo, hi = p.entry["out_base"], p.entry["out_base"] + words(p.out_shape)
        later = {q.input for q in plans[i:]} | {q.shortcut for q in plans[i + 1:] if q.shortcut}
        if p.shortcut and p.shortcut != p.input and p.shortcut not in later:
            # In place over its own shortcut: the same words, read before written.
            if region[p.shortcut] != (lo, hi):
                bad.append(f"{p.name} overlaps its shortcut {p.shortcut} partly")
        elif p.shortcut:
            later.add(p.shortcut)
        for t in later:
            if t in region and t != p.output:
                a, b = region[t]
                if a < hi and lo < b:
                    bad.append(f"{p.name} overwrites {t}")
        region[p.output] = (lo, hi)
    return bad


@pytest.mark.parametrize("cfg", [EngineConfig(tn=4, tm=2), EngineConfig(tn=9, tm=3),
                                 EngineConfig(tn=16, tm=4)])
def test_residual_groups_and_lifetimes(cfg):
    model, spec, _ = residual_net()
    cm = compile_model(model, spec, cfg)
    groups = {p.name: (p.layers, p.input, p.shortcut) for p in cm.plans}
    assert groups["c2"] == (["c2", "add1", "a1"], "r1", "r0")
    assert groups["c4"] == (["c4", "add2", "a2", "f"], "r3", "proj")   # proj computed first
    assert groups["proj"] == (["proj"], "a1", "")
    assert live_overlaps(cm) == []
    # Both Adds write over their shortcuts (r0, proj: read by nothing later).
    base = {p.name: p.entry for p in cm.plans}
    assert base["c2"]["out_base"] == base["c0"]["out_base"] == base["c2"]["sc_base"]
    assert base["c4"]["out_base"] == base["proj"]["out_base"] == base["c4"]["sc_base"]


def test_chain_allocation_never_exceeds_ping_pong():
    for model, spec in (digits_8bit(), small_net()[:2]):
        for cfg in (EngineConfig(tn=4, tm=2), EngineConfig(tn=9, tm=1)):
            cm = compile_model(model, spec, cfg)
            n = cm.config.lanes
            sizes = [cm.plans[0].in_shape] + [p.out_shape for p in cm.plans]
            ping_pong = 2 * max(h * w * -(-c // n) for c, h, w in sizes)
            assert live_overlaps(cm) == [] and cm.config.fmap_depth <= ping_pong


def test_add_without_a_fusable_group_is_refused():
    """Both inputs of the Add also feed other layers: no group can take the Add."""
    rng = np.random.default_rng(0)
    layers = [conv(rng, "a", "x", 4, 2, 1, 1), ReLU("ra", ("a",)),
              conv(rng, "b", "ra", 4, 4, 1, 1),
              Add("s", ("ra", "b")), conv(rng, "c", "b", 4, 4, 1, 1),
              Add("t", ("s", "c")), Flatten("f", ("t",)),
              Linear("fc", ("f",), weight=np.ones((2, 4 * 9), np.float32))]
    model = Model("nofuse", "x", (2, 3, 3), layers)
    with pytest.raises(DynfixError) as e:
        plan_groups(model)
    msg = str(e.value)
    assert "s (Add)" in msg and "no such group" in msg and "\n" not in msg


def test_branch_inside_a_group_is_refused():
    """A conv's output read by its ReLU and by another conv: the ReLU cannot join."""
    rng = np.random.default_rng(0)
    layers = [conv(rng, "a", "x", 4, 2, 1, 1), ReLU("ra", ("a",)),
              conv(rng, "b", "a", 4, 4, 1, 1), Add("s", ("ra", "b"))]
    model = Model("branch", "x", (2, 3, 3), layers)
    with pytest.raises(DynfixError, match=r"ra \(ReLU\): reads 'a', which other layers read"):
        plan_groups(model)


@pytest.mark.parametrize("bits", [1, 4, 8, 13, 26])
def test_memory_words_pack_lanes_low_first_in_twos_complement(bits):
    """A memory word holds its row's elements ``bits`` bits each, element 0 in the low bits,
    negative values in two's complement and bits beyond ``bits`` dropped: checked against
    the word built element by element."""
    from dynfix.hw.compiler.images import _pack
    rng = np.random.default_rng(bits)
    values = rng.integers(-(1 << 40), 1 << 40, size=(6, 9))
    values[0] = -1
    values[1] = 0
    words = _pack(values, bits)
    mask = (1 << bits) - 1
    for row, word in zip(values.tolist(), words):
        assert word == sum((v & mask) << (j * bits) for j, v in enumerate(row))
    assert words[0] == (1 << (9 * bits)) - 1 and words[1] == 0
    assert _pack(np.zeros((3, 0), np.int64), bits) == [0, 0, 0]


@pytest.mark.parametrize("cfg", [EngineConfig(tn=3, tm=4), EngineConfig(tn=9, tm=3)])
def test_resize_views_read_the_map_before_them(cfg):
    """Every group after a Resize reads the map stored before it (the Resize has no map
    of its own) as a view of the Resize's shape; the stored map lives until its last
    reader; the depthwise window (9 lanes, tm 3) takes no group that reads a view."""
    model, spec, _ = view_net()
    cm = compile_model(model, spec, cfg)
    views = {p.name: (p.input, p.in_shape, p.stored_shape, p.resize)
             for p in cm.plans if p.resize != (1, 1)}
    assert views == {"b": ("ra", (6, 6, 8), (6, 3, 4), (2, 2)),
                     "e": ("ra", (6, 6, 8), (6, 3, 4), (2, 2)),
                     "c": ("s", (4, 12, 16), (4, 6, 8), (2, 2)),
                     "d": ("mp", (5, 2, 8), (5, 2, 4), (1, 2)),
                     "ap": ("d", (5, 4, 16), (5, 2, 8), (2, 2)),
                     "fc": ("ap", (5, 4, 16), (5, 2, 8), (2, 2))}
    assert cm.config.resize and live_overlaps(cm) == []
    assert not any(p.window for p in cm.plans)
    assert not {"up", "up2", "up3", "up4", "up5"} & {p.output for p in cm.plans}


def test_resize_readers_other_than_groups_are_refused():
    """A Resize read by a ReLU, a MaxPool, an Add, another Resize, as the output, or one of
    the model input: one error naming each (the engine stores no resized map)."""
    rng = np.random.default_rng(0)
    layers = [Resize("in_up", ("x",)), conv(rng, "a", "in_up", 4, 2, 1, 1),
              Resize("up", ("a",)), ReLU("r", ("up",)),
              conv(rng, "b", "r", 4, 4, 1, 1), Resize("up_b", ("b",)),
              MaxPool2d("p", ("up_b",)), conv(rng, "c", "p", 4, 4, 1, 1),
              Resize("up_c", ("c",)), conv(rng, "d", "up_c", 4, 4, 1, 1),
              Add("s", ("d", "up_c")), Resize("twice", ("up",)),
              conv(rng, "e", "twice", 4, 4, 1, 1), Add("s2", ("s", "e")),
              Resize("last", ("s2",))]
    model = Model("views", "x", (2, 3, 3), layers)
    with pytest.raises(DynfixError) as e:
        plan_groups(model)
    msg = str(e.value)
    assert "\n" not in msg
    assert "in_up (Resize): resizes the model input" in msg
    for what, view in (("r (ReLU)", "up"), ("p (MaxPool2d)", "up_b"), ("s (Add)", "up_c"),
                       ("twice (Resize)", "up")):
        assert f"{what}: reads the Resize '{view}'; the engine stores no resized map" in msg
    model = Model("out", "x", (2, 3, 3), [conv(rng, "a", "x", 4, 2, 1, 1),
                                          Resize("up", ("a",))])
    with pytest.raises(DynfixError, match="the output 'up' is a Resize"):
        plan_groups(model)
    # U-Net's up -> concat -> conv: each Resize is copied into the Concat's map by a group
    # walking its view (the stored 4 x 3 x 3 map as a 4 x 6 x 6 one).
    from dynfix.quant.ir import Concat
    model = Model("unet", "x", (2, 3, 3), [conv(rng, "a", "x", 4, 2, 1, 1),
                                           conv(rng, "b", "x", 4, 2, 1, 1),
                                           Resize("up", ("b",)), Resize("up_a", ("a",)),
                                           Concat("cat", ("up", "up_a")),
                                           conv(rng, "c", "cat", 4, 8, 1, 1)])
    plans, _ = plan_groups(model)
    copies = [(p.name, p.input, p.in_shape, p.resize, p.slot.offset) for p in plans
              if p.slot is not None]
    assert copies == [("cat.copy0", "b", (4, 6, 6), (2, 2), 0),
                      ("cat.copy1", "a", (4, 6, 6), (2, 2), 4)]


def test_maps_read_through_a_view_stay_on_chip():
    """With a small map memory (m_bulk) the large input moves to bulk memory and its conv
    runs in strips, while the map a view reads and the output of the group reading it stay
    on chip (that group is never cut into strips); a memory too small for those names
    them."""
    from dynfix.quant.search import search
    rng = np.random.default_rng(3)
    layers = [conv(rng, "c1", "x", 4, 8, 3, 3, stride=(2, 2), pads=(1, 1, 1, 1)),
              ReLU("r1", ("c1",)), Resize("up", ("r1",)),
              conv(rng, "c2", "up", 4, 4, 3, 3, pads=(1, 1, 1, 1)),
              MaxPool2d("p2", ("c2",)), Flatten("f", ("p2",)),
              Linear("fc", ("f",), weight=rng.standard_normal((3, 64)).astype(np.float32))]
    model = Model("bigin", "x", (8, 8, 8), layers)
    spec = search(model, rng.standard_normal((16, 8, 8, 8)).astype(np.float32), bits="8")
    base = dict(tn=4, tm=2, w_bulk=1, bulk_bits=16)
    cm = compile_model(model, spec, EngineConfig(**base, m_bulk=100))
    assert cm.config.map_bulk and [p.name for p in cm.plans].count("c1") > 1
    (c2,) = [p for p in cm.plans if p.name == "c2"]
    assert c2.entry["di_words"] == c2.entry["do_words"] == 0 and c2.resize == (2, 2)
    with pytest.raises(DynfixError, match=r"maps that must stay on chip: \['f', 'r1'\]"):
        compile_model(model, spec, EngineConfig(**base, m_bulk=72))
