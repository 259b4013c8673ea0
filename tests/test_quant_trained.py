"""The quantizer on what trained weights have: dead channels, wide per-channel ranges,
heavy-tailed maps (``tests/trained_like.py``), and a start of the search that fails."""

from __future__ import annotations

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.quant import adjust, search as search_mod
from dynfix.quant.fidelity import fidelity, outputs
from dynfix.quant.int_model import live_channels
from dynfix.quant.lower import lower
from dynfix.quant.onnx_io import load_onnx
from dynfix.quant.search import search_model

from trained_like import DEAD, ZERO, inputs, trained_like_onnx


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


@pytest.mark.parametrize("bits, min_db, max_acc", [("8", 40.0, 32), ("16", 85.0, 48)])
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
