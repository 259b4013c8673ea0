"""The resource estimate part by part against yosys (``boards/block_stat.py``): the module
grouping runs on a stat dictionary by default; the comparison on real syntheses of the
digits engines (yosys alone, hierarchy kept) is marked ``synth``."""

from __future__ import annotations

import pytest

import dynfix
from dynfix.boards.block_stat import PartUsage, _member, compare, module_usage, table
from dynfix.boards.registry import get_board
from dynfix.hw.resources import PARTS, Usage

#: The estimate may be off per part by this factor either way before the test fails; the
#: measured ratios are in bench/results/estimate_blocks.md.
BAND = 2.0


def test_submodules_group_into_their_parts():
    assert _member("rq3", "rq") and _member("rq3.inner", "rq") and _member("mac.tree0", "mac")
    assert not _member("rqx", "rq") and not _member("mac", "rq") and not _member("rq3", "")
    assert _member("", "") and not _member("wb", "")
    assert sum(1 for _, (_, mods) in PARTS.items() if "" in mods) == 1  # the engine's own


def test_module_usage_counts_each_familys_cells():
    stat = {"modules": {
        "\\top": {"num_cells_by_type": {"LUT4": 10, "CCU2C": 3, "TRELLIS_FF": 7,
                                        "MULT18X18D": 2, "DP16KD": 1, "top.sub": 1}}}}
    u = module_usage(stat, get_board("ulx3s"))["top"]
    assert (u.luts, u.ffs, u.dsps, u.brams) == (16, 7, 2, 1)
    stat = {"modules": {"\\top": {"num_cells_by_type": {
        "SB_LUT4": 10, "SB_CARRY": 3, "SB_DFFSR": 4, "SB_DFFE": 2, "SB_MAC16": 1}}}}
    u = module_usage(stat, get_board("icebreaker"))["top"]
    assert (u.luts, u.ffs, u.dsps) == (10, 6, 1)


def test_table_has_a_total_row():
    rows = [PartUsage("a", Usage(luts=10, ffs=4), Usage(luts=20, ffs=4)),
            PartUsage("b", Usage(luts=5), Usage())]
    lines = table(rows)
    assert "| a | 10 | 20 | 0.50 | 4 | 4 | 1.00 |" in lines[2]
    assert lines[3].startswith("| b | 5 | 0 | - |")
    assert lines[-1].startswith("| **total** | 15 | 20 | 0.75 |")


@pytest.mark.synth
@pytest.mark.parametrize("board_name", ["icebreaker", "orangecrab"])
def test_estimate_per_part_is_within_the_band_of_yosys(tmp_path, board_name):
    board = get_board(board_name)
    design = dynfix.generate(dynfix.quantize("digits"), tmp_path / "gen", board=board_name)
    rows = compare(design, board)
    print("\n".join(table(rows)))
    parts = {r.part for r in rows}
    assert {"mac array", "requantizers", "control", "maps"} <= parts
    for r in rows:
        assert r.estimate.dsps == r.yosys.dsps and r.estimate.brams == r.yosys.brams, r.part
        for key in ("luts", "ffs"):
            got = getattr(r.yosys, key)
            if got >= 100:
                assert 1 / BAND <= r.ratio(key) <= BAND, (r.part, key, r.ratio(key))
