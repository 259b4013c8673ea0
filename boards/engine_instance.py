"""The generated engine Verilog (``DIR/dynfix_engine.v``) as a component."""

from __future__ import annotations

from pathlib import Path

from amaranth import ClockSignal, Instance, Module, ResetSignal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from dynfix.hw.axi import AxiReadSignature
from dynfix.hw.host_interface import TOP_NAME, EngineHostSignature

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
    weight_load : bool
        The engine keeps its weights in SPRAM (``w_spram`` in its report) and has the
        weight-load port ``wl``.
    bulk : AxiReadSignature or None
        The engine reads its weights from bulk memory (``w_bulk`` in its report) over an
        AXI4 read port of this signature (:func:`dynfix.hw.engine.bulk_signature`).

    Members
    -------
    The members of :class:`~dynfix.hw.host_interface.EngineHostSignature`
    ``(data_bits, weight_load, bulk)``: ``i``, ``o``, ``start``, ``busy``, ``done``,
    ``cycles``, ``layer_sel``, ``layer_cycles``, with ``weight_load`` ``wl``, with ``bulk``
    ``wbus`` and ``bulk_ready``.
    """

    def __init__(self, verilog: Path, data_bits: int, top: str = TOP_NAME,
                 weight_load: bool = False, bulk: AxiReadSignature | None = None):
        self._verilog = Path(verilog)
        self._top = top
        super().__init__(EngineHostSignature(data_bits, weight_load=weight_load, bulk=bulk))

    def elaborate(self, platform):
        m = Module()
        if platform is not None:
            platform.add_file(self._verilog.name, self._verilog.read_text())
        # The module's ports are the members' paths joined by "__", as Amaranth names them
        # (i__payload, i__valid, i__ready, ..., layer_cycles, wbus__araddr, ...).
        ports = {f"{'i' if member.flow == In else 'o'}_{'__'.join(path)}": value
                 for path, member, value in self.signature.flatten(self)}
        m.submodules.engine = Instance(
            self._top, i_clk=ClockSignal(), i_rst=ResetSignal(allow_reset_less=True), **ports)
        return m
