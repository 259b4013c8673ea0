"""What the bulk-memory port's cocotb tests share: a BulkReader and a BulkWriter on one AXI4
port (exposed as ``m_axi_*`` Verilog ports, or joined to a memory inside), and the Verilog of
a test top."""

from __future__ import annotations

from typing import Callable

from amaranth.hdl import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from dynfix.hw.axi import (AxiSignature, BulkRequestLayout, axi_halves, connect_flat,
                           flat_members, word_addr_bits)
from dynfix.hw.bulk_reader import BulkReader
from dynfix.hw.bulk_writer import BulkWriter


class BulkPairTop(wiring.Component):
    """A BulkReader and a BulkWriter sharing one AXI4 port: with ``memory`` None the port's
    Verilog ports are named ``m_axi_araddr`` ... (as cocotbext-axi's
    ``AxiBus.from_prefix(dut, "m_axi")`` expects); else ``memory()`` (a component with an
    AXI4 subordinate port ``bus``) is built inside and the port joined to it.

    Members
    -------
    rd_req, wr_req : In(stream.Signature(BulkRequestLayout))   the blocks' requests
    rd : Out(stream.Signature(unsigned(data_width)))           the words read
    wr : In(stream.Signature(unsigned(data_width)))            the words to write
    rd_busy, rd_done, rd_error, wr_busy, wr_done, wr_error : Out(1)
    m_axi_* : the members of AxiSignature(addr_width, data_width) (without ``memory``)
    """

    def __init__(self, addr_width: int, data_width: int, count_bits: int,
                 memory: Callable[[], wiring.Component] | None = None):
        self._widths = (addr_width, data_width, count_bits)
        self._memory = memory
        req = stream.Signature(BulkRequestLayout(word_addr_bits(addr_width, data_width),
                                                 count_bits))
        flags = {f"{side}_{flag}": Out(1) for side in ("rd", "wr")
                 for flag in ("busy", "done", "error")}
        port = {} if memory else flat_members("m_axi", AxiSignature(addr_width, data_width))
        super().__init__({
            "rd_req": In(req), "rd": Out(stream.Signature(unsigned(data_width))),
            "wr_req": In(req), "wr": In(stream.Signature(unsigned(data_width))),
            **flags, **port,
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = reader = BulkReader(*self._widths)
        m.submodules.writer = writer = BulkWriter(*self._widths)
        wiring.connect(m, wiring.flipped(self.rd_req), reader.req)
        wiring.connect(m, reader.o, wiring.flipped(self.rd))
        wiring.connect(m, wiring.flipped(self.wr_req), writer.req)
        wiring.connect(m, wiring.flipped(self.wr), writer.i)
        for side, block in (("rd", reader), ("wr", writer)):
            for flag in ("busy", "done", "error"):
                m.d.comb += getattr(self, f"{side}_{flag}").eq(getattr(block, flag))
        if self._memory is None:
            connect_flat(m, self, "m_axi", reader.bus)
            connect_flat(m, self, "m_axi", writer.bus)
        else:
            m.submodules.mem = mem = self._memory()
            rd, wr = axi_halves(mem.bus)
            wiring.connect(m, reader=reader.bus, memory=rd)
            wiring.connect(m, writer=writer.bus, memory=wr)
        return m


def convert(top: wiring.Component, name: str) -> str:
    """The Verilog of ``top`` as module ``name`` (no source locations)."""
    from amaranth.back import verilog

    from dynfix.hw.generate import ensure_yosys
    ensure_yosys()
    return verilog.convert(top, name=name, emit_src=False, strip_internal_attrs=True)
