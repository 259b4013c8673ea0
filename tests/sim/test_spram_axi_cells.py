"""The AXI4 subordinate over SPRAM (``hw/spram_axi.py``) on its generated Verilog with the real
cells (``cell=True``: four SB_SPRAM256KA side by side, 16K words of 64 bits, the iCEBreaker's
bulk store) under yosys's cell model, in cocotb (``tests/spram_axi_tb.py``): a BulkWriter and
a BulkReader write a few thousand words and read them back with random stalls; cocotbext-axi's
``AxiMaster`` writes and reads byte ranges (partial strobes: the cells' nibble enables) and
runs past the end of the memory (SLVERR). Expected values come from Python references. The
Verilog of ``SpramAxi`` alone is lint-clean. The Amaranth-simulator tests of the same block
are ``tests/hw/test_spram_axi.py``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring

from dynfix.hw.axi import (RESP_OKAY, RESP_SLVERR, AxiSignature, connect_flat, flat_members,
                           word_addr_bits)
from dynfix.hw.ice40_spram import CELL
from dynfix.hw.spram_axi import SpramAxi

from axi_helpers import BulkPairTop, convert
from sim_helpers import require_simulator

#: The Verilator runs (each builds a model first) go with the long runs (-m slow).
VERILATOR_SLOW = pytest.param("verilator", marks=pytest.mark.slow)

ADDR_WIDTH = 18                 # 256 KiB of addresses over 128 KB of memory
DEPTH, DW = 16384, 64
WORD_BYTES = DW // 8
COUNT_BITS = 15
BULK_TOP, SUB_TOP = "spram_bulk_top", "spram_sub_top"
#: Stages of (write requests, read requests) run at the same time on different words:
#: counts beyond 256, ranges across 4 KiB pages (512 words), overwrites; 1,827 words written,
#: 2,367 read.
STAGES = [
    ([(3, 600), (700, 300)], []),
    ([(15000, 700)], [(3, 600), (700, 300)]),
    ([(500, 227)], [(15000, 700)]),
    ([], [(3, 767)]),
]
#: The byte ranges ``byte_strobes`` fills first (reads of unwritten cells would be X) and then
#: writes and reads at random inside: the first 8 KiB and the last 2 KiB of the memory.
REGIONS = [(0, 8192), (DEPTH * WORD_BYTES - 2048, DEPTH * WORD_BYTES)]
SEED = 21


def _spram() -> SpramAxi:
    """The memory of the bulk test top: the cells, 16K words of 64 bits."""
    return SpramAxi(DEPTH, ADDR_WIDTH, DW, cell=True)


class SpramSubTop(wiring.Component):
    """A SpramAxi (SB_SPRAM256KA cells) whose Verilog ports are named ``s_axi_araddr`` ... as
    cocotbext-axi's ``AxiBus.from_prefix(dut, "s_axi")`` expects.

    Members
    -------
    s_axi_* : the members of AxiSignature(ADDR_WIDTH, DW), flipped (the subordinate's side)
    """

    def __init__(self):
        super().__init__(flat_members("s_axi", AxiSignature(ADDR_WIDTH, DW).flip()))

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = SpramAxi(DEPTH, ADDR_WIDTH, DW, cell=True)
        connect_flat(m, self, "s_axi", mem.bus)
        return m


@pytest.fixture(scope="module")
def verilog(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("spram_axi_v")
    paths = {}
    for name, top in ((BULK_TOP, BulkPairTop(ADDR_WIDTH, DW, COUNT_BITS, memory=_spram)), (SUB_TOP, SpramSubTop())):
        paths[name] = folder / f"{name}.v"
        paths[name].write_text(convert(top, name))
    return paths


@pytest.mark.parametrize("depth,dw,cell", [(DEPTH, 64, True), (DEPTH, 64, False),
                                           (20000, 32, True)])
def test_spram_axi_lint_clean(depth, dw, cell, tmp_path):
    """SpramAxi alone: the iCEBreaker shape with cells and with the behavioural twin, and two
    rows of two cells (the row multiplexer)."""
    from dynfix.hw.lint import lint

    require_simulator("verilator")
    path = tmp_path / "spram_axi.v"
    text = convert(SpramAxi(depth, ADDR_WIDTH, dw, cell=cell), "spram_axi")
    path.write_text(text)
    assert text.count(f"{CELL} ") == (-(-depth // 16384) * (dw // 16) if cell else 0)
    rc, out = lint(path)
    assert rc == 0, out


def run(sim: str, verilog: Path, top: str, testcase: str, build_dir: Path, job: dict) -> dict:
    """Build ``verilog`` with the iCE40 cell models and run ``testcase`` of ``spram_axi_tb``
    on it under ``sim``; the tb's result."""
    from cocotb_tools.runner import get_runner

    from dynfix.hw.ice40_cells import SIM_DEFINES, sim_sources
    from dynfix.sim.simulators import (VERILATOR_ARGS, error_lines, job_files, quiet,
                                       tool_environment)

    require_simulator(sim)
    build_dir = build_dir.resolve()
    job_path, result = job_files(build_dir, job)
    cells = sim_sources(verilog.read_text())
    assert cells, "no SB_SPRAM256KA in the Verilog"
    runner = get_runner(sim)
    quiet(runner)
    with tool_environment(sim):
        runner.build(sources=[verilog, *cells], hdl_toplevel=top, build_dir=build_dir,
                     defines=SIM_DEFINES, timescale=("1ns", "1ps"),
                     log_file=build_dir / "build.log",
                     build_args=list(VERILATOR_ARGS) if sim == "verilator" else [])
        log = build_dir / "sim.log"
        try:
            runner.test(hdl_toplevel=top, test_module="spram_axi_tb", testcase=testcase,
                        build_dir=build_dir, test_dir=build_dir,
                        extra_env={"DYNFIX_TB_JOB": str(job_path)}, log_file=log)
        except SystemExit:                   # the runner's way of saying a test failed
            pass
    assert result.exists(), f"the cocotb test failed{error_lines(log, 3)} (see {log})"
    return json.loads(result.read_text())


def bulk_reference(words: list[int]) -> list[list[int]]:
    """The words each read request of :data:`STAGES` must return (a stage reads what earlier
    stages wrote; its own writes touch other words)."""
    mem: dict[int, int] = {}
    expect, pos = [], 0
    for writes, reads in STAGES:
        for addr, c in reads:
            expect.append([mem[a] for a in range(addr, addr + c)])
        for addr, c in writes:
            mem.update(zip(range(addr, addr + c), words[pos:pos + c]))
            pos += c
    return expect


@pytest.mark.parametrize("sim", ["icarus", VERILATOR_SLOW])
def test_bulk_masters_through_spram_cells(sim, verilog, tmp_path):
    rng = random.Random(SEED)
    words = [rng.getrandbits(DW) for _ in range(sum(c for w, _ in STAGES for _, c in w))]
    job = {"seed": SEED, "stages": STAGES, "words": words, "ready": 0.7, "offer": 0.7,
           "addr_bits": word_addr_bits(ADDR_WIDTH, DW)}
    res = run(sim, verilog[BULK_TOP], BULK_TOP, "bulk_roundtrip", tmp_path / sim, job)
    assert res["read_words"] == bulk_reference(words)
    assert res["write_errors"] == [0] * 4 and res["read_errors"] == [0] * 4
    assert res["busy"] == [0, 0]


def strobe_ops(rng: random.Random) -> list:
    """Fill :data:`REGIONS`, then random byte writes and reads inside them (unaligned starts
    and ends: partial strobes; across 4 KiB inside the first region), then accesses that run
    past the end of the memory or start beyond it, and a read of the last 2 KiB."""
    ops: list = [["w", lo, rng.randbytes(hi - lo).hex()] for lo, hi in REGIONS]
    for _ in range(40):
        lo, hi = rng.choice(REGIONS)
        n = rng.randint(1, 300)
        at = rng.randrange(lo, hi - n)
        if rng.random() < 0.5:
            ops.append(["w", at, rng.randbytes(n).hex()])
        else:
            ops.append(["r", at, n])
    # The memory ends on a 4 KiB boundary, where the master splits an access: the burst
    # before the end is served, the one after refused.
    end = DEPTH * WORD_BYTES
    ops += [["w", end - 5, rng.randbytes(20).hex()], ["r", end - 5, 20],
            ["w", end + 64, rng.randbytes(8).hex()], ["r", end + 64, 8],
            ["r", end - 2048, 2048]]
    return ops


def master_bursts(at: int, n: int) -> list[tuple[int, int]]:
    """The byte ranges of the bursts cocotbext-axi's AxiMaster makes of ``n`` bytes from
    ``at``: split at 4 KiB boundaries and after 256 beats (counted from ``at``'s word)."""
    out, cur = [], at
    while cur < at + n:
        stop = min(at + n, (cur // 4096 + 1) * 4096, cur // WORD_BYTES * WORD_BYTES + 2048)
        out.append((cur, stop))
        cur = stop
    return out


def strobe_reference(ops: list) -> list:
    """What ``byte_strobes`` must see for ``ops``: a bytearray of the memory; a burst that
    runs past the end is refused whole (SLVERR, nothing written, zero data), the others of
    the same access are served; an access answers SLVERR if one of its bursts does."""
    end = DEPTH * WORD_BYTES
    mem = bytearray(end)
    seen = []
    for op in ops:
        at = op[1]
        data = bytes.fromhex(op[2]) if op[0] == "w" else bytes(op[2])
        got, refused = bytearray(len(data)), False
        for lo, hi in master_bursts(at, len(data)):
            if hi > end:
                refused = True
            elif op[0] == "w":
                mem[lo:hi] = data[lo - at:hi - at]
            else:
                got[lo - at:hi - at] = mem[lo:hi]
        resp = RESP_SLVERR if refused else RESP_OKAY
        seen.append(["w", resp] if op[0] == "w" else ["r", resp, bytes(got).hex()])
    return seen


@pytest.mark.parametrize("sim", ["icarus", VERILATOR_SLOW])
def test_byte_strobes_on_the_cells(sim, verilog, tmp_path):
    ops = strobe_ops(random.Random(SEED))
    job = {"seed": SEED, "ops": ops, "pause": 0.3}
    res = run(sim, verilog[SUB_TOP], SUB_TOP, "byte_strobes", tmp_path / sim, job)
    want = strobe_reference(ops)
    assert len(res["seen"]) == len(want)
    for k, (got, exp) in enumerate(zip(res["seen"], want)):
        assert got == exp, (k, ops[k][:2])
