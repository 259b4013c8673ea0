"""Where the next output-channel group starts in a map word: one place for the arithmetic
the write-back, the shortcut reads and the depthwise input offset share."""

from __future__ import annotations

from amaranth.hdl import Const, Mux, Value


def next_group(word: Value, lane: Value, tm: int, lanes: int) -> tuple[Value, Value]:
    """``(word, lane)`` of the channel ``tm`` channels after the one at lane ``lane`` of
    ``word``, with ``lanes`` channels per word: the word advances by ``tm // lanes``, and by
    one more when the lane offset wraps (no divider; ``tm`` and ``lanes`` are constants)."""
    step_words, step_lanes = divmod(tm, lanes)
    wrap = lane >= lanes - step_lanes if step_lanes else Const(0)
    return (word + step_words + wrap,
            Mux(wrap, lane + step_lanes - lanes, lane + step_lanes))
