"""Weight indices and the codebook lookup (``EngineConfig.w_index_bits``, ``hw/codebook.py``):
the lookup in Amaranth's simulator against the test's own tables, the configuration's rules,
and what the compiler builds (each layer's codebook from the integer model's weights, the
index words that decode to the ordinary engine's weight words, the refusal of a layer with
too many values). The whole engine runs in ``tests/sim/test_codebook_engine.py``."""

from __future__ import annotations

import gc
import random

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.hw.codebook import Codebook
from dynfix.hw.compiler import compile_model
from dynfix.hw.compiler.images import layer_words
from dynfix.hw.config import EngineConfig
from dynfix.hw.program import entry_fields
from dynfix.quant.int_model import IntModel
from dynfix.quant.ir import Conv2d, Model, ReLU
from dynfix.quant.search import search

from hw_models import channel_net, shared_small_net, small_net
from sim_helpers import run_amaranth

TABLES = [[-128, -3, 0, 5, 17, 99, 127, 1], [7, -7], [64, -64, 32, -32, 0, 1, -1, -2]]


def test_lookup_follows_the_selected_table_a_cycle_late():
    """Random index words and a table switch every few cycles: the weights of the words
    given at one edge come out after it, from the table selected an edge before."""
    lanes, tm, bits = 3, 2, 3
    dut = Codebook(bits, 8, lanes, tm, TABLES)
    rng = random.Random(5)
    steps = [(k // 4 % len(TABLES), [[rng.randrange(8) for _ in range(lanes)]
                                     for _ in range(tm)]) for k in range(40)]

    async def bench(ctx):
        prev_sel = None
        checked = 0
        for sel, idx in steps:
            ctx.set(dut.sel, sel)
            ctx.set(dut.i, idx)
            await ctx.tick()
            if prev_sel is not None:
                table = TABLES[prev_sel] + [0] * (8 - len(TABLES[prev_sel]))
                got = [[ctx.get(dut.o[j][lane]) for lane in range(lanes)] for j in range(tm)]
                assert got == [[table[v] for v in row] for row in idx]
                checked += 1
            prev_sel = sel
        assert checked == len(steps) - 1

    run_amaranth(dut, bench)


@pytest.mark.filterwarnings("ignore:.*created but never used")   # refused in __init__
@pytest.mark.parametrize("tables,message", [
    ([[1, 2, 3, 4, 5]], "5 entries"), ([[200]], "8-bit weights"), ([], "no codebook")])
def test_lookup_refuses_tables_that_do_not_fit(tables, message):
    with pytest.raises(DynfixError, match=message):
        Codebook(2, 8, 2, 1, tables)
    gc.collect()                    # the refused object's warning, under this test's filter


def test_config_rules_and_word_width():
    with pytest.raises(DynfixError, match="w_index_bits=9"):
        EngineConfig.from_dict({"tn": 4, "tm": 2, "w_index_bits": 9})
    cfg = EngineConfig.from_dict({"tn": 4, "tm": 2, "w_index_bits": 4, "weight_bits": 8})
    assert cfg.weight_word_bits == 4 * 2 * 4 and cfg.codebook_entries == 16
    assert cfg.choice()["w_index_bits"] == 4
    with pytest.raises(DynfixError, match="codebooks"):
        EngineConfig.from_dict({"tn": 4, "tm": 2, "codebooks": 3})     # derived only


def _lanes(words: list[int], bits: int, per_word: int) -> np.ndarray:
    """The ``per_word`` fields of ``bits`` bits of each word, lane 0 the low bits."""
    return np.array([[(w >> (k * bits)) & ((1 << bits) - 1) for k in range(per_word)]
                     for w in words], np.int64)


def test_codebooks_hold_the_padding_zero_only_where_words_have_it():
    """A conv of 3 input channels whose weights are +-0.5 and +-0.25 (no 0): on 3 lanes
    its words hold just those values; on 4 a lane of every word is padding (0)."""
    rng = np.random.default_rng(2)
    w = rng.choice([-0.5, -0.25, 0.25, 0.5], (2, 3, 3, 3)).astype(np.float32)
    model = Model("pm", "x", (3, 5, 5), [
        Conv2d("c", ("x",), weight=w, bias=np.zeros(2, np.float32)), ReLU("r", ("c",))])
    spec = search(model, rng.standard_normal((16, 3, 5, 5)).astype(np.float32), bits="8",
                  method="greedy-paper")
    values = sorted(np.unique(IntModel(model, spec).weights["c"]).tolist())
    assert len(values) == 4 and 0 not in values
    for lanes, want in ((3, values), (4, sorted(values + [0]))):
        cm = compile_model(model, spec, EngineConfig(tn=lanes, tm=1, w_index_bits=2
                                                     if lanes == 3 else 3))
        assert cm.codebooks == [want]


def test_codebooks_are_the_layers_values_and_indices_decode_to_the_weights():
    """Shared at 3 bits, every layer of the net takes at most 8 values, 0 among them (the
    quantizer keeps an entry at 0): on 4 lanes x 1 row its codebooks are those values, and
    its index words, looked up, are the ordinary engine's weight words at 3 / 8 of their
    width."""
    model, spec, _ = shared_small_net()
    im = IntModel(model, spec)
    cm = compile_model(model, spec, EngineConfig(tn=4, tm=1, w_index_bits=3))
    plain = compile_model(model, spec, EngineConfig(tn=4, tm=1))
    cfg = cm.config
    want = [sorted(set(np.unique(im.weights[name]).tolist()) | {0})
            for name in ("c1", "c2", "fc")]
    assert all(len(t) <= 8 for t in want)
    assert [cm.codebooks[p.entry["cb"]] for p in cm.plans] == want
    assert cfg.codebooks == len(cm.codebooks) == 3 and "cb" in entry_fields(cfg)
    assert cfg.weight_word_bits == 4 * 3 and plain.config.weight_word_bits == 4 * 8
    idx = _lanes(cm.weights, 3, 4)
    values = _lanes(plain.weights, 8, 4)
    values = np.where(values >= 128, values - 256, values)
    decoded, at = [], 0
    for p in cm.plans:
        words = p.entry["n_mg"] * p.kernel[0] * p.kernel[1] * p.entry["t_in"]
        decoded.append(np.asarray(cm.codebooks[p.entry["cb"]])[idx[at:at + words]])
        at += words
    assert at == len(idx) == len(values)
    np.testing.assert_array_equal(np.concatenate(decoded), values)


def test_sharing_without_a_zero_entry_takes_an_index_bit_more():
    """channel_net shared at 3 bits with no entry forced to 0: a layer with 8 values none
    of which is 0 (its depthwise layer's words are 0 beyond each channel's lane) does not
    fit 3-bit indices, and the refusal names the padding's 0; at 4 bits its codebooks are
    its values and the 0, and the index words decode to the ordinary engine's words."""
    x = np.random.default_rng(6).standard_normal((32, 2, 6, 6)).astype(np.float32)
    model = channel_net()
    spec = search(model, x, method="greedy-paper", share=3, share_zero=False)
    im = IntModel(model, spec)
    own = {n: sorted(np.unique(im.weights[n]).tolist()) for n in ("c1", "dw", "fc")}
    assert all(len(v) <= 8 for v in own.values())
    full = [n for n, v in own.items() if len(v) == 8 and 0 not in v]
    assert "dw" in full
    with pytest.raises(DynfixError, match=r"9 distinct weights in the engine's weight words "
                                          r"\(8 of its own and the 0 of its padded lanes\), "
                                          r".* 4-bit indices \(w_index_bits 4\) or weights"):
        compile_model(model, spec, EngineConfig(tn=4, tm=1, w_index_bits=3))
    cm = compile_model(model, spec, EngineConfig(tn=4, tm=1, w_index_bits=4))
    plain = compile_model(model, spec, EngineConfig(tn=4, tm=1))
    assert [cm.codebooks[p.entry["cb"]] for p in cm.plans][1] == sorted(own["dw"] + [0])
    idx, values = _lanes(cm.weights, 4, 4), _lanes(plain.weights, 8, 4)
    values = np.where(values >= 128, values - 256, values)
    decoded = np.concatenate([np.asarray(cm.codebooks[p.entry["cb"]])[idx[a:a + n]]
                              for p, a, n in _spans(cm)])
    np.testing.assert_array_equal(decoded, values)


def _spans(cm):
    """(plan, first word, words) of each layer's weight words in ``cm.weights``."""
    at = 0
    for p in cm.plans:
        n = len(layer_words(cm.config, p))
        yield p, at, n
        at += n


def test_a_layer_with_more_values_than_entries_is_refused():
    """Unshared, c1 has far more than 16 values (its padded lanes' 0 counted too)."""
    model, spec, _ = small_net()
    n = len(set(np.unique(IntModel(model, spec).weights["c1"]).tolist()) | {0})
    assert n > 16
    with pytest.raises(DynfixError, match=rf"layer 'c1' has {n} distinct weights .* 16 "):
        compile_model(model, spec, EngineConfig(tn=4, tm=2, w_index_bits=4))
