"""The controller against fake load / sequencer / unload units: order of phases, the entry it
presents per layer, drain, done/busy, and the cycle counters."""

from __future__ import annotations


from dynfix.hw.compiler import compile_model
from dynfix.hw.config import EngineConfig
from dynfix.hw.controller import Controller

from hw_models import small_net
from sim_helpers import run_amaranth

DRAIN = 4
RUN = [7, 1, 12]                    # cycles each fake layer takes until its last item
LOAD, UNLOAD = 5, 3


def test_controller_runs_the_program_twice():
    model, spec, _ = small_net()
    cm = compile_model(model, spec, EngineConfig(tn=9, tm=3))
    assert len(cm.plans) == len(RUN)
    dut = Controller(cm.config, cm.program, DRAIN)
    runs = []

    async def tb(ctx):
        for _ in range(2):
            events, fire, layer = [], {}, 0
            assert not ctx.get(dut.busy)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for cyc in range(400):
                for name in ("load_done", "seq_done", "unload_done"):
                    ctx.set(getattr(dut, name), fire.get(name) == cyc)
                assert ctx.get(dut.busy) and not ctx.get(dut.done)
                assert ctx.get(dut.loading) + ctx.get(dut.running) + ctx.get(dut.unloading) <= 1
                if ctx.get(dut.load_start):
                    events.append(("load", ctx.get(dut.entry.in_c)))
                    fire["load_done"] = cyc + LOAD
                if ctx.get(dut.seq_start):
                    events.append(("layer", ctx.get(dut.entry.w_base), ctx.get(dut.entry.n_mg)))
                    fire["seq_done"] = cyc + RUN[layer]
                    layer += 1
                if ctx.get(dut.unload_start):
                    events.append(("unload", ctx.get(dut.entry.out_c)))
                    fire["unload_done"] = cyc + UNLOAD
                await ctx.tick()
                if ctx.get(dut.done):
                    break
            assert not ctx.get(dut.busy)
            counts = []
            for i in range(len(RUN)):
                ctx.set(dut.layer_sel, i)
                await ctx.tick()
                counts.append(ctx.get(dut.layer_cycles))
            runs.append((events, ctx.get(dut.cycles), counts))
            await ctx.tick().repeat(3)
            assert ctx.get(dut.done)                    # level until the next start

    run_amaranth(dut, tb)
    first = cm.plans[0].entry
    want_events = [("load", first["in_c"])]
    want_events += [("layer", p.entry["w_base"], p.entry["n_mg"]) for p in cm.plans]
    want_events += [("unload", cm.plans[-1].entry["out_c"])]
    want_counts = [3 + r + DRAIN for r in RUN]          # fetch, latch, start; run; drain
    for events, cycles, counts in runs:
        assert events == want_events
        assert counts == want_counts
        assert cycles == sum(want_counts)
