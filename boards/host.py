"""Host side of the serial link: talk to a board running the dynfix board top (pyserial)."""

from __future__ import annotations

import os

import numpy as np
import serial

from dynfix.boards.protocol import (CMD_INFO, INFO_LEN, LinkInfo, Result, infer_request,
                                    parse_result)
from dynfix.errors import DynfixError, literal


def open_port(port: str, baud: int, timeout: float):
    """Open ``port`` 8N1 at ``baud``; a missing or busy port is a DynfixError."""
    if not port.startswith(("socket://", "loop://", "rfc2217://")) and not os.path.exists(port):
        raise DynfixError(f"serial port {literal(port)} does not exist; is the board plugged "
                          f"in? (iCEBreaker: /dev/ttyUSB1, ULX3S: /dev/ttyUSB0: set {{port}})",
                          ("port",))
    try:
        return serial.serial_for_url(port, baudrate=baud, bytesize=8, parity="N",
                                     stopbits=1, timeout=timeout)
    except (serial.SerialException, OSError) as e:
        raise DynfixError(f"cannot open serial port {port}: {e}") from None


class BoardClient:
    """Commands over an open serial port (anything with ``write``, ``read``,
    ``reset_input_buffer``)."""

    def __init__(self, port):
        self._port = port
        self.info: LinkInfo | None = None

    def _read(self, n: int, what: str) -> bytes:
        data = self._port.read(n)
        if len(data) != n:
            raise DynfixError(f"the board sent {len(data)} of {n} bytes of {what} before the "
                              f"timeout; is the dynfix bitstream loaded at this baud rate (and, "
                              f"for an engine with its weights in SPRAM, weights.flash.bin "
                              f"programmed: both LEDs lit means the flash's weights do not "
                              f"match)?")
        return data

    def connect(self) -> LinkInfo:
        """Ask the board what it runs (the ``P`` command)."""
        self._port.reset_input_buffer()
        self._port.write(bytes([CMD_INFO]))
        self.info = LinkInfo.parse(self._read(INFO_LEN, "the info reply"))
        return self.info

    def infer(self, q: np.ndarray) -> Result:
        """Run one image of quantized input values."""
        info = self.info or self.connect()
        self._port.write(infer_request(q, info))
        return parse_result(self._read(1 + info.result_len(), "the result"), info)
