"""The SPI flash reader against a cycle-level Python flash model in the Amaranth simulator:
the wake-up and its wait, the READ command, the bytes in order under random backpressure,
the header check, restarts; the generated Verilog against the cocotb flash model
(``sim/spi_flash_model.py``) under Icarus."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from amaranth.sim import Simulator

from dynfix.boards.flash_image import FLASH_OFFSET, flash_header, flash_image, flash_payload
from dynfix.boards.spi_flash_reader import (READ, RELEASE_POWER_DOWN, SPIFlashReader,
                                            byte_cycles, check_reader, wake_cycles)

CLK_HZ = 12_000_000
MiB = 1 << 20


class TickFlash:
    """An SPI NOR flash seen at clock edges (the reader's pins are all registered or decoded
    from registers): COPI is taken when SCK has risen, CIPO changes when SCK has fallen.

    ``image`` sits at flash address ``base``; other addresses read as erased (0xFF). The
    flash starts in deep power-down (as the iCE40 may leave it): until a whole 0xAB
    transaction, every command is ignored and CIPO reads 1s. Each transaction is logged as
    (bytes in, cycle CS fell, cycle CS rose).
    """

    def __init__(self, dut: SPIFlashReader, image: bytes, base: int, asleep: bool = True):
        self.dut, self.image, self.base, self.asleep = dut, image, base, asleep
        self.log: list[tuple[bytes, int, int]] = []

    def simulate(self, top, bench, clk_hz: float = CLK_HZ) -> None:
        """Simulate ``top`` (the design that holds the reader) at ``clk_hz`` with the
        testbench ``bench`` and this flash on the reader's pins."""
        sim = Simulator(top)
        sim.add_clock(1 / clk_hz)
        sim.add_testbench(self.run, background=True)
        sim.add_testbench(bench)
        sim.run()

    def byte_at(self, addr: int) -> int:
        i = addr - self.base
        return self.image[i] if 0 <= i < len(self.image) else 0xFF

    async def run(self, ctx) -> None:
        d = self.dut
        cycle, sck, cs_n = 0, 0, 1
        got, bits, began, out_bit = bytearray(), 0, 0, None
        while True:
            await ctx.tick()
            cycle += 1
            new_sck, new_cs_n, copi = ctx.get(d.sck), ctx.get(d.cs_n), ctx.get(d.copi)
            if cs_n and not new_cs_n:
                assert not new_sck, "CS fell with SCK high (mode 0 idles low)"
                got, bits, began, out_bit = bytearray(), 0, cycle, None
            elif not cs_n and new_cs_n:
                assert bits % 8 == 0, f"CS released after {bits} bits, mid-byte"
                self.log.append((bytes(got), began, cycle))
                if bytes(got) == bytes([RELEASE_POWER_DOWN]):
                    self.asleep = False
                ctx.set(d.cipo, 1)
            elif not new_cs_n and new_sck and not sck:
                if bits % 8 == 0:
                    got.append(0)
                got[-1] = (got[-1] << 1 | copi) & 0xFF
                bits += 1
                if bits == 8 and not self.asleep:
                    assert got[0] in (RELEASE_POWER_DOWN, READ), f"unknown command {got[0]:#x}"
                if bits == 32 and got[0] == READ and not self.asleep:
                    out_bit = int.from_bytes(got[1:4], "big") * 8
            elif not new_cs_n and sck and not new_sck and out_bit is not None:
                ctx.set(d.cipo, self.byte_at(out_bit // 8) >> (7 - out_bit % 8) & 1)
                out_bit += 1
            sck, cs_n = new_sck, new_cs_n


def run_reader(dut: SPIFlashReader, flash: TickFlash, ready_p: float = 1.0, seed: int = 0,
               starts: int = 1, max_cycles: int = 200_000) -> dict:
    """Pulse ``start`` (unless the reader boots) ``starts`` times, each time until ``done``
    or ``error``, taking bytes with probability ``ready_p`` per cycle; returns the bytes per
    start and what the watch saw."""
    rng = random.Random(seed)
    seen = {"reads": [], "errors": [], "stalled_high": 0, "payload_changed": 0, "stalls": 0}

    async def bench(ctx):
        for k in range(starts):
            if k or not dut._boot:
                ctx.set(dut.start, 1)
                await ctx.tick()
                ctx.set(dut.start, 0)
            data, held = bytearray(), None
            for _ in range(max_cycles):
                ready = rng.random() < ready_p
                ctx.set(dut.o.ready, ready)
                valid, payload = ctx.get(dut.o.valid), ctx.get(dut.o.payload)
                if valid and held is not None and payload != held:
                    seen["payload_changed"] += 1
                held = payload if valid and not ready else None
                if valid and not ready:
                    seen["stalls"] += 1
                    seen["stalled_high"] += ctx.get(dut.sck)
                if valid and ready:
                    data.append(payload)
                await ctx.tick()
                if ctx.get(dut.done) or ctx.get(dut.error):
                    break
            else:
                raise AssertionError(f"not done within {max_cycles} cycles")
            seen["reads"].append(bytes(data))
            seen["errors"].append(ctx.get(dut.error))
            await ctx.tick().repeat(3)
            assert ctx.get(dut.cs_n) == 1 and not ctx.get(dut.busy)

    flash.simulate(dut, bench)
    return seen


def image_of(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def test_wakes_then_reads_bytes_in_order():
    image = image_of(40, 1)
    dut = SPIFlashReader(offset=MiB + 3, length=33, clk_hz=CLK_HZ)
    flash = TickFlash(dut, image, MiB)
    seen = run_reader(dut, flash)
    assert seen["reads"] == [image[3:36]]
    (wake, _, woke), (read, began, _) = flash.log
    assert wake == bytes([RELEASE_POWER_DOWN])
    assert read == bytes([READ]) + (MiB + 3).to_bytes(3, "big") + bytes(33)
    assert began - woke >= 3e-6 * CLK_HZ          # CS high for tRES1 at 12 MHz
    assert began - woke == wake_cycles(CLK_HZ) + 1


def test_backpressure_random_ready():
    """SCK stops low under a held byte; the payload holds; every byte arrives once."""
    image = image_of(64, 2)
    dut = SPIFlashReader(offset=MiB, length=64, clk_hz=CLK_HZ)
    seen = run_reader(dut, TickFlash(dut, image, MiB), ready_p=0.3, seed=5)
    assert seen["reads"] == [image]
    assert seen["stalls"] > 50
    assert seen["stalled_high"] == 0 and seen["payload_changed"] == 0


def test_throughput_when_always_ready():
    """One byte per 8 SCK periods, no gap (sck_div 2: 16 clocks a byte)."""
    image = image_of(16, 3)
    dut = SPIFlashReader(offset=0, length=16, clk_hz=CLK_HZ)
    flash = TickFlash(dut, image, 0)
    run_reader(dut, flash)
    _, (_, began, ended) = flash.log
    assert ended - began == 2 * 32 + 16 * byte_cycles(2) + 1


def test_without_wake_up_the_flash_reads_ff():
    """A reader whose first command is not 0xAB gets the powered-down flash's 1s: the model
    catches a missing wake-up."""
    class NoWake(SPIFlashReader):
        def command_bits(self):
            return [0] * 8 + super().command_bits()[8:]

    image = image_of(8, 4)
    dut = NoWake(offset=MiB, length=8, clk_hz=CLK_HZ)
    assert run_reader(dut, TickFlash(dut, image, MiB))["reads"] == [b"\xff" * 8]
    dut = SPIFlashReader(offset=MiB, length=8, clk_hz=CLK_HZ)
    assert run_reader(dut, TickFlash(dut, image, MiB))["reads"] == [image]


def test_boot_and_restart_with_slower_sck():
    image = image_of(24, 6)
    dut = SPIFlashReader(offset=MiB + 8, length=10, clk_hz=CLK_HZ, sck_div=6, boot=True)
    flash = TickFlash(dut, image, MiB)
    seen = run_reader(dut, flash, ready_p=0.7, seed=1, starts=2)
    assert seen["reads"] == [image[8:18]] * 2
    assert [t[0][0] for t in flash.log] == [RELEASE_POWER_DOWN, READ] * 2
    (_, b, e) = flash.log[1]
    assert e - b >= 6 * (32 + 80)                  # SCK at clk/6


@pytest.mark.parametrize("flip", [None, 0, 5, 15])
def test_header_check(flip):
    """Matching header: only the payload comes out. Any byte off: error, nothing out."""
    header = bytes(range(0x40, 0x50))
    payload = image_of(12, 7)
    stored = bytearray(header + payload)
    if flip is not None:
        stored[flip] ^= 0x10
    dut = SPIFlashReader(offset=MiB, length=12, clk_hz=CLK_HZ, header=header)
    seen = run_reader(dut, TickFlash(dut, bytes(stored), MiB))
    if flip is None:
        assert seen["reads"] == [payload] and seen["errors"] == [0]
    else:
        assert seen["reads"] == [b""] and seen["errors"] == [1]


def test_reads_a_flash_image():
    """flash_image's bytes at FLASH_OFFSET, checked with flash_header: the payload."""
    payload = flash_payload([random.Random(9).randrange(1 << 12) for _ in range(20)], 12)
    dut = SPIFlashReader(offset=FLASH_OFFSET, length=len(payload), clk_hz=CLK_HZ,
                         header=flash_header(payload))
    seen = run_reader(dut, TickFlash(dut, flash_image(payload), FLASH_OFFSET), ready_p=0.5)
    assert seen["reads"] == [payload] and seen["errors"] == [0]


@pytest.mark.parametrize("kw, match", [
    ({"length": 0}, "length"),
    ({"offset": (1 << 24) - 4, "length": 5}, "outside"),
    # A board's smaller flash (FlashSpec.bytes): the last byte must be inside it.
    ({"offset": 0x300000, "length": 5, "flash_bytes": 0x300004},
     r"bytes 3145728\.\.3145732 are outside a flash of 3145732 bytes"),
    ({"flash_bytes": 1 << 25}, "flash_bytes must be 1 to 16777216"),
    ({"sck_div": 3}, "sck_div"),
    ({"header": bytes(33)}, "header"),
])
def test_bad_parameters(kw, match):
    args = dict(offset=0, length=4, clk_hz=CLK_HZ) | kw
    with pytest.raises(ValueError, match=match):
        check_reader(**args)


def run_reader_tb(payload: bytes, offset: int, build_dir: Path, ready_p: float = 0.5) -> dict:
    """The reader's Verilog, checking the header and reading ``payload`` of a flash image
    stored at ``offset``, against the cocotb flash model (``tests/spi_flash_tb.py``) under
    Icarus, at 12 MHz."""
    from amaranth.back import verilog

    from dynfix.hw.generate import ensure_yosys
    from dynfix.sim.simulators import error_lines, job_files
    from sim_helpers import run_icarus

    ensure_yosys()
    build_dir = build_dir.resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    src = build_dir / "reader.v"
    dut = SPIFlashReader(offset=offset, length=len(payload), clk_hz=CLK_HZ,
                         header=flash_header(payload))
    src.write_text(verilog.convert(dut, name="reader", emit_src=False,
                                   strip_internal_attrs=True))
    job, result = job_files(build_dir, {
        "image": list(flash_image(payload)), "base": offset, "seed": 3, "ready_p": ready_p,
        "period_ps": 2 * round(0.5e12 / CLK_HZ), "max_cycles": 40 * len(payload) + 2000})
    log = run_icarus([src], "reader", "spi_flash_tb", build_dir, job)
    assert result.exists(), f"the cocotb test failed{error_lines(log, 3)} (see {log})"
    return json.loads(result.read_text())


def test_verilog_against_cocotb_flash_model(tmp_path: Path):
    """The generated Verilog reads a random flash image at 1 MiB from the cocotb flash model:
    header checked, payload byte-exact, under random backpressure (Icarus, 12 MHz: the 3 us
    wake-up is timed)."""
    payload = image_of(300, 8)
    result = run_reader_tb(payload, offset=FLASH_OFFSET, build_dir=tmp_path)
    assert result["errors"] == [] and result["error"] == 0
    assert bytes(result["data"]) == payload
    assert result["commands"] == [[RELEASE_POWER_DOWN], [READ, 0x10, 0, 0]]
    assert result["done"] == 1 and result["cs_n"] == 1 and result["ignored"] == 0
