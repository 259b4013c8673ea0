"""Randomized differential tests: random 1- and 2-layer networks (residual blocks and
depthwise convs on the configurations with those units) on every configuration of ``random_nets.CONFIGS``,
simulated (cocotb, one simulator process per configuration) against the integer model.

Default: ``DYNFIX_RANDOM_CASES`` (30) cases per configuration, 2 images each, on Icarus.
``-m slow``: 400 more per configuration. Replay: ``DYNFIX_RANDOM_SEEDS=1234,5678 pytest
tests/sim/test_sim_random.py`` runs exactly those seeds; ``DYNFIX_SEED`` shifts the default seeds;
``DYNFIX_SIM=verilator`` switches the simulator. See docs/verification.md.
"""

from __future__ import annotations

import os

import pytest

from dynfix.sim.differential import run_cases, run_fitted
from dynfix.sim.random_nets import CONFIGS
from dynfix.sim.simulators import choose

from sim_helpers import require_simulator

CASES = int(os.environ.get("DYNFIX_RANDOM_CASES", "30"))
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


@pytest.mark.slow
@pytest.mark.parametrize("index,name", list(enumerate(CONFIGS)))
def test_random_networks_slow(index, name, tmp_path):
    check_random(name, seeds_for(index, SLOW_CASES, 500_000), tmp_path)
