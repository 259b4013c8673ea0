"""UART receiver and transmitter against a bit-level line model in the Amaranth simulator."""

import pytest
from amaranth import Module
from amaranth.sim import Simulator

from dynfix.boards.uart_model import uart_recv, uart_send
from dynfix.boards.uart_rx import UARTRx
from dynfix.boards.uart_tx import UARTTx, baud_divisor
from dynfix.errors import DynfixError

DIV = 16
DATA = bytes([0x00, 0xff, 0x55, 0xaa, 0x01, 0x80, 0x3c, 0xa5])


def run(dut, *benches):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for b in benches:
        sim.add_testbench(b)
    sim.run()


async def stream_put(ctx, port, data: bytes):
    """Offer each byte on a stream until it is taken."""
    for b in data:
        ctx.set(port.payload, b)
        ctx.set(port.valid, 1)
        await ctx.tick().until(port.ready)
    ctx.set(port.valid, 0)


def test_baud_divisor():
    assert baud_divisor(12e6, 115200) == 104
    assert baud_divisor(25e6, 115200) == 217
    assert baud_divisor(48e6, 115200) == 417
    with pytest.raises(DynfixError, match="off by"):
        baud_divisor(1e6, 115200, tolerance=0.02)   # 9 cycles: 3.5 % off
    with pytest.raises(DynfixError, match="too fast"):
        baud_divisor(12e6, 6_000_000)


@pytest.mark.parametrize("rate", [1.0, 0.96, 1.04])
@pytest.mark.parametrize("gap", [0, 1.5])
def test_rx_frames(rate, gap):
    """Back-to-back and spaced frames, from a sender up to 4 % off the receiver's rate."""
    dut = UARTRx(divisor=DIV)
    got = []

    async def sender(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(5)
        await uart_send(ctx, dut.rx, DATA, DIV * rate, gap_bits=gap)
        await ctx.tick().repeat(2 * DIV)

    async def receiver(ctx):
        ctx.set(dut.o.ready, 1)
        while len(got) < len(DATA):
            _, _, valid, payload, ferr = await ctx.tick().sample(
                dut.o.valid, dut.o.payload, dut.frame_error)
            assert not ferr
            if valid:
                got.append(payload)

    run(dut, sender, receiver)
    assert bytes(got) == DATA


def test_rx_framing_error_and_glitch():
    """A frame whose stop bit is 0 is dropped with frame_error; a short low glitch is not a
    start bit; the next good frame comes through."""
    dut = UARTRx(divisor=DIV)
    events = []

    async def sender(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(5)
        await uart_send(ctx, dut.rx, b"\x42", DIV, stop=0)
        await ctx.tick().repeat(3 * DIV)
        ctx.set(dut.rx, 0)                  # glitch: 3 cycles low
        await ctx.tick().repeat(3)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2 * DIV)
        await uart_send(ctx, dut.rx, b"\x5a", DIV)
        await ctx.tick().repeat(2 * DIV)
        events.append("end")

    async def watcher(ctx):
        ctx.set(dut.o.ready, 1)
        while "end" not in events:
            _, _, valid, payload, ferr = await ctx.tick().sample(
                dut.o.valid, dut.o.payload, dut.frame_error)
            if ferr:
                events.append("ferr")
            if valid:
                events.append(payload)

    run(dut, sender, watcher)
    assert events == ["ferr", 0x5a, "end"]


def test_rx_holds_byte_until_ready():
    dut = UARTRx(divisor=DIV)

    async def bench(ctx):
        ctx.set(dut.rx, 1)
        ctx.set(dut.o.ready, 0)
        await ctx.tick().repeat(5)
        await uart_send(ctx, dut.rx, b"\x99", DIV)
        await ctx.tick().repeat(4 * DIV)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 0x99
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        assert not ctx.get(dut.o.valid)

    run(dut, bench)


@pytest.mark.parametrize("rate", [1.0, 0.97, 1.03])
def test_tx_frames(rate):
    """Bytes queued back to back go out as contiguous frames a receiver off by 3 % reads."""
    dut = UARTTx(divisor=DIV)
    got = []

    async def driver(ctx):
        await stream_put(ctx, dut.i, DATA)

    async def receiver(ctx):
        assert ctx.get(dut.tx) == 1
        got.append(await uart_recv(ctx, dut.tx, len(DATA), DIV * rate, timeout=20 * DIV))

    run(dut, driver, receiver)
    assert got == [DATA]


def test_loopback():
    """TX into RX at the same divisor: every byte value survives."""
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor=8)
    m.submodules.rx = rx = UARTRx(divisor=8)
    m.d.comb += rx.rx.eq(tx.tx)
    data = bytes(range(256))
    got = bytearray()

    async def driver(ctx):
        await stream_put(ctx, tx.i, data)

    async def receiver(ctx):
        ctx.set(rx.o.ready, 1)
        while len(got) < len(data):
            _, _, valid, payload = await ctx.tick().sample(rx.o.valid, rx.o.payload)
            if valid:
                got.append(payload)

    run(m, driver, receiver)
    assert bytes(got) == data
