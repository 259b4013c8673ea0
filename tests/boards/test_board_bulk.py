"""The board top of an engine that reads its weights from bulk memory (``w_bulk``): on the
iCEBreaker that memory is SPRAM behind an AXI4 port inside the board top, filled from the SPI
flash at power-up (``boards/board_top.py``, :class:`~dynfix.boards.board_top.BulkLoad`), and
``dynfix synth`` writes its image beside the bitstream. The whole board top's Verilog (the
generated engine behind it, yosys's SB_SPRAM256KA model) runs under Icarus against the cocotb
flash model and a bit-level UART host (``tests/board_tb.py``)."""

from __future__ import annotations

import pytest

from board_helpers import check_replies, check_wrong_header_never_runs, run_board_tb
from dynfix.boards.board_top import bulk_cells, bulk_load_usage, check_load, usage
from dynfix.boards.design import add_flash_image, board_top, link_info, weights_payload
from dynfix.boards.flash_image import HEADER_BYTES, FlashCoding, flash_image, flash_payload
from dynfix.boards.registry import get_board
from dynfix.boards.spi_flash_reader import READ, RELEASE_POWER_DOWN
from dynfix.errors import DynfixError
from dynfix.hw.axi import AxiReadSignature
from dynfix.hw.design import Design
from dynfix.hw.host_interface import EngineHostSignature
from dynfix.hw.weight_ring import bulk_image

CLK_HZ = 12_000_000
#: UART bit time in the simulation (the board's is 104 clocks at 115200 baud).
DIVISOR = 8


@pytest.fixture(scope="module")
def bulk_design(tmp_path_factory):
    """The small test network compiled for ``tn=4 tm=2`` with its weights in 32-bit bulk
    memory and its maps in SPRAM (two cells each), written like ``dynfix generate`` does,
    with the integer model and two test images."""
    from dynfix.hw.compiler import compile_model
    from dynfix.hw.config import EngineConfig
    from dynfix.hw.generate import write_outputs
    from dynfix.quant.int_model import IntModel

    from hw_models import small_net
    model, spec, calib = small_net()
    cm = compile_model(model, spec, EngineConfig(tn=4, tm=2, w_bulk=1, bulk_bits=32,
                                                 m_spram=1))
    folder = tmp_path_factory.mktemp("bulk") / "gen"
    write_outputs(cm, model.name, folder, board="icebreaker")
    return Design.load(folder), cm, IntModel(model, spec), calib[:2]


def test_bulk_payload_is_the_bus_image(bulk_design):
    """The flash payload of a bulk engine: ``weights.hex`` padded to the weight depth, as
    the bulk image's bus words (each engine word ``word_beats`` of them, low bits first),
    four bytes each, little-endian."""
    gen, cm, _, _ = bulk_design
    cfg = cm.config
    assert gen.bulk and not gen.weight_load and cfg.word_beats == 2
    padded = list(cm.weights) + [0] * (cfg.weight_depth - len(cm.weights))
    payload = weights_payload(gen)
    assert payload == flash_payload(bulk_image(padded, cfg.weight_word_bits, 32), 32)
    assert len(payload) == cfg.weight_depth * cfg.word_beats * 4
    first = int.from_bytes(payload[:8], "little")
    assert first == cm.weights[0]


@pytest.mark.parametrize("coding", [FlashCoding.NONE, FlashCoding.HUFFMAN])
def test_bulk_load_fills_the_memory_in_the_simulator(coding):
    """:class:`BulkLoad` alone (the behavioural SPRAM) against the cycle-level flash model:
    the payload's bytes land as little-endian bus words from word 0, ``loaded`` rises only
    after the last one is written, and an INCR burst on the read port returns them all.
    Huffman-coded (bytes like small weights), the image is decoded on the way: the same
    words land, sooner than the uncoded payload could have streamed."""
    import random

    from dynfix.boards.board_top import BulkLoad
    from dynfix.boards.flash_image import FLASH_OFFSET, stored_payload
    from test_spi_flash_reader import TickFlash

    rng = random.Random(7)
    if coding is FlashCoding.NONE:
        words = [rng.getrandbits(32) for _ in range(40)]
    else:
        words = [int.from_bytes(bytes(round(rng.gauss(0, 3)) & 0xFF for _ in range(4)),
                                "little") for _ in range(120)]
    payload = b"".join(w.to_bytes(4, "little") for w in words)
    dut = BulkLoad(AxiReadSignature(12, 32), payload, clk_hz=CLK_HZ, cell=False,
                   coding=coding)
    flash = TickFlash(dut, flash_image(payload, coding=coding), FLASH_OFFSET)
    got, seen = [], {}

    async def bench(ctx):
        cycles = 0
        while not ctx.get(dut.loaded):
            assert not ctx.get(dut.error) and cycles < 400 + 20 * len(payload)
            await ctx.tick()
            cycles += 1
        seen["loaded_at"] = cycles
        b = dut.bus
        for sig, value in ((b.araddr, 0), (b.arlen, len(words) - 1), (b.arsize, 2),
                           (b.arburst, 1), (b.arvalid, 1), (b.rready, 1)):
            ctx.set(sig, value)
        await ctx.tick().until(b.arready)
        ctx.set(b.arvalid, 0)
        while len(got) < len(words):
            await ctx.tick()
            if ctx.get(b.rvalid):
                got.append(ctx.get(b.rdata))
                assert ctx.get(b.rresp) == 0

    flash.simulate(dut, bench)
    assert got == words
    streamed = len(stored_payload(payload, coding))
    assert seen["loaded_at"] > 390 + 16 * (streamed - 1)
    if coding is FlashCoding.HUFFMAN:
        assert streamed < 0.6 * len(payload)
        assert seen["loaded_at"] < 390 + 16 * (len(payload) - 1)


def test_board_top_for_bulk_engine(bulk_design, tmp_path):
    """``board_top`` wraps a bulk engine for the iCEBreaker: the instance carries ``wbus``
    (the engine's AXI4 read port) and ``bulk_ready``, the flash pins are constrained, and
    ``dynfix synth``'s flash image is the payload with its header, programmed as for
    ``w_spram``. Boards without SPRAM refuse it in one sentence; the estimate's board-top
    blocks take the bulk load."""
    from dynfix.boards.synth import SynthResult, prepare

    gen, cm, _, _ = bulk_design
    board = get_board("icebreaker")
    top = board_top(gen, board)
    bus = AxiReadSignature(cm.config.bulk_addr_bits, 32)
    assert top._engine.signature == EngineHostSignature(8, bulk=bus)
    assert {"flash_cs_n", "flash_cipo"} <= set(top.signature.members)
    pcf = prepare(top, board).files["dynfix_top.pcf"]
    assert sum(line.startswith("set_io spi_flash") for line in pcf.splitlines()) == 6
    assert bulk_cells(cm.config.weight_depth * 2, 32) == 2
    for name in ("ulx3s", "orangecrab"):
        with pytest.raises(DynfixError, match="bulk memory, which the board top keeps in "
                                              "iCE40 SPRAM"):
            board_top(gen, get_board(name))
    with pytest.raises(ValueError, match="multiple of 4 bytes"):
        check_load(top._engine.signature, b"abcdef", CLK_HZ)
    with pytest.raises(ValueError, match="needs the flash payload"):
        check_load(top._engine.signature, None, CLK_HZ)
    assert usage(False, bulk_bits=32) == {"board_top": usage(False)["board_top"],
                                          "bulk_load": bulk_load_usage(32)}
    assert bulk_load_usage(64).luts > bulk_load_usage(32).luts > bulk_load_usage(16).luts
    result = SynthResult(board=board.name, device=board.device, luts=1, ffs=1, dsps=0,
                         brams=1, sprams=4, fmax_mhz=20.0, target_mhz=12.0, timing_met=True,
                         seconds=0.0, bitstream=str(tmp_path / "dynfix_top.bin"))
    add_flash_image(result, gen, tmp_path)
    assert (tmp_path / "weights.flash.bin").read_bytes() == flash_image(weights_payload(gen))
    assert result.program == ["iceprog dynfix_top.bin", "iceprog -o 1M weights.flash.bin"]


def test_bulk_board_boots_and_infers(bulk_design, tmp_path):
    """Power-up: 0xAB, READ at 1 MiB, the header checked, the payload packed into bus words
    and written into the SPRAM bulk memory; a ``P`` sent during the load is answered only
    after it; then two images over the UART return every output bit-exact with the integer
    model."""
    gen, cm, im, x = bulk_design
    payload = weights_payload(gen)
    res = run_board_tb(gen, im, x, tmp_path, flash_image(payload), n_images=2,
                       divisor=DIVISOR)
    assert res["flash_errors"] == [] and res["load_error"] == 0 and res["error_at"] is None
    assert res["commands"] == [[RELEASE_POWER_DOWN], [READ, 0x10, 0, 0]]
    assert res["bytes_out"] == HEADER_BYTES + len(payload) + 1 and res["cs_n"] == 1
    assert res["loaded"] == 1
    # The last byte arrives as for w_spram; its word and the write response follow.
    last_byte = 390 + 16 * (len(payload) - 1)
    assert last_byte < res["loaded_at"] <= last_byte + 16
    assert res["info"] is not None and bytes(res["info"]) == link_info(gen).info_reply()
    assert res["info_at"] > res["loaded_at"] > res["p_sent_at"] + 10 * DIVISOR
    check_replies(res, gen, cm, im, x, 2)
    assert res["leds"] == [0, 1] and res["stray"] == []


def test_bulk_board_with_wrong_flash_header_never_runs(bulk_design, tmp_path):
    """The flash holds another image (its CRC field changed): the reader stops after the
    header, nothing is written, the engine never runs and both LEDs stay lit."""
    gen, _, im, x = bulk_design
    check_wrong_header_never_runs(gen, im, x, tmp_path, DIVISOR)
