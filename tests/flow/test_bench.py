"""The bench's analysis paths: VGG16 from onnx.helper through dynfix's loader, the compiler's
shape-only plan, and the cycle model on it (figures, not timings)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from dynfix.hw.compiler import compile_model, plan_model  # noqa: E402
from dynfix.hw.config import EngineConfig  # noqa: E402

from hw_models import small_net  # noqa: E402


def test_loop_counts_match_the_compiled_program():
    model, spec, _ = small_net()
    cfg = EngineConfig(tn=9, tm=3)
    cm = compile_model(model, spec, cfg)
    for p, q in zip(cm.plans, plan_model(model, cfg)):
        assert {k: p.entry[k] for k in q.entry} == q.entry


def test_vgg16_layer_list():
    paper = pytest.importorskip("paper_vgg16")
    plans = paper.load_plans()
    conv = [p for p in plans if p.kind == "conv"]
    assert [p.kind for p in plans] == ["conv"] * 13 + ["linear"] * 3
    assert sum(p.macs for p in conv) == 15_346_630_656       # VGG16's published 15.3 GMAC
    assert [p.pool for p in conv].count(2) == 5
    assert plans[-1].out_shape == (1000, 1, 1)
    assert sum(p.macs for p in plans[13:]) == 25088 * 4096 + 4096 * 4096 + 4096 * 1000


def test_vgg16_cycles_at_one_multiplier_are_the_macs_plus_overhead():
    paper = pytest.importorskip("paper_vgg16")
    plans = paper.load_plans()
    figs = paper.figures(plans, EngineConfig(tn=1, tm=1))
    for f in figs:
        assert 0 < f.cycles - f.macs < 100          # fetch + drain only


def test_mlperf_engine_kind_utilization_and_table():
    """Per-kind utilization sums MACs and cycles per kind (a residual conv and a strided
    depthwise conv are kinds of their own); a model that does not fit keeps its reason in
    the table."""
    me = pytest.importorskip("mlperf_engine")
    estimate = {"layers": [
        {"kind": "conv", "macs": 800, "cycles": 10, "residual": None, "stride": [1, 1]},
        {"kind": "conv", "macs": 400, "cycles": 10, "residual": "add1", "stride": [2, 2]},
        {"kind": "dwconv", "macs": 90, "cycles": 30, "residual": None, "stride": [1, 1]},
        {"kind": "dwconv", "macs": 40, "cycles": 50, "residual": None, "stride": [2, 2]},
        {"kind": "conv", "macs": 600, "cycles": 10, "residual": None, "stride": [1, 1]}]}
    got = me.kind_utilization(estimate, multipliers=100)
    assert got == {"conv": 1400 / 2000, "conv+add": 400 / 1000, "dwconv": 90 / 3000,
                   "dwconv/2": 40 / 5000}
    lines = me.table([{"model": "m", "board": "b", "params": 10, "macs": 20,
                       "error": "m does not fit b: needs LUTs 9 > 5"}], images=2,
                     command="python bench/mlperf_engine.py --boards b")
    row = next(line for line in lines if line.startswith("| m | b |"))
    assert "**does not fit**: needs LUTs 9 > 5" in row
    assert any("`python bench/mlperf_engine.py --boards b`" in line for line in lines)


def test_compression_weight_image_bytes():
    """The compression table's weight image: weight words of tm x lanes weights (or
    indices), whole bus beats in bulk memory, plus the codebooks (hand-computed)."""
    comp = pytest.importorskip("compression")
    base = dict(tn=4, tm=2, weight_bits=8, weight_depth=10)
    assert comp.image_bytes(EngineConfig(**base)) == 10 * 64 // 8
    assert comp.image_bytes(EngineConfig(**base, w_bulk=1, bulk_bits=128)) == 10 * 16
    assert comp.image_bytes(EngineConfig(**base, w_index_bits=4, codebooks=3)) \
        == 10 * 32 // 8 + 3 * 16
