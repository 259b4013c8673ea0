"""The board top of an engine whose bulk memory is the SPI flash itself (``bulk_store:
flash``): the weights stay in the flash and are read with quad reads at run time
(``hw/qspi_flash_axi.py``), for models whose weights do not fit the iCEBreaker's SPRAM. The
whole board top's Verilog runs under Icarus against the cocotb flash model on all four IO
lines (it fails the test on a protocol violation) and a bit-level UART host."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from board_helpers import check_wrong_header_never_runs, run_board_tb
from hw_models import small_net
from dynfix.boards.board_top import check_load, flash_port_usage, usage
from dynfix.boards.design import board_top, link_info, weights_payload
from dynfix.boards.fit import board_estimate
from dynfix.boards.flash_image import FLASH_OFFSET, HEADER_BYTES, flash_image
from dynfix.boards.protocol import parse_result
from dynfix.boards.registry import get_board
from dynfix.errors import DynfixError
from dynfix.hw.compiler import compile_model
from dynfix.hw.config import BulkStore
from dynfix.hw.cycle_model import estimate
from dynfix.hw.design import Design

DIVISOR = 8
CLK_HZ = 12_000_000


@pytest.fixture(scope="module")
def flash_design(tmp_path_factory):
    """The small test network compiled for ``tn=4 tm=2`` with its weights read from the
    flash over an 8-bit bus, written like ``dynfix generate`` does, with the integer model
    and two test images."""
    from dynfix.hw.config import EngineConfig
    from dynfix.hw.generate import write_outputs
    from dynfix.quant.int_model import IntModel

    model, spec, calib = small_net()
    cm = compile_model(model, spec, EngineConfig(tn=4, tm=2, w_bulk=1, bulk_bits=8,
                                                 bulk_store=BulkStore.FLASH))
    folder = tmp_path_factory.mktemp("flash") / "gen"
    write_outputs(cm, model.name, folder, board="icebreaker")
    return Design.load(folder), cm, IntModel(model, spec), calib[:2]


def test_flash_board_top_pins_estimate_and_refusals(flash_design):
    """The board top drives the quad flash resource (CS, SCK, four IO lines: six pins), its
    estimate has the flash port and no SPRAM for the weights; boards that cannot drive the
    flash so refuse in one sentence; a payload the port cannot reach is refused."""
    from dynfix.boards.synth import prepare

    gen, cm, _, _ = flash_design
    assert gen.config.bulk_store is BulkStore.FLASH and gen.bulk
    board = get_board("icebreaker")
    top = board_top(gen, board)
    assert {"flash_dq_o", "flash_dq_oe", "flash_dq_i"} <= set(top.signature.members)
    assert "flash_copi" not in top.signature.members
    pcf = prepare(top, board).files["dynfix_top.pcf"]
    assert sum(line.startswith("set_io spi_flash") for line in pcf.splitlines()) == 6
    est = board_estimate(gen.config, board)
    assert est.total.sprams == 0
    assert usage(False, 8, BulkStore.FLASH) == {"board_top": usage(False)["board_top"],
                                                "flash_port": flash_port_usage(8)}
    for name in ("ulx3s", "orangecrab"):
        with pytest.raises(DynfixError, match="iCE40 boards only"):
            board_top(gen, get_board(name))
    with pytest.raises(DynfixError, match="does not fit the flash"):
        check_load(top._engine.signature, bytes(1 << 24), CLK_HZ,
                   bulk_store=BulkStore.FLASH)


def test_flash_board_boots_and_infers_within_the_modelled_cycles(flash_design, tmp_path):
    """Power-up: 0xAB, the volatile QE write (0x50, 0x31 0x02), the header read with 0xEB at
    1 MiB; then two images over the UART, each reading the weights with one quad read
    at the payload's start, every output bit-exact with the integer model and the engine's
    cycle counter within the cycle model's bounds. The flash model saw no protocol
    violation."""
    gen, cm, im, x = flash_design
    payload = weights_payload(gen)
    res = run_board_tb(gen, im, x, tmp_path, flash_image(payload), n_images=2,
                       divisor=DIVISOR)
    assert res["flash_errors"] == [] and res["load_error"] == 0 and res["error_at"] is None
    header = list(FLASH_OFFSET.to_bytes(3, "big"))
    data = list((FLASH_OFFSET + HEADER_BYTES).to_bytes(3, "big"))
    assert res["commands"][:3] == [[0xAB], [0x50], [0x31, 0x02]]
    # The model logs a command when CS rises: the second image's read is still open.
    assert res["commands"][3:] == [[0xEB] + header, [0xEB] + data] and res["cs_n"] == 0
    assert res["loaded"] == 1
    assert res["info"] is not None and res["info_at"] > res["loaded_at"]
    # The pass starts with the image load, which the UART makes far slower than the cycle
    # model's value per cycle: the ring fills meanwhile, so the engine waits less than the
    # model says (exact for a load at full speed: the random suite's flash-timed case), but
    # never less than with a memory that answers at once.
    slow = estimate(cm)["compute_cycles"]
    fast = estimate(compile_model(*small_net()[:2], replace(cm.config, bulk_store=BulkStore.RAM,
                                                           w_ring=0)))["compute_cycles"]
    assert fast < slow
    assert len(res["replies"]) == 2
    for k, reply in enumerate(res["replies"]):
        got = parse_result(bytes(reply), link_info(gen))
        ref = im.forward(im.quantize_input(x[k:k + 1]))[cm.output_name].reshape(-1)
        np.testing.assert_array_equal(got.logits, ref)
        assert fast <= got.cycles <= slow
    assert res["leds"] == [0, 1] and res["stray"] == []


@pytest.mark.slow        # the same check runs by default on the SPRAM bulk memory's board top
def test_flash_board_with_wrong_header_never_runs(flash_design, tmp_path):
    gen, _, im, x = flash_design
    check_wrong_header_never_runs(gen, im, x, tmp_path, DIVISOR)


def test_sdram_engines_are_refused_by_boards_without_one_and_by_every_build(flash_design):
    """An engine with its weights in SDRAM: boards without SDRAM refuse it in their estimate
    (and so the fit), the ULX3S's estimate takes it (its SDRAM port counted), and building
    it is refused in one sentence on every board without an SDRAM; the ULX3S builds it."""
    from dynfix.boards.board_top import bulk_store_refusal
    gen, _, _, _ = flash_design
    cfg = replace(gen.config, bulk_store=BulkStore.SDRAM, bulk_bits=16)
    for name in ("icebreaker", "orangecrab"):
        with pytest.raises(DynfixError, match=f"{name} has none") as e:
            board_estimate(cfg, get_board(name))
        assert "\n" not in str(e.value)
    assert "sdram_port" in board_estimate(cfg, get_board("ulx3s")).blocks
    for name in ("icebreaker", "orangecrab"):
        why = bulk_store_refusal(cfg, get_board(name), build=True)
        assert why and "SDRAM" in why and "\n" not in why
    assert bulk_store_refusal(cfg, get_board("ulx3s"), build=True) is None


def test_only_images_loaded_at_power_up_are_coded(flash_design, tmp_path):
    """The run-time flash port reads the weights at random addresses: its image stays
    uncoded, refused in one sentence by ``board_top``, ``check_load`` and ``dynfix synth``
    (before any build), and the estimate adds no decoder; an engine with its weights in
    the bitstream has no image to code."""
    from dynfix import api
    from dynfix.boards.design import check_coding
    from dynfix.boards.flash_image import FlashCoding
    from dynfix.hw.config import EngineConfig
    from dynfix.hw.engine import bulk_signature
    from dynfix.hw.generate import write_outputs
    from dynfix.hw.host_interface import EngineHostSignature

    gen, _, _, _ = flash_design
    board = get_board("icebreaker")
    with pytest.raises(DynfixError, match=r"at random addresses at run time \(bulk_store: "
                                          r"flash\): their image stays uncoded"):
        board_top(gen, board, coding=FlashCoding.HUFFMAN)
    with pytest.raises(DynfixError, match="stays uncoded"):
        api.synth(gen.folder, build_dir=tmp_path / "b", flash_coding="huffman")
    with pytest.raises(ValueError, match="the engine reads its weights .* stays uncoded"):
        check_load(EngineHostSignature(8, bulk=bulk_signature(gen.config)),
                   weights_payload(gen), CLK_HZ, bulk_store=BulkStore.FLASH,
                   coding=FlashCoding.HUFFMAN)
    assert usage(False, 8, BulkStore.FLASH, FlashCoding.HUFFMAN) == usage(False, 8,
                                                                          BulkStore.FLASH)
    with pytest.raises(ValueError, match="no flash image to code"):
        check_load(EngineHostSignature(8), None, CLK_HZ, coding=FlashCoding.HUFFMAN)
    model, spec, _ = small_net()
    write_outputs(compile_model(model, spec, EngineConfig(tn=4, tm=2)), model.name,
                  tmp_path / "bram", board="icebreaker")
    with pytest.raises(DynfixError, match="keeps its weights in the bitstream: it has no "
                                          "flash image to code"):
        check_coding(Design.load(tmp_path / "bram"), "huffman")
    with pytest.raises(DynfixError, match="flash coding 'lz4' is none of none, huffman"):
        check_coding(gen, "lz4")
    assert check_coding(gen, "none") is FlashCoding.NONE
