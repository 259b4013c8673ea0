"""The flash image: payload bytes, header fields, CRC, determinism, program commands, errors;
Huffman-coded images (format 2): known bytes, round trips, damage."""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from dynfix.boards.flash_image import (CODE_TABLE_BYTES, CODED_HEADER_BYTES, CODED_VERSION,
                                       FILE_NAME, FLASH_OFFSET, FORMAT_VERSION, HEADER_BYTES,
                                       FlashCoding, flash_header, flash_image, flash_payload,
                                       load_figures, read_header, read_payload,
                                       stored_payload, write_flash_files)
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


def test_uncoded_files_are_byte_identical_to_format_1(tmp_path):
    """``coding`` none (the default) writes exactly what format 1 always was: a header
    packed here by hand, then the payload."""
    payload = bytes(random.Random(2).randbytes(777))
    want = (b"DYNF" + (1).to_bytes(4, "little") + (777).to_bytes(4, "little")
            + zlib.crc32(payload).to_bytes(4, "little") + payload)
    write_flash_files(tmp_path, payload, coding=FlashCoding.NONE)
    assert (tmp_path / FILE_NAME).read_bytes() == want == flash_image(payload)
    assert stored_payload(payload) == payload


def test_coded_known_bytes():
    """Two byte values, 0 three times and 1 once: 1-bit words 0 and 1, coded 0001 (0x10);
    a 20-byte header (format 2, 4 bytes, their CRC, 1 coded byte), the coded byte, then the
    code: value 0's length in byte 0's low nibble, value 1's in its high one."""
    payload = b"\x00\x00\x00\x01"
    image = flash_image(payload, coding=FlashCoding.HUFFMAN)
    assert image == (b"DYNF" + bytes([2, 0, 0, 0, 4, 0, 0, 0])
                     + zlib.crc32(payload).to_bytes(4, "little") + bytes([1, 0, 0, 0])
                     + b"\x10" + b"\x11" + bytes(127))
    assert len(image) == CODED_HEADER_BYTES + 1 + CODE_TABLE_BYTES


@pytest.mark.parametrize("kind", ["random", "skewed", "one value"])
def test_coded_image_round_trip(kind, tmp_path):
    """A coded image's header (decoded length and CRC, coded length) and payload read back;
    the file ``write_flash_files`` writes is the image."""
    rng = random.Random(3)
    payload = {"random": lambda: rng.randbytes(3000),
               "skewed": lambda: bytes(min(255, int(rng.expovariate(0.3))) for _ in range(5000)),
               "one value": lambda: b"\x07" * 999}[kind]()
    image = flash_image(payload, coding="huffman")
    h = read_header(image)
    assert (h.version, h.length, h.crc32) == (CODED_VERSION, len(payload), zlib.crc32(payload))
    assert h.coding is FlashCoding.HUFFMAN and read_header(flash_image(payload)).coding is \
        FlashCoding.NONE
    coded = stored_payload(payload, FlashCoding.HUFFMAN)
    assert h.coded_length == len(coded) and image[CODED_HEADER_BYTES:][:len(coded)] == coded
    assert read_payload(image) == payload == read_payload(flash_image(payload))
    if kind != "random":
        assert len(coded) < 0.7 * len(payload)
    write_flash_files(tmp_path, payload, coding=FlashCoding.HUFFMAN)
    assert (tmp_path / FILE_NAME).read_bytes() == image
    figures = load_figures(payload, FlashCoding.HUFFMAN, 12e6, 2)
    assert figures["coded_bytes"] == len(coded) and figures["payload_bytes"] == len(payload)
    assert figures["load_cycles"] == 16 * len(coded)
    assert figures["uncoded_load_cycles"] == 16 * len(payload)


def test_coded_image_damage_is_caught():
    payload = bytes(range(50)) * 20
    image = bytearray(flash_image(payload, coding=FlashCoding.HUFFMAN))
    bad = bytearray(image)
    bad[12] ^= 1                                    # the CRC field
    with pytest.raises(DynfixError, match="CRC-32"):
        read_header(bytes(bad))
    bad = bytearray(image)
    bad[CODED_HEADER_BYTES + 5] ^= 0x40             # a coded bit
    with pytest.raises(DynfixError, match="CRC-32|Huffman decoding"):
        read_payload(bytes(bad))
    with pytest.raises(DynfixError, match="code 128 more"):
        read_header(bytes(image[:-1]))
    bad = bytearray(image)
    bad[-CODE_TABLE_BYTES] = 0x11                   # lengths 1, 1 and more: no prefix code
    with pytest.raises(DynfixError, match="no prefix code"):
        read_header(bytes(bad))
    bad = bytearray(image)
    bad[4] = 3
    with pytest.raises(DynfixError, match="format 3; this dynfix reads 1 and 2"):
        read_header(bytes(bad))
    with pytest.raises(DynfixError, match="none or huffman|one of none, huffman"):
        flash_image(payload, coding="zip")
    with pytest.raises(DynfixError, match="Huffman-coded, does not fit the flash"):
        flash_image(random.Random(4).randbytes(15 << 20), coding=FlashCoding.HUFFMAN)
