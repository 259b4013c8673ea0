// dynfix_sdram_model: a simulation model of an SDR SDRAM chip, 16 bits wide, four banks
// (the ULX3S's IS42S16160-class part: 8192 rows of 512 columns, 32 MB, at the defaults),
// that stores data as the chip does and checks the command protocol and its timing rules.
//
// Why: the SDRAM controller (hw/sdram_axi.py) and the designs built on it are simulated in
// cocotb under Icarus and Verilator; the chip under them must cost no Python per cycle and
// must say when the controller breaks a rule the real part would punish silently (lost data
// on the board). The model is plain behavioural Verilog: one clocked process, no delays,
// no tristates, 2-state friendly; it compiles under Icarus 11 (-g2012) and is clean under
// `verilator --lint-only -Wall`.
//
// Pins. The controller's side of the data bus is split: dq_o/dq_oe are what it drives, dq_i
// what it reads. Commands are sampled at the rising edge of clk when cke = 1 (cs_n = 1 is
// COMMAND INHIBIT); a cycle with cke = 0 carries no command (power-down, self refresh and
// clock suspend are not modelled: a burst running while cke is low is reported as
// "unsupported" and goes on as if the clock ran).
//
// Behaviour.
//   LOAD MODE REGISTER: a[2:0] burst length 0,1,2,3 -> 1,2,4,8 beats, 7 -> full page;
//     a[3] burst type (0 sequential; 1 interleaved is not modelled: "unsupported");
//     a[6:4] CAS latency 2 or 3; a[8:7] operating mode 00; a[9] write burst mode
//     (0 the programmed length, 1 single location). A LOAD MODE with a reserved or
//     unsupported value is reported and leaves the mode register as it was.
//   READ (column a[COL_BITS-1:0], auto precharge a[10]) at rising edge n: beat k is valid at
//     edge n + CL + k (dq_i changes at edge n + CL + k - 1). Sequential bursts wrap within
//     the aligned block of their length; a full-page burst wraps within the row and goes on
//     until a READ, WRITE, BURST TERMINATE or PRECHARGE of its bank ends it. BURST TERMINATE
//     or PRECHARGE at edge m ends a read burst after the beat at edge m + CL - 1; a later
//     READ takes over from its own first beat; a WRITE ends it at once. The read DQM mask
//     is not modelled (read data is always driven). Outside read data dq_i is 0.
//   WRITE at edge n: beat k is dq_o at edge n + k, written byte by byte where dqm is 0
//     (dqm[0] the low byte, dqm[1] the high byte). READ, WRITE, BURST TERMINATE or a
//     PRECHARGE of its bank ends a write burst; the beat at that edge is not written.
//   Auto precharge closes the bank at the command (no further READ/WRITE to it), and
//     precharges it at the last read beat (the datasheet's "tRP after the last data"), or
//     T_WR after the last write beat; at the last beat taken when another burst interrupts.
//     Auto precharge with a full-page burst is reported ("unsupported") and ignored.
//   PRECHARGE (a[10] = 1: all banks) acts on open banks; on idle ones it does nothing.
//   Storage: mem[{bank, row, column}], not initialised (x under Icarus until written).
//   A command refused by rule 1 or 2 is ignored; a READ or WRITE to a closed bank is
//     ignored; every other command that breaks a rule is still carried out.
//
// Timing parameters are in clock cycles; the defaults suit a -7 part at 50 MHz with a
// margin. Time stamps are cycle numbers offset by START = 2^40, so 0 ("never") lies further
// in the past than any rule looks. The refresh account: from the end of initialisation one
// refresh is owed every T_REFI cycles and each AUTO REFRESH pays one; more than
// MAX_POSTPONED owed is starvation. Refreshes done ahead earn credit for at most
// MAX_POSTPONED (JEDEC lets a part pull in 8), so early refreshes cannot hide a later gap.
//
// Violations. Each broken rule adds one to `errors` (one per rule per cycle) and sets
// `last_error` to its code as the edge that broke it ends, and at the next falling edge
// prints a line "SDRAM violation: <rule> (code <n>) at cycle <c>[, bank <b>]" (cycle: the
// rising edge, counted from 0 at the first); with FATAL = 1 the first one stops the
// simulation there ($fatal). Codes:
//    1  command other than NOP/INHIBIT sooner than T_INIT cycles after power-up
//    2  command out of the init order: REFRESH or LOAD MODE before the PRECHARGE ALL,
//       ACTIVE/READ/WRITE before PRECHARGE ALL + 2 REFRESH + LOAD MODE (either order)
//    3  ACTIVE to an open bank
//    4  ACTIVE sooner than T_RP after the bank's precharge (auto precharge included)
//    5  ACTIVE sooner than T_RC after the bank's previous ACTIVE
//    6  ACTIVE sooner than T_RRD after another bank's ACTIVE
//    7  ACTIVE or LOAD MODE sooner than T_RFC after a REFRESH
//    8  command sooner than T_MRD after a LOAD MODE
//    9  READ or WRITE to a closed bank (or one closing by auto precharge)
//   10  READ or WRITE sooner than T_RCD after the bank's ACTIVE
//   11  PRECHARGE sooner than T_RAS after the bank's ACTIVE
//   12  PRECHARGE sooner than T_WR after the bank's last write beat
//   13  REFRESH with a bank open
//   14  REFRESH sooner than T_RP after a precharge (auto precharge included)
//   15  REFRESH sooner than T_RFC after the previous REFRESH
//   16  LOAD MODE with a bank open, or sooner than T_RP after a precharge
//   17  refresh starvation: more than MAX_POSTPONED refreshes owed
//   18  contention: dq_oe high while the model drives read data
//   19  READ while a write burst still has beats due
//   20  WRITE while read data of an earlier READ is still to come (after its own edge)
//   21  LOAD MODE with a reserved value (CAS latency not 2 or 3, burst length code 4..6,
//       operating mode a[8:7] not 00)
//   22  unsupported: interleaved burst type, auto precharge with a full-page burst, cke low
//       during a burst
//   23  x or z on cke, cs_n, or (cke = 1, cs_n = 0) ras_n/cas_n/we_n, or on ba/a with a
//       command that uses them (Icarus only: Verilator is 2-state)

`default_nettype none

// The file is named for its place in the project (sim/sdram_model.v), the module with the
// dynfix_ prefix of the project's other modules (dynfix_engine, dynfix_top).
/* verilator lint_off DECLFILENAME */
module dynfix_sdram_model #(
    parameter integer ROW_BITS = 13,
    parameter integer COL_BITS = 9,       // at least 3 (bursts of 8)
    parameter integer ADDR_BITS = 13,     // at least max(ROW_BITS, COL_BITS, 11)
    parameter integer T_RCD = 2,
    parameter integer T_RP = 2,
    parameter integer T_RAS = 3,
    parameter integer T_RC = 4,
    parameter integer T_RRD = 2,
    parameter integer T_WR = 2,
    parameter integer T_MRD = 2,
    parameter integer T_RFC = 4,
    parameter integer T_REFI = 390,       // 7.8 us at 50 MHz
    parameter integer T_INIT = 5000,      // 100 us at 50 MHz
    parameter integer MAX_POSTPONED = 8,
    parameter integer FATAL = 0
) (
    input  wire                 clk,
    input  wire                 cke,
    input  wire                 cs_n,
    input  wire                 ras_n,
    input  wire                 cas_n,
    input  wire                 we_n,
    input  wire [1:0]           ba,
    input  wire [ADDR_BITS-1:0] a,
    input  wire [1:0]           dqm,
    input  wire [15:0]          dq_o,
    input  wire                 dq_oe,
    output reg  [15:0]          dq_i,
    output wire [31:0]          errors,
    output reg  [7:0]           last_error
);
    localparam integer AW = 2 + ROW_BITS + COL_BITS;
    localparam [63:0] START = 64'd1 << 40;
    localparam [63:0] RCD = wide(T_RCD), RP = wide(T_RP), RAS = wide(T_RAS), RC = wide(T_RC),
                      RRD = wide(T_RRD), WR = wide(T_WR), MRD = wide(T_MRD),
                      RFC = wide(T_RFC), INIT = wide(T_INIT);
    localparam [31:0] REFI = T_REFI, MAXP = MAX_POSTPONED;

    function [63:0] wide(input [31:0] x);
        wide = {32'd0, x};
    endfunction

    localparam [7:0] E_INIT_WAIT = 8'd1, E_INIT_ORDER = 8'd2, E_ACT_OPEN = 8'd3,
                     E_ACT_RP = 8'd4, E_ACT_RC = 8'd5, E_ACT_RRD = 8'd6, E_RFC = 8'd7,
                     E_MRD = 8'd8, E_RW_CLOSED = 8'd9, E_RW_RCD = 8'd10, E_PRE_RAS = 8'd11,
                     E_PRE_WR = 8'd12, E_REF_OPEN = 8'd13, E_REF_RP = 8'd14,
                     E_REF_RFC = 8'd15, E_MRS_BUSY = 8'd16, E_STARVED = 8'd17,
                     E_CONTENTION = 8'd18, E_READ_IN_WRITE = 8'd19,
                     E_WRITE_IN_READ = 8'd20, E_MODE_BAD = 8'd21, E_UNSUPPORTED = 8'd22,
                     E_X = 8'd23;
    localparam [2:0] NO_BANK = 3'd4;
    localparam [1:0] K_NONE = 2'd0, K_START = 2'd1, K_STOP = 2'd2;

    reg [15:0] mem [0:(1 << AW) - 1];

    // ---- state -------------------------------------------------------------------------
    reg [63:0] cycle;                     // START + rising edges so far
    reg [1:0] init_state;                 // 0: before PRECHARGE ALL, 1: in the sequence, 2: done
    reg [1:0] init_refs;                  // refreshes since the PRECHARGE ALL (up to 2)
    reg mode_set;
    reg [2:0] bl_code;
    reg cl3;                              // CAS latency 3 (else 2)
    reg wb_single;

    reg [3:0] open_b;
    reg [ROW_BITS-1:0] row_b [0:3];
    reg [63:0] t_act [0:3];
    reg [63:0] t_pre [0:3];               // may lie ahead: a pending auto precharge
    reg [63:0] t_wr [0:3];                // last (unmasked) write beat
    reg [63:0] t_ref, t_mrs;
    reg [31:0] refi_cnt;
    reg [31:0] owed;                      // refreshes owed + MAX_POSTPONED (never below 0)

    // Read path: events (READ start, stop) wait CL - 1 edges in s0 (and s1 for CL 3).
    reg [1:0] s0_kind, s1_kind;
    reg [1:0] s0_bank, s1_bank;
    reg [ROW_BITS-1:0] s0_row, s1_row;
    reg [COL_BITS-1:0] s0_col, s1_col;
    reg s0_ap, s1_ap;
    reg [3:0] s0_mask, s1_mask;           // stop: the banks whose read burst it ends
    // The read burst on the bus: rd_on = a beat is driven in the cycle ending at this edge.
    reg rd_on, rd_full, rd_ap;
    reg [1:0] rd_bank;
    reg [ROW_BITS-1:0] rd_row;
    reg [COL_BITS-1:0] rd_col, rd_mask;
    reg [3:0] rd_left;                    // beats after the one on the bus
    // Write burst: wr_on = a beat is due at this edge.
    reg wr_on, wr_full, wr_ap;
    reg [1:0] wr_bank;
    reg [ROW_BITS-1:0] wr_row;
    reg [COL_BITS-1:0] wr_col, wr_mask;
    reg [3:0] wr_left;                    // beats due, this edge's included

    reg [31:0] hit;                       // codes broken at the last edge
    reg [2:0] hit_bank [0:31];            // and the bank each names (NO_BANK: none)
    reg [31:0] err_count;                 // violations before the last edge

    // ---- decode ------------------------------------------------------------------------
    wire sel = cke & ~cs_n;
    wire [2:0] rcw = {ras_n, cas_n, we_n};
    wire c_any = sel & (rcw != 3'b111);
    wire c_act = sel & (rcw == 3'b011);
    wire c_rd = sel & (rcw == 3'b101);
    wire c_wr = sel & (rcw == 3'b100);
    wire c_bst = sel & (rcw == 3'b110);
    wire c_pre = sel & (rcw == 3'b010);
    wire c_ref = sel & (rcw == 3'b001);
    wire c_mrs = sel & (rcw == 3'b000);

    wire early = c_any & (cycle < START + INIT);
    wire out_of_order = (init_state == 2'd0) ? (c_ref | c_mrs | c_act | c_rd | c_wr)
                      : (init_state == 2'd1) ? (c_act | c_rd | c_wr) : 1'b0;
    wire go = ~early & ~out_of_order;     // the command is carried out (subject to rules)

    wire [2:0] m_bl = a[2:0];
    wire [2:0] m_cl = a[6:4];
    wire mode_bad = (m_cl != 3'd2 && m_cl != 3'd3) || (m_bl[2] && m_bl != 3'd7)
                    || a[8:7] != 2'b00;
    wire mrs_ok = c_mrs & go & ~mode_bad & ~a[3];

    wire full = bl_code == 3'd7;
    // Column bits that count within a burst (the others stay): BL - 1, or all for a page.
    wire [COL_BITS-1:0] bl_mask = full ? {COL_BITS{1'b1}} : ~({COL_BITS{1'b1}} << bl_code[1:0]);
    wire [3:0] bl_left = ~(4'hf << bl_code[1:0]);          // beats after the first: BL - 1
    wire w_full = full & ~wb_single;
    wire [COL_BITS-1:0] w_mask = wb_single ? {COL_BITS{1'b0}} : bl_mask;
    wire [3:0] w_left = wb_single ? 4'd0 : bl_left;
    // Cycles from a READ to its last beat, from a WRITE to its last beat.
    wire [63:0] rd_span = {60'd0, bl_left} + (cl3 ? 64'd3 : 64'd2);
    wire [63:0] wr_span = {60'd0, w_left};

    wire rw_go = go & open_b[ba];
    wire rd_go = c_rd & rw_go;
    wire wr_go = c_wr & rw_go;
    wire ap_go = a[10] & ~(c_rd ? full : w_full);      // auto precharge carried out
    wire [3:0] pre_mask = (c_pre & go) ? ((a[10] ? 4'hf : 4'd1 << ba) & open_b) : 4'h0;
    wire [3:0] stop_mask = (c_bst & go) ? 4'hf : pre_mask;

    // Write burst: this edge's beat, unless a command ends the burst here.
    wire wr_cut = rd_go | wr_go | (c_bst & go) | pre_mask[wr_bank];
    wire wr_beat = wr_on & ~wr_cut;
    wire [COL_BITS-1:0] wr_col_next = (wr_col & ~wr_mask) | ((wr_col + 1'b1) & wr_mask);

    // Read path: the event due now, and whether a beat is driven after this edge.
    wire [1:0] ev_kind = cl3 ? s1_kind : s0_kind;
    wire [1:0] ev_bank = cl3 ? s1_bank : s0_bank;
    wire [ROW_BITS-1:0] ev_row = cl3 ? s1_row : s0_row;
    wire [COL_BITS-1:0] ev_col = cl3 ? s1_col : s0_col;
    wire ev_ap = cl3 ? s1_ap : s0_ap;
    wire [3:0] ev_mask = cl3 ? s1_mask : s0_mask;
    wire rd_more = rd_on & (rd_full | rd_left != 4'd0);
    wire ev_stop = ev_kind == K_STOP && ev_mask[rd_bank];
    wire rd_next = ev_kind == K_START || (rd_more && !ev_stop);
    wire rd_pending = rd_next | (cl3 & s0_kind == K_START);
    wire [COL_BITS-1:0] rd_col_next = (rd_col & ~rd_mask) | ((rd_col + 1'b1) & rd_mask);

    wire init_done = (init_state == 2'd1) & go
                     & ((c_ref & init_refs != 2'd0 & mode_set) | (mrs_ok & init_refs == 2'd2));
    wire [31:0] owed_ref = (c_ref & go & owed != 32'd0) ? owed - 32'd1 : owed;

    assign errors = err_count + ones(hit);

    // ---- helpers -----------------------------------------------------------------------
    function [31:0] ones(input [31:0] v);          // bits set in v
        reg [31:0] x;
        begin
            x = v - ((v >> 1) & 32'h55555555);
            x = (x & 32'h33333333) + ((x >> 2) & 32'h33333333);
            x = (x + (x >> 4)) & 32'h0f0f0f0f;
            ones = (x + (x >> 8) + (x >> 16) + (x >> 24)) & 32'h3f;
        end
    endfunction

    // The banks whose time stamp t lies less than span cycles before now (or ahead of it).
    function [3:0] recent(input [63:0] now, input [63:0] t0, input [63:0] t1,
                          input [63:0] t2, input [63:0] t3, input [63:0] span);
        recent = {now < t3 + span, now < t2 + span, now < t1 + span, now < t0 + span};
    endfunction

    function [2:0] first(input [3:0] m);
        first = m[0] ? 3'd0 : m[1] ? 3'd1 : m[2] ? 3'd2 : m[3] ? 3'd3 : NO_BANK;
    endfunction

    function [8*64-1:0] rule(input [7:0] code);
        case (code)
            E_INIT_WAIT: rule = "command sooner than T_INIT after power-up";
            E_INIT_ORDER: rule = "command out of the initialisation order";
            E_ACT_OPEN: rule = "ACTIVE to an open bank";
            E_ACT_RP: rule = "ACTIVE sooner than T_RP after precharge";
            E_ACT_RC: rule = "ACTIVE sooner than T_RC after ACTIVE";
            E_ACT_RRD: rule = "ACTIVE sooner than T_RRD after another bank's ACTIVE";
            E_RFC: rule = "ACTIVE or LOAD MODE sooner than T_RFC after REFRESH";
            E_MRD: rule = "command sooner than T_MRD after LOAD MODE";
            E_RW_CLOSED: rule = "READ or WRITE to a closed bank";
            E_RW_RCD: rule = "READ or WRITE sooner than T_RCD after ACTIVE";
            E_PRE_RAS: rule = "PRECHARGE sooner than T_RAS after ACTIVE";
            E_PRE_WR: rule = "PRECHARGE sooner than T_WR after the last write";
            E_REF_OPEN: rule = "REFRESH with a bank open";
            E_REF_RP: rule = "REFRESH sooner than T_RP after precharge";
            E_REF_RFC: rule = "REFRESH sooner than T_RFC after REFRESH";
            E_MRS_BUSY: rule = "LOAD MODE with a bank open or precharging";
            E_STARVED: rule = "refresh starvation";
            E_CONTENTION: rule = "contention: dq_oe high while read data is on the bus";
            E_READ_IN_WRITE: rule = "READ while write data is still due";
            E_WRITE_IN_READ: rule = "WRITE while read data is still to come";
            E_MODE_BAD: rule = "LOAD MODE with a reserved value";
            E_UNSUPPORTED: rule = "unsupported";
            E_X: rule = "x or z on the command pins";
            default: rule = "unknown";
        endcase
    endfunction

    // A violation at this edge: counted and reported (below) half a cycle later.
    task fail(input [7:0] code, input [2:0] bank);
        begin
            hit[code[4:0]] <= 1'b1;
            hit_bank[code[4:0]] <= bank;
            last_error <= code;
        end
    endtask

    // The messages, at the falling edge after the rising edge that broke the rules: one
    // place for them keeps the per-edge code small (Verilator inlines a task at each call).
    reg [5:0] c;
    always @(negedge clk)
        if (hit != 32'd0)
            for (c = 6'd1; c < 6'd32; c = c + 6'd1)
                if (hit[c[4:0]]) begin
                    if (hit_bank[c[4:0]] == NO_BANK)
                        $display("SDRAM violation: %0s (code %0d) at cycle %0d",
                                 rule({3'd0, c[4:0]}), c, cycle - START - 64'd1);
                    else
                        $display("SDRAM violation: %0s (code %0d) at cycle %0d, bank %0d",
                                 rule({3'd0, c[4:0]}), c, cycle - START - 64'd1,
                                 hit_bank[c[4:0]]);
                    if (FATAL != 0)
                        $fatal(1, "SDRAM violation (FATAL = 1): stopping");
                end

    // ---- power-up state ----------------------------------------------------------------
    integer i;
    initial begin
        cycle = START;
        init_state = 2'd0;
        init_refs = 2'd0;
        mode_set = 1'b0;
        bl_code = 3'd0;
        cl3 = 1'b0;
        wb_single = 1'b0;
        open_b = 4'h0;
        for (i = 0; i < 4; i = i + 1) begin
            row_b[i] = {ROW_BITS{1'b0}};
            t_act[i] = 64'd0;
            t_pre[i] = 64'd0;
            t_wr[i] = 64'd0;
        end
        t_ref = 64'd0;
        t_mrs = 64'd0;
        refi_cnt = 32'd0;
        owed = MAXP;
        {s0_kind, s1_kind, s0_bank, s1_bank, s0_ap, s1_ap, s0_mask, s1_mask} = 18'd0;
        s0_row = {ROW_BITS{1'b0}};
        s1_row = {ROW_BITS{1'b0}};
        s0_col = {COL_BITS{1'b0}};
        s1_col = {COL_BITS{1'b0}};
        {rd_on, rd_full, rd_ap, rd_bank, rd_left} = 9'd0;
        rd_row = {ROW_BITS{1'b0}};
        rd_col = {COL_BITS{1'b0}};
        rd_mask = {COL_BITS{1'b0}};
        {wr_on, wr_full, wr_ap, wr_bank, wr_left} = 9'd0;
        wr_row = {ROW_BITS{1'b0}};
        wr_col = {COL_BITS{1'b0}};
        wr_mask = {COL_BITS{1'b0}};
        dq_i = 16'd0;
        hit = 32'd0;
        err_count = 32'd0;
        last_error = 8'd0;
    end

    // ---- one rising edge ---------------------------------------------------------------
    reg [2:0] b;                          // bank loop index
    always @(posedge clk) begin
        cycle <= cycle + 64'd1;
        hit <= 32'd0;
        if (hit != 32'd0)
            err_count <= errors;

`ifndef VERILATOR
        if ((^{cke, cs_n}) === 1'bx)
            fail(E_X, NO_BANK);
        else if (cke && !cs_n && ((^rcw) === 1'bx
                 || (rcw != 3'b111 && rcw != 3'b001 && rcw != 3'b110 && (^{ba, a}) === 1'bx)))
            fail(E_X, NO_BANK);
`endif
        if (dq_oe & rd_on)
            fail(E_CONTENTION, {1'b0, rd_bank});
        if (!cke && (rd_on || wr_on || s0_kind != K_NONE || s1_kind != K_NONE))
            fail(E_UNSUPPORTED, NO_BANK);

        // Write burst: this edge's beat, or the end of the burst.
        if (wr_beat) begin
            mem[{wr_bank, wr_row, wr_col}] <= {dqm[1] ? mem[{wr_bank, wr_row, wr_col}][15:8]
                                                      : dq_o[15:8],
                                               dqm[0] ? mem[{wr_bank, wr_row, wr_col}][7:0]
                                                      : dq_o[7:0]};
            if (dqm != 2'b11)
                t_wr[wr_bank] <= cycle;
            wr_col <= wr_col_next;
            if (!wr_full) begin
                wr_left <= wr_left - 4'd1;
                if (wr_left == 4'd1)
                    wr_on <= 1'b0;
            end
        end else if (wr_on) begin
            wr_on <= 1'b0;
            if (wr_ap)
                t_pre[wr_bank] <= cycle - 64'd1 + WR;
        end

        // Read path: what the model drives until the next edge.
        s1_kind <= s0_kind;
        s1_bank <= s0_bank;
        s1_row <= s0_row;
        s1_col <= s0_col;
        s1_ap <= s0_ap;
        s1_mask <= s0_mask;
        s0_kind <= rd_go ? K_START : (stop_mask != 4'h0) ? K_STOP : K_NONE;
        s0_bank <= ba;
        s0_row <= row_b[ba];
        s0_col <= a[COL_BITS-1:0];
        s0_ap <= ap_go;
        s0_mask <= stop_mask;
        if (wr_go) begin                  // a WRITE ends the read burst and drops READs due
            s1_kind <= K_NONE;
            rd_on <= 1'b0;
            dq_i <= 16'd0;
            if (rd_ap & rd_more)
                t_pre[rd_bank] <= cycle;
        end else if (ev_kind == K_START) begin
            if (rd_ap & rd_more)
                t_pre[rd_bank] <= cycle;
            rd_on <= 1'b1;
            rd_bank <= ev_bank;
            rd_row <= ev_row;
            rd_col <= ev_col;
            rd_mask <= bl_mask;
            rd_full <= full;
            rd_left <= bl_left;
            rd_ap <= ev_ap;
            dq_i <= mem[{ev_bank, ev_row, ev_col}];
        end else if (rd_next) begin
            rd_col <= rd_col_next;
            if (!rd_full)
                rd_left <= rd_left - 4'd1;
            dq_i <= mem[{rd_bank, rd_row, rd_col_next}];
        end else begin
            if (rd_ap & rd_more)
                t_pre[rd_bank] <= cycle;
            rd_on <= 1'b0;
            dq_i <= 16'd0;
        end

        // The command.
        if (early)
            fail(E_INIT_WAIT, NO_BANK);
        else if (out_of_order)
            fail(E_INIT_ORDER, NO_BANK);
        else if (c_any) begin
            if (cycle < t_mrs + MRD)
                fail(E_MRD, c_act | c_rd | c_wr ? {1'b0, ba} : NO_BANK);

            if (c_act) begin
                if (open_b[ba])
                    fail(E_ACT_OPEN, {1'b0, ba});
                if (cycle < t_pre[ba] + RP)
                    fail(E_ACT_RP, {1'b0, ba});
                if (cycle < t_act[ba] + RC)
                    fail(E_ACT_RC, {1'b0, ba});
                if ((recent(cycle, t_act[0], t_act[1], t_act[2], t_act[3], RRD)
                     & ~(4'd1 << ba)) != 4'h0)
                    fail(E_ACT_RRD, {1'b0, ba});
                if (cycle < t_ref + RFC)
                    fail(E_RFC, {1'b0, ba});
                open_b[ba] <= 1'b1;
                row_b[ba] <= a[ROW_BITS-1:0];
                t_act[ba] <= cycle;
            end

            if (c_rd | c_wr) begin
                if (!open_b[ba])
                    fail(E_RW_CLOSED, {1'b0, ba});
                else begin
                    if (cycle < t_act[ba] + RCD)
                        fail(E_RW_RCD, {1'b0, ba});
                    if (c_rd & wr_on)
                        fail(E_READ_IN_WRITE, {1'b0, ba});
                    if (c_wr & rd_pending)
                        fail(E_WRITE_IN_READ, {1'b0, ba});
                    if (a[10] & ~ap_go)
                        fail(E_UNSUPPORTED, {1'b0, ba});
                    if (ap_go) begin
                        open_b[ba] <= 1'b0;
                        t_pre[ba] <= cycle + (c_rd ? rd_span : wr_span + WR);
                    end
                end
            end

            if (wr_go) begin              // beat 0 now, the rest on the next edges
                mem[{ba, row_b[ba], a[COL_BITS-1:0]}]
                    <= {dqm[1] ? mem[{ba, row_b[ba], a[COL_BITS-1:0]}][15:8] : dq_o[15:8],
                        dqm[0] ? mem[{ba, row_b[ba], a[COL_BITS-1:0]}][7:0] : dq_o[7:0]};
                if (dqm != 2'b11)
                    t_wr[ba] <= cycle;
                wr_on <= w_full | w_left != 4'd0;
                wr_full <= w_full;
                wr_ap <= ap_go;
                wr_bank <= ba;
                wr_row <= row_b[ba];
                wr_mask <= w_mask;
                wr_col <= (a[COL_BITS-1:0] & ~w_mask)
                          | ((a[COL_BITS-1:0] + 1'b1) & w_mask);
                wr_left <= w_left;
            end

            if (c_pre) begin
                if ((pre_mask & recent(cycle, t_act[0], t_act[1], t_act[2], t_act[3], RAS))
                    != 4'h0)
                    fail(E_PRE_RAS, first(pre_mask & recent(cycle, t_act[0], t_act[1],
                                                            t_act[2], t_act[3], RAS)));
                if ((pre_mask & recent(cycle, t_wr[0], t_wr[1], t_wr[2], t_wr[3], WR))
                    != 4'h0)
                    fail(E_PRE_WR, first(pre_mask & recent(cycle, t_wr[0], t_wr[1], t_wr[2],
                                                           t_wr[3], WR)));
                for (b = 3'd0; b < 3'd4; b = b + 3'd1)
                    if (pre_mask[b[1:0]] || (init_state == 2'd0 && a[10]))
                        t_pre[b[1:0]] <= cycle;
                open_b <= open_b & ~pre_mask;
                if (init_state == 2'd0 && a[10])
                    init_state <= 2'd1;
            end

            if (c_ref) begin
                if (open_b != 4'h0)
                    fail(E_REF_OPEN, first(open_b));
                if (recent(cycle, t_pre[0], t_pre[1], t_pre[2], t_pre[3], RP) != 4'h0)
                    fail(E_REF_RP, first(recent(cycle, t_pre[0], t_pre[1], t_pre[2],
                                                t_pre[3], RP)));
                if (cycle < t_ref + RFC)
                    fail(E_REF_RFC, NO_BANK);
                t_ref <= cycle;
                if (init_state == 2'd1 && init_refs != 2'd2)
                    init_refs <= init_refs + 2'd1;
            end

            if (c_mrs) begin
                if ((open_b | recent(cycle, t_pre[0], t_pre[1], t_pre[2], t_pre[3], RP))
                    != 4'h0)
                    fail(E_MRS_BUSY, first(open_b | recent(cycle, t_pre[0], t_pre[1],
                                                           t_pre[2], t_pre[3], RP)));
                if (cycle < t_ref + RFC)
                    fail(E_RFC, NO_BANK);
                if (mode_bad)
                    fail(E_MODE_BAD, NO_BANK);
                if (a[3])
                    fail(E_UNSUPPORTED, NO_BANK);
                if (mrs_ok) begin
                    bl_code <= m_bl;
                    cl3 <= m_cl == 3'd3;
                    wb_single <= a[9];
                    t_mrs <= cycle;
                    mode_set <= 1'b1;
                end
            end
        end

        // Refresh account, from the end of initialisation.
        if (init_done) begin
            init_state <= 2'd2;
            refi_cnt <= 32'd0;
            owed <= MAXP;
        end else if (init_state == 2'd2) begin
            if (refi_cnt == REFI - 32'd1) begin
                refi_cnt <= 32'd0;
                owed <= owed_ref + 32'd1;
                if (owed_ref + 32'd1 > 2 * MAXP)
                    fail(E_STARVED, NO_BANK);
            end else begin
                refi_cnt <= refi_cnt + 32'd1;
                owed <= owed_ref;
            end
        end
    end
endmodule
/* verilator lint_on DECLFILENAME */

`default_nettype wire
