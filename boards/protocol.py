"""The serial protocol between the host and the board top (``docs/boards.md``).

Host to board: one command byte, then the command's payload. Board to host: one reply byte,
then the reply's payload. All multi-byte numbers are little-endian; values are two's
complement, sign-extended to whole bytes.

* ``P`` (info): the board answers ``DFX1``, ``n_in`` (u16), ``n_out`` (u16), bytes per input
  value (u8), bytes per output value (u8), input bits (u8), output bits (u8).
* ``I`` (infer): the host sends ``n_in`` input values (C, H, W order); the board answers ``R``,
  ``n_out`` logits, the predicted class (the first index of the maximum: u8, or u16 when
  ``n_out`` > 256, e.g. an autoencoder's outputs) and the engine's cycle count (u32).
* any other byte: the board answers ``?``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from dynfix.errors import DynfixError

CMD_INFO = ord("P")
CMD_INFER = ord("I")
REPLY_RESULT = ord("R")
REPLY_UNKNOWN = ord("?")
MAGIC = b"DFX1"
INFO_FORMAT = "<4sHHBBBB"
INFO_LEN = struct.calcsize(INFO_FORMAT)


def value_bytes(bits: int) -> int:
    """Bytes per value of ``bits`` bits."""
    return (bits + 7) // 8


@dataclass(frozen=True)
class LinkInfo:
    """What the board's ``P`` reply says about the engine it carries."""

    n_in: int
    n_out: int
    in_bits: int
    out_bits: int

    @property
    def in_bytes(self) -> int:
        return value_bytes(self.in_bits)

    @property
    def out_bytes(self) -> int:
        return value_bytes(self.out_bits)

    @property
    def class_bytes(self) -> int:
        """Bytes of the class index in a result: 1 up to 256 outputs, else 2."""
        return 1 if self.n_out <= 256 else 2

    def info_reply(self) -> bytes:
        return struct.pack(INFO_FORMAT, MAGIC, self.n_in, self.n_out, self.in_bytes,
                           self.out_bytes, self.in_bits, self.out_bits)

    @classmethod
    def parse(cls, reply: bytes) -> "LinkInfo":
        if len(reply) != INFO_LEN or not reply.startswith(MAGIC):
            raise DynfixError(f"the board did not answer the info command as a dynfix board "
                              f"(got {reply[:16]!r})")
        _, n_in, n_out, _, _, in_bits, out_bits = struct.unpack(INFO_FORMAT, reply)
        return cls(n_in, n_out, in_bits, out_bits)

    def result_len(self) -> int:
        """Bytes in an ``R`` reply after the ``R``."""
        return self.n_out * self.out_bytes + self.class_bytes + 4


def encode_values(q: np.ndarray, bits: int) -> bytes:
    """Integers (any shape, C order) as little-endian two's complement, whole bytes each."""
    q = np.asarray(q, dtype=np.int64).ravel()
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if q.size and (q.min() < lo or q.max() > hi):
        raise DynfixError(f"input values outside the {bits}-bit range [{lo}, {hi}]")
    nb = value_bytes(bits)
    return b"".join(int(v).to_bytes(nb, "little", signed=True) for v in q)


def decode_values(data: bytes, n: int, bits: int) -> np.ndarray:
    nb = value_bytes(bits)
    return np.array([int.from_bytes(data[i * nb:(i + 1) * nb], "little", signed=True)
                     for i in range(n)], dtype=np.int64)


def infer_request(q: np.ndarray, info: LinkInfo) -> bytes:
    """The bytes the host sends for one image of quantized values."""
    q = np.asarray(q).ravel()
    if q.size != info.n_in:
        raise DynfixError(f"the board takes {info.n_in} input values, the image has {q.size}")
    return bytes([CMD_INFER]) + encode_values(q, info.in_bits)


@dataclass(frozen=True)
class Result:
    logits: np.ndarray
    predicted: int
    cycles: int


def parse_result(reply: bytes, info: LinkInfo) -> Result:
    """Decode an ``R`` reply (including the ``R``)."""
    if len(reply) != 1 + info.result_len() or reply[0] != REPLY_RESULT:
        raise DynfixError(f"bad reply from the board: expected 'R' and {info.result_len()} "
                          f"bytes, got {len(reply)} bytes starting {reply[:4]!r}")
    logits = decode_values(reply[1:], info.n_out, info.out_bits)
    tail = reply[1 + info.n_out * info.out_bytes:]
    cb = info.class_bytes
    return Result(logits, int.from_bytes(tail[:cb], "little"),
                  int.from_bytes(tail[cb:cb + 4], "little"))
