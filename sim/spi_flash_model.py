"""A cocotb model of an SPI NOR flash (W25Q128JV-like, the iCEBreaker's), for any testbench.

It drives CIPO from a ``bytes`` image in SPI mode 0: COPI is taken on SCK's rising edge,
CIPO changes ``t_v_ns`` after a falling one (MSB first). Commands:

* 0xAB release from deep power-down (then, if clocked on, three dummy bytes and the device
  ID 0x17 repeated). The part is awake ``t_res1_ns`` after CS rises; a command that starts
  earlier is a violation.
* 0x03 READ, 24-bit address, then bytes from it on, wrapping at the end of the part.
* 0x0B FAST READ, 24-bit address, 8 dummy clocks, then the same.

By default the part starts in deep power-down (as the iCE40 may leave it after
configuration): it then ignores every command but 0xAB and CIPO reads 1s, so a reader that
forgets the wake-up gets 0xFF bytes. Outside a transaction CIPO is also held at 1.

Protocol violations it can see raise ``AssertionError`` from the model's task (which fails
the cocotb test; with ``strict=False`` they are only recorded) and are kept in
:attr:`SPIFlashModel.errors`: CS falling with SCK high
(mode 0 idles low), CS rising mid-byte, an unknown command, a command within tRES1 of the
wake-up, COPI not 0/1 at a rising edge. Usage::

    flash = SPIFlashModel(cs_n=dut.cs_n, sck=dut.sck, copi=dut.copi, cipo=dut.cipo,
                          image=weights, base=0x100000)
    flash.start()
    ...
    assert flash.commands == [b"\\xab", b"\\x03\\x10\\x00\\x00"] and not flash.errors
"""

from __future__ import annotations

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import First, ReadOnly, Timer

__all__ = ["SPIFlashModel", "DEVICE_ID", "SIZE"]

RELEASE_POWER_DOWN, READ, FAST_READ = 0xAB, 0x03, 0x0B
#: W25Q128JV: 16 MiB; its device ID as 0xAB returns it.
SIZE = 1 << 24
DEVICE_ID = 0x17


class SPIFlashModel:
    """The flash on the signal handles ``cs_n``, ``sck``, ``copi`` (read) and ``cipo``
    (driven), holding ``image`` at byte address ``base`` (elsewhere erased: 0xFF).

    Attributes
    ----------
    commands : list[bytes]
        Per transaction the command byte and, for reads, its address bytes.
    ignored : list[bytes]
        Commands received while powered down (other than 0xAB).
    bytes_out : int
        Data bytes started on CIPO (awake reads).
    errors : list[str]
        Protocol violations seen.
    """

    def __init__(self, *, cs_n, sck, copi, cipo, image: bytes, base: int = 0,
                 asleep: bool = True, t_res1_ns: float = 3000.0, t_v_ns: float = 6.0,
                 strict: bool = True):
        if base < 0 or base + len(image) > SIZE:
            raise ValueError(f"an image of {len(image)} bytes at {base:#x} does not fit "
                             f"{SIZE >> 20} MiB")
        self.cs_n, self.sck, self.copi, self.cipo = cs_n, sck, copi, cipo
        self.image, self.base = bytes(image), base
        self.asleep = asleep
        self.t_res1_ns, self.t_v_ns, self.strict = t_res1_ns, t_v_ns, strict
        self.commands: list[bytes] = []
        self.ignored: list[bytes] = []
        self.bytes_out = 0
        self.errors: list[str] = []
        self._awake_at: float | None = None
        self._task = None

    def start(self):
        """Start the model as a cocotb task (returned; the model runs until cancelled)."""
        self._task = cocotb.start_soon(self.run())
        return self._task

    def byte_at(self, addr: int) -> int:
        i = addr % SIZE - self.base
        return self.image[i] if 0 <= i < len(self.image) else 0xFF

    def _violation(self, what: str) -> None:
        msg = f"SPI flash model at {get_sim_time('ns'):.0f} ns: {what}"
        self.errors.append(msg)
        if self.strict:
            raise AssertionError(msg)

    async def run(self) -> None:
        """Follow CS and SCK forever (what :meth:`start` runs)."""
        self.cipo.value = 1
        await ReadOnly()
        cs_n, sck = int(self.cs_n.value), int(self.sck.value)
        got, bits = bytearray(), 0
        while True:
            await First(self.cs_n.value_change, self.sck.value_change)
            await ReadOnly()                       # both settled when they change together
            new_cs_n, new_sck = self.cs_n.value, self.sck.value
            if not (new_cs_n.is_resolvable and new_sck.is_resolvable):
                if not int(cs_n):
                    self._violation(f"CS or SCK not 0/1 in a transaction ({new_cs_n}, "
                                    f"{new_sck})")
                continue
            new_cs_n, new_sck = int(new_cs_n), int(new_sck)
            drive = None
            if cs_n and not new_cs_n:
                if new_sck:
                    self._violation("CS fell with SCK high (mode 0 idles SCK low)")
                awake = self._awake_at
                if awake is not None and get_sim_time("ns") - awake < self.t_res1_ns:
                    self._violation(f"command {get_sim_time('ns') - awake:.0f} ns after "
                                    f"0xAB; tRES1 is {self.t_res1_ns:.0f} ns")
                got, bits = bytearray(), 0
            elif not cs_n and new_cs_n:
                self._end(got, bits)
                drive = 1
            elif not new_cs_n and new_sck and not sck:
                bits = self._take(got, bits)
            elif not new_cs_n and sck and not new_sck:
                drive = self._next_bit(got, bits)
            cs_n, sck = new_cs_n, new_sck
            if drive is not None:
                await Timer(self.t_v_ns, unit="ns")
                self.cipo.value = drive

    def _take(self, got: bytearray, bits: int) -> int:
        """A rising edge: shift COPI in; returns the new bit count."""
        v = self.copi.value
        if not v.is_resolvable:
            self._violation(f"COPI is {v} at a rising SCK edge")
        if bits % 8 == 0:
            got.append(0)
        got[-1] = (got[-1] << 1 | int(v)) & 0xFF
        bits += 1
        if bits == 8:
            cmd = got[0]
            if self.asleep:
                if cmd != RELEASE_POWER_DOWN:
                    self.ignored.append(bytes([cmd]))
            elif cmd not in (RELEASE_POWER_DOWN, READ, FAST_READ):
                self._violation(f"unknown command {cmd:#04x}")
        return bits

    def _start_bit(self, cmd: int) -> int:
        """SCK periods before data comes out, by command."""
        return {READ: 32, FAST_READ: 40, RELEASE_POWER_DOWN: 32}[cmd]

    def _next_bit(self, got: bytearray, bits: int) -> int | None:
        """A falling edge: the CIPO bit for the next period, or None (no change)."""
        if bits < 8 or self.asleep or got[0] not in (READ, FAST_READ, RELEASE_POWER_DOWN):
            return None
        cmd = got[0]
        k = bits - self._start_bit(cmd)
        if k < 0:
            return None
        if k % 8 == 0:
            self.bytes_out += cmd != RELEASE_POWER_DOWN
        if cmd == RELEASE_POWER_DOWN:
            return DEVICE_ID >> (7 - k % 8) & 1
        addr = int.from_bytes(got[1:4], "big") + k // 8
        return self.byte_at(addr) >> (7 - k % 8) & 1

    def _end(self, got: bytearray, bits: int) -> None:
        """CS rose: log the transaction; a whole 0xAB wakes the part."""
        if bits % 8:
            self._violation(f"CS released after {bits} bits, mid-byte")
        if not got:
            return
        cmd = got[0]
        if not self.asleep:
            self.commands.append(bytes(got[:1 if cmd == RELEASE_POWER_DOWN else 4]))
        if cmd == RELEASE_POWER_DOWN:
            if self.asleep:
                self.commands.append(bytes(got[:1]))
                self._awake_at = get_sim_time("ns")
            self.asleep = False
