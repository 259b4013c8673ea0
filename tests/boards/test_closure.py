"""Timing closure (``boards/closure.py``) and ``dynfix synth --clock``: the builds are
stand-ins whose Fmax is a function of the clock they are asked for, so the loop's choices
are checked without yosys or nextpnr."""

from __future__ import annotations

import gc
import json

import pytest

from dynfix.boards.closure import ClosurePolicy, close_timing, next_clock
from dynfix.boards.pll import fastest_pll
from dynfix.boards.registry import get_board
from dynfix.boards.synth import SynthResult
from dynfix.errors import DynfixError


def fake_result(target: float, fmax: float) -> SynthResult:
    return SynthResult(board="b", device="d", luts=1, ffs=1, dsps=0, brams=0, sprams=0,
                       fmax_mhz=fmax, target_mhz=target, timing_met=fmax >= target,
                       seconds=0.0, bitstream="top.bin")


def builds_with(fmax_at):
    """A stand-in build whose Fmax at a requested clock is ``fmax_at(clock)``, and the list
    of clocks it was asked for."""
    asked: list[float] = []

    def build(pll, target_mhz):
        assert target_mhz >= pll.f_out
        asked.append(pll.f_out)
        return fake_result(pll.f_out, fmax_at(pll.f_out))
    return build, asked


#: The search alone: each build placed and routed for its own clock.
EXACT = ClosurePolicy(headroom=0.0)


def test_a_first_build_that_misses_is_rebuilt_under_its_fmax():
    """iCE40 from 12 MHz: the first build at the fastest setting under 60 MHz reports
    42.3 MHz; the rebuild runs at the fastest setting under 42.3 less 2 % and meets; the
    next setting under its own Fmax is no faster, so the search ends."""
    build, asked = builds_with(lambda f: 42.3 if f > 45 else 41.5)
    r = close_timing(build, "ice40", 12.0, 60.0, ClosurePolicy(margin=0.02, headroom=0))
    expect = fastest_pll("ice40", 12.0, 42.3 * 0.98)
    assert asked == [fastest_pll("ice40", 12.0, 60.0).f_out, expect.f_out]
    assert asked[0] <= 60 and 40 < asked[1] <= 42.3 * 0.98
    assert r.timing_met and r.clock_mhz == expect.f_out and r.target_mhz == expect.f_out
    assert r.pll == expect.to_dict() and r.pll["DIVF"] == expect.divf
    assert [s["timing_met"] for s in r.closure] == [False, True]
    assert [s["fmax_mhz"] for s in r.closure] == [42.3, 41.5]


def test_a_build_with_room_to_spare_is_tried_faster():
    """ECP5 from 25 MHz: 200 MHz met with Fmax 250, so the next build runs at the fastest
    setting under 245 MHz; it meets too and nothing faster is in reach."""
    build, asked = builds_with(lambda f: 250.0)
    r = close_timing(build, "ecp5", 25.0, 200.0, EXACT)
    faster = fastest_pll("ecp5", 25.0, 245.0).f_out
    assert asked == [200.0, faster] and 200 < faster <= 245
    assert r.timing_met and r.clock_mhz == faster and len(r.closure) == 2
    assert r.pll["CLKFB_DIV"] * 25.0 / r.pll["CLKI_DIV"] == faster


def test_the_best_build_is_built_again_when_a_faster_one_missed():
    """Met at 100 MHz with Fmax 110, missed at the faster clock tried next: the 100 MHz
    build is the result, built again so the build folder holds its bitstream."""
    build, asked = builds_with(lambda f: 110.0 if f <= 100 else 95.0)
    r = close_timing(build, "ecp5", 25.0, 100.0, EXACT)
    assert asked[0] == asked[2] == 100.0 < asked[1] <= 110 * 0.98 and len(asked) == 3
    assert r.timing_met and r.clock_mhz == 100.0 and r.fmax_mhz == 110.0
    assert [s["timing_met"] for s in r.closure] == [True, False, True]
    assert r.closure[-1]["rebuild"] and "rebuild" not in r.closure[0]


def test_a_rebuild_that_misses_steps_down_below_the_clock_it_missed():
    """Each rebuild's Fmax lands just under its clock: the loop keeps stepping strictly
    down and gives up after the policy's builds and its retries, returning the last
    (failing) build."""
    build, asked = builds_with(lambda f: f - 0.01)
    r = close_timing(build, "ecp5", 25.0, 150.0,
                     ClosurePolicy(margin=0.0, headroom=0, builds=3, retries=2))
    assert len(asked) == 5 and asked == sorted(asked, reverse=True)
    assert len(set(asked)) == 5
    assert not r.timing_met and r.clock_mhz == asked[-1]
    assert [s["timing_met"] for s in r.closure] == [False] * 5


def test_a_fmax_that_falls_with_the_clock_gets_a_wider_margin_each_miss():
    """iCE40: each build's Fmax falls with the clock it was placed for (a full design:
    34.4 MHz placed for 60, 29.1 for 33.7), so 2 % under the last Fmax keeps missing (a
    third build at 2 % would miss too, and three were all the search had); the margin
    doubles with every miss and the third build meets."""
    def fmax(f):
        return 28 + 0.2 * (f - 28)
    build, asked = builds_with(fmax)
    r = close_timing(build, "ice40", 12.0, 60.0, ClosurePolicy(margin=0.02, headroom=0))
    assert r.timing_met and len(asked) == 3
    assert [s["timing_met"] for s in r.closure] == [False, False, True]
    assert asked[1] == fastest_pll("ice40", 12.0, fmax(asked[0]) * 0.98).f_out
    assert asked[2] == fastest_pll("ice40", 12.0, fmax(asked[1]) * 0.96).f_out
    assert fmax(fastest_pll("ice40", 12.0, fmax(asked[1]) * 0.98).f_out) < fastest_pll(
        "ice40", 12.0, fmax(asked[1]) * 0.98).f_out


def test_the_next_clock_is_strictly_below_the_missed_one():
    """A build that misses a clock by less than the PLL's step (Fmax above the next setting
    but below this one) never repeats the same clock."""
    missed = fastest_pll("ice40", 12.0, 42.0)
    nxt = next_clock("ice40", 12.0, missed, missed.f_out + 5, 0.0)
    assert nxt.f_out < missed.f_out
    with pytest.raises(DynfixError, match="at or below"):
        next_clock("ice40", 12.0, missed, 10.0, 0.0)          # under the PLL's 16 MHz


def test_below_the_pll_the_last_build_is_returned():
    """The Fmax falls under the PLL's slowest output: no clock to step to; the failing
    build comes back for the caller to refuse."""
    build, asked = builds_with(lambda f: 9.0)
    r = close_timing(build, "ice40", 12.0, 60.0, EXACT)
    assert len(asked) == 1 and not r.timing_met and r.closure[0]["fmax_mhz"] == 9.0


@pytest.mark.parametrize("margin, builds", [(-0.1, 3), (0.5, 3), (0.02, 0)])
def test_closure_policy_is_checked(margin, builds):
    with pytest.raises(DynfixError, match="closure"):
        ClosurePolicy(margin=margin, builds=builds)


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    """The digits model generated for the iCEBreaker (the fit's engine)."""
    import dynfix
    folder = tmp_path_factory.mktemp("closure") / "gen"
    dynfix.generate(dynfix.quantize("digits"), folder, board="icebreaker")
    return folder


@pytest.mark.filterwarnings("ignore:.*created but never used")  # the fake never builds
@pytest.mark.parametrize("clock, builds, first", [
    ("auto", 2, None), ("oscillator", 1, 12.0), (30.0, 1, 30.0), (31.3, 1, 31.125)])
def test_api_synth_clock_choices(digits_folder, monkeypatch, clock, builds, first):
    """``dynfix.synth(clock=)``: auto closes timing (two builds here), a number forces the
    PLL's fastest setting at or below it, ``oscillator`` builds without a PLL. The board top
    of each build has its UART divisor for that build's clock."""
    import dynfix
    import dynfix.api
    from dynfix.boards.uart_tx import baud_divisor
    seen = []

    def fake_synthesize(top, board, build_dir, check_timing=True, target_mhz=None):
        seen.append((board.target_mhz, top._divisor, top._pll, target_mhz))
        return fake_result(board.target_mhz, 41.2)
    monkeypatch.setattr(dynfix.api, "synthesize", fake_synthesize)
    board = get_board("icebreaker")
    r = dynfix.synth(digits_folder, clock=clock, check_timing=False)
    assert len(seen) == builds and r.timing_met
    if first is not None:
        assert seen[0][0] == first and r.clock_mhz == first
    assert (r.pll == {}) == (clock == "oscillator") == (seen[-1][2] is None)
    for target, divisor, pll, constraint in seen:
        assert divisor == baud_divisor(target * 1e6, board.baud)
        # placed and routed for the clock plus the default headroom, judged at the clock
        assert constraint == (None if pll is None else pytest.approx(target * 1.1))
    if clock == "auto":
        assert seen[0][0] == fastest_pll("ice40", 12.0, board.max_mhz / 1.1).f_out
        assert r.clock_mhz == fastest_pll("ice40", 12.0, 41.2 * 0.98).f_out
        assert [s["target_mhz"] for s in r.closure] == [
            pytest.approx(s["clock_mhz"] * 1.1) for s in r.closure]
    gc.collect()


@pytest.mark.filterwarnings("ignore:.*created but never used")  # the fake never builds
def test_synth_cli_clock_and_json(digits_folder, monkeypatch, capsys):
    """``dynfix synth --json`` gives the clock the bitstream runs at, Fmax, the PLL setting
    and the verdict; a clock missed after the closure exits 1; a bad --clock is refused."""
    import dynfix.api
    from dynfix.cli import main

    monkeypatch.setattr(dynfix.api, "synthesize",
                        lambda top, board, build_dir, check_timing=True, target_mhz=None:
                        fake_result(board.target_mhz, 41.2))
    capsys.readouterr()
    assert main(["synth", str(digits_folder), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["timing_met"] and r["clock_mhz"] <= r["fmax_mhz"] == 41.2
    assert r["pll"]["family"] == "ice40" and len(r["closure"]) == 2
    assert json.loads((digits_folder / "synth.json").read_text()) == r

    monkeypatch.setattr(dynfix.api, "synthesize",
                        lambda top, board, build_dir, check_timing=True, target_mhz=None:
                        fake_result(board.target_mhz, board.target_mhz * 0.9))
    assert main(["synth", str(digits_folder)]) == 1
    out, err = capsys.readouterr()
    assert "timing closure:" in out and "timing NOT met" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:
        main(["synth", str(digits_folder), "--clock", "fast"])
    assert e.value.code == 2 and "expected auto, oscillator or a clock in MHz" in \
        capsys.readouterr().err
    gc.collect()


def test_a_start_clock_saves_the_builds_above_a_known_fmax():
    """A design whose last build reached 99.7 MHz starts a little under it instead of at the
    board's 200 MHz: one build, met, and nothing faster under its Fmax less the margin."""
    build, asked = builds_with(lambda f: 99.7)
    r = close_timing(build, "ecp5", 25.0, 200.0,
                     ClosurePolicy(builds=1, start_mhz=99.7 * 0.97, headroom=0))
    assert asked == [fastest_pll("ecp5", 25.0, 99.7 * 0.97).f_out]
    assert r.timing_met and r.clock_mhz == asked[0] and len(r.closure) == 1
    # never above the board's highest
    build, asked = builds_with(lambda f: 50.0)
    close_timing(build, "ice40", 12.0, 40.0, ClosurePolicy(builds=1, retries=0, headroom=0,
                                                           start_mhz=300.0))
    assert asked == [fastest_pll("ice40", 12.0, 40.0).f_out]
    with pytest.raises(DynfixError, match="first clock"):
        ClosurePolicy(start_mhz=0)


def test_headroom_places_above_the_clock_and_judges_at_it():
    """ECP5, a design that reaches 81 MHz when placed for more than 90 and 80 otherwise: with
    20 % headroom the first build runs its PLL at the fastest setting under 96 / 1.2,
    is placed for that plus 20 %, and meets at its own clock: one build where placing for
    the clock itself takes two (96 missed, then the rebuild)."""
    targets: list[tuple[float, float]] = []

    def build(pll, target_mhz):
        targets.append((pll.f_out, target_mhz))
        fmax = 81.0 if target_mhz > 90 else 80.0
        return fake_result(pll.f_out, fmax)
    r = close_timing(build, "ecp5", 25.0, 125.0,
                     ClosurePolicy(builds=1, start_mhz=96.0, headroom=0.2))
    clock = fastest_pll("ecp5", 25.0, 96.0 / 1.2).f_out
    assert targets == [(clock, pytest.approx(clock * 1.2))] and clock <= 96 / 1.2
    assert r.timing_met and r.clock_mhz == clock and r.fmax_mhz == 81.0
    assert r.closure[0]["target_mhz"] == pytest.approx(clock * 1.2)
    targets.clear()
    r = close_timing(build, "ecp5", 25.0, 125.0, ClosurePolicy(builds=1, start_mhz=96.0,
                                                              headroom=0.0))
    assert len(targets) == 2 and not r.closure[0]["timing_met"] and r.timing_met
    assert all(t == c for c, t in targets)
    with pytest.raises(DynfixError, match="headroom"):
        ClosurePolicy(headroom=-0.1)


@pytest.mark.filterwarnings("ignore:.*created but never used")
@pytest.mark.parametrize("board, pattern", [
    ("icebreaker", r'set_frequency clk ([0-9.]+)'),
    ("ulx3s", r'FREQUENCY NET "clk" ([0-9.]+) MHZ;')])
def test_a_target_constrains_the_clock_net(digits_folder, board, pattern):
    """A build plan with a target above the PLL's clock constrains the design's clock net
    at the target (nextpnr prefers a user's constraint to the one it derives from the
    dividers); without one, no constraint on that net; the netlists are the same."""
    import re

    from dynfix.boards.design import Design, board_pll, board_top
    from dynfix.boards.synth import prepare
    b = get_board(board)
    top = board_top(Design.load(digits_folder), b, board_pll(b, 50.0))
    plans = [prepare(top, b, target_mhz=t) for t in (None, 55.0)]
    found = [re.findall(pattern, "".join(str(v) for v in p.files.values())) for p in plans]
    assert found[0] == [] and [float(f) for f in found[1]] == [55.0]
    netlists = [{k: v for k, v in p.files.items() if k.endswith((".il", ".v"))}
                for p in plans]
    assert netlists[0] == netlists[1] and netlists[0]
    gc.collect()


def test_the_router_goes_to_nextpnr_only_when_not_its_default(digits_folder):
    """router2 adds ``--router router2`` to nextpnr's options; router1, nextpnr's default,
    adds nothing, so the plans of builds that keep it stay as they were (the benches key
    their builds by the plan); the netlists are the same either way."""
    import dataclasses

    from dynfix.boards.design import Design, board_pll, board_top
    from dynfix.boards.synth import prepare
    b = get_board("ulx3s")
    top = board_top(Design.load(digits_folder), b, board_pll(b, 50.0))
    plans = [prepare(top, dataclasses.replace(b, router=r)) for r in ("router1", "router2")]
    scripts = ["".join(str(v) for k, v in p.files.items() if k.endswith(".sh"))
               for p in plans]
    assert "--router" not in scripts[0] and "--seed 1" in scripts[0]
    assert "--router router2" in scripts[1]
    netlists = [{k: v for k, v in p.files.items() if k.endswith((".il", ".v"))}
                for p in plans]
    assert netlists[0] == netlists[1] and netlists[0]
    gc.collect()


def test_a_constraint_nextpnr_did_not_apply_is_an_error(tmp_path):
    """The log's timed clocks must include the requested target."""
    from dynfix.boards.synth import check_constraint
    log = tmp_path / "top.tim"
    log.write_text("Info: Max frequency for clock '$glbnet$clk': 81.13 MHz "
                   "(FAIL at 87.08 MHz)\n")
    check_constraint(log, 87.083333)
    check_constraint(log, 87.06)          # timed from a period in whole picoseconds
    with pytest.raises(DynfixError, match="did not time the design's clock at the "
                       "requested 96.43 MHz .*87.08"):
        check_constraint(log, 96.428571)
