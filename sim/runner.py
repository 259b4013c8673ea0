"""Build and run the generated engine Verilog under a cocotb simulator."""

from __future__ import annotations

import json
from pathlib import Path

from cocotb_tools.runner import get_runner

from dynfix.errors import DynfixError

TOP = "dynfix_engine"
TESTBENCH = "dynfix.sim.engine_tb"


def run_engine(verilog: str | Path, images: list[list[int]], n_out: int, n_layers: int,
               build_dir: str | Path, simulator: str = "icarus") -> list[dict]:
    """Simulate ``verilog`` on each image (integers in C, H, W order).

    Returns per image ``outputs`` (the streamed integers), ``cycles`` and ``layer_cycles``
    as the engine's counters report them. Each configuration needs its own ``build_dir``.
    """
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    result = build_dir / "result.json"
    result.unlink(missing_ok=True)
    job = build_dir / "job.json"
    job.write_text(json.dumps({"images": [[int(v) for v in im] for im in images],
                               "n_out": n_out, "n_layers": n_layers,
                               "result": str(result)}))
    runner = get_runner(simulator)
    runner.build(sources=[Path(verilog).resolve()], hdl_toplevel=TOP, build_dir=build_dir,
                 timescale=("1ns", "1ps"))
    runner.test(hdl_toplevel=TOP, test_module=TESTBENCH, build_dir=build_dir,
                test_dir=build_dir, extra_env={"DYNFIX_TB_JOB": str(job)})
    if not result.exists():
        raise DynfixError(f"simulation produced no result (see {build_dir})")
    return json.loads(result.read_text())
