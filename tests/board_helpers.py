"""Helpers the board tests share: a stand-in engine with the engine's host interface, and
the Icarus run of a whole board top's Verilog (``tests/board_tb.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from amaranth import Module, Signal, signed
from amaranth.lib import wiring

from dynfix.hw.host_interface import EngineHostSignature


class EchoEngine(wiring.Component):
    """Stand-in with the engine's host interface: sums the ``n_in`` inputs, then emits
    ``o[j] = sat((sum >> 2) * (j - 4))`` for ``j < n_out`` and pulses ``done``."""

    def __init__(self, n_in: int, n_out: int, bits: int):
        self._n_in, self._n_out, self._bits = n_in, n_out, bits
        super().__init__(EngineHostSignature(bits))       # layer_cycles stays 0

    @staticmethod
    def reference(x: np.ndarray, n_out: int, bits: int) -> np.ndarray:
        s = int(np.sum(x)) >> 2
        lim = 1 << (bits - 1)
        return np.array([min(max(s * (j - 4), -lim), lim - 1) for j in range(n_out)])

    def elaborate(self, platform):
        m = Module()
        bits = self._bits
        acc = Signal(signed(bits + self._n_in.bit_length()))
        idx = Signal(range(max(self._n_in, self._n_out) + 1))
        prod = Signal(signed(2 * len(acc)))
        lim = 1 << (bits - 1)
        m.d.comb += prod.eq((acc >> 2) * (idx - 4))
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        m.d.sync += self.done.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [acc.eq(0), idx.eq(0), self.cycles.eq(0)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += [self.busy.eq(1), self.i.ready.eq(1)]
                with m.If(self.i.valid):
                    m.d.sync += [acc.eq(acc + self.i.payload), idx.eq(idx + 1)]
                    with m.If(idx == self._n_in - 1):
                        m.d.sync += idx.eq(0)
                        m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += [self.busy.eq(1), self.o.valid.eq(1)]
                with m.If(prod >= lim):
                    m.d.comb += self.o.payload.eq(lim - 1)
                with m.Elif(prod < -lim):
                    m.d.comb += self.o.payload.eq(-lim)
                with m.Else():
                    m.d.comb += self.o.payload.eq(prod)
                with m.If(self.o.ready):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == self._n_out - 1):
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"
        return m


def run_board_tb(gen, im, x, build_dir: Path, image: bytes | None = None, n_images: int = 1,
                 *, divisor: int, pll=None, clk_hz: int = 12_000_000,
                 coding: str = "none") -> dict:
    """The board top's Verilog around ``gen``'s engine (a :class:`~dynfix.hw.design.Design`) under
    Icarus (``tests/board_tb.py``), its flash image stored with ``coding`` (the board top
    built to decode it): with ``image``, the flash holding it at 1 MiB; with
    ``pll`` (a :mod:`dynfix.boards.pll` setting), the design clocked from the PLL's model fed
    by the oscillator, else from ``clk_hz``; ``n_images`` test images of ``x`` sent after
    ``P``, ``divisor`` clocks per UART bit; the cells of maps in SPRAM hold pseudo-random
    words at power-up (those the engine addresses). Returns what the host saw."""
    from amaranth.back import verilog

    from dynfix.boards.board_top import BoardTop
    from dynfix.boards.design import engine_instance, link_info, weights_payload
    from dynfix.boards.flash_image import FLASH_OFFSET, stored_payload
    from dynfix.boards.pll import Ice40Pll, sim_sources
    from dynfix.boards.protocol import INFO_LEN, infer_request
    from dynfix.boards.spi_flash_reader import byte_cycles
    from dynfix.hw.generate import ensure_yosys
    from dynfix.hw.ice40_cells import SIM_DEFINES
    from dynfix.hw.ice40_spram import CELL_DEPTH
    from dynfix.hw.config import BulkStore
    from dynfix.hw.sdram_axi import SdramTiming
    from dynfix.sim.harness import HostParams, sdram_part
    from dynfix.sim.simulators import error_lines, job_files
    from sim_helpers import run_icarus

    ensure_yosys()
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    payload = weights_payload(gen)
    if pll is not None:
        clk_hz = round(pll.f_out * 1e6)
    info = link_info(gen)
    sdram = gen.config.bulk_store is BulkStore.SDRAM and gen.bulk
    part = sdram_part(gen.config.bulk_addr_bits) if sdram else None
    top = BoardTop(engine_instance(gen), info, divisor=divisor, weights=payload, clk_hz=clk_hz,
                   pll=pll, bulk_store=gen.config.bulk_store, sdram_part=part,
                   flash_coding=coding)
    src = build_dir / "board.v"
    text = verilog.convert(top, name="board", emit_src=False, strip_internal_attrs=True)
    toplevel = "board"
    if sdram:
        text += sdram_wrapper(text, part, SdramTiming.at(part, clk_hz, cas=None))
        toplevel = "board_sim"
    src.write_text(text)
    requests = [list(infer_request(im.quantize_input(x[i:i + 1])[0], info))
                for i in range(n_images)]
    streamed = len(stored_payload(payload, coding)) if payload is not None else 0
    load = 400 + streamed * byte_cycles(2)
    job = {"divisor": divisor, "period_ps": 2 * round(0.5e12 / clk_hz), "info_len": INFO_LEN,
           "reply_len": 1 + info.result_len(), "requests": requests,
           "load_cycles": load + 40 * divisor * (INFO_LEN + 2), "run_cycles": 100_000}
    if image is not None:
        job.update(image=list(image), base=FLASH_OFFSET,
                   quad="flash_dq_o" in top.signature.members)
    cells = HostParams.for_engine(gen.config, 1, 1, 1, 1).power_up
    if cells:                       # SPRAM cells of the maps: arbitrary at power-up
        job.update(power_up=[f"engine.engine.{path}" for path in cells],
                   power_up_words=min(CELL_DEPTH, 1 << gen.config.fmap_addr_bits))
    if pll is not None:
        job.update(osc_period_ps=2 * round(0.5e6 / pll.f_in),
                   pll_out="PLLOUTGLOBAL" if isinstance(pll, Ice40Pll) else "CLKOP")
    job, result = job_files(build_dir, job)
    sources = sim_sources([text, gen.verilog.read_text()], build_dir)
    if sdram:
        sources.append(SDRAM_MODEL)
    log = run_icarus([src, gen.verilog, *sources], toplevel, "board_tb", build_dir, job,
                     defines=SIM_DEFINES)
    assert result.exists(), f"the cocotb test failed{error_lines(log, 3)} (see {log})"
    return json.loads(result.read_text())


#: The SDRAM chip model (FATAL: the first broken rule stops the simulation).
SDRAM_MODEL = Path(__file__).resolve().parent.parent / "sim" / "sdram_model.v"


def sdram_wrapper(text: str, part, t) -> str:
    """Verilog of ``board_sim``: the board top ``board`` (whose Verilog is ``text``) with
    every port of its own except the SDRAM's, whose pins go to the chip model
    (``sim/sdram_model.v``) timed as the board top's controller (``t``, an
    :class:`~dynfix.hw.sdram_axi.SdramTiming`), so the cocotb bench sees the same ports as
    for any other board top."""
    import re

    body = text[text.index("module board("):]
    body = body[:body.index("endmodule")]
    ports = re.findall(r"^\s*(input|output)\s+(?:(?:wire|reg)\s+)?(\[[^\]]+\]\s*)?(\w+);",
                       body, re.M)
    own = [(d, w or "", n) for d, w, n in ports if not n.startswith("sdram__")]
    pins = {n[len("sdram__"):]: (d, w or "") for d, w, n in ports if n.startswith("sdram__")}
    lines = [f"module board_sim({', '.join(n for _, _, n in own)});"]
    lines += [f"  {d} {w}{n};" for d, w, n in own]
    lines += [f"  wire {w}s_{n};" for n, (_, w) in pins.items()]
    conns = [f".{n}({n})" for _, _, n in own] + [f".sdram__{n}(s_{n})" for n in pins]
    lines.append(f"  board core ({', '.join(conns)});")
    addr_bits = int(re.match(r"\[(\d+):", pins["a"][1]).group(1)) + 1
    lines.append(
        f"  dynfix_sdram_model #(.ROW_BITS({part.row_bits}), .COL_BITS({part.col_bits}), "
        f".ADDR_BITS({addr_bits}), "
        f".T_RCD({t.t_rcd}), .T_RP({t.t_rp}), .T_RAS({t.t_ras}), .T_RC({t.t_rc}), .T_RRD(1), "
        f".T_WR({t.t_wr}), .T_MRD({t.t_mrd}), .T_RFC({t.t_rfc}), .T_REFI({t.t_refi}), "
        f".T_INIT({t.t_init}), .FATAL(1)) chip (.clk(clk), .cke(s_clk_en), .cs_n(s_cs_n), "
        f".ras_n(s_ras_n), .cas_n(s_cas_n), .we_n(s_we_n), .ba(s_ba), .a(s_a), .dqm(s_dqm), "
        f".dq_o(s_dq_o), .dq_oe(s_dq_oe), .dq_i(s_dq_i), .errors(), .last_error());")
    return "\n".join(lines) + "\nendmodule\n"


def check_wrong_header_never_runs(gen, im, x, tmp_path: Path, divisor: int) -> None:
    """The flash holds another image than the bitstream was built for (its CRC field
    changed): the reader stops after the header, nothing is loaded, the link never answers,
    both LEDs lit."""
    import pytest
    from dynfix.boards.design import weights_payload
    from dynfix.boards.flash_image import HEADER_BYTES, flash_image, read_header
    image = bytearray(flash_image(weights_payload(gen)))
    image[12] ^= 0x01                                   # the CRC-32 field
    with pytest.raises(Exception, match="CRC"):
        read_header(bytes(image))
    res = run_board_tb(gen, im, x, tmp_path, bytes(image), divisor=divisor)
    assert res["flash_errors"] == [] and res["load_error"] == 1 and res["loaded"] == 0
    assert res["error_at"] is not None and res["loaded_at"] is None
    assert res["bytes_out"] <= HEADER_BYTES + 1 and res["cs_n"] == 1
    assert res["info"] is None and res["replies"] == [] and res["stray"] == []
    assert res["leds"] == [1, 1]


def check_replies(res: dict, gen, cm, im, x, n: int) -> None:
    """The host got ``n`` replies, each an ``R`` with every output of its image equal to the
    integer model's (outputs that vary, so the check can fail)."""
    from dynfix.boards.design import link_info
    from dynfix.boards.protocol import parse_result

    assert len(res["replies"]) == n
    for k, reply in enumerate(res["replies"]):
        assert reply[0] == ord("R")
        got = parse_result(bytes(reply), link_info(gen))
        ref = im.forward(im.quantize_input(x[k:k + 1]))[cm.output_name].reshape(-1)
        assert len(set(ref.tolist())) > 1
        np.testing.assert_array_equal(got.logits, ref)
        assert got.predicted == int(np.argmax(ref)) and got.cycles > 0
