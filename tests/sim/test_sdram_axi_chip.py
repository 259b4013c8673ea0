"""The SDRAM controller (``hw/sdram_axi.py``) on the chip model (``sim/sdram_model.v``, which
checks every command and timing rule of the part and here stops the simulation at the first
one broken): cocotbext-axi's ``AxiMaster`` writes and reads bytes at random places, lengths
and strobes, pausing on every channel (``spram_axi_tb.byte_strobes``), across rows and banks
and through refreshes; what it reads is what a bytearray reference of its writes holds."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from amaranth import ClockSignal, Instance, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from dynfix.hw.axi import RESP_OKAY, AxiSignature, connect_flat, flat_members
from dynfix.hw.sdram_axi import SdramAxi, SdramPart, SdramTiming

from axi_helpers import convert
from sim_helpers import require_simulator

MODEL = Path(__file__).resolve().parents[2] / "sim" / "sdram_model.v"
TOP = "sdram_sub_top"
#: A small part (4 banks of 64 rows of 256 columns: 128 KB) so the runs cross rows and
#: banks, and the model's memory is small; refreshes often (``t_refi``).
PART = SdramPart("small", row_bits=6, col_bits=8, bank_bits=2, t_rcd=15, t_rp=15,
                 t_ras=42, t_rc=60, t_wr=14, t_rfc=60, t_refi=7812.5, t_init=100_000)
TIMING = SdramTiming(t_rcd=2, t_rp=2, t_ras=5, t_rc=7, t_wr=2, t_rfc=7, t_refi=100,
                     t_init=50, t_mrd=2, cas=3)
ADDR_WIDTH, DW = 17, 32
#: The model's parameters: the same rules (its ACTIVE-to-ACTIVE of different banks too),
#: stop at the first violation.
MODEL_PARAMS = {"ROW_BITS": PART.row_bits, "COL_BITS": PART.col_bits, "ADDR_BITS": 11,
                "T_RCD": TIMING.t_rcd, "T_RP": TIMING.t_rp, "T_RAS": TIMING.t_ras,
                "T_RC": TIMING.t_rc, "T_RRD": 2, "T_WR": TIMING.t_wr, "T_MRD": TIMING.t_mrd,
                "T_RFC": TIMING.t_rfc, "T_REFI": TIMING.t_refi, "T_INIT": TIMING.t_init,
                "MAX_POSTPONED": 8, "FATAL": 1}
SEED = 9


class SdramSubTop(wiring.Component):
    """A SdramAxi on the chip model, its AXI4 port named ``s_axi_*`` (cocotbext-axi's
    ``AxiBus.from_prefix``), the model's violation count out."""

    def __init__(self):
        super().__init__({**flat_members("s_axi", AxiSignature(ADDR_WIDTH, DW).flip()),
                          "errors": Out(32)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.ctrl = ctrl = SdramAxi(ADDR_WIDTH, DW, part=PART, timing=TIMING)
        connect_flat(m, self, "s_axi", ctrl.bus)
        p = ctrl.sdram
        m.submodules.chip = Instance(
            "dynfix_sdram_model", **{f"p_{k}": v for k, v in MODEL_PARAMS.items()},
            i_clk=ClockSignal(),
            i_cke=p.clk_en, i_cs_n=p.cs_n, i_ras_n=p.ras_n, i_cas_n=p.cas_n, i_we_n=p.we_n,
            i_ba=p.ba, i_a=p.a[:11], i_dqm=p.dqm, i_dq_o=p.dq_o, i_dq_oe=p.dq_oe,
            o_dq_i=p.dq_i, o_errors=self.errors, o_last_error=Signal(8))
        return m


def ops_for(rng: random.Random) -> list:
    """Fill the first 6 KiB (reads of unwritten words would be X: three rows of each of the
    four banks), then 24 writes and reads of 1 to 1500 bytes at random byte addresses inside
    it (the testbench allows 50,000 cycles)."""
    region = 6 * 1024
    ops = [["w", 0, rng.randbytes(region).hex()]]
    for _ in range(24):
        n = rng.randint(1, 1500)
        at = rng.randrange(0, region - n)
        ops.append(["w", at, rng.randbytes(n).hex()] if rng.random() < 0.5 else ["r", at, n])
    return ops


def reference(ops: list) -> list:
    mem = bytearray(1 << ADDR_WIDTH)
    seen = []
    for op in ops:
        if op[0] == "w":
            data = bytes.fromhex(op[2])
            mem[op[1]:op[1] + len(data)] = data
            seen.append(["w", RESP_OKAY])
        else:
            seen.append(["r", RESP_OKAY, bytes(mem[op[1]:op[1] + op[2]]).hex()])
    return seen


@pytest.mark.parametrize("sim", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_axi_master_on_the_chip_model(sim, tmp_path):
    """Every read returns the reference's bytes, every response is OKAY, and the chip model
    (stopping at its first violation, which loses the result) saw none."""
    import json

    from cocotb_tools.runner import get_runner

    from dynfix.sim.simulators import (VERILATOR_ARGS, error_lines, job_files, quiet,
                                       tool_environment)

    require_simulator(sim)
    build_dir = tmp_path.resolve()
    verilog = build_dir / f"{TOP}.v"
    verilog.write_text(convert(SdramSubTop(), TOP))
    ops = ops_for(random.Random(SEED))
    job_path, result = job_files(build_dir, {"seed": SEED, "ops": ops, "pause": 0.3})
    runner = get_runner(sim)
    quiet(runner)
    with tool_environment(sim):
        runner.build(sources=[verilog, MODEL], hdl_toplevel=TOP, build_dir=build_dir,
                     timescale=("1ns", "1ps"), log_file=build_dir / "build.log",
                     build_args=list(VERILATOR_ARGS) if sim == "verilator" else [])
        log = build_dir / "sim.log"
        try:
            runner.test(hdl_toplevel=TOP, test_module="spram_axi_tb", testcase="byte_strobes",
                        build_dir=build_dir, test_dir=build_dir,
                        extra_env={"DYNFIX_TB_JOB": str(job_path)}, log_file=log)
        except SystemExit:                   # the runner's way of saying a test failed
            pass
    assert "SDRAM violation" not in log.read_text(errors="replace")
    assert result.exists(), f"the cocotb test failed{error_lines(log, 3)} (see {log})"
    res = json.loads(result.read_text())
    want = reference(ops)
    assert len(res["seen"]) == len(want)
    for k, (got, exp) in enumerate(zip(res["seen"], want)):
        assert got == exp, (k, ops[k][:2])
    # Refreshes kept up through the run (the model stops on starvation): it was long.
    assert res["cycles"] > 20 * TIMING.t_refi
