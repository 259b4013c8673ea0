"""The SDR SDRAM model (``sim/sdram_model.v``, the chip under the SDRAM controller in
whole-design simulations) on its own, under Icarus and Verilator.

A pins-only cocotb controller (``tests/sdram_model_tb.py``) drives the model as the top level
with a small geometry. Data: the initialisation, every burst length (1, 2, 4, 8, full page)
at CAS latency 2 and 3, byte-masked writes, wrapping and interrupted bursts, auto precharge
and a long run of random traffic with refreshes; every beat read equals the image that the
writes give, computed here, and the model reports nothing. Violations: one scenario per
violation code, each adding exactly one to ``errors`` with its code in ``last_error``, and the
model's log naming exactly the rules, edges and banks the scenarios break. Also: lint-clean
under ``verilator -Wall``, ``FATAL=1`` stops at the first violation, and a Verilog-native
stimulus measures how many cycles a second the model simulates under Verilator.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from sim_helpers import require_simulator

MODEL = Path(__file__).resolve().parents[2] / "sim" / "sdram_model.v"
TOP = "dynfix_sdram_model"
#: Small geometry (4 banks x 16 rows x 32 columns); timing apart enough that each rule can
#: be broken alone (T_RC > T_RAS + T_RP).
PARAMS = {"ROW_BITS": 4, "COL_BITS": 5, "ADDR_BITS": 13, "T_RCD": 2, "T_RP": 3, "T_RAS": 5,
          "T_RC": 10, "T_RRD": 3, "T_WR": 2, "T_MRD": 2, "T_RFC": 7, "T_REFI": 200,
          "T_INIT": 20, "MAX_POSTPONED": 8}
#: The rows the data test fills and uses, as (bank, row); neighbours in pairs share no bank.
ROWS = [(0, 3), (1, 9), (2, 15), (3, 0), (0, 12), (2, 7)]
LONG_RUN = 6000
#: Violation scenarios: (name, code); code 0: none expected (the init's other order).
STEPS = [("init_wait", 1), ("init_order_refresh", 2), ("init_order_mode", 2),
         ("init_order_active", 2), ("init_mode_first", 0), ("act_open", 3), ("act_rp", 4),
         ("act_rp_auto_read", 4), ("act_rp_auto_write", 4), ("act_rc", 5), ("act_rrd", 6),
         ("act_rfc", 7), ("mode_rfc", 7), ("mrd", 8), ("rw_closed", 9), ("rw_rcd", 10),
         ("pre_ras", 11), ("pre_wr", 12), ("ref_open", 13), ("ref_rp", 14), ("ref_rfc", 15),
         ("mrs_open", 16), ("starved", 17), ("contention", 18), ("read_in_write", 19),
         ("write_in_read", 20), ("write_in_read_cl3", 20), ("mode_bad", 21),
         ("unsupported_interleaved", 22), ("unsupported_full_page_ap", 22),
         ("unsupported_cke", 22), ("x_pins", 23)]
#: The rule each code's log line names (the model's header comment has the table).
RULES = {1: "sooner than T_INIT", 2: "initialisation order", 3: "ACTIVE to an open bank",
         4: "ACTIVE sooner than T_RP", 5: "ACTIVE sooner than T_RC",
         6: "ACTIVE sooner than T_RRD", 7: "sooner than T_RFC after REFRESH",
         8: "sooner than T_MRD", 9: "to a closed bank", 10: "sooner than T_RCD",
         11: "PRECHARGE sooner than T_RAS", 12: "PRECHARGE sooner than T_WR",
         13: "REFRESH with a bank open", 14: "REFRESH sooner than T_RP",
         15: "REFRESH sooner than T_RFC", 16: "LOAD MODE with a bank open",
         17: "refresh starvation", 18: "contention", 19: "READ while write data",
         20: "WRITE while read data", 21: "reserved value", 22: "unsupported",
         23: "x or z"}
VIOLATION = re.compile(r"SDRAM violation: (.*) \(code (\d+)\) at cycle (\d+)(?:, bank (\d))?")
#: Icarus by default; the Verilator build (a minute on these machines) with the long runs.
SIMS = ["icarus", pytest.param("verilator", marks=pytest.mark.slow)]
#: Make variables for quicker Verilator builds: one translation unit for the model (no
#: precompiled headers), the Verilator runtime at -O0 (a third of the build time; it is not
#: in the per-cycle path). The model's own code keeps Verilator's default (-Os).
FAST_BUILD = "VM_PARALLEL_BUILDS=0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"


def violations_in(log: Path) -> list[tuple[int, int, int | None, str]]:
    """(code, cycle, bank, rule) of every violation line in ``log``."""
    return [(int(m[2]), int(m[3]), None if m[4] is None else int(m[4]), m[1])
            for m in VIOLATION.finditer(log.read_text(errors="replace"))]


@pytest.fixture(scope="module", params=SIMS)
def runs(request, tmp_path_factory) -> dict:
    """Build the model under one simulator and run both cocotb parts; their results and
    logs."""
    from cocotb_tools.runner import get_runner

    from dynfix.sim.simulators import (VERILATOR_ARGS, error_lines, job_files, quiet,
                                       tool_environment)

    sim = request.param
    require_simulator(sim)
    build_dir = tmp_path_factory.mktemp(f"sdram_model_{sim}").resolve()
    runner = get_runner(sim)
    quiet(runner)
    out = {"sim": sim}
    with tool_environment(sim), pytest.MonkeyPatch.context() as mp:
        if sim == "verilator":        # the cocotb tests spend their time in Python: -O0
            mp.setenv("MAKEFLAGS", f"{os.environ.get('MAKEFLAGS', '')} {FAST_BUILD} "
                                   "OPT_FAST=-O0")
        runner.build(sources=[MODEL], hdl_toplevel=TOP, build_dir=build_dir,
                     parameters=PARAMS, timescale=("1ns", "1ps"),
                     log_file=build_dir / "build.log",
                     build_args=list(VERILATOR_ARGS) if sim == "verilator" else [])
        for part in ("data", "violations"):
            job, result = job_files(build_dir / part, {
                "part": part, "params": PARAMS, "seed": 5, "rows": ROWS, "long_run": LONG_RUN,
                "x_pins": sim == "icarus"})
            log = build_dir / part / "sim.log"
            try:
                runner.test(hdl_toplevel=TOP, test_module="sdram_model_tb",
                            build_dir=build_dir, test_dir=build_dir / part,
                            extra_env={"DYNFIX_TB_JOB": str(job)}, log_file=log)
            except SystemExit:               # the runner's way of saying a test failed
                pass
            path = result.with_name(f"{part}.json")
            assert path.exists(), f"cocotb test {part} failed{error_lines(log, 3)} (see {log})"
            out[part] = json.loads(path.read_text())
            out[part]["log"] = violations_in(log)
    return out


def columns(col: int, wrap: int, n: int) -> list[int]:
    """The columns of ``n`` beats from ``col`` in a sequential burst that wraps within the
    aligned block of ``wrap`` columns (the row, for a full page)."""
    base = col - col % wrap
    return [base + (col - base + i) % wrap for i in range(n)]


def test_reads_match_the_written_image(runs):
    """Replays the writes, byte masks included, into an image and checks every beat read;
    the reads cover each burst length and CAS latency."""
    image: dict[tuple[int, int, int], int] = {}
    reads, bad, kinds = 0, [], set()
    for op in runs["data"]["ops"]:
        bank, row = op["bank"], op["row"]
        if op["op"] == "w":
            for c, d, m in zip(columns(op["col"], op["wrap"], len(op["data"])), op["data"],
                               op["dqm"]):
                old = image.get((bank, row, c), 0)
                lo = old & 0xFF if m & 1 else d & 0xFF
                hi = old & 0xFF00 if m & 2 else d & 0xFF00
                image[bank, row, c] = hi | lo
        else:
            cols = columns(op["col"], op["wrap"], len(op["got"]))
            want = [image[bank, row, c] for c in cols]
            reads += 1
            kinds.add((op["wrap"], op["cl"]))
            if op["got"] != want:
                bad.append((op, want))
    assert bad == [], f"{len(bad)} of {reads} reads differ; the first: {bad[0]}"
    assert kinds == {(wrap, cl) for wrap in (1, 2, 4, 8, 1 << PARAMS["COL_BITS"])
                     for cl in (2, 3)} and reads > 300


def test_no_violation_in_the_data_run(runs):
    """Everything the data run does keeps the rules: the model counts and prints nothing."""
    r = runs["data"]
    assert r["expected"] == [] and r["log"] == []
    assert r["errors"] == 0 and r["last_error"] == 0
    assert r["edges"] >= LONG_RUN                 # with T_REFI = 200: about 30 periods


@pytest.mark.parametrize("name,code", STEPS, ids=[name for name, _ in STEPS])
def test_violation(runs, name, code):
    steps = {s[0]: s[1:] for s in runs["violations"]["steps"]}
    if name == "x_pins" and runs["sim"] == "verilator":
        # Verilator is 2-state: no x reaches the pins, and the scenario is not run there.
        assert name not in steps
        return
    want_code, added, last = steps[name]
    assert want_code == code
    assert added == (1 if code else 0), f"{name}: errors went up by {added}"
    if code:
        assert last == code


def test_violation_log(runs):
    """The model's log has one line per violation the scenarios cause, at the edge and bank
    each expects, naming its rule; nothing else."""
    r = runs["violations"]
    def key(v: tuple) -> tuple:
        return v[0], v[1], -1 if v[2] is None else v[2]

    got = sorted(((code, cycle, bank) for code, cycle, bank, _ in r["log"]), key=key)
    want = sorted(((code, edge, bank) for code, edge, bank in r["expected"]), key=key)
    assert got == want
    for code, _, _, rule in r["log"]:
        assert RULES[code] in rule, (code, rule)
    assert r["errors"] == len(want)
    assert {code for code, _, _ in want} == set(range(1, 24 if runs["sim"] == "icarus" else 23))


def test_lint_clean():
    from dynfix.hw.lint import find_verilator

    require_simulator("verilator")
    exe, env = find_verilator(required=True)
    r = subprocess.run([exe, "--lint-only", "-Wall", str(MODEL)], capture_output=True,
                       text=True, env=env)
    assert r.returncode == 0 and "%Warning" not in r.stderr + r.stdout, r.stderr


FATAL_TB = """
module fatal_tb;
    reg clk = 1'b0;
    wire [15:0] dq_i;
    wire [31:0] errors;
    wire [7:0] last_error;
    always #10 clk = ~clk;
    // Edge 3 sees a REFRESH (cs_n, ras_n, cas_n low): sooner than T_INIT.
    reg cs_n = 1'b1, rc_n = 1'b1;
    initial begin
        repeat (3) @(negedge clk);
        {cs_n, rc_n} = 2'b00;
        @(negedge clk);
        {cs_n, rc_n} = 2'b11;
        repeat (4) @(negedge clk);
        $display("still running");
        $finish;
    end
    dynfix_sdram_model #(.ROW_BITS(4), .COL_BITS(5), .T_INIT(20), .FATAL(1)) model (
        .clk(clk), .cke(1'b1), .cs_n(cs_n), .ras_n(rc_n), .cas_n(rc_n), .we_n(1'b1),
        .ba(2'd0), .a(13'd0), .dqm(2'd0), .dq_o(16'd0), .dq_oe(1'b0), .dq_i(dq_i),
        .errors(errors), .last_error(last_error));
endmodule
"""


def test_fatal_stops_at_the_first_violation(tmp_path):
    require_simulator("icarus")
    tb = tmp_path / "fatal_tb.v"
    tb.write_text(FATAL_TB)
    vvp = tmp_path / "fatal.vvp"
    subprocess.run(["iverilog", "-g2012", "-o", str(vvp), "-s", "fatal_tb", str(tb),
                    str(MODEL)], check=True, capture_output=True, text=True)
    r = subprocess.run(["vvp", "-n", str(vvp)], capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    assert "SDRAM violation: command sooner than T_INIT after power-up (code 1) at cycle 3" \
        in out, out
    assert "still running" not in out and "FATAL = 1" in out


# ---- speed -------------------------------------------------------------------------------
#: A self-checking stimulus at the default geometry and timing (BL 8, CL 2): it fills one
#: row in each bank, then reads them back in back-to-back bursts (256 beats a visit, a
#: PRECHARGE and a REFRESH between visits) and counts beats that differ.
SPEED_TB = """
`default_nettype none
module sdram_speed_tb #(parameter integer CYCLES = 200000) (input wire clk);
    localparam integer T_INIT = 5000, T_RCD = 2, T_RP = 2, T_WR = 2, T_MRD = 2, T_RFC = 4;
    localparam integer CL = 2;
    localparam integer VSTART = T_INIT + T_RP + 2 * T_RFC + T_MRD;
    localparam [31:0] W_LEN = T_RCD + 8 * 64 + T_WR + T_RP + T_RFC;
    localparam [31:0] R_LEN = T_RCD + 8 * 32 + T_WR + T_RP + T_RFC;

    reg cs_n, ras_n, cas_n, we_n, dq_oe;
    reg [1:0] ba, dqm;
    reg [12:0] a;
    reg [15:0] dq_o;
    wire [15:0] dq_i;
    wire [31:0] errors;
    wire [7:0] last_error;

    dynfix_sdram_model model (
        .clk(clk), .cke(1'b1), .cs_n(cs_n), .ras_n(ras_n), .cas_n(cas_n), .we_n(we_n),
        .ba(ba), .a(a), .dqm(dqm), .dq_o(dq_o), .dq_oe(dq_oe), .dq_i(dq_i), .errors(errors),
        .last_error(last_error));

    reg [31:0] cyc;                       // this rising edge; the pins set now are for the next
    reg [31:0] vstart, visit, reads, mismatches;
    reg [CL:0] e_valid;                   // expected beats, checked CL + 1 edges later
    reg [15:0] e_data [0:CL];
    integer k;

    wire [31:0] m = cyc + 32'd1;          // the model's edge the pins are for
    wire [31:0] t = m - vstart;
    wire writing = visit < 32'd4;
    wire [31:0] len = writing ? W_LEN : R_LEN;
    wire [31:0] n_beats = writing ? 32'd512 : 32'd256;
    wire [1:0] bank = visit[1:0];
    wire [12:0] row = 13'd165 + {11'd0, bank} * 13'd37;
    wire [31:0] j = t - T_RCD;
    wire [8:0] col = (writing ? 9'd0 : {visit[0], 8'd0}) + j[8:0];
    wire [15:0] pattern = {col, bank, row[4:0]} ^ 16'ha5c3;

    initial begin
        {cs_n, ras_n, cas_n, we_n, dq_oe, ba, dqm, a, dq_o} = {5'b11110, 4'd0, 13'd0, 16'd0};
        {cyc, visit, reads, mismatches} = 128'd0;
        vstart = VSTART;
        e_valid = 0;
        for (k = 0; k <= CL; k = k + 1)
            e_data[k] = 16'd0;
    end

    always @(posedge clk) begin
        cyc <= m;
        {cs_n, ras_n, cas_n, we_n} <= 4'b0111;
        dq_oe <= 1'b0;
        dqm <= 2'b00;
        e_valid <= {e_valid[CL-1:0], 1'b0};
        for (k = 1; k <= CL; k = k + 1)
            e_data[k] <= e_data[k - 1];
        if (m == T_INIT) begin
            {cs_n, ras_n, cas_n, we_n} <= 4'b0010;            // PRECHARGE ALL
            a <= 13'h400;
        end else if (m == T_INIT + T_RP || m == T_INIT + T_RP + T_RFC) begin
            {cs_n, ras_n, cas_n, we_n} <= 4'b0001;            // REFRESH
        end else if (m == T_INIT + T_RP + 2 * T_RFC) begin
            {cs_n, ras_n, cas_n, we_n} <= 4'b0000;            // LOAD MODE: BL 8, CL 2
            ba <= 2'd0;
            a <= 13'h023;
        end else if (m >= VSTART) begin
            if (t == 32'd0) begin
                {cs_n, ras_n, cas_n, we_n} <= 4'b0011;        // ACTIVE
                ba <= bank;
                a <= row;
            end else if (t >= T_RCD && j < n_beats) begin
                if (j[2:0] == 3'd0) begin
                    {cs_n, ras_n, cas_n, we_n} <= writing ? 4'b0100 : 4'b0101;
                    ba <= bank;
                    a <= {4'd0, col};
                end
                if (writing) begin
                    dq_o <= pattern;
                    dq_oe <= 1'b1;
                end else begin
                    e_valid[0] <= 1'b1;
                    e_data[0] <= pattern;
                end
            end else if (j == n_beats + T_WR) begin
                {cs_n, ras_n, cas_n, we_n} <= 4'b0010;        // PRECHARGE the bank
                ba <= bank;
                a <= 13'd0;
            end else if (j == n_beats + T_WR + T_RP) begin
                {cs_n, ras_n, cas_n, we_n} <= 4'b0001;        // REFRESH
            end
            if (t == len - 32'd1) begin
                vstart <= m + 32'd1;
                visit <= visit + 32'd1;
            end
        end
        if (e_valid[CL]) begin
            reads <= reads + 32'd1;
            if (dq_i != e_data[CL])
                mismatches <= mismatches + 32'd1;
        end
        if (cyc == CYCLES) begin
            $display("speed: cycles %0d visits %0d reads %0d mismatches %0d errors %0d last %0d",
                     cyc, visit, reads, mismatches, errors, last_error);
            $finish;
        end
    end
endmodule
`default_nettype wire
"""
#: The clock: edges until $finish, timed around the loop alone.
SPEED_MAIN = """
#include <chrono>
#include <cstdio>
#include "Vsdram_speed_tb.h"
#include "verilated.h"
int main(int argc, char** argv) {
    VerilatedContext ctx;
    ctx.commandArgs(argc, argv);
    Vsdram_speed_tb top{&ctx};
    unsigned long long cycles = 0;
    top.clk = 0;
    top.eval();
    auto t0 = std::chrono::steady_clock::now();
    while (!ctx.gotFinish()) {
        top.clk = 1;
        top.eval();
        top.clk = 0;
        top.eval();
        ++cycles;
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    top.final();
    std::printf("clock: cycles %llu seconds %.6f\\n", cycles, s);
    return 0;
}
"""
SPEED_CYCLES = 200_000


@pytest.mark.slow
def test_speed_under_verilator(tmp_path, capsys, record_property):
    """200,000 cycles of back-to-back read bursts and refreshes, every beat checked; prints
    the simulated cycles per second (the floor is generous: 20,000)."""
    from dynfix.hw.lint import find_verilator

    require_simulator("verilator")
    exe, env = find_verilator(required=True)
    (tmp_path / "sdram_speed_tb.v").write_text(SPEED_TB)
    (tmp_path / "main.cpp").write_text(SPEED_MAIN)
    env = dict(env, MAKEFLAGS=f"{env.get('MAKEFLAGS', '')} {FAST_BUILD}")
    build = subprocess.run([exe, "--cc", "--exe", "--build", "-Wall", "-O3",
                            "--x-assign", "fast", "--x-initial", "fast", "--Mdir", "obj",
                            "--top-module", "sdram_speed_tb", "sdram_speed_tb.v", str(MODEL),
                            "main.cpp"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    t0 = time.perf_counter()
    run = subprocess.run([str(tmp_path / "obj" / "Vsdram_speed_tb")], capture_output=True,
                         text=True, timeout=120)
    wall = time.perf_counter() - t0
    out = run.stdout
    m = re.search(r"speed: cycles (\d+) visits (\d+) reads (\d+) mismatches (\d+) errors "
                  r"(\d+)", out)
    clock = re.search(r"clock: cycles (\d+) seconds ([\d.]+)", out)
    assert run.returncode == 0 and m and clock, out + run.stderr
    cycles, visits, reads, mismatches, errors = map(int, m.groups())
    assert cycles == SPEED_CYCLES and mismatches == 0 and errors == 0
    assert reads > 150_000 and visits > 500
    rate = int(clock[1]) / float(clock[2])
    record_property("cycles_per_second", round(rate))
    with capsys.disabled():
        print(f"\nSDRAM model under Verilator: {int(clock[1]):,} cycles in {float(clock[2]):.3f}"
              f" s: {rate:,.0f} cycles/s ({wall:.2f} s with start-up)")
    assert rate > 20_000
