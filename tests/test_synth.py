"""Synthesis: report parsing, and one small real build (yosys + nextpnr-ice40) of the board
top with a stand-in engine. Bigger builds are marked ``synth``."""

import dataclasses
import json

import pytest

from dynfix.boards.protocol import LinkInfo
from dynfix.boards.registry import get_board
from dynfix.boards.synth import (check_result, evaluate, parse_fmax_log, parse_report,
                                 synthesize)
from dynfix.errors import DynfixError
from dynfix.hw.board_top import BoardTop
from dynfix.hw.uart_tx import baud_divisor
from test_boards_top import EchoEngine

LOG = """Info: Max frequency for clock 'cd_sync.clk': 41.10 MHz (PASS at 12.00 MHz)
Info: Max frequency for clock 'cd_sync.clk': 38.96 MHz (PASS at 12.00 MHz)
Info: Max frequency for clock 'other': 9.50 MHz (FAIL at 12.00 MHz)
"""


def test_parse_fmax_log_keeps_last():
    assert parse_fmax_log(LOG) == {"cd_sync.clk": (38.96, 12.0), "other": (9.5, 12.0)}


def test_parse_report_ecp5():
    rep = {"utilization": {"TRELLIS_COMB": {"used": 500, "available": 83640},
                           "TRELLIS_FF": {"used": 200, "available": 83640},
                           "MULT18X18D": {"used": 3, "available": 156}},
           "fmax": {"cd_sync.clk": {"achieved": 55.1, "constraint": 25.0}}}
    used, avail, clocks = parse_report(rep, "ecp5")
    assert used == {"luts": 500, "ffs": 200, "dsps": 3, "brams": 0}
    assert avail["dsps"] == 156 and clocks == {"cd_sync.clk": 55.1}


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    board = get_board("icebreaker")
    info = LinkInfo(16, 10, 8, 8)
    top = BoardTop(EchoEngine(16, 10, 8), info,
                   divisor=baud_divisor(board.clock_mhz * 1e6, board.baud), board=board)
    build = tmp_path_factory.mktemp("synth_ice40")
    return board, build, synthesize(top, board, build)


def test_small_ice40_build(small_build):
    """Real yosys + nextpnr-ice40 run (~20 s): bitstream, utilization, timing."""
    board, build, r = small_build
    assert r.timing_met and r.fmax_mhz > board.target_mhz
    assert 50 < r.luts < 2000 and 50 < r.ffs < r.luts
    assert r.dsps == 1 and r.cells["SB_MAC16"] == 1       # the stand-in's one multiplier
    assert r.available == {"luts": 5280, "dsps": 8, "brams": 30, "sprams": 4, "ffs": 5280}
    bit = (build / "dynfix_top.bin").read_bytes()
    assert len(bit) > 100_000
    d = r.to_dict()
    for key in ("luts", "ffs", "dsps", "brams", "fmax_mhz", "target_mhz", "timing_met"):
        assert key in d
    json.dumps(d)


def test_timing_failure_is_loud(small_build):
    """The same build judged against a 500 MHz target must fail with the numbers."""
    board, build, _ = small_build
    fast = dataclasses.replace(board, target_mhz=500.0)
    r = evaluate(build, "dynfix_top", fast)
    assert not r.timing_met
    with pytest.raises(DynfixError, match=r"timing NOT met on icebreaker: cd_sync.clk [0-9.]+ "
                                          r"MHz < target 500 MHz"):
        check_result(r)


def test_missing_reports(tmp_path):
    with pytest.raises(DynfixError, match="cannot read the build reports"):
        evaluate(tmp_path, "dynfix_top", get_board("icebreaker"))
