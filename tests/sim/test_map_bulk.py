"""Maps in bulk memory (``m_bulk``): a network whose maps outgrow a small map memory runs in
row strips, its large maps stored to and loaded from the bulk memory by the map DMA, and
stays bit-exact with the integer model; the cycle counters meet the cycle model (a lower
bound: the weight ring's reads around a strip's load are not counted)."""

from __future__ import annotations

import pytest

import dynfix
from dynfix.hw.config import EngineConfig
from dynfix.hw.cycle_model import estimate

from hw_models import fcn_net, strip_net
from sim_helpers import require_simulator


@pytest.mark.parametrize("net,budget,store,slack", [
    (strip_net, 400, "ram", 0.01), (strip_net, 400, "sdram", 0.01),
    # The input, the hidden map and the output all in bulk memory: the host streams the
    # image in strips, the output comes back in strips.
    (fcn_net, 120, "ram", 0.01)])
def test_strips_through_bulk_memory_stay_exact(net, budget, store, slack, tmp_path):
    require_simulator("icarus")
    model, spec, calib = net()
    cfg = EngineConfig(tn=4, tm=2, w_bulk=1, bulk_bits=16, m_bulk=budget, bulk_store=store)
    g = dynfix.generate(spec, tmp_path / "gen", config=cfg, model=model)
    cm = g.compiled
    est = estimate(cm)
    moved = [row for row in est["layers"] if row["dma"]]
    assert len(moved) >= 5 and cm.config.map_bulk > 0          # strips with loads, stores
    r = dynfix.simulate(g, data=calib, images=2, simulator="icarus",
                        build_dir=tmp_path / "sim")
    assert r.details.mismatches == 0, r.details.first_mismatch
    want = [row["cycles"] for row in est["layers"]]
    # The second image: the SDRAM's power-up initialisation delays only the first.
    got = r.layer_cycles[1]
    assert all(g_ >= w for g_, w in zip(got, want)), (got, want)
    assert sum(got) <= (1 + slack) * sum(want), (sum(got), sum(want))
