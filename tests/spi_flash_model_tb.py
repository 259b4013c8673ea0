"""Test helper: cocotb tests of :class:`dynfix.sim.spi_flash_model.SPIFlashModel` driven by a
bit-banged SPI master on a pins-only top level; run by ``test_spi_flash_model``."""

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


def save(name: str, result: dict) -> None:
    Path(job_from_env()["result"]).with_name(f"{name}.json").write_text(json.dumps(result))


@cocotb.test()
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


@cocotb.test()
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
