"""PLL divider settings (boards/pll.py) against what icepll and ecppll print, and the
fastest setting under a clock limit against a brute-force search."""

import pytest

from dynfix.boards.pll import ecp5_pll, fastest_pll, ice40_pll
from dynfix.errors import DynfixError

# icepll outputs as published in designs generated with it (Verilog headers "Given input
# frequency / Requested / Achieved" with DIVR, DIVF, DIVQ, FILTER_RANGE).
ICEPLL = [
    (12, 30, 0, 79, 5, 1, 30.0),
    (100, 30, 4, 47, 5, 2, 30.0),
    (12, 40, 0, 52, 4, 1, 39.75),
    (12, 50, 0, 66, 4, 1, 50.25),
    (16, 50, 0, 49, 4, 1, 50.0),
    (25, 50, 0, 31, 4, 2, 50.0),
]
# ecppll outputs as published: the printout of "ecppll -i 50 -o 100" and a ULX3S design's
# PLL from its oscillator, with their CLKOP_CPHASE ("ecppll -i 50 -o 32" is checked
# below).
ECPPLL = [
    (50, 100, 1, 2, 6, 2, 100.0),
    (25, 100, 1, 4, 6, 2, 100.0),
]


@pytest.mark.parametrize("f_in, f_out, divr, divf, divq, filt, got", ICEPLL)
def test_ice40_settings_are_icepll_s(f_in, f_out, divr, divf, divq, filt, got):
    p = ice40_pll(f_in, f_out)
    assert (p.divr, p.divf, p.divq, p.filter_range) == (divr, divf, divq, filt)
    assert p.f_out == pytest.approx(got)
    assert 533 <= p.f_vco <= 1066 and 10 <= p.f_pfd <= 133


@pytest.mark.parametrize("f_in, f_out, clki, fb, op, cphase, got", ECPPLL)
def test_ecp5_settings_are_ecppll_s(f_in, f_out, clki, fb, op, cphase, got):
    p = ecp5_pll(f_in, f_out)
    assert (p.clki_div, p.clkfb_div, p.clkop_div, p.clkop_cphase) == (clki, fb, op, cphase)
    assert p.f_out == pytest.approx(got) and p.f_vco == pytest.approx(600.0)


def test_ecp5_32_from_50_takes_a_reference_divisor_of_14():
    p = ecp5_pll(50, 32)
    assert p.clki_div == 14 and round(p.f_out, 2) == 32.14
    assert 400 <= p.f_vco <= 800


def _all_ice40(f_in):
    return [f_in / (r + 1) * (f + 1) / 2 ** q for r in range(16) for f in range(128)
            for q in range(1, 7) if 10 <= f_in / (r + 1) <= 133
            and 533 <= f_in / (r + 1) * (f + 1) <= 1066]


def _all_ecp5(f_in):
    return [f_in / c * b for c in range(1, 129) for b in range(1, 81) if f_in / c >= 3.125
            and any(400 <= f_in / c * b * o <= 800 for o in range(1, 129))]


@pytest.mark.parametrize("family, f_in, f_max", [("ice40", 12, 42.3), ("ice40", 12, 25.0),
                                                 ("ecp5", 25, 99.7), ("ecp5", 48, 133.4),
                                                 ("ecp5", 25, 109.5)])
def test_fastest_setting_under_a_limit_is_the_highest_reachable(family, f_in, f_max):
    """No setting of the family reaches a frequency between the chosen one and the limit
    (a brute force over every divider in range, written independently)."""
    p = fastest_pll(family, f_in, f_max)
    assert p.f_out <= f_max
    every = _all_ice40(f_in) if family == "ice40" else _all_ecp5(f_in)
    lo = 16 if family == "ice40" else 10
    assert max(f for f in every if lo <= f <= f_max) == pytest.approx(p.f_out)


def test_out_of_range_requests_are_refused():
    with pytest.raises(DynfixError, match="iCE40 PLL input 5 MHz is outside"):
        ice40_pll(5, 30)
    with pytest.raises(DynfixError, match="ECP5 PLL output 500 MHz is outside"):
        ecp5_pll(25, 500)
    with pytest.raises(DynfixError, match="runs at or below 12 MHz"):
        fastest_pll("ice40", 12, 12)


def test_ecp5_board_top_runs_on_the_pll_model(tmp_path):
    """A board top for the ULX3S clocked from the EHXPLLL at 100 MHz from its 25 MHz
    oscillator (ecppll's dividers, simulated by ``boards/pll_sim.v``): the clock's period,
    the lock before anything answers, and an inference over the UART bit-exact."""
    import numpy as np

    from dynfix.boards.design import link_info
    from dynfix.hw.design import Design
    from dynfix.boards.protocol import parse_result
    from dynfix.hw.compiler import compile_model
    from dynfix.hw.config import EngineConfig
    from dynfix.hw.generate import write_outputs
    from dynfix.quant.datasets import load_digits
    from dynfix.quant.int_model import IntModel
    from board_helpers import run_board_tb
    from hw_models import digits_8bit

    model, spec = digits_8bit()
    cm = compile_model(model, spec, EngineConfig(tn=2, tm=4))
    write_outputs(cm, model.name, tmp_path / "gen", board="ulx3s")
    gen, im = Design.load(tmp_path / "gen"), IntModel(model, spec)
    x, _ = load_digits("test")
    pll = ecp5_pll(25, 100)
    res = run_board_tb(gen, im, x, tmp_path / "sim", pll=pll, divisor=8)
    assert abs(res["period_ps"] - 10_000) <= 1 and res["lock_osc_cycles"] >= 8
    assert res["info"] is not None and res["info_at"] > res["lock_at"]
    got = parse_result(bytes(res["replies"][0]), link_info(gen))
    ref = im.forward(im.quantize_input(x[:1]))[cm.output_name].reshape(-1)
    np.testing.assert_array_equal(got.logits, ref)
    assert res["loaded"] == 1 and res["stray"] == []
