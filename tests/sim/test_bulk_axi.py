"""The AXI4 bulk masters (``hw/bulk_reader.py``, ``hw/bulk_writer.py``) on their generated
Verilog against cocotbext-axi's ``AxiRam`` (``tests/bulk_axi_tb.py``), under Icarus and
Verilator: a few thousand words read and written at the same time with random pauses on
every channel, compared with the memory image; every burst within the AXI rules; the Verilog
lint-clean. The Amaranth-simulator tests of the same blocks are ``tests/hw/test_bulk_port.py``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from dynfix.hw.axi import BOUNDARY_BYTES, BURST_INCR, MAX_BURST_BEATS, size_code, word_addr_bits
from dynfix.hw.bulk_reader import BulkReader
from dynfix.hw.bulk_writer import BulkWriter

from axi_helpers import BulkPairTop, convert
from sim_helpers import require_simulator

#: The Verilator runs (each builds a model first) go with the long runs (-m slow).
VERILATOR_SLOW = pytest.param("verilator", marks=pytest.mark.slow)

ADDR_WIDTH = 16                 # 64 KiB: 8192 words of 64 bits, sixteen 4 KiB pages
DATA_WIDTH = 64
COUNT_BITS = 13
WORD_BYTES = DATA_WIDTH // 8
TOP = "bulk_axi_top"
#: Word ranges: reads in the lower half, writes in the upper half (they run at the same
#: time). Counts beyond 256, ranges across 4 KiB (512-word) boundaries, single words.
READS = [(0, 1), (3, 1500), (509, 700), (2047, 300), (1535, 2)]
WRITES = [(4096 + 5, 1200), (4096 + 1300, 900), (8191, 1), (6143, 2)]
SEED = 11


@pytest.fixture(scope="module")
def verilog(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bulk_axi_v") / f"{TOP}.v"
    path.write_text(convert(BulkPairTop(ADDR_WIDTH, DATA_WIDTH, COUNT_BITS), TOP))
    return path


def test_verilog_ports_and_lint(verilog):
    from dynfix.hw.lint import lint

    require_simulator("verilator")
    text = verilog.read_text()
    for port in ("m_axi_araddr", "m_axi_arlen", "m_axi_rdata", "m_axi_rlast", "m_axi_awaddr",
                 "m_axi_wdata", "m_axi_wstrb", "m_axi_wlast", "m_axi_bresp", "m_axi_bready"):
        assert f" {port};" in text, port
    rc, out = lint(verilog)
    assert rc == 0, out


@pytest.mark.parametrize("block", [BulkReader, BulkWriter])
def test_blocks_lint_clean(block, tmp_path):
    """Each block alone, over bus widths where 256 beats or the 4 KiB page bound a burst,
    short counts and 1 to 3 outstanding bursts."""
    from dynfix.hw.lint import lint

    require_simulator("verilator")
    for addr_width, data_width, count_bits, outstanding in ((32, 8, 20, 1), (40, 1024, 8, 3),
                                                            (11, 32, 4, 2)):
        path = tmp_path / f"{block.__name__}_{data_width}.v"
        path.write_text(convert(
            block(addr_width, data_width, count_bits, outstanding=outstanding), "block"))
        rc, out = lint(path)
        assert rc == 0, out


def job_payload() -> dict:
    rng = random.Random(SEED)
    size = 1 << ADDR_WIDTH
    lo = min(a for a, _ in WRITES) * WORD_BYTES
    hi = max(a + c for a, c in WRITES) * WORD_BYTES
    return {
        "seed": SEED, "size": size, "addr_bits": word_addr_bits(ADDR_WIDTH, DATA_WIDTH),
        "image": rng.randbytes(size).hex(), "reads": READS, "writes": WRITES,
        "write_words": [rng.getrandbits(DATA_WIDTH) for _ in range(sum(c for _, c in WRITES))],
        "write_span": [lo, hi], "pause": 0.3, "ready": 0.7, "offer": 0.7,
    }


def run(sim: str, verilog: Path, build_dir: Path, job: dict) -> dict:
    """Build ``verilog`` and run ``bulk_axi_tb`` on it under ``sim``; the tb's result."""
    from cocotb_tools.runner import get_runner

    from dynfix.sim.simulators import (VERILATOR_ARGS, error_lines, job_files, quiet,
                                       tool_environment)

    require_simulator(sim)
    build_dir = build_dir.resolve()
    job_path, result = job_files(build_dir, job)
    runner = get_runner(sim)
    quiet(runner)
    with tool_environment(sim):
        runner.build(sources=[verilog], hdl_toplevel=TOP, build_dir=build_dir,
                     timescale=("1ns", "1ps"), log_file=build_dir / "build.log",
                     build_args=list(VERILATOR_ARGS) if sim == "verilator" else [])
        log = build_dir / "sim.log"
        try:
            runner.test(hdl_toplevel=TOP, test_module="bulk_axi_tb", build_dir=build_dir,
                        test_dir=build_dir, extra_env={"DYNFIX_TB_JOB": str(job_path)},
                        log_file=log)
        except SystemExit:                   # the runner's way of saying a test failed
            pass
    assert result.exists(), f"the cocotb test failed{error_lines(log, 3)} (see {log})"
    return json.loads(result.read_text())


def words_of(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + WORD_BYTES], "little")
            for i in range(0, len(data), WORD_BYTES)]


def check_bursts(bursts: list[list[int]], requests: list[tuple[int, int]]) -> None:
    """Every burst INCR, whole words, at most 256 beats, inside one 4 KiB page; together
    they cover the requests' words in order, each once."""
    covered = []
    for addr, length, size, burst in bursts:
        assert burst == BURST_INCR and size == size_code(DATA_WIDTH)
        assert addr % WORD_BYTES == 0
        beats = length + 1
        assert beats <= MAX_BURST_BEATS
        assert addr // BOUNDARY_BYTES == (addr + beats * WORD_BYTES - 1) // BOUNDARY_BYTES
        covered += range(addr // WORD_BYTES, addr // WORD_BYTES + beats)
    assert covered == [w for a, c in requests for w in range(a, a + c)]


@pytest.mark.parametrize("sim", ["icarus", VERILATOR_SLOW])
def test_bulk_masters_against_axi_ram(sim, verilog, tmp_path):
    job = job_payload()
    res = run(sim, verilog, tmp_path / sim, job)
    image = words_of(bytes.fromhex(job["image"]))

    assert res["read_errors"] == [0] * len(READS)
    assert res["read_words"] == [image[w] for a, c in READS for w in range(a, a + c)]
    check_bursts(res["ar"], READS)

    assert res["write_errors"] == [0] * len(WRITES)
    # done rises only after every burst so far was answered
    assert len(res["write_done"]) == len(WRITES)
    assert all(responses == bursts for bursts, responses in res["write_done"])
    assert res["b"] == len(res["aw"])
    lo = job["write_span"][0] // WORD_BYTES
    after = words_of(bytes.fromhex(res["memory"]))
    expect = image[lo:lo + len(after)]
    pos = 0
    for addr, count in WRITES:
        expect[addr - lo:addr - lo + count] = job["write_words"][pos:pos + count]
        pos += count
    assert after == expect                      # the writes, and nothing else in the span
    check_bursts(res["aw"], WRITES)
    beats = [length + 1 for _, length, _, _ in res["aw"]]
    lasts = [i for i, last in enumerate(res["wlast"]) if last]
    ends = [sum(beats[:k + 1]) - 1 for k in range(len(beats))]
    assert len(res["wlast"]) == sum(beats) and lasts == ends    # wlast on each last beat
    assert res["wstrb"] == [(1 << WORD_BYTES) - 1]
    assert res["busy"] == [0, 0]
