"""The Python API mirrors the CLI: stage functions returning result dataclasses, chained
the way the README shows, with the same one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dynfix
from dynfix.api import GenerateResult, QuantizeResult, SimulateResult
from dynfix.cli import main
from dynfix.hw.generate import TOP_NAME
from dynfix.quant.datasets import load_digits


@pytest.fixture(scope="module")
def q8() -> QuantizeResult:
    return dynfix.quantize("digits", bits="8")


def test_exports():
    for name in ("load_model", "quantize", "generate", "simulate", "synth", "flow",
                 "DynfixError", "FlowResult"):
        assert getattr(dynfix, name) is not None
    with pytest.raises(AttributeError):
        dynfix.nothing_here


def test_quantize_matches_cli(q8, tmp_path, capsys):
    assert isinstance(q8, QuantizeResult)
    assert list(q8.spec.layers) == ["conv1", "conv2", "fc"]
    assert [r["bw_w"] for r in q8.layers()] == [8, 8, 8]
    path = q8.save(tmp_path / "api.yaml")
    assert main(["quantize", "digits", "--calib", "digits", "-o", str(tmp_path / "cli.yaml")]) == 0
    capsys.readouterr()
    assert path.read_text().replace("api.params", "cli.params") == \
        (tmp_path / "cli.yaml").read_text()
    assert (tmp_path / "api.params.npz").read_bytes() == \
        (tmp_path / "cli.params.npz").read_bytes()      # bias correction's adjusted biases
    x, y = load_digits("test")
    assert np.mean(q8.logits(x).argmax(axis=1) == y) >= 0.97


def test_generate_from_result_or_files(q8, tmp_path):
    g = dynfix.generate(q8, tmp_path / "a")
    assert isinstance(g, GenerateResult)
    assert g.verilog.is_file() and g.cycles_per_image > 0 and g.multipliers >= 1
    q8.save(tmp_path / "q.yaml")
    g2 = dynfix.generate(tmp_path / "q.yaml", tmp_path / "b", "icebreaker", model="digits")
    assert g2.report == g.report
    assert (tmp_path / "a" / f"{TOP_NAME}.v").read_text() == \
        (tmp_path / "b" / f"{TOP_NAME}.v").read_text()
    on_disk = json.loads((tmp_path / "a" / "report.json").read_text())
    assert on_disk["estimate"]["cycles_per_image"] == g.cycles_per_image


def test_errors_are_dynfix_errors(q8, tmp_path):
    with pytest.raises(dynfix.DynfixError, match="bit"):
        dynfix.quantize("digits", bits="1")
    with pytest.raises(dynfix.DynfixError, match="model="):
        dynfix.generate(tmp_path / "q.yaml", tmp_path / "x")
    with pytest.raises(dynfix.DynfixError, match="unknown board"):
        dynfix.generate(q8, tmp_path / "x", "nosuchboard")
    with pytest.raises(dynfix.DynfixError, match="images"):
        dynfix.simulate(tmp_path, q8, images=0)
    assert not (tmp_path / "x").exists()


@pytest.mark.usefixtures("icarus")
def test_simulate_small_model_from_arrays(tmp_path):
    """simulate() on inputs given as an array (no labels): bit-exact, cycles counted."""
    from hw_models import tiny_net
    model, x = tiny_net()
    q = dynfix.quantize(model, calib=x, bits="8")
    g = dynfix.generate(q, tmp_path / "gen", config={"tn": 9, "tm": 1})
    s = dynfix.simulate(g, q, data=x, images=3)
    assert isinstance(s, SimulateResult)
    assert s.n == 3 and s.mismatches == 0 and s.hw_accuracy is None
    np.testing.assert_array_equal(s.outputs, q.logits(x[:3]))
    assert len(s.layer_cycles[0]) == 2 and s.cycles[0] == sum(s.layer_cycles[0])
