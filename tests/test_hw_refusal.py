"""The engine refuses graph models up front: one error naming every layer it cannot run.

The model side (IR, float and integer models, quantizer, formats) handles residual Adds,
grouped/depthwise convolutions and global average pooling; the compiler and the gateware run
residual Adds and Clips but not grouped convolutions or averages yet, and ``plan_groups``
(which ``dynfix flow`` and ``generate`` call before any work) must say so for each such
layer.
"""

import numpy as np
import pytest

from dynfix.cli import main
from dynfix.errors import DynfixError
from dynfix.hw.compiler import plan_groups
from dynfix.quant.ir import Clip, Conv2d, Flatten, Linear, Model, ReLU
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


def test_residual_depthwise_net_names_every_layer():
    assert refusal(res_dw_model()) == [
        "dw (Conv2d): grouped convolution (groups=16) is not supported by the engine yet",
    ]


def chain(*extra, groups=1):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 4 // groups, 3, 3)).astype(np.float32)
    layers = [Conv2d("c1", ("x",), weight=w, pads=(1, 1, 1, 1), groups=groups), *extra]
    last = layers[-1].name
    layers += [Flatten("f", (last,)),
               Linear("fc", ("f",), weight=np.ones((3, 64), np.float32))]
    return Model("m", "x", (4, 4, 4), layers)


def test_one_problem_each():
    assert refusal(chain(groups=2)) == [
        "c1 (Conv2d): grouped convolution (groups=2) is not supported by the engine yet"]
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
    m = res_dw_model()
    save_yaml(m, "g.yaml")
    x = calib(10)
    np.savez("d.npz", x=x, y=np.zeros(10, np.int64))
    code = main(["flow", "g.yaml", "--data", "d.npz", "--output", "out"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.count("\n") == 0
    assert "cannot run on the engine" in err and "grouped convolution" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz", "g.npz", "g.yaml"]
