"""Randomized differential tests: random 1- and 2-layer networks (residual blocks and
depthwise convs on the configurations with those units) on every configuration of ``random_nets.CONFIGS``,
simulated (cocotb, one simulator process per configuration) against the integer model.

Default: ``DYNFIX_RANDOM_CASES`` (8) cases per configuration, 2 images each, on Icarus.
``-m slow``: 400 more per configuration. Replay: ``DYNFIX_RANDOM_SEEDS=1234,5678 pytest
tests/sim/test_sim_random.py`` runs exactly those seeds; ``DYNFIX_SEED`` shifts the default seeds;
``DYNFIX_SIM=verilator`` switches the simulator. See docs/verification.md.
"""

from __future__ import annotations

import os
from dataclasses import fields, replace

import pytest

from dynfix.errors import DynfixError
from dynfix.hw.compiler import compile_model
from dynfix.hw.config import CHOICE_KEYS, BulkStore, EngineConfig
from dynfix.hw.cycle_model import estimate
from dynfix.sim.differential import run_cases, run_fitted
from dynfix.sim.random_nets import CONFIGS, case_for
from dynfix.sim.simulators import choose

from sim_helpers import require_simulator

CASES = int(os.environ.get("DYNFIX_RANDOM_CASES", "8"))
SLOW_CASES = int(os.environ.get("DYNFIX_RANDOM_SLOW_CASES", "400"))
BASE = int(os.environ.get("DYNFIX_SEED", "0"))


def seeds_for(cfg_index: int, count: int, offset: int) -> list[int]:
    """Seeds of one configuration: distinct per configuration, stride 7919 (prime)."""
    if os.environ.get("DYNFIX_RANDOM_SEEDS"):
        return [int(s) for s in os.environ["DYNFIX_RANDOM_SEEDS"].split(",") if s.strip()]
    start = BASE + 1_000_000 * cfg_index + offset
    return [start + 7919 * i for i in range(count)]


def check_random(name: str, seeds: list[int], tmp_path) -> None:
    sim = choose()
    require_simulator(sim)
    results, stats = run_cases(CONFIGS[name], seeds, tmp_path / name, sim)
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'} {name} {r.summary} ({r.cycles} cycles) {r.where}")
    print(f"{name} on {sim}: {stats.cases} cases, {stats.images} images, "
          f"{stats.sim_cycles} cycles in {stats.sim_seconds:.1f} s simulated, build "
          f"{stats.build_seconds:.1f} s, wall {stats.wall_seconds:.1f} s")
    failed = [r for r in results if not r.ok]
    assert not failed, (
        f"{len(failed)} of {len(results)} random cases differ from the integer model on {name}"
        f"; replay with DYNFIX_RANDOM_SEEDS={','.join(str(r.seed) for r in failed)}:\n"
        + "\n".join(f"  {r.summary}: {r.where}" for r in failed))
    # Every case got its own seed (a case that did not fit moved to the next seed).
    assert len({r.seed for r in results}) == len(results)


@pytest.mark.parametrize("index,name", list(enumerate(CONFIGS)))
def test_random_networks(index, name, tmp_path):
    check_random(name, seeds_for(index, CASES, 0), tmp_path)


FITTED = int(os.environ.get("DYNFIX_RANDOM_FITTED", "2"))


@pytest.mark.parametrize("index,name", [(i, n) for i, n in enumerate(CONFIGS)
                                        if i < 2 or n in ("tn3tm4_edge", "tn9tm3_edge",
                                                          "tn3tm4_edge_spram",
                                                          "tn3tm4_edge_bulk",
                                                          "tn3tm4_packed")])
def test_random_networks_fitted(index, name, tmp_path):
    """A few cases on engines fitted tightly to them (their own Verilog each): counters and
    addresses exactly as wide as the compiler makes them."""
    sim = choose()
    require_simulator(sim)
    failed = []
    for seed in seeds_for(index, FITTED, 900_000):
        r = run_fitted(CONFIGS[name], seed, tmp_path / str(seed), sim)
        print(f"{'ok  ' if r.ok else 'FAIL'} {name} {r.summary} {r.where}")
        if not r.ok:
            failed.append(r)
    assert not failed, "replay with DYNFIX_RANDOM_SEEDS=" + ",".join(str(r.seed)
                                                                   for r in failed)


def test_a_level_that_runs_once_may_step_past_the_map(tmp_path):
    """A tightly fitted engine whose pooled-row level runs once (a 1 x 1 input padded to a
    2 x 2 pool window): that level's address step reaches one row past the whole map, wider
    than the map address; it is never taken, so the compiler zeroes it and the case runs
    exact."""
    sim = choose()
    require_simulator(sim)
    r = run_fitted(CONFIGS["tn9tm3_edge"], 6909000, tmp_path, sim)
    assert r.ok, r.where


def waiting_seeds(name: str, count: int) -> list[int]:
    """The first ``count`` seeds (from this test's own range) whose case, fitted to
    ``name``'s engine, has groups that wait for their weight tiles in the cycle model."""
    cfg = CONFIGS[name]
    bare = replace(cfg, **{f.name: 0 for f in fields(EngineConfig) if f.name not in CHOICE_KEYS})
    found = []
    for seed in seeds_for(list(CONFIGS).index(name), 60, 700_000):
        case = case_for(seed, cfg)
        try:
            cm = compile_model(case.model, case.spec, bare)
        except DynfixError:
            continue
        if any(row["waits"] for row in estimate(cm)["layers"]):
            found.append(seed)
        if len(found) == count:
            return found
    raise AssertionError(f"fewer than {count} of 60 cases on {name} wait for weights")


@pytest.mark.parametrize("name", ["tn3tm4_edge_bulk",
                                  pytest.param("tn9tm3_edge_bulk", marks=pytest.mark.slow)])
def test_bulk_backpressure_keeps_results_exact(name, tmp_path):
    """Weights from a bulk memory that stalls its address and data channels at
    pseudo-random cycles, on cases whose groups wait for their tiles: every output stays
    exact, every layer counter at or above the cycle model (exact for the memory that does
    not stall, as the run without stalls checks), and the stalls cost cycles."""
    sim = choose()
    require_simulator(sim)
    slower = 0
    for seed in waiting_seeds(name, 2):
        calm = run_fitted(CONFIGS[name], seed, tmp_path / f"{seed}_calm", sim)
        r = run_fitted(CONFIGS[name], seed, tmp_path / f"{seed}_stall", sim, bulk_stall=True)
        assert calm.ok, f"seed {seed}: {calm.where}"
        assert r.ok, f"seed {seed} with a stalling bulk memory: {r.where}"
        slower += r.cycles > calm.cycles
    assert slower, "the stalling bulk memory cost no cycle in any case: it did not stall"


@pytest.mark.slow
@pytest.mark.parametrize("index,name", list(enumerate(CONFIGS)))
def test_random_networks_slow(index, name, tmp_path):
    check_random(name, seeds_for(index, SLOW_CASES, 500_000), tmp_path)


def test_weights_from_sdram_keep_results_exact(tmp_path):
    """The bulk memory as an SDRAM chip (the model ``sim/sdram_model.v``, which stops the run
    at the first rule broken) behind the controller of ``hw/sdram_axi.py``: every output
    exact, every layer counter at or above the cycle model (a lower bound: rows opened and
    refreshes cost cycles the model does not count)."""
    sim = choose()
    require_simulator(sim)
    cfg = replace(CONFIGS["tn3tm4_edge_bulk"], bulk_store=BulkStore.SDRAM)
    for seed in seeds_for(list(CONFIGS).index("tn3tm4_edge_bulk"), 1, 800_000):
        r = run_fitted(cfg, seed, tmp_path / str(seed), sim)
        assert r.ok, f"seed {seed} with the weights in SDRAM: {r.where}"
