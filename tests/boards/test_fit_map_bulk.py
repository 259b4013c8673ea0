"""Maps in bulk memory in the fit (``boards/fit.py``, ``m_bulk``): on a board with SDRAM an
engine whose maps overflow the block RAM keeps them there, with the largest map memory the
block RAM leaves; a board without SDRAM refuses such a model in one line naming the map; a
model whose maps fit on chip gets the same engine as before."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import dynfix.boards.fit as fit_module
from dynfix.boards.fit import board_estimate, check_usage, fit, map_room
from dynfix.boards.registry import Board, get_board
from dynfix.errors import DynfixError
from dynfix.hw.compiler import compile_model
from dynfix.hw.config import BulkStore, EngineConfig
from dynfix.hw.resources import engine_memories, memory_blocks
from dynfix.quant.datasets import load_digits
from dynfix.quant.ir import Flatten, Linear, MaxPool2d, Model, ReLU
from dynfix.quant.load import load_model
from dynfix.quant.qspec import QuantSpec
from dynfix.quant.search import search

from hw_models import conv


@pytest.fixture(scope="module")
def wide_maps() -> tuple[Model, QuantSpec]:
    """Maps of 8 x 32 x 32 values (64 kbit at 8 bits) behind a 3 x 32 x 32 input, few
    weights: the maps, not the weights, overflow a small block RAM. Static formats (fast)."""
    rng = np.random.default_rng(11)
    layers = [
        conv(rng, "c1", "x", 8, 3, 3, 3, pads=(1, 1, 1, 1)),
        ReLU("r1", ("c1",)),
        conv(rng, "c2", "r1", 8, 8, 3, 3, pads=(1, 1, 1, 1)),
        MaxPool2d("p2", ("c2",), kernel=(2, 2), stride=(2, 2)),
        ReLU("r2", ("p2",)),
        conv(rng, "c3", "r2", 4, 8, 3, 3, stride=(2, 2), pads=(1, 1, 1, 1)),
        ReLU("r3", ("c3",)),
        Flatten("f", ("r3",)),
        Linear("fc", ("f",), weight=rng.standard_normal((4, 256)).astype(np.float32) * 0.05,
               bias=rng.standard_normal(4).astype(np.float32) * 0.1),
    ]
    model = Model("widemaps", "x", (3, 32, 32), layers)
    calib = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    return model, search(model, calib, bits="8", method="static")


@pytest.fixture(scope="module")
def digits() -> tuple[Model, QuantSpec]:
    """The bundled digits model with static 8-bit formats (fast)."""
    model = load_model("digits")
    x, _ = load_digits("calib")
    return model, search(model, x[:16], bits="8", method="static")


def small_board(blocks: int, sdram: bool = True) -> Board:
    """The ULX3S with ``blocks`` block RAMs and 8 DSP blocks (few candidates: a fast fit),
    with or without its SDRAM."""
    ulx3s = get_board("ulx3s")
    return dataclasses.replace(ulx3s, name="tiny",
                               bram=dataclasses.replace(ulx3s.bram, blocks=blocks),
                               dsp=dataclasses.replace(ulx3s.dsp, blocks=8),
                               sdram=ulx3s.sdram if sdram else None)


def test_maps_beyond_block_ram_go_to_sdram(wide_maps):
    """Six block RAMs: with the weights in SDRAM the maps still do not fit, so they go there
    too (``m_bulk``), the map memory as large as the block RAM left allows; the fit names the
    maps in SDRAM and the bytes an inference moves, as the compiled program gives them."""
    model, spec = wide_maps
    board = small_board(6)
    r = fit(model, spec, board)
    c, cfg = r.chosen, r.chosen.config
    assert c.fits and cfg.w_bulk and cfg.bulk_store is BulkStore.SDRAM and cfg.bus_bits == 16
    assert cfg.m_bulk and cfg.map_bulk > 0 and cfg.fmap_depth <= cfg.m_bulk
    assert "bulk weights+maps 16b in sdram" in cfg.summary()
    assert c.estimate.total.brams <= 6
    assert {"map_dma", "bulk_arbiter", "sdram_port"} <= set(c.estimate.blocks)
    # The same engine with its maps on chip is what ran short of block RAM.
    choice = dict(cfg.choice(), m_bulk=0)
    on_chip = board_estimate(compile_model(model, spec, EngineConfig(**choice)).config, board)
    assert "brams" in check_usage(on_chip.total, board)
    # The largest map memory the rest leaves: one word more would take another block.
    fmap = next(m for m in engine_memories(cfg) if m.name == "fmap")
    left = board.bram.blocks - (c.estimate.total.brams - c.estimate.blocks["mem_fmap"].brams)
    assert map_room(c, board, cfg.m_bulk + 1) == cfg.m_bulk
    for words, fits in ((cfg.m_bulk, True), (cfg.m_bulk + 1, False)):
        assert (memory_blocks(words, fmap.width, board.bram.shapes, 128, fmap.lane_bits)
                <= left) == fits
    # Traffic: the program's map transfers and the weight image, in bytes.
    cm = compile_model(model, spec, EngineConfig(**cfg.choice()))
    word = cfg.map_beats * cfg.bus_bits // 8
    entries = [p.entry for p in cm.plans]
    t = r.to_dict()["bulk_traffic"]
    assert t["map_loads"] == sum(e["di_words"] for e in entries) * word > 0
    assert t["map_stores"] == sum(e["do_words"] for e in entries) * word > 0
    # The ring reads a group's weights once per strip: the image's runs, as segmented.
    read = sum(n for _, n in cm.weight_segments) or cm.config.weight_depth
    assert t["weights"] == read * cfg.word_beats * cfg.bus_bits // 8
    assert t["per_image"] == t["weights"] + t["map_loads"] + t["map_stores"]
    assert "r1" in t["maps"] and sum(t["maps"].values()) == t["map_stores"]
    text = c.estimate.memories["sdram"]
    assert f"the maps {', '.join(t['maps'])} ({t['map_stores']} bytes)" in text
    assert f"{t['per_image']} bytes move per image" in text


def test_maps_beyond_block_ram_without_sdram_are_refused(wide_maps):
    """The same model on the board without its SDRAM: one line naming the largest map, its
    size, the board's block RAM and that no bulk memory takes maps."""
    model, spec = wide_maps
    with pytest.raises(DynfixError) as e:
        fit(model, spec, small_board(6, sdram=False))
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("widemaps does not fit tiny even with the smallest engine")
    assert "the board has 6 x 18 kbit = 108 kbit" in msg
    assert "the largest map 'r1' (8 x 32 x 32 values, 64 kbit)" in msg
    assert "tiny has no SDRAM to keep maps in" in msg


def test_map_memory_too_small_names_the_compilers_reason(wide_maps, monkeypatch):
    """When the compiler refuses the map memory the block RAM leaves (patched to 10 words
    here), the candidate does not fit and the refusal gives the compiler's reason."""
    model, spec = wide_maps
    monkeypatch.setattr(fit_module, "map_room", lambda c, board, most=0: 10)
    with pytest.raises(DynfixError) as e:
        fit(model, spec, small_board(6))
    msg = str(e.value)
    assert "\n" not in msg
    assert "maps in tiny's SDRAM: the map memory of 10 words (m_bulk) is too small" in msg


def test_weights_and_maps_beyond_the_sdram_are_refused(wide_maps):
    """An SDRAM that holds the weights but not the maps above them: refused, naming both
    sizes."""
    model, spec = wide_maps
    board = small_board(6)
    part = dataclasses.replace(board.sdram.part, row_bits=2)        # 16 KiB
    board = dataclasses.replace(board, sdram=dataclasses.replace(board.sdram, part=part))
    with pytest.raises(DynfixError, match=r"maps in tiny's SDRAM: the weights and maps \(\d+ "
                                          r"bytes as the bulk image\) do not fit the 16384 "
                                          r"bytes of tiny's SDRAM") as e:
        fit(model, spec, board)
    assert "\n" not in str(e.value)


def test_maps_in_bulk_memory_need_a_writable_store(wide_maps):
    """An engine with maps in bulk memory on a store the board top cannot write (the
    iCEBreaker's SPRAM bulk memory, the flash) is refused in one line."""
    model, spec = wide_maps
    icebreaker = get_board("icebreaker")
    for store in (BulkStore.RAM, BulkStore.FLASH):
        cfg = EngineConfig(tn=1, tm=1, w_bulk=1, bulk_bits=16, bulk_store=store, m_bulk=2000)
        fitted = compile_model(model, spec, cfg).config
        with pytest.raises(DynfixError, match=r"maps in bulk memory \(m_bulk: 2000\).* need "
                                              r"an SDRAM") as e:
            board_estimate(fitted, icebreaker)
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("case", ["digits-ulx3s", "digits-tiny", "wide-ulx3s"])
def test_maps_on_chip_fit_as_before(case, wide_maps, digits, monkeypatch):
    """A model whose maps fit on chip: the same fit as without maps in bulk memory (the fit
    with no store for maps), and no bulk traffic reported."""
    model, spec = wide_maps if case.startswith("wide") else digits
    board = get_board("ulx3s") if case.endswith("ulx3s") else small_board(208)
    new = fit(model, spec, board).to_dict()
    monkeypatch.setattr(fit_module, "map_store", lambda board: None)
    assert fit(model, spec, board).to_dict() == new
    assert new["m_bulk"] == 0 and "bulk_traffic" not in new


@pytest.mark.parametrize("word_bits,bus,addr_bits,luts,ffs", [
    # yosys 0.70 synth_ecp5 of MapDma alone (LUT4s with a CCU2C as two; docs/engine.md)
    (32, 64, 10, 474, 130), (32, 16, 12, 547, 167), (128, 32, 14, 665, 262),
    (128, 16, 12, 637, 273), (416, 64, 14, 922, 557), (1248, 64, 16, 1721, 1411),
    (1248, 16, 16, 1796, 1443),
])
def test_map_dma_estimate_meets_yosys(word_bits, bus, addr_bits, luts, ffs):
    """The map DMA's block of the estimate against its synthesis alone, and the blocks an
    engine with maps in bulk memory adds."""
    from dynfix.hw.resources import map_bulk_usage
    cfg = EngineConfig(tn=word_bits // 8, tm=1, data_bits=8, w_bulk=1, bulk_bits=bus,
                       m_bulk=2 ** addr_bits, fmap_depth=2 ** addr_bits, w_ring=64,
                       weight_depth=1000, weight_bits=8)
    blocks = map_bulk_usage(cfg)
    assert set(blocks) == {"map_dma", "bulk_arbiter", "weight_ring", "map_datapath", "control"}
    dma = blocks["map_dma"]
    assert abs(dma.luts / luts - 1) < 0.05 and abs(dma.ffs / ffs - 1) < 0.05
