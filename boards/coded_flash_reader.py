"""The power-up reader of a Huffman-coded flash image: the coded bytes out of the SPI flash,
decoded on the way (``boards/flash_image.py``, ``FlashCoding.HUFFMAN``)."""

from __future__ import annotations

from collections.abc import Sequence

from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from dynfix.boards.huffman_decoder import HuffmanDecoder, check_decoder
from dynfix.boards.spi_flash_reader import FLASH_BYTES, SPIFlashReader, check_reader

__all__ = ["CodedFlashReader"]


class CodedFlashReader(wiring.Component):
    """An :class:`~dynfix.boards.spi_flash_reader.SPIFlashReader` (``boot=True``) that
    checks the image's header and streams its ``length`` coded bytes into a
    :class:`~dynfix.boards.huffman_decoder.HuffmanDecoder` of the code ``lengths``, which
    gives the ``decoded`` bytes of the payload: the reader's members that a load uses, ``o``
    carrying the decoded bytes and ``done`` rising when the last of them is taken.

    Parameters
    ----------
    lengths : sequence of int
        The code length of each byte value (the image's code).
    decoded : int
        Bytes of the payload (the header's length).
    offset, length, clk_hz, sck_div, header, flash_bytes
        As :class:`~dynfix.boards.spi_flash_reader.SPIFlashReader`'s: ``length`` is the
        coded bytes, ``header`` the coded image's.

    Members
    -------
    o : Out(stream.Signature(8))
        The payload's bytes, decoded.
    done : Out(1)
        All ``decoded`` bytes were taken; held.
    error : Out(1)
        The header did not match (nothing is streamed); held.
    sck, cs_n, copi : Out(1)
    cipo : In(1)
        The SPI flash.
    """

    def __init__(self, *, lengths: Sequence[int], decoded: int, offset: int, length: int,
                 clk_hz: int, sck_div: int = 2, header: bytes = b"",
                 flash_bytes: int = FLASH_BYTES):
        check_reader(offset=offset, length=length, clk_hz=clk_hz, sck_div=sck_div,
                     header=header, flash_bytes=flash_bytes)
        check_decoder(lengths, decoded)
        self._reader = dict(offset=offset, length=length, clk_hz=clk_hz, sck_div=sck_div,
                            header=bytes(header), flash_bytes=flash_bytes)
        self._lengths, self._decoded = list(lengths), decoded
        super().__init__({
            "o": Out(stream.Signature(8)),
            "done": Out(1),
            "error": Out(1),
            "sck": Out(1), "cs_n": Out(1, init=1), "copi": Out(1), "cipo": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = reader = SPIFlashReader(boot=True, **self._reader)
        m.submodules.decoder = decoder = HuffmanDecoder(self._lengths, self._decoded)
        wiring.connect(m, reader.o, decoder.i)
        wiring.connect(m, decoder.o, wiring.flipped(self.o))
        m.d.comb += [
            self.done.eq(decoder.done),
            self.error.eq(reader.error),
            self.sck.eq(reader.sck), self.cs_n.eq(reader.cs_n), self.copi.eq(reader.copi),
            reader.cipo.eq(self.cipo),
        ]
        return m
