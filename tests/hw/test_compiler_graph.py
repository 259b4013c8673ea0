"""The compiler on graphs: residual Adds fused into the right group, map memory allocated by
tensor lifetime (no live tensor overwritten), clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.hw.compiler import compile_model, plan_groups
from dynfix.hw.config import EngineConfig
from dynfix.quant.ir import Add, Flatten, Linear, Model, ReLU

from hw_models import conv, digits_8bit, residual_net, small_net


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
