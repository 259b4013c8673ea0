"""Build and run the generated engine Verilog under a cocotb simulator."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cocotb_tools.runner import get_runner

from dynfix.errors import DynfixError
from dynfix.hw.lint import find_verilator

TOP = "dynfix_engine"
TESTBENCH = "dynfix.sim.engine_tb"


def run_engine(verilog: str | Path, images: list[list[int]], n_out: int, n_layers: int,
               build_dir: str | Path, simulator: str = "icarus",
               keep_outputs: bool = True) -> list[dict]:
    """Simulate ``verilog`` on each image (integers in C, H, W order).

    Returns per image ``outputs`` (the streamed integers; empty when ``keep_outputs`` is
    false, which spares the testbench a wake-up per value), ``cycles`` and ``layer_cycles``
    as the engine's counters report them. Each configuration needs its own ``build_dir``.
    ``simulator`` is ``icarus`` or ``verilator`` (found as :func:`dynfix.hw.lint` does).
    """
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    result = build_dir / "result.json"
    result.unlink(missing_ok=True)
    job = build_dir / "job.json"
    job.write_text(json.dumps({"images": [[int(v) for v in im] for im in images],
                               "n_out": n_out, "n_layers": n_layers,
                               "keep_outputs": keep_outputs, "result": str(result)}))
    build_args = []
    if simulator == "verilator":
        found = find_verilator()
        if found is None:
            raise DynfixError("verilator is not installed")
        os.environ.update({k: found[1][k] for k in ("VERILATOR_ROOT", "PATH")
                           if k in found[1]})
        # The PyPI wheel's verilated.mk leaves the precompiled-header include flag empty.
        if "CFG_CXXFLAGS_PCH_I" not in os.environ.get("MAKEFLAGS", ""):
            os.environ["MAKEFLAGS"] = (os.environ.get("MAKEFLAGS", "")
                                       + " CFG_CXXFLAGS_PCH_I=-include").strip()
        build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3"]
    runner = get_runner(simulator)
    runner.build(sources=[Path(verilog).resolve()], hdl_toplevel=TOP, build_dir=build_dir,
                 timescale=("1ns", "1ps"), build_args=build_args)
    runner.test(hdl_toplevel=TOP, test_module=TESTBENCH, build_dir=build_dir,
                test_dir=build_dir, extra_env={"DYNFIX_TB_JOB": str(job)})
    if not result.exists():
        raise DynfixError(f"simulation produced no result (see {build_dir})")
    return json.loads(result.read_text())
