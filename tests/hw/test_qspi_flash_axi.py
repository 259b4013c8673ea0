"""The quad-SPI flash AXI4 port (``hw/qspi_flash_axi.py``) in Amaranth's simulator, against a
small pin-level flash written here from the W25Q128JV's command set: the boot's commands,
the data of bursts that continue the stream and of ones that do not, the timing the cycle
model assumes (``flash_timing``) under random read stalls, a wrong header, bad bursts."""

from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from dynfix.hw.axi import BURST_FIXED, BURST_INCR, RESP_OKAY, RESP_SLVERR
from dynfix.hw.qspi_flash_axi import QspiFlashAxi, deselect_cycles, wake_cycles
from dynfix.hw.timing import flash_timing

OFFSET = 0x100000
HEADER = bytes(range(0xA0, 0xB0))
CLK_HZ = 30_000_000


class PinFlash:
    """The flash at its pins, one clock cycle at a time: SPI mode 0, commands 0xAB, 0x50,
    0x31 (status register 2) and 0xEB (quad I/O read). Records commands and violations."""

    def __init__(self, image: dict[int, int]):
        self.image = image
        self.qe = False
        self.commands: list[list[int]] = []
        self.errors: list[str] = []
        self.cs_n, self.sck, self.dq_i = 1, 0, 0b1111
        self.high_since = 0
        self._reset()

    def _reset(self):
        self.bits, self.cmd, self.nibbles, self.addr, self.data_from = 0, 0, [], 0, None

    def step(self, cycle: int, cs_n: int, sck: int, dq_o: int, dq_oe: int) -> None:
        if cs_n and not self.cs_n:
            if self.cmd and self.cmd != 0xEB:
                self.commands.append([self.cmd] + self.nibbles)
                if self.cmd == 0x31 and self.nibbles == [0x02]:
                    self.qe = True
            self._reset()
            self.high_since = cycle
        elif not cs_n and self.cs_n and sck:
            self.errors.append(f"{cycle}: CS fell with SCK high")
        driving = self.data_from is not None and self.bits >= self.data_from
        if not cs_n and driving and dq_oe:
            self.errors.append(f"{cycle}: contention (oe {dq_oe:04b})")
        if not cs_n and sck and not self.sck:                 # rising edge: take bits
            quad_in = self.cmd == 0xEB and 8 <= self.bits < 16
            if self.bits < 8 or self.cmd == 0x31:
                if not (dq_oe & 1):
                    self.errors.append(f"{cycle}: IO0 not driven")
                if not self.qe and (dq_oe & 8 == 0 or dq_o & 8 == 0):
                    self.errors.append(f"{cycle}: HOLD# low with QE = 0")
                if self.bits < 8:
                    self.cmd = (self.cmd << 1 | dq_o & 1) & 0xFF
                else:
                    if (self.bits - 8) % 8 == 0:
                        self.nibbles.append(0)
                    self.nibbles[-1] = self.nibbles[-1] << 1 | dq_o & 1
            elif quad_in:
                if dq_oe != 0b1111:
                    self.errors.append(f"{cycle}: address nibble not driven")
                self.nibbles.append(dq_o)
            self.bits += 1
            if self.bits == 8 and self.cmd == 0xEB:
                if not self.qe:
                    self.errors.append(f"{cycle}: quad read with QE = 0")
                self.data_from = 20
            if self.cmd == 0xEB and self.bits == 16:
                self.addr = int("".join(f"{n:x}" for n in self.nibbles[:6]), 16)
                self.commands.append([self.cmd] + self.nibbles)
        if not cs_n and self.sck and not sck:                 # falling edge: next nibble
            if self.data_from is not None and self.bits >= self.data_from:
                k = self.bits - self.data_from                # nibble index now driven
                if k % 2 == 0:
                    self.out = self.image.get(self.addr + k // 2, 0xFF)
                self.dq_i = (self.out >> 4) if k % 2 == 0 else self.out & 0xF
        if cs_n:
            self.dq_i = 0b1111
        self.cs_n, self.sck = cs_n, sck


def run(image: dict[int, int], bursts: list[tuple[int, int, int]], *, data_width: int = 8,
        stall: float = 0.0, seed: int = 1, header: bytes = HEADER, cycles: int = 20000):
    """Boot, then the AXI bursts ``(byte address, beats, arburst)`` in order (each AR as
    soon as the port takes it), ``rready`` low with probability ``stall``. Returns the
    flash, the AR handshake cycles, the beats ``(valid cycle, handshake cycle, data,
    last, resp)`` and the port's ready/error."""
    dut = QspiFlashAxi(24, data_width, offset=OFFSET, length=1 << 16, header=header,
                       clk_hz=CLK_HZ)
    flash = PinFlash(image)
    rng = random.Random(seed)
    out = {"ar": [], "beats": []}

    async def bench(ctx):
        bus = dut.bus
        todo = list(bursts)
        valid_since = None
        for cycle in range(cycles):
            if todo:
                addr, beats, burst = todo[0]
                ctx.set(bus.araddr, addr)
                ctx.set(bus.arlen, beats - 1)
                ctx.set(bus.arsize, (data_width // 8).bit_length() - 1)
                ctx.set(bus.arburst, burst)
                ctx.set(bus.arvalid, 1)
            else:
                ctx.set(bus.arvalid, 0)
            ready = int(rng.random() >= stall)
            ctx.set(bus.rready, ready)
            ctx.set(dut.dq_i, flash.dq_i)
            if ctx.get(bus.arvalid) and ctx.get(bus.arready):
                out["ar"].append(cycle)
                todo.pop(0)
            if ctx.get(bus.rvalid):
                if valid_since is None:
                    valid_since = cycle
                if ready:
                    out["beats"].append((valid_since, cycle, ctx.get(bus.rdata),
                                         ctx.get(bus.rlast), ctx.get(bus.rresp)))
                    valid_since = None
            await ctx.tick()
            flash.step(cycle + 1, ctx.get(dut.cs_n), ctx.get(dut.sck), ctx.get(dut.dq_o),
                       ctx.get(dut.dq_oe))
            if not todo and len(out["beats"]) == sum(b for _, b, _ in bursts):
                break
        out["ready"], out["error"] = ctx.get(dut.ready), ctx.get(dut.error)

    sim = Simulator(dut)
    sim.add_clock(1 / CLK_HZ)
    sim.add_testbench(bench)
    sim.run()
    return flash, out


def flash_image(n: int, seed: int = 3) -> tuple[bytes, dict[int, int]]:
    payload = random.Random(seed).randbytes(n)
    image = {OFFSET + i: b for i, b in enumerate(HEADER + payload)}
    return payload, image


def words(payload: bytes, addr: int, beats: int, nbytes: int) -> list[int]:
    return [int.from_bytes(payload[addr + i * nbytes:addr + (i + 1) * nbytes], "little")
            for i in range(beats)]


def test_boot_commands_and_timing_constants():
    payload, image = flash_image(64)
    flash, out = run(image, [(0, 4, BURST_INCR)])
    assert flash.errors == []
    assert out["ready"] == 1 and out["error"] == 0
    # 0xAB; 0x50; 0x31 with QE; the header's quad read at OFFSET; the burst's read.
    a = [OFFSET >> s & 0xF for s in range(20, -4, -4)]
    b = [(OFFSET + len(HEADER)) >> s & 0xF for s in range(20, -4, -4)]
    assert flash.commands[:3] == [[0xAB], [0x50], [0x31, 0x02]]
    assert flash.commands[3][:7] == [0xEB] + a and flash.commands[3][7:9] == [0, 0]
    assert flash.commands[4][:7] == [0xEB] + b
    assert wake_cycles(CLK_HZ) == 90 and deselect_cycles(CLK_HZ) == 2


@pytest.mark.parametrize("data_width", [8, 16, 32])
def test_bursts_continue_the_stream_at_the_modelled_timing(data_width):
    """Three bursts in a row (one read command), then a jump back (a new one); random
    stalls. Every beat's data, and: a new read's first beat ``latency`` after its AR, every
    other beat ``interval`` after the previous beat's handshake."""
    nbytes = data_width // 8
    payload, image = flash_image(512)
    bursts = [(0, 5, BURST_INCR), (5 * nbytes, 3, BURST_INCR), (8 * nbytes, 4, BURST_INCR),
              (2 * nbytes, 6, BURST_INCR)]
    flash, out = run(image, bursts, data_width=data_width, stall=0.3, seed=data_width)
    assert flash.errors == []
    want = [w for a, n, _ in bursts for w in words(payload, a, n, nbytes)]
    beats = out["beats"]
    assert [b[2] for b in beats] == want
    assert [b[3] for b in beats] == [int(i == n - 1) for _, n, _ in bursts for i in range(n)]
    assert all(b[4] == RESP_OKAY for b in beats)
    assert len([c for c in flash.commands if c[0] == 0xEB]) == 3    # header, 0, the jump
    latency, interval = flash_timing(data_width)
    for i, (valid, taken, *_) in enumerate(beats):
        if i == 0:
            assert valid == out["ar"][0] + latency
        elif i == 12:
            # The jump's AR waited (and was checked); its read starts as the third burst's
            # last beat is assembled, as if its AR had come a cycle before.
            assert valid == beats[11][0] - 2 + latency
        else:
            assert valid == beats[i - 1][1] + interval, (i, beats[i - 1], valid)


def test_a_burst_after_the_stream_stopped_pays_the_command_again():
    """A burst whose AR comes after the stream ran dry: the same latency as the first, also
    when it continues the stream (the port cannot know the flash is still in the read)."""
    payload, image = flash_image(64)
    latency, interval = flash_timing(8)
    flash, out = run(image, [(7, 3, BURST_INCR), (7, 3, BURST_INCR)])
    beats = out["beats"]
    assert [b[2] for b in beats] == words(payload, 7, 3, 1) * 2
    assert beats[0][0] - out["ar"][0] == latency
    assert beats[3][0] == beats[2][0] - 2 + latency
    assert flash.errors == []


def test_a_wrong_header_serves_nothing():
    payload, image = flash_image(16)
    image[OFFSET + 5] ^= 0x10
    flash, out = run(image, [(0, 1, BURST_INCR)], cycles=2000)
    assert out["error"] == 1 and out["ready"] == 0
    assert out["ar"] == [] and out["beats"] == []
    assert flash.errors == []


def test_bursts_other_than_incr_are_answered_slverr():
    payload, image = flash_image(32)
    flash, out = run(image, [(0, 2, BURST_FIXED), (2, 2, BURST_INCR)])
    assert [b[4] for b in out["beats"]] == [RESP_SLVERR] * 2 + [RESP_OKAY] * 2
    assert [b[2] for b in out["beats"]] == list(payload[:4])
