"""``dynfix flow``: the bundled model end to end (a few images), the output folder's contents,
and failures that must end in one line, exit 1 and no output folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cli_helpers import run_cli
from dynfix.cli import main
from dynfix.errors import DynfixError
from dynfix.hw.generate import TOP_NAME
from onnx_graphs import GraphBuilder

needs_iverilog = pytest.mark.usefixtures("icarus")

EXPECTED_FILES = ["quant.yaml", "report.json", "summary.md", f"hw/{TOP_NAME}.v",
                  "hw/program.hex", "hw/weights.hex", "hw/biases.hex", "hw/report.json",
                  "plots/accuracy_vs_bits.png", "plots/sqnr.png", "plots/layers.png"]


def fake_synth(generated, board, build_dir, check_timing=True, flash_coding="none"):
    """Stands in for yosys + nextpnr (minutes; the real run is marked synth)."""
    from dynfix.boards.synth import SynthResult
    build_dir.mkdir(parents=True)
    (build_dir / "dynfix_top.bin").write_bytes(b"\xff" * 64)
    return SynthResult(board=board.name, device=board.device, luts=2000, ffs=1000, dsps=8,
                       brams=10, sprams=0, fmax_mhz=24.0, target_mhz=board.target_mhz,
                       timing_met=True, seconds=1.0,
                       bitstream=str(build_dir / "dynfix_top.bin"),
                       clocks={"cd_sync.clk": 24.0},
                       available={"luts": 5280, "ffs": 5280, "dsps": 8, "brams": 30},
                       clock_mhz=22.5, pll={"family": "ice40", "f_out_mhz": 22.5},
                       closure=[{"clock_mhz": 30.0, "fmax_mhz": 23.0, "timing_met": False,
                                 "seconds": 1.0},
                                {"clock_mhz": 22.5, "fmax_mhz": 24.0, "timing_met": True,
                                 "seconds": 1.0}])


@pytest.fixture(scope="module")
def digits_flow(tmp_path_factory):
    """One CLI run of the default flow with --synth on 2 images (about a minute under
    Icarus); the synthesis tools are stood in for (see test_digits_flow_real_synth)."""
    from sim_helpers import require_simulator
    require_simulator("icarus")
    import dynfix.api
    out = tmp_path_factory.mktemp("flow") / "digits"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dynfix.api, "synth", fake_synth)
        code, std, err = run_cli(["flow", "--images", "2", "--synth", "--output", str(out),
                                  "--json"])
    return code, json.loads(std), err, out


def test_digits_flow_report(digits_flow):
    code, rep, progress, out = digits_flow
    assert code == 0
    assert rep["model"] == "digits" and rep["board"] == "icebreaker" and rep["bits"] == "8"
    a = rep["accuracy"]
    assert a["test_images"] == 360 and a["simulated_images"] == 2
    assert a["float"] >= 0.97 and a["integer"] >= 0.97
    assert rep["simulation"]["mismatches"] == 0
    assert a["hardware"] == a["integer_simulated"]
    p = rep["performance"]
    # The engine's cycle counters agree with the cycle model (within 5 %).
    assert abs(p["compute_cycles"] + p["load_cycles"] + p["unload_cycles"]
               - p["cycles_estimate"]) <= 0.05 * p["cycles_estimate"]
    assert p["images_per_s"] == pytest.approx(p["clock_mhz"] * 1e6 / p["cycles_per_image"],
                                              rel=1e-3)
    assert p["gops"] == pytest.approx(2 * p["macs_per_image"] * p["images_per_s"] / 1e9,
                                      rel=1e-3)
    assert 0 < p["mac_utilization"] <= 1
    # With --synth: throughput at the clock the bitstream runs at (the PLL's, under the
    # Fmax), resources and timing from nextpnr.
    assert p["clock_mhz"] == 22.5 and "the bitstream's clock (PLL)" in p["clock_source"]
    assert rep["resources"]["source"].startswith("nextpnr")
    assert rep["resources"]["used"]["dsps"] == 8 and rep["resources"]["available"]["luts"] == 5280
    assert rep["timing"] == {"clock_mhz": 22.5, "fmax_mhz": 24.0, "target_mhz": 12.0,
                             "met": True, "pll": {"family": "ice40", "f_out_mhz": 22.5},
                             "builds": 2}
    assert [r["name"] for r in rep["layers"]] == ["conv1", "conv2", "fc"]
    assert [pt["bits"] for pt in rep["accuracy_vs_bits"]["points"]] == ["16", "8", "6", "4"]
    # Progress: one numbered line per stage on stderr.
    assert [ln.split(":")[0] for ln in progress if ln.startswith("[")] == \
        ["[1/5] quantize", "[2/5] generate", "[3/5] simulate", "[4/5] synthesize",
         "[5/5] report"]


def test_digits_flow_files(digits_flow):
    _, rep, _, out = digits_flow
    assert rep["files"]["bitstream"] == "synth/dynfix_top.bin"
    for name in EXPECTED_FILES + ["synth/dynfix_top.bin"]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "plots/sqnr.png").read_bytes()[:4] == b"\x89PNG"
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == {k: v for k, v in rep.items() if k != "output"}
    md = (out / "summary.md").read_text()
    assert "| hardware (Icarus) | 100.00 % on 2 images; 0 mismatches" in md
    # Deterministic and relocatable: no absolute paths in what the flow writes.
    for name in ("report.json", "summary.md", "quant.yaml", "hw/report.json"):
        assert str(out.parent) not in (out / name).read_text(), name
    # Nothing left beside the output folder (temporary folders are renamed or removed).
    assert sorted(p.name for p in out.parent.iterdir()) == ["digits"]


@needs_iverilog
@pytest.mark.synth
def test_digits_flow_real_synth(tmp_path, request):
    """The default flow with the real yosys + nextpnr (minutes): bitstream, timing met.
    Runs with ``-m synth`` or DYNFIX_SYNTH=1, like the other synthesis builds."""
    import os
    if "synth" not in (request.config.option.markexpr or "") \
            and os.environ.get("DYNFIX_SYNTH") != "1":
        pytest.skip("synthesis for minutes: select with -m synth or DYNFIX_SYNTH=1")
    out = tmp_path / "flow"
    code, std, err = run_cli(["flow", "--images", "1", "--synth", "-o", str(out), "--json"])
    assert code == 0, err[-3:]
    rep = json.loads(std)
    t = rep["timing"]
    assert t["met"] and t["fmax_mhz"] >= t["clock_mhz"] == rep["performance"]["clock_mhz"]
    assert t["clock_mhz"] >= 40 and t["pll"]["family"] == "ice40"
    assert rep["resources"]["used"]["luts"] > 100
    assert (out / rep["files"]["bitstream"]).stat().st_size > 100_000


def test_rerun_replaces_only_flow_outputs(tmp_path):
    """An existing folder that is not a flow output is refused before any work."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DynfixError, match="is not a dynfix flow output"):
        from dynfix.workflow.run import FlowOptions, run_flow
        run_flow(FlowOptions(output=tmp_path / "mine"))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def _fails(args: list[str], capsys) -> str:
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.count("\n") == 0 and err.startswith("dynfix: error: "), err
    return err


@pytest.mark.parametrize("args, message", [
    (["missing.onnx"], "missing.onnx"),
    (["--bits", "3x"], "bit"),
    (["--bits", "40"], "bit"),
    (["--board", "nosuchboard"], "unknown board"),
    (["--images", "0"], "--images"),
    (["--flash-coding", "huffman"], "--flash-coding is for the synthesized flash image: it "
                                    "needs --synth too"),
])
def test_bad_arguments_leave_nothing(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    err = _fails(["flow", *args, "--output", "out/x"], capsys)
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_a_flash_coding_without_an_image_is_refused_before_simulating(tmp_path, capsys,
                                                                      monkeypatch):
    """The digits engine keeps its weights in the bitstream: a Huffman-coded flash image is
    refused right after the engine is generated, before the simulation, leaving nothing."""
    import dynfix.api

    def no_simulation(*args, **kwargs):
        raise AssertionError("simulated")
    monkeypatch.setattr(dynfix.api, "simulate", no_simulation)
    monkeypatch.chdir(tmp_path)
    assert main(["flow", "--synth", "--flash-coding", "huffman", "-o", "out/x"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("dynfix: error: the engine generated for icebreaker keeps its weights "
                       "in the bitstream: it has no flash image to code")
    assert not any("simulate" in line for line in err)
    assert list(tmp_path.iterdir()) == []


def test_unsupported_layers_leave_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    GraphBuilder((1, 8, 8)).conv(4).op("LRN", size=3).flatten().gemm(10).save("lrn.onnx")
    err = _fails(["flow", "lrn.onnx"], capsys)
    assert "LRN" in err
    GraphBuilder((1, 8, 8)).conv(4).relu().avgpool(3, 1).flatten().gemm(10).save("avg.onnx")
    err = _fails(["flow", "avg.onnx"], capsys)
    assert "cannot run on the engine" in err and "average pool of 9 cells" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["avg.onnx", "lrn.onnx"]


def test_digits_data_does_not_fit_other_models(tmp_path, capsys):
    GraphBuilder((3, 6, 6)).conv(4).relu().flatten().gemm(3).save(tmp_path / "rgb.onnx")
    err = _fails(["flow", str(tmp_path / "rgb.onnx"), "-o", str(tmp_path / "o")], capsys)
    assert "3x6x6" in err and "--data" in err
    assert not (tmp_path / "o").exists()


def test_failure_mid_flow_leaves_nothing(tmp_path, monkeypatch):
    """A stage failing after the output work began: no folder, no temporary leftovers."""
    import dynfix.api

    def broken(*args, **kwargs):
        raise DynfixError("simulation broke")

    monkeypatch.setattr(dynfix.api, "simulate", broken)
    from dynfix.workflow.run import FlowOptions, run_flow
    out = tmp_path / "a" / "b" / "flow"
    with pytest.raises(DynfixError, match="simulation broke"):
        run_flow(FlowOptions(output=out, sweep=("8",)))
    assert list(tmp_path.iterdir()) == []


def test_cli_exit_code_and_one_line(tmp_path):
    """As a user runs it: a separate process, exit status 1, one line on stderr."""
    r = subprocess.run([sys.executable, "-m", "dynfix.cli", "flow", "nope.yaml"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("dynfix: error: ") and r.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_flow_help_lists_options(capsys):
    with pytest.raises(SystemExit):
        main(["flow", "--help"])
    text = capsys.readouterr().out
    for opt in ("--board", "--bits", "--images", "--synth", "--output", "--json"):
        assert opt in text


def test_timing_failure_keeps_reports_and_exits_1(tmp_path, monkeypatch, capsys):
    """Timing not met: the reports are written (to see why), the exit status is 1."""
    import dataclasses

    import numpy as np

    import dynfix.api
    from dynfix.api import SimulateResult

    def fake_simulate(g, q, data, images, **kwargs):
        z = np.zeros((1, 10), np.int64)
        return SimulateResult(z, z, [100], [[30, 60, 10]], np.array([0]))

    def slow_synth(*args, **kwargs):
        return dataclasses.replace(fake_synth(*args, **kwargs), fmax_mhz=10.5,
                                   timing_met=False)

    monkeypatch.setattr(dynfix.api, "simulate", fake_simulate)
    monkeypatch.setattr(dynfix.api, "synth", slow_synth)
    assert main(["flow", "--synth", "-o", str(tmp_path / "f")]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("dynfix: error: ")
    assert "timing NOT met on icebreaker: 10.50 MHz < target 12 MHz" in err
    rep = json.loads((tmp_path / "f" / "report.json").read_text())
    assert rep["timing"]["met"] is False
    assert "NOT MET" in (tmp_path / "f" / "summary.md").read_text()
