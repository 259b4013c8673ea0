"""A bit-level UART for Amaranth simulator testbenches: the host side of the serial link.

The functions drive or watch a 1-bit line signal with ``ctx.set``/``ctx.get`` and
``ctx.tick()``. A bit lasts ``bit_cycles`` clock cycles, which may be fractional (a sender
that is a few percent off the receiver's rate): bit edges fall on the nearest cycle.
"""

from __future__ import annotations

__all__ = ["uart_send", "uart_recv", "frame_bits"]


def frame_bits(byte: int, stop: int = 1) -> list[int]:
    """The line levels of one 8N1 frame: start 0, data LSB first, stop ``stop``."""
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


async def _hold(ctx, pos: float, cycles: float) -> float:
    """Tick from position ``pos`` (cycles, fractional) on by ``cycles``."""
    end = pos + cycles
    for _ in range(round(end) - round(pos)):
        await ctx.tick()
    return end


async def uart_send(ctx, line, data: bytes, bit_cycles: float, gap_bits: float = 0,
                    stop: int = 1) -> None:
    """Send ``data`` as back-to-back 8N1 frames (``gap_bits`` idle bits between frames)."""
    pos = 0.0
    for byte in data:
        for bit in frame_bits(byte, stop):
            ctx.set(line, bit)
            pos = await _hold(ctx, pos, bit_cycles)
        ctx.set(line, 1)
        if gap_bits:
            pos = await _hold(ctx, pos, gap_bits * bit_cycles)


async def uart_recv(ctx, line, count: int, bit_cycles: float, timeout: int = 10**7) -> bytes:
    """Receive ``count`` frames from ``line``, sampling each bit at its middle.

    Raises ``AssertionError`` on a bad stop bit or when nothing arrives within ``timeout``
    cycles.
    """
    out = bytearray()
    for _ in range(count):
        waited = 0
        while ctx.get(line):
            await ctx.tick()
            waited += 1
            assert waited < timeout, f"no start bit within {timeout} cycles ({len(out)} bytes)"
        # At the first cycle of the start bit; sample mid-bit from here.
        samples = []
        pos = 0.0
        for i in range(10):
            target = round((i + 0.5) * bit_cycles)
            for _ in range(target - round(pos)):
                await ctx.tick()
            pos = target
            samples.append(ctx.get(line))
        assert samples[0] == 0, "start bit not low at its middle"
        assert samples[9] == 1, f"framing error on byte {len(out)}"
        out.append(sum(b << i for i, b in enumerate(samples[1:9])))
    return bytes(out)
