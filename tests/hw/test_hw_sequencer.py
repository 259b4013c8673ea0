"""The sequencer's issue stream (addresses, padding, flags) against the loop nest written out
directly from the layer's geometry; padding, stride 2, pooling order, FC layers."""

from __future__ import annotations

import numpy as np
import pytest

from dynfix.hw.compiler import compile_model
from dynfix.hw.config import EngineConfig
from dynfix.hw.sequencer import Sequencer
from dynfix.quant.ir import Flatten, Linear, Model
from dynfix.quant.search import search

from hw_models import conv, rect_pool_net, residual_net, small_net, view_net
from sim_helpers import run_amaranth


def res_dw():
    from graph_nets import calib, res_dw_model
    model = res_dw_model()
    return model, search(model, calib(16), bits="8")


def expected(cfg, plan):
    """(map_addr or None when padded, w_addr, b_addr, first, last, pool_first, pool_last);
    a residual group's shortcut slots read ("sc", address) first at every output pixel.
    A group reading a Resize view walks the view (``in_shape``; its padding at the view's
    border) and reads the stored pixel ``(iy // fy, ix // fx)``."""
    e, n = plan.entry, cfg.lanes
    c, h, w = plan.in_shape
    (fy, fx), stored_w = plan.resize, plan.in_shape[2] // plan.resize[1]
    t_px = -(-c // n)                                   # words per input pixel
    t_in = cfg.dw_words if plan.kind == "dwconv" else t_px
    (kh, kw), (sy, sx), (ph, pw) = plan.kernel, plan.stride, plan.pool_hw
    top, left = plan.pads[:2]
    out = []
    for mg in range(e["n_mg"]):
        for py in range(e["n_py"]):
            for px in range(e["n_px"]):
                for dy in range(ph):
                    for dx in range(pw):
                        oy, ox = py * ph + dy, px * pw + dx
                        w0 = e["w_base"] + mg * (1 if plan.shared else kh * kw) * t_in
                        first_word = e.get("sc_base", 0) + (py * e["n_px"] + px) * e["t_out"]
                        for k in range(cfg.sc_slots if plan.add else 0):
                            out.append((("sc", first_word + mg * cfg.tm // n + k), w0,
                                        e["b_base"] + mg, True, False, True, True))
                        for ky in range(kh):
                            for kx in range(kw):
                                for t in range(t_in):
                                    iy, ix = oy * sy - top + ky, ox * sx - left + kx
                                    inside = 0 <= iy < h and 0 <= ix < w
                                    first = (mg * cfg.tm) // n if plan.kind == "dwconv" else 0
                                    addr = (e["in_base"] + first + t
                                            + (iy // fy * stored_w + ix // fx) * t_px)
                                    out.append((
                                        addr if inside else None,
                                        e["w_base"] + (mg * t_in + t if plan.shared else
                                                       ((mg * kh + ky) * kw + kx) * t_in + t),
                                        e["b_base"] + mg,
                                        ky == kx == t == 0,
                                        (ky, kx, t) == (kh - 1, kw - 1, t_in - 1),
                                        dy == dx == 0, (dy, dx) == (ph - 1, pw - 1)))
    return out


def issued(cfg, plan):
    dut = Sequencer(cfg)
    got = []

    async def tb(ctx):
        for name, value in plan.entry.items():
            ctx.set(dut.entry[name], value)
        await ctx.tick()                    # the entry is stable a cycle before start
        ctx.set(dut.start, 1)
        assert not ctx.get(dut.valid)
        await ctx.tick()
        ctx.set(dut.start, 0)
        while ctx.get(dut.valid):
            pad = ctx.get(dut.pad)
            addr = None if pad else ctx.get(dut.map_addr)
            if cfg.residual and ctx.get(dut.sc):
                addr = ("sc", ctx.get(dut.map_addr))
            got.append((addr, ctx.get(dut.w_addr),
                        ctx.get(dut.b_addr), *(bool(ctx.get(getattr(dut, f))) for f in
                                               ("first", "last", "pool_first", "pool_last"))))
            done = ctx.get(dut.done)
            await ctx.tick()
            assert done == (not ctx.get(dut.valid))

    run_amaranth(dut, tb)
    return got


def strided_model():
    """A 5x5 stride-2 conv with asymmetric padding, then a 1x1 conv and an FC after FC."""
    rng = np.random.default_rng(0)
    layers = [conv(rng, "a", "x", 3, 10, 5, 5, stride=(2, 2), pads=(2, 1, 2, 0)),
              conv(rng, "b", "a", 4, 3, 1, 1, stride=(1, 2)),
              Flatten("f", ("b",)),
              Linear("c", ("f",), weight=rng.standard_normal((5, 4 * 4 * 1)).astype(np.float32)),
              Linear("d", ("c",), weight=rng.standard_normal((3, 5)).astype(np.float32))]
    model = Model("strided", "x", (10, 7, 6), layers)
    return model, search(model, rng.standard_normal((16, 10, 7, 6)).astype(np.float32))


CASES = [("small", EngineConfig(tn=9, tm=3)), ("small", EngineConfig(tn=4, tm=2)),
         ("strided", EngineConfig(tn=9, tm=1)), ("strided", EngineConfig(tn=8, tm=4)),
         ("residual", EngineConfig(tn=3, tm=4)), ("residual", EngineConfig(tn=4, tm=2)),
         ("res_dw", EngineConfig(tn=3, tm=4)), ("res_dw", EngineConfig(tn=2, tm=4)),
         ("view", EngineConfig(tn=3, tm=4)), ("view", EngineConfig(tn=9, tm=3)),
         ("rect", EngineConfig(tn=4, tm=2)), ("rect", EngineConfig(tn=3, tm=4))]


@pytest.mark.parametrize("which,cfg", CASES)
def test_sequencer_issue_order(which, cfg):
    model, spec = {"small": lambda: small_net()[:2], "strided": strided_model,
                   "residual": lambda: residual_net()[:2], "res_dw": res_dw,
                   "view": lambda: view_net()[:2], "rect": lambda: rect_pool_net()[:2]}[which]()
    cm = compile_model(model, spec, cfg)
    assert cm.config.resize == (which == "view")
    assert cm.config.rect_pool == (which == "rect")
    for plan in cm.plans:
        got = issued(cm.config, plan)
        want = expected(cm.config, plan)
        assert len(got) == len(want), plan.name
        assert got == want, plan.name
        assert any(g[0] is None for g in got) == any(plan.pads)


def test_groups_without_a_view_issue_as_before():
    """On an engine with Resize views, the groups read as stored (strided convs, a strided
    depthwise conv on the depthwise window, whose walk has steps of its own) issue exactly
    what they issue on the engine without views: their steps from odd coordinates are
    those from even ones."""
    rng = np.random.default_rng(2)
    layers = [conv(rng, "a", "x", 6, 3, 3, 3, pads=(1, 1, 1, 1)),
              conv(rng, "dw", "a", 6, 1, 3, 3, stride=(2, 2), pads=(1, 1, 1, 1), groups=6),
              conv(rng, "b", "dw", 4, 6, 3, 3, stride=(2, 1)),
              Flatten("f", ("b",)),
              Linear("fc", ("f",), weight=rng.standard_normal((3, 4 * 2 * 4)).astype(np.float32))]
    model = Model("dw2", "x", (3, 11, 12), layers)
    spec = search(model, rng.standard_normal((16, 3, 11, 12)).astype(np.float32))
    plain = compile_model(model, spec, EngineConfig(tn=9, tm=3))
    views = compile_model(model, spec, EngineConfig(tn=9, tm=3, resize=1))
    assert views.config.resize and not plain.config.resize
    assert any(p.window for p in views.plans)
    for a, b in zip(plain.plans, views.plans):
        assert issued(views.config, b) == issued(plain.config, a), a.name
