"""Maps in bulk memory (``EngineConfig.m_bulk``): which maps leave the chip, and the row
strips the compiler splits the groups around them into (``hw/compiler/strips.py``). The
strips' geometry is checked here against the original layer's windows, computed
independently; the RTL runs them in ``tests/sim/test_sim_random.py`` (``*_mbulk``)."""

from __future__ import annotations

from collections import defaultdict

import pytest

from dynfix.errors import DynfixError
from dynfix.hw.compiler import compile_model
from dynfix.hw.config import EngineConfig
from dynfix.hw.cycle_model import estimate

from hw_models import strip_net

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
    cm = compiled(net, 400)
    words = cm.weights
    pos = 0
    first = {}
    for p in cm.plans:
        n = p.entry["w_tile"] * p.entry["n_mg"]
        first.setdefault(p.name, words[pos:pos + n])
        assert words[pos:pos + n] == first[p.name]
        pos += n
    assert pos == len(words) == cm.plans[0].entry["w_total"]
    # The biases are stored once per group.
    assert len(cm.biases) == sum(p.entry["n_mg"] for p in cm.plans if not p.strip)


def test_cycle_model_counts_the_transfers(net):
    est = estimate(compiled(net, 400))
    moved = [r for r in est["layers"] if r["dma"]]
    assert moved and all(r["cycles"] > r["dma"] for r in moved)
    assert est["compute_cycles"] == sum(r["cycles"] for r in est["layers"])


def test_a_budget_too_small_names_the_group(net):
    with pytest.raises(DynfixError, match=r"map memory of 300 words \(m_bulk\) is too small: "
                                          r"group 'c2' needs 124 words"):
        compiled(net, 300)
    with pytest.raises(DynfixError, match="the on-chip maps take"):
        compiled(net, 100)


@pytest.mark.parametrize("kwargs,message", [
    (dict(m_bulk=100), "m_bulk .* needs w_bulk: 1"),
    (dict(m_bulk=100, w_bulk=1, m_spram=1), "m_spram: 0"),
    (dict(m_bulk=-1, w_bulk=1), "m_bulk must be non-negative"),
])
def test_config_rules(kwargs, message):
    with pytest.raises(DynfixError, match=message):
        EngineConfig.from_dict({"tn": 4, "tm": 2, **kwargs}).check_parallelism()
