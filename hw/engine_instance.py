"""The generated engine Verilog (``DIR/dynfix_engine.v``) as a component."""

from __future__ import annotations

from pathlib import Path

from amaranth import ClockSignal, Instance, Module, ResetSignal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["EngineInstance"]


class EngineInstance(wiring.Component):
    """Instantiates the Verilog module ``top`` written by ``dynfix generate``, with the
    engine's host interface; the Verilog source is added to the platform build.

    Parameters
    ----------
    verilog : Path
        The generated Verilog file.
    data_bits : int
        Width of the input and output values.
    top : str
        The module name.

    Members
    -------
    The host interface of :class:`dynfix.hw.engine.Engine`: ``i``, ``o``, ``start``,
    ``busy``, ``done``, ``cycles``, ``layer_sel``, ``layer_cycles``.
    """

    def __init__(self, verilog: Path, data_bits: int, top: str = "dynfix_engine"):
        self._verilog = Path(verilog)
        self._top = top
        super().__init__({
            "i": In(stream.Signature(signed(data_bits))),
            "o": Out(stream.Signature(signed(data_bits))),
            "start": In(1), "busy": Out(1), "done": Out(1),
            "cycles": Out(32),
            "layer_sel": In(8), "layer_cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        if platform is not None:
            platform.add_file(self._verilog.name, self._verilog.read_text())
        m.submodules.engine = Instance(
            self._top,
            i_clk=ClockSignal(), i_rst=ResetSignal(allow_reset_less=True),
            i_i__payload=self.i.payload, i_i__valid=self.i.valid, o_i__ready=self.i.ready,
            o_o__payload=self.o.payload, o_o__valid=self.o.valid, i_o__ready=self.o.ready,
            i_start=self.start, o_busy=self.busy, o_done=self.done, o_cycles=self.cycles,
            i_layer_sel=self.layer_sel, o_layer_cycles=self.layer_cycles,
        )
        return m
