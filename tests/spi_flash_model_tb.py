"""Test helper: cocotb tests of :class:`dynfix.sim.spi_flash_model.SPIFlashModel` driven by
bit-banged SPI masters on pins-only top levels; run by ``test_spi_flash_model``. The job's
``wiring`` ("single", the default, on ``flash_pins``; "quad" on ``flash_quad_pins``) says
which tests run: the others are skipped."""

from __future__ import annotations

import json
from pathlib import Path

import cocotb
from cocotb.triggers import Timer

from cocotb_drivers import job_from_env
from dynfix.sim.spi_flash_model import SPIFlashModel

HALF_NS = 50


class Master:
    """SPI mode 0 master on ``dut``'s pins, SCK at 10 MHz."""

    def __init__(self, dut):
        self.dut = dut
        dut.cs_n.value, dut.sck.value, dut.copi.value = 1, 0, 0

    async def clock(self, bit: int) -> int:
        """One SCK period sending ``bit``; returns CIPO as taken at the rising edge."""
        self.dut.copi.value = bit
        await Timer(HALF_NS, unit="ns")
        self.dut.sck.value = 1
        got = int(self.dut.cipo.value)
        await Timer(HALF_NS, unit="ns")
        self.dut.sck.value = 0
        return got

    async def xfer(self, out: bytes, n_in: int = 0, dummy: int = 0, bits: int = 0) -> bytes:
        """CS low, ``out``, ``dummy`` clocks, ``n_in`` bytes in, ``bits`` more clocks, CS
        high; returns the bytes in."""
        self.dut.cs_n.value = 0
        for byte in out:
            for i in range(8):
                await self.clock(byte >> (7 - i) & 1)
        for _ in range(dummy + bits):
            await self.clock(0)
        got = bytearray()
        for _ in range(n_in):
            v = 0
            for _ in range(8):
                v = v << 1 | await self.clock(0)
            got.append(v)
        await Timer(HALF_NS, unit="ns")
        self.dut.cs_n.value = 1
        await Timer(HALF_NS, unit="ns")
        return bytes(got)


class QuadMaster:
    """SPI mode 0 master on ``dut``'s four IO lines (``dq_o``, ``dq_oe`` driven, ``dq_i``
    read), SCK at 10 MHz. Each period's outputs are set as it starts (with the falling SCK
    edge ending the one before). Knobs to break the protocol: ``hold`` is IO3 (HOLD#) in
    single-line periods (1, 0 or None: not driven), ``keep`` the lines left enabled while
    the flash drives, ``floating`` the lines not driven in quad address and mode periods."""

    def __init__(self, dut):
        self.dut = dut
        self.hold, self.keep, self.floating = 1, 0, 0
        dut.cs_n.value, dut.sck.value = 1, 0
        dut.dq_o.value, dut.dq_oe.value = 0b1100, 0b1100

    async def period(self, o: int, oe: int) -> int:
        """One SCK period driving ``o`` on the lines enabled in ``oe``; returns ``dq_i`` as
        taken at the rising edge."""
        dut = self.dut
        dut.dq_o.value, dut.dq_oe.value = o, oe
        await Timer(HALF_NS, unit="ns")
        dut.sck.value = 1
        got = int(dut.dq_i.value)
        await Timer(HALF_NS, unit="ns")
        dut.sck.value = 0
        return got

    def single(self, bit: int) -> tuple[int, int]:
        """(dq_o, dq_oe) for a single-line period sending ``bit`` on IO0: WP# (IO2) high,
        HOLD# (IO3) as ``hold``, IO1 released (plus ``keep``)."""
        o, oe = 0b0100 | bit, 0b0101 | self.keep
        if self.hold is not None:
            o, oe = o | self.hold << 3, oe | 0b1000
        return o, oe

    async def send1(self, data: bytes) -> None:
        for byte in data:
            for i in range(8):
                await self.period(*self.single(byte >> (7 - i) & 1))

    async def send4(self, data: bytes) -> None:
        for byte in data:
            for nibble in (byte >> 4, byte & 0xF):
                await self.period(nibble, 0xF & ~self.floating)

    async def recv1(self, n: int) -> tuple[bytes, int]:
        """``n`` bytes from IO1; also the AND of the other lines of ``dq_i`` meanwhile."""
        got, others = bytearray(), 0b1101
        for _ in range(n):
            v = 0
            for _ in range(8):
                x = await self.period(*self.single(0))
                v, others = v << 1 | x >> 1 & 1, others & x
            got.append(v)
        return bytes(got), others

    async def recv4(self, nibbles: int) -> list[int]:
        return [await self.period(0, self.keep) for _ in range(nibbles)]

    async def end(self, gap: float = HALF_NS) -> None:
        """CS high half a period after the last falling edge, then ``gap`` ns of rest."""
        await Timer(HALF_NS, unit="ns")
        self.dut.cs_n.value = 1
        await Timer(gap, unit="ns")

    async def command(self, out: bytes, n_in: int = 0, gap: float = HALF_NS) -> bytes:
        """A single-line transaction: ``out``, then ``n_in`` bytes in from IO1."""
        self.dut.cs_n.value = 0
        await self.send1(out)
        got, _ = await self.recv1(n_in)
        await self.end(gap)
        return got

    async def quad_io_read(self, addr: int, n: int = 0, mode: int = 0,
                           nibbles: int | None = None) -> bytes:
        """0xEB: address and ``mode`` on IO3..IO0, 4 dummy periods (all lines released),
        ``n`` bytes (or ``nibbles`` nibbles) in."""
        self.dut.cs_n.value = 0
        await self.send1(b"\xeb")
        await self.send4(addr.to_bytes(3, "big") + bytes([mode]))
        for _ in range(4):
            await self.period(0, 0)
        got = await self.recv4(2 * n if nibbles is None else nibbles)
        await self.end()
        return bytes(hi << 4 | lo for hi, lo in zip(got[::2], got[1::2]))

    async def quad_output_read(self, addr: int, n: int) -> bytes:
        """0x6B: command and address on IO0, 8 dummy periods (driven as single-line ones,
        released with the falling edge that starts the data), ``n`` bytes in."""
        self.dut.cs_n.value = 0
        await self.send1(b"\x6b" + addr.to_bytes(3, "big"))
        for _ in range(8):
            await self.period(*self.single(0))
        got = await self.recv4(2 * n)
        await self.end()
        return bytes(hi << 4 | lo for hi, lo in zip(got[::2], got[1::2]))


def save(name: str, result: dict) -> None:
    Path(job_from_env()["result"]).with_name(f"{name}.json").write_text(json.dumps(result))


def _wiring() -> str:
    try:
        return job_from_env().get("wiring", "single")
    except KeyError:                            # imported outside run_icarus
        return "single"


WIRING = _wiring()
NOT_SINGLE, NOT_QUAD = WIRING != "single", WIRING != "quad"     # skip= by wiring


@cocotb.test(skip=NOT_SINGLE)
async def commands(dut):
    job = job_from_env()
    image, base = bytes(job["image"]), job["base"]
    m = Master(dut)
    flash = SPIFlashModel(cs_n=dut.cs_n, sck=dut.sck, copi=dut.copi, cipo=dut.cipo,
                          image=image, base=base)
    flash.start()
    a = base.to_bytes(3, "big")
    asleep = await m.xfer(b"\x03" + a, n_in=4)
    await m.xfer(b"\xab")
    await Timer(3000, unit="ns")
    fast = await m.xfer(b"\x0b" + (base + 5).to_bytes(3, "big"), n_in=6, dummy=8)
    tail = await m.xfer(b"\x03" + (base + len(image) - 4).to_bytes(3, "big"), n_in=8)
    ident = await m.xfer(b"\xab\x00\x00\x00", n_in=2)
    save("commands", {"asleep": list(asleep), "fast": list(fast), "tail": list(tail),
                      "id": list(ident), "ignored": [list(c) for c in flash.ignored],
                      "commands": [list(c) for c in flash.commands],
                      "errors": flash.errors})


@cocotb.test(skip=NOT_SINGLE)
async def violations(dut):
    m = Master(dut)
    flash = SPIFlashModel(cs_n=dut.cs_n, sck=dut.sck, copi=dut.copi, cipo=dut.cipo,
                          image=b"\x00", strict=False)
    flash.start()
    await m.xfer(b"\xab")
    await m.xfer(b"\x03\x00\x00\x00", n_in=1)      # within tRES1
    await Timer(3000, unit="ns")
    await m.xfer(b"\x9f", n_in=3)                  # JEDEC ID: not modelled
    await m.xfer(b"\x03", bits=4)                  # CS released mid-byte
    dut.sck.value = 1
    await Timer(HALF_NS, unit="ns")
    dut.cs_n.value = 0                             # CS falls with SCK high
    await Timer(HALF_NS, unit="ns")
    dut.sck.value = 0
    await m.xfer(b"")
    save("violations", {"errors": flash.errors})


@cocotb.test(skip=NOT_SINGLE)
async def single_line_status_and_quad_read(dut):
    """Status register 2 on the single-line wiring; a quad read there is a violation."""
    m = Master(dut)
    flash = SPIFlashModel(cs_n=dut.cs_n, sck=dut.sck, copi=dut.copi, cipo=dut.cipo,
                          image=b"\x00", asleep=False, strict=False)
    flash.start()
    before = await m.xfer(b"\x35", n_in=2)
    await m.xfer(b"\x06")
    await m.xfer(b"\x31\x02")
    after = await m.xfer(b"\x35", n_in=1)
    clean = list(flash.errors)
    quad = await m.xfer(b"\xeb\x00\x00\x00", n_in=2)
    save("single_quad", {"before": list(before), "after": list(after), "quad": list(quad),
                         "clean": clean, "errors": flash.errors[len(clean):],
                         "commands": [list(c) for c in flash.commands]})


def quad_flash(dut, **kw) -> SPIFlashModel:
    return SPIFlashModel(cs_n=dut.cs_n, sck=dut.sck, dq_o=dut.dq_o, dq_oe=dut.dq_oe,
                         dq_i=dut.dq_i, **kw)


@cocotb.test(skip=NOT_QUAD)
async def quad_reads(dut):
    """Wake-up, QE set through 0x50 + 0x31, then 0xEB, 0x6B and READ in the quad wiring."""
    job = job_from_env()
    image, base = bytes(job["image"]), job["base"]
    m = QuadMaster(dut)
    flash = quad_flash(dut, image=image, base=base)
    flash.start()
    await m.command(b"\xab")
    await Timer(3000, unit="ns")
    sr_before, pull_before = await _status(m)
    await m.command(b"\x50")
    await m.command(b"\x31\x02")
    sr_after, pull_after = await _status(m)
    got = {}
    for name, (offset, n) in job["reads"].items():
        addr = base + offset
        if name.startswith("eb"):
            got[name] = await m.quad_io_read(addr, n, mode=job["modes"][name])
        elif name.startswith("6b"):
            got[name] = await m.quad_output_read(addr, n)
        else:
            got[name] = await m.command(b"\x03" + addr.to_bytes(3, "big"), n)
    save("quad_reads", {"sr_before": list(sr_before), "sr_after": list(sr_after),
                        "pull_ups": [pull_before, pull_after],
                        "idle": int(dut.dq_i.value),
                        "reads": {k: list(v) for k, v in got.items()},
                        "commands": [list(c) for c in flash.commands],
                        "bytes_out": flash.bytes_out, "qe": flash.qe,
                        "errors": flash.errors})


async def _status(m: QuadMaster) -> tuple[bytes, int]:
    """0x35 with two bytes in; also the other lines of dq_i meanwhile (all 1s)."""
    m.dut.cs_n.value = 0
    await m.send1(b"\x35")
    got = await m.recv1(2)
    await m.end()
    return got


@cocotb.test(skip=NOT_QUAD)
async def quad_violations(dut):
    """Each violation of the quad wiring once, each in its own transaction(s), on a
    non-strict model; per step the errors it added (and what a read returned)."""
    job = job_from_env()
    base = job["base"]
    m = QuadMaster(dut)
    flash = quad_flash(dut, image=bytes(job["image"]), base=base, asleep=False,
                       strict=False)
    flash.start()
    steps = []

    async def step(name, action, **knobs):
        saved = m.hold, m.keep, m.floating
        m.hold, m.keep, m.floating = (knobs.get(k, v) for k, v in
                                      zip(("hold", "keep", "floating"), saved))
        n = len(flash.errors)
        got = await action
        m.hold, m.keep, m.floating = saved
        steps.append([name, flash.errors[n:], list(got or b"")])

    await step("hold_low", m.command(b"\x35", 1), hold=0)
    await step("hold_floating", m.command(b"\x35", 1), hold=None)
    await step("qe0_eb", m.quad_io_read(base, 2))
    await step("qe0_6b", m.quad_output_read(base, 2))
    await step("no_write_enable", m.command(b"\x31\x02"))
    await step("sr2_unchanged", m.command(b"\x35", 1))
    await step("write_enable", m.command(b"\x50"))
    await step("write_sr2", m.command(b"\x31\x02", gap=20))
    await step("within_tshsl2", m.command(b"\x35", 1))
    await step("write_enable_2", m.command(b"\x50"))
    await step("write_sr2_24_bits", m.command(b"\x31\x02\x00"))
    await step("contention_io0", m.quad_io_read(base, 2), keep=0b0001)
    await step("contention_io1", m.command(b"\x03" + base.to_bytes(3, "big"), 1),
               keep=0b0010)
    await step("undriven_io2", m.quad_io_read(base, 1), floating=0b0100)
    await step("odd_nibbles", m.quad_io_read(base, nibbles=3))
    await step("continuous", m.quad_io_read(base, 1, mode=0x20))
    await step("clean_read", m.quad_io_read(base, 2, mode=0xFF))
    save("quad_violations", {"steps": steps, "sr2": flash.sr2,
                             "commands": [list(c) for c in flash.commands]})


@cocotb.test(skip=NOT_QUAD, expect_error=AssertionError)
async def quad_strict(dut):
    """A strict model fails the test at its first violation (contention on IO0, raised from
    the model's task): expected here; the ``finally`` saves what was seen as the test is
    torn down."""
    job = job_from_env()
    base = job["base"]
    m = QuadMaster(dut)
    flash = quad_flash(dut, image=bytes(job["image"]), base=base, asleep=False, qe=True)
    flash.start()
    reached = []
    try:
        reached.append(list(await m.quad_io_read(base, 1)))
        m.keep = 0b0001
        reached.append(list(await m.quad_io_read(base, 2)))
    finally:
        save("quad_strict", {"reached": reached, "errors": flash.errors})
