"""One generated-design type (``hw/design.py``): what ``dynfix.generate`` returns, what
simulation and synthesis take, read from a folder with clear errors."""

from __future__ import annotations

import json
import math

import pytest

from dynfix.errors import DynfixError
from dynfix.hw.design import Design


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    import dynfix
    folder = tmp_path_factory.mktemp("design") / "gen"
    return dynfix.generate(dynfix.quantize("digits"), folder, board="icebreaker")


def test_generate_returns_a_design_and_the_folder_reads_back_the_same(generated):
    """The API's result is a Design; loading its folder gives the same figures, read from
    report.json by the attributes (and not by the caller)."""
    g = generated
    assert isinstance(g, Design) and g.fit is not None
    d = Design.load(g.folder)
    assert d.report == g.report == json.loads((g.folder / "report.json").read_text())
    assert d.to_json() == d.report
    for attr in ("top", "verilog", "board", "config", "multipliers", "cycles_per_image",
                 "input_values", "output_values", "data_bits", "weight_load"):
        assert getattr(d, attr) == getattr(g, attr), attr
    assert d.board == "icebreaker" and d.verilog.is_file()
    assert d.input_values == math.prod(g.compiled.input_shape)
    assert d.output_values == g.compiled.output_len == 10
    assert d.multipliers == g.config.multipliers and d.data_bits == g.config.data_bits
    assert d.model is None and d.compiled is None


def test_with_model_recompiles_and_checks_the_images(generated, tmp_path):
    """``with_model`` rebuilds the compiled model from model.yaml + Q.yaml and refuses a
    folder whose memory images differ from it."""
    import shutil
    d = Design.load(generated.folder).with_model()
    assert d.compiled.program == generated.compiled.program
    assert d.compiled.weights == generated.compiled.weights
    assert d.with_model() is d
    copy = tmp_path / "copy"
    shutil.copytree(generated.folder, copy)
    lines = (copy / "weights.hex").read_text().splitlines()
    lines[0] = "0" * len(lines[0]) if set(lines[0]) != {"0"} else "1" + lines[0][1:]
    (copy / "weights.hex").write_text("\n".join(lines) + "\n")
    with pytest.raises(DynfixError, match="weights.hex does not match model.yaml"):
        Design.load(copy).with_model()
    (copy / "Q.yaml").unlink()
    with pytest.raises(DynfixError, match="missing Q.yaml"):
        Design.load(copy).with_model()


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "report.json").unlink(), "not a dynfix generate output"),
    (lambda f: (f / "report.json").write_text("{"), "not a dynfix generate report"),
    (lambda f: (f / "report.json").write_text('{"top": "x"}'), "not a dynfix generate report"),
    (lambda f: (f / "dynfix_engine.v").unlink(), "dynfix_engine.v is missing"),
])
def test_a_damaged_folder_is_refused_in_one_line(generated, tmp_path, damage, message):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(generated.folder, copy)
    damage(copy)
    with pytest.raises(DynfixError, match=message) as e:
        Design.load(copy)
    assert "\n" not in str(e.value)
