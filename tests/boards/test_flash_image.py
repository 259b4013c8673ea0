"""The flash image: payload bytes, header fields, CRC, determinism, program commands, errors."""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from dynfix.boards.flash_image import (FILE_NAME, FLASH_OFFSET, FORMAT_VERSION, HEADER_BYTES,
                                       flash_header, flash_image, flash_payload,
                                       read_header, write_flash_files)
from dynfix.errors import DynfixError


@pytest.mark.parametrize("width, words, want", [
    (8, [0x00, 0x7f, 0xff], b"\x00\x7f\xff"),
    (12, [0xabc, 0x001], b"\xbc\x0a\x01\x00"),
    (1, [1, 0, 1], b"\x01\x00\x01"),
    (17, [0x1ffff, 0x10203], b"\xff\xff\x01\x03\x02\x01"),
    (128, [1 << 127], bytes(15) + b"\x80"),
])
def test_payload_words_little_endian_in_address_order(width, words, want):
    assert flash_payload(words, width) == want


def test_header_fields():
    payload = random.Random(1).randbytes(1000)
    image = flash_image(payload)
    assert HEADER_BYTES == 16 and len(image) == 16 + 1000
    magic, version, length, crc = struct.unpack("<4sIII", image[:16])
    assert magic == b"DYNF" and version == FORMAT_VERSION == 1 and length == 1000
    assert crc == zlib.crc32(payload)
    assert image[16:] == payload and image[:16] == flash_header(payload)
    h = read_header(image)
    assert (h.magic, h.version, h.length, h.crc32) == (magic, version, length, crc)
    assert FLASH_OFFSET == 1 << 20


def test_known_bytes():
    """A fixed image, so a format change shows up here; 0xcbf43926 is CRC-32's published
    check value (the CRC of b"123456789")."""
    assert flash_image(b"123456789").hex() == (
        "44594e46" "01000000" "09000000" "2639f4cb" + b"123456789".hex())


def test_read_header_catches_damage():
    image = bytearray(flash_image(bytes(range(40))))
    image[20] ^= 1
    with pytest.raises(DynfixError, match="CRC-32"):
        read_header(bytes(image))
    with pytest.raises(DynfixError, match="magic"):
        read_header(b"DYNX" + bytes(image[4:]))
    with pytest.raises(DynfixError, match="says 40 payload bytes"):
        read_header(bytes(image[:-1]))


def test_files_are_deterministic(tmp_path):
    payload = flash_payload(list(range(300)), 9)
    cmds = write_flash_files(tmp_path / "a", payload)
    write_flash_files(tmp_path / "b", flash_payload(list(range(300)), 9))
    a, b = (tmp_path / d / FILE_NAME for d in "ab")
    assert a.read_bytes() == b.read_bytes() == flash_image(payload)
    assert cmds == ["iceprog -o 1M weights.flash.bin",
                    "openFPGALoader -b ice40_generic -f -o 0x100000 weights.flash.bin"]


@pytest.mark.parametrize("words, width, match", [
    ([1, 256, 3], 8, "word 256 at address 1 does not fit 8 unsigned bits"),
    ([-1], 8, "word -1 at address 0"),
    ([], 8, "at least one word"),
    ([0], 0, "at least 1 bit"),
])
def test_bad_words(words, width, match):
    with pytest.raises(DynfixError, match=match):
        flash_payload(words, width)


def test_bad_payloads():
    with pytest.raises(DynfixError, match="empty"):
        flash_image(b"")
    with pytest.raises(DynfixError, match="does not fit the flash"):
        flash_image(bytes(15 << 20))
