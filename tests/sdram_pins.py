"""A cycle-level SDR SDRAM chip at its pins, written from the SDR SDRAM rules, for tests
that run :class:`~dynfix.hw.sdram_axi.SdramAxi` in Amaranth's simulator."""

from __future__ import annotations

from amaranth.hdl import Cat

from dynfix.hw.sdram_axi import Command, SdramTiming


class PinSdram:
    """The chip at its pins, a clock at a time: commands as registered, burst length 1, the
    CAS latency from LOAD MODE, data ``cas`` cycles after a READ is sampled. Records the
    commands and every broken rule."""

    def __init__(self, t: SdramTiming, col_bits: int):
        self.t, self.col_bits = t, col_bits
        self.mem: dict[tuple[int, int, int], int] = {}
        self.open: dict[int, int] = {}              # bank -> row
        self.last: dict[str, int] = {}
        self.act_at: dict[int, int] = {}
        self.wr_at = -100
        self.actives = 0
        self.writes: list[tuple[int, int]] = []     # (cycle, ACTIVEs before it) of each WRITE
        self.errors: list[str] = []
        self.log: list[Command] = []
        self.cas = None
        self.refreshes = 0
        self.out: list[tuple[int, int]] = []        # (cycle the data is read, value)

    def since(self, key: str, cycle: int) -> int:
        return cycle - self.last.get(key, -1000)

    def rule(self, ok: bool, what: str, cycle: int) -> None:
        if not ok:
            self.errors.append(f"{cycle}: {what}")

    def step(self, cycle: int, cmd: int, ba: int, a: int, dqm: int, dq_o: int, dq_oe: int):
        """The pins as sampled at a rising edge (``cycle``)."""
        c = Command(cmd)
        if c is Command.NOP:
            return
        t = self.t
        self.log.append(c)
        self.rule(cycle >= t.t_init, "command during the power-up wait", cycle)
        for key, gap in (("REFRESH", t.t_rfc), ("LOAD_MODE", t.t_mrd)):
            self.rule(self.since(key, cycle) >= gap, f"{c.name} within t of {key}", cycle)
        if c is Command.ACTIVE:
            self.rule(ba not in self.open, "ACTIVE to an open bank", cycle)
            self.rule(self.since("PRECHARGE", cycle) >= t.t_rp, "ACTIVE within tRP", cycle)
            self.rule(cycle - self.act_at.get(ba, -1000) >= t.t_rc, "ACTIVE within tRC", cycle)
            self.rule(self.cas is not None, "ACTIVE before LOAD MODE", cycle)
            self.open[ba] = a
            self.act_at[ba] = cycle
            self.actives += 1
        elif c in (Command.READ, Command.WRITE):
            self.rule(ba in self.open, f"{c.name} to a closed bank", cycle)
            self.rule(cycle - self.act_at.get(ba, -1000) >= t.t_rcd, f"{c.name} within tRCD",
                      cycle)
            col = a & ((1 << self.col_bits) - 1)
            self.rule(not a >> 10 & 1, "auto precharge", cycle)
            key = (ba, self.open.get(ba, -1), col)
            if c is Command.WRITE:
                self.rule(dq_oe == 1, "WRITE without data driven", cycle)
                old = self.mem.get(key, 0)
                lo = old & 0xFF if dqm & 1 else dq_o & 0xFF
                hi = old & 0xFF00 if dqm & 2 else dq_o & 0xFF00
                self.mem[key] = hi | lo
                self.wr_at = cycle
                self.writes.append((cycle, self.actives))
            else:
                self.out.append((cycle + self.cas, self.mem.get(key, 0)))
        elif c is Command.PRECHARGE:
            banks = list(self.open) if a >> 10 & 1 else [ba]
            for b in banks:
                self.rule(cycle - self.act_at[b] >= t.t_ras, "PRECHARGE within tRAS", cycle)
                self.rule(cycle - self.wr_at >= t.t_wr, "PRECHARGE within tWR", cycle)
                self.open.pop(b, None)
        elif c is Command.REFRESH:
            self.rule(not self.open, "REFRESH with a bank open", cycle)
            self.rule(self.since("PRECHARGE", cycle) >= t.t_rp, "REFRESH within tRP", cycle)
            self.refreshes += 1
        elif c is Command.LOAD_MODE:
            self.rule(not self.open, "LOAD MODE with a bank open", cycle)
            self.rule(a & 7 == 0 and not a >> 3 & 1, "burst length 1, sequential", cycle)
            self.cas = a >> 4 & 7
        self.last[c.name] = cycle

    def dq(self, cycle: int) -> int:
        """The data lines in the cycle after the rising edge ``cycle`` (a READ's word
        ``cas`` cycles after the one it was issued in)."""
        while self.out and self.out[0][0] < cycle:
            self.out.pop(0)
        return self.out[0][1] if self.out and self.out[0][0] == cycle else 0


def Cat4(pins):
    return Cat(pins.we_n, pins.cas_n, pins.ras_n, pins.cs_n)


def clock_chip(ctx, chip: PinSdram, pins, cycle: int) -> None:
    """Give ``chip`` the controller's pins ``pins`` as sampled at the rising edge ``cycle``
    and drive its data lines for the cycle after."""
    chip.step(cycle, ctx.get(Cat4(pins)), ctx.get(pins.ba), ctx.get(pins.a),
              ctx.get(pins.dqm), ctx.get(pins.dq_o), ctx.get(pins.dq_oe))
    ctx.set(pins.dq_i, chip.dq(cycle))


class ChipClock:
    """A testbench's clock with the chip on it: each :meth:`tick` advances the simulation a
    cycle and gives the chip the pins (:func:`clock_chip`); ``cycle`` counts the edges and
    more than ``limit`` fail the test."""

    def __init__(self, ctx, chip: PinSdram, pins, limit: int):
        self.ctx, self.chip, self.pins, self.limit = ctx, chip, pins, limit
        self.cycle = 0

    async def tick(self) -> None:
        await self.ctx.tick()
        self.cycle += 1
        clock_chip(self.ctx, self.chip, self.pins, self.cycle)
        assert self.cycle < self.limit, "the operations did not finish"
