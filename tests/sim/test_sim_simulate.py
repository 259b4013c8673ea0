"""Whole-network simulation (``dynfix simulate``, :mod:`dynfix.sim.simulate`): bit-exact
against the integer model, an in-memory design run in chunks with progress lines and nothing
printed or left outside the build folder, clean build failures, mismatch localization on a
tampered design, the direct Python driver (``tests/cocotb_drivers.py``) against the bulk host,
the CLI's errors and JSON, Verilator.

The done-when runs (digits on 200 images in Icarus, on all 360 in Verilator) are marked
``slow``; see docs/verification.md.
"""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pytest

from dynfix.cli import main
from dynfix.errors import DynfixError
from dynfix.hw.compiler import compile_model, folded_bias, pack_biases, pack_weights
from dynfix.hw.config import EngineConfig
from dynfix.hw.generate import hex_lines, write_outputs
from dynfix.quant import fixed
from dynfix.quant.datasets import load_digits
from dynfix.quant.int_model import IntModel
from dynfix.hw.design import Design
from dynfix.sim.simulate import group_maps, host_stream, padded, simulate

from cocotb_drivers import run_direct
from hw_models import digits_8bit, small_net
from sim_helpers import require_simulator

SMALL_CFG = EngineConfig(tn=9, tm=3)


def make_design(tmp_path, which: str = "small"):
    if which.startswith("digits"):
        model, spec = digits_8bit()
        cfg = EngineConfig(tn=9, tm=1)
        if which == "digits_im2col":
            cfg = EngineConfig(tn=9, tm=1, im2col=1)
        x, y = load_digits("test")
    else:
        model, spec, calib = small_net()
        cfg = SMALL_CFG
        x, y = calib * 1.5, None
    cm = compile_model(model, spec, cfg)
    write_outputs(cm, model.name, tmp_path / "design", model_files=(model, spec))
    return tmp_path / "design", x, y


def test_small_net_icarus_bit_exact(tmp_path):
    require_simulator("icarus")
    folder, x, _ = make_design(tmp_path)
    res = simulate(Design.load(folder).with_model(), x[:3], None, tmp_path / "b", "icarus")
    assert res.images == 3 and res.mismatches == 0 and res.first_mismatch is None
    d = Design.load(folder).with_model()
    est = d.report["estimate"]["layers"]
    for row in est:                             # the cycle model is within 5 %
        assert abs(res.layer_cycles[row["name"]] - row["cycles"]) <= 0.05 * row["cycles"]
    assert res.cycles_per_image == sum(res.layer_cycles.values())
    assert all(0 < u <= 1 for u in res.mac_utilization.values()), res.mac_utilization
    assert res.sim_cycles >= 3 * res.host_cycles_per_image


def test_in_memory_design_in_chunks_quietly(tmp_path, capfd, monkeypatch):
    """A design built in memory (no recompilation) runs in one simulator process, two images
    per step, with a progress line per step; the per-image results match the integer model;
    nothing reaches file descriptors 1 and 2, and nothing is written outside the build folder
    (the temporary folder stays empty)."""
    require_simulator("icarus")
    model, spec, calib = small_net()
    cm = compile_model(model, spec, SMALL_CFG)
    report = write_outputs(cm, model.name, tmp_path / "design")
    design = Design(tmp_path / "design", report, model, spec, cm)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    x = calib[:5] * 1.5
    lines = []
    res = simulate(design, x, None, tmp_path / "b", "icarus", progress=lines.append, chunk=2)
    assert lines == ["simulated 2/5 images", "simulated 4/5 images", "simulated 5/5 images"]
    im = IntModel(model, spec)
    want = im.forward(im.quantize_input(x))[cm.output_name].reshape(5, -1)
    assert res.images == 5 and res.mismatches == 0
    assert res.outputs.dtype == np.int64 and res.expected.dtype == np.int64
    np.testing.assert_array_equal(res.outputs, want)
    np.testing.assert_array_equal(res.expected, want)
    assert len(res.cycles) == len(res.host_cycles) == len(res.image_layer_cycles) == 5
    assert res.image_layer_cycles[4] == [res.layer_cycles[p.name] for p in cm.plans]
    assert res.cycles[4] == res.cycles_per_image == sum(res.image_layer_cycles[4])
    assert res.host_cycles[4] == res.host_cycles_per_image > res.cycles_per_image
    assert res.labels is None
    summary = res.summary()
    assert not {"outputs", "expected", "cycles", "host_cycles", "image_layer_cycles",
                "labels"} & set(summary)
    json.dumps(summary)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "design", "tmp"]
    assert list(tmp.iterdir()) == []


def test_build_failure_is_one_clean_line(tmp_path, capfd):
    require_simulator("icarus")
    folder, x, _ = make_design(tmp_path)
    d = Design.load(folder).with_model()
    d.verilog.write_text(d.verilog.read_text().replace("endmodule", "endmodul", 1))
    with pytest.raises(DynfixError) as e:
        simulate(d, x[:1], None, tmp_path / "b", "icarus")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("icarus build failed") and "build.log" in msg
    assert "syntax error" in msg            # the log's first error, in case the log is gone
    assert capfd.readouterr() == ("", "")


def test_digits_icarus_bit_exact(tmp_path):
    require_simulator("icarus")
    folder, x, y = make_design(tmp_path, "digits")
    res = simulate(Design.load(folder).with_model(), x[:3], y[:3], tmp_path / "b", "icarus")
    assert res.mismatches == 0
    assert res.accuracy_hw == res.accuracy_int
    print(res.summary())


def test_digits_im2col_icarus(tmp_path):
    """The host streams the first conv's windows (report input layout ``im2col``)."""
    require_simulator("icarus")
    folder, x, y = make_design(tmp_path, "digits_im2col")
    d = Design.load(folder).with_model()
    assert d.report["input"]["layout"] == "im2col"
    res = simulate(d, x[:2], y[:2], tmp_path / "b", "icarus")
    assert res.mismatches == 0


def tampered(folder, tmp_path):
    """A weights.hex with one weight of the second group changed so image 0's outputs differ
    (and the biases.hex the compiler makes for it: a layer reading an unsigned map folds
    ``-zp * sum(w)`` into its biases); returns those files and the expected first
    difference (layer, coords)."""
    d = Design.load(folder).with_model()
    cm, cfg = d.compiled, d.compiled.config
    im = IntModel(d.model, d.spec)
    xq = im.quantize_input(small_net()[2][:1] * 1.5)
    base = im.forward(xq)
    p = cm.plans[1]
    bw = d.spec.layers[p.name].bw_w
    for idx in np.ndindex(p.weights.shape):
        old = int(p.weights[idx])
        new = fixed.qmin(bw) if old >= 0 else fixed.qmax(bw)
        im.weights[p.name].reshape(p.weights.shape)[idx] = new
        trace = im.forward(xq)
        im.weights[p.name].reshape(p.weights.shape)[idx] = old
        if not np.array_equal(trace[cm.output_name], base[cm.output_name]):
            break
    p.weights[idx] = new
    p.biases = folded_bias(d.spec.layers[p.name], im.biases[p.name], p.weights, p.shifts)
    files = {"weights.hex": tmp_path / "tampered_weights.hex",
             "biases.hex": tmp_path / "tampered_biases.hex"}
    files["weights.hex"].write_text(hex_lines(padded(pack_weights(cfg, cm.plans),
                                                     cfg.weight_depth),
                                              cfg.tm * cfg.lanes * cfg.weight_bits))
    files["biases.hex"].write_text(hex_lines(padded(pack_biases(cfg, cm.plans),
                                                    cfg.bias_depth), cfg.tm * cfg.bias_lane_bits))
    for name, ref in group_maps(cm, trace):
        diff = np.argwhere(ref[0] != base[name][0])
        if len(diff):
            return {k: str(v) for k, v in files.items()}, name, [int(v) for v in diff[0]]
    raise AssertionError("the tampered weight changes nothing")


def test_mismatch_is_localized(tmp_path):
    require_simulator("icarus")
    folder, x, _ = make_design(tmp_path)
    files, layer, coords = tampered(folder, tmp_path)
    res = simulate(Design.load(folder).with_model(), x[:1], None, tmp_path / "b", "icarus",
                   extra_files=files)
    assert res.mismatches == 1
    fm = res.first_mismatch
    assert (fm["image"], fm["layer"], fm["coords"]) == (0, layer, coords), fm


def test_direct_driver_matches_bulk_host(tmp_path):
    require_simulator("icarus")
    folder, x, _ = make_design(tmp_path)
    d = Design.load(folder).with_model()
    im = IntModel(d.model, d.spec)
    xq = im.quantize_input(x[:2])
    direct = run_direct(d.verilog, [host_stream(d.compiled, a).tolist() for a in xq], d.compiled.output_len,
                        len(d.compiled.plans), tmp_path / "direct")
    res = simulate(d, x[:2], None, tmp_path / "bulk", "icarus")
    want = im.forward(xq)[d.compiled.output_name].reshape(2, -1)
    np.testing.assert_array_equal(res.outputs, want)
    for k, (got, ref) in enumerate(zip(direct, want)):
        assert got["outputs"] == ref.tolist()
        assert got["cycles"] == res.cycles_per_image == res.cycles[k]
        assert got["layer_cycles"] == [res.layer_cycles[p.name] for p in d.compiled.plans]
        assert got["layer_cycles"] == res.image_layer_cycles[k]


def test_cli_json_and_results_file(tmp_path, capsys):
    require_simulator("icarus")
    folder, _, _ = make_design(tmp_path, "digits")
    code = main(["simulate", str(folder), "--images", "2", "--json", "--sim", "icarus"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    for key in ("images", "mismatches", "accuracy_hw", "accuracy_float", "cycles_per_image",
                "mac_utilization", "sim_cycles_per_s"):
        assert key in out
    assert out["images"] == 2 and out["mismatches"] == 0
    assert set(out["mac_utilization"]) == {"conv1", "conv2", "fc", "overall"}
    assert json.loads((folder / "simulation.json").read_text()) == out


def test_cli_errors(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "nope")]) == 1
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["simulate", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "is not a dynfix generate output" in err and len(err.strip().splitlines()) == 1
    folder, _, _ = make_design(tmp_path)
    (folder / "Q.yaml").unlink()
    assert main(["simulate", str(folder)]) == 1
    assert "missing Q.yaml" in capsys.readouterr().err
    folder, _, _ = make_design(tmp_path / "d2", "digits")
    (folder / "weights.hex").write_text("00\n")
    assert main(["simulate", str(folder)]) == 1
    assert "weights.hex does not match" in capsys.readouterr().err
    folder, _, _ = make_design(tmp_path / "d3", "digits")
    assert main(["simulate", str(folder), "--images", "100000"]) == 1
    assert "the data has only 360" in capsys.readouterr().err
    assert main(["simulate", str(folder), "--sim", "verilator", "--images", "0"]) == 1


def test_small_net_verilator(tmp_path):
    require_simulator("verilator")
    folder, x, _ = make_design(tmp_path)
    res = simulate(Design.load(folder).with_model(), x[:3], None, tmp_path / "b", "verilator")
    assert res.mismatches == 0
    ica = simulate(Design.load(folder).with_model(), x[:3], None, tmp_path / "i", "icarus")
    assert res.layer_cycles == ica.layer_cycles


@pytest.mark.slow
def test_digits_200_icarus(tmp_path):
    """Done-when: 200 test images on Icarus, 0 mismatches, hw = int accuracy, within 0.5
    points of float."""
    require_simulator("icarus")
    folder, x, y = make_design(tmp_path, "digits")
    n = int(os.environ.get("DYNFIX_DIGITS_IMAGES", "200"))
    res = simulate(Design.load(folder).with_model(), x[:n], y[:n], tmp_path / "b", "icarus")
    print(json.dumps(res.summary()))
    assert res.mismatches == 0
    assert res.accuracy_hw == res.accuracy_int
    assert abs(res.accuracy_hw - res.accuracy_float) <= 0.005


@pytest.mark.slow
def test_digits_all_verilator(tmp_path):
    """Done-when: the whole digits test split on Verilator."""
    require_simulator("verilator")
    folder, x, y = make_design(tmp_path, "digits")
    res = simulate(Design.load(folder).with_model(), x, y, tmp_path / "b", "verilator")
    print(json.dumps(res.summary()))
    assert res.images == 360 and res.mismatches == 0
    assert res.accuracy_hw == res.accuracy_int
    assert abs(res.accuracy_hw - res.accuracy_float) <= 0.005


def test_generate_cli_writes_what_simulate_needs(tmp_path):
    from dynfix.quant.qspec_io import save_qspec

    model, spec = digits_8bit()
    save_qspec(spec, tmp_path / "Q.yaml")
    assert main(["generate", "digits", "--quant", str(tmp_path / "Q.yaml"), "--board",
                 "icebreaker", "--output", str(tmp_path / "gen")]) == 0
    d = Design.load(tmp_path / "gen").with_model()
    from dynfix.api import fit
    c = fit(spec, "icebreaker", model=model).chosen.config
    cfg = EngineConfig(**c.choice())
    assert d.compiled.program == compile_model(model, spec, cfg).program
