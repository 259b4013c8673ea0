"""The board top of an engine with its weights (and large maps) in the board's SDRAM: the
controller, the I/O registers and the forwarded clock from the PLL's phase-shifted second
output, and the weight image copied from the SPI flash at power-up (``boards/board_top.py``,
``boards/sdram_*.py``). The whole board top's Verilog runs under Icarus with the SDRAM chip
model (``sim/sdram_model.v``, which stops the run at the first broken rule), the cocotb
flash model and a bit-level UART host (``tests/board_tb.py``); built for the ULX3S, its
pins, I/O registers and PLL are checked in the files nextpnr would read."""

from __future__ import annotations

import pytest

from board_helpers import check_replies, run_board_tb
from dynfix.boards.design import board_top, sdram_pll, top_mhz, weights_payload
from dynfix.boards.flash_image import HEADER_BYTES, flash_image
from dynfix.boards.registry import get_board
from dynfix.boards.spi_flash_reader import READ, RELEASE_POWER_DOWN
from dynfix.errors import DynfixError
from dynfix.hw.design import Design

#: UART bit time in the simulation.
DIVISOR = 8
CLK_HZ = 25_000_000


@pytest.fixture(scope="module")
def sdram_design(tmp_path_factory):
    """``strip_net`` for ``tn=4 tm=2`` with its weights in a 16-bit SDRAM bulk port and a
    map memory of 400 words, so its large maps go to the SDRAM in strips (the engine
    writes there after the load), with the integer model and two test images."""
    from dynfix.hw.compiler import compile_model
    from dynfix.hw.config import EngineConfig
    from dynfix.hw.generate import write_outputs
    from dynfix.quant.int_model import IntModel

    from hw_models import strip_net
    model, spec, calib = strip_net()
    cm = compile_model(model, spec, EngineConfig(tn=4, tm=2, w_bulk=1, bulk_bits=16,
                                                 m_bulk=400, bulk_store="sdram"))
    assert cm.config.map_bulk > 0
    folder = tmp_path_factory.mktemp("sdram") / "gen"
    write_outputs(cm, model.name, folder, board="ulx3s")
    return Design.load(folder), cm, IntModel(model, spec), calib[:2]


def test_sdram_board_boots_and_infers(sdram_design, tmp_path):
    """Power-up: 0xAB, READ at 1 MiB (the simulation's flash), the header checked, the
    payload written to the SDRAM from address 0 while the chip is initialised; a ``P``
    sent during the load is answered only after it; then two images whose maps go through
    the SDRAM in strips return every output bit-exact with the integer model, and the
    chip model saw no broken rule (it would have stopped the run)."""
    gen, cm, im, x = sdram_design
    payload = weights_payload(gen)
    res = run_board_tb(gen, im, x, tmp_path, flash_image(payload), n_images=2,
                       divisor=DIVISOR, clk_hz=CLK_HZ)
    assert res["flash_errors"] == [] and res["load_error"] == 0 and res["error_at"] is None
    assert res["commands"] == [[RELEASE_POWER_DOWN], [READ, 0x10, 0, 0]]
    assert res["bytes_out"] == HEADER_BYTES + len(payload) + 1 and res["cs_n"] == 1
    assert res["loaded"] == 1
    # The flash waits while the chip is initialised (t_init: 100 us), then streams.
    last_byte = 390 + 16 * (len(payload) - 1)
    assert last_byte < res["loaded_at"] <= last_byte + CLK_HZ // 10_000 + 60
    assert res["info_at"] > res["loaded_at"]
    check_replies(res, gen, cm, im, x, 2)
    assert res["leds"] == [0, 1] and res["stray"] == []


def test_sdram_board_top_for_the_ulx3s(sdram_design):
    """Built for the ULX3S: the SDRAM's 39 pins constrained, every one but the clock
    through an I/O register, the clock through a DDR output register, the flash clock
    through USRMCLK, the PLL's second output enabled at the phase the timing budget
    chose; the weights at 4 MiB of the flash."""
    from dynfix.boards.synth import prepare

    gen, _, _, _ = sdram_design
    board = get_board("ulx3s")
    pll, clock = sdram_pll(gen, board, None)
    assert clock is not None and pll.clkos_phase == pytest.approx(clock.phase_deg)
    top = board_top(gen, board, pll)
    files = prepare(top, board).files
    lpf = files["dynfix_top.lpf"]
    for site in ("F19", "F20", "P20", "T20", "T19", "R20", "U19", "E20", "P19", "N20",
                 "M20", "G19", "J16", "J17"):
        assert f'SITE "{site}"' in lpf, site
    il = next(text for name, text in files.items() if name.endswith(".il"))
    assert "USRMCLK" in il and "ODDRX1F" in il and "EHXPLLL" in il
    assert il.count("OFS1P3DX") >= 1 and "IFS1P3DX" in il
    assert '"CLKOS_ENABLE" "ENABLED"' in il or 'CLKOS_ENABLE "ENABLED"' in il
    with pytest.raises(DynfixError, match="reads its weights from SDRAM .*icebreaker has none"):
        board_top(gen, get_board("icebreaker"))


def test_the_first_build_is_no_faster_than_the_sdram_allows(sdram_design):
    gen, _, _, _ = sdram_design
    board = get_board("ulx3s")
    assert top_mhz(gen, board) == pytest.approx(min(board.max_mhz, 120.4))
    with pytest.raises(DynfixError, match="no SDRAM clock phase"):
        sdram_pll(gen, board, board_pll_at(board, 125))


def board_pll_at(board, mhz):
    from dynfix.boards.pll import fastest_pll
    return fastest_pll(board.family.name, board.clock_mhz, mhz)
