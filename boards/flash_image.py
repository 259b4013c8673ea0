"""The weights' image in the board's SPI flash, next to the bitstream.

Where it goes and how it is programmed is the board's (its board file's ``flash`` section,
:class:`~dynfix.boards.registry.FlashSpec`: the ULX3S's at 4 MiB); the functions here take
that as ``flash``, and without one assume the iCEBreaker's (:data:`DEFAULT_FLASH`): at
:data:`FLASH_OFFSET` = 1 MiB of its 16 MiB flash, well past the UP5K bitstream at 0.

Layout (all numbers little-endian), at the flash's offset:

====== ===== ==========================================================
offset bytes field
====== ===== ==========================================================
0      4     magic ``b"DYNF"``
4      4     format version (:data:`FORMAT_VERSION`)
8      4     payload length in bytes
12     4     CRC-32 of the payload (zlib's / IEEE 802.3, as ``zlib.crc32``)
16     n     the payload
====== ===== ==========================================================

The payload is one memory's words in address order, each as ``ceil(width / 8)`` bytes,
least significant byte first (:func:`flash_payload`). The bitstream reads it with
:class:`~dynfix.boards.spi_flash_reader.SPIFlashReader` (``header=flash_header(payload)``
checks the 16 header bytes against the ones it was built with).

**Huffman-coded images** (``coding=FlashCoding.HUFFMAN``, format :data:`CODED_VERSION`)
store the payload's bytes in a canonical Huffman code of at most :data:`MAX_CODE_BITS` bits
a word (:func:`coded_payload`); the bitstream decodes them at load
(:class:`~dynfix.boards.coded_flash_reader.CodedFlashReader`), with the code built in. The
header keeps the fields above for the *decoded* payload (its length and CRC-32) and adds
the coded length; the code follows the coded bytes, for readers on the host:

====== ===== ==========================================================
offset bytes field
====== ===== ==========================================================
0      4     magic ``b"DYNF"``
4      4     format version (:data:`CODED_VERSION`)
8      4     payload length in bytes (decoded)
12     4     CRC-32 of the decoded payload
16     4     coded length ``c`` in bytes
20     c     the code words, MSB first, the last byte padded with zeros
20 + c 128   the code: byte value ``v``'s word length in the low nibble of byte ``v // 2``
             (even ``v``) or its high nibble (odd ``v``), 0 for a value that does not occur
====== ===== ==========================================================

The bitstream checks the 20 header bytes and reads the ``c`` coded bytes; it never reads
the code at the end. An uncoded image (the default) is format 1, byte for byte as before.
The run-time quad-flash bulk memory (``bulk_store: flash``) reads the payload at random
addresses and takes only uncoded images.
"""

from __future__ import annotations

import enum
import functools
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dynfix.boards.coded_flash_reader import CodedFlashReader
from dynfix.boards.registry import FlashSpec
from dynfix.errors import DynfixError, member
from dynfix.hw.ice40_spram import CELL_WIDTH, load_image
from dynfix.quant.huffman import huffman_decode, huffman_encode, kraft_sum, limited_lengths
from .spi_flash_reader import FLASH_BYTES, SPIFlashReader, byte_cycles, check_reader

__all__ = ["FLASH_OFFSET", "FLASH_BYTES", "FORMAT_VERSION", "MAGIC", "HEADER_BYTES",
           "PAYLOAD_BYTES", "DEFAULT_FLASH",
           "FILE_NAME", "FlashHeader", "flash_payload", "weight_payload", "flash_header",
           "flash_image", "read_header", "payload_bytes", "program_commands",
           "bitstream_command", "write_flash_files", "check_image_reader", "image_reader",
           "FlashCoding", "CODED_VERSION", "CODED_HEADER_BYTES", "MAX_CODE_BITS",
           "CODE_TABLE_BYTES", "CodedPayload", "coded_payload", "stored_payload",
           "read_payload", "load_figures"]

MAGIC = b"DYNF"
FORMAT_VERSION = 1
#: Where the image starts in the iCEBreaker's flash: 1 MiB, past the bitstream at 0.
FLASH_OFFSET = 0x100000
FILE_NAME = "weights.flash.bin"
_HEADER = struct.Struct("<4sIII")
HEADER_BYTES = _HEADER.size
#: The format of a Huffman-coded image.
CODED_VERSION = 2
_CODED_HEADER = struct.Struct("<4sIIII")
CODED_HEADER_BYTES = _CODED_HEADER.size
#: The longest word of a coded image's code. The decoder compares against one constant
#: word count per length (a multiplexer of as many entries) and keeps the word so far in
#: registers of this many bits, while the byte values themselves sit in one 256-entry
#: table whatever the limit; a byte code needs at least 8 bits. An optimal code for a
#: payload of a few hundred kB gives its rarest values (seen a handful of times) longer
#: words; the limit shortens those at a small cost in coded size, measured on the MLPerf
#: Tiny payloads in ``bench/results/huffman_load.md``; every length fits the code table's
#: nibble.
MAX_CODE_BITS = 12
#: The code at the end of a coded image: 256 word lengths of 4 bits.
CODE_TABLE_BYTES = 128
#: The iCEBreaker's flash (``boards/icebreaker.yaml``, ``flash``): what the functions here
#: and the board top assume when given no board's.
DEFAULT_FLASH = FlashSpec(
    resource="spi_flash_1x", quad_resource="spi_flash_4x", bytes=FLASH_BYTES,
    offset=FLASH_OFFSET, usrmclk=False,
    program=("iceprog -o {offset_mib}M {file}",
             "openFPGALoader -b ice40_generic -f -o {offset:#x} {file}"),
    program_bitstream="iceprog {file}")


def payload_bytes(flash: FlashSpec | None = None) -> int:
    """The most payload ``flash`` (default: :data:`DEFAULT_FLASH`) holds past its offset and
    the header."""
    flash = flash or DEFAULT_FLASH
    return flash.bytes - flash.offset - HEADER_BYTES


#: The most payload the iCEBreaker's flash holds past the bitstream and the header.
PAYLOAD_BYTES = payload_bytes(DEFAULT_FLASH)


class FlashCoding(enum.Enum):
    """How the payload is stored in the flash."""

    #: As it is (format 1).
    NONE = "none"
    #: Its bytes Huffman-coded (format 2), decoded by the bitstream at load.
    HUFFMAN = "huffman"

    @classmethod
    def parse(cls, value) -> "FlashCoding":
        """A coding from its name (``none``, ``huffman``)."""
        return member(cls, value, "the flash coding")


@dataclass(frozen=True)
class FlashHeader:
    """The header's fields (``coded_length`` of a coded image, else None)."""
    magic: bytes
    version: int
    length: int
    crc32: int
    coded_length: int | None = None

    @property
    def coding(self) -> FlashCoding:
        return FlashCoding.NONE if self.coded_length is None else FlashCoding.HUFFMAN


@dataclass(frozen=True)
class CodedPayload:
    """A payload Huffman-coded for the flash: the code (a word length per byte value) and
    the code words, MSB first, the last byte padded with zeros."""
    lengths: tuple[int, ...]
    coded: bytes

    def table(self) -> bytes:
        """The code as the image stores it: two lengths a byte, the even value's low."""
        n = np.asarray(self.lengths, np.uint8)
        return (n[0::2] | (n[1::2] << 4)).tobytes()

    @classmethod
    def from_table(cls, table: bytes, coded: bytes) -> "CodedPayload":
        """The code of :meth:`table`'s bytes, with the code words ``coded``."""
        b = np.frombuffer(table, np.uint8)
        return cls(tuple(int(v) for v in np.stack([b & 15, b >> 4], 1).ravel()), coded)


@functools.lru_cache(maxsize=8)
def coded_payload(payload: bytes) -> CodedPayload:
    """``payload`` Huffman-coded: its bytes in the canonical code, at most
    :data:`MAX_CODE_BITS` bits a word, that is optimal for their frequencies
    (:func:`~dynfix.quant.huffman.limited_lengths`)."""
    if not payload:
        raise DynfixError("the flash payload is empty")
    data = np.frombuffer(payload, np.uint8)
    lengths = limited_lengths(np.bincount(data, minlength=256), MAX_CODE_BITS)
    coded, _ = huffman_encode(data, lengths)
    return CodedPayload(tuple(int(n) for n in lengths), coded)


def stored_payload(payload: bytes, coding: FlashCoding = FlashCoding.NONE) -> bytes:
    """What follows the header and the bitstream reads: ``payload``, or its code words."""
    if FlashCoding.parse(coding) is FlashCoding.NONE:
        return bytes(payload)
    return coded_payload(bytes(payload)).coded


def flash_payload(words: list[int], width_bits: int) -> bytes:
    """``words`` (unsigned bit patterns of ``width_bits`` each) as ``ceil(width_bits / 8)``
    bytes apiece, little-endian, in address order."""
    if width_bits < 1:
        raise DynfixError(f"a flash payload needs a word width of at least 1 bit, "
                          f"got {width_bits}")
    if not words:
        raise DynfixError("a flash payload needs at least one word, got none")
    nbytes = (width_bits + 7) // 8
    out = bytearray()
    for addr, w in enumerate(words):
        if not 0 <= w < 1 << width_bits:
            raise DynfixError(f"word {w} at address {addr} does not fit {width_bits} "
                              f"unsigned bits (pass the memory's bit patterns)")
        out += int(w).to_bytes(nbytes, "little")
    return bytes(out)


def weight_payload(words: list[int], depth: int, width_bits: int) -> bytes:
    """The payload for an engine whose weights live in SPRAM (``EngineConfig.w_spram``): the
    weight words (``weights.hex``, unsigned ``width_bits`` each) padded with zeros to the
    memory's ``depth``, as the 16-bit halfwords its ``wl`` port takes
    (:func:`~dynfix.hw.ice40_spram.load_image`), two bytes each, little-endian. The board top
    streams it from the flash at power-up; the simulation host streams the same halfwords."""
    return flash_payload(load_image(words, depth, width_bits), CELL_WIDTH)


def _size(n: int) -> str:
    """``n`` bytes in words: whole MiB as such."""
    return f"{n >> 20} MiB" if n and not n % (1 << 20) else f"{n} bytes"


def flash_header(payload: bytes, flash: FlashSpec | None = None,
                 coding: FlashCoding = FlashCoding.NONE) -> bytes:
    """The header bytes for ``payload`` stored with ``coding`` (16, or 20 coded), whose
    image must fit ``flash`` (default: :data:`DEFAULT_FLASH`) past its offset."""
    flash = flash or DEFAULT_FLASH
    if not payload:
        raise DynfixError("the flash payload is empty")
    if FlashCoding.parse(coding) is FlashCoding.NONE:
        if len(payload) > payload_bytes(flash):
            raise DynfixError(f"a payload of {len(payload)} bytes does not fit the flash "
                              f"after {flash.offset:#x} ({_size(flash.bytes)})")
        return _HEADER.pack(MAGIC, FORMAT_VERSION, len(payload), zlib.crc32(payload))
    coded = coded_payload(bytes(payload)).coded
    size = CODED_HEADER_BYTES + len(coded) + CODE_TABLE_BYTES
    if size > flash.bytes - flash.offset:
        raise DynfixError(f"a payload of {len(payload)} bytes, {len(coded)} Huffman-coded, "
                          f"does not fit the flash after {flash.offset:#x} "
                          f"({_size(flash.bytes)})")
    return _CODED_HEADER.pack(MAGIC, CODED_VERSION, len(payload), zlib.crc32(payload),
                              len(coded))


def _reader_args(payload: bytes, flash: FlashSpec | None, clk_hz: int, sck_div: int,
                 coding: FlashCoding) -> dict:
    flash = flash or DEFAULT_FLASH
    return dict(offset=flash.offset, length=len(stored_payload(payload, coding)),
                clk_hz=clk_hz, sck_div=sck_div, header=flash_header(payload, flash, coding),
                flash_bytes=flash.bytes)


def check_image_reader(payload: bytes, flash: FlashSpec | None, *, clk_hz: int,
                       sck_div: int = 2, coding: FlashCoding = FlashCoding.NONE) -> None:
    """Raise ``ValueError`` unless :func:`image_reader` can read ``payload`` (as
    :func:`~dynfix.boards.spi_flash_reader.check_reader` says); builds nothing."""
    check_reader(**_reader_args(payload, flash, clk_hz, sck_div, coding))


def image_reader(payload: bytes, flash: FlashSpec | None, *, clk_hz: int, sck_div: int = 2,
                 coding: FlashCoding = FlashCoding.NONE
                 ) -> SPIFlashReader | CodedFlashReader:
    """The power-up reader (``boot=True``) of ``payload``'s image in ``flash`` (default:
    :data:`DEFAULT_FLASH`) stored with ``coding``: it wakes the flash, checks the header at
    the flash's offset against the one ``payload`` gives, and streams the payload (a coded
    one decoded: :class:`~dynfix.boards.coded_flash_reader.CodedFlashReader`)."""
    args = _reader_args(payload, flash, clk_hz, sck_div, coding)
    if FlashCoding.parse(coding) is FlashCoding.NONE:
        return SPIFlashReader(boot=True, **args)
    return CodedFlashReader(lengths=coded_payload(bytes(payload)).lengths,
                            decoded=len(payload), **args)


def flash_image(payload: bytes, flash: FlashSpec | None = None,
                coding: FlashCoding = FlashCoding.NONE) -> bytes:
    """The bytes to write at ``flash``'s offset (default: :data:`FLASH_OFFSET`): header +
    payload, or coded, header + code words + code."""
    header = flash_header(payload, flash, coding)
    if FlashCoding.parse(coding) is FlashCoding.NONE:
        return header + bytes(payload)
    c = coded_payload(bytes(payload))
    return header + c.coded + c.table()


def read_header(image: bytes) -> FlashHeader:
    """The header of ``image`` (as :func:`flash_image` gives it), checked: magic, version,
    lengths, the CRC of the payload (a coded one decoded)."""
    return _read(image)[0]


def read_payload(image: bytes) -> bytes:
    """The payload of ``image`` (as :func:`flash_image` gives it; a coded one decoded),
    checked as :func:`read_header` does."""
    return _read(image)[1]


def _read(image: bytes) -> tuple[FlashHeader, bytes]:
    image = bytes(image)
    if len(image) < HEADER_BYTES:
        raise DynfixError(f"a flash image needs at least {HEADER_BYTES} bytes, "
                          f"got {len(image)}")
    h = FlashHeader(*_HEADER.unpack_from(image))
    if h.magic != MAGIC:
        raise DynfixError(f"not a dynfix flash image (magic {h.magic!r}, not {MAGIC!r})")
    if h.version == FORMAT_VERSION:
        payload = image[HEADER_BYTES:HEADER_BYTES + h.length]
        if len(payload) != h.length:
            raise DynfixError(f"the flash image's header says {h.length} payload bytes, "
                              f"it has {len(image) - HEADER_BYTES}")
    elif h.version == CODED_VERSION:
        h, payload = _decode(image)
    else:
        raise DynfixError(f"flash image format {h.version}; this dynfix reads "
                          f"{FORMAT_VERSION} and {CODED_VERSION}")
    if zlib.crc32(payload) != h.crc32:
        raise DynfixError(f"the flash image's CRC-32 is {zlib.crc32(payload):#010x}, its "
                          f"header says {h.crc32:#010x}")
    return h, payload


def _decode(image: bytes) -> tuple[FlashHeader, bytes]:
    """The header and the decoded payload of a coded image."""
    if len(image) < CODED_HEADER_BYTES:
        raise DynfixError(f"a coded flash image needs at least {CODED_HEADER_BYTES} bytes, "
                          f"got {len(image)}")
    h = FlashHeader(*_CODED_HEADER.unpack_from(image))
    end = CODED_HEADER_BYTES + h.coded_length
    if len(image) < end + CODE_TABLE_BYTES:
        raise DynfixError(f"the flash image's header says {h.coded_length} coded bytes "
                          f"and its code {CODE_TABLE_BYTES} more, it has "
                          f"{len(image) - CODED_HEADER_BYTES}")
    c = CodedPayload.from_table(image[end:end + CODE_TABLE_BYTES],
                                image[CODED_HEADER_BYTES:end])
    if kraft_sum(c.lengths) > 1 or not any(c.lengths):
        raise DynfixError("the flash image's code is no prefix code")
    data = huffman_decode(c.coded, 8 * len(c.coded), c.lengths, count=h.length)
    return h, data.astype(np.uint8).tobytes()


def load_figures(payload: bytes, coding: FlashCoding, clk_hz: float, sck_div: int
                 ) -> dict:
    """What loading ``payload`` stored with ``coding`` takes: its bytes, the bytes the
    reader streams (``coded_bytes``; the payload's own when uncoded), their ratio, and the
    streaming's clock cycles (:func:`~dynfix.boards.spi_flash_reader.byte_cycles` per
    streamed byte; the header and the wake-up come on top) and time at ``clk_hz`` (None
    without a clock), coded and uncoded."""
    stored = len(stored_payload(payload, coding))
    per_byte = byte_cycles(sck_div)
    return {"coding": FlashCoding.parse(coding).value, "payload_bytes": len(payload),
            "coded_bytes": stored, "ratio": round(len(payload) / stored, 4),
            "load_cycles": stored * per_byte,
            "load_ms": round(stored * per_byte / clk_hz * 1e3, 3) if clk_hz else None,
            "uncoded_load_cycles": len(payload) * per_byte}


def program_commands(file_name: str = FILE_NAME, flash: FlashSpec | None = None
                     ) -> list[str]:
    """Command lines that write ``file_name`` at ``flash``'s offset, leaving the bitstream
    at 0 alone: the board's ``flash.program`` (default: :data:`DEFAULT_FLASH`'s, iceprog
    then openFPGALoader), the first the one to use, the others alternatives."""
    return (flash or DEFAULT_FLASH).program_commands(file_name)


def bitstream_command(file_name: str, flash: FlashSpec | None = None) -> str:
    """The command line that writes the bitstream ``file_name`` at 0 of ``flash`` (default:
    :data:`DEFAULT_FLASH`, ``iceprog``)."""
    return (flash or DEFAULT_FLASH).bitstream_command(file_name)


def write_flash_files(folder: str | Path, payload: bytes, flash: FlashSpec | None = None,
                      coding: FlashCoding = FlashCoding.NONE) -> list[str]:
    """Write ``folder/weights.flash.bin`` (:func:`flash_image` of ``payload`` stored with
    ``coding``, sized for ``flash``, default :data:`DEFAULT_FLASH`) and return the commands
    that program it (:func:`program_commands`, run in ``folder``)."""
    image = flash_image(payload, flash, coding)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FILE_NAME).write_bytes(image)
    return program_commands(FILE_NAME, flash)
