"""Shared pytest setup: tests marked ``slow`` or ``synth`` run only when asked for.

``pytest -m slow`` (any ``-m`` expression naming ``slow``) or ``DYNFIX_SLOW=1`` selects the
long simulations; ``pytest -m synth`` or ``DYNFIX_SYNTH=1`` the synthesis runs that take
minutes. Otherwise they are deselected (not skipped), so the default run stays short and
reports exactly what it ran.
"""

from __future__ import annotations

import os

import pytest

OPT_IN = {"slow": "DYNFIX_SLOW", "synth": "DYNFIX_SYNTH"}


def pytest_collection_modifyitems(config, items):
    markexpr = config.option.markexpr or ""
    off = [m for m, env in OPT_IN.items() if m not in markexpr and os.environ.get(env) != "1"]
    keep, drop = [], []
    for item in items:
        (drop if any(item.get_closest_marker(m) for m in off) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def icarus() -> None:
    """The test runs Icarus Verilog: fail (not skip) when it is missing (sim_helpers)."""
    from sim_helpers import require_simulator
    require_simulator("icarus")


@pytest.fixture
def verilator() -> None:
    """The test runs Verilator: fail (not skip) when it is missing (sim_helpers)."""
    from sim_helpers import require_simulator
    require_simulator("verilator")
