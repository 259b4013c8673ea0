"""The feature-map memory: block RAM with a read and a write port, or one iCE40 SPRAM port."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .config import EngineConfig
from .ice40_spram import SPRAM

__all__ = ["MapMemory"]


class MapMemory(wiring.Component):
    """``cfg.fmap_depth`` words of ``cfg.lanes`` map values, read one cycle after ``rd_addr``
    and written at ``wr_addr`` in the lanes ``wr_en`` selects.

    In block RAM the read and the write port are separate. With ``cfg.m_spram`` the memory
    is an SPRAM with one port: it writes while the input loads (``loading``: the sequencer
    is idle) or while the sequencer holds for the write-back (``hold``: exactly the cycles
    the write-back writes in, ``hw/sequencer.py``), and reads in every other cycle. Each
    lane then takes whole nibbles (``cfg.fmap_lane_bits``), so its write enable is the
    cell's nibble enables.

    Members
    -------
    rd_addr : In(unsigned(fmap_addr_bits))
    rd_data : Out(ArrayLayout(signed(data_bits), lanes))
    wr_addr : In(unsigned(fmap_addr_bits))
    wr_data : In(ArrayLayout(signed(data_bits), lanes))
    wr_en : In(lanes)
    loading, hold : In(1)               only with ``m_spram``
    """

    def __init__(self, cfg: EngineConfig, cell: bool = True):
        self._cfg = cfg
        self._cell = cell
        lanes = data.ArrayLayout(signed(cfg.data_bits), cfg.lanes)
        super().__init__({
            "rd_addr": In(unsigned(cfg.fmap_addr_bits)),
            "rd_data": Out(lanes),
            "wr_addr": In(unsigned(cfg.fmap_addr_bits)),
            "wr_data": In(lanes),
            "wr_en": In(cfg.lanes),
            **({"loading": In(1), "hold": In(1)} if cfg.m_spram else {}),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        n, db = cfg.lanes, cfg.data_bits
        if not cfg.m_spram:
            m.submodules.mem = mem = memory.Memory(shape=self.rd_data.shape(),
                                                   depth=cfg.fmap_depth, init=[])
            wr = mem.write_port(granularity=1)          # one enable per lane
            rd = mem.read_port()
            m.d.comb += [rd.addr.eq(self.rd_addr), self.rd_data.eq(rd.data),
                         wr.addr.eq(self.wr_addr), wr.data.eq(self.wr_data),
                         wr.en.eq(self.wr_en)]
            return m
        lb = cfg.fmap_lane_bits
        m.submodules.mem = ram = SPRAM(cfg.fmap_depth, n * lb, cell=self._cell)
        writing = Signal()
        raw = self.wr_data.as_value()
        m.d.comb += [
            writing.eq(Mux(self.loading, self.wr_en.any(), self.hold)),
            ram.addr.eq(Mux(writing, self.wr_addr, self.rd_addr)),
            ram.w_en.eq(writing),
            ram.w_data.eq(Cat(*(Cat(raw[i * db:(i + 1) * db], Const(0, lb - db))
                                for i in range(n)))),
            ram.w_mask.eq(Cat(self.wr_en[i].replicate(lb // 4) for i in range(n))),
            self.rd_data.as_value().eq(Cat(ram.r_data[i * lb:i * lb + db] for i in range(n))),
        ]
        return m

