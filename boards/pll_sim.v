// Behavioural simulation models of the PLL cells the board tops instantiate
// (boards/board_top.py), for Icarus Verilog: yosys's iCE40 library declares SB_PLL40_PAD
// without behaviour and has no ECP5 EHXPLLL at all.
//
// Each model measures the period of its input clock and, from the second input edge on,
// drives its output at the frequency its divider parameters give (the formulas of
// boards/pll.py); LOCK rises after LOCK_CYCLES input periods, so a design held in reset
// until lock sees a running clock first, as on the chip. Jitter is not modelled, nor phase,
// except the lag of the ECP5's CLKOS behind CLKOP that their phase parameters set.

`timescale 1ps / 1ps

module dynfix_pll_model #(
    parameter integer MUL = 1,          // f_out = f_in * MUL / DIV
    parameter integer DIV = 1,
    parameter integer LOCK_CYCLES = 8
) (
    input      clk_in,
    input      reset,
    output reg clk_out = 1'b0,
    output reg lock = 1'b0
);
    realtime t_prev = 0;
    realtime half = 0;
    integer n = 0;

    always @(posedge clk_in or posedge reset) begin
        if (reset) begin
            n = 0;
            lock <= 1'b0;
        end else begin
            if (n > 0)
                half = ($realtime - t_prev) * DIV / (2.0 * MUL);
            t_prev = $realtime;
            if (n < LOCK_CYCLES)
                n = n + 1;
            else
                lock <= 1'b1;
        end
    end

    always begin
        if (half == 0)
            @(posedge clk_in);
        else
            #(half) clk_out = ~clk_out;
    end
endmodule

// iCE40 SB_PLL40_PAD in SIMPLE feedback: f_out = f_in * (DIVF + 1) / ((DIVR + 1) * 2^DIVQ).
module SB_PLL40_PAD (
    input        PACKAGEPIN,
    output       PLLOUTCORE,
    output       PLLOUTGLOBAL,
    input        EXTFEEDBACK,
    input  [7:0] DYNAMICDELAY,
    output       LOCK,
    input        BYPASS,
    input        RESETB,
    input        LATCHINPUTVALUE,
    output       SDO,
    input        SDI,
    input        SCLK
);
    parameter FEEDBACK_PATH = "SIMPLE";
    parameter DELAY_ADJUSTMENT_MODE_FEEDBACK = "FIXED";
    parameter DELAY_ADJUSTMENT_MODE_RELATIVE = "FIXED";
    parameter SHIFTREG_DIV_MODE = 1'b0;
    parameter FDA_FEEDBACK = 4'b0000;
    parameter FDA_RELATIVE = 4'b0000;
    parameter PLLOUT_SELECT = "GENCLK";
    parameter DIVR = 4'b0000;
    parameter DIVF = 7'b0000000;
    parameter DIVQ = 3'b000;
    parameter FILTER_RANGE = 3'b000;
    parameter ENABLE_ICEGATE = 1'b0;
    parameter TEST_MODE = 1'b0;
    parameter EXTERNAL_DIVIDE_FACTOR = 1;

    wire out;
    dynfix_pll_model #(.MUL(DIVF + 1), .DIV((DIVR + 1) << DIVQ)) model (
        .clk_in(PACKAGEPIN), .reset(!RESETB), .clk_out(out), .lock(LOCK));
    assign PLLOUTGLOBAL = BYPASS ? PACKAGEPIN : out;
    assign PLLOUTCORE = PLLOUTGLOBAL;
    assign SDO = 1'b0;
endmodule

// ECP5 EHXPLLL with CLKOP as feedback: f_out = f_in * CLKFB_DIV / CLKI_DIV, the VCO at
// f_out * CLKOP_DIV. CLKOS, when enabled, is the VCO divided by CLKOS_DIV, lagging CLKOP by
// (CLKOS_CPHASE - CLKOP_CPHASE) + (CLKOS_FPHASE - CLKOP_FPHASE) / 8 VCO periods (taken modulo
// CLKOS's period): each output's phase counts from the same VCO edge on the chip.
module EHXPLLL (
    input  CLKI,
    input  CLKFB,
    input  PHASESEL1,
    input  PHASESEL0,
    input  PHASEDIR,
    input  PHASESTEP,
    input  PHASELOADREG,
    input  STDBY,
    input  PLLWAKESYNC,
    input  RST,
    input  ENCLKOP,
    input  ENCLKOS,
    input  ENCLKOS2,
    input  ENCLKOS3,
    output CLKOP,
    output CLKOS,
    output CLKOS2,
    output CLKOS3,
    output LOCK,
    output INTLOCK,
    output REFCLK,
    output CLKINTFB
);
    parameter CLKI_DIV = 1;
    parameter CLKFB_DIV = 1;
    parameter CLKOP_DIV = 8;
    parameter CLKOS_DIV = 8;
    parameter CLKOS2_DIV = 8;
    parameter CLKOS3_DIV = 8;
    parameter CLKOP_ENABLE = "ENABLED";
    parameter CLKOS_ENABLE = "DISABLED";
    parameter CLKOS2_ENABLE = "DISABLED";
    parameter CLKOS3_ENABLE = "DISABLED";
    parameter CLKOP_CPHASE = 0;
    parameter CLKOS_CPHASE = 0;
    parameter CLKOS2_CPHASE = 0;
    parameter CLKOS3_CPHASE = 0;
    parameter CLKOP_FPHASE = 0;
    parameter CLKOS_FPHASE = 0;
    parameter CLKOS2_FPHASE = 0;
    parameter CLKOS3_FPHASE = 0;
    parameter FEEDBK_PATH = "CLKOP";
    parameter CLKOP_TRIM_POL = "RISING";
    parameter CLKOP_TRIM_DELAY = 0;
    parameter CLKOS_TRIM_POL = "RISING";
    parameter CLKOS_TRIM_DELAY = 0;
    parameter OUTDIVIDER_MUXA = "DIVA";
    parameter OUTDIVIDER_MUXB = "DIVB";
    parameter OUTDIVIDER_MUXC = "DIVC";
    parameter OUTDIVIDER_MUXD = "DIVD";
    parameter PLL_LOCK_MODE = 0;
    parameter PLL_LOCK_DELAY = 200;
    parameter STDBY_ENABLE = "DISABLED";
    parameter REFIN_RESET = "DISABLED";
    parameter SYNC_ENABLE = "DISABLED";
    parameter INT_LOCK_STICKY = "ENABLED";
    parameter DPHASE_SOURCE = "DISABLED";
    parameter PLLRST_ENA = "DISABLED";
    parameter INTFB_WAKE = "DISABLED";

    dynfix_pll_model #(.MUL(CLKFB_DIV), .DIV(CLKI_DIV)) model (
        .clk_in(CLKI), .reset(RST), .clk_out(CLKOP), .lock(LOCK));

    reg clkos = 1'b0;
    real lag_steps;             // CLKOS's lag behind CLKOP, VCO periods, 0 <= lag < CLKOS_DIV
    // The phases in signed integers: a parameter given as 32'd2 is unsigned, and the
    // difference of two unsigned ones wraps instead of going negative.
    integer os_c = CLKOS_CPHASE, op_c = CLKOP_CPHASE, os_f = CLKOS_FPHASE, op_f = CLKOP_FPHASE;
    integer period8 = 8 * CLKOS_DIV, lag8;
    initial begin
        lag8 = ((8 * (os_c - op_c) + (os_f - op_f)) % period8 + period8) % period8;
        lag_steps = lag8 / 8.0;
    end

    // The VCO's period follows CLKOP's half period, which the model measures.
    generate
        if (CLKOS_ENABLE == "ENABLED" && CLKOS_DIV == CLKOP_DIV) begin : clkos_same
            // CLKOP delayed (a non-blocking assignment's delay keeps every edge).
            always @(CLKOP)
                clkos <= #(lag_steps * 2.0 * model.half / CLKOP_DIV) CLKOP;
        end else if (CLKOS_ENABLE == "ENABLED") begin : clkos_other
            // Its own divider, its first rising edge the lag after CLKOP's first.
            initial begin
                @(posedge CLKOP);
                #(lag_steps * 2.0 * model.half / CLKOP_DIV) clkos = 1'b1;
                forever
                    #(model.half * CLKOS_DIV / CLKOP_DIV) clkos = ~clkos;
            end
        end
    endgenerate
    assign CLKOS = clkos;
    assign CLKOS2 = 1'b0;
    assign CLKOS3 = 1'b0;
    assign INTLOCK = LOCK;
    assign REFCLK = CLKI;
    assign CLKINTFB = 1'b0;
endmodule
