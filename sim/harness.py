"""A Verilog host for the generated engine, so whole batches run without Python per cycle.

:func:`host_verilog` writes ``dynfix_tb``: it wraps ``dynfix_engine`` with an image memory, an
output memory and a statistics memory, all moved in bulk through ``$readmemh`` /
``$writememh`` files in the simulator's working folder. A small state machine plays the host:
for each image it pulses ``start``, streams the image on ``i`` (valid whenever data is left),
takes every value on ``o`` (always ready), waits for ``done``, then reads each layer's cycle
count through ``layer_sel`` / ``layer_cycles``. The cocotb side
(:mod:`dynfix.sim.bulk_tb`) only pulses ``reload``, ``go`` and ``dump`` and waits for
``finished``.

Files (fixed names, in the simulator's working folder)
------------------------------------------------------
``images.hex``    read on ``reload[0]``: image ``n`` at ``n * in_len``, one value per line
``program.hex``, ``weights.hex``, ``biases.hex``
                  read on ``reload[1..3]`` into the engine's program / weight / bias memories
                  (the engine keeps its built-in images until then)
``weights16.hex`` for an engine whose weights are loaded (``EngineConfig.w_spram``, no
                  built-in image): read on ``reload[2]`` as halfwords and streamed into the
                  engine's ``wl`` port before the next step's first image
``bulk.hex``      for an engine that reads its weights from bulk memory
                  (``EngineConfig.w_bulk``): the bus words of the weight image
                  (:func:`dynfix.hw.weight_ring.bulk_image`), read on ``reload[2]`` into the
                  wrapper's AXI4 read memory (``dynfix_bulk_ram``: the first beat of a burst
                  ``bulk_latency`` cycles after its address, each later one
                  ``bulk_interval`` cycles after the previous one was taken: the timing of
                  the engine's ``bulk_store``; with ``bulk_stall`` pseudo-random stalls on
                  AR and R)
``outputs.hex``   written on ``dump``: image ``n``'s outputs at ``n * out_len``
``stats.hex``     written on ``dump``: per image ``stat_words`` 32-bit words: the engine's
                  ``cycles``, the host cycles from ``start`` to ``done``, then each layer's
                  ``layer_cycles``
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dynfix.hw import timing
from dynfix.hw.config import BulkStore, EngineConfig
from dynfix.hw.host_interface import TOP_NAME as ENGINE
from dynfix.hw.ice40_spram import CELL_DEPTH, spram_cells

TOP = "dynfix_tb"
#: Hierarchical names of the engine memories that ``reload`` can replace.
RELOADABLE = {1: ("program.hex", "dut.ctrl.prog"), 2: ("weights.hex", "dut.weights.mem"),
              3: ("biases.hex", "dut.biases")}
#: The weight image of an engine with a weight-load port: halfwords for ``wl`` (``reload[2]``).
WEIGHT_LOAD = (2, "weights16.hex")
#: The weight image of an engine with a bulk-memory port: bus words (``reload[2]``).
BULK_LOAD = (2, "bulk.hex")
#: Cycles from a burst's address handshake to its first beat in the wrapper's bulk memory:
#: what the cycle model assumes.
BULK_LATENCY = timing.BULK_LATENCY


@dataclass(frozen=True)
class HostParams:
    """Capacity of one host wrapper: value width, the longest image and output (values), the
    most layers and images per step. Each step sets its actual lengths on input ports.
    ``wl_len``: halfwords of the weight image an engine with a weight-load port takes (0: the
    engine has none)."""

    data_bits: int
    in_len: int
    out_len: int
    n_layers: int
    max_images: int
    wl_len: int = 0
    #: Memories of SPRAM cells (paths below the engine instance) that power up holding
    #: arbitrary values on the chip: filled with pseudo-random ones at time 0 (yosys's model
    #: leaves them undefined, and Verilog multiplies an undefined map lane by a zero weight to
    #: an undefined sum). A read of a word that was never written then shows as a mismatch.
    power_up: tuple[str, ...] = ()
    #: The bulk memory of an engine with a bulk port (``w_bulk``): its words, their width,
    #: the port's byte-address bits (0 words: no bulk port); the first beat's latency and
    #: whether AR and R stall at pseudo-random cycles.
    bulk_words: int = 0
    bulk_bits: int = 0
    bulk_addr_bits: int = 0
    bulk_latency: int = BULK_LATENCY
    bulk_interval: int = 1
    bulk_stall: bool = False
    #: The bulk memory is an SDRAM chip (the model ``sim/sdram_model.v``) behind the
    #: controller of ``hw/sdram_axi.py`` instead of ``dynfix_bulk_ram``.
    bulk_sdram: bool = False
    #: The engine writes the bulk memory too (maps there, ``m_bulk``): its port has the
    #: write channels.
    bulk_write: bool = False

    @classmethod
    def for_engine(cls, cfg: EngineConfig, in_len: int, out_len: int, n_layers: int,
                   max_images: int) -> "HostParams":
        """The capacities given, and what the engine ``cfg`` itself implies: the halfwords of
        its weight image with ``w_spram`` (the whole memory: ``weight_depth`` words of
        ``weight_word_bits``), the cell memories of its map SPRAM with ``m_spram``."""
        wl_len = (cfg.weight_depth * spram_cells(1, cfg.weight_word_bits)[1] if cfg.w_spram
                  else 0)
        power_up = ()
        if cfg.m_spram:
            rows, cols = spram_cells(cfg.fmap_depth, cfg.lanes * cfg.fmap_lane_bits)
            power_up = tuple(f"fmap.mem.cell_{r}_{c}.mem" for r in range(rows)
                             for c in range(cols))
        words = (cfg.maps_base + cfg.map_bulk if cfg.map_bulk
                 else cfg.weight_depth * cfg.word_beats)
        bulk = ({"bulk_words": words, "bulk_bits": cfg.bus_bits,
                 "bulk_addr_bits": cfg.bulk_addr_bits, "bulk_write": bool(cfg.m_bulk),
                 **dict(zip(("bulk_latency", "bulk_interval"), timing.bulk_timing(cfg))),
                 "bulk_sdram": cfg.bulk_store is BulkStore.SDRAM,
                 } if cfg.w_bulk else {})
        return cls(cfg.data_bits, in_len, out_len, n_layers, max_images, wl_len, power_up,
                   **bulk)

    @property
    def stat_words(self) -> int:
        return 2 + self.n_layers


def host_verilog(p: HostParams) -> str:
    """Verilog source of the ``dynfix_tb`` host wrapper for ``p``."""
    db = p.data_bits
    img_cap, out_cap = p.max_images * p.in_len, p.max_images * p.out_len
    stat_cap = p.max_images * p.stat_words
    targets = dict(RELOADABLE)
    if p.wl_len:
        targets[WEIGHT_LOAD[0]] = (WEIGHT_LOAD[1], "wbuf")
    if p.bulk_words:
        targets[BULK_LOAD[0]] = (BULK_LOAD[1], "chip.mem" if p.bulk_sdram else "ram.mem")
    reloads = "\n".join(
        f'      if (reload[{bit}]) $readmemh("{fname}", {path});'
        for bit, (fname, path) in targets.items())
    wl = p.wl_len
    power_up = "".join(f"""
    for (i = 0; i < {CELL_DEPTH}; i = i + 1) dut.{path}[i] = $random(seed);"""
                       for path in p.power_up)
    if power_up:
        power_up = f"""
  initial begin : power_up          // SPRAM contents at power-up: arbitrary
    integer i, seed;
    seed = 1;{power_up}
  end
"""
    wl_decl = (f"""  reg [15:0] wbuf [0:{wl - 1}];
  reg [31:0] wl_ptr;
  reg wl_pending;
  wire wl_ready;
  wire wl_valid = (state == WLOAD) && (wl_ptr < {wl});
""" if wl else "")
    wl_ports = (",\n    .wl__payload(wbuf[wl_ptr]), .wl__valid(wl_valid), .wl__ready(wl_ready)"
                if wl else "")
    bulk_decl, bulk_ram = "", ""
    if p.bulk_words and p.bulk_sdram:
        bulk_decl, wl_ports, bulk_ram = _sdram_bulk(p, wl_ports)
    elif p.bulk_words:
        aw, dw = p.bulk_addr_bits, p.bulk_bits
        bulk_decl = f"""  wire [{aw - 1}:0] araddr;
  wire [7:0] arlen;
  wire arvalid, arready, rlast, rvalid, rready;
  wire [{dw - 1}:0] rdata;
{_write_wires(p)}  dynfix_bulk_ram #(.AW({aw}), .DW({dw}), .WORDS({p.bulk_words}),
    .LAT({p.bulk_latency}), .INT({p.bulk_interval}), .STALL({int(p.bulk_stall)})) ram (
    .clk(clk), .rst(reset), .araddr(araddr), .arlen(arlen), .arvalid(arvalid),
    .arready(arready), .rdata(rdata), .rlast(rlast), .rvalid(rvalid), .rready(rready),
    .awaddr(awaddr), .awlen(awlen), .awvalid(awvalid), .awready(awready), .wdata(wdata),
    .wlast(wlast), .wvalid(wvalid), .wready(wready), .bvalid(bvalid), .bready(bready));
"""
        wl_ports += (",\n    .wbus__arid(), .wbus__araddr(araddr), .wbus__arlen(arlen), "
                     ".wbus__arsize(), .wbus__arburst(),\n    .wbus__arvalid(arvalid), "
                     ".wbus__arready(arready), .wbus__rid(1'b0), .wbus__rdata(rdata),\n"
                     "    .wbus__rresp(2'b00), .wbus__rlast(rlast), .wbus__rvalid(rvalid), "
                     ".wbus__rready(rready), .bulk_ready(1'b1)" + _write_ports(p))
        bulk_ram = BULK_RAM
    wl_reset = " wl_pending <= 0;" if wl else ""
    wl_go = " wl_ptr <= 0;" if wl else ""
    wl_arm = f"\n      if (reload[{WEIGHT_LOAD[0]}]) wl_pending <= 1;" if wl else ""
    first = "(n_images == 0) ? NEXT : START"
    go_to = f"wl_pending ? WLOAD : {first}" if wl else first
    wl_state = (f"""
      WLOAD: begin                          // stream the weight image into wl
        if (wl_valid && wl_ready) wl_ptr <= wl_ptr + 1;
        if (wl_ptr == {wl}) begin wl_pending <= 0; state <= {first}; end
      end""" if wl else "")
    return f"""\
// dynfix_tb: bulk host for {ENGINE} (generated by dynfix.sim.harness; do not edit)
module {TOP} (
  /*verilator public_flat_rw_on*/
  input clk, input rst,
  input [3:0] reload, input go, input [31:0] n_images, input dump,
  input [31:0] in_len, input [31:0] out_len, input [7:0] n_layers,
  output reg finished, output reg [63:0] ticks
  /*verilator public_off*/
);
  // Nothing below depends combinationally on a port: the engine sees rst and in_len through
  // registers (Verilator re-evaluates, on every call into the model, all logic that does).
  reg reset = 1'b1;
  reg [31:0] in_count = 0;
  always @(posedge clk) begin
    reset <= rst;
    in_count <= in_len;
  end
  localparam SW = {p.stat_words};
  reg [{db - 1}:0] images [0:{img_cap - 1}];
  reg [{db - 1}:0] outs [0:{out_cap - 1}];
  reg [31:0] stats [0:{stat_cap - 1}];

  reg [2:0] state;
  localparam IDLE = 0, START = 1, RUN = 2, LSEL = 3, LWAIT = 4, LREAD = 5, NEXT = 6,
    WLOAD = 7;
  reg [31:0] img, sent, recv, in_ptr, out_ptr, st_ptr, host;
  reg [7:0] sel;

  wire i_ready, o_valid, busy, done;
  wire [{db - 1}:0] o_payload;
  wire [31:0] cycles, layer_cycles;
  wire i_valid = (state == RUN) && (sent < in_count);
{wl_decl}{bulk_decl}
  {ENGINE} dut (
    .clk(clk), .rst(reset),
    .i__payload(images[in_ptr + sent]), .i__valid(i_valid), .i__ready(i_ready),
    .o__payload(o_payload), .o__valid(o_valid), .o__ready(1'b1),
    .start(state == START), .busy(busy), .done(done), .cycles(cycles),
    .layer_sel(sel), .layer_cycles(layer_cycles){wl_ports}
  );
{power_up}

  always @(posedge clk) begin
    if (reload != 0) begin
      if (reload[0]) $readmemh("images.hex", images);
{reloads}
    end
    if (dump) begin
      $writememh("outputs.hex", outs);
      $writememh("stats.hex", stats);
    end
  end

  always @(posedge clk) begin
    ticks <= ticks + 1;
    if (reset) begin
      state <= IDLE; finished <= 0; ticks <= 0; sel <= 0;{wl_reset}
    end else begin{wl_arm}
     case (state)
      IDLE: if (go) begin
        finished <= 0; img <= 0; in_ptr <= 0; out_ptr <= 0; st_ptr <= 0;{wl_go}
        state <= {go_to};
      end{wl_state}
      START: begin
        sent <= 0; recv <= 0; host <= 0; state <= RUN;
      end
      RUN: begin
        host <= host + 1;
        if (i_valid && i_ready) sent <= sent + 1;
        if (o_valid) begin
          outs[out_ptr + recv] <= o_payload;
          recv <= recv + 1;
        end
        if (done && recv == out_len) begin
          stats[st_ptr] <= cycles;
          stats[st_ptr + 1] <= host;
          sel <= 0;
          state <= LSEL;
        end
      end
      LSEL: state <= LWAIT;                 // layer_sel is stable from here
      LWAIT: state <= LREAD;                // the counter memory reads it
      LREAD: begin
        stats[st_ptr + 2 + sel] <= layer_cycles;
        if (sel + 1 >= n_layers) state <= NEXT;
        else begin sel <= sel + 1; state <= LSEL; end
      end
      NEXT: begin
        if (img + 1 >= n_images) begin
          finished <= 1; state <= IDLE;
        end else begin
          img <= img + 1; in_ptr <= in_ptr + in_len; out_ptr <= out_ptr + out_len;
          st_ptr <= st_ptr + SW; state <= START;
        end
      end
      default: state <= IDLE;
     endcase
    end
  end
endmodule
{bulk_ram}"""


def _write_wires(p: HostParams) -> str:
    """The wrapper's write-channel wires ``awaddr`` .. ``bready`` for a bulk memory,
    driven idle when the engine has no write channels (``bulk_write`` off)."""
    aw, dw = p.bulk_addr_bits, p.bulk_bits
    wires = (f"  wire [{aw - 1}:0] awaddr;\n  wire [7:0] awlen;\n  wire [2:0] awsize;\n"
             f"  wire awvalid, awready, wlast, wvalid, wready, bvalid, bready;\n"
             f"  wire [{dw - 1}:0] wdata;\n")
    if p.bulk_write:
        return wires
    return wires + ("  assign awaddr = 0;\n  assign awlen = 0;\n  assign awsize = 0;\n"
                    "  assign awvalid = 0;\n  assign wdata = 0;\n  assign wlast = 0;\n"
                    "  assign wvalid = 0;\n  assign bready = 1;\n")


def _write_ports(p: HostParams) -> str:
    """The engine's write-channel connections (``bulk_write``) to the wires of
    :func:`_write_wires` (all strobes set, one ID)."""
    if not p.bulk_write:
        return ""
    return (",\n    .wbus__awid(), .wbus__awaddr(awaddr), .wbus__awlen(awlen), "
            ".wbus__awsize(awsize), .wbus__awburst(),\n    .wbus__awvalid(awvalid), "
            ".wbus__awready(awready), .wbus__wdata(wdata), .wbus__wstrb(), "
            ".wbus__wlast(wlast),\n    .wbus__wvalid(wvalid), .wbus__wready(wready), "
            ".wbus__bid(1'b0), .wbus__bresp(2'b00), .wbus__bvalid(bvalid), "
            ".wbus__bready(bready)")


#: The wrapper's bulk memory: an AXI4 subordinate (INCR bursts of whole words, address
#: 0 up; writes one burst at a time, each answered the cycle after its last beat, for an
#: engine with maps there). Up to four read bursts queue; each burst's first beat is ready
#: ``LAT`` cycles after its address handshake (not before the previous burst's last beat),
#: then a beat per cycle while ``rready``. With ``STALL`` an LFSR drops ``arready`` and
#: delays ``rvalid`` (never once it is high) on about a quarter of the cycles each, and
#: drops ``awready`` and ``wready`` as often.
BULK_RAM = """
module dynfix_bulk_ram #(parameter AW = 12, DW = 64, WORDS = 16, LAT = 3, INT = 1,
                         STALL = 0) (
  input clk, input rst,
  input [AW-1:0] araddr, input [7:0] arlen, input arvalid, output arready,
  output [DW-1:0] rdata, output rlast, output rvalid, input rready,
  input [AW-1:0] awaddr, input [7:0] awlen, input awvalid, output awready,
  input [DW-1:0] wdata, input wlast, input wvalid, output wready,
  output bvalid, input bready
);
  localparam SZ = $clog2(DW / 8);
  reg [DW-1:0] mem [0:WORDS-1];
  reg [AW-1:0] qa [0:3];
  reg [7:0] ql [0:3];
  reg [31:0] qt [0:3];
  reg [2:0] qn;
  reg [1:0] qh, qw;
  reg [31:0] now, nxt;
  reg [7:0] beat;
  reg [15:0] lfsr;
  reg held;
  // Writes: one burst at a time; its response the cycle after its last beat.
  reg wact, bpend;
  reg [AW-1:0] wa;
  assign awready = !wact && !bpend && !(STALL && lfsr[5:4] == 0);
  assign wready = wact && !(STALL && lfsr[7:6] == 0);
  assign bvalid = bpend;
  assign arready = (qn < 4) && !(STALL && lfsr[3:2] == 0);
  wire head = (qn != 0) && (now >= qt[qh]) && (now >= nxt);
  assign rvalid = head && (held || !(STALL && lfsr[1:0] == 0));
  assign rdata = mem[(qa[qh] >> SZ) + beat];
  assign rlast = beat == ql[qh];
  wire push = arvalid && arready;
  wire pop = rvalid && rready && rlast;
  always @(posedge clk) begin
    if (rst) begin
      qn <= 0; qh <= 0; qw <= 0; now <= 0; nxt <= 0; beat <= 0; held <= 0;
      lfsr <= 16'hace1; wact <= 0; bpend <= 0;
    end else begin
      if (awvalid && awready) begin wact <= 1; wa <= awaddr >> SZ; end
      if (wvalid && wready) begin
        mem[wa] <= wdata; wa <= wa + 1;
        if (wlast) begin wact <= 0; bpend <= 1; end
      end
      if (bvalid && bready) bpend <= 0;
      now <= now + 1;
      lfsr <= {lfsr[14:0], lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]};
      held <= rvalid && !rready;
      if (push) begin
        qa[qw] <= araddr; ql[qw] <= arlen; qt[qw] <= now + LAT; qw <= qw + 1;
      end
      if (rvalid && rready) begin
        beat <= rlast ? 0 : beat + 1;
        nxt <= now + INT;
      end
      if (pop) qh <= qh + 1;
      qn <= qn + push - pop;
    end
  end
endmodule
"""


#: The clock the wrapper's SDRAM (``bulk_store: sdram``: the ULX3S's part, with as many rows
#: as the bulk port reaches) is timed for.
SDRAM_CLOCK_HZ = 50e6


def sdram_part(addr_bits: int):
    """The simulation's SDRAM part for a bulk port of ``addr_bits`` byte-address bits: the
    ULX3S's (``IS42S16160``) with only the rows the port reaches (at least 2)."""
    from dynfix.hw.sdram_axi import IS42S16160
    per_row = 1 << (IS42S16160.col_bits + IS42S16160.bank_bits)
    rows = max(2, -(-(1 << (addr_bits - 1)) // per_row))
    return replace(IS42S16160, name="simulation", row_bits=(rows - 1).bit_length())


def _sdram_bulk(p: HostParams, wl_ports: str) -> tuple[str, str, str]:
    """The wrapper's declarations, the engine's port connections and the modules (the
    controller's Verilog, the chip model's) for the SDRAM bulk memory."""
    from pathlib import Path

    from amaranth.back import verilog

    from dynfix.hw.generate import ensure_yosys
    from dynfix.hw.sdram_axi import SdramAxi, SdramTiming

    ensure_yosys()
    part = sdram_part(p.bulk_addr_bits)
    t = SdramTiming.at(part, SDRAM_CLOCK_HZ)
    aw, dw = p.bulk_addr_bits, p.bulk_bits
    ctrl = SdramAxi(aw, dw, part=part, timing=t)
    text = verilog.convert(ctrl, name="dynfix_sdram_axi", emit_src=False,
                           strip_internal_attrs=True)
    model = (Path(__file__).resolve().parent / "sdram_model.v").read_text()
    ab = len(ctrl.sdram.a)
    decl = f"""  wire [{aw - 1}:0] araddr;
  wire [7:0] arlen;
  wire [2:0] arsize;
  wire [1:0] arburst;
  wire arvalid, arready, rlast, rvalid, rready, sdram_ready, rid;
  wire [1:0] rresp;
  wire [{dw - 1}:0] rdata;
{_write_wires(p)}  wire s_cke, s_cs_n, s_ras_n, s_cas_n, s_we_n, s_dq_oe;
  wire [1:0] s_ba, s_dqm;
  wire [{ab - 1}:0] s_a;
  wire [15:0] s_dq_o, s_dq_i;
  wire [31:0] sdram_errors;
  wire [7:0] sdram_last_error;
  dynfix_sdram_axi ctrl (.clk(clk), .rst(reset), .ready(sdram_ready),
    .bus__araddr(araddr), .bus__arlen(arlen), .bus__arsize(arsize), .bus__arburst(arburst),
    .bus__arid(1'b0), .bus__arvalid(arvalid), .bus__arready(arready), .bus__rid(rid),
    .bus__rdata(rdata), .bus__rresp(rresp), .bus__rlast(rlast), .bus__rvalid(rvalid),
    .bus__rready(rready), .bus__awid(1'b0), .bus__awaddr(awaddr), .bus__awlen(awlen),
    .bus__awsize(awsize), .bus__awburst(2'd1), .bus__awvalid(awvalid), .bus__awready(awready),
    .bus__wdata(wdata), .bus__wstrb({{{dw // 8}{{1'b1}}}}), .bus__wlast(wlast),
    .bus__wvalid(wvalid), .bus__wready(wready), .bus__bid(), .bus__bresp(),
    .bus__bvalid(bvalid), .bus__bready(bready),
    .sdram__clk_en(s_cke), .sdram__cs_n(s_cs_n), .sdram__ras_n(s_ras_n),
    .sdram__cas_n(s_cas_n), .sdram__we_n(s_we_n), .sdram__ba(s_ba), .sdram__a(s_a),
    .sdram__dqm(s_dqm), .sdram__dq_o(s_dq_o), .sdram__dq_oe(s_dq_oe), .sdram__dq_i(s_dq_i));
  dynfix_sdram_model #(.ROW_BITS({part.row_bits}), .COL_BITS({part.col_bits}),
    .ADDR_BITS({ab}), .T_RCD({t.t_rcd}), .T_RP({t.t_rp}), .T_RAS({t.t_ras}), .T_RC({t.t_rc}),
    .T_RRD(1), .T_WR({t.t_wr}), .T_MRD({t.t_mrd}), .T_RFC({t.t_rfc}), .T_REFI({t.t_refi}),
    .T_INIT({t.t_init}), .FATAL(1)) chip (
    .clk(clk), .cke(s_cke), .cs_n(s_cs_n), .ras_n(s_ras_n), .cas_n(s_cas_n), .we_n(s_we_n),
    .ba(s_ba), .a(s_a), .dqm(s_dqm), .dq_o(s_dq_o), .dq_oe(s_dq_oe), .dq_i(s_dq_i),
    .errors(sdram_errors), .last_error(sdram_last_error));
"""
    ports = wl_ports + (",\n    .wbus__arid(), .wbus__araddr(araddr), .wbus__arlen(arlen), "
                        ".wbus__arsize(arsize), .wbus__arburst(arburst),\n"
                        "    .wbus__arvalid(arvalid), .wbus__arready(arready), "
                        ".wbus__rid(rid), .wbus__rdata(rdata),\n    .wbus__rresp(rresp), "
                        ".wbus__rlast(rlast), .wbus__rvalid(rvalid), .wbus__rready(rready), "
                        ".bulk_ready(sdram_ready)" + _write_ports(p))
    return decl, ports, text + "\n" + model


def hex_values(values, bits: int) -> str:
    """``$readmemh`` text of signed or unsigned integers, two's complement in ``bits``."""
    mask = (1 << bits) - 1
    digits = max(1, -(-bits // 4))
    return "".join(f"{int(v) & mask:0{digits}x}\n" for v in values)


def read_hex(text: str, bits: int, signed: bool, count: int | None = None,
             strict: bool = True) -> list[int | None]:
    """The first ``count`` integers of a ``$writememh`` file (``//`` comments skipped).

    A value with ``x``/``z`` digits (never written) raises ValueError, or reads as None when
    not ``strict``.
    """
    out = []
    for line in text.splitlines():
        if count is not None and len(out) >= count:
            break
        line = line.split("//", 1)[0].strip()
        if not line or line.startswith("@"):
            continue
        for tok in line.split():
            try:
                v = int(tok, 16)
            except ValueError:
                if strict:
                    raise ValueError(f"undefined value {tok!r} at entry {len(out)}") from None
                out.append(None)
                continue
            if signed and v >> (bits - 1):
                v -= 1 << bits
            out.append(v)
    return out[:count]
