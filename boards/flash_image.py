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
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from dynfix.boards.registry import FlashSpec
from dynfix.errors import DynfixError
from dynfix.hw.ice40_spram import CELL_WIDTH, load_image
from .spi_flash_reader import FLASH_BYTES, SPIFlashReader, check_reader

__all__ = ["FLASH_OFFSET", "FLASH_BYTES", "FORMAT_VERSION", "MAGIC", "HEADER_BYTES",
           "PAYLOAD_BYTES", "DEFAULT_FLASH",
           "FILE_NAME", "FlashHeader", "flash_payload", "weight_payload", "flash_header",
           "flash_image", "read_header", "payload_bytes", "program_commands",
           "bitstream_command", "write_flash_files", "check_image_reader", "image_reader"]

MAGIC = b"DYNF"
FORMAT_VERSION = 1
#: Where the image starts in the iCEBreaker's flash: 1 MiB, past the bitstream at 0.
FLASH_OFFSET = 0x100000
FILE_NAME = "weights.flash.bin"
_HEADER = struct.Struct("<4sIII")
HEADER_BYTES = _HEADER.size
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


@dataclass(frozen=True)
class FlashHeader:
    """The header's fields."""
    magic: bytes
    version: int
    length: int
    crc32: int


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


def flash_header(payload: bytes, flash: FlashSpec | None = None) -> bytes:
    """The 16 header bytes for ``payload``, which must fit ``flash`` (default:
    :data:`DEFAULT_FLASH`) past its offset."""
    flash = flash or DEFAULT_FLASH
    if not payload:
        raise DynfixError("the flash payload is empty")
    if len(payload) > payload_bytes(flash):
        raise DynfixError(f"a payload of {len(payload)} bytes does not fit the flash after "
                          f"{flash.offset:#x} ({_size(flash.bytes)})")
    return _HEADER.pack(MAGIC, FORMAT_VERSION, len(payload), zlib.crc32(payload))


def _reader_args(payload: bytes, flash: FlashSpec | None, clk_hz: int, sck_div: int) -> dict:
    flash = flash or DEFAULT_FLASH
    return dict(offset=flash.offset, length=len(payload), clk_hz=clk_hz, sck_div=sck_div,
                header=flash_header(payload, flash), flash_bytes=flash.bytes)


def check_image_reader(payload: bytes, flash: FlashSpec | None, *, clk_hz: int,
                       sck_div: int = 2) -> None:
    """Raise ``ValueError`` unless :func:`image_reader` can read ``payload`` (as
    :func:`~dynfix.boards.spi_flash_reader.check_reader` says); builds nothing."""
    check_reader(**_reader_args(payload, flash, clk_hz, sck_div))


def image_reader(payload: bytes, flash: FlashSpec | None, *, clk_hz: int,
                 sck_div: int = 2) -> SPIFlashReader:
    """The power-up reader (``boot=True``) of ``payload``'s image in ``flash`` (default:
    :data:`DEFAULT_FLASH`): it wakes the flash, checks the header at the flash's offset
    against the one ``payload`` gives, and streams the payload."""
    return SPIFlashReader(boot=True, **_reader_args(payload, flash, clk_hz, sck_div))


def flash_image(payload: bytes, flash: FlashSpec | None = None) -> bytes:
    """Header + payload: the bytes to write at ``flash``'s offset (default:
    :data:`FLASH_OFFSET`)."""
    return flash_header(payload, flash) + bytes(payload)


def read_header(image: bytes) -> FlashHeader:
    """The header of ``image`` (header + payload), checked: magic, version, length, CRC."""
    if len(image) < HEADER_BYTES:
        raise DynfixError(f"a flash image needs at least {HEADER_BYTES} bytes, "
                          f"got {len(image)}")
    h = FlashHeader(*_HEADER.unpack_from(image))
    payload = image[HEADER_BYTES:HEADER_BYTES + h.length]
    if h.magic != MAGIC:
        raise DynfixError(f"not a dynfix flash image (magic {h.magic!r}, not {MAGIC!r})")
    if h.version != FORMAT_VERSION:
        raise DynfixError(f"flash image format {h.version}; this dynfix reads "
                          f"{FORMAT_VERSION}")
    if len(payload) != h.length:
        raise DynfixError(f"the flash image's header says {h.length} payload bytes, "
                          f"it has {len(image) - HEADER_BYTES}")
    if zlib.crc32(payload) != h.crc32:
        raise DynfixError(f"the flash image's CRC-32 is {zlib.crc32(payload):#010x}, its "
                          f"header says {h.crc32:#010x}")
    return h


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


def write_flash_files(folder: str | Path, payload: bytes, flash: FlashSpec | None = None
                      ) -> list[str]:
    """Write ``folder/weights.flash.bin`` (header + payload, sized for ``flash``, default
    :data:`DEFAULT_FLASH`) and return the commands that program it
    (:func:`program_commands`, run in ``folder``)."""
    image = flash_image(payload, flash)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FILE_NAME).write_bytes(image)
    return program_commands(FILE_NAME, flash)
