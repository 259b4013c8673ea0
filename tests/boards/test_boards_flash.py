"""The board top of an engine whose weights live in iCE40 SPRAM (``w_spram``): it loads them
from the SPI flash at power-up (``boards/board_top.py``), and ``dynfix synth`` writes the
flash image beside the bitstream. The whole board top's Verilog (the generated engine
Verilog behind it, yosys's cell models) runs under Icarus against the cocotb flash model and
a bit-level UART host (``tests/board_tb.py``)."""

from __future__ import annotations


import numpy as np
import pytest

from dynfix.boards.board_top import check_load
from dynfix.boards.design import board_top, link_info, weights_payload
from dynfix.hw.design import Design
from dynfix.boards.flash_image import HEADER_BYTES, flash_image, weight_payload
from dynfix.boards.protocol import parse_result
from dynfix.boards.registry import get_board
from dynfix.boards.spi_flash_reader import READ, RELEASE_POWER_DOWN
from dynfix.hw.host_interface import EngineHostSignature
from board_helpers import check_wrong_header_never_runs, run_board_tb
from dynfix.hw.ice40_spram import halfwords

CLK_HZ = 12_000_000
#: UART bit time in the simulation (the board's is 104 clocks at 115200 baud): the same
#: receiver and transmitter, fewer cycles to simulate.
DIVISOR = 8


@pytest.fixture(scope="module")
def spram_design(tmp_path_factory):
    """The digits model compiled for a small dual-MAC engine with its weights in SPRAM,
    written like ``dynfix generate`` does, with the integer model and two test images."""
    from dynfix.hw.compiler import compile_model
    from dynfix.hw.config import EngineConfig, Multiplier
    from dynfix.hw.generate import write_outputs
    from dynfix.quant.datasets import load_digits
    from dynfix.quant.int_model import IntModel

    from hw_models import digits_8bit
    model, spec = digits_8bit()
    cfg = EngineConfig(tn=2, tm=4, multiplier=Multiplier.ICE40_DUAL, w_spram=1)
    cm = compile_model(model, spec, cfg)
    folder = tmp_path_factory.mktemp("spram") / "gen"
    write_outputs(cm, model.name, folder, board="icebreaker")
    x, _ = load_digits("test")
    return Design.load(folder), cm, IntModel(model, spec), x


def test_weight_payload_is_the_halfword_image(spram_design):
    """One function gives the flash payload: ``weights.hex`` padded to the memory's depth,
    as the halfwords the engine's ``wl`` takes (what the simulation host streams), two
    bytes each, little-endian."""
    gen, cm, _, _ = spram_design
    cfg = cm.config
    payload = weights_payload(gen)
    assert payload == weight_payload(cm.weights, cfg.weight_depth, cfg.weight_word_bits)
    hw = halfwords(list(cm.weights) + [0] * (cfg.weight_depth - len(cm.weights)), 64)
    assert len(payload) == 2 * len(hw) == cfg.weight_depth * 8
    assert [int.from_bytes(payload[i:i + 2], "little") for i in range(0, len(payload), 2)] == hw
    assert weight_payload([0x0123456789ABCDEF], 2, 64) == bytes.fromhex("efcdab8967452301") + bytes(8)


def test_board_top_for_spram_engine_requests_the_flash(spram_design):
    """``board_top`` wraps a ``w_spram`` engine (no more refusal): the instance carries
    ``wl``, and for the iCEBreaker the platform's ``spi_flash_1x`` pins are constrained
    (CS, SCK, COPI, CIPO, and WP / HOLD held inactive); a board top without the flash
    payload for such an engine is refused before anything is built."""
    from dynfix.boards.synth import prepare

    gen, _, _, _ = spram_design
    assert gen.weight_load
    board = get_board("icebreaker")
    top = board_top(gen, board)
    assert top._engine.signature == EngineHostSignature(8, weight_load=True)
    pcf = prepare(top, board).files["dynfix_top.pcf"]
    pins = {line.split()[1]: line.split()[2] for line in pcf.splitlines()
            if line.startswith("set_io spi_flash")}
    assert pins == {f"spi_flash_1x_0__{name}__io": pin for name, pin in
                    (("cs", "16"), ("clk", "15"), ("copi", "14"), ("cipo", "17"),
                     ("wp", "12"), ("hold", "13"))}


def test_board_top_needs_the_payload_exactly_for_a_loading_engine():
    """What BoardTop checks of the weight load, on the engine's signature alone."""
    loads, plain = EngineHostSignature(8, weight_load=True), EngineHostSignature(8)
    with pytest.raises(ValueError, match="needs the flash payload"):
        check_load(loads, None, CLK_HZ)
    with pytest.raises(ValueError, match="needs the flash payload"):
        check_load(plain, b"ab", CLK_HZ)
    with pytest.raises(ValueError, match="even number of bytes"):
        check_load(loads, b"abc", CLK_HZ)
    with pytest.raises(ValueError, match="needs clk_hz"):
        check_load(loads, b"ab", None)
    with pytest.raises(ValueError, match="sck_div"):
        check_load(loads, b"ab", CLK_HZ, sck_div=3)
    check_load(loads, b"ab", CLK_HZ)
    check_load(plain, None, None)


def test_board_boots_loads_weights_and_infers(spram_design, tmp_path):
    """Power-up: 0xAB, READ at 1 MiB, the header checked, the weights streamed into the
    engine's SPRAM; a ``P`` sent during the load is answered only after it; then an image
    over the UART returns the logits bit-exact with the integer model."""
    gen, cm, im, x = spram_design
    payload = weights_payload(gen)
    res = run_board_tb(gen, im, x, tmp_path, flash_image(payload), divisor=DIVISOR)
    assert res["flash_errors"] == [] and res["load_error"] == 0 and res["error_at"] is None
    assert res["commands"] == [[RELEASE_POWER_DOWN], [READ, 0x10, 0, 0]]
    # (the SCK edge that samples a byte's last bit has the flash start the next one)
    assert res["bytes_out"] == HEADER_BYTES + len(payload) + 1 and res["cs_n"] == 1
    assert res["loaded"] == 1
    # From reset: 390 clocks to the first payload byte, then 16 per byte (4,368 bytes:
    # 5.9 ms at 12 MHz).
    assert res["loaded_at"] == pytest.approx(390 + 16 * (len(payload) - 1), abs=8)
    assert res["info"] is not None and bytes(res["info"]) == link_info(gen).info_reply()
    assert res["info_at"] > res["loaded_at"] > res["p_sent_at"] + 10 * DIVISOR
    assert len(res["replies"]) == 1
    got = parse_result(bytes(res["replies"][0]), link_info(gen))
    assert res["replies"][0][0] == ord("R")
    ref = im.forward(im.quantize_input(x[:1]))[cm.output_name].reshape(-1)
    assert len(set(ref.tolist())) > 1
    np.testing.assert_array_equal(got.logits, ref)
    assert got.predicted == int(np.argmax(ref)) and got.cycles > 0
    assert res["leds"] == [0, 1] and res["stray"] == []


def test_board_with_wrong_flash_header_never_runs(spram_design, tmp_path):
    """The flash's image does not match the one the bitstream was built for (its CRC field
    changed): the reader stops after the header, the link never answers, both LEDs lit."""
    gen, cm, im, x = spram_design
    check_wrong_header_never_runs(gen, im, x, tmp_path, DIVISOR)


def test_synth_writes_the_flash_image_and_names_the_commands(spram_design, tmp_path,
                                                             monkeypatch):
    """``dynfix synth`` (the API; the flow's ``--synth`` calls it) of a ``w_spram`` engine:
    ``weights.flash.bin`` beside the bitstream, deterministic, and the two program
    commands in the result and its summary (the build itself replaced by a stub)."""
    from amaranth.hdl import Fragment

    from dynfix import api
    from dynfix.boards.synth import SynthResult

    gen, _, _, _ = spram_design

    def fake_synthesize(top, board, build_dir, check_timing=True, target_mhz=None):
        Fragment.get(top, None)                 # built, as the real build would
        build_dir.mkdir(parents=True, exist_ok=True)
        (build_dir / "dynfix_top.bin").write_bytes(b"")
        return SynthResult(board=board.name, device=board.device, luts=1, ffs=1, dsps=4,
                           brams=2, sprams=4, fmax_mhz=20.0, target_mhz=12.0,
                           timing_met=True, seconds=0.0,
                           bitstream=str(build_dir / "dynfix_top.bin"))

    monkeypatch.setattr(api, "synthesize", fake_synthesize)
    images = []
    for run in ("a", "b"):
        r = api.synth(gen.folder, build_dir=tmp_path / run)
        images.append((tmp_path / run / "weights.flash.bin").read_bytes())
    assert images[0] == images[1] == flash_image(weights_payload(gen))
    assert r.flash_image == str(tmp_path / "b" / "weights.flash.bin")
    assert r.program == ["iceprog dynfix_top.bin", "iceprog -o 1M weights.flash.bin"]
    assert r.lines()[-3:-1] == ["  program: iceprog dynfix_top.bin",
                                "  program: iceprog -o 1M weights.flash.bin"]
    assert r.to_dict()["program"] == r.program


def test_synth_writes_a_huffman_coded_image(spram_design, tmp_path, monkeypatch):
    """``dynfix synth`` with the flash image Huffman-coded: the coded image beside the
    bitstream (format 2, reading back to the payload), the board top built with its
    decoder, the fit's estimate counting it, and the figures in the result, its summary and
    its dict (absent from an uncoded build's)."""
    from amaranth.hdl import Fragment

    from dynfix import api
    from dynfix.boards.board_top import DECODER_USAGE, BoardTop, usage
    from dynfix.boards.coded_flash_reader import CodedFlashReader
    from dynfix.boards.fit import board_estimate
    from dynfix.boards.flash_image import FlashCoding, read_payload
    from dynfix.boards.synth import SynthResult

    gen, _, _, _ = spram_design
    payload = weights_payload(gen)
    tops = []

    def fake_synthesize(top, board, build_dir, check_timing=True, target_mhz=None):
        tops.append(top)
        Fragment.get(top, None)
        build_dir.mkdir(parents=True, exist_ok=True)
        return SynthResult(board=board.name, device=board.device, luts=1, ffs=1, dsps=4,
                           brams=2, sprams=4, fmax_mhz=20.0, target_mhz=12.0,
                           timing_met=True, seconds=0.0,
                           bitstream=str(build_dir / "dynfix_top.bin"))

    monkeypatch.setattr(api, "synthesize", fake_synthesize)
    r = api.synth(gen.folder, build_dir=tmp_path, clock="oscillator", flash_coding="huffman")
    image = (tmp_path / "weights.flash.bin").read_bytes()
    assert image == flash_image(payload, coding=FlashCoding.HUFFMAN)
    assert read_payload(image) == payload and len(image) < len(payload)
    assert isinstance(tops[0], BoardTop)
    reader = Fragment.get(tops[0], None).find_subfragment("flash")
    assert isinstance(reader.origins[0], CodedFlashReader)
    f = r.flash
    assert f["payload_bytes"] == len(payload) and f["coded_bytes"] < len(payload)
    assert f["load_cycles"] == 16 * f["coded_bytes"] and r.clock_mhz == 12
    assert f["load_ms"] == pytest.approx(16 * f["coded_bytes"] / 12e3, abs=1e-3)
    assert r.to_dict()["flash"] == f
    assert any("Huffman-coded" in line and f"{f['coded_bytes']:,}" in line
               for line in r.lines())
    board = get_board("icebreaker")
    assert usage(True, coding=FlashCoding.HUFFMAN) == {**usage(True),
                                                       "flash_decoder": DECODER_USAGE["ice40"]}
    est = board_estimate(gen.config, board, FlashCoding.HUFFMAN)
    plain_est = board_estimate(gen.config, board)
    assert "flash_decoder" in est.blocks and "flash_decoder" not in plain_est.blocks
    assert est.total.brams == plain_est.total.brams + 1
    plain = api.synth(gen.folder, build_dir=tmp_path / "plain", clock="oscillator")
    assert "flash" not in plain.to_dict()
    assert not any("Huffman" in line for line in plain.lines())


@pytest.mark.slow
def test_board_loads_a_huffman_coded_image_and_infers(spram_design, tmp_path):
    """The whole board top with its weights Huffman-coded in the flash: the header and the
    coded bytes are read (fewer than the payload's), decoded into the engine's SPRAM, and an
    image over the UART comes back bit-exact."""
    from dynfix.boards.flash_image import CODED_HEADER_BYTES, FlashCoding, stored_payload

    gen, cm, im, x = spram_design
    payload = weights_payload(gen)
    coded = stored_payload(payload, FlashCoding.HUFFMAN)
    res = run_board_tb(gen, im, x, tmp_path, flash_image(payload, coding="huffman"),
                       divisor=DIVISOR, coding="huffman")
    assert res["flash_errors"] == [] and res["load_error"] == 0 and res["loaded"] == 1
    assert res["bytes_out"] == CODED_HEADER_BYTES + len(coded) + 1 < len(payload)
    assert res["loaded_at"] < 390 + 16 * (len(payload) - 1)
    got = parse_result(bytes(res["replies"][0]), link_info(gen))
    ref = im.forward(im.quantize_input(x[:1]))[cm.output_name].reshape(-1)
    np.testing.assert_array_equal(got.logits, ref)
    assert res["info_at"] > res["loaded_at"]


def test_board_on_the_pll_loads_and_infers_after_the_lock(spram_design, tmp_path):
    """The board top clocked from the iCE40 PLL at the digits bitstream's 40.5 MHz (the
    SB_PLL40_PAD instance with icepll's dividers, simulated by ``boards/pll_sim.v``): the
    design's clock has the period the dividers give, nothing touches the flash before the
    PLL locks (the lock holds the reset), and then the weights load and an image over the
    UART comes back bit-exact."""
    from dynfix.boards.pll import ice40_pll

    gen, cm, im, x = spram_design
    pll = ice40_pll(12, 40.5)
    assert (pll.divr, pll.divf, pll.divq) == (0, 53, 4)
    res = run_board_tb(gen, im, x, tmp_path, flash_image(weights_payload(gen)), pll=pll,
                       divisor=DIVISOR)
    assert abs(res["period_ps"] - 1e6 / 40.5) <= 1
    # the clock runs for several oscillator periods before the lock, the design in reset
    assert res["lock_osc_cycles"] >= 8 and res["lock_at"] >= 20
    assert res["first_select_at"] >= res["lock_at"] + 2      # the reset synchronizer
    assert res["flash_errors"] == [] and res["loaded"] == 1 and res["load_error"] == 0
    got = parse_result(bytes(res["replies"][0]), link_info(gen))
    ref = im.forward(im.quantize_input(x[:1]))[cm.output_name].reshape(-1)
    np.testing.assert_array_equal(got.logits, ref)
