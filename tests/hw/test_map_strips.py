"""Maps in bulk memory (``EngineConfig.m_bulk``): which maps leave the chip, and the row
strips the compiler splits the groups around them into (``hw/compiler/strips.py``). The
strips' geometry is checked here against the original layer's windows, computed
independently; the RTL runs them in ``tests/sim/test_sim_random.py`` (``*_mbulk``)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.hw.compiler import compile_model
from dynfix.hw.config import EngineConfig
from dynfix.hw.cycle_model import estimate, per_layer

from hw_models import fcn_net, strip_net

BASE = dict(tn=4, tm=2, w_bulk=1, bulk_bits=16)


@pytest.fixture(scope="module")
def net():
    model, spec, _ = strip_net()
    return model, spec


def compiled(net, budget: int):
    model, spec = net
    return compile_model(model, spec, EngineConfig(**BASE, m_bulk=budget))


def by_group(cm) -> dict[str, list]:
    groups = defaultdict(list)
    for p in cm.plans:
        groups[p.name].append(p)
    return groups


def test_without_a_budget_nothing_moves(net):
    model, spec = net
    plain = compile_model(model, spec, EngineConfig(**BASE))
    assert [p.name for p in plain.plans] == ["c1", "c2", "c3", "fc"]
    assert plain.config.map_bulk == 0 and all(p.strip == 0 for p in plain.plans)


@pytest.mark.parametrize("budget", [500, 400, 330])
def test_strips_read_the_rows_of_the_original_windows(net, budget):
    """Every output row is computed exactly once, by a strip whose windows read the same
    input rows (and the same padding) as the whole layer's."""
    model, spec = net
    whole = {p.name: p for p in compile_model(model, spec, EngineConfig(**BASE)).plans}
    cm = compiled(net, budget)
    assert cm.config.fmap_depth <= budget
    stripped = 0
    for name, strips in by_group(cm).items():
        if name not in whole:
            continue                    # the host's load or unload strips
        g = whole[name]
        (kh, _), (sy, _) = g.kernel, g.stride
        top, h = g.pads[0], g.in_shape[1]
        rows = [s.entry["n_py"] for s in strips]
        assert sum(rows) == g.entry["n_py"]
        stripped += len(strips) > 1
        py0 = 0
        first = strips[0].entry
        row_words = g.in_shape[2] * -(-g.in_shape[0] // cm.config.lanes)
        for s in strips:
            e = s.entry
            # The strip's first input row in the map: from its DMA load's offset, or from its
            # input base when the input stays on chip.
            if e["di_words"]:
                step = row_words * cm.config.map_beats
                assert (e["di_bulk"] - first["di_bulk"]) % step == 0
                r_lo = (e["di_bulk"] - first["di_bulk"]) // step
                assert e["di_words"] == e["in_h"] * row_words
                assert e["in_base"] == e["di_fmap"]
            else:
                r_lo = (e["in_base"] - first["in_base"]) // row_words
            for y in range(py0 * g.pool, (py0 + e["n_py"]) * g.pool):
                for ky in range(kh):
                    want = y * sy - top + ky            # the whole layer's row
                    local = (y - py0 * g.pool) * sy + e["iy0"] + ky
                    if 0 <= want < h:
                        assert 0 <= local < e["in_h"] and r_lo + local == want
                    else:
                        assert not 0 <= local < e["in_h"]
            py0 += e["n_py"]
    assert stripped >= 2


def test_stores_tile_the_bulk_map_and_later_loads_read_inside_it(net):
    cm = compiled(net, 400)
    cfg = cm.config
    stores = [(p.entry["do_bulk"], p.entry["do_words"] * cfg.map_beats) for p in cm.plans
              if p.entry["do_words"]]
    loads = [(p.entry["di_bulk"], p.entry["di_words"] * cfg.map_beats) for p in cm.plans
             if p.entry["di_words"]]
    assert stores and loads
    # The stores of a map follow one another without gaps or overlap.
    for (a, n), (b, _) in zip(stores, stores[1:]):
        assert b == a + n
    lo, hi = stores[0][0], stores[-1][0] + stores[-1][1]
    assert lo == cfg.maps_base and hi <= cfg.maps_base + cfg.map_bulk
    assert all(lo <= a and a + n <= hi for a, n in loads)
    assert cfg.maps_base >= cfg.weight_depth * cfg.word_beats
    # Buffers and on-chip maps lie in the map memory.
    for p in cm.plans:
        e = p.entry
        assert e["di_fmap"] + e["di_words"] <= cfg.fmap_depth
        assert e["do_fmap"] + e["do_words"] <= cfg.fmap_depth


def test_each_strip_streams_its_groups_weights_again(net):
    """The image holds a group's weights once; the ring's stream (its segments) reads them
    again for each strip, and the stream positions (``w_base``) count every reading."""
    cm = compiled(net, 400)
    model, spec = net
    whole = compile_model(model, spec, EngineConfig(**BASE))
    assert cm.weights == whole.weights
    pos = 0
    for p in cm.plans:
        if p.kind in ("load", "unload"):
            continue
        e = p.entry
        n = (e["w_tile"] or p.kernel[0] * p.kernel[1] * e["t_in"]) * e["n_mg"]  # w_stream
        assert e["w_base"] == pos % (2 * cm.config.w_ring)
        pos += n
    runs = [(a, n) for a, n in cm.weight_segments]
    assert sum(n for _, n in runs) == pos > len(cm.weights)
    # Unrolled, the runs read each group's words once per strip, in program order.
    order = [w for a, n in runs for w in range(a, a + n)]
    want, starts, at = [], {}, 0
    for p in cm.plans:
        if p.kind in ("load", "unload"):
            continue
        e = p.entry
        n = (e["w_tile"] or p.kernel[0] * p.kernel[1] * e["t_in"]) * e["n_mg"]
        if p.name not in starts:
            starts[p.name] = at
            at += n
        want += range(starts[p.name], starts[p.name] + n)
    assert order == want
    # The biases are stored once per group.
    assert len(cm.biases) == sum(p.entry["n_mg"] for p in cm.plans if not p.strip)


def test_cycle_model_counts_the_transfers(net):
    cm = compiled(net, 400)
    est = estimate(cm)
    moved = [r for r in est["layers"] if r["dma"]]
    assert moved and all(r["cycles"] > r["dma"] for r in moved)
    assert est["compute_cycles"] == sum(r["cycles"] for r in est["layers"])
    words = sum(p.entry["di_words"] + p.entry["do_words"] for p in cm.plans)
    assert est["map_bytes"] == words * cm.config.map_beats * 2 > 0     # a 16-bit port
    # One row per layer, its strips summed (the generate command's summary).
    rows = per_layer(est["layers"])
    assert [r["name"] for r in rows] == ["c1", "c2", "c3", "fc"]
    assert sum(r["cycles"] for r in rows) == est["compute_cycles"]
    assert [r["entries"] for r in rows] == [
        sum(p.name == name for p in cm.plans) for name in ("c1", "c2", "c3", "fc")]


def test_a_budget_too_small_names_the_group(net):
    with pytest.raises(DynfixError, match=r"map memory of 100 words \(m_bulk\) is too small: "
                                          r"group 'c2' needs 124 words"):
        compiled(net, 100)


def test_input_and_output_move_through_bulk_memory_in_strips():
    """A fully convolutional net on a tiny map memory: the host streams the input strip by
    strip (each stored to bulk memory), and the output comes back strip by strip; both
    orders are the C, H, W maps cut into row strips, and every row moves once."""
    model, spec, _ = fcn_net()
    cm = compile_model(model, spec, EngineConfig(**BASE, m_bulk=120))
    loads = [p for p in cm.plans if p.kind == "load"]
    unloads = [p for p in cm.plans if p.kind == "unload"]
    assert len(loads) >= 2 and len(unloads) >= 2
    assert cm.plans[0].kind == "load" and cm.plans[-1].kind == "unload"
    c, h, w = cm.input_shape
    assert sum(p.in_shape[1] for p in loads) == h
    assert sum(p.out_shape[1] for p in unloads) == cm.output_shape[1]
    # Stores of the input and loads of the output each tile one region of bulk memory.
    for plans, key in ((loads, "do"), (unloads, "di")):
        runs = [(p.entry[f"{key}_bulk"], p.entry[f"{key}_words"] * cm.config.map_beats)
                for p in plans]
        assert all(b == a + n for (a, n), (b, _) in zip(runs, runs[1:]))
    rows = cm.input_rows
    x = np.arange(c * h * w).reshape(c, h, w)
    want = np.concatenate([x[:, r:r + rows].reshape(-1) for r in range(0, h, rows)])
    assert np.array_equal(cm.host_input(x), want)
    oc, oh, ow = cm.output_shape
    y = np.arange(oc * oh * ow).reshape(oc, oh, ow)
    streamed = np.concatenate([y[:, r:r + cm.output_rows].reshape(-1)
                               for r in range(0, oh, cm.output_rows)])
    assert np.array_equal(cm.output_order(streamed), y.reshape(-1))
    # Only the first entry loads from the host; only the last ones unload to it.
    flags = [(p.entry["ld"], p.entry["run"], p.entry["ul"]) for p in cm.plans]
    assert all(f == (1, 0, 0) for f in flags[:len(loads)])
    assert all(f == (0, 1, 0) for f in flags[len(loads):-len(unloads)])
    assert all(f == (0, 0, 1) for f in flags[-len(unloads):])
    assert [p.entry["last"] for p in cm.plans].count(1) == 1 and cm.plans[-1].entry["last"]


@pytest.mark.parametrize("kwargs,message", [
    (dict(m_bulk=100), "m_bulk .* needs w_bulk: 1"),
    (dict(m_bulk=100, w_bulk=1, m_spram=1), "m_spram: 0"),
    (dict(m_bulk=-1, w_bulk=1), "m_bulk must be non-negative"),
])
def test_config_rules(kwargs, message):
    with pytest.raises(DynfixError, match=message):
        EngineConfig.from_dict({"tn": 4, "tm": 2, **kwargs}).check_parallelism()
