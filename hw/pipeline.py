"""Small helpers for fixed-latency pipelines."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, Value


def delay(m: Module, value: Value, cycles: int, name: str) -> Value:
    """``value`` delayed by ``cycles`` register stages in ``m``'s sync domain."""
    for n in range(cycles):
        r = Signal.like(value, name=f"{name}_d{n + 1}")
        m.d.sync += r.eq(value)
        value = r
    return value
