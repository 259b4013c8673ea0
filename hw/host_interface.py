"""The engine's outside: its Verilog module name, and one signature for the host interface of
the engine, its Verilog instance and the board top that drives it."""

from __future__ import annotations

from amaranth.hdl import signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["TOP_NAME", "EngineHostSignature"]

#: The engine's Verilog module name (and the stem of its file, ``TOP_NAME.v``).
TOP_NAME = "dynfix_engine"


class EngineHostSignature(wiring.Signature):
    """The host side of an inference engine, from the engine's point of view.

    The host pulses ``start``, streams the input image on ``i`` and reads the last layer's
    outputs on ``o``. In Verilog the members become the ports ``i__payload``, ``i__valid``,
    ``i__ready``, ``o__payload``, ..., ``layer_cycles`` (beside ``clk`` and ``rst``).

    Two signatures are equal when their ``data_bits``, ``weight_load`` and ``bulk`` are.

    Parameters
    ----------
    data_bits : int
        Width of the input and output values.
    weight_load : bool
        The engine keeps its weights in memory the bitstream cannot initialize (iCE40 SPRAM,
        ``EngineConfig.w_spram``): the host streams them in on ``wl`` before the first run.
    bulk : AxiReadSignature or None
        The engine reads its weights from bulk memory (``EngineConfig.w_bulk``) over this
        AXI4 read port.

    Members
    -------
    i : In(stream.Signature(signed(data_bits)))
        Input values in C, H, W order (the quantized integers).
    o : Out(stream.Signature(signed(data_bits)))
        The last layer's outputs in channel order.
    start : In(1)
        Pulse: begin a run (ignored while busy).
    busy : Out(1)
        A run is in progress.
    done : Out(1)
        The last run finished; stays high until the next ``start``.
    cycles : Out(32)
        Compute cycles of the last run.
    layer_sel : In(8)
        A layer (program entry) index.
    layer_cycles : Out(32)
        Layer ``layer_sel``'s share of ``cycles``, one cycle after ``layer_sel`` is set.
    wl : In(stream.Signature(16))
        Only with ``weight_load``: the weight image as 16-bit halfwords, word by word, the
        low halfword of each word first (:func:`dynfix.hw.ice40_spram.halfwords`); ready
        while no run is in progress. After the last halfword the next load starts over at
        word 0.
    wbus : Out(bulk)
        Only with ``bulk``: the AXI4 read port to the bulk memory holding the weight image
        (:func:`dynfix.hw.weight_ring.bulk_image`, at address 0).
    bulk_ready : In(1)
        Only with ``bulk``: the bulk memory holds the weight image (the engine reads it
        from then on); hold it high.
    """

    def __init__(self, data_bits: int, weight_load: bool = False,
                 bulk: wiring.Signature | None = None):
        if not isinstance(data_bits, int) or isinstance(data_bits, bool) or data_bits < 1:
            raise TypeError(f"data_bits must be a positive integer, not {data_bits!r}")
        self._data_bits = data_bits
        self._weight_load = bool(weight_load)
        self._bulk = bulk
        super().__init__({
            "i": In(stream.Signature(signed(data_bits))),
            "o": Out(stream.Signature(signed(data_bits))),
            **self.control_members(),
            **({"wl": In(stream.Signature(16))} if weight_load else {}),
            **({"wbus": Out(bulk), "bulk_ready": In(1)} if bulk is not None else {}),
        })

    @staticmethod
    def control_members() -> dict[str, wiring.Member]:
        """The members besides the two streams (``start`` .. ``layer_cycles``), which the
        engine's controller serves."""
        return {
            "start": In(1), "busy": Out(1), "done": Out(1),
            "cycles": Out(32),
            "layer_sel": In(8), "layer_cycles": Out(32),
        }

    @property
    def data_bits(self) -> int:
        return self._data_bits

    @property
    def weight_load(self) -> bool:
        return self._weight_load

    @property
    def bulk(self) -> wiring.Signature | None:
        return self._bulk

    def __eq__(self, other):
        return (type(other) is type(self) and other.data_bits == self.data_bits
                and other.weight_load == self.weight_load and other.bulk == self.bulk)

    def __repr__(self):
        return (f"EngineHostSignature({self.data_bits}"
                + (", weight_load=True" if self.weight_load else "")
                + (f", bulk={self.bulk!r}" if self.bulk is not None else "") + ")")
