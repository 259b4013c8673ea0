"""System tests of weight indices (``w_index_bits``, ``hw/codebook.py``): a network shared by
``quant.weight_sharing`` at 3-bit indices (at most 8 values a layer, 0 among them: the
padding's) runs on engines that store 3-bit indices under Icarus, on chip and streamed from
a flash, bit-exact with the integer model, the cycle counters equal to the cycle model; the
Verilog lints clean."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from dynfix.hw.config import EngineConfig
from dynfix.hw.cycle_model import estimate
from dynfix.hw.generate import TOP_NAME
from dynfix.hw.lint import lint
from dynfix.quant.search import search

from hw_models import channel_net, shared_small_net
from sim_helpers import check, simulate

pytestmark = pytest.mark.usefixtures("icarus")


@pytest.mark.usefixtures("verilator")
def test_indices_on_chip_bit_exact_and_lint_clean(tmp_path):
    model, spec, calib = shared_small_net()
    cm, ref, res = simulate(model, spec, EngineConfig(tn=4, tm=2, w_index_bits=3),
                            calib[:2], tmp_path)
    assert cm.config.weight_word_bits == 4 * 2 * 3 and len(cm.codebooks) == 3
    check(cm, ref, res)
    verilog = tmp_path / "gen" / f"{TOP_NAME}.v"
    assert "codebook" in verilog.read_text()
    rc, out = lint(verilog)
    assert rc == 0, out


def test_indices_streamed_from_flash_bit_exact(tmp_path):
    """Weights streamed from a quad-SPI flash on an 8-bit bus (the wrapper's memory with the
    flash's timing): an index word (3 lanes x 4 rows x 3 bits) takes 5 beats where the
    weight word took 12; the layers still wait for their tiles, as the ring's cycle model
    counts them."""
    model, spec, calib = shared_small_net()
    cfg = EngineConfig(tn=3, tm=4, w_index_bits=3, w_bulk=1, bulk_bits=8, bulk_store="flash")
    cm, ref, res = simulate(model, spec, cfg, calib[:2], tmp_path)
    assert cm.config.word_beats == 5
    assert res.mismatches == 0 and (res.outputs == ref).all()
    est = estimate(cm)
    assert sum(row["waits"] for row in est["layers"]) > 0
    for layers in res.image_layer_cycles:
        assert layers == [row["cycles"] for row in est["layers"]]


@lru_cache(maxsize=None)
def _depthwise_net():
    """conv 2 -> 6, a depthwise 3x3 conv, ReLU, Linear, shared at 3 bits."""
    model = channel_net("dwnet", spread=False)
    x = np.random.default_rng(5).standard_normal((32, 2, 6, 6)).astype(np.float32)
    return model, search(model, x, bits="8", share=3), x


def test_depthwise_window_with_indices_bit_exact(tmp_path):
    """The depthwise layer on the window datapath (its words: a row's 9 taps, 0 elsewhere)
    between a conv and a Linear, all as 3-bit indices: bit-exact, cycles as modelled."""
    model, spec, x = _depthwise_net()
    cm, ref, res = simulate(model, spec, EngineConfig(tn=9, tm=3, w_index_bits=3), x[:2],
                            tmp_path)
    assert cm.config.dw_window == 3 and [p.kind for p in cm.plans][1] == "dwconv"
    check(cm, ref, res)
