"""The quantizer on what trained weights have: dead channels, wide per-channel ranges,
heavy-tailed maps (``tests/trained_like.py``), and a start of the search that fails."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.quant import adjust, fixed, search as search_mod
from dynfix.quant.fidelity import fidelity, outputs
from dynfix.quant.float_model import predict
from dynfix.quant.int_model import IntModel, live_channels
from dynfix.quant.ir import Linear, Model
from dynfix.quant.lower import lower
from dynfix.quant.onnx import load_onnx
from dynfix.quant.search import method_options, search_model

from trained_like import DEAD, ZERO, inputs, trained_like_onnx

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("trained_like") / "t.onnx"
    path.write_bytes(trained_like_onnx().SerializeToString())
    return load_onnx(path)


def test_live_channels_relative_to_the_layer():
    # 24 binades below the largest is dead; all-zero too; the largest alone is live.
    r = np.array([1.0, 1e-30, 0.0, 2.0 ** -23, 2.0 ** -25])
    assert live_channels(r).tolist() == [True, False, False, True, False]
    assert live_channels(np.zeros(3)).tolist() == [False] * 3


def test_model_has_dead_channels(model):
    rows = np.abs(model.layers[0].weight.reshape(16, -1)).max(axis=1)
    assert np.all(rows[list(DEAD)] < 1e-20) and np.all(rows[list(ZERO)] == 0)
    assert np.all(np.delete(rows, list(DEAD + ZERO)) > 1e-2)


def test_equalization_leaves_dead_channels_alone(model):
    eq = adjust.equalize(lower(model))
    a, a_eq = model.layers[0], eq.layers[0]
    dead = list(DEAD + ZERO)
    np.testing.assert_array_equal(a_eq.bias[dead], a.bias[dead])
    live = np.delete(np.arange(16), dead)
    assert not np.allclose(a_eq.bias[live], a.bias[live])      # live channels were scaled


@pytest.mark.parametrize("bits, min_db, max_acc", [("8", 40.0, 32), ("16", 75.0, 48)])
def test_greedy_on_dead_channels(model, bits, min_db, max_acc):
    """Greedy at 8 and 16 bits quantizes the model (it used to stop at an accumulator of
    96 / 112 bits: the dead channels' own formats pushed the bias format down 24 bits);
    dead channels take the layer's format, the accumulators stay narrow and held-out
    inputs keep the fidelity."""
    cal, test = inputs(32, 0), inputs(256, 1)
    r = search_model(model, cal, bits=bits)
    f = r.spec.layers[model.layers[0].name]
    assert f.ch_fl and all(f.ch_fl[c] == 0 for c in DEAD + ZERO)
    assert max(f.acc_bits for f in r.spec.layers.values()) <= max_acc
    ref, q = outputs(model, r.spec, test, r.model)
    assert fidelity(ref, q).sqnr_db >= min_db


def test_a_failing_start_is_dropped(model, monkeypatch):
    """A start that cannot be held is reported and dropped; the run keeps the others."""
    def broken(self, options):
        raise DynfixError("accumulator would need 99 bits")
    monkeypatch.setattr(search_mod._Search, "filled", broken)
    lines = []
    r = search_model(model, inputs(16, 0), bits="8", progress=lines.append)
    assert any("dropped (accumulator would need 99 bits)" in s for s in lines)
    assert r.spec.layers and any(s.startswith("kept: ") for s in lines)


def _one_linear():
    return Model("t", "x", (1,), [Linear("fc", ("x",), weight=np.array([[1.0]], np.float32),
                                         bias=np.array([0.0], np.float32))])


def _paper_with(**changes):
    return method_options("greedy-paper", changes)


def test_wide_maps_keep_headroom_narrow_ones_do_not():
    """Calibration values in [0, 1): at 16 bits the maps keep 3 bits of headroom over the
    calibration maximum, and a held-out 3.5 passes unclipped (the calibration's best
    format saturates it at 1.0); at 4 bits each bit costs 6 dB and the format is at most
    the overflow-free one (the held-out split's choice)."""
    m = _one_linear()
    cal = np.random.default_rng(0).random((64, 1)).astype(np.float32) * 0.999
    test = np.array([[3.5]], np.float32)
    fls = {}
    for bits in ("16", "4"):
        for on in (False, True):
            spec = search_model(m, cal, bits=bits, method="greedy-paper",
                                options=_paper_with(criterion="mse", headroom=on)).spec
            fls[bits, on] = spec.layers["fc"].fl_out
            if bits == "16":
                im = IntModel(m, spec)
                y = im.dequantize("fc", im.forward(im.quantize_input(test))["fc"])
                assert (abs(float(y[0, 0]) - 3.5) < 1e-3) == on
    # Overflow-free fl of 0.999: 15 at 16 bits (32735 <= 32767), 2 at 4 bits (4 <= 7).
    assert (fls["16", False], fls["16", True]) == (15, 12)       # 3 bits of headroom
    assert fls["4", True] >= 2                                   # no more than no clipping


def test_held_out_split_buys_headroom_for_a_rare_tail():
    """At 8 bits, where headroom costs resolution: 31 inputs around 0.1 and, in one of
    them, one value of 1.0. Each half of the calibration set picks its own format; the half
    without the outlier clips it, so the split takes a coarser format than the batch's
    best (which already covers 1.0 less well than the split asks)."""
    rng = np.random.default_rng(1)
    x = (0.1 * rng.random((32, 64))).astype(np.float32)
    x[5, 0] = 1.0
    m = Model("t", "x", (64,), [Linear("fc", ("x",), weight=np.eye(64, dtype=np.float32),
                                       bias=np.zeros(64, np.float32))])
    off = search_model(m, x, "8", "greedy-paper",
                       options=_paper_with(criterion="mse", headroom=False)).spec
    on = search_model(m, x, "8", "greedy-paper",
                      options=_paper_with(criterion="mse", headroom=True)).spec
    assert on.input_fl < off.input_fl


# -- the MLPerf Tiny reference models with their trained weights (models/mlperf_tiny)

def _mlperf(name: str):
    """A trained MLPerf Tiny model with its calibration and held-out test inputs."""
    sys.path.insert(0, str(ROOT / "bench"))
    import mlperf_data
    return (load_onnx(ROOT / "models" / "mlperf_tiny" / f"{name}.onnx"),
            mlperf_data.inputs(name, "calib"), mlperf_data.inputs(name, "test"))


def _int8_tflite(file: str, model, test):
    """The official int8 TFLite model's fidelity to float on ``test`` (its outputs are the
    model's last layer: a classifier's softmax)."""
    sys.path.insert(0, str(ROOT / "tools"))
    from mlperf_trained import tflite_outputs
    q = tflite_outputs(ROOT / "models" / "mlperf_tiny" / "int8" / f"{file}.tflite", test)
    return fidelity(predict(model, test).reshape(len(test), -1), q.reshape(len(test), -1))


@pytest.mark.slow
def test_trained_vww_at_8_and_16_bits():
    """The trained VWW MobileNet (dead channels, five-decade depthwise ranges, photos
    unlike the calibration ones): 8-bit greedy agrees with float on at least 98 % of the
    held-out photos (what int8 TFLite reached on the photos of the issue; on these it
    reaches 99.5-100 %, within two inputs of ours), at 21 dB output SQNR or more; 16 bits
    quantizes too (it used to stop at a 99-bit accumulator) and keeps its fidelity on
    held-out photos."""
    model, cal, test = _mlperf("vww")
    r8 = search_model(model, cal, bits="8")
    f = fidelity(*outputs(model, r8.spec, test, r8.model))
    assert f.agreement >= 0.98
    assert f.agreement >= _int8_tflite("vww_96_int8", model, test).agreement - 0.01
    assert f.sqnr_db >= 21.0
    r16 = search_model(model, cal, bits="16")
    assert fidelity(*outputs(model, r16.spec, test, r16.model)).sqnr_db >= 50.0


@pytest.mark.parametrize("name, file", [pytest.param("dscnn", "kws_ref_model",
                                                     marks=pytest.mark.slow),
                                        pytest.param("resnet8", "pretrainedResnet_quant",
                                                     marks=pytest.mark.slow),
                                        ("ad", "ad01_int8")])
def test_trained_mlperf_at_least_int8_tflite(name, file):
    """8-bit greedy on the trained DS-CNN, ResNet-8 and AD autoencoder, scored on held-out
    inputs from other sources than the calibration ones: top-1 agreement with float at
    least the official int8 TFLite model's (classifiers), output SQNR at least its
    (the autoencoder, whose outputs are the reconstruction)."""
    model, cal, test = _mlperf(name)
    r = search_model(model, cal, bits="8")
    mine = fidelity(*outputs(model, r.spec, test, r.model))
    theirs = _int8_tflite(file, model, test)
    if name == "ad":
        assert mine.sqnr_db >= theirs.sqnr_db
    else:
        assert mine.agreement >= theirs.agreement


def test_forced_widths_that_need_a_wide_accumulator_name_the_layer(model):
    """Only formats the user forces can demand more than the supported accumulator: the
    message names the layer and its format."""
    with pytest.raises(DynfixError, match=r"layer '.*' \(fl_in .*bias shift .*\): "
                                          r"accumulator would need \d+ bits"):
        search_model(model, inputs(8, 0), bits="32", method="greedy-paper")


def test_unclipped_weights_never_clip():
    """The paper's window (overflow-free start - 1 .. + 3) clips the one large weight of
    SKEWED-like rows when the L1 error says so; with unclipped weights every weight format
    holds the layer's largest weight."""
    w = np.array([[1.0] + [0.1] * 40], np.float32)
    m = Model("t", "x", (41,), [Linear("fc", ("x",), weight=w)])
    x = np.ones((3, 41), np.float32)
    paper = search_model(m, x, "4", "greedy-paper").spec.layers["fc"]
    mine = search_model(m, x, "4", "greedy-paper",
                        options=method_options("greedy-paper",
                                               {"unclipped_weights": True})).spec.layers["fc"]
    assert paper.fl_w == 5                      # clips 1.0 to 7/32 (tests/quant/test_search.py)
    assert mine.fl_w <= fixed.min_fl_no_overflow(1.0, 4) == 2
