"""Test helper: cocotb tests of the SDR SDRAM model (``sim/sdram_model.v``) driven at its
pins; run by ``tests/sim/test_sdram_model.py`` on the model as the top level (small
geometry, timing parameters from the job).

:class:`Sdram` plays a controller a clock at a time: it sets the pins at the falling edge
for the model to sample at the next rising edge, drives write data queued for later edges,
and records ``dq_i`` as the controller would sample it at every rising edge. Its commands
wait until the chip's rules allow them (the ``act``, ``read``, ``write``, ... methods), or
go out exactly when told (``cmd``, for breaking a rule on purpose). It also keeps its own
refresh account, so that a starvation it causes is an expected violation.

The job's ``part`` picks the test: "data" (initialisation, fills, bursts in every burst
length and CAS latency, a long run with refreshes; the reads and writes are saved for the
pytest side's reference image) or "violations" (one scenario per violation code from
power-up). Both save the violations they expect, at which edge, for comparison with the
model's log."""

from __future__ import annotations

import json
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer

from cocotb_drivers import job_from_env

PERIOD_NS = 20
#: (cs_n, ras_n, cas_n, we_n) of each command.
COMMANDS = {"INHIBIT": 0b1111, "NOP": 0b0111, "ACTIVE": 0b0011, "READ": 0b0101,
            "WRITE": 0b0100, "BST": 0b0110, "PRECHARGE": 0b0010, "REFRESH": 0b0001,
            "MODE": 0b0000}
A10 = 1 << 10
BL_CODES = {1: 0, 2: 1, 4: 2, 8: 3, 0: 7}          # beats (0: full page) -> a[2:0]


def mode_word(bl: int, cl: int, single_write: bool = False, interleaved: bool = False) -> int:
    """The LOAD MODE address bits: burst length ``bl`` (0: full page), CAS latency ``cl``."""
    return BL_CODES[bl] | interleaved << 3 | cl << 4 | single_write << 9


class Sdram:
    """A controller on ``dut``'s pins; ``p`` holds the model's parameters (``T_RCD``, ...)."""

    def __init__(self, dut, p: dict):
        self.dut, self.p = dut, p
        self.cols = 1 << p["COL_BITS"]
        self.now = 1                    # the rising edge the next pins are for
        self.bus: list[int] = [0]       # bus[k]: dq_i at rising edge k (-1: not 0/1)
        self.beats: dict[int, tuple[int, int, bool]] = {}   # edge -> (dq_o, dqm, dq_oe)
        self.pins: dict[str, int | str] = {}
        self.bl, self.cl, self.single_write = 1, 2, False
        never = -10**6
        self.rows: dict[int, int] = {}                   # open banks' rows
        self.t_act, self.t_pre = [never] * 4, [never] * 4
        self.t_wr = [never] * 4                          # last unmasked write beat
        self.t_ref = self.t_mrs = never
        self.rd_issue, self.rd_beats, self.rd_last = never, 0, never   # last READ's data
        self.wr_issue, self.wr_beats = never, 0                         # last WRITE's beats
        self.rd_ap: int | None = None   # the last READ's bank, if it auto precharges
        self.wr_ap: int | None = None   # the same for the last WRITE
        self.init_end: int | None = None
        self.owed = 0                   # refreshes owed since init (credit down to -MAX)
        self.expected: list[list] = []  # [code, edge, bank or None] the tb causes
        self.ops: list[dict] = []       # writes and reads, in issue order
        self.reads: list[tuple[dict, int, int]] = []     # (op, first edge, beats)

    # ---- pins, one edge at a time ----------------------------------------------------
    def _set(self, name: str, value: int | str) -> None:
        if self.pins.get(name) != value:
            getattr(self.dut, name).value = value
            self.pins[name] = value

    async def start(self) -> None:
        """Idle pins (INHIBIT, cke high) from time 0, then the clock: rising edge 0 at
        11 ns, and the first :meth:`tick` sets the pins for edge 1."""
        for name, value in (("cke", 1), ("cs_n", 1), ("ras_n", 1), ("cas_n", 1), ("we_n", 1),
                            ("ba", 0), ("a", 0), ("dqm", 0), ("dq_o", 0), ("dq_oe", 0)):
            self._set(name, value)
        self.dut.clk.value = 0
        await Timer(1, unit="ns")
        Clock(self.dut.clk, PERIOD_NS, unit="ns").start(start_high=False)

    async def tick(self, cmd: str = "NOP", ba: int = 0, a: int = 0, cke: int = 1,
                   oe: bool = False, x: bool = False) -> int:
        """Pins for edge ``self.now``: ``cmd`` (with ``cke``; ``x``: ras_n unknown), the
        write beat queued for it (``oe``: drive dq_oe without one). Returns that edge."""
        dut = self.dut
        await FallingEdge(dut.clk)
        v = dut.dq_i.value
        self.bus.append(v.to_unsigned() if v.is_resolvable else -1)
        bits = COMMANDS[cmd]
        self._set("cke", cke)
        self._set("cs_n", bits >> 3)
        self._set("ras_n", "X" if x else bits >> 2 & 1)
        self._set("cas_n", bits >> 1 & 1)
        self._set("we_n", bits & 1)
        self._set("ba", ba)
        self._set("a", a)
        data, dqm, drive = self.beats.pop(self.now, (0, 0, False))
        self._set("dq_o", data)
        self._set("dqm", dqm)
        self._set("dq_oe", int(oe or drive))
        edge = self.now
        self._account(edge, cke and cmd == "REFRESH")
        self.now += 1
        return edge

    def _account(self, edge: int, refresh: bool) -> None:
        """The refresh account, as the datasheet rules give it: one refresh owed every
        T_REFI edges after the end of initialisation, up to MAX_POSTPONED ahead."""
        if self.init_end is None or edge <= self.init_end:
            return
        most = self.p["MAX_POSTPONED"]
        if refresh:
            self.owed = max(self.owed - 1, -most)
        if (edge - self.init_end) % self.p["T_REFI"] == 0:
            self.owed += 1
            if self.owed > most:
                self.expected.append([17, edge, None])

    async def nop(self, n: int = 1) -> None:
        for _ in range(n):
            await self.tick()

    async def until(self, edge: int) -> None:
        while self.now < edge:
            await self.tick()

    async def cmd(self, name: str, ba: int = 0, a: int = 0, expect: int | None = None,
                  bank: int | None = None, **kw) -> int:
        """``name`` at the next edge, rules or not; ``expect``: the violation code it
        causes (reported with ``bank``)."""
        if expect is not None:
            self.expected.append([expect, self.now, bank])
        edge = await self.tick(name, ba, a, **kw)
        self._track(name, ba, a, edge)
        return edge

    def _track(self, name: str, ba: int, a: int, edge: int) -> None:
        """What a command does to the rules' time stamps (as the model should)."""
        p = self.p
        if name == "ACTIVE":
            self.rows[ba], self.t_act[ba] = a, edge
        elif name == "PRECHARGE":
            for b in (range(4) if a & A10 else [ba]):
                if b in self.rows:
                    del self.rows[b]
                    self.t_pre[b] = edge
            if self.init_end is None and a & A10:
                self.t_pre = [edge] * 4
        elif name == "REFRESH":
            self.t_ref = edge
        elif name == "MODE":
            self.t_mrs = edge
        elif name in ("READ", "WRITE") and a & A10 and ba in self.rows \
                and (self.bl if name == "READ" else self.wbl):    # none with a full page
            del self.rows[ba]
            self.t_pre[ba] = edge + (self.cl + self.bl - 1 if name == "READ" else
                                     self.wbl - 1 + p["T_WR"])

    @property
    def wbl(self) -> int:
        """Write burst length (0: full page)."""
        return 1 if self.single_write else self.bl

    # ---- commands that keep the rules --------------------------------------------------
    async def act(self, bank: int, row: int) -> int:
        p = self.p
        others = max(t for b, t in enumerate(self.t_act) if b != bank)
        await self.until(max(self.t_pre[bank] + p["T_RP"], self.t_act[bank] + p["T_RC"],
                             others + p["T_RRD"], self.t_ref + p["T_RFC"],
                             self.t_mrs + p["T_MRD"]))
        return await self.cmd("ACTIVE", bank, row)

    async def write(self, bank: int, col: int, data: list[int], dqm: list[int] | None = None,
                    ap: bool = False) -> int:
        """A WRITE of ``len(data)`` beats, once the last write's beats and read data are
        over. The next WRITE may follow ``len(data)`` edges later: sooner than the burst's
        end, it cuts this one short."""
        p = self.p
        dqm = dqm or [0] * len(data)
        await self.until(max(self.t_act[bank] + p["T_RCD"], self.rd_last + 1,
                             self.t_mrs + p["T_MRD"], self.wr_issue + self.wr_beats))
        n = self.now
        if self.wr_ap is not None and n < self.wr_issue + self.wbl:
            self.t_pre[self.wr_ap] = n - 1 + p["T_WR"]     # precharging from the cut
        self.wr_ap = bank if ap and self.wbl else None
        for k, (d, m) in enumerate(zip(data, dqm)):
            self.beats[n + k] = (d, m, True)
            if m != 3:
                self.t_wr[bank] = n + k
        self.wr_issue, self.wr_beats = n, len(data)
        self.ops.append({"op": "w", "bank": bank, "row": self.rows[bank], "col": col,
                         "wrap": self._wrap(self.wbl), "data": data, "dqm": dqm})
        return await self.cmd("WRITE", bank, col | (A10 if ap else 0))

    async def read(self, bank: int, col: int, beats: int | None = None, ap: bool = False
                   ) -> int:
        """A READ whose first ``beats`` beats (default: the burst) are recorded, once the
        write beats are over and the last READ's recorded beats all follow it. The next
        READ may follow ``beats`` edges later: sooner than the burst's end, it takes over."""
        p = self.p
        beats = beats or self.bl
        await self.until(max(self.t_act[bank] + p["T_RCD"], self.wr_issue + self.wr_beats,
                             self.t_mrs + p["T_MRD"], self.rd_issue + self.rd_beats))
        op = {"op": "r", "bank": bank, "row": self.rows[bank], "col": col,
              "wrap": self._wrap(self.bl), "cl": self.cl}
        self.ops.append(op)
        first = self.now + self.cl
        if self.rd_ap is not None and self.now < self.rd_issue + self.bl:
            self.t_pre[self.rd_ap] = first - 1            # the last beat before this READ's
        self.rd_ap = bank if ap and self.bl else None
        self.reads.append((op, first, beats))
        self.rd_issue, self.rd_beats, self.rd_last = self.now, beats, first + beats - 1
        return await self.cmd("READ", bank, col | (A10 if ap else 0))

    def _wrap(self, bl: int) -> int:
        return bl or self.cols

    async def precharge(self, bank: int | None = None) -> int:
        """PRECHARGE ``bank`` (None: all) once T_RAS and T_WR allow and bursts are over."""
        p = self.p
        banks = [b for b in (range(4) if bank is None else [bank]) if b in self.rows]
        await self.until(max([self.t_act[b] + p["T_RAS"] for b in banks]
                             + [self.t_wr[b] + p["T_WR"] for b in banks]
                             + [self.wr_issue + self.wr_beats, self.rd_last - self.cl + 1,
                                self.t_mrs + p["T_MRD"]]))
        return await self.cmd("PRECHARGE", bank or 0, A10 if bank is None else 0)

    async def idle_wait(self) -> None:
        """Until every bank has been precharged T_RP ago and the last REFRESH and LOAD
        MODE are T_RFC and T_MRD old."""
        p = self.p
        await self.until(max([t + p["T_RP"] for t in self.t_pre]
                             + [self.t_ref + p["T_RFC"], self.t_mrs + p["T_MRD"],
                                self.rd_last + 1]))

    async def refresh(self) -> int:
        await self.idle_wait()
        return await self.cmd("REFRESH")

    async def mode(self, bl: int, cl: int, single_write: bool = False) -> int:
        await self.idle_wait()
        edge = await self.cmd("MODE", 0, mode_word(bl, cl, single_write))
        self.bl, self.cl, self.single_write = bl, cl, single_write
        return edge

    async def settle(self) -> None:
        """Close every bank, then a REFRESH (more if the account is less than 2 ahead)."""
        await self.precharge()
        for _ in range(max(1, self.owed + 2)):
            await self.refresh()
        await self.idle_wait()

    async def init(self, bl: int, cl: int) -> None:
        """The power-up sequence: PRECHARGE ALL, 2 REFRESH, LOAD MODE; the refresh
        account starts at its last command."""
        await self.until(self.p["T_INIT"])
        await self.cmd("PRECHARGE", 0, A10)
        await self.refresh()
        await self.refresh()
        self.init_end = await self.mode(bl, cl)

    def collect(self) -> None:
        """Fill in the data of every recorded read (its edges have all passed)."""
        for op, first, beats in self.reads:
            op["got"] = self.bus[first:first + beats]
        self.reads = []

    async def report(self) -> dict:
        await self.nop(self.cl + 10)
        self.collect()
        return {"ops": self.ops, "expected": self.expected, "edges": self.now,
                "errors": int(self.dut.errors.value),
                "last_error": int(self.dut.last_error.value)}


def save(name: str, result: dict) -> None:
    Path(job_from_env()["result"]).with_name(f"{name}.json").write_text(json.dumps(result))


def _part() -> str:
    try:
        return job_from_env().get("part", "data")
    except KeyError:                            # imported outside the pytest run
        return "data"


PART = _part()


# ---- data --------------------------------------------------------------------------------
@cocotb.test(skip=PART != "data")
async def data(dut):
    job = job_from_env()
    p, rng = job["params"], random.Random(job["seed"])
    s = Sdram(dut, p)
    await s.start()
    await s.init(8, 2)
    rows = [tuple(r) for r in job["rows"]]
    cols = s.cols

    def rand_words(n: int) -> list[int]:
        return [rng.getrandbits(16) for _ in range(n)]

    # Fill every row the tests use (so that every read has known data), BL 8.
    for i in range(0, len(rows), 2):
        pair = rows[i:i + 2]
        for bank, row in pair:
            await s.act(bank, row)
        for bank, _ in pair:
            for col in range(0, cols, 8):
                await s.write(bank, col, rand_words(8))
        await s.settle()

    def two_rows() -> list[tuple[int, int]]:
        first = rng.choice(rows)
        return [first, rng.choice([r for r in rows if r[0] != first[0]])]

    # Every burst length and CAS latency: masked writes, wrapping reads, interrupted
    # bursts, auto precharge; and a write burst mode of single locations.
    for bl, cl, single in [(bl, cl, False) for bl in (1, 2, 4, 8, 0) for cl in (2, 3)] + \
            [(4, 2, True), (8, 3, True)]:
        await s.mode(bl, cl, single)
        (a, ra), (b, rb) = two_rows()
        await s.act(a, ra)
        await s.act(b, rb)
        n = s.wbl or 40                        # full page: 40 beats, round the row and on
        for bank in (a, b):
            col = rng.randrange(cols)
            await s.write(bank, col, rand_words(n), [rng.randrange(4) for _ in range(n)])
            if not s.wbl:
                await s.until(s.wr_issue + n)
                await s.cmd("BST")             # at the edge after the 40th beat
        reads = s.bl or 36
        for bank in (a, b, a):
            await s.read(bank, rng.randrange(cols), reads)
            if not s.bl:
                await s.until(s.rd_issue + reads)
                await s.cmd("BST")             # ends the data after the 36th beat
        if s.bl != 1:                          # a READ interrupts a read burst
            await s.read(a, rng.randrange(cols), rng.randrange(1, s.bl or 12))
            await s.read(b, rng.randrange(cols), s.bl or 5)
            if not s.bl:
                await s.until(s.rd_issue + 5)
                await s.precharge(b)          # a PRECHARGE ends a full-page read too
                await s.act(b, rb)
        if s.wbl != 1:                         # a WRITE interrupts a write burst
            await s.write(b, rng.randrange(cols), rand_words(rng.randrange(1, s.wbl or 12)))
            await s.write(a, rng.randrange(cols), rand_words(s.wbl or 6))
            if not s.wbl:
                await s.until(s.wr_issue + 6)
                await s.cmd("BST")
        if s.bl:                               # auto precharge, then ACTIVE on time
            await s.write(a, rng.randrange(cols), rand_words(s.wbl), ap=True)
            await s.read(b, rng.randrange(cols), ap=True)
            await s.act(a, ra)
            await s.act(b, rb)
            if s.bl > 1:                       # cut short: precharging from the cut
                await s.read(a, rng.randrange(cols), rng.randrange(1, s.bl), ap=True)
                await s.read(b, rng.randrange(cols))
                await s.act(a, ra)
            if s.wbl > 1:
                await s.write(b, rng.randrange(cols), rand_words(rng.randrange(1, s.wbl)),
                              ap=True)
                await s.write(a, rng.randrange(cols), rand_words(s.wbl))
                await s.act(b, rb)
            await s.read(a, rng.randrange(cols))
        await s.settle()

    # A long run: random back-to-back traffic over all four banks, refreshes between.
    per_bank = {bank: [r for b, r in rows if b == bank] for bank in range(4)}
    while s.now < job["long_run"]:
        bl, cl = rng.choice([1, 2, 4, 8]), rng.choice([2, 3])
        await s.mode(bl, cl)
        open_rows = {bank: rng.choice(r) for bank, r in per_bank.items()}
        for bank, row in open_rows.items():
            await s.act(bank, row)
        for _ in range(rng.randrange(6, 14)):
            bank = rng.randrange(4)
            if rng.random() < 0.5:
                await s.write(bank, rng.randrange(cols), rand_words(bl),
                              [rng.choice([0, 0, 1, 2, 3]) for _ in range(bl)])
            else:
                await s.read(bank, rng.randrange(cols))
        await s.settle()
    save("data", await s.report())


# ---- violations --------------------------------------------------------------------------
@cocotb.test(skip=PART != "violations")
async def violations(dut):
    job = job_from_env()
    p = job["params"]
    s = Sdram(dut, p)
    await s.start()
    steps: list[list] = []
    count = 0

    async def step(name: str, code: int, body) -> None:
        """Run ``body`` (which causes violation ``code`` once) and record what the model
        says: [name, code, errors added, last_error]."""
        nonlocal count
        await body()
        await s.nop(3)
        now = int(dut.errors.value)
        steps.append([name, code, now - count, int(dut.last_error.value)])
        count = now

    t_init = p["T_INIT"]

    async def init_wait():
        await s.until(5)
        await s.cmd("PRECHARGE", 0, A10, expect=1)
    await step("init_wait", 1, init_wait)

    async def init_order_refresh():
        await s.until(t_init)
        await s.cmd("REFRESH", expect=2)
    await step("init_order_refresh", 2, init_order_refresh)

    async def init_order_mode():
        await s.cmd("MODE", 0, mode_word(4, 2), expect=2)
    await step("init_order_mode", 2, init_order_mode)

    async def init_order_active():
        await s.cmd("PRECHARGE", 0, A10)
        await s.cmd("ACTIVE", 1, 2, expect=2)
        s.rows.clear()                          # refused: nothing opened
    await step("init_order_active", 2, init_order_active)

    async def init_mode_first():                # LOAD MODE, then the refreshes
        await s.mode(4, 2)
        await s.refresh()
        s.init_end = await s.refresh()
    await step("init_mode_first", 0, init_mode_first)

    async def scenario(name: str, code: int, body) -> None:
        await step(name, code, body)
        await s.settle()

    rcd, rp, ras, rc = p["T_RCD"], p["T_RP"], p["T_RAS"], p["T_RC"]

    async def act_open():
        await s.act(0, 1)
        await s.until(s.t_act[0] + rc)
        await s.cmd("ACTIVE", 0, 2, expect=3, bank=0)
    await scenario("act_open", 3, act_open)

    async def act_rp():
        n = await s.act(1, 1)
        await s.until(n + rc - 1)
        await s.cmd("PRECHARGE", 1)
        await s.until(n + rc + 1)               # T_RC kept, T_RP not
        await s.cmd("ACTIVE", 1, 1, expect=4, bank=1)
    await scenario("act_rp", 4, act_rp)

    async def act_rp_auto_read():
        n = await s.act(2, 3)
        await s.until(n + rc - s.cl - 3)
        r = await s.cmd("READ", 2, 5 | A10)     # last beat at r + CL + 3: precharged there
        await s.until(r + s.cl + 3 + rp - 1)
        await s.cmd("ACTIVE", 2, 3, expect=4, bank=2)
    await scenario("act_rp_auto_read", 4, act_rp_auto_read)

    async def act_rp_auto_write():
        n = await s.act(3, 4)
        await s.until(n + rc - 5)
        w = s.now
        for k in range(4):
            s.beats[w + k] = (0x1111 * k, 0, True)
        await s.cmd("WRITE", 3, 6 | A10)        # last beat w + 3, precharged T_WR later
        await s.until(w + 3 + p["T_WR"] + rp - 1)
        await s.cmd("ACTIVE", 3, 4, expect=4, bank=3)
    await scenario("act_rp_auto_write", 4, act_rp_auto_write)

    async def act_rc():
        n = await s.act(1, 2)
        await s.until(n + ras)
        await s.cmd("PRECHARGE", 1)
        await s.until(n + ras + rp)             # T_RP kept, T_RC not
        await s.cmd("ACTIVE", 1, 2, expect=5, bank=1)
    await scenario("act_rc", 5, act_rc)

    async def act_rrd():
        await s.act(0, 1)
        await s.cmd("ACTIVE", 1, 1, expect=6, bank=1)
    await scenario("act_rrd", 6, act_rrd)

    async def act_rfc():
        r = await s.refresh()
        await s.until(r + p["T_RFC"] - 1)
        await s.cmd("ACTIVE", 0, 1, expect=7, bank=0)
    await scenario("act_rfc", 7, act_rfc)

    async def mode_rfc():
        r = await s.refresh()
        await s.until(r + p["T_RFC"] - 1)
        await s.cmd("MODE", 0, mode_word(4, 2), expect=7)
    await scenario("mode_rfc", 7, mode_rfc)

    async def mrd():
        await s.mode(4, 2)
        await s.cmd("ACTIVE", 0, 1, expect=8, bank=0)
    await scenario("mrd", 8, mrd)

    async def rw_closed():
        await s.cmd("READ", 2, 0, expect=9, bank=2)
    await scenario("rw_closed", 9, rw_closed)

    async def rw_rcd():
        n = await s.act(0, 1)
        await s.until(n + rcd - 1)
        await s.cmd("READ", 0, 0, expect=10, bank=0)
    await scenario("rw_rcd", 10, rw_rcd)

    async def pre_ras():
        n = await s.act(0, 1)
        await s.until(n + ras - 1)
        await s.cmd("PRECHARGE", 0, expect=11, bank=0)
    await scenario("pre_ras", 11, pre_ras)

    async def pre_wr():
        await s.act(1, 1)
        await s.write(1, 8, [1, 2, 3, 4])
        await s.until(s.t_wr[1] + p["T_WR"] - 1)
        await s.cmd("PRECHARGE", 1, expect=12, bank=1)
    await scenario("pre_wr", 12, pre_wr)

    async def ref_open():
        n = await s.act(3, 1)
        await s.until(n + ras + 1)
        await s.cmd("REFRESH", expect=13, bank=3)
    await scenario("ref_open", 13, ref_open)

    async def ref_rp():
        await s.act(3, 1)
        e = await s.precharge(3)
        await s.until(e + rp - 1)
        await s.cmd("REFRESH", expect=14, bank=3)
    await scenario("ref_rp", 14, ref_rp)

    async def ref_rfc():
        r = await s.refresh()
        await s.until(r + p["T_RFC"] - 1)
        await s.cmd("REFRESH", expect=15)
    await scenario("ref_rfc", 15, ref_rfc)

    async def mrs_open():
        n = await s.act(2, 1)
        await s.until(n + 2)
        await s.cmd("MODE", 0, mode_word(4, 2), expect=16, bank=2)
    await scenario("mrs_open", 16, mrs_open)

    async def starved():
        before = len(s.expected)
        while len(s.expected) == before:        # the account says when
            await s.nop()
        await s.nop(2)
        for _ in range(p["MAX_POSTPONED"] + 1):
            await s.refresh()
    await scenario("starved", 17, starved)

    async def contention():
        await s.act(0, 1)
        r = await s.read(0, 4)
        await s.until(r + s.cl + 1)
        s.expected.append([18, s.now, 0])
        await s.tick(oe=True)                   # dq_oe high with the second beat out
    await scenario("contention", 18, contention)

    async def read_in_write():
        await s.act(1, 1)
        w = await s.write(1, 0, [5, 6])         # a burst of 4: two beats, then the READ
        await s.until(w + 2)
        await s.cmd("READ", 1, 0, expect=19, bank=1)
    await scenario("read_in_write", 19, read_in_write)

    async def write_in_read():
        await s.act(0, 1)
        r = await s.read(0, 0)
        await s.until(r + s.cl + 2)             # beat 3 on the bus, beat 4 to come
        for k in range(4):                      # masked, dq_oe low: no contention
            s.beats[s.now + k] = (0, 3, False)
        await s.cmd("WRITE", 0, 0, expect=20, bank=0)
    await scenario("write_in_read", 20, write_in_read)

    async def write_in_read_cl3():
        await s.mode(4, 3)
        await s.act(0, 1)
        r = await s.read(0, 0)                  # no data yet at r + 1, but it will come
        for k in range(4):
            s.beats[r + 1 + k] = (0, 3, False)
        await s.cmd("WRITE", 0, 0, expect=20, bank=0)
        await s.settle()
        await s.mode(4, 2)
    await scenario("write_in_read_cl3", 20, write_in_read_cl3)

    async def mode_bad():
        await s.cmd("MODE", 0, mode_word(4, 1), expect=21)
    await scenario("mode_bad", 21, mode_bad)

    async def interleaved():
        await s.cmd("MODE", 0, mode_word(4, 2, interleaved=True), expect=22)
    await scenario("unsupported_interleaved", 22, interleaved)

    async def full_page_ap():
        await s.mode(0, 2)
        n = await s.act(0, 1)
        await s.until(n + rcd)
        await s.cmd("READ", 0, A10, expect=22, bank=0)
        await s.nop(2)
        await s.cmd("BST")                       # the full-page read goes on until this
        await s.settle()
        await s.mode(4, 2)
    await scenario("unsupported_full_page_ap", 22, full_page_ap)

    async def cke_low():
        await s.act(0, 1)
        r = await s.read(0, 0)
        await s.until(r + 3)
        s.expected.append([22, s.now, None])
        await s.tick(cke=0)                      # clock suspend during the burst
    await scenario("unsupported_cke", 22, cke_low)

    if job.get("x_pins"):
        async def x_pins():
            s.expected.append([23, s.now, None])
            await s.tick(x=True)                # cs_n low, ras_n unknown
        await scenario("x_pins", 23, x_pins)

    result = await s.report()
    result["steps"] = steps
    save("violations", result)
