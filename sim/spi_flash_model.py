"""A cocotb model of an SPI NOR flash (W25Q128JV-like, the iCEBreaker's), for any testbench.

It serves a ``bytes`` image in SPI mode 0: the controller's bits are taken on SCK's rising
edge, the flash's outputs change ``t_v_ns`` after a falling one (MSB first).

Two wirings; pass exactly one:

* single-line: ``copi`` (read) and ``cipo`` (driven; held at 1 outside a transaction);
* quad: three 4-bit handles, ``dq_o`` (the controller's output values, read), ``dq_oe``
  (its per-line output enables, read) and ``dq_i`` (what the controller sees; the model
  drives it, always as a whole 4-bit value, lines it does not drive reading 1 as with a
  pull-up). IO0 is COPI (the controller's bit is ``dq_o[0]``, valid only with
  ``dq_oe[0]``), IO1 is CIPO (``dq_i[1]``); while QE = 0, IO2 is WP# and IO3 HOLD#.

Commands (SCK periods counted from 0 at CS falling):

* 0xAB release from deep power-down (then, if clocked on, three dummy bytes and the device
  ID 0x17 repeated). The part is awake ``t_res1_ns`` after CS rises; a command that starts
  earlier is a violation.
* 0x03 READ, 24-bit address, then bytes from it on (from period 32), wrapping at the end of
  the part.
* 0x0B FAST READ, 24-bit address, 8 dummy clocks, then the same (from period 40).
* 0x06 Write Enable, 0x50 Write Enable for Volatile Status Register.
* 0x31 Write Status Register-2, one data byte; only right after 0x06 or 0x50 (the previous
  command), and taking effect when CS rises after exactly 16 bits. A command starting less
  than ``t_shsl2_ns`` after that CS rise is a violation. No busy time is modelled.
* 0x35 Read Status Register-2 (QE is bit 1; its initial value is ``qe``), repeated.
* 0xEB Fast Read Quad I/O (QE = 1, quad wiring): the command on IO0 (periods 0-7), then the
  address in 6 periods and the mode bits M7-0 in 2 on IO3..IO0 (4 bits a rising edge, most
  significant nibble first), 4 dummy periods, and data nibbles (high nibble first) on
  IO3..IO0 from period 20, the first driven after the falling edge that ends period 19.
  Mode bits M5-4 = 0b10 (continuous read mode) are a violation; the read goes on as usual.
* 0x6B Fast Read Quad Output (QE = 1, quad wiring): command and address on IO0 (periods
  0-31), 8 dummy periods, data nibbles as for 0xEB from period 40.

The flash drives its output lines from the falling edge that ends the period before the
first data period until CS rises. :attr:`SPIFlashModel.bytes_out` counts the data bytes
started by the reads (0x03, 0x0B, 0xEB, 0x6B; not the ID or status bytes).

By default the part starts in deep power-down (as the iCE40 may leave it after
configuration): it then ignores every command but 0xAB and drives nothing, so a reader
that forgets the wake-up reads 1s (0xFF bytes).

Protocol violations it can see raise ``AssertionError`` from the model's task (which fails
the cocotb test; with ``strict=False`` they are only recorded) and are kept in
:attr:`SPIFlashModel.errors`. In both wirings: CS falling with SCK high (mode 0 idles
low), CS or SCK not 0/1 in a transaction, CS rising mid-byte (after an odd number of data
nibbles in a quad data phase; a quad read may end after any whole byte), an unknown
command, a command within tRES1 of the wake-up or within tSHSL2 of a 0x31, "write status
register without write enable", 0x31 ending after other than 16 bits, "quad read with QE =
0" (and a quad read on the single-line wiring; the flash then ignores the transaction),
"continuous read mode is not modelled". Single-line wiring: COPI not 0/1 at a rising edge.
Quad wiring (each kind at most once a transaction):

* "IOn not driven by the controller in the <phase> phase": at a rising edge, a line the
  flash reads (IO0 in the command, address and 0x31 data phases; IO0-3 in the 0xEB address
  and mode phases) without ``dq_oe`` set and a 0/1 on ``dq_o`` (dummy periods: no checks);
* "contention on IOn": at any SCK edge while the flash drives the line (IO1 for
  single-line output, IO0-3 for quad data), ``dq_oe`` is not 0 for it;
* "HOLD# (IO3) low or floating with QE = 0": at a rising edge while QE = 0, the controller
  does not drive IO3 to 1 (WP#, IO2, is not checked).

The model follows CS and SCK in two cocotb tasks, one trigger each (cheaper than a
``First`` of both); while it waits ``t_v_ns`` to drive it misses SCK edges, so SCK's half
period must be longer than that. Usage::

    flash = SPIFlashModel(cs_n=dut.cs_n, sck=dut.sck, copi=dut.copi, cipo=dut.cipo,
                          image=weights, base=0x100000)
    flash.start()
    ...
    assert flash.commands == [b"\\xab", b"\\x03\\x10\\x00\\x00"] and not flash.errors

and in the quad wiring, with QE already set (as after a 0x50 and a 0x31 0x02)::

    flash = SPIFlashModel(cs_n=dut.cs_n, sck=dut.sck, dq_o=dut.dq_o, dq_oe=dut.dq_oe,
                          dq_i=dut.dq_i, image=weights, base=0x100000, asleep=False,
                          qe=True)
    flash.start()
    ...
    assert flash.commands == [b"\\xeb\\x10\\x00\\x00"] and not flash.errors
"""

from __future__ import annotations

import cocotb
from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, Timer

__all__ = ["SPIFlashModel", "DEVICE_ID", "SIZE"]

RELEASE_POWER_DOWN, READ, FAST_READ = 0xAB, 0x03, 0x0B
WRITE_ENABLE, VOLATILE_WRITE_ENABLE = 0x06, 0x50
WRITE_STATUS_2, READ_STATUS_2 = 0x31, 0x35
QUAD_IO_READ, QUAD_OUTPUT_READ = 0xEB, 0x6B
#: W25Q128JV: 16 MiB; its device ID as 0xAB returns it.
SIZE = 1 << 24
DEVICE_ID = 0x17
QE = 0x02                   # the Quad Enable bit of status register 2
_SR2_WRITABLE = 0x7B        # SUS (bit 7) is read-only, bit 2 reserved
_NEVER = 1 << 62            # a period index no transaction reaches
_RECORDED = {RELEASE_POWER_DOWN: 1, WRITE_ENABLE: 1, VOLATILE_WRITE_ENABLE: 1,
             READ_STATUS_2: 1, WRITE_STATUS_2: 2}       # bytes logged; else 4


class SPIFlashModel:
    """The flash on the signal handles ``cs_n``, ``sck`` and either ``copi`` (read) and
    ``cipo`` (driven) or the 4-bit ``dq_o``, ``dq_oe`` (read) and ``dq_i`` (driven), holding
    ``image`` at byte address ``base`` (elsewhere erased: 0xFF).

    Attributes
    ----------
    commands : list[bytes]
        Per awake transaction the command byte and: for reads, the address bytes; for 0x31,
        the data byte.
    ignored : list[bytes]
        Commands received while powered down (other than 0xAB).
    bytes_out : int
        Data bytes started by the reads (awake).
    sr2 : int
        Status register 2 (QE is bit 1).
    errors : list[str]
        Protocol violations seen.
    """

    def __init__(self, *, cs_n, sck, copi=None, cipo=None, dq_o=None, dq_oe=None,
                 dq_i=None, image: bytes, base: int = 0, asleep: bool = True,
                 qe: bool = False, t_res1_ns: float = 3000.0, t_shsl2_ns: float = 50.0,
                 t_v_ns: float = 6.0, strict: bool = True):
        single, quad = (copi, cipo), (dq_o, dq_oe, dq_i)
        is_single = any(h is not None for h in single)
        if is_single == any(h is not None for h in quad) or any(
                h is None for h in (single if is_single else quad)):
            raise ValueError("pass one wiring: copi and cipo, or dq_o, dq_oe and dq_i")
        if base < 0 or base + len(image) > SIZE:
            raise ValueError(f"an image of {len(image)} bytes at {base:#x} does not fit "
                             f"{SIZE >> 20} MiB")
        self.cs_n, self.sck, self.copi, self.cipo = cs_n, sck, copi, cipo
        self.dq_o, self.dq_oe, self.dq_i = dq_o, dq_oe, dq_i
        self.quad = dq_i is not None
        self.image, self.base = bytes(image), base
        self.asleep = asleep
        self.sr2 = QE if qe else 0
        self.t_res1_ns, self.t_shsl2_ns = t_res1_ns, t_shsl2_ns
        self.t_v_ns, self.strict = t_v_ns, strict
        self.commands: list[bytes] = []
        self.ignored: list[bytes] = []
        self.bytes_out = 0
        self.errors: list[str] = []
        self._awake_at: float | None = None
        self._sr_written_at: float | None = None
        self._write_enabled = False
        self._task = None
        # What the flash drives: cipo, or dq_i with IO1 (single-line output) among 1s.
        self._out = dq_i if self.quad else cipo
        self._idle = 0xF if self.quad else 1
        self._one_hi, self._one_shift = (0xD, 1) if self.quad else (0, 0)
        self._driven = None
        self._active = False
        self._reset()

    @property
    def qe(self) -> bool:
        """The Quad Enable bit (status register 2, bit 1)."""
        return bool(self.sr2 & QE)

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

    def _once(self, key, what: str) -> None:
        """A violation reported once a transaction per ``key``."""
        if key not in self._reported:
            self._reported.add(key)
            self._violation(what)

    def _reset(self) -> None:
        """A new transaction: nothing taken, nothing to drive (the command decides)."""
        self._bits = 0                  # rising SCK edges so far (periods started)
        self._got = bytearray()         # command, address / data bytes taken
        self._event = 7                 # period after whose rising edge _step runs
        self._in1_end = 8               # periods < this: the flash reads IO0
        self._in4_end = 0               # periods in [_in1_end, this): reads IO0-3
        self._out_from = _NEVER         # first period the flash drives
        self._out_mask = 0              # lines it drives then
        self._quad_out = False          # data as nibbles on IO3..IO0
        self._const = None              # single-line output: this byte, else image data
        self._dead = False              # a rejected command: the rest is ignored
        self._acc = 0                   # quad input nibbles
        self._addr = 0
        self._byte = 0                  # the output byte under way
        self._reported: set = set()

    async def run(self) -> None:
        """Follow CS and SCK forever (what :meth:`start` runs)."""
        self._driven = self._idle
        self._out.value = self._idle
        await ReadOnly()
        cs_n = self.cs_n.value
        self._active = cs_n.is_resolvable and not int(cs_n)
        sck_task = cocotb.start_soon(self._follow_sck())
        try:
            await self._follow_cs(int(cs_n) if cs_n.is_resolvable else None)
        finally:
            sck_task.cancel()

    async def _follow_cs(self, prev: int | None) -> None:
        change, settled = self.cs_n.value_change, ReadOnly()
        timer = Timer(self.t_v_ns, unit="ns")
        while True:
            await change
            await settled
            v = self.cs_n.value
            if not v.is_resolvable:
                if prev == 0:
                    self._violation(f"CS or SCK not 0/1 in a transaction ({v}, "
                                    f"{self.sck.value})")
                continue
            new = int(v)
            if new == prev:
                continue
            prev = new
            if not new:
                self._begin()
                continue
            self._active = False
            self._end()
            if self._driven != self._idle:
                self._driven = self._idle
                await timer
                self._out.value = self._idle

    async def _follow_sck(self) -> None:
        change, settled = self.sck.value_change, ReadOnly()
        timer = Timer(self.t_v_ns, unit="ns")
        sck, cs_n, out = self.sck, self.cs_n, self._out
        rise = self._rise_quad if self.quad else self._rise_single
        v = sck.value
        prev = int(v) if v.is_resolvable else None
        while True:
            await change
            await settled
            v = sck.value
            try:
                new = int(v)
            except ValueError:
                if self._active:
                    self._violation(f"CS or SCK not 0/1 in a transaction ({cs_n.value}, "
                                    f"{v})")
                continue
            if new == prev:
                continue
            prev = new
            if not self._active:
                continue
            try:
                if int(cs_n.value):
                    continue                    # CS rises with this edge: it ends here
            except ValueError:
                continue                        # the CS task reports it
            if new:
                rise()
                continue
            drive = self._fall()
            if drive is not None and drive != self._driven:
                self._driven = drive
                await timer
                out.value = drive

    def _begin(self) -> None:
        """CS fell: the timing checks, then a new transaction."""
        if str(self.sck.value) == "1":
            self._violation("CS fell with SCK high (mode 0 idles SCK low)")
        now = get_sim_time("ns")
        awake = self._awake_at
        if awake is not None and now - awake < self.t_res1_ns:
            self._violation(f"command {now - awake:.0f} ns after 0xAB; tRES1 is "
                            f"{self.t_res1_ns:.0f} ns")
        written = self._sr_written_at
        if written is not None and now - written < self.t_shsl2_ns:
            self._violation(f"command {now - written:.0f} ns after Write Status "
                            f"Register-2 (0x31); tSHSL2 is {self.t_shsl2_ns:.0f} ns")
        self._reset()
        self._active = True

    # -- rising edges --------------------------------------------------------------------

    def _rise_single(self) -> None:
        """A rising edge, single-line wiring: shift COPI in."""
        p = self._bits
        self._bits = p + 1
        if self._dead:
            return
        v = self.copi.value
        if not v.is_resolvable:
            self._violation(f"COPI is {v} at a rising SCK edge")
        if p < 32:                                    # what the log needs at most
            got = self._got
            if p & 7 == 0:
                got.append(0)
            got[-1] = (got[-1] << 1 | int(v)) & 0xFF
        if p == self._event:
            self._step(p)

    def _rise_quad(self) -> None:
        """A rising edge, quad wiring: take what the flash reads, check the lines."""
        p = self._bits
        self._bits = p + 1
        if self._dead:
            return
        if p < self._in1_end:
            need = 1
        elif p < self._in4_end:
            need = 0xF
        else:
            need = 0
        hold = not self.sr2 & QE
        if need or hold:
            oe, drv, o = self._controller()
            if need:
                if need & ~drv:
                    self._undriven(need & ~drv, p)
                if need == 1:
                    got = self._got
                    if p & 7 == 0:
                        got.append(0)
                    got[-1] = (got[-1] << 1 | o & 1) & 0xFF
                else:
                    self._acc = self._acc << 4 | o & drv
            if hold and not drv & o & 8:
                self._once("hold", "HOLD# (IO3) low or floating with QE = 0")
        elif p >= self._out_from:
            oe = self._enables()
        if p >= self._out_from and oe & self._out_mask:
            self._contention(oe & self._out_mask)
        if p == self._event:
            self._step(p)

    def _controller(self) -> tuple[int, int, int]:
        """The controller's lines as masks: enables not 0, lines driven to 0/1, ones."""
        oe_v, o_v = self.dq_oe.value, self.dq_o.value
        try:
            oe = int(oe_v)
            return oe, oe, int(o_v)
        except ValueError:
            pass
        s_oe, s_o = str(oe_v)[::-1], str(o_v)[::-1]           # index = line
        oe = drv = o = 0
        for n in range(4):
            if s_oe[n] != "0":
                oe |= 1 << n
                if s_oe[n] == "1" and s_o[n] in "01":
                    drv |= 1 << n
            if s_o[n] == "1":
                o |= 1 << n
        return oe, drv, o

    def _enables(self) -> int:
        """The controller's enables not 0, as a mask."""
        v = self.dq_oe.value
        try:
            return int(v)
        except ValueError:
            return sum(1 << n for n, c in enumerate(str(v)[::-1]) if c != "0")

    def _undriven(self, lines: int, p: int) -> None:
        phase = ("command" if p < 8 else
                 "data" if self._got[0] == WRITE_STATUS_2 else
                 "mode bits" if self._got[0] == QUAD_IO_READ and p >= 14 else "address")
        for n in range(4):
            if lines >> n & 1:
                self._once(("io", n), f"IO{n} not driven by the controller in the {phase} "
                           f"phase (dq_oe {self.dq_oe.value}, dq_o {self.dq_o.value})")

    def _contention(self, lines: int) -> None:
        for n in range(4):
            if lines >> n & 1:
                self._once(("contention", n), f"contention on IO{n}: the controller's "
                           f"dq_oe is {self.dq_oe.value} while the flash drives it")

    def _step(self, p: int) -> None:
        """After the rising edge of period ``p`` = ``_event``: the command is in (p = 7),
        or an address (and for 0xEB the mode bits)."""
        if p == 7:
            self._decode(self._got[0])
        elif self._got[0] == QUAD_IO_READ:
            if p == 13:
                self._addr = self._acc
                self._got += self._acc.to_bytes(3, "big")
                self._acc, self._event = 0, 15
            elif self._acc >> 4 & 3 == 0b10:
                self._violation(f"continuous read mode is not modelled (mode bits "
                                f"{self._acc:#04x})")
        else:
            self._addr = int.from_bytes(self._got[1:4], "big")

    def _decode(self, cmd: int) -> None:
        """The command byte is in: plan the transaction."""
        if self.asleep:
            if cmd != RELEASE_POWER_DOWN:
                self.ignored.append(bytes([cmd]))
            return
        if cmd == RELEASE_POWER_DOWN:
            self._out_from, self._out_mask, self._const = 32, 2, DEVICE_ID
        elif cmd in (READ, FAST_READ):
            self._in1_end, self._event, self._out_mask = 32, 31, 2
            self._out_from = 32 if cmd == READ else 40
        elif cmd == READ_STATUS_2:
            self._out_from, self._out_mask, self._const = 8, 2, self.sr2
        elif cmd == WRITE_STATUS_2:
            self._in1_end = 16
            if not self._write_enabled:
                self._violation("write status register without write enable (0x31 not "
                                "right after 0x06 or 0x50)")
        elif cmd in (QUAD_IO_READ, QUAD_OUTPUT_READ):
            if not self.quad:
                self._dead = True
                self._violation(f"quad read {cmd:#04x} on the single-line wiring")
            elif not self.sr2 & QE:
                self._dead = True
                self._violation(f"quad read with QE = 0 ({cmd:#04x})")
            else:
                if cmd == QUAD_IO_READ:     # address 8-13, mode 14-15, dummies 16-19
                    self._in4_end, self._event, self._out_from = 16, 13, 20
                else:                       # address 8-31, dummies 32-39
                    self._in1_end, self._event, self._out_from = 32, 31, 40
                self._quad_out, self._out_mask = True, 0xF
        elif cmd not in (WRITE_ENABLE, VOLATILE_WRITE_ENABLE):
            self._violation(f"unknown command {cmd:#04x}")

    # -- falling edges -------------------------------------------------------------------

    def _fall(self) -> int | None:
        """A falling edge: the value to drive for the next period, or None (no change)."""
        k = self._bits - self._out_from
        if k < 0 or self._dead:
            return None
        if self.quad:
            oe = self._enables() & self._out_mask
            if oe:
                self._contention(oe)
        if self._quad_out:
            if k & 1:
                return self._byte & 0xF
            self._byte = b = self.byte_at(self._addr + (k >> 1))
            self.bytes_out += 1
            return b >> 4
        r = k & 7
        if r == 0:
            if self._const is None:
                self._byte = self.byte_at(self._addr + (k >> 3))
                self.bytes_out += 1
            else:
                self._byte = self._const
        return self._one_hi | (self._byte >> (7 - r) & 1) << self._one_shift

    # -- CS rising -----------------------------------------------------------------------

    def _end(self) -> None:
        """CS rose: the checks, the log, what the command does."""
        bits, got = self._bits, self._got
        if self._dead:
            pass
        elif self._quad_out and bits > self._out_from:
            if (bits - self._out_from) & 1:
                self._violation(f"CS released after {bits - self._out_from} data nibbles, "
                                f"mid-byte")
        elif self._quad_out and self._in4_end and bits > 8:
            pass                        # 0xEB ended before its data: an aborted read
        elif bits % 8:
            self._violation(f"CS released after {bits} bits, mid-byte")
        if not got:
            return
        cmd = got[0]
        if self.asleep:
            if cmd == RELEASE_POWER_DOWN:
                self.commands.append(bytes(got[:1]))
                self._awake_at = get_sim_time("ns")
                self.asleep = False
            return
        self.commands.append(bytes(got[:1 if self._dead else _RECORDED.get(cmd, 4)]))
        if cmd == WRITE_STATUS_2 and bits % 8 == 0:
            if bits != 16:
                self._violation(f"Write Status Register-2 (0x31) ended after {bits} bits; "
                                f"it takes exactly 16")
            elif self._write_enabled:
                self.sr2 = got[1] & _SR2_WRITABLE
                self._sr_written_at = get_sim_time("ns")
        self._write_enabled = bits >= 8 and cmd in (WRITE_ENABLE, VOLATILE_WRITE_ENABLE)
