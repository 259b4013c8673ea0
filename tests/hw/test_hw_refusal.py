"""The engine refuses graph models up front: one error naming every layer it cannot run.

The model side (IR, float and integer models, quantizer, formats) handles more than the
engine: it runs residual Adds, depthwise and grouped convolutions, Clips, a global average
pool before a Linear and average pools of 2**k cells per window, but not other average
pools, dilation or standalone BatchNorm, and
``plan_groups`` (which ``dynfix flow`` and ``generate`` call before any work) must say so for
each such layer.
"""

from dataclasses import replace

import numpy as np
import pytest

from dynfix.cli import main
from dynfix.errors import DynfixError
from dynfix.hw.compiler import plan_groups
from dynfix.quant.ir import AvgPool2d, Clip, Conv2d, Flatten, Linear, Model, ReLU
from dynfix.quant.yaml_io import save_yaml
from graph_nets import calib, res_dw_model


def refusal(model: Model) -> list[str]:
    with pytest.raises(DynfixError) as e:
        plan_groups(model)
    msg = str(e.value)
    assert "\n" not in msg
    head = f"model {model.name!r} cannot run on the engine: "
    assert msg.startswith(head)
    return msg[len(head):].split("; ")


def test_residual_depthwise_net_plans():
    """Residual Adds, a depthwise conv, ReLU6 and a global average pool before the head."""
    plans, out = plan_groups(res_dw_model())
    kinds = {p.name: (p.kind, p.shortcut) for p in plans}
    assert kinds["dw"] == ("dwconv", "") and kinds["c2"] == ("conv", "r0")
    assert kinds["proj"] == ("conv", "c4") and out == "fc" and "gap" not in kinds
    assert kinds["fc"][0] == "linear" and plans[-1].in_shape == (16, 4, 4)   # GAP folded


def with_avgpool(m: Model) -> Model:
    """``m`` with a 3x3 average pool (9 cells a window: not a shift; not global: it does
    not fold) before its head."""
    layers = []
    for layer in m.layers:
        if layer.name == "gap":
            layers.append(AvgPool2d("ap", layer.inputs, kernel=(3, 3), stride=(1, 1)))
        elif layer.name == "fc":
            layers.append(Linear("fc", layer.inputs, weight=np.ones((10, 16 * 4), np.float32)))
        else:
            layers.append(replace(layer, inputs=("ap",)) if layer.inputs == ("gap",)
                          else layer)
    return Model(m.name, m.input_name, m.input_shape, layers)


def chain(*extra, groups=1):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 4 // groups, 3, 3)).astype(np.float32)
    layers = [Conv2d("c1", ("x",), weight=w, pads=(1, 1, 1, 1), groups=groups), *extra]
    last = layers[-1].name
    layers += [Flatten("f", (last,)),
               Linear("fc", ("f",), weight=np.ones((3, 64), np.float32))]
    return Model("m", "x", (4, 4, 4), layers)


def test_one_problem_each():
    assert refusal(chain(AvgPool2d("ap", ("c1",), kernel=(3, 3), stride=(1, 1),
                               pads=(1, 1, 1, 1)))) == [
        "ap (AvgPool2d): average pool of 4/6/9 cells per window (the engine divides by a "
        "shift: windows of 2**k cells, the same at every output, i.e. count_include_pad or "
        "no padding, no partial windows)"]
    # 2x2 windows (4 cells everywhere, padded cells counted): a depthwise conv with unit
    # weights and a data shift of 2.
    plans, _ = plan_groups(chain(AvgPool2d("ap", ("c1",), kernel=(2, 2), stride=(1, 1),
                                           pads=(1, 1, 0, 0), count_include_pad=True)))
    assert [(p.name, p.kind, p.avg, p.in_shape) for p in plans[:2]] == [
        ("c1", "conv", 0, (4, 4, 4)), ("ap", "dwconv", 4, (4, 4, 4))]
    assert refusal(chain(AvgPool2d("ap", ("c1",), kernel=(2, 2), stride=(1, 1),
                                   pads=(1, 1, 0, 0))))[0].startswith(
        "ap (AvgPool2d): average pool of 1/2/4 cells per window")
    plans, _ = plan_groups(chain(groups=2))      # grouped: the dense conv, zeros across
    assert [p.kind for p in plans] == ["conv", "linear"]
    plans, out = plan_groups(chain(ReLU("r", ("c1",))))        # a plain chain still plans
    assert [p.name for p in plans] == ["c1", "fc"] and out == "fc"
    assert [a.name for a in plans[0].acts] == ["r"]
    plans, _ = plan_groups(chain(Clip("six", ("c1",), lo=0.0, hi=6.0)))     # so does ReLU6
    assert [a.name for a in plans[0].acts] == ["six"]


def test_clip_needs_a_compute_layer_before_it():
    """A Clip (like a ReLU) runs in the requantizer of the group it follows: none before the
    first Conv/Linear."""
    w = np.ones((4, 4, 3, 3), np.float32)
    m = Model("m", "x", (4, 4, 4), [
        Clip("six", ("x",), lo=0.0, hi=6.0),
        ReLU("r", ("six",)),
        Conv2d("c1", ("r",), weight=w, pads=(1, 1, 1, 1)),
        Clip("after", ("c1",), lo=-1.0, hi=np.inf)])
    assert refusal(m) == ["six (Clip): not after a Conv/Linear layer",
                          "r (ReLU): not after a Conv/Linear layer"]


def test_flow_fails_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = with_avgpool(res_dw_model())
    save_yaml(m, "g.yaml")
    x = calib(10)
    np.savez("d.npz", x=x, y=np.zeros(10, np.int64))
    code = main(["flow", "g.yaml", "--data", "d.npz", "--output", "out"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0
    assert "cannot run on the engine" in err and "ap (AvgPool2d): average pool of 9" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz", "g.npz", "g.yaml"]
