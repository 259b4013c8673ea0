"""Weights from bulk memory (``EngineConfig.w_bulk``): the configuration's rules, what the
compiler puts into the program for the weight ring, and the cycle model's accounting of the
stream (checked here against hand-counted schedules; the RTL runs against it in
``tests/sim/test_sim_random.py``, configurations ``*_bulk``)."""

from __future__ import annotations

import pytest

from dynfix.errors import DynfixError
from dynfix.hw.compiler import compile_model, ring_depth
from dynfix.hw.config import EngineConfig
from dynfix.hw.cycle_model import _advance, estimate, layer_cycles
from dynfix.hw.weight_ring import bulk_image

from hw_models import small_net


@pytest.mark.parametrize("kwargs,message", [
    (dict(w_bulk=1, w_spram=1), "exclude each other"),
    (dict(w_bulk=1, bulk_bits=24), "bulk_bits=24 must be a power of two"),
    (dict(w_bulk=1, bulk_bits=2048), "bulk_bits=2048"),
    (dict(w_bulk=1, w_ring=24), "w_ring=24 must be a power of two"),
    (dict(w_bulk=2), "w_bulk=2 must be 0 or 1"),
])
def test_config_rules(kwargs, message):
    with pytest.raises(DynfixError, match=message):
        EngineConfig.from_dict({"tn": 4, "tm": 2, **kwargs})


def test_ring_depth_holds_two_tiles():
    assert [ring_depth(t) for t in (1, 2, 3, 4, 5, 9, 16, 17)] == [2, 4, 8, 8, 16, 32, 32, 64]


def test_program_fields_follow_the_stream():
    """``w_tile`` is each group's share of the weight image, ``w_total`` the image, and
    ``w_base`` the position modulo twice the ring; the weight words are the on-chip
    engine's, and the ring holds two of the largest tiles. The FC layer reads each weight
    word once: it streams them (``w_stream``) and holds no tile."""
    model, spec, _ = small_net()
    chip = compile_model(model, spec, EngineConfig(tn=4, tm=2))
    bulk = compile_model(model, spec, EngineConfig(tn=4, tm=2, w_bulk=1, bulk_bits=16))
    assert bulk.weights == chip.weights
    assert [p.entry["w_stream"] for p in bulk.plans] == [0, 0, 1]
    assert bulk.plans[-1].entry["w_tile"] == 0
    words = [(p.entry["w_tile"] or p.kernel[0] * p.kernel[1] * p.entry["t_in"])
             * p.entry["n_mg"] for p in bulk.plans]
    assert sum(words) == len(bulk.weights) == bulk.plans[0].entry["w_total"]
    cfg = bulk.config
    assert cfg.w_ring == ring_depth(max(8, *(p.entry["w_tile"] for p in bulk.plans)))
    assert cfg.w_ring >= 2 * max(p.entry["w_tile"] for p in bulk.plans)
    for p, q in zip(bulk.plans, chip.plans):
        assert p.entry["w_base"] == q.entry["w_base"] % (2 * cfg.w_ring)
        assert p.entry["w_total"] == len(bulk.weights)
    assert cfg.weight_addr_bits == cfg.ring_bits + 1
    assert cfg.word_beats == -(-4 * 2 * cfg.weight_bits // 16)
    # A ring too small for two tiles is refused with the fitted field named.
    with pytest.raises(DynfixError, match="w_ring 2 < "):
        compile_model(model, spec, EngineConfig(tn=4, tm=2, w_bulk=1, w_ring=2))


def test_bulk_image_layout():
    """Word ``i`` takes ``k`` bus words, lowest bits first, zero-padded at the top."""
    words = [0x123456789, 0xFEDCBA987]       # 36-bit words on a 16-bit bus: 3 beats each
    assert bulk_image(words, 36, 16) == [0x6789, 0x2345, 0x1, 0xA987, 0xEDCB, 0xF]


def test_advance_counts_free_cycles_around_holds():
    holds = [5, 20]
    assert _advance(0, 4, list(holds), 3) == 4           # before any hold
    assert _advance(0, 6, list(holds), 3) == 9           # 0..4, hold 5..7, then 8
    assert _advance(6, 1, list(holds), 3) == 9           # starts inside a hold
    assert _advance(0, 20, list(holds), 3) == 26         # both holds passed
    left = [5, 20]
    _advance(10, 2, left, 3)
    assert left == [20]                                  # the passed hold is consumed


def test_a_wide_bus_waits_only_for_the_first_tile_if_at_all():
    """A bus as wide as a weight word brings every word in one beat: beyond the image load,
    no group waits, and each layer's cycles are the on-chip engine's."""
    model, spec, _ = small_net()
    cm = compile_model(model, spec, EngineConfig(tn=4, tm=2, w_bulk=1, bulk_bits=64))
    est = estimate(cm)
    assert cm.config.word_beats == 1
    for p, row in zip(cm.plans, est["layers"]):
        assert row["waits"] == 0 and row["cycles"] == layer_cycles(cm.config, p)
    assert est["bulk_bytes"] == len(cm.weights) * 8


def test_a_narrow_bus_makes_groups_wait_and_costs_what_the_stream_costs():
    """With an 8-bit bus each 256-bit word takes 32 beats: groups compute fewer cycles
    than their tiles take to stream, so the layers are bound by the bus and the model
    charges their groups the difference."""
    model, spec, _ = small_net()
    cm = compile_model(model, spec, EngineConfig(tn=8, tm=4, w_bulk=1, bulk_bits=8))
    est = estimate(cm, bulk_latency=3)
    waits = [row["waits"] for row in est["layers"]]
    assert all(w > 0 for w in waits)
    assert est["bulk_bytes"] == len(cm.weights) * 32
    # The whole pass cannot finish before its beats have streamed: the last layer ends
    # after the request, the latency and every beat.
    load = est["load_cycles"]
    assert load + est["compute_cycles"] >= 2 + 3 + len(cm.weights) * 8
    slower = estimate(cm, bulk_latency=40)
    assert slower["compute_cycles"] >= est["compute_cycles"]
