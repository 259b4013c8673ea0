"""Simulation speed: simulated cycles per second of the engine's Verilog under ``dynfix
simulate`` (the bulk host of ``dynfix.sim.harness``), for a small and a wide engine.

* small: the bundled digits model, 8 bit, on the default board's engine (Icarus and
  Verilator);
* wide: the engine the fit chooses for VGG-11 on the ULX3S (``bench/vgg11_ulx3s.py``:
  tn=6 tm=26 im2col, 156 products on ECP5 DSP cells, weights streamed from the SDRAM chip
  model through the SDRAM controller) running a small seeded VGG-like model (three conv
  3x3 + ReLU + max-pool, one FC) on 3 x 32 x 32 inputs, in Verilator only (Icarus is far
  too slow for it).

"cycles" are the host's clock cycles from each step's ``go`` to its ``finished`` (images
loaded, run and read back), "seconds" the wall time of the same span: the build and the
simulator's start-up are not counted (the build time is its own column). With ``--baseline``
the small engine is also built the way cocotb's runner builds by default (every signal public
and writable, ``-Os``): what ``dynfix simulate --sim verilator`` did before issue #30;
``--baseline-wide`` does the same for the wide engine (a long build).

Wall times on a shared 2-core machine vary from run to run; the cycle counts are exact.
Writes ``bench/results/sim_speed.md``.
Run: ``.venv/bin/python bench/sim_speed.py [--baseline] [--baseline-wide]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import md_table, write_result  # noqa: E402

import dynfix  # noqa: E402
from dynfix.hw.design import Design  # noqa: E402
from dynfix.quant.datasets import load_digits  # noqa: E402
from dynfix.quant.ir import Conv2d, Flatten, Linear, MaxPool2d, Model, ReLU  # noqa: E402
from dynfix.sim import simulators  # noqa: E402
from dynfix.sim.simulate import simulate  # noqa: E402

#: The engine ``bench/vgg11_ulx3s.py``'s fit chooses for VGG-11 on the ULX3S.
WIDE_ENGINE = {"tn": 6, "tm": 26, "im2col": 1, "multiplier": "ecp5", "w_bulk": 1,
               "bulk_bits": 16, "bulk_store": "sdram"}
#: Images per run: (Icarus, Verilator).
SMALL_IMAGES = (2, 20)
WIDE_IMAGES = 4


def wide_model(seed: int = 0) -> Model:
    """A small VGG-like model for 3 x 32 x 32 inputs: conv 32, 64, 64 (3x3 pad 1, ReLU,
    2x2 max-pool each), FC 1024 -> 10; seeded He-scaled random weights."""
    rng = np.random.default_rng(seed)
    layers, x, c = [], "x", 3
    for i, out in enumerate((32, 64, 64)):
        w = rng.standard_normal((out, c, 3, 3)).astype(np.float32) * np.sqrt(2 / (9 * c))
        b = rng.standard_normal(out).astype(np.float32) * 0.05
        layers += [Conv2d(f"conv{i}", (x,), weight=w, bias=b, pads=(1, 1, 1, 1)),
                   ReLU(f"relu{i}", (f"conv{i}",)),
                   MaxPool2d(f"pool{i}", (f"relu{i}",), kernel=(2, 2), stride=(2, 2))]
        x, c = f"pool{i}", out
    layers.append(Flatten("flatten", (x,)))
    w = rng.standard_normal((10, c * 16)).astype(np.float32) * np.sqrt(1 / (c * 16))
    layers.append(Linear("fc", ("flatten",), weight=w, bias=np.zeros(10, dtype=np.float32)))
    return Model("vgg_small", "x", (3, 32, 32), layers)


def random_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


@contextmanager
def cocotb_default_build():
    """Build the host as cocotb's runner does by default: no extra Verilator arguments."""
    saved = simulators.HOST_VERILATOR_ARGS
    simulators.HOST_VERILATOR_ARGS = []
    try:
        yield
    finally:
        simulators.HOST_VERILATOR_ARGS = saved


def run(design: Design, x: np.ndarray, y, build: Path, sim: str, label: str,
        engine: str, baseline: bool = False) -> list:
    with cocotb_default_build() if baseline else nullcontext():
        r = simulate(design, x, y, build, sim)
    if r.mismatches:
        raise SystemExit(f"{engine}, {label}: {r.mismatches} image(s) mismatch")
    row = [engine, label, f"{r.build_seconds:.0f}", len(x), f"{r.sim_cycles:,}",
           f"{r.sim_seconds:.2f}", f"{r.sim_cycles_per_s:,.0f}"]
    print(" | ".join(str(v) for v in row), flush=True)
    return row


def measure(work: Path, baseline: bool, baseline_wide: bool) -> tuple[list[list], list[str]]:
    rows, notes = [], []
    q = dynfix.quantize("digits", bits="8")
    g = dynfix.generate(q, work / "small")
    small = Design.load(work / "small")
    engine = f"digits: {g.config.summary()} ({g.config.multipliers} products)"
    x, y = load_digits("test")
    n_icarus, n_verilator = SMALL_IMAGES
    rows.append(run(small, x[:n_icarus], y[:n_icarus], work / "b_small", "icarus",
                    "icarus", engine))
    rows.append(run(small, x[:n_verilator], y[:n_verilator], work / "b_small", "verilator",
                    "verilator", engine))
    if baseline:
        rows.append(run(small, x[:n_verilator], y[:n_verilator], work / "b_small_base",
                        "verilator", "verilator, cocotb's default build", engine, True))

    t0 = time.perf_counter()
    m = wide_model()
    q = dynfix.quantize(m, calib=random_images(16, 1), bits="8", method="greedy-paper")
    g = dynfix.generate(q, work / "wide", config=WIDE_ENGINE)
    notes.append(f"wide model: quantize and generate {time.perf_counter() - t0:.0f} s")
    wide = Design.load(work / "wide")
    engine = f"wide: {g.config.summary()} ({g.config.multipliers} products)"
    xw = random_images(WIDE_IMAGES, 2)
    rows.append(run(wide, xw, None, work / "b_wide", "verilator", "verilator", engine))
    if baseline_wide:
        rows.append(run(wide, xw, None, work / "b_wide_base", "verilator",
                        "verilator, cocotb's default build", engine, True))
    return rows, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", action="store_true",
                    help="also build the small engine as cocotb's runner does by default")
    ap.add_argument("--baseline-wide", action="store_true",
                    help="the same for the wide engine (a long build)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dynfix-sim-speed-") as tmp:
        rows, notes = measure(Path(tmp), a.baseline, a.baseline_wide)
    lines = [
        "# Simulation speed",
        "",
        "Generated by `bench/sim_speed.py`. **Wall times: expected to vary** between runs (a "
        "shared 2-core machine with other jobs); cycle counts are exact. Every run is "
        "bit-exact against the integer model.",
        "",
        "\"cycles\" are host clock cycles from each step's `go` to its `finished` (images "
        "loaded, run and read back), \"seconds\" the wall time of that span (no build, no "
        "simulator start-up). dynfix builds the host with `--no-public-flat-rw` (the host "
        "wrapper marks only its own ports public) and `-CFLAGS -O2`; \"cocotb's default "
        "build\" is the same host built with cocotb's runner's flags alone "
        "(`--public-flat-rw`: every signal public and writable; the C++ at `-Os`), as "
        "`dynfix simulate` built it before issue #30. Both rows use today's wrapper, which "
        "feeds the engine its reset and input length through registers.",
        "",
    ]
    lines += md_table(["engine", "simulator", "build s", "images", "cycles", "seconds",
                       "cycles/s"], rows)
    lines += [""] + [f"* {n}" for n in notes]
    write_result("sim_speed.md", lines)


if __name__ == "__main__":
    main()
