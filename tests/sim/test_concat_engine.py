"""Concats on the generated Verilog under Icarus, bit for bit against the integer model:
inputs written in place at word-aligned channel offsets of one map, and inputs copied into
it (the model input, a skip map another conv reads) at offsets that leave unused lanes."""

from __future__ import annotations

import pytest

from dynfix.hw.config import EngineConfig
from dynfix.quant.search import search

from hw_models import concat_branches, concat_copies, unet_step
from sim_helpers import check, simulate

pytestmark = pytest.mark.usefixtures("icarus")


def test_branches_written_in_place_bit_exact(tmp_path):
    """Two conv branches (one pooled), both unsigned after their ReLUs and so one unsigned
    map joined, write their 4 channels each at words 0 and 1 of the Concat's map; no
    copy."""
    model, x = concat_branches()
    spec = search(model, x)
    assert spec.layers["a"].zp_out == spec.layers["b"].zp_out == -128
    cm, ref, res = simulate(model, spec, EngineConfig(tn=4, tm=2), x[:1], tmp_path)
    assert [p.name for p in cm.plans] == ["a", "b", "c"]
    assert [p.slot.offset for p in cm.plans[:2]] == [0, 4]
    check(cm, ref, res)


def test_copied_inputs_and_unused_lanes_bit_exact(tmp_path):
    """The model input and the skip map (4 channels each) are copied by depthwise 1 x 1
    groups, the last input written in place; on 3 lanes each starts at a word's first
    lane (channels 0, 6, 12 of a 15-lane map), and the conv reading it has zero weights at
    the unused lanes 4, 5, 10, 11."""
    model, x = concat_copies()
    spec = search(model, x)
    cm, ref, res = simulate(model, spec, EngineConfig(tn=3, tm=2), x[:1], tmp_path)
    assert [(p.name, p.slot and p.slot.offset) for p in cm.plans] == [
        ("a", None), ("b", 12), ("cat.copy0", 0), ("cat.copy1", 6), ("c", None)]
    assert cm.plans[-1].in_shape[0] == 15
    check(cm, ref, res)


def test_unet_resize_into_concat_bit_exact(tmp_path):
    """U-Net's ``up -> concat -> conv``: the Resize is copied into the Concat's map by a
    depthwise 1 x 1 group walking its view (each stored pixel read twice per axis), the
    skip map (read by the stride-2 conv too) by a plain copy."""
    model, x = unet_step()
    spec = search(model, x)
    cm, ref, res = simulate(model, spec, EngineConfig(tn=3, tm=2), x[:1], tmp_path)
    assert [(p.name, p.slot and p.slot.offset, p.resize) for p in cm.plans] == [
        ("e1", None, (1, 1)), ("e2", None, (1, 1)), ("cat.copy0", 0, (2, 2)),
        ("cat.copy1", 6, (1, 1)), ("d1", None, (1, 1))]
    assert cm.plans[2].in_shape == (6, 6, 8)
    check(cm, ref, res)
