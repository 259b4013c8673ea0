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


# CLKOS, CLKOP's frequency lagging it by a phase (an SDRAM's clock). Hand-computed for
# 100 MHz from 25 MHz (CLKI_DIV 1, CLKFB_DIV 4, CLKOP_DIV 6: VCO 600 MHz, CLKOP_CPHASE 2):
# phase / 360 * 6 VCO cycles, whole cycles into CPHASE (plus CLKOP's 2), the rest in
# eighths truncated into FPHASE; the reached phase (whole + eighths / 8) / 6 * 360.
CLKOS_PHASES = [
    # phase, CLKOS_CPHASE, CLKOS_FPHASE, reached degrees
    (90, 1 + 2, 4, 90.0),           # 1.5 cycles
    (270, 4 + 2, 4, 270.0),         # 4.5 cycles
    (0, 0 + 2, 0, 0.0),
    (359, 5 + 2, 7, 352.5),         # 5.98333 cycles: 5 and 7.8667 eighths
    (45, 0 + 2, 6, 45.0),           # 0.75 cycles
    (10, 0 + 2, 1, 7.5),            # 0.16667 cycles: 1.3333 eighths
]


@pytest.mark.parametrize("phase, cphase, fphase, reached", CLKOS_PHASES)
def test_ecp5_clkos_phase_is_ecppll_s(phase, cphase, fphase, reached):
    import dataclasses

    from dynfix.boards.pll import Ecp5Pll

    p = dataclasses.replace(Ecp5Pll(25, 1, 4, 6), clkos_phase=phase)
    assert (p.clkos_div, p.clkos_cphase, p.clkos_fphase) == (6, cphase, fphase)
    assert p.clkos_phase_actual == pytest.approx(reached)
    d = p.to_dict()
    assert (d["CLKOS_DIV"], d["CLKOS_CPHASE"], d["CLKOS_FPHASE"]) == (6, cphase, fphase)
    assert d["clkos_phase_deg"] == pytest.approx(reached) and d["CLKOP_CPHASE"] == 2


def test_ecp5_clkos_on_another_divider():
    """50 MHz from 25 MHz (CLKOP_DIV 12, CLKOP_CPHASE 5): 100 degrees is 3.3333 cycles,
    CPHASE 3 + 5, FPHASE 2 (2.6667 eighths), reached (3 + 2 / 8) / 12 * 360 = 97.5."""
    from dynfix.boards.pll import Ecp5Pll

    p = Ecp5Pll(25, 1, 2, 12, clkos_phase=100.0)
    assert (p.clkos_div, p.clkos_cphase, p.clkos_fphase) == (12, 8, 2)
    assert p.clkos_phase_actual == pytest.approx(97.5)


def test_ecp5_without_clkos_keeps_its_report():
    from dynfix.boards.pll import Ecp5Pll

    p = Ecp5Pll(25, 1, 4, 6)
    assert p.clkos_phase is None
    assert p.to_dict() == {"family": "ecp5", "f_in_mhz": 25, "f_out_mhz": 100.0,
                           "f_vco_mhz": 600.0, "CLKI_DIV": 1, "CLKFB_DIV": 4, "CLKOP_DIV": 6,
                           "CLKOP_CPHASE": 2}
    with pytest.raises(DynfixError, match="no CLKOS"):
        p.clkos_cphase


@pytest.mark.parametrize("phase", [360, 360.0, -0.5, 720, float("nan")])
def test_ecp5_clkos_phase_out_of_range_is_refused(phase):
    import dataclasses

    from dynfix.boards.pll import Ecp5Pll

    with pytest.raises(DynfixError, match="CLKOS phase .* is outside 0 <= phase < 360"):
        dataclasses.replace(Ecp5Pll(25, 1, 4, 6), clkos_phase=phase)
    with pytest.raises(DynfixError, match="CLKOS phase"):
        Ecp5Pll(25, 1, 4, 6, phase)


def _pll_clock_verilog(pll) -> str:
    """The Verilog of a :class:`PllClock` at ``pll`` in a module defining the ``sync``
    domain and a reset-less ``sdram`` one, a register in each so both clocks are used."""
    from amaranth import ClockDomain, Module, Signal
    from amaranth.back import verilog

    from dynfix.boards.pll_clock import PllClock
    from dynfix.hw.generate import ensure_yosys

    ensure_yosys()
    m = Module()
    m.domains.sync = ClockDomain()
    m.domains.sdram = ClockDomain(reset_less=True)
    m.submodules.pll = pc = PllClock(pll)
    a, b = Signal(), Signal()
    m.d.sync += a.eq(~a)
    m.d.sdram += b.eq(~b)
    return verilog.convert(m, name="top", ports=[pc.osc, pc.lock, a, b], emit_src=False)


def test_pll_clock_drives_clkos_only_with_a_phase():
    import dataclasses
    import re

    from dynfix.boards.pll import Ecp5Pll

    base = Ecp5Pll(25, 1, 4, 6)
    plain = _pll_clock_verilog(base)
    assert "EHXPLLL" in plain and "CLKOS" not in plain and "DIVB" not in plain
    text = _pll_clock_verilog(dataclasses.replace(base, clkos_phase=90))
    for param in ['.CLKOS_ENABLE("ENABLED")', ".CLKOS_DIV(32'd6)", ".CLKOS_CPHASE(32'd3)",
                  ".CLKOS_FPHASE(32'd4)", '.OUTDIVIDER_MUXB("DIVB")',
                  '(* FREQUENCY_PIN_CLKOS = "100.000000" *)']:
        assert param in text, param
    # CLKOS drives the sdram domain's clock: a wire out of the cell, not a constant.
    m = re.search(r"\.CLKOS\(([^)]*)\)", text)
    assert m and "'" not in m.group(1)
    # Apart from CLKOS's lines, the cell is the same.
    drop = re.compile(r"CLKOS|DIVB")
    strip = [line for line in text.splitlines() if not drop.search(line)]
    cell = lambda lines: lines[next(i for i, s in enumerate(lines) if "EHXPLLL" in s):]
    assert cell(strip)[:30] == cell(plain.splitlines())[:30]


# A testbench of pll_sim.v's EHXPLLL alone: the 25 MHz oscillator, the rising edges of
# CLKOP and CLKOS once LOCK is high.
_PLL_TB = r"""
`timescale 1ps / 1ps
module tb;
    parameter integer CLKOP_DIV = 6, CLKFB_DIV = 4, CLKOP_CPHASE = 2, EN = 1;
    parameter integer CLKOS_DIV = 6, CLKOS_CPHASE = 0, CLKOS_FPHASE = 0;
    reg clki = 1'b0;
    wire clkop, clkos, lock;
    EHXPLLL #(.CLKI_DIV(1), .CLKFB_DIV(CLKFB_DIV), .CLKOP_DIV(CLKOP_DIV),
              .CLKOP_CPHASE(CLKOP_CPHASE), .CLKOS_ENABLE(EN ? "ENABLED" : "DISABLED"),
              .CLKOS_DIV(CLKOS_DIV), .CLKOS_CPHASE(CLKOS_CPHASE), .CLKOS_FPHASE(CLKOS_FPHASE))
        dut (.CLKI(clki), .CLKFB(clkop), .CLKOP(clkop), .CLKOS(clkos), .LOCK(lock),
             .RST(1'b0), .STDBY(1'b0), .PHASESEL0(1'b0), .PHASESEL1(1'b0), .PHASEDIR(1'b1),
             .PHASESTEP(1'b1), .PHASELOADREG(1'b1), .PLLWAKESYNC(1'b0), .ENCLKOP(1'b0),
             .ENCLKOS(1'b0), .ENCLKOS2(1'b0), .ENCLKOS3(1'b0));
    always #20000 clki = ~clki;
    always @(posedge clkop) if (lock) $display("OP %0t", $time);
    always @(posedge clkos) if (lock) $display("OS %0t", $time);
    initial begin
        #2000000 $finish;
    end
endmodule
"""


def _run_pll_model(tmp_path, **params) -> tuple[list[int], list[int]]:
    """The rising edges (ps) of CLKOP and CLKOS after lock in an Icarus run of the model."""
    import subprocess

    from dynfix.boards.pll import SIM_MODEL
    from sim_helpers import require_simulator

    require_simulator("icarus")
    tmp_path.mkdir(parents=True, exist_ok=True)
    tb = tmp_path / "tb.v"
    tb.write_text(_PLL_TB)
    out = tmp_path / "tb.vvp"
    subprocess.run(["iverilog", "-g2012", "-s", "tb", "-o", str(out),
                    *[f"-Ptb.{k}={v}" for k, v in params.items()], str(tb), str(SIM_MODEL)],
                   check=True, capture_output=True, text=True)
    log = subprocess.run(["vvp", "-n", str(out)], check=True, capture_output=True,
                         text=True).stdout
    edges = {"OP": [], "OS": []}
    for line in log.splitlines():
        kind, _, t = line.partition(" ")
        if kind in edges:
            edges[kind].append(int(t))
    return edges["OP"], edges["OS"]


@pytest.mark.parametrize("phase", [90, 270, 0, 359, 10])
def test_pll_model_clkos_lags_clkop_by_the_phase(tmp_path, phase):
    """pll_sim.v's EHXPLLL at 100 MHz from 25 MHz with CLKOS set for ``phase``: every CLKOS
    rising edge comes the requested phase of 10 ns after CLKOP's last one, within an
    eighth of a VCO cycle (1/4800 us) below it, and its period is CLKOP's."""
    from dynfix.boards.pll import Ecp5Pll

    p = Ecp5Pll(25, 1, 4, 6, clkos_phase=phase)
    op, os_ = _run_pll_model(tmp_path, CLKOS_CPHASE=p.clkos_cphase,
                             CLKOS_FPHASE=p.clkos_fphase)
    assert len(op) > 100 and len(os_) > 100
    assert all(b - a == 10_000 for a, b in zip(op, op[1:]))
    assert all(b - a == 10_000 for a, b in zip(os_, os_[1:]))
    want = phase / 360 * 10_000
    eighth = 1e6 / 600 / 8
    for t in os_[1:]:
        lag = t - max(e for e in op if e <= t)
        assert want - eighth < lag <= want + 1, (t, lag, want)


def test_pll_model_clkos_of_another_divider_and_disabled(tmp_path):
    """CLKOS_DIV 12 on CLKOP_DIV 6 (50 MHz beside 100 MHz) with 3 VCO cycles more coarse
    phase than CLKOP: rises every 20 ns, 5 ns after a CLKOP rise. Not enabled: never
    rises."""
    op, os_ = _run_pll_model(tmp_path / "div12", CLKOS_DIV=12, CLKOS_CPHASE=5)
    assert len(os_) > 50 and all(b - a == 20_000 for a, b in zip(os_, os_[1:]))
    assert all(t - 5_000 in op for t in os_[1:])
    op, os_ = _run_pll_model(tmp_path / "off", EN=0, CLKOS_CPHASE=5)
    assert len(op) > 100 and os_ == []


def _ecp5_model_run(tmp_path, params: dict, cycles: int = 60) -> tuple[float, float | None]:
    """The EHXPLLL model of ``boards/pll_sim.v`` under Icarus, its parameters written the
    way Amaranth writes them (``32'd`` constants: unsigned), fed 25 MHz: CLKOP's period
    and CLKOS's lag behind a CLKOP rising edge in ps (None without CLKOS edges). The run
    has a few seconds: the model's set-up must not spin."""
    import subprocess

    from dynfix.boards.pll import SIM_MODEL
    from sim_helpers import require_simulator

    require_simulator("icarus")
    written = {k: v if isinstance(v, str) else "32'd%d" % v for k, v in params.items()}
    overrides = ", ".join(f".{k}({v})" for k, v in written.items())
    tb = tmp_path / "tb.v"
    tb.write_text(f"""`timescale 1ps / 1ps
module tb;
  reg osc = 1'b0;
  always #20000 osc = ~osc;
  wire op, os, lock;
  integer n = 0;
  realtime t_op = 0, t_prev = 0;
  EHXPLLL #({overrides}) pll (.CLKI(osc), .CLKFB(op), .CLKOP(op), .CLKOS(os), .LOCK(lock),
                              .RST(1'b0));
  always @(posedge op) begin
    n = n + 1;
    t_prev = t_op;
    t_op = $realtime;
    if (n == {cycles}) begin
      @(posedge os or posedge op);
      if (os) $display("lag %0f", $realtime - t_op);
      $display("period %0f", t_op - t_prev);
      $finish;
    end
  end
endmodule
""")
    subprocess.run(["iverilog", "-o", str(tmp_path / "tb.vvp"), str(tb), str(SIM_MODEL)],
                   check=True, timeout=30)
    out = subprocess.run(["vvp", "-n", str(tmp_path / "tb.vvp")], check=True, timeout=10,
                         capture_output=True, text=True).stdout
    got = dict(line.split() for line in out.splitlines() if line.split()[0] in ("lag", "period"))
    return float(got["period"]), float(got["lag"]) if "lag" in got else None


@pytest.mark.parametrize("phase", [90, 270, 359, 10, 0])
def test_ecp5_model_lags_clkos_by_the_phase(tmp_path, phase):
    """The simulated CLKOS lags CLKOP by the phase the settings reach (0 to 359 degrees:
    whole VCO periods in CLKOS_CPHASE past CLKOP's, eighths in CLKOS_FPHASE)."""
    import dataclasses

    from dynfix.boards.pll import Ecp5Pll

    p = dataclasses.replace(Ecp5Pll(25, 1, 4, 6), clkos_phase=phase)
    d = p.to_dict()
    params = {k: d[k] for k in ("CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV", "CLKOP_CPHASE",
                                "CLKOS_DIV", "CLKOS_CPHASE", "CLKOS_FPHASE")}
    period, lag = _ecp5_model_run(tmp_path, {**params, "CLKOS_ENABLE": '"ENABLED"'})
    assert period == pytest.approx(10_000)
    want = p.clkos_phase_actual / 360 * period
    assert lag == pytest.approx(want, abs=1)


def test_ecp5_model_without_clkos_starts_at_once(tmp_path):
    """CLKOP_CPHASE above the unset CLKOS_CPHASE (CLKOS disabled: every board top without
    an SDRAM) must not cost the model's set-up a wrapped unsigned difference."""
    period, lag = _ecp5_model_run(tmp_path, {"CLKI_DIV": 1, "CLKFB_DIV": 4, "CLKOP_DIV": 6,
                                             "CLKOP_CPHASE": 2})
    assert period == pytest.approx(10_000) and lag is None
