"""Weight indices (``w_index_bits``) in the resource estimate and the fit: the lookup is
priced, the weight memory narrows, and the fit stores a shared model's weights as indices
when that helps (here: the weights fit the SPRAM instead of streaming from the flash), not
where the lookup costs more than it saves, never for an unshared model nor a shared one
whose Q.yaml ``share`` records are gone."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from dynfix.boards.fit import evaluate_config, fit, index_bits
from dynfix.boards.registry import get_board
from dynfix.hw.compiler import compile_model
from dynfix.hw.config import BulkStore, EngineConfig
from dynfix.hw.resources import Device, estimate
from dynfix.quant.int_model import with_params
from dynfix.quant.ir import Model
from dynfix.quant.qspec import LayerFormat
from dynfix.quant.search import search

from hw_models import channel_net, fc_model, shared_small_net, small_net


def _unrecorded(spec):
    return replace(spec, layers={n: replace(f, share=0) if isinstance(f, LayerFormat) else f
                                 for n, f in spec.layers.items()})


def test_lookup_priced_and_weight_memory_narrowed():
    """5 lanes x 3 rows of 8-bit weights: 3-bit indices take a 45-bit weight word where
    weights took 120; the lookup adds a 7-LUT multiplexer per weight bit of each of the
    15 products, and 8 x 8-bit codebook registers."""
    model, spec, _ = shared_small_net()
    dev = Device.from_board(get_board("icebreaker"))
    plain = compile_model(model, spec, EngineConfig(tn=5, tm=3)).config
    idx = compile_model(model, spec, EngineConfig(tn=5, tm=3, w_index_bits=3)).config
    a, b = estimate(plain, dev, lut4=True), estimate(idx, dev, lut4=True)
    assert a.memories["weights"].startswith(f"{plain.weight_depth} x 120:")
    assert b.memories["weights"].startswith(f"{idx.weight_depth} x 45:")
    assert "codebook" not in a.blocks
    lookup = b.blocks["codebook"]
    assert lookup.luts >= 15 * 8 * 7 and lookup.ffs == 15 * 8 + 8 * 8


def _shared_fc(outputs: int, inputs: int):
    """:func:`fc_model` with its weights drawn from 16 values (0 among them) and Q.yaml's
    record of 4-bit sharing: the weights of a shared layer."""
    model, spec = fc_model(outputs, inputs)
    fc = model.layers[1]
    w = np.random.default_rng(1).choice(np.arange(-8, 8) * 16 / 128.0, fc.weight.shape)
    model = Model(model.name, model.input_name, model.input_shape,
                  [model.layers[0], replace(fc, weight=w.astype(np.float32))])
    return model, replace(spec, layers={"fc": replace(spec.layers["fc"], share=4)})


def test_indices_bring_streamed_weights_back_on_chip():
    """An iCEBreaker with one SPRAM (32 KiB): a 512 x 96 Linear's 48 KiB of 8-bit weights
    are read from the flash at run time, the layer waiting for most of its cycles; as
    4-bit indices (24 KiB) they fit the SPRAM, which feeds a word a cycle."""
    model, spec = _shared_fc(512, 96)
    ice = get_board("icebreaker")
    board = replace(ice, spram=replace(ice.spram, blocks=1))
    assert index_bits(spec) == 4 and index_bits(_unrecorded(spec)) == 0
    plain = fit(model, _unrecorded(spec), board).chosen
    shared = fit(model, spec, board).chosen
    assert plain.config.bulk_store is BulkStore.FLASH and plain.config.w_index_bits == 0
    assert plain.waits > plain.cycles / 2
    assert shared.config.w_index_bits == 4 and shared.config.bulk_store is not BulkStore.FLASH
    assert shared.estimate.total.sprams == 1 and 5 * shared.cycles < plain.cycles


def test_no_indices_where_the_lookup_costs_more_than_it_saves():
    """The shared small net on the iCEBreaker: 3-bit indices would save a few block RAMs at
    the same cycles, for more LUTs than those blocks are worth (``bram_cost`` each); an
    unshared model is never stored as indices."""
    model, spec, _ = shared_small_net()
    b = get_board("icebreaker")
    assert index_bits(spec) == 3
    chosen = fit(with_params(model, spec), spec, b).chosen
    assert chosen.config.w_index_bits == 0
    m8, s8, _ = small_net()
    assert index_bits(s8) == 0


def test_sharing_without_a_zero_entry_still_fits():
    """channel_net shared at 3 bits with no codebook entry forced to 0: 3-bit indices cannot
    hold its padded words' 0 as well (``tests/hw/test_codebook.py``), so the fit tries 4-bit
    ones or keeps the weights, and finds an engine on both boards."""
    x = np.random.default_rng(6).standard_normal((32, 2, 6, 6)).astype(np.float32)
    model = channel_net()
    spec = search(model, x, method="greedy-paper", share=3, share_zero=False)
    model = with_params(model, spec)
    assert index_bits(spec) == 3
    padded = evaluate_config(model, spec, EngineConfig(tn=4, tm=1), get_board("icebreaker"))
    assert padded.config.w_index_bits in (0, 4)
    for board in ("icebreaker", "ulx3s"):
        chosen = fit(model, spec, get_board(board)).chosen
        assert chosen.fits and chosen.config.w_index_bits != 3
