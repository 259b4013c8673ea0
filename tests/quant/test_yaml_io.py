"""dynfix's YAML + NPZ model format: lossless round trips and schema errors."""

import re

import numpy as np
import pytest
import yaml

from dynfix.errors import DynfixError
from dynfix.quant.float_model import predict
from dynfix.quant.ir import (Add, Affine, AvgPool2d, Clip, Conv2d, Flatten, GlobalAvgPool,
                             Linear, MaxPool2d, Model, ReLU, Resize, Softmax)
from dynfix.quant.load import load_model
from dynfix.quant.yaml_io import load_yaml, save_yaml
from graph_nets import res_dw_model


def every_layer_model() -> Model:
    rng = np.random.default_rng(5)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    layers = [
        Affine("norm", ("image",), scale=f32(3), shift=f32(3)),
        Conv2d("/features/0/Conv", ("norm",), weight=f32(6, 3, 3, 2), bias=f32(6),
               stride=(2, 1), pads=(0, 1, 2, 0), dilation=(1, 2)),
        ReLU("relu", ("/features/0/Conv",)),
        MaxPool2d("mp", ("relu",), kernel=(3, 2), stride=(1, 2), pads=(1, 0, 1, 1),
                  ceil_mode=True),
        AvgPool2d("ap", ("mp",), kernel=(2, 2), stride=(1, 1), pads=(1, 1, 0, 0),
                  count_include_pad=True),
        Conv2d("features.0.Conv", ("ap",), weight=f32(4, 6, 1, 1)),  # key clash, no bias
        GlobalAvgPool("gap", ("features.0.Conv",)),
        Flatten("flat", ("gap",)),
        Linear("fc", ("flat",), weight=f32(5, 4)),
        Softmax("prob", ("fc",)),
    ]
    return Model("everything", "image", (3, 11, 9), layers)


def same_model(a: Model, b: Model) -> None:
    assert (a.name, a.input_name, a.input_shape) == (b.name, b.input_name, b.input_shape)
    assert (a.input_affine is None) == (b.input_affine is None)
    for pa, pb in zip(a.input_affine or (), b.input_affine or ()):
        assert pb.dtype == np.float32 and np.array_equal(pa, pb)
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        assert type(la) is type(lb) and la.name == lb.name and la.inputs == lb.inputs
        assert la.out_shape == lb.out_shape
        for field in ("stride", "pads", "dilation", "kernel", "ceil_mode",
                      "count_include_pad", "groups", "lo", "hi"):
            assert getattr(la, field, None) == getattr(lb, field, None), (la.name, field)
        if isinstance(la, Resize):
            assert la.scale == lb.scale
        pa, pb = la.params(), lb.params()
        assert pa.keys() == pb.keys()
        for k in pa:
            assert pb[k].dtype == np.float32 and np.array_equal(pa[k], pb[k])


def resizes() -> Model:
    """Nearest-neighbour Resizes by 2 on H and W and by 2 on W only."""
    w = np.random.default_rng(6).standard_normal((3, 2, 3, 3)).astype(np.float32)
    return Model("resizes", "x", (2, 3, 4), [Resize("up", ("x",)),
                                            Conv2d("c", ("up",), weight=w, pads=(1, 1, 1, 1)),
                                            Resize("wide", ("c",), scale=(1, 2))])


def one_sided_clips() -> Model:
    return Model("clips", "x", (4,), [Clip("lo", ("x",), lo=-np.inf, hi=0.5),
                                      Clip("hi", ("lo",), lo=-1.25, hi=np.inf),
                                      Add("twice", ("hi", "x"))])


def normalized_input() -> Model:
    """A model whose host normalizes its input per channel, and an Affine layer whose
    arrays' natural keys are the normalization's."""
    rng = np.random.default_rng(6)
    f32 = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return Model("norm", "x", (3, 4, 4), [
        Conv2d("c", ("x",), weight=f32(2, 3, 3, 3), bias=f32(2), pads=(1, 1, 1, 1)),
        ReLU("r", ("c",)), Affine("input_affine", ("r",), scale=f32(2), shift=f32(2))],
        input_affine=(f32(3), f32(3)))


@pytest.mark.parametrize("make", [every_layer_model, lambda: load_model("digits"),
                                  res_dw_model, one_sided_clips, normalized_input, resizes])
def test_round_trip_is_lossless(tmp_path, make):
    m = make()
    ypath, npz = save_yaml(m, tmp_path / "model.yaml")
    assert npz == tmp_path / "model.npz" and npz.is_file()
    m2 = load_yaml(ypath)
    same_model(m, m2)
    x = np.random.default_rng(0).standard_normal((3,) + m.input_shape).astype(np.float32)
    assert np.array_equal(predict(m, x), predict(m2, x))
    save_yaml(m2, tmp_path / "again.yaml")  # deterministic: same bytes again
    assert (tmp_path / "again.npz").read_bytes() == npz.read_bytes()
    assert (tmp_path / "again.yaml").read_text().replace("again.npz", "model.npz") == \
        ypath.read_text()


def test_bundled_yaml_matches_onnx():
    from importlib import resources
    path = resources.files("dynfix.data").joinpath("digits.yaml")
    same_model(load_model("digits"), load_model(str(path)))


def edit(tmp_path, change, make=every_layer_model) -> str:
    """Save the every-layer model (or ``make()``), apply ``change`` to the parsed YAML,
    write it back; returns the one-line error loading it gives."""
    ypath, _ = save_yaml(make(), tmp_path / "m.yaml")
    doc = yaml.safe_load(ypath.read_text())
    change(doc)
    ypath.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(DynfixError) as e:
        load_yaml(ypath)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_schema_errors_name_the_field(tmp_path):
    def layer(i, **kw):
        return lambda d: d["layers"][i].update(kw)

    msg = edit(tmp_path, lambda d: d["layers"][1].pop("op"))
    assert "layer 1" in msg and "'op'" in msg
    msg = edit(tmp_path, layer(1, op=["conv"]))  # unhashable: once a TypeError
    assert "layer 1" in msg and "'op'" in msg
    msg = edit(tmp_path, layer(1, op="deconv"))
    assert "'deconv'" in msg and "layer 1" in msg
    msg = edit(tmp_path, layer(1, stride=[2]))
    assert "'/features/0/Conv'" in msg and "'stride'" in msg and "2 integers" in msg
    msg = edit(tmp_path, layer(3, ceil_mode="yes please"))
    assert "'mp'" in msg and "'ceil_mode'" in msg
    msg = edit(tmp_path, layer(2, groups=2))
    assert "'relu'" in msg and "groups" in msg
    msg = edit(tmp_path, lambda d: d["layers"][1]["params"].pop("weight"))
    assert "missing param 'weight'" in msg
    msg = edit(tmp_path, lambda d: d["layers"][8]["params"].update(weight="nope"))
    assert "'fc'" in msg and "'nope'" in msg
    msg = edit(tmp_path, lambda d: d["input"].update(shape=[3, -1, 9]))
    assert "input.shape" in msg
    msg = edit(tmp_path, lambda d: d.update(format="other"))
    assert "'format'" in msg
    msg = edit(tmp_path, lambda d: d.update(version=9))
    assert "'version'" in msg
    msg = edit(tmp_path, lambda d: d.update(layerz=[]))
    assert "layerz" in msg
    msg = edit(tmp_path, lambda d: d.update(layers=[]))
    assert "'layers'" in msg
    msg = edit(tmp_path, layer(2, inputs=["norm"]))
    assert "'features.0.Conv'" in msg and "input channels" in msg
    msg = edit(tmp_path, layer(2, inputs=["nowhere"]))
    assert "'nowhere'" in msg and "no such tensor" in msg
    msg = edit(tmp_path, lambda d: d.update(weights="missing.npz"))
    assert "missing.npz" in msg


def test_input_normalization_schema_errors(tmp_path):
    msg = edit(tmp_path, lambda d: d["input"]["affine"].pop("shift"), normalized_input)
    assert "input.affine" in msg and "scale and shift" in msg
    msg = edit(tmp_path, lambda d: d["input"]["affine"].update(scale="nope"),
               normalized_input)
    assert "input.affine.scale" in msg and "'nope'" in msg
    msg = edit(tmp_path, lambda d: d["input"]["affine"].update(scale="c.bias"),
               normalized_input)
    assert "input normalization's scale" in msg and "3 values" in msg


def test_bad_arrays(tmp_path):
    ypath, npz = save_yaml(every_layer_model(), tmp_path / "m.yaml")
    with np.load(npz) as f:
        arrays = dict(f)
    arrays["fc.weight"] = arrays["fc.weight"].copy()
    arrays["fc.weight"][0, 0] = np.inf
    np.savez(npz, **arrays)
    with pytest.raises(DynfixError, match="'fc'.*NaN/Inf"):
        load_yaml(ypath)
    arrays["fc.weight"] = np.ones((5, 4, 1), np.float32)
    np.savez(npz, **arrays)
    with pytest.raises(DynfixError, match="'fc'.*rank 2"):
        load_yaml(ypath)
    arrays["fc.weight"] = np.ones((5, 4), np.int32)
    np.savez(npz, **arrays)
    with pytest.raises(DynfixError, match="expected float"):
        load_yaml(ypath)
    npz.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DynfixError, match="corrupt"):
        load_yaml(ypath)


def test_bad_yaml_text(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("format: dynfix-model\nlayers: [unclosed\n")
    with pytest.raises(DynfixError, match="not valid YAML"):
        load_yaml(p)
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DynfixError):
        load_yaml(p)
    p.write_text("- just\n- a list\n")
    with pytest.raises(DynfixError, match="mapping"):
        load_yaml(p)
    with pytest.raises(DynfixError, match="does not exist"):
        load_yaml(tmp_path / "none.yaml")


def test_load_model_dispatch(tmp_path):
    with pytest.raises(DynfixError, match="not found"):
        load_model(str(tmp_path / "x.pt"))
    (tmp_path / "x.pt").write_bytes(b"")
    with pytest.raises(DynfixError, match="unknown file type"):
        load_model(str(tmp_path / "x.pt"))
    with pytest.raises(DynfixError, match="does not exist"):
        load_model(str(tmp_path / "x.onnx"))


def test_graph_yaml_text(tmp_path):
    ypath, _ = save_yaml(res_dw_model(), tmp_path / "g.yaml")
    doc = yaml.safe_load(ypath.read_text())
    rows = {r["name"]: r for r in doc["layers"]}
    assert rows["add2"] == {"name": "add2", "op": "add", "inputs": ["c4", "proj"]}
    assert rows["r6"] == {"name": "r6", "op": "clip", "inputs": ["dw"], "lo": 0.0, "hi": 6.0}
    assert rows["dw"]["groups"] == 16 and rows["proj"]["inputs"] == ["a1"]
    assert "groups" not in rows["c0"]        # the default, as files without groups have it
    ypath, _ = save_yaml(one_sided_clips(), tmp_path / "c.yaml")
    assert "lo: -.inf" in ypath.read_text() and "hi: .inf" in ypath.read_text()


def row(layer, **kw):
    return lambda d: next(r for r in d["layers"] if r["name"] == layer).update(kw)


@pytest.mark.parametrize("change,match", [
    (row("dw", groups=0), r"'dw'.*'groups'.*integer >= 1"),
    (row("dw", groups=2.5), r"'dw'.*'groups'.*integer >= 1"),
    (row("dw", groups=True), r"'dw'.*'groups'.*integer >= 1"),
    (row("dw", groups=3), r"'dw' \(Conv\): groups=3 does not divide its 16"),
    (row("dw", groups=8), r"'dw' \(Conv\): weight has 1 input channels per group, input "
                          r"has 2 per group"),
    (row("r6", hi="six"), r"'r6'.*'hi'.*expected a number"),
    (row("r6", lo=float("nan")), r"'r6'.*'lo'.*expected a number"),
    (row("r6", lo=7), r"'r6' \(Clip\): lo=7.0 is above hi=6.0"),
    (row("r6", groups=1), r"'r6'.*unknown field\(s\) groups for op clip"),
    (row("add1", inputs=["c2"]), r"'add1' \(add\) takes 2 input\(s\), got 1"),
    (row("add1", inputs=["c2", "c3"]), r"'add1' reads 'c3'.*defined later"),
    (row("add2", inputs=["c4", "a1"]), r"'add2' \(Add\): input shapes differ: 'c4' is "
                                       r"\(16, 4, 4\), 'a1' is \(8, 8, 8\)"),
    (row("add2", inputs=["c4", "nope"]), r"'add2' reads 'nope'.*no such tensor"),
    (row("add2", inputs="c4"), r"'inputs' must be a list of names"),
    (row("pw", name="dw"), r"'dw' is used twice"),
])
def test_graph_schema_errors(tmp_path, change, match):
    assert re.search(match, edit(tmp_path, change, res_dw_model))
