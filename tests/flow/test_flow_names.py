"""What converters leave behind, as ``dynfix flow`` shows it: layer names hundreds of
characters long (tflite2onnx's fused names) shown short and unique, a placeholder graph name
(``pre-alpha``) replaced by the file's name; and the flow's simulator choice (``--sim``) with
its time estimate."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import onnx
import pytest

import dynfix.api
from dynfix.cli import main
from dynfix.errors import DynfixError
from dynfix.inputs import load_model
from dynfix.sim.simulators import SIMULATORS
from dynfix.workflow import simulator
from dynfix.workflow.names import (DISPLAY_LIMIT, display_names, is_placeholder, model_name,
                                   relabel)
from dynfix.workflow.options import DEFAULT_IMAGES, SIM_CHOICES
from dynfix.workflow.run import FlowOptions, run_flow

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "dynfix" / "data" / "digits.onnx"
DSCNN = ROOT / "models" / "mlperf_tiny" / "dscnn.onnx"


def _fused(scope: str, k: int, act: bool) -> str:
    """The TFLite name of layer ``scope`` with its batch norm (and activation) folded in."""
    bn = f"functional_1/batch_normalization_{k}/FusedBatchNormV3;"
    head = f"functional_1/activation_{k}/Relu;" if act else ""
    op = "depthwise" if "depthwise" in scope else "Conv2D"
    return (f"{head}{bn}functional_1/{scope}/BiasAdd;functional_1/{scope}/{op};"
            f"{scope}/bias")


def converter_named(src: Path, dst: Path, graph_name: str = "pre-alpha") -> Path:
    """``src`` with the node names tflite2onnx writes: a conv followed by its ReLU is
    ``TFLITE2ONNX_FAF_<fused name>`` and the ReLU ``<fused name>``, every other node
    ``functional_1/<name>/<op>``; the graph named ``graph_name``."""
    m = onnx.load(src)
    nodes = list(m.graph.node)
    readers = {i: [n for n in nodes if i in n.input] for n in nodes for i in n.output}
    names = {}
    for k, n in enumerate(nodes):
        nxt = readers.get(n.output[0], [])
        if n.op_type == "Conv" and len(nxt) == 1 and nxt[0].op_type == "Relu":
            names[n.name] = "TFLITE2ONNX_FAF_" + _fused(n.name, k, True)
            names[nxt[0].name] = _fused(n.name, k, True)
        elif n.op_type == "Conv":
            names[n.name] = _fused(n.name, k, False)
        elif n.name not in names:
            names[n.name] = f"functional_1/{n.name}/{n.op_type}"
    for n in nodes:
        n.name = names[n.name]
    m.graph.name = graph_name
    onnx.save(m, dst)
    return dst


def _check_shown(names: dict[str, str]) -> None:
    shown = list(names.values())
    assert max(map(len, shown)) <= DISPLAY_LIMIT
    assert len(set(shown)) == len(shown)


def test_converter_names_are_shown_short_and_unique(tmp_path):
    model = load_model(str(converter_named(DSCNN, tmp_path / "kws.onnx")))
    assert max(len(layer.name) for layer in model.layers) > 150
    names = display_names(model)
    _check_shown(names)
    assert list(names) == [layer.name for layer in model.layers]
    by_layer = {full.split(";")[-1].split("/")[0]: shown for full, shown in names.items()
                if full.startswith("TFLITE2ONNX_FAF_")}
    # A conv keeps its layer's scope; the ReLU fused with it says so.
    assert by_layer["conv2d"] == "conv2d" and by_layer["depthwise_conv2d_1"] == \
        "depthwise_conv2d_1"
    relu = next(full for full in names if full.startswith("functional_1/activation_0/"))
    assert names[relu] == "conv2d:relu"
    # Names alone (no kinds): told apart by a number.
    _check_shown(display_names([layer.name for layer in model.layers]))


def test_names_that_fit_are_shown_as_they_are():
    model = load_model(str(DSCNN))
    assert display_names(model) == {layer.name: layer.name for layer in model.layers}
    assert display_names(["conv1", "fc"]) == {"conv1": "conv1", "fc": "fc"}


def test_collisions_and_cuts_stay_within_the_limit():
    long = "x" * 40
    names = ["keep_me", "m/keep_me/Relu", f"m/{long}/Conv", f"m/{long}x/Conv",
             f"m/{long}_tail_one/Conv"]
    shown = display_names(names)
    _check_shown(shown)
    assert shown["keep_me"] == "keep_me"                # shown as it is: kept first
    assert shown["m/keep_me/Relu"] == "keep_me~2"
    assert shown[f"m/{long}/Conv"] == ".." + "x" * (DISPLAY_LIMIT - 2)
    assert shown[f"m/{long}x/Conv"] == ".." + "x" * (DISPLAY_LIMIT - 4) + "~2"
    assert shown[f"m/{long}_tail_one/Conv"].endswith("x_tail_one")


def test_relabel_rewrites_progress_lines(tmp_path):
    model = load_model(str(converter_named(DIGITS, tmp_path / "kws.onnx")))
    names = display_names(model)
    conv = model.layers[0].name
    line = relabel(names)(f"[1/3] {conv}: w 8b fl 6, SQNR 43.4 dB")
    assert line == f"[1/3] {names[conv]}: w 8b fl 6, SQNR 43.4 dB" and len(line) < 60
    assert relabel({"conv1": "conv1"})("[1/3] conv1: w") == "[1/3] conv1: w"


@pytest.mark.parametrize("graph, source, expected", [
    ("pre-alpha", "models/kws.onnx", "kws"),
    ("main_graph", Path("/m/resnet8.onnx"), "resnet8"),
    ("torch-jit-export", "a.onnx", "a"),
    ("Model_3", "b.onnx", "b"),
    ("", "c.yaml", "c"),
    ("dscnn", "models/kws.onnx", "dscnn"),         # a real name is kept
    ("main_graph", "digits", "main_graph"),        # a bundled name is no file
])
def test_model_name(graph, source, expected):
    assert model_name(graph, source) == expected


def test_model_name_keeps_loaded_models():
    model = load_model("digits")
    assert model_name("pre-alpha", model) == "pre-alpha"
    assert is_placeholder(" Pre-Alpha ") and not is_placeholder("kws")


def test_the_loader_names_a_placeholder_graph_after_its_file(tmp_path):
    """The ONNX reader names a model whose graph is called "pre-alpha" after its file, so
    quantize, generate and their files say "kws"; a Q.yaml written when the model still
    carried the placeholder loads against it (its layers are checked as ever), and one made
    for another real model does not."""
    import yaml

    from dynfix.quant.qspec_io import load_qspec
    m = onnx.load(DIGITS)
    m.graph.name = "pre-alpha"
    onnx.save(m, tmp_path / "kws.onnx")
    model = load_model(str(tmp_path / "kws.onnx"))
    assert model.name == "kws"
    q = tmp_path / "q.yaml"
    assert main(["quantize", str(tmp_path / "kws.onnx"), "--calib", "digits", "--output",
                 str(q)]) == 0
    d = yaml.safe_load(q.read_text())
    assert d["model"] == "kws"
    for old, ok in (("pre-alpha", True), ("resnet8", False)):
        d["model"] = old
        q.write_text(yaml.safe_dump(d))
        if ok:
            assert load_qspec(q, model) is not None
        else:
            with pytest.raises(DynfixError, match="was made for model 'resnet8'"):
                load_qspec(q, model)


# --- the simulator -------------------------------------------------------------------------

def test_sim_choices_are_the_simulators():
    assert SIM_CHOICES == ("auto", *SIMULATORS)


def test_threshold_is_where_verilator_pays_off():
    at = simulator.VERILATOR_PAYS_OFF_CYCLES
    icarus = simulator.SimChoice("icarus", "", at).seconds
    verilator = simulator.SimChoice("verilator", "", at).seconds
    assert icarus == pytest.approx(verilator, rel=1e-3)
    assert simulator.SimChoice("icarus", "", 2 * at).seconds > \
        simulator.SimChoice("verilator", "", 2 * at).seconds


@pytest.mark.parametrize("have, cycles, sim, why", [
    ({"icarus", "verilator"}, 1.0, "icarus", "not above"),
    ({"icarus", "verilator"}, 1.01, "verilator", "above"),
    ({"icarus"}, 10, "icarus", "Verilator is not installed"),
    ({"verilator"}, 0.01, "verilator", "Icarus is not installed"),
])
def test_auto_choice(have, cycles, sim, why, monkeypatch):
    monkeypatch.setattr(simulator, "installed", lambda name: name in have)
    images = 20
    per_image = round(cycles * simulator.VERILATOR_PAYS_OFF_CYCLES / images)
    c = simulator.choose("auto", per_image, images)
    assert c.simulator == sim and c.auto and why in c.reason
    assert c.cycles == per_image * images and f"{c.cycles:,} cycles" in c.reason
    line = c.why()
    assert line.startswith(f"{simulator.TITLES[sim]} (auto): ")
    est = c.estimate()
    assert est.startswith("estimate: about ")
    assert (f"{simulator.VERILATOR_BUILD_S} s to build" in est) == (sim == "verilator")


def test_asked_simulator_is_kept(monkeypatch):
    monkeypatch.setattr(simulator, "installed", lambda name: True)
    c = simulator.choose("verilator", 100, 1)
    assert c.simulator == "verilator" and not c.auto and "(as asked)" in c.why()
    assert simulator.choose("icarus", 10**9, 20).simulator == "icarus"


@pytest.mark.parametrize("seconds, text", [(0.2, "1 s"), (40, "40 s"), (600, "10 min"),
                                           (1620, "27 min"), (5 * 3600, "5.0 h")])
def test_duration(seconds, text):
    assert simulator.duration(seconds) == text


def test_bad_sim_fails_before_any_work(tmp_path, capsys):
    with pytest.raises(DynfixError, match="sim must be one of auto, icarus, verilator"):
        run_flow(FlowOptions(sim="modelsim", output=tmp_path / "o"))
    with pytest.raises(SystemExit):
        main(["flow", "--sim", "modelsim"])
    assert "invalid choice: 'modelsim'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_missing_simulator_fails_before_any_work(tmp_path, monkeypatch):
    import dynfix.sim.simulators as sims

    def missing(required=False):
        if required:
            raise DynfixError("Verilator is not installed")
        return None

    monkeypatch.setattr(sims, "find_verilator", missing)
    with pytest.raises(DynfixError, match="Verilator is not installed"):
        run_flow(FlowOptions(sim="verilator", output=tmp_path / "o"))
    assert not (tmp_path / "o").exists()


def test_flow_help_and_docs_list_sim(monkeypatch):
    """``--sim`` is in the help, and docs/cli.md's flow section is the help as printed
    (tools/cli_doc.py writes it)."""
    import sys
    monkeypatch.setenv("COLUMNS", "100")        # render() sets it; restored afterwards
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import cli_doc
    finally:
        sys.path.pop(0)

    def flow_section(text: str) -> str:
        return text.split("## dynfix flow\n")[1].split("\n## ")[0]

    assert "--sim {auto,icarus,verilator}" in flow_section(cli_doc.render())
    assert flow_section((ROOT / "docs" / "cli.md").read_text()) == \
        flow_section(cli_doc.render())


def _fake_simulate(calls: list):
    """Stands in for the simulation (the flow's choice is under test, not the Verilog)."""
    import numpy as np

    def fake(g, q, data, images, simulator=None, **kwargs):
        calls.append(simulator)
        z = np.zeros((images, 10), np.int64)
        return dynfix.api.SimulateResult(z, z, [100] * images, [[30, 60, 10]] * images,
                                         np.zeros(images, np.int64))
    return fake


def test_flow_takes_verilator_for_long_runs(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(dynfix.api, "simulate", _fake_simulate(calls))
    monkeypatch.setattr(simulator, "installed", lambda name: True)
    monkeypatch.setattr(simulator, "VERILATOR_PAYS_OFF_CYCLES", 10_000)
    lines: list[str] = []
    r = run_flow(FlowOptions(images=2, output=tmp_path / "f", sweep=("8",)), lines.append)
    assert calls == ["verilator"]
    sim_lines = lines[lines.index("[3/4] simulate: 2 images under Verilator") + 1:][:2]
    assert sim_lines[0].strip().startswith("Verilator (auto): ")
    assert "above the 10,000 where Verilator's build pays off" in sim_lines[0]
    assert sim_lines[1].strip().startswith("estimate: about ")
    assert r.report["simulation"]["simulator"] == "verilator"
    assert r.report["simulation"]["requested"] == "auto"
    assert "hardware (Verilator)" in r.summary
    # Asked for: kept, and in the reproducing command.
    calls.clear()
    r = run_flow(FlowOptions(images=2, output=tmp_path / "f", sweep=("8",), sim="icarus"))
    assert calls == ["icarus"] and r.report["simulation"]["requested"] == "icarus"
    assert "--sim icarus" in (tmp_path / "f" / "summary.md").read_text()


@pytest.fixture(scope="module")
def converter_flow(tmp_path_factory):
    """The flow on the digits model renamed as tflite2onnx names a model, one image
    under Icarus."""
    from sim_helpers import require_simulator
    require_simulator("icarus")
    folder = tmp_path_factory.mktemp("names")
    src = converter_named(DIGITS, folder / "kws.onnx")
    err, std = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(record=True) as caught, \
            contextlib.redirect_stdout(std), contextlib.redirect_stderr(err):
        warnings.simplefilter("always")
        code = main(["flow", str(src), "--images", "1", "--sim", "auto",
                     "-o", str(folder / "out")])
    return code, std.getvalue(), err.getvalue(), folder / "out", load_model(str(src)), caught


def test_converter_model_through_the_flow(converter_flow):
    code, table, progress, out, model, caught = converter_flow
    assert code == 0, progress[-500:]
    rep = json.loads((out / "report.json").read_text())
    long = [layer.name for layer in model.layers if len(layer.name) > DISPLAY_LIMIT]
    assert len(long) >= 4 and max(map(len, long)) > 150
    # Shown: the file's name and short layer names; nowhere a full converter name.
    assert rep["model"] == "kws" and table.startswith("dynfix flow: kws on ")
    md = (out / "summary.md").read_text()
    for text in (progress, table, md):
        assert not any(name in text for name in long)
    assert "[1/3] conv1:" in progress       # the quantizer's lines, relabelled
    labels = [r["label"] for r in rep["layers"]]
    assert len(set(labels)) == len(labels) and max(map(len, labels)) <= DISPLAY_LIMIT
    assert "| conv1 | conv |" in md and "have them in full" in md
    # Kept in full for programs: report.json and quant.yaml.
    assert [r["name"] for r in rep["layers"]] == [model.layers[i].name for i in (0, 2, 6)]
    quant = (out / "quant.yaml").read_text()
    assert all(name in quant for name in (model.layers[0].name, model.layers[6].name))
    # The simulator and why, and the estimate, before the simulation.
    lines = progress.splitlines()
    i = lines.index("[3/4] simulate: 1 images under Icarus Verilog")
    assert lines[i + 1].strip().startswith("Icarus Verilog (auto): ")
    assert lines[i + 2].strip().startswith("estimate: about ")
    assert rep["simulation"] == {"simulator": "icarus", "requested": "auto", "images": 1,
                                 "mismatches": 0}
    # The digits model (this one, renamed): its default run stays on Icarus.
    assert DEFAULT_IMAGES * rep["performance"]["cycles_estimate"] \
        <= simulator.VERILATOR_PAYS_OFF_CYCLES
    # matplotlib laid the per-layer plots out (no "Tight layout not applied").
    assert not [w for w in caught if "layout" in str(w.message)]
    # dynfix simulate on the flow's design shows the same short names.
    std = io.StringIO()
    with contextlib.redirect_stdout(std):
        assert main(["simulate", str(out / "hw"), "--images", "1"]) == 0
    text = std.getvalue()
    assert not any(name in text for name in long)
    assert "MAC utilization conv1 " in text and "MAC utilization fc " in text


def test_per_layer_plots_lay_out_many_display_names(tmp_path):
    """Thirty layers of names at the display limit: matplotlib lays every plot out."""
    from dynfix.workflow.plots import write_plots
    layers = [{"name": f"n{i}", "label": f"{i:02d}".ljust(DISPLAY_LIMIT, "x"),
               "cycles": 1000.0 * (i + 1), "utilization": 0.5, "sqnr_db": 30.0}
              for i in range(30)]
    rep = {"model": "kws", "board": "icebreaker", "bits": "8", "layers": layers,
           "accuracy": {"float": 0.9},
           "accuracy_vs_bits": {"metric": "accuracy", "unit": "%", "label": "top-1 accuracy",
                                "points": [{"bits": "8", "value": 0.9, "chosen": True}]}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = write_plots(tmp_path, rep)
    assert [p.name for p in paths] == ["accuracy_vs_bits.png", "sqnr.png", "layers.png"]
