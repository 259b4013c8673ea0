// dynfix's simulation model of Lattice ECP5's MULT18X18D, written for the modes dynfix
// instantiates (hw/ecp5_mul.py); yosys ships the cell as a black box only (ecp5/cells_bb.v).
//
// Modelled: the 18 x 18 product of A and B, each signed when SIGNEDA / SIGNEDB is high; the
// input registers (REG_INPUTA_CLK, REG_INPUTB_CLK), the pipeline register (REG_PIPELINE_CLK)
// and the output register (REG_OUTPUT_CLK), each either "NONE" (bypassed) or "CLK0" (on CLK0,
// enabled by CE0, reset to 0 by RST0 synchronously). Any other setting (another clock,
// enable or reset, a registered C, RESETMODE "ASYNC", MULT_BYPASS, cascade matching) is not
// modelled and stops elaboration (an unknown module is instantiated), so a design cannot
// silently use a mode this model gets wrong; the shift inputs (SOURCEA / SOURCEB, SRIA /
// SRIB) are ignored (dynfix ties them low). ROA / ROB are A / B after the input registers,
// SROA / SROB the same, ROC is C, SIGNEDP is SIGNEDA | SIGNEDB. Registers start at 0 (as
// after the GSR's reset at configuration).
module MULT18X18D(A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2,
                  A1, A0, B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4,
                  B3, B2, B1, B0, C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6,
                  C5, C4, C3, C2, C1, C0, SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK3, CLK2,
                  CLK1, CLK0, CE3, CE2, CE1, CE0, RST3, RST2, RST1, RST0, SRIA17, SRIA16,
                  SRIA15, SRIA14, SRIA13, SRIA12, SRIA11, SRIA10, SRIA9, SRIA8, SRIA7,
                  SRIA6, SRIA5, SRIA4, SRIA3, SRIA2, SRIA1, SRIA0, SRIB17, SRIB16, SRIB15,
                  SRIB14, SRIB13, SRIB12, SRIB11, SRIB10, SRIB9, SRIB8, SRIB7, SRIB6,
                  SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0, SROA17, SROA16, SROA15, SROA14,
                  SROA13, SROA12, SROA11, SROA10, SROA9, SROA8, SROA7, SROA6, SROA5, SROA4,
                  SROA3, SROA2, SROA1, SROA0, SROB17, SROB16, SROB15, SROB14, SROB13,
                  SROB12, SROB11, SROB10, SROB9, SROB8, SROB7, SROB6, SROB5, SROB4, SROB3,
                  SROB2, SROB1, SROB0, ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11,
                  ROA10, ROA9, ROA8, ROA7, ROA6, ROA5, ROA4, ROA3, ROA2, ROA1, ROA0, ROB17,
                  ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8, ROB7, ROB6,
                  ROB5, ROB4, ROB3, ROB2, ROB1, ROB0, ROC17, ROC16, ROC15, ROC14, ROC13,
                  ROC12, ROC11, ROC10, ROC9, ROC8, ROC7, ROC6, ROC5, ROC4, ROC3, ROC2,
                  ROC1, ROC0, P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24,
                  P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9,
                  P8, P7, P6, P5, P4, P3, P2, P1, P0, SIGNEDP);
    input A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0,
          B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0,
          C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0,
          SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK3, CLK2, CLK1, CLK0, CE3, CE2, CE1, CE0,
          RST3, RST2, RST1, RST0, SRIA17, SRIA16, SRIA15, SRIA14, SRIA13, SRIA12, SRIA11,
          SRIA10, SRIA9, SRIA8, SRIA7, SRIA6, SRIA5, SRIA4, SRIA3, SRIA2, SRIA1, SRIA0,
          SRIB17, SRIB16, SRIB15, SRIB14, SRIB13, SRIB12, SRIB11, SRIB10, SRIB9, SRIB8,
          SRIB7, SRIB6, SRIB5, SRIB4, SRIB3, SRIB2, SRIB1, SRIB0;
    output SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8,
           SROA7, SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0, SROB17, SROB16, SROB15,
           SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8, SROB7, SROB6, SROB5,
           SROB4, SROB3, SROB2, SROB1, SROB0, ROA17, ROA16, ROA15, ROA14, ROA13, ROA12,
           ROA11, ROA10, ROA9, ROA8, ROA7, ROA6, ROA5, ROA4, ROA3, ROA2, ROA1, ROA0, ROB17,
           ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8, ROB7, ROB6, ROB5,
           ROB4, ROB3, ROB2, ROB1, ROB0, ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11,
           ROC10, ROC9, ROC8, ROC7, ROC6, ROC5, ROC4, ROC3, ROC2, ROC1, ROC0, P35, P34,
           P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18,
           P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0,
           SIGNEDP;
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_INPUTC_CE = "CE0";
    parameter REG_INPUTC_RST = "RST0";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_PIPELINE_CE = "CE0";
    parameter REG_PIPELINE_RST = "RST0";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";

    // Registers on CLK0 / CE0 / RST0 or none; anything else is not modelled. (The arguments'
    // names are no signal's: Verilator's lint warns when it inlines the cell into a module
    // with a ``clk`` or ``rst`` and a function argument hides it.)
    function automatic modelled(input [8*8-1:0] clk_sel, input [8*8-1:0] ce_sel,
                                input [8*8-1:0] rst_sel);
        modelled = (clk_sel == "NONE" || clk_sel == "CLK0") && ce_sel == "CE0"
                   && rst_sel == "RST0";
    endfunction
    generate
        if (!modelled(REG_INPUTA_CLK, REG_INPUTA_CE, REG_INPUTA_RST)
                || !modelled(REG_INPUTB_CLK, REG_INPUTB_CE, REG_INPUTB_RST)
                || REG_INPUTC_CLK != "NONE"
                || !modelled(REG_PIPELINE_CLK, REG_PIPELINE_CE, REG_PIPELINE_RST)
                || !modelled(REG_OUTPUT_CLK, REG_OUTPUT_CE, REG_OUTPUT_RST)
                || MULT_BYPASS != "DISABLED" || RESETMODE != "SYNC"
                || CAS_MATCH_REG != "FALSE") begin : gen_not_modelled
            MULT18X18D_MODE_NOT_MODELLED_BY_DYNFIX not_modelled ();
        end
    endgenerate

    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    wire [17:0] c = {C17, C16, C15, C14, C13, C12, C11, C10, C9, C8, C7, C6, C5, C4, C3, C2, C1, C0};
    reg  [17:0] a_reg = 18'd0, b_reg = 18'd0;
    always @(posedge CLK0)
        if (RST0) begin
            a_reg <= 18'd0;
            b_reg <= 18'd0;
        end else if (CE0) begin
            a_reg <= a;
            b_reg <= b;
        end
    wire [17:0] a_mul = REG_INPUTA_CLK == "CLK0" ? a_reg : a;
    wire [17:0] b_mul = REG_INPUTB_CLK == "CLK0" ? b_reg : b;
    // Each operand extended to 36 bits by its sign flag; the low 36 bits of the product are
    // exact for every signed / unsigned combination.
    wire [35:0] a_ext = {{18{SIGNEDA & a_mul[17]}}, a_mul};
    wire [35:0] b_ext = {{18{SIGNEDB & b_mul[17]}}, b_mul};
    wire [35:0] product = a_ext * b_ext;
    reg  [35:0] pipe_reg = 36'd0, out_reg = 36'd0;
    wire [35:0] piped = REG_PIPELINE_CLK == "CLK0" ? pipe_reg : product;
    always @(posedge CLK0)
        if (RST0) begin
            pipe_reg <= 36'd0;
            out_reg <= 36'd0;
        end else if (CE0) begin
            pipe_reg <= product;
            out_reg <= piped;
        end
    wire [35:0] p = REG_OUTPUT_CLK == "CLK0" ? out_reg : piped;
    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = p;
    assign {ROA17, ROA16, ROA15, ROA14, ROA13, ROA12, ROA11, ROA10, ROA9, ROA8, ROA7, ROA6, ROA5, ROA4, ROA3, ROA2, ROA1, ROA0} = a_mul;
    assign {ROB17, ROB16, ROB15, ROB14, ROB13, ROB12, ROB11, ROB10, ROB9, ROB8, ROB7, ROB6, ROB5, ROB4, ROB3, ROB2, ROB1, ROB0} = b_mul;
    assign {SROA17, SROA16, SROA15, SROA14, SROA13, SROA12, SROA11, SROA10, SROA9, SROA8, SROA7, SROA6, SROA5, SROA4, SROA3, SROA2, SROA1, SROA0} = a_mul;
    assign {SROB17, SROB16, SROB15, SROB14, SROB13, SROB12, SROB11, SROB10, SROB9, SROB8, SROB7, SROB6, SROB5, SROB4, SROB3, SROB2, SROB1, SROB0} = b_mul;
    assign {ROC17, ROC16, ROC15, ROC14, ROC13, ROC12, ROC11, ROC10, ROC9, ROC8, ROC7, ROC6, ROC5, ROC4, ROC3, ROC2, ROC1, ROC0} = c;
    assign SIGNEDP = SIGNEDA | SIGNEDB;
endmodule
