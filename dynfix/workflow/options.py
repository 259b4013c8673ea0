"""The flow's options, apart from the flow itself so that the CLI can read its defaults
without importing the API."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_IMAGES = 20
#: Images ``dynfix sweep`` simulates per engine by default (a few: the check is bit-exactness).
SWEEP_IMAGES = 3
SWEEP_BITS = ("16", "8", "6", "4")
#: The simulator option: ``auto`` (see :mod:`.simulator`) or one of the simulators
#: (``dynfix.sim.simulators.SIMULATORS``, not imported here: it loads cocotb).
SIM_CHOICES = ("auto", "icarus", "verilator")


@dataclass
class FlowOptions:
    """What ``dynfix flow`` takes (its command-line options, one field each)."""

    model: Any = "digits"
    board: str | None = None
    bits: str = "8"
    images: int = DEFAULT_IMAGES
    synth: bool = False
    output: str | Path | None = None
    data: str | Path | None = None       # labelled test data; default: digits
    calib: str | Path | None = None      # calibration inputs; default: the data
    method: str = "greedy"
    sweep: tuple[str, ...] = SWEEP_BITS
    sim: str = "auto"                    # one of SIM_CHOICES
    flash_coding: str = "none"           # with synth: the flash image's coding (FlashCoding)
