"""The iCE40 SPRAM memory (``hw/ice40_spram.py``): its behavioural model in Amaranth's
simulator and its SB_SPRAM256KA instances under yosys's cell model (cocotb, Icarus), both
against a Python model of the cell; and an engine whose weights live there, loaded through
its ``wl`` port, bit-exact on digits (a wrong weight image must show)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from amaranth.sim import Simulator

from dynfix.errors import DynfixError
from dynfix.hw.generate import ensure_yosys
from dynfix.hw.ice40_cells import SIM_DEFINES, cell_model, sim_sources
from dynfix.hw.ice40_spram import CELL, SPRAM, halfwords, spram_cells

from spram_vectors import spram_ops

needs_icarus = pytest.mark.usefixtures("icarus")

#: Two rows of cells (a read multiplexer) and a partly used third column.
DEPTH, WIDTH = 20000, 40


def test_cells_for_a_shape():
    assert spram_cells(16384, 16) == (1, 1)
    assert spram_cells(16385, 16) == (2, 1)
    assert spram_cells(100, 64) == (1, 4)
    assert spram_cells(DEPTH, WIDTH) == (2, 3)
    with pytest.raises(DynfixError, match="positive depth"):
        SPRAM(0, 8)


def test_halfwords_low_first():
    assert halfwords([0x123456789, 0x1], 40) == [0x6789, 0x2345, 0x1, 0x1, 0, 0]
    assert halfwords([0xAB], 8) == [0xAB]


def test_behavioural_model_reads_what_was_written():
    dut = SPRAM(DEPTH, WIDTH, cell=False)
    ops = spram_ops(DEPTH, WIDTH)
    got = []

    async def bench(ctx):
        for op in ops:
            for name in ("addr", "w_en", "w_data", "w_mask"):
                ctx.set(getattr(dut, name), op[name])
            await ctx.tick()            # a read's word is there after the edge
            if not op["w_en"]:
                got.append((op["want"], ctx.get(dut.r_data)))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    reads = sum(1 for op in ops if not op["w_en"])
    assert len(got) == reads > 200
    assert [g for w, g in got] == [w for w, g in got]


def spram_verilog(depth: int, width: int) -> str:
    from amaranth.back import verilog
    ensure_yosys()
    return verilog.convert(SPRAM(depth, width, cell=True), name="spram", emit_src=False,
                           strip_internal_attrs=True)


def test_instances_and_their_ports():
    text = spram_verilog(DEPTH, WIDTH)
    assert text.count(f"{CELL} ") == 6
    for port in (".POWEROFF(1'h1)", ".SLEEP(1'h0)", ".STANDBY(1'h0)"):
        assert text.count(port) == 6, port
    assert sim_sources(text) == [cell_model()]


@needs_icarus
def test_cells_against_yosys_model(tmp_path):
    """The instances as yosys's SB_SPRAM256KA model simulates them: nibble write enables in
    the right order, rows chosen by the top address bits, reads from the right row."""
    from dynfix.sim.simulators import error_lines, job_files
    from sim_helpers import run_icarus
    build = tmp_path.resolve()
    src = build / "spram.v"
    src.write_text(spram_verilog(DEPTH, WIDTH))
    job, result = job_files(build, {"depth": DEPTH, "width": WIDTH})
    log = run_icarus([src, cell_model()], "spram", "spram_tb", build, job, SIM_DEFINES)
    assert result.exists(), f"the cocotb test failed{error_lines(log, 3)} (see {log})"
    r = json.loads(result.read_text())
    assert r["wrong"] == []
    assert r["checked"] == sum(1 for op in spram_ops(DEPTH, WIDTH) if not op["w_en"])


@needs_icarus
def test_digits_engine_with_weights_in_spram(tmp_path):
    """A whole digits engine whose weights live in SPRAM (no initial image in the Verilog):
    the host streams the halfwords in on ``wl`` before the first image, and the run is
    bit-exact with the integer model at the cycle model's counts. The same run with one
    weight halfword changed must mismatch: the weights do come through the load."""
    import numpy as np

    from dynfix.hw.compiler import compile_model
    from dynfix.hw.config import EngineConfig, Multiplier
    from dynfix.hw.cycle_model import layer_cycles
    from dynfix.hw.generate import write_outputs
    from dynfix.quant.datasets import load_digits
    from dynfix.quant.int_model import IntModel
    from dynfix.sim.harness import WEIGHT_LOAD
    from dynfix.sim.simulate import Design, memory_files, simulate

    from hw_models import digits_8bit
    model, spec = digits_8bit()
    cfg = EngineConfig(tn=2, tm=4, multiplier=Multiplier.ICE40_DUAL, w_spram=1)
    cm = compile_model(model, spec, cfg)
    report = write_outputs(cm, model.name, tmp_path / "gen")
    text = (tmp_path / "gen" / "dynfix_engine.v").read_text()
    assert text.count(f"{CELL} ") == spram_cells(cm.config.weight_depth, 64)[1] == 4
    assert "wl__payload" in text
    design = Design(tmp_path / "gen", report, model, spec, cm)
    x, _ = load_digits("test")
    x = x[:2]
    im = IntModel(model, spec)
    ref = im.forward(im.quantize_input(x))[cm.output_name].reshape(len(x), -1)
    res = simulate(design, x, None, tmp_path / "build", "icarus", chunk=1)
    assert res.images == 2 and res.mismatches == 0
    np.testing.assert_array_equal(res.outputs, ref)
    predicted = [layer_cycles(cm.config, p) for p in cm.plans]
    assert all(layers == predicted for layers in res.image_layer_cycles)

    good = Path(memory_files(cm, tmp_path / "w")[WEIGHT_LOAD[1]])
    lines = good.read_text().splitlines()
    lines[1] = f"{int(lines[1], 16) ^ 0x4040:04x}"      # two weights of word 0
    bad = tmp_path / WEIGHT_LOAD[1]
    bad.write_text("\n".join(lines) + "\n")
    res = simulate(design, x[:1], None, tmp_path / "build_bad", "icarus", chunk=1,
                   extra_files={WEIGHT_LOAD[1]: str(bad)})
    assert res.mismatches > 0


def _held_by_cycles(windows: int, items: int, gap: int, delay: int, words: int) -> int:
    """The sequencer with a single-port map, cycle by cycle: a window is ``items`` working
    cycles (``gap`` more after the first), the end of each blocks ``words`` cycles from
    ``delay`` cycles later, and a blocked cycle does no work."""
    t, work, i, last, blocked = 0, 0, 0, -1, set()
    while i < windows:
        if t not in blocked:
            work += 1
            if work == items + (gap if i else 0):
                last, work, i = t, 0, i + 1
                blocked.update(range(t + delay, t + delay + words))
        t += 1
    return last + 1


@pytest.mark.parametrize("seed", range(4))
def test_held_issue_cycles_against_a_cycle_by_cycle_count(seed):
    import random

    from dynfix.hw.cycle_model import held_issue_cycles
    rng = random.Random(seed)
    for _ in range(400):
        words = rng.randint(1, 4)
        items = rng.randint(1, 12)
        gap = max(0, words - items) + rng.randint(0, 2)
        args = (rng.randint(1, 200), items, gap, rng.randint(words, 24), words)
        assert held_issue_cycles(*args) == _held_by_cycles(*args), args
    # Long layers take the periodic shortcut: still exact.
    args = (5000, 3, 0, 17, 2)
    assert held_issue_cycles(*args) == _held_by_cycles(*args)


def test_big_maps_go_to_spram_on_the_icebreaker():
    """A 32 x 32 x 16 map (16 KB) overflows the iCEBreaker's block RAM with any engine: the
    fit puts the maps in an SPRAM (the sequencer then holds for the write-back), and the
    cycle model counts the holds."""
    import numpy as np

    from dynfix.boards.fit import fit
    from dynfix.boards.registry import get_board
    from dynfix.hw.compiler import compile_model
    from dynfix.hw.config import EngineConfig
    from dynfix.hw.cycle_model import estimate
    from dynfix.quant.ir import Conv2d, Model
    from dynfix.quant.qspec import LayerFormat, QuantSpec
    rng = np.random.default_rng(0)
    conv = Conv2d("c1", inputs=("input",), weight=rng.normal(size=(16, 3, 3, 3)).astype(
        np.float32), bias=np.zeros(16, np.float32), stride=(1, 1), pads=(1, 1, 1, 1))
    conv2 = Conv2d("c2", inputs=("c1",), weight=rng.normal(size=(16, 16, 3, 3)).astype(
        np.float32), bias=np.zeros(16, np.float32), stride=(1, 1), pads=(1, 1, 1, 1))
    model = Model("maps", "input", (3, 32, 32), [conv, conv2])
    fmt = {name: LayerFormat(name, bw_w=8, fl_w=7, bw_b=16, fl_b=10, bw_in=8, fl_in=6,
                             bw_x=8, fl_out=6, acc_bits=24) for name in ("c1", "c2")}
    spec = QuantSpec("maps", "static", "8", 8, 6, fmt)
    r = fit(model, spec, get_board("icebreaker"))
    c = r.chosen.config
    assert r.chosen.fits and c.m_spram == 1
    assert "SPRAMs" in r.chosen.estimate.memories["fmap"]
    assert r.chosen.estimate.total.sprams <= 4
    plain = estimate(compile_model(model, spec, EngineConfig(**{**c.choice(), "m_spram": 0})))
    held = estimate(compile_model(model, spec, c))
    # One write per output pixel and channel group, each costing one cycle of issue.
    assert held["compute_cycles"] > plain["compute_cycles"]
    assert held["compute_cycles"] - plain["compute_cycles"] <= 2 * 32 * 32 * -(-16 // c.tm)


@needs_icarus
def test_flow_puts_big_weights_in_spram_and_runs_them(tmp_path):
    """``dynfix flow`` on a model whose 32 K weights overflow the iCEBreaker's block RAM:
    the fit keeps them in SPRAM, the simulation loads them through ``wl`` first, the
    hardware matches the integer model, and the report counts the SPRAMs."""
    import contextlib
    import io

    from dynfix.cli import main
    from dynfix.quant.yaml_io import save_yaml

    from hw_models import fc_model
    model, _ = fc_model(512)
    save_yaml(model, tmp_path / "big.yaml")
    std = io.StringIO()
    with contextlib.redirect_stdout(std), contextlib.redirect_stderr(io.StringIO()):
        code = main(["flow", str(tmp_path / "big.yaml"), "--images", "2", "--output",
                     str(tmp_path / "out"), "--json"])
    assert code == 0
    rep = json.loads(std.getvalue())
    assert rep["engine"]["w_spram"] == 1 and "spram weights" in rep["engine"]["summary"]
    assert rep["simulation"]["images"] == 2 and rep["simulation"]["mismatches"] == 0
    used = rep["resources"]["used"]
    assert 1 <= used["sprams"] <= rep["resources"]["available"]["sprams"] == 4
    assert "SPRAMs" in (tmp_path / "out" / "summary.md").read_text()
