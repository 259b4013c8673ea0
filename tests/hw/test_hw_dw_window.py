"""Amaranth-simulator tests of the depthwise window (hw/dw_window.py): the taps it gives each
row of the MAC array against windows cut from a padded numpy map."""

from __future__ import annotations

import numpy as np
import pytest

from dynfix.hw.config import EngineConfig
from dynfix.hw.dw_window import DwWindow

from sim_helpers import run_amaranth


def run_window(cfg: EngineConfig, items: list[dict], consts: dict) -> list[tuple]:
    """Feed ``items`` (dicts of the item ports, or None for an idle cycle) after a start
    pulse; returns (first, last, rows) of every cycle with ``o_valid``."""
    dut = DwWindow(cfg)
    out = []

    async def tb(ctx):
        for name, v in consts.items():
            ctx.set(getattr(dut, name), v)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for step in range(len(items) + dut.LATENCY + 1):
            item = items[step] if step < len(items) else None
            ctx.set(dut.valid, item is not None)
            if item is not None:
                ctx.set(dut.first, item["first"])
                ctx.set(dut.last, item["last"])
                ctx.set(dut.off, item["off"])
                for lane, v in enumerate(item["x"]):
                    ctx.set(dut.x[lane], int(v))
            await ctx.delay(1e-9)
            if ctx.get(dut.o_valid):
                rows = [[ctx.get(dut.xr[j][lane]) for lane in range(cfg.lanes)]
                        for j in range(cfg.tm)]
                out.append((ctx.get(dut.o_first), ctx.get(dut.o_last), rows))
            await ctx.tick()

    run_amaranth(dut, tb)
    return out


@pytest.mark.parametrize("k,lanes,tm,hw,stride,pads", [
    (3, 9, 3, (5, 4), (1, 1), (1, 1, 1, 1)),
    (3, 9, 9, (4, 6), (2, 2), (1, 1, 1, 1)),
    (3, 12, 4, (6, 3), (2, 1), (0, 2, 2, 0)),
    (2, 4, 2, (3, 5), (1, 2), (1, 0, 0, 1)),
    (3, 9, 3, (1, 3), (1, 1), (2, 2, 0, 0)),
], ids=["3x3-s1", "s2-tm=lanes", "asym-pads", "2x2", "one-row"])
def test_window_taps_match_padded_map(k, lanes, tm, hw, stride, pads):
    (hh, ww), (sy, sx), (top, left, bottom, right) = hw, stride, pads
    cfg = EngineConfig(tn=lanes, tm=tm, data_bits=8, dim_bits=6, dw_window=k,
                       dw_line=16)
    rng = np.random.default_rng(k * 100 + lanes + hh * ww)
    pad = -3                                            # a map with an offset pads with zp
    x = rng.integers(-128, 128, (lanes, hh, ww))
    xp = np.full((lanes, hh + top + bottom, ww + left + right), pad)
    xp[:, top:top + hh, left:left + ww] = x
    oh = (hh + top + bottom - k) // sy + 1
    ow = (ww + left + right - k) // sx + 1
    rows, cols = (oh - 1) * sy + k - top, (ow - 1) * sx + k - left
    items = []
    for off in range(0, lanes, tm):                     # every group of the word
        for r in range(rows):
            for c in range(cols):
                word = xp[:, top + r, left + c]          # the padding value beyond the map
                items.append(dict(x=word, first=1, last=1, off=off))
                if rng.random() < 0.3:
                    items.append(None)                  # the sequencer may pause
    got = run_window(cfg, items, dict(win=1, n_rows=rows, n_cols=cols, sy=sy, sx=sx,
                                      wy=k - 1 - top, wx=k - 1 - left, pad=pad))
    want = []
    for off in range(0, lanes, tm):
        for oy in range(oh):
            for ox in range(ow):
                taps = xp[off:off + tm, oy * sy:oy * sy + k, ox * sx:ox * sx + k]
                want.append(taps.reshape(tm, k * k))
    assert len(got) == len(want)
    for (first, last, rows_got), taps in zip(got, want):
        assert (first, last) == (1, 1)
        np.testing.assert_array_equal(np.array(rows_got)[:, :k * k], taps)


def test_other_layers_pass_through():
    """Outside a window layer every item comes out, LATENCY cycles later, its word in every
    row (the MAC array's broadcast)."""
    cfg = EngineConfig(tn=9, tm=3, data_bits=8, dim_bits=6, dw_window=3, dw_line=8)
    rng = np.random.default_rng(1)
    words = rng.integers(-128, 128, (7, 9))
    items = [dict(x=wd, first=int(i % 3 == 0), last=int(i % 3 == 2), off=3)
             for i, wd in enumerate(words)]
    items.insert(2, None)
    got = run_window(cfg, items, dict(win=0, n_rows=2, n_cols=2, sy=1, sx=1, wy=2, wx=2,
                                      pad=0))
    assert len(got) == len(words)
    for i, (first, last, rows) in enumerate(got):
        assert (first, last) == (int(i % 3 == 0), int(i % 3 == 2))
        for row in rows:
            assert row == words[i].tolist()
