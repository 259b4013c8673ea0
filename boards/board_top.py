"""The board top: an inference engine behind a UART link, LEDs for busy and done; for an
engine whose weights live in SPRAM, the weight load from the SPI flash at power-up; for one
that reads them from bulk memory, that memory: in SPRAM, filled from the SPI flash at
power-up, or the SPI flash itself, read with quad reads at run time; with a PLL setting,
the whole design clocked from the PLL (held in reset until it locks)."""

from __future__ import annotations

from dataclasses import replace

from amaranth import ClockDomain, Const, Instance, Module, Mux, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from dynfix.boards.byte_packer import BytePacker
from dynfix.boards.flash_image import (DEFAULT_FLASH, FlashCoding, check_image_reader,
                                       flash_header, image_reader)
from dynfix.boards.host_link import HostLink
from dynfix.boards.pll import Ecp5Pll, Ice40Pll
from dynfix.boards.pll_clock import PllClock
from dynfix.boards.protocol import LinkInfo
from dynfix.boards.registry import FlashSpec
from dynfix.boards.sdram_load import SdramLoad, check_sdram_payload
from dynfix.boards.sdram_phy import IO_LATENCY, SdramPhy
from dynfix.boards.uart_rx import UARTRx
from dynfix.boards.uart_tx import UARTTx
from dynfix.hw.axi import (AxiReadSignature, AxiSignature, AxiWriteSignature, axi_halves,
                          word_addr_bits)
from dynfix.hw.config import BulkStore
from dynfix.hw.host_interface import EngineHostSignature
from dynfix.hw.ice40_spram import CELL_WIDTH, spram_cells
from dynfix.hw.qspi_flash_axi import QspiFlashAxi, check_flash_axi
from dynfix.hw.resources import Usage
from dynfix.hw.sdram_axi import SdramAxi, SdramPart, SdramPins, SdramTiming
from dynfix.hw.spram_axi import SpramAxi

__all__ = ["BoardTop", "BulkLoad", "bulk_cells", "bulk_store_refusal", "check_bulk",
           "check_link", "check_load", "usage", "FLASH_RESOURCE"]

#: The platform resource of the iCEBreaker's configuration flash in single-bit SPI mode, and
#: with its four IO lines (amaranth-boards ``SPIFlashResources``); a board's own are in its
#: ``FlashSpec``.
FLASH_RESOURCE = DEFAULT_FLASH.resource
FLASH_QUAD_RESOURCE = DEFAULT_FLASH.quad_resource

#: The board top's logic in LUT4s and FFs: UART receiver and transmitter, the host link's
#: protocol FSM, LED logic (synthesized alone; docs/boards.md).
LINK_USAGE = Usage(luts=260, ffs=150)
#: With the weights in SPRAM (``w_spram``) the board top loads them from the SPI flash: the
#: reader with its 16-byte header check, the byte pairing into halfwords (a byte and a flag)
#: and the link's hold (docs/boards.md, "Weights in SPRAM").
FLASH_LOAD_USAGE = Usage(luts=115, ffs=53)
#: With the weights in bulk memory (``w_bulk``) the board top keeps that memory in SPRAM and
#: fills it from the SPI flash (:class:`BulkLoad`): the reader with its header check, the
#: bytes packed into bus words, the memory's AXI4 read port and load stream. LUT4s and FFs
#: per bit of the bus and besides (synthesized alone at 32 and 64 bits; docs/boards.md).
#: The cells are not in it.
BULK_LOAD_PER_BIT = Usage(luts=2.35, ffs=2.05)
BULK_LOAD_BASE = Usage(luts=244, ffs=102)


#: With the weights read from the SPI flash at run time (``bulk_store: flash``): the quad
#: flash port (:class:`~dynfix.hw.qspi_flash_axi.QspiFlashAxi`), per bit of the bus and
#: besides (synthesized alone at 8, 16 and 32 bits; docs/boards.md).
FLASH_PORT_PER_BIT = Usage(luts=0.3, ffs=1.1)
FLASH_PORT_BASE = Usage(luts=337, ffs=148)


#: With the weights in the board's SDRAM (``bulk_store: sdram``): the controller
#: (:class:`~dynfix.hw.sdram_axi.SdramAxi`, its address registers and read and write FIFOs
#: in logic, a carry cell counted as two LUT4s, a LUT RAM cell as two) and the writer that
#: fills it at power-up (:class:`~dynfix.hw.bulk_writer.BulkWriter`), synthesized alone at
#: 16, 32 and 64 bits with ``synth_ecp5`` (docs/boards.md, "Weights in SDRAM"); the flash
#: reader besides, as :data:`FLASH_LOAD_USAGE`.
SDRAM_PORT_PER_BIT = Usage(luts=4.4, ffs=4.2)
SDRAM_PORT_BASE = Usage(luts=920, ffs=340)


#: With a Huffman-coded flash image (``FlashCoding.HUFFMAN``) the load decodes it
#: (:class:`~dynfix.boards.huffman_decoder.HuffmanDecoder`), per FPGA family: a code of all
#: 256 byte values with the longest words the image takes, for a payload of 1 MiB (the
#: counter of decoded bytes), synthesized alone with ``synth_ice40`` / ``synth_ecp5`` by
#: ``bench/huffman_load.py`` (an ECP5 carry cell counted as two LUT4s; its symbol table in
#: a block RAM on iCE40, in LUTs on ECP5; docs/boards.md, "Huffman-coded flash images").
#: Added to the flash load's.
DECODER_USAGE = {"ice40": Usage(luts=135, ffs=69, brams=1), "ecp5": Usage(luts=207, ffs=77)}


def _per_bit(base: Usage, per_bit: Usage, bus_bits: int) -> Usage:
    """``base`` plus ``per_bit`` for each of ``bus_bits`` bits."""
    return Usage(luts=base.luts + per_bit.luts * bus_bits, ffs=base.ffs + per_bit.ffs * bus_bits)


def sdram_port_usage(bus_bits: int) -> Usage:
    """The logic of the SDRAM bulk memory's port and load for a bus of ``bus_bits``."""
    return _per_bit(SDRAM_PORT_BASE, SDRAM_PORT_PER_BIT, bus_bits)


def flash_port_usage(bus_bits: int) -> Usage:
    """The logic of the quad flash port for a bus of ``bus_bits``."""
    return _per_bit(FLASH_PORT_BASE, FLASH_PORT_PER_BIT, bus_bits)


def bulk_load_usage(bus_bits: int) -> Usage:
    """The logic of :class:`BulkLoad` for a bus of ``bus_bits``."""
    return _per_bit(BULK_LOAD_BASE, BULK_LOAD_PER_BIT, bus_bits)


def usage(weight_load: bool, bulk_bits: int = 0,
          bulk_store: BulkStore = BulkStore.RAM, coding: FlashCoding = FlashCoding.NONE,
          family: str = "ice40") -> dict[str, Usage]:
    """The board top's blocks for the resource estimate (:func:`dynfix.hw.resources.estimate`
    ``extra``): the link, the flash load for an engine that loads its weights
    (``weight_load``), for one that reads them from bulk memory over a bus of ``bulk_bits``
    (0: none) the bulk memory's load and port (``bulk_store`` RAM), the flash port or the
    SDRAM's port and load; with a flash image stored with ``coding`` Huffman, its decoder
    on the FPGA ``family`` (:data:`DECODER_USAGE`) where a load reads it."""
    bulk = {}
    if bulk_bits:
        bulk = ({"flash_port": flash_port_usage(bulk_bits)} if bulk_store is BulkStore.FLASH
                else {"sdram_port": sdram_port_usage(bulk_bits) + FLASH_LOAD_USAGE}
                if bulk_store is BulkStore.SDRAM
                else {"bulk_load": bulk_load_usage(bulk_bits)})
    loads = weight_load or (bulk_bits and bulk_store is not BulkStore.FLASH)
    decoder = FlashCoding.parse(coding) is FlashCoding.HUFFMAN and loads
    return {"board_top": LINK_USAGE, **({"flash_load": FLASH_LOAD_USAGE} if weight_load else {}),
            **bulk, **({"flash_decoder": DECODER_USAGE[family]} if decoder else {})}


def coding_refusal(image: bool, run_time_flash: bool, coding: FlashCoding) -> str | None:
    """Why an engine cannot store its flash image with ``coding``, as the rest of a sentence
    whose subject is the engine; None when it can. ``image``: it has a flash image (weights
    loaded at power-up or a bulk memory); ``run_time_flash``: its bulk memory is the flash,
    read at random addresses at run time. One rule for ``dynfix synth``'s check
    (:func:`~dynfix.boards.design.check_coding`) and the board top's (:func:`check_load`)."""
    if coding is FlashCoding.NONE:
        return None
    if not image:
        return "keeps its weights in the bitstream: it has no flash image to code"
    if run_time_flash:
        return ("reads its weights from the flash at random addresses at run time "
                "(bulk_store: flash): their image stays uncoded")
    return None


def bulk_store_refusal(cfg, board, build: bool = False) -> str | None:
    """Why ``board`` cannot keep the bulk memory of the engine ``cfg`` (``w_bulk``), as the
    rest of a sentence whose subject is the engine; None when it can (its size is the
    caller's to check). One reason per store, shared by the fit's estimate and (``build``)
    the board top, which fills an SDRAM from the board's SPI flash and so needs one."""
    if not cfg.w_bulk:
        return None
    if cfg.bulk_store is BulkStore.SDRAM:
        if board.sdram is None:
            return (f"reads its weights from SDRAM (bulk_store: sdram); {board.name} has "
                    f"none: generate the engine for this board")
        if build and board.flash is None:
            return (f"reads its weights from SDRAM (bulk_store: sdram), copied there from "
                    f"the SPI flash at power-up; {board.name}'s board file has no flash "
                    f"section")
        return None
    if board.spram is not None:
        return None
    if cfg.bulk_store is BulkStore.FLASH:
        return (f"reads its weights from the SPI flash at run time (bulk_store: flash); dynfix "
                f"drives a flash that way on iCE40 boards only, not {board.name}: generate the "
                f"engine for this board")
    return (f"reads its weights from bulk memory, which the board top keeps in iCE40 SPRAM; "
            f"{board.name} has none: generate the engine for this board")


def bulk_cells(words: int, bus_bits: int) -> int:
    """SB_SPRAM256KA cells of the board top's bulk memory (:class:`BulkLoad`): ``words`` bus
    words of ``bus_bits`` bits (at least 2 words)."""
    rows, cols = spram_cells(max(2, words), bus_bits)
    return rows * cols


def check_link(engine: wiring.Signature, info: LinkInfo) -> None:
    """Raise unless an engine with the host interface ``engine`` carries the values the link
    ``info`` announces.

    It needs only the signature, so callers can check before they build anything (an
    elaboratable that is built and then dropped draws Amaranth's UnusedElaboratable warning).

    Raises
    ------
    TypeError
        ``engine`` is not an :class:`~dynfix.hw.host_interface.EngineHostSignature`.
    ValueError
        Its value width differs from the link's input or output width.
    """
    if not isinstance(engine, EngineHostSignature):
        raise TypeError(f"the engine's signature must be an EngineHostSignature, not {engine!r}")
    for name, bits in (("i", info.in_bits), ("o", info.out_bits)):
        if engine.data_bits != bits:
            raise ValueError(f"engine.{name} carries {engine.data_bits}-bit values, the link "
                             f"{bits}-bit ones")


def check_bulk(bus: AxiReadSignature, payload: bytes) -> None:
    """Raise ``ValueError`` unless :class:`BulkLoad` can hold the flash payload ``payload``
    (the bulk image's bus words) behind the read port ``bus``: a bus of whole SPRAM cells,
    whole bus words, all of them within the port's address space."""
    dw = bus.data_width
    if dw % CELL_WIDTH:
        raise ValueError(f"the bulk memory is iCE40 SPRAM, cells of {CELL_WIDTH} bits side "
                         f"by side: its bus must be a multiple of {CELL_WIDTH} bits wide, "
                         f"not {dw}")
    if not payload or len(payload) % (dw // 8):
        raise ValueError(f"the bulk image is {dw}-bit bus words: a positive multiple of "
                         f"{dw // 8} bytes, not {len(payload)}")
    words = len(payload) // (dw // 8)
    if max(2, words) > 1 << word_addr_bits(bus.addr_width, dw):
        raise ValueError(f"{words} bus words of {dw} bits do not fit the bulk port's "
                         f"{bus.addr_width} address bits")


def check_load(engine: EngineHostSignature, weights: bytes | None, clk_hz: int | None,
               sck_div: int = 2, bulk_store: BulkStore = BulkStore.RAM,
               flash: FlashSpec | None = None,
               coding: FlashCoding = FlashCoding.NONE) -> None:
    """Raise ``ValueError`` unless the flash payload ``weights`` suits an engine with the host
    interface ``engine``: given exactly when it has ``weight_load`` or ``bulk``, whole
    halfwords (``weight_load``) or what :func:`check_bulk` asks (``bulk``), a reader for
    them at ``clk_hz`` possible within ``flash`` (its offset and size; default: the
    iCEBreaker's), stored with ``coding`` (uncoded for the run-time flash port, which
    reads at random addresses). Needs no elaboratable (see :func:`check_link`)."""
    flash = flash or DEFAULT_FLASH
    coding = FlashCoding.parse(coding)
    if (engine.weight_load or engine.bulk is not None) != (weights is not None):
        raise ValueError("an engine with a weight-load or bulk-memory port needs the flash "
                         "payload (weights=), one without takes none")
    run_time_flash = engine.bulk is not None and bulk_store is BulkStore.FLASH
    why = coding_refusal(weights is not None, run_time_flash, coding)
    if why:
        raise ValueError(f"the engine {why}")
    if weights is None:
        return
    if run_time_flash:
        if clk_hz is None:
            raise ValueError("a flash port needs clk_hz (or a board)")
        check_flash_axi(offset=flash.offset, length=len(weights),
                        header=flash_header(weights, flash), clk_hz=clk_hz,
                        flash_bytes=flash.bytes)
        return
    if engine.bulk is not None and bulk_store is BulkStore.SDRAM:
        bus = engine.bulk
        check_sdram_payload(AxiWriteSignature(bus.addr_width, bus.data_width), weights)
    elif engine.bulk is not None:
        check_bulk(engine.bulk, weights)
    elif len(weights) % 2:
        raise ValueError(f"the weights are 16-bit halfwords: an even number of bytes, "
                         f"not {len(weights)}")
    if clk_hz is None:
        raise ValueError("a weight load needs clk_hz (or a board)")
    check_image_reader(weights, flash, clk_hz=clk_hz, sck_div=sck_div, coding=coding)


class BulkLoad(wiring.Component):
    """The bulk memory of an engine that reads its weights over AXI4 (``w_bulk``), in iCE40
    SPRAM, filled from the SPI flash at power-up.

    A :class:`~dynfix.hw.spram_axi.SpramAxi` of ``payload``'s bus words (at least 2) at the
    engine port's widths serves the engine's reads (``bus``); it is filled through its
    ``load`` stream (its AXI write side is left out: the engine never writes). After reset
    an :class:`SPIFlashReader` (``boot=True``) wakes the flash, checks the header at
    ``flash``'s offset (by default :data:`~dynfix.boards.flash_image.FLASH_OFFSET`) against
    the one ``payload`` gives and streams the payload (a Huffman-coded one, ``coding``,
    through its decoder: :func:`~dynfix.boards.flash_image.image_reader`); its bytes are
    packed little-endian
    into bus words for the memory (the last byte of a word goes straight through, the others
    wait in a shift register), written at word 0, 1, ... ``loaded`` rises when the last word
    is written: the memory then holds the image.

    Parameters
    ----------
    bus : AxiReadSignature
        The engine's read port (``EngineHostSignature.bulk``); the memory takes its widths.
    payload : bytes
        The flash payload: the bulk image's bus words, little-endian (:func:`check_bulk`).
    clk_hz : int
        The clock, for the flash's wake-up wait.
    sck_div : int
        Clock cycles per SPI clock period (even, at least 2).
    cell : bool
        SB_SPRAM256KA cells (True) or the behavioural twin for Amaranth's simulator.
    flash : FlashSpec or None
        Where the image is in the flash and the flash's size (default: the iCEBreaker's).
    coding : FlashCoding
        How the image stores the payload.

    Members
    -------
    bus : In(bus)
        The memory's read side: the engine's ``wbus`` connects to it.
    loaded : Out(1)
        The memory holds the image (the engine's ``bulk_ready``); held.
    error : Out(1)
        The flash header did not match; held.
    sck, cs_n, copi : Out(1)
    cipo : In(1)
        The SPI flash.
    """

    def __init__(self, bus: AxiReadSignature, payload: bytes, *, clk_hz: int,
                 sck_div: int = 2, cell: bool = True, flash: FlashSpec | None = None,
                 coding: FlashCoding = FlashCoding.NONE):
        flash = flash or DEFAULT_FLASH
        check_bulk(bus, payload)
        check_image_reader(payload, flash, clk_hz=clk_hz, sck_div=sck_div, coding=coding)
        self._bus, self._payload, self._flash = bus, bytes(payload), flash
        self._coding = coding
        self._clk_hz, self._sck_div, self._cell = clk_hz, sck_div, cell
        super().__init__({
            "bus": In(bus),
            "loaded": Out(1),
            "error": Out(1),
            "sck": Out(1), "cs_n": Out(1, init=1), "copi": Out(1), "cipo": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus, payload = self._bus, self._payload
        dw, aw, nbytes = bus.data_width, bus.addr_width, bus.data_width // 8
        words = len(payload) // nbytes
        m.submodules.flash = reader = image_reader(payload, self._flash, clk_hz=self._clk_hz,
                                                   sck_div=self._sck_div, coding=self._coding)
        m.submodules.memory = mem = SpramAxi(max(2, words), aw, dw, cell=self._cell,
                                             id_width=bus.id_width, load=True)
        reads, _ = axi_halves(mem.bus)
        wiring.connect(m, wiring.flipped(self.bus), reads)
        stored = Signal(range(words + 1))       # words written so far

        m.submodules.pack = pack = BytePacker(nbytes)
        wiring.connect(m, reader.o, pack.i)
        wiring.connect(m, pack.o, mem.load)
        with m.If(mem.load.valid & mem.load.ready):
            m.d.sync += stored.eq(stored + 1)

        m.d.comb += [
            self.loaded.eq(stored == words),
            self.error.eq(reader.error),
            self.sck.eq(reader.sck), self.cs_n.eq(reader.cs_n), self.copi.eq(reader.copi),
            reader.cipo.eq(self.cipo),
        ]
        return m


class BoardTop(wiring.Component):
    """Engine + :class:`HostLink` + UART receiver and transmitter (+ the weight load, or the
    bulk memory and its load).

    Built for a platform, the serial lines, LEDs and flash go to the pins the board file
    names; without one (simulation) they are the component's ports.

    An engine whose signature has ``weight_load`` (weights in iCE40 SPRAM) gets its weights
    from the SPI flash at power-up: an :class:`SPIFlashReader` wakes the flash, reads the
    16-byte header at the flash's offset (``flash_offset``, or the board's), compares it
    with the one ``weights`` gives (magic, version, length, CRC-32), and streams
    ``weights``' bytes (with ``flash_coding`` Huffman: the 20-byte header of the coded
    image, then its bytes decoded on the way); pairs of them (low byte first) go to the
    engine's ``wl`` as halfwords. Until the last one is taken the UART receiver's byte is
    held (not passed to the link), so nothing runs on partial weights and the first command
    byte sent early (``dynfix run-board`` always starts with ``P``) is answered after the
    load. If the header does not match the link never gets a byte, and both LEDs stay lit.

    An engine whose signature has ``bulk`` (weights in bulk memory, read over AXI4) gets
    that memory in SPRAM, filled from the SPI flash at power-up (:class:`BulkLoad`: the
    same reader and header check, ``weights`` being the bulk image's bus words); the
    engine's ``bulk_ready`` and ``loaded`` rise when the memory holds the image, and the
    UART's bytes are held until then as above.

    Parameters
    ----------
    engine : wiring.Component
        With an :class:`~dynfix.hw.host_interface.EngineHostSignature` whose ``data_bits``
        are the link's value widths (:func:`check_link`, which this constructor calls too).
    info : LinkInfo
        Input/output counts and widths of the loaded program.
    divisor : int
        Clock cycles per UART bit.
    board : Board or None
        Names the UART, LED and flash resources when built for a platform, and the clock;
        its ``flash`` (:class:`~dynfix.boards.registry.FlashSpec`) places the weights' image
        and sizes the flash (a board without one takes no engine that loads weights).
    weights : bytes or None
        The flash payload (:func:`~dynfix.boards.flash_image.weight_payload`, or for a bulk
        engine the bulk image's bus words, :func:`~dynfix.boards.flash_image.flash_payload`),
        required exactly when the engine has ``weight_load`` or ``bulk``.
    clk_hz : int or None
        The clock, for the flash's wake-up wait (default: the board's).
    sck_div : int
        Clock cycles per SPI clock period (even, at least 2).
    pll : Ice40Pll, Ecp5Pll or None
        Clock the design from this PLL setting (:class:`~dynfix.boards.pll_clock.PllClock`,
        held in reset until it locks) instead of from the oscillator itself (``divisor``
        and ``clk_hz`` are then for the PLL's frequency); the oscillator is the board's
        clock pin, or without a platform the ``osc`` port.
    flash_offset : int or None
        Where the weights' image starts in the flash, overriding the board's (None: the
        board's ``flash.offset``, without a board
        :data:`~dynfix.boards.flash_image.FLASH_OFFSET`); for simulations.
    flash_coding : FlashCoding
        How the flash image stores ``weights``: as they are, or Huffman-coded and decoded
        on the way from the flash (:func:`~dynfix.boards.flash_image.image_reader`); not
        for the run-time flash port.

    Members
    -------
    uart_rx : In(1)
    uart_tx : Out(1)
    led_busy : Out(1)
        An inference is running (or a command served, or the weights loading); with
        ``led_done`` lit too: the flash's weights do not match (``load_error``).
    led_done : Out(1)
        The last inference finished (cleared by the next start).
    loaded : Out(1)
        The engine's weights are in place (always 1 without a weight load).
    load_error : Out(1)
        The flash header did not match; the engine never runs.
    flash_sck, flash_cs_n, flash_copi : Out(1)
    flash_cipo : In(1)
        Only with a weight load or bulk memory: the SPI flash.
    osc : In(1)
        Only with ``pll``: the oscillator, when built without a platform (simulation).
    """

    def __init__(self, engine: wiring.Component, info: LinkInfo, *, divisor: int, board=None,
                 weights: bytes | None = None, clk_hz: int | None = None, sck_div: int = 2,
                 pll: Ice40Pll | Ecp5Pll | None = None,
                 bulk_store: BulkStore = BulkStore.RAM, flash_offset: int | None = None,
                 sdram_part: SdramPart | None = None,
                 flash_coding: FlashCoding = FlashCoding.NONE):
        check_link(engine.signature, info)
        self._load = engine.signature.weight_load
        self._bulk = engine.signature.bulk
        self._flash = self._load or self._bulk is not None
        self._quad = self._bulk is not None and bulk_store is BulkStore.FLASH
        self._sdram = None
        if self._bulk is not None and bulk_store is BulkStore.SDRAM:
            self._sdram = self._sdram_part(board, sdram_part, pll)
        spec = self._flash_spec = self._board_flash(board, flash_offset)
        if self._flash and clk_hz is None and board is not None:
            clk_hz = round(board.clock_mhz * 1e6)
        check_load(engine.signature, weights, clk_hz, sck_div, bulk_store, spec, flash_coding)
        self._coding = FlashCoding.parse(flash_coding)
        self._engine = engine
        self._info = info
        self._divisor = divisor
        self._board = board
        self._weights, self._clk_hz, self._sck_div = weights, clk_hz, sck_div
        self._pll = pll
        super().__init__({
            "uart_rx": In(1, init=1),
            "uart_tx": Out(1, init=1),
            "led_busy": Out(1),
            "led_done": Out(1),
            "loaded": Out(1),
            "load_error": Out(1),
            **({"flash_sck": Out(1), "flash_cs_n": Out(1, init=1)} if self._flash else {}),
            **({"flash_copi": Out(1), "flash_cipo": In(1)} if self._flash and not self._quad
               else {}),
            **({"flash_dq_o": Out(4), "flash_dq_oe": Out(4), "flash_dq_i": In(4)}
               if self._quad else {}),
            **({"osc": In(1)} if pll is not None else {}),
            **({"sdram": Out(SdramPins(self._sdram))} if self._sdram is not None else {}),
        })

    @property
    def pll(self) -> Ice40Pll | Ecp5Pll | None:
        """The PLL setting the design is clocked from (None: the oscillator)."""
        return self._pll

    @staticmethod
    def _sdram_part(board, part: SdramPart | None, pll) -> SdramPart:
        """The SDRAM the weights go to: ``part`` (simulation), else ``board``'s; raise
        ``ValueError`` when there is none, or when built for a board without the PLL's
        phase-shifted second output the SDRAM's clock comes from."""
        if part is not None:
            return part
        if board is None or board.sdram is None:
            raise ValueError("an engine with its weights in SDRAM needs a board with one "
                             "(or sdram_part=)")
        if not isinstance(pll, Ecp5Pll) or pll.clkos_phase is None:
            raise ValueError(f"the SDRAM on {board.name} is clocked from the PLL's second "
                             f"output: give an Ecp5Pll with clkos_phase")
        return board.sdram.part

    def _board_flash(self, board, flash_offset: int | None) -> FlashSpec:
        """The flash the weights load from: ``board``'s (without a board the iCEBreaker's),
        at ``flash_offset`` when given; raise ``ValueError`` when the engine loads weights
        and the board has no flash section, or reads them at run time (quad) and the flash
        has no quad resource."""
        spec = DEFAULT_FLASH if board is None else board.flash
        if spec is None:
            if self._flash:
                raise ValueError(f"board {board.name} has no flash section in its board "
                                 f"file: the board top cannot load the engine's weights from "
                                 f"flash there")
            spec = DEFAULT_FLASH
        if self._quad and spec.quad_resource is None:
            raise ValueError(f"the engine reads its weights from the SPI flash at run time "
                             f"(bulk_store: flash); board {board.name}'s flash has no quad "
                             f"resource")
        return spec if flash_offset is None else replace(spec, offset=flash_offset)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self._engine
        m.submodules.link = link = HostLink(self._info)
        m.submodules.uart_rx = rx = UARTRx(divisor=self._divisor)
        m.submodules.uart_tx = tx = UARTTx(divisor=self._divisor)

        on_board = platform is not None and self._board is not None
        if self._load:
            self._weight_load(m, engine)
        elif self._quad:
            self._bulk_flash(m, engine)
        elif self._sdram is not None:
            self._bulk_sdram(m, engine, platform if on_board else None)
        elif self._bulk is not None:
            self._bulk_load(m, engine)
        else:
            m.d.comb += self.loaded.eq(1)
        # The link takes bytes only once the weights are in place: the receiver holds one.
        m.d.comb += [
            link.rx.payload.eq(rx.o.payload),
            link.rx.valid.eq(rx.o.valid & self.loaded),
            rx.o.ready.eq(link.rx.ready & self.loaded),
        ]
        wiring.connect(m, link.tx, tx.i)
        wiring.connect(m, link.img, engine.i)
        wiring.connect(m, engine.o, link.logits)
        done = Signal()
        m.d.comb += [
            engine.start.eq(link.start),
            link.done.eq(engine.done),
            link.cycles.eq(engine.cycles),
            rx.rx.eq(self.uart_rx),
            self.uart_tx.eq(tx.tx),
            self.led_busy.eq(link.busy | ~self.loaded | self.load_error),
            self.led_done.eq(done | self.load_error),
        ]
        with m.If(link.start):
            m.d.sync += done.eq(0)
        with m.Elif(engine.done):
            m.d.sync += done.eq(1)

        if on_board:
            self._pins(m, platform)
        if self._pll is not None:
            pad = platform.request(platform.default_clk, dir="-") if on_board else None
            m.domains.sync = ClockDomain("sync")
            if self._sdram is not None and on_board:
                m.domains.sdram = ClockDomain("sdram", reset_less=True)
            m.submodules.clock = clock = PllClock(self._pll, pad)
            if not on_board:
                m.d.comb += clock.osc.eq(self.osc)
        return m

    def _weight_load(self, m: Module, engine) -> None:
        """The reader at boot, its bytes paired into ``engine.wl``'s halfwords."""
        m.submodules.flash = reader = image_reader(self._weights, self._flash_spec,
                                                   clk_hz=self._clk_hz, sck_div=self._sck_div,
                                                   coding=self._coding)
        m.submodules.pack = pack = BytePacker(2)
        wiring.connect(m, reader.o, pack.i)
        wiring.connect(m, pack.o, engine.wl)
        m.d.comb += [self.loaded.eq(reader.done), self.load_error.eq(reader.error)]
        self._flash_wires(m, reader)

    def _bulk_load(self, m: Module, engine) -> None:
        """The bulk memory, filled from the flash at boot, behind the engine's ``wbus``."""
        m.submodules.bulk = bulk = BulkLoad(self._bulk, self._weights, clk_hz=self._clk_hz,
                                            sck_div=self._sck_div, flash=self._flash_spec,
                                            coding=self._coding)
        wiring.connect(m, engine.wbus, bulk.bus)
        m.d.comb += [
            engine.bulk_ready.eq(bulk.loaded),
            self.loaded.eq(bulk.loaded),
            self.load_error.eq(bulk.error),
        ]
        self._flash_wires(m, bulk)

    def _bulk_sdram(self, m: Module, engine, platform) -> None:
        """The board's SDRAM as the bulk memory behind ``wbus``: its controller, the I/O
        registers and forwarded clock (``platform``'s pins, or the ``sdram`` port), and
        the copy of the weight image from the flash at boot, which owns the write channels
        until it is done; then the engine does (its maps, with ``m_bulk``)."""
        bus, part = self._bulk, self._sdram
        aw, dw, iw = bus.addr_width, bus.data_width, bus.id_width
        timing = SdramTiming.at(part, self._clk_hz, cas=None)
        m.submodules.sdram = ctrl = SdramAxi(aw, dw, part=part, timing=timing, id_width=iw,
                                             io_latency=IO_LATENCY)
        if platform is not None:
            port = platform.request(self._board.sdram.resource, 0, dir="-")
            m.submodules.sdram_phy = phy = SdramPhy(part, port)
        else:
            m.submodules.sdram_phy = phy = SdramPhy(part)
            wiring.connect(m, phy.pins, wiring.flipped(self.sdram))
        wiring.connect(m, ctrl.sdram, phy.ctrl)
        m.submodules.bulk = load = SdramLoad(
            AxiWriteSignature(aw, dw, iw), self._weights, clk_hz=self._clk_hz,
            sck_div=self._sck_div, flash=self._flash_spec, coding=self._coding)
        reads, writes = axi_halves(ctrl.bus)
        if isinstance(bus, AxiSignature):
            engine_reads, engine_writes = axi_halves(engine.wbus)
        else:
            engine_reads, engine_writes = engine.wbus, None
        wiring.connect(m, engine_reads, reads)
        owner = load.loaded                 # the engine's from the end of the load on
        for name, member in AxiWriteSignature(aw, dw, iw).members.items():
            sub, first = getattr(writes, name), getattr(load.bus, name)
            then = getattr(engine_writes, name) if engine_writes is not None else None
            if member.flow == Out:          # manager to subordinate
                m.d.comb += sub.eq(Mux(owner, then if then is not None else 0, first))
                continue
            handshake = name in ("awready", "wready", "bvalid")
            m.d.comb += first.eq(sub & ~owner if handshake else sub)
            if then is not None:
                m.d.comb += then.eq(sub & owner if handshake else sub)
        m.d.comb += [
            engine.bulk_ready.eq(load.loaded & ctrl.ready),
            self.loaded.eq(load.loaded),
            self.load_error.eq(load.error),
        ]
        self._flash_wires(m, load)

    def _bulk_flash(self, m: Module, engine) -> None:
        """The flash itself as the bulk memory, read with quad reads behind ``wbus``."""
        bus, flash = self._bulk, self._flash_spec
        m.submodules.bulk = port = QspiFlashAxi(
            bus.addr_width, bus.data_width, id_width=bus.id_width, offset=flash.offset,
            length=len(self._weights), header=flash_header(self._weights, flash),
            clk_hz=self._clk_hz, flash_bytes=flash.bytes)
        wiring.connect(m, engine.wbus, port.bus)
        m.d.comb += [
            engine.bulk_ready.eq(port.ready),
            self.loaded.eq(port.ready),
            self.load_error.eq(port.error),
            self.flash_sck.eq(port.sck),
            self.flash_cs_n.eq(port.cs_n),
            self.flash_dq_o.eq(port.dq_o),
            self.flash_dq_oe.eq(port.dq_oe),
            port.dq_i.eq(self.flash_dq_i),
        ]

    def _flash_wires(self, m: Module, reader) -> None:
        """The top's flash lines to and from ``reader`` (whatever drives the flash)."""
        m.d.comb += [
            self.flash_sck.eq(reader.sck),
            self.flash_cs_n.eq(reader.cs_n),
            self.flash_copi.eq(reader.copi),
            reader.cipo.eq(self.flash_cipo),
        ]

    def _pins(self, m: Module, platform) -> None:
        b = self._board
        uart = platform.request(b.uart_resource, b.uart_number, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [self.uart_rx.eq(rx_buf.i), tx_buf.o.eq(self.uart_tx)]
        if self._flash:
            self._flash_pins(m, platform)
        requested = {}
        for role, signal in (("busy", self.led_busy), ("done", self.led_done)):
            led = b.leds.get(role)
            if led is None:
                continue
            key = (led.resource, led.number)
            if key not in requested:
                requested[key] = platform.request(led.resource, led.number, dir="-")
            port = requested[key]
            if led.subsignal is not None:
                port = getattr(port, led.subsignal)
            buf = io.Buffer("o", port)
            m.submodules[f"led_{role}_buf"] = buf
            m.d.comb += buf.o.eq(signal)

    def _flash_pins(self, m: Module, platform) -> None:
        """The configuration flash (after configuration its pins are ordinary I/O, but for
        the clock of a flash with ``usrmclk``, :meth:`_usrmclk`), the board's
        ``flash.resource``: CS is active-low on the pin (the resource inverts it), WP and
        HOLD held inactive; or with the flash as the bulk memory its ``quad_resource``, all
        four IO lines, each with its own output enable."""
        spec = self._flash_spec
        # With USRMCLK the clock has no pin in the resource: the primitive drives it.
        clk = {} if spec.usrmclk else {"clk": self.flash_sck}
        if spec.usrmclk:
            self._usrmclk(m)
        if self._quad:
            flash = platform.request(spec.quad_resource, 0, dir="-")
            for name, value in {"cs": ~self.flash_cs_n, **clk}.items():
                m.submodules[f"flash_{name}_buf"] = buf = io.Buffer("o", getattr(flash, name))
                m.d.comb += buf.o.eq(value)
            for i in range(4):
                m.submodules[f"flash_dq{i}_buf"] = buf = io.Buffer("io", flash.dq[i])
                m.d.comb += [buf.o.eq(self.flash_dq_o[i]), buf.oe.eq(self.flash_dq_oe[i]),
                             self.flash_dq_i[i].eq(buf.i)]
            return
        flash = platform.request(spec.resource, 0, dir="-")
        outputs = {"cs": ~self.flash_cs_n, **clk, "copi": self.flash_copi, "wp": 0, "hold": 0}
        for name, value in outputs.items():
            if hasattr(flash, name):
                m.submodules[f"flash_{name}_buf"] = buf = io.Buffer("o", getattr(flash, name))
                m.d.comb += buf.o.eq(value)
        m.submodules.flash_cipo_buf = cipo = io.Buffer("i", flash.cipo)
        m.d.comb += self.flash_cipo.eq(cipo.i)

    def _usrmclk(self, m: Module) -> None:
        """The flash clock on an ECP5: the configuration clock pin (MCLK) is no user I/O, so
        SCK reaches it through the ``USRMCLK`` primitive, its driver always enabled
        (``USRMCLKTS`` low); kept, as nothing in the netlist reads the instance."""
        m.submodules.flash_usrmclk = Instance("USRMCLK", a_keep=1,
                                              i_USRMCLKI=self.flash_sck,
                                              i_USRMCLKTS=Const(0))
