"""The weight image from the SPI flash into the board's SDRAM at power-up."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from dynfix.boards.byte_packer import BytePacker
from dynfix.boards.flash_image import (DEFAULT_FLASH, FlashCoding, check_image_reader,
                                       image_reader)
from dynfix.boards.registry import FlashSpec
from dynfix.hw.axi import AxiWriteSignature
from dynfix.hw.bulk_writer import BulkWriter

__all__ = ["SdramLoad", "check_sdram_payload"]


def check_sdram_payload(bus: AxiWriteSignature, payload: bytes) -> None:
    """Raise ``ValueError`` unless ``payload`` is whole bus words of ``bus`` that fit its
    address space."""
    nbytes = bus.data_width // 8
    if not payload or len(payload) % nbytes:
        raise ValueError(f"the bulk image is {bus.data_width}-bit bus words: a positive "
                         f"multiple of {nbytes} bytes, not {len(payload)}")
    if len(payload) > 1 << bus.addr_width:
        raise ValueError(f"{len(payload)} bytes do not fit the bulk port's {bus.addr_width} "
                         f"address bits")


class SdramLoad(wiring.Component):
    """Copies the flash payload ``payload`` (the bulk image's bus words, little-endian) to
    the SDRAM from address 0 after reset.

    An :class:`~dynfix.boards.spi_flash_reader.SPIFlashReader` (``boot=True``) wakes the
    flash, checks the header at ``flash``'s offset (default: the iCEBreaker's) against the
    one ``payload`` gives and streams the payload (a Huffman-coded one, ``coding``, through
    its decoder: :func:`~dynfix.boards.flash_image.image_reader`); a
    :class:`~dynfix.boards.byte_packer.BytePacker` makes bus words of its bytes, and a
    :class:`~dynfix.hw.bulk_writer.BulkWriter` writes them with INCR bursts through ``bus``
    (the SDRAM controller's write channels, which take nothing before the chip is
    initialised, so the flash simply waits). ``loaded`` rises when the last burst's write
    response is in: the SDRAM then holds the image, and the write channels are free for
    the engine.

    Members
    -------
    bus : Out(AxiWriteSignature)
    loaded : Out(1)
        The SDRAM holds the image; held.
    error : Out(1)
        The flash header did not match, or a write was refused; held.
    sck, cs_n, copi : Out(1)
    cipo : In(1)
        The SPI flash.
    """

    def __init__(self, bus: AxiWriteSignature, payload: bytes, *, clk_hz: int,
                 sck_div: int = 2, flash: FlashSpec | None = None,
                 coding: FlashCoding = FlashCoding.NONE):
        flash = flash or DEFAULT_FLASH
        check_sdram_payload(bus, payload)
        check_image_reader(payload, flash, clk_hz=clk_hz, sck_div=sck_div, coding=coding)
        self._bus, self._payload, self._flash = bus, bytes(payload), flash
        self._clk_hz, self._sck_div, self._coding = clk_hz, sck_div, coding
        super().__init__({
            "bus": Out(bus), "loaded": Out(1), "error": Out(1),
            "sck": Out(1), "cs_n": Out(1, init=1), "copi": Out(1), "cipo": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        bus, payload = self._bus, self._payload
        words = len(payload) // (bus.data_width // 8)
        m.submodules.flash = reader = image_reader(payload, self._flash, clk_hz=self._clk_hz,
                                                   sck_div=self._sck_div, coding=self._coding)
        m.submodules.pack = pack = BytePacker(bus.data_width // 8)
        m.submodules.writer = writer = BulkWriter(bus.addr_width, bus.data_width,
                                                  words.bit_length(), id_width=bus.id_width)
        wiring.connect(m, reader.o, pack.i)
        wiring.connect(m, pack.o, writer.i)
        wiring.connect(m, writer.bus, wiring.flipped(self.bus))
        requested = Signal()
        m.d.comb += [writer.req.payload.addr.eq(0), writer.req.payload.count.eq(words),
                     writer.req.valid.eq(~requested)]
        with m.If(writer.req.valid & writer.req.ready):
            m.d.sync += requested.eq(1)
        m.d.comb += [
            self.loaded.eq(requested & writer.done & ~writer.error),
            self.error.eq(reader.error | (requested & writer.error)),
            self.sck.eq(reader.sck), self.cs_n.eq(reader.cs_n), self.copi.eq(reader.copi),
            reader.cipo.eq(self.cipo),
        ]
        return m
