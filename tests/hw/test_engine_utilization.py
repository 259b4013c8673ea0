"""Slow: MAC utilization of a VGG-style network from simulated cycles at two engine sizes,
and the analytic cycle model's error per layer (``pytest -m slow``)."""

from __future__ import annotations


import pytest

from dynfix.hw.config import EngineConfig
from dynfix.quant.search import search
from dynfix.sim.measure import measure, vgg_model

SIMULATOR = "verilator"


@pytest.mark.slow
@pytest.mark.usefixtures("verilator")
@pytest.mark.parametrize("cfg", [EngineConfig(tn=9, tm=1), EngineConfig(tn=18, tm=2)])
def test_vgg_utilization_and_cycle_model(cfg, tmp_path):
    model, x = vgg_model()
    run = measure(model, search(model, x, bits="8"), cfg, x, tmp_path, SIMULATOR)
    assert run["bit_exact"]
    for row in run["layers"]:
        assert abs(row["model_error"]) <= 0.05, row
        assert row["utilization"] >= 0.8, row
