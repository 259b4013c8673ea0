"""Two AXI4 read managers on one subordinate read port, burst by burst."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from .axi import AxiReadSignature

__all__ = ["AxiReadArbiter"]

#: The AR channel's payload members (the arbiter's register stage holds them).
_AR_PAYLOAD = ("arid", "araddr", "arlen", "arsize", "arburst")
#: The R channel's payload members (passed to both managers; ``rvalid`` goes to the owner).
_R_PAYLOAD = ("rid", "rdata", "rresp", "rlast")


class AxiReadArbiter(wiring.Component):
    """Joins the read channels (AR, R) of two AXI4 managers, ``m0`` and ``m1``, to one
    subordinate port ``bus``: the engine's weight ring and its map DMA share the bulk
    memory's read port this way.

    AR: when both managers want to send a burst address the arbiter takes them in turn
    (round robin: the one not taken last; m1 after reset), else the one that wants, so
    neither waits for more than one burst address of the other. A taken AR goes out on
    ``bus`` from a register stage, one cycle after its handshake with the manager: the bus's
    AR channel comes from registers only (no arbitration logic between the managers' and
    the subordinate's), and the stage takes the next AR in the cycle the subordinate takes
    the one it holds (``arready`` of the managers follows ``bus.arready`` through logic).

    R: ``arid`` is the manager's own (the bulk masters use ID 0), so with one ID the
    subordinate returns the bursts in AR order. The arbiter notes the owner of every AR
    it takes in a FIFO of ``outstanding`` entries and passes the R beats to the owner of the
    oldest: ``rvalid`` to it alone (the payload to both), ``bus.rready`` is its ``rready``
    (no buffer, no added latency); the entry goes with the burst's ``rlast`` beat. No AR is
    taken while the FIFO is full: at most ``outstanding`` bursts are in flight in all, the
    one in the register stage counted. The managers must therefore use the same ID (or the
    subordinate keep order across IDs); the ID is passed on, not rewritten.

    In-order read data is why a manager on this port must never ask for a burst it cannot
    take at once: its beats, waiting on the bus, would block every later burst, the other
    manager's too. The weight ring frees slots only as the engine computes, and the engine
    waits for the map DMA's strip; if the ring's burst were waiting for room ahead of the
    DMA's, neither would ever move (the ring's ``credit`` mode is what rules it out).

    Parameters
    ----------
    addr_width : int
        Byte address bits of the AXI bus.
    data_width : int
        Bus width in bits.
    outstanding : int
        Most bursts in flight in all (taken by the arbiter, last beat not yet passed on),
        at least 1.
    id_width : int
        AXI ID bits.

    Members
    -------
    m0, m1 : In(AxiReadSignature(addr_width, data_width, id_width))
        The managers' ports (the arbiter is their subordinate).
    bus : Out(AxiReadSignature(addr_width, data_width, id_width))
        The port to the subordinate.
    """

    def __init__(self, addr_width: int, data_width: int, outstanding: int = 2,
                 id_width: int = 1):
        if (not isinstance(outstanding, int) or isinstance(outstanding, bool)
                or outstanding < 1):
            raise ValueError(f"outstanding must be a positive integer, not {outstanding!r}")
        self._outstanding = outstanding
        sig = AxiReadSignature(addr_width, data_width, id_width)    # checks the widths
        super().__init__({"m0": In(sig), "m1": In(sig), "bus": Out(sig)})

    @property
    def outstanding(self) -> int:
        """Most bursts in flight in all."""
        return self._outstanding

    def elaborate(self, platform):
        m = Module()
        m0, m1, bus = self.m0, self.m1, self.bus
        m.submodules.owners = owners = fifo.SyncFIFO(width=1, depth=self._outstanding)

        # AR: the register stage (``bus.arvalid`` and the payload) takes an AR when it is
        # empty or hands its own over in this cycle, and the FIFO has room for the owner.
        last = Signal()                     # the manager taken last (1: m1)
        pick = Signal()                     # the manager to take (1: m1)
        take = Signal()
        m.d.comb += [
            pick.eq(m1.arvalid & (~m0.arvalid | ~last)),
            take.eq((~bus.arvalid | bus.arready) & owners.w_rdy),
            m0.arready.eq(take & ~pick),
            m1.arready.eq(take & pick),
        ]
        load = take & (m0.arvalid | m1.arvalid)
        with m.If(load):
            m.d.sync += [bus.arvalid.eq(1), last.eq(pick)]
            m.d.sync += [getattr(bus, name).eq(Mux(pick, getattr(m1, name), getattr(m0, name)))
                         for name in _AR_PAYLOAD]
        with m.Elif(bus.arready):
            m.d.sync += bus.arvalid.eq(0)
        m.d.comb += [owners.w_en.eq(load), owners.w_data.eq(pick)]

        # R: to the owner of the oldest burst in flight.
        head = owners.r_data
        for i, mgr in enumerate((m0, m1)):
            m.d.comb += [getattr(mgr, name).eq(getattr(bus, name)) for name in _R_PAYLOAD]
            m.d.comb += mgr.rvalid.eq(bus.rvalid & owners.r_rdy & (head == i))
        m.d.comb += [
            bus.rready.eq(owners.r_rdy & Mux(head, m1.rready, m0.rready)),
            owners.r_en.eq(bus.rvalid & bus.rready & bus.rlast),
        ]
        return m
