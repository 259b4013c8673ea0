"""AXI4 manager ports for the bulk (external) memory, and the burst rules their masters obey.

The engine's next memory level (Qiu et al., FPGA'16: weights and maps in external memory,
tiles streamed into on-chip buffers) needs long sequential reads and writes that overlap.
AXI4 gives both: a burst moves up to 256 beats for one address, and reads (AR, R) and writes
(AW, W, B) have independent channels, so a tile's results go out while the next tile comes in.
It is the bus LiteDRAM's standalone controller and most DDR controllers (vendor MIGs, the
Zynq HP ports) offer, and cocotbext-axi's ``AxiRam`` is a well-kept simulation model of a
subordinate with per-channel backpressure control (pause generators), which the tests use.

The signatures are flat and their members are named as in the AXI specification, from the
manager's point of view (``araddr``, ``rdata``, ...). Amaranth joins a member path with
``__`` in Verilog (``bus__araddr``); a top level that faces a Verilog AXI subordinate or
cocotbext-axi (``AxiBus.from_prefix(dut, "m_axi")`` looks for ``m_axi_araddr``) takes
:func:`flat_members` as its own members and :func:`connect_flat` to its blocks' ports.

Only what a single-ID, in-order, INCR-only manager needs is there: no ``*lock``, ``*cache``,
``*prot``, ``*qos``, ``*region`` or ``*user``; a wrapper facing a subordinate that has them
ties them to zero (``axlock`` 0 is a normal, not exclusive, access; ``axprot`` 0 an
unprivileged, secure data access). All bursts use one ID, so a subordinate returns read data
and write responses in request order.

The rules the masters follow (:func:`page_words`, :func:`max_beats`): a burst is INCR, its
beats are whole bus words at word-aligned addresses (``axsize`` = the bus width), it has at
most :data:`MAX_BURST_BEATS` beats, and it never crosses a :data:`BOUNDARY_BYTES` boundary
(the AXI specification forbids a burst to cross a 4 KiB address boundary).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["BURST_FIXED", "BURST_INCR", "BURST_WRAP", "RESP_OKAY", "RESP_EXOKAY",
           "RESP_SLVERR", "RESP_DECERR", "MAX_BURST_BEATS", "BOUNDARY_BYTES", "LEN_BITS",
           "SIZE_BITS", "BURST_BITS", "RESP_BITS", "AxiReadSignature", "AxiWriteSignature",
           "AxiSignature", "BulkRequestLayout", "size_code", "word_addr_bits", "page_words",
           "max_beats", "check_max_burst", "burst_beats", "check_master", "flat_members",
           "connect_flat", "axi_halves", "times_const"]

#: ``axburst`` codes.
BURST_FIXED, BURST_INCR, BURST_WRAP = 0, 1, 2
#: ``rresp`` / ``bresp`` codes: only OKAY is a success for a normal (non-exclusive) access.
RESP_OKAY, RESP_EXOKAY, RESP_SLVERR, RESP_DECERR = 0, 1, 2, 3
#: The longest INCR burst of AXI4 (``axlen`` = beats - 1 in 8 bits).
MAX_BURST_BEATS = 256
#: No burst may cross an address boundary of this many bytes.
BOUNDARY_BYTES = 4096
#: Widths of ``axlen``, ``axsize``, ``axburst``, ``xresp``.
LEN_BITS, SIZE_BITS, BURST_BITS, RESP_BITS = 8, 3, 2, 2


def _check_widths(addr_width: int, data_width: int, id_width: int) -> None:
    for name, value in (("addr_width", addr_width), ("data_width", data_width),
                        ("id_width", id_width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise TypeError(f"{name} must be a positive integer, not {value!r}")
    if data_width < 8 or data_width > 1024 or data_width & (data_width - 1):
        raise ValueError(f"data_width must be a power of two from 8 to 1024, not {data_width}")
    if addr_width <= size_code(data_width):
        raise ValueError(f"addr_width {addr_width} leaves no word address bits for "
                         f"{data_width}-bit words")


def size_code(data_width: int) -> int:
    """``axsize`` of a burst of whole ``data_width``-bit words: log2 of the bytes a beat."""
    return (data_width // 8).bit_length() - 1


def word_addr_bits(addr_width: int, data_width: int) -> int:
    """Bits of a word address on a bus of ``addr_width`` byte-address bits."""
    return addr_width - size_code(data_width)


def page_words(data_width: int) -> int:
    """Words of ``data_width`` bits in a :data:`BOUNDARY_BYTES` page."""
    return BOUNDARY_BYTES * 8 // data_width


def max_beats(data_width: int) -> int:
    """The longest burst of ``data_width``-bit words: 256 beats, or a whole 4 KiB page when
    a page holds fewer words (buses wider than 128 bits)."""
    return min(MAX_BURST_BEATS, page_words(data_width))


def check_max_burst(max_burst: int | None) -> None:
    """A master's optional burst length limit: None (no limit but the bus's), or a power of
    two from 1 to :data:`MAX_BURST_BEATS`."""
    if max_burst is None:
        return
    if (not isinstance(max_burst, int) or isinstance(max_burst, bool) or max_burst < 1
            or max_burst > MAX_BURST_BEATS or max_burst & (max_burst - 1)):
        raise ValueError(f"max_burst must be a power of two from 1 to {MAX_BURST_BEATS}, "
                         f"not {max_burst!r}")


def burst_beats(m: Module, addr: Value, left: Value, data_width: int,
                max_burst: int | None = None) -> Signal:
    """Beats of the next burst from word address ``addr`` with ``left`` words to go (a
    combinational signal added to ``m``): the fewest of ``left``, :func:`max_beats`,
    ``max_burst`` (if given: a power of two, see :func:`check_max_burst`) and the words up
    to the next 4 KiB boundary. Zero when ``left`` is.

    A master whose receiver holds only a few words (a ring that must take every burst it
    asks for at once, so that its read data never waits on a bus shared with other masters)
    limits its bursts with ``max_burst``."""
    # Short carry chains (the burst length is on the bulk port's clock path): the page's
    # end is nearer than ``top`` words only in the page's last ``top``-word block (the page
    # is a power of two of at least ``top`` words there), and ``left`` is below the cap only
    # if its bits above the cap's width are 0.
    check_max_burst(max_burst)
    page = page_words(data_width)
    top = max_beats(data_width)                 # a power of two dividing the page
    if max_burst is not None:
        top = min(top, max_burst)               # also a power of two dividing the page
    low = addr[:top.bit_length() - 1]
    cap = Signal(range(top + 1))                # 1 .. top
    last_block = Const(1)
    if page > top:
        last_block = addr[top.bit_length() - 1:page.bit_length() - 1].all()
    m.d.comb += cap.eq(Mux(last_block, top - low, top))
    width = len(cap)
    below = left[:width] < cap
    if len(left) > width:
        below = ~left[width:].any() & below
    beats = Signal(range(top + 1))
    m.d.comb += beats.eq(Mux(below, left, cap))
    return beats


class _AxiSignature(wiring.Signature):
    """Parameters (checked), equality and repr shared by the three signatures; each gives
    its members by ``members_for``."""

    def __init__(self, addr_width: int, data_width: int, id_width: int = 1):
        _check_widths(addr_width, data_width, id_width)
        self._addr_width, self._data_width, self._id_width = addr_width, data_width, id_width
        super().__init__(self.members_for(addr_width, data_width, id_width))

    @staticmethod
    def members_for(addr_width: int, data_width: int, id_width: int = 1) -> dict:
        raise NotImplementedError

    @property
    def addr_width(self) -> int:
        return self._addr_width

    @property
    def data_width(self) -> int:
        return self._data_width

    @property
    def id_width(self) -> int:
        return self._id_width

    def __eq__(self, other):
        return (type(other) is type(self) and other.addr_width == self.addr_width
                and other.data_width == self.data_width and other.id_width == self.id_width)

    def __repr__(self):
        return (f"{type(self).__name__}({self.addr_width}, {self.data_width}, "
                f"id_width={self.id_width})")


class AxiReadSignature(_AxiSignature):
    """The read half of an AXI4 manager port: the read address (AR) and read data (R)
    channels, as the manager sees them.

    Parameters
    ----------
    addr_width : int
        Byte address bits.
    data_width : int
        Bus width in bits, a power of two from 8 to 1024.
    id_width : int
        Transaction ID bits (the masters here use ID 0 only).

    Members
    -------
    arid : Out(id_width)
    araddr : Out(addr_width)        byte address of the burst's first beat
    arlen : Out(8)                  beats - 1
    arsize : Out(3)                 log2 of the bytes a beat
    arburst : Out(2)                :data:`BURST_INCR`
    arvalid : Out(1)
    arready : In(1)
    rid : In(id_width)
    rdata : In(data_width)
    rresp : In(2)                   :data:`RESP_OKAY` or an error code
    rlast : In(1)                   the burst's last beat
    rvalid : In(1)
    rready : Out(1)
    """

    @staticmethod
    def members_for(addr_width: int, data_width: int, id_width: int = 1) -> dict:
        """The members (for a signature that has the read channels among others)."""
        return {
            "arid": Out(id_width), "araddr": Out(addr_width), "arlen": Out(LEN_BITS),
            "arsize": Out(SIZE_BITS), "arburst": Out(BURST_BITS),
            "arvalid": Out(1), "arready": In(1),
            "rid": In(id_width), "rdata": In(data_width), "rresp": In(RESP_BITS),
            "rlast": In(1), "rvalid": In(1), "rready": Out(1),
        }


class AxiWriteSignature(_AxiSignature):
    """The write half of an AXI4 manager port: the write address (AW), write data (W) and
    write response (B) channels, as the manager sees them. AXI4 has no ``wid``: write data
    follows the order of the write addresses.

    Parameters
    ----------
    addr_width, data_width, id_width : int
        As for :class:`AxiReadSignature`.

    Members
    -------
    awid : Out(id_width)
    awaddr : Out(addr_width)
    awlen : Out(8)
    awsize : Out(3)
    awburst : Out(2)
    awvalid : Out(1)
    awready : In(1)
    wdata : Out(data_width)
    wstrb : Out(data_width // 8)    byte enables
    wlast : Out(1)                  the burst's last beat
    wvalid : Out(1)
    wready : In(1)
    bid : In(id_width)
    bresp : In(2)
    bvalid : In(1)
    bready : Out(1)
    """

    @staticmethod
    def members_for(addr_width: int, data_width: int, id_width: int = 1) -> dict:
        """The members (for a signature that has the write channels among others)."""
        return {
            "awid": Out(id_width), "awaddr": Out(addr_width), "awlen": Out(LEN_BITS),
            "awsize": Out(SIZE_BITS), "awburst": Out(BURST_BITS),
            "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
            "wvalid": Out(1), "wready": In(1),
            "bid": In(id_width), "bresp": In(RESP_BITS), "bvalid": In(1), "bready": Out(1),
        }


class AxiSignature(_AxiSignature):
    """A whole AXI4 manager port: the members of :class:`AxiReadSignature` and of
    :class:`AxiWriteSignature` side by side (all five channels).

    Parameters
    ----------
    addr_width, data_width, id_width : int
        As for :class:`AxiReadSignature`.
    """

    @staticmethod
    def members_for(addr_width: int, data_width: int, id_width: int = 1) -> dict:
        """The read channels' members and the write channels'."""
        return {**AxiReadSignature.members_for(addr_width, data_width, id_width),
                **AxiWriteSignature.members_for(addr_width, data_width, id_width)}


def check_master(outstanding: int, count_bits: int) -> None:
    """The parameters a bulk master (reader or writer) shares: at least one burst in flight,
    at least one bit of word count."""
    if outstanding < 1:
        raise ValueError(f"outstanding must be at least 1, not {outstanding}")
    if count_bits < 1:
        raise ValueError(f"count_bits must be at least 1, not {count_bits}")


class BulkRequestLayout(data.StructLayout):
    """A bulk transfer request: ``count`` consecutive words from word address ``addr``
    (byte address ``addr << size_code(data_width)``), the payload of the bulk reader's and
    writer's request streams."""

    def __init__(self, addr_bits: int, count_bits: int):
        super().__init__({"addr": unsigned(addr_bits), "count": unsigned(count_bits)})


def flat_members(prefix: str, signature: wiring.Signature) -> dict[str, wiring.Member]:
    """``signature``'s members renamed ``{prefix}_{name}``, to merge into a top level's own
    signature so that its Verilog ports read ``m_axi_araddr`` (not ``m_axi__araddr``)."""
    return {f"{prefix}_{name}": member for name, member in signature.members.items()}


def connect_flat(m: Module, top: wiring.Component, prefix: str, interface) -> None:
    """Connect ``interface`` (a block's port, e.g. ``reader.bus``) to ``top``'s members
    ``{prefix}_{name}`` made by :func:`flat_members` from a signature of the same flow:
    the block drives the top's outputs and the top's inputs drive the block."""
    for name, member in interface.signature.members.items():
        port, inner = getattr(top, f"{prefix}_{name}"), getattr(interface, name)
        if member.flow == Out:
            m.d.comb += port.eq(inner)
        else:
            m.d.comb += inner.eq(port)


class _Half:
    """An interface object made of some of another one's members (see :func:`axi_halves`)."""

    def __init__(self, signature: wiring.Signature, interface):
        self.signature = signature
        for name in signature.members:
            setattr(self, name, getattr(interface, name))


def axi_halves(bus) -> tuple[object, object]:
    """The read half (AR, R) and the write half (AW, W, B) of ``bus``, an interface of an
    :class:`~dynfix.hw.axi.AxiSignature` (or of a flipped one), as interface objects of
    :class:`~dynfix.hw.axi.AxiReadSignature` and :class:`~dynfix.hw.axi.AxiWriteSignature`
    (flipped likewise) over the same signals: ``wiring.connect`` joins a
    :class:`~dynfix.hw.bulk_reader.BulkReader`'s and a
    :class:`~dynfix.hw.bulk_writer.BulkWriter`'s ``bus`` to one full port with them."""
    sig = bus.signature
    flipped = isinstance(sig, wiring.FlippedSignature)
    full = sig.flip() if flipped else sig
    if not isinstance(full, AxiSignature):
        raise TypeError(f"an AxiSignature interface is needed, not one of {sig!r}")
    halves = []
    for cls in (AxiReadSignature, AxiWriteSignature):
        half = cls(full.addr_width, full.data_width, full.id_width)
        halves.append(_Half(half.flip() if flipped else half, bus))
    return halves[0], halves[1]


def times_const(value: Value, k: int) -> Value:
    """``value * k`` for a constant ``k`` as a sum of shifted copies: a shift when ``k`` is a
    power of two, a few adders otherwise, and never a DSP multiplier (synthesis may map a
    ``*`` to one, which no resource estimate counts and an engine using every DSP block has
    none left for)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    terms = [Cat(Const(0, i), value) for i in range(k.bit_length()) if k >> i & 1]
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total
