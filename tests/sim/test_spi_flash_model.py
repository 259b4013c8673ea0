"""The cocotb SPI flash model (``sim/spi_flash_model.py``) on its own, under bit-banged
masters (``tests/spi_flash_model_tb.py``, Icarus). Single-line wiring: asleep until 0xAB,
READ, FAST READ, the erased flash past the image, the device ID, status register 2, and
the violations it reports. Quad wiring: QE set by 0x50 + 0x31, Fast Read Quad I/O (0xEB)
and Quad Output (0x6B), and each of its protocol violations."""

from __future__ import annotations

import json
import random
import re

import pytest

from dynfix.sim.spi_flash_model import SPIFlashModel

BASE = 0x100000
QUAD_IMAGE = 64


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict]:
    from dynfix.sim.simulators import error_lines, job_files
    from sim_helpers import run_icarus

    build_dir = tmp_path_factory.mktemp("spi_flash_model").resolve()
    src = build_dir / "flash_pins.v"
    src.write_text("module flash_pins(input cs_n, input sck, input copi, input cipo);\n"
                   "endmodule\n")
    image = random.Random(4).randbytes(32)
    job, result = job_files(build_dir, {"image": list(image), "base": BASE})
    log = run_icarus([src], "flash_pins", "spi_flash_model_tb", build_dir, job)
    out = {"image": image}
    for name in ("commands", "violations", "single_quad"):
        path = result.with_name(f"{name}.json")
        assert path.exists(), f"cocotb test {name} failed{error_lines(log, 3)} (see {log})"
        out[name] = json.loads(path.read_text())
    return out


def test_reads_and_wake_up(results):
    r, image = results["commands"], results["image"]
    assert r["errors"] == []
    assert r["asleep"] == [0xFF] * 4 and r["ignored"] == [[0x03]]
    assert bytes(r["fast"]) == image[5:11]
    assert bytes(r["tail"]) == image[-4:] + b"\xff" * 4
    assert r["id"] == [0x17, 0x17]
    assert r["commands"] == [[0xAB], [0x0B, 0x10, 0, 5], [0x03, 0x10, 0, 28], [0xAB]]


def test_violations(results):
    errors = results["violations"]["errors"]
    assert len(errors) == 4, errors
    for e, want in zip(errors, ["after 0xAB; tRES1 is 3000 ns", "unknown command 0x9f",
                                "CS released after 12 bits", "CS fell with SCK high"]):
        assert want in e


def test_single_line_status_register_and_quad_read(results):
    r = results["single_quad"]
    assert r["clean"] == []
    assert r["before"] == [0x00, 0x00] and r["after"] == [0x02]       # QE, by 0x06 + 0x31
    assert len(r["errors"]) == 1 and "quad read 0xeb on the single-line wiring" in \
        r["errors"][0]
    assert r["quad"] == [0xFF, 0xFF]                                   # nothing driven
    assert r["commands"] == [[0x35], [0x06], [0x31, 0x02], [0x35], [0xEB]]


def test_wiring_is_one_or_the_other():
    pin = object()
    for wires in ({}, {"copi": pin}, {"dq_o": pin, "dq_oe": pin},
                  {"copi": pin, "cipo": pin, "dq_o": pin, "dq_oe": pin, "dq_i": pin}):
        with pytest.raises(ValueError, match="one wiring"):
            SPIFlashModel(cs_n=pin, sck=pin, image=b"", **wires)
    flash = SPIFlashModel(cs_n=pin, sck=pin, dq_o=pin, dq_oe=pin, dq_i=pin, image=b"")
    assert not flash.qe and flash.sr2 == 0
    assert SPIFlashModel(cs_n=pin, sck=pin, copi=pin, cipo=pin, image=b"", qe=True).sr2 == 2


@pytest.fixture(scope="module")
def quad(tmp_path_factory) -> dict:
    """The quad cocotb tests, once: reads at random offsets (one running past the image's
    end, one 0x6B, one READ on IO1) and the violations."""
    from dynfix.sim.simulators import error_lines, job_files
    from sim_helpers import run_icarus

    build_dir = tmp_path_factory.mktemp("spi_flash_model_quad").resolve()
    src = build_dir / "flash_quad_pins.v"
    src.write_text("module flash_quad_pins(input cs_n, input sck, input [3:0] dq_o,\n"
                   "                       input [3:0] dq_oe, input [3:0] dq_i);\n"
                   "endmodule\n")
    rng = random.Random(7)
    image = rng.randbytes(QUAD_IMAGE)
    reads = {"eb": (rng.randrange(QUAD_IMAGE - 8), 8),
             "eb_end": (QUAD_IMAGE - rng.randrange(1, 5), 8),
             "6b": (rng.randrange(QUAD_IMAGE - 6), 6),
             "03": (rng.randrange(QUAD_IMAGE - 3), 3)}
    payload = {"image": list(image), "base": BASE, "wiring": "quad", "reads": reads,
               "modes": {"eb": 0x00, "eb_end": 0xFF}}
    job, result = job_files(build_dir, payload)
    log = run_icarus([src], "flash_quad_pins", "spi_flash_model_tb", build_dir, job)
    out = {"image": image, "reads": reads}
    for name in ("quad_reads", "quad_violations", "quad_strict"):
        path = result.with_name(f"{name}.json")
        assert path.exists(), f"cocotb test {name} failed{error_lines(log, 3)} (see {log})"
        out[name] = json.loads(path.read_text())
    # quad_strict expects an AssertionError: PASS means the model's task raised one.
    status = re.search(r"\*\* spi_flash_model_tb\.quad_strict\s+(\w+)", log.read_text())
    out["quad_strict"]["status"] = status and status[1]
    return out


def expected(image: bytes, offset: int, n: int) -> bytes:
    """``n`` bytes from ``offset`` in the image at BASE; erased (0xFF) past its end."""
    return (image + b"\xff" * n)[offset:offset + n]


def test_quad_reads(quad):
    r, image, reads = quad["quad_reads"], quad["image"], quad["reads"]
    assert r["errors"] == []
    assert r["sr_before"] == [0x00, 0x00] and r["sr_after"] == [0x02, 0x02] and r["qe"]
    assert r["pull_ups"] == [0b1101, 0b1101] and r["idle"] == 0xF   # undriven lines read 1
    for name, (offset, n) in reads.items():
        assert bytes(r["reads"][name]) == expected(image, offset, n), name
    offset, n = reads["eb_end"]
    assert bytes(r["reads"]["eb_end"]).endswith(b"\xff" * (offset + n - len(image)))
    addr = {name: list((BASE + offset).to_bytes(3, "big"))
            for name, (offset, _) in reads.items()}
    assert r["commands"] == [[0xAB], [0x35], [0x50], [0x31, 0x02], [0x35],
                             [0xEB, *addr["eb"]], [0xEB, *addr["eb_end"]],
                             [0x6B, *addr["6b"]], [0x03, *addr["03"]]]
    # Each read also starts the byte after its last: the falling edge that ends the last
    # clocked period sends out that byte's first bit (or nibble), as in READ.
    assert r["bytes_out"] == sum(n + 1 for _, n in reads.values())


QUAD_VIOLATIONS = {
    "hold_low": "HOLD# (IO3) low or floating with QE = 0",
    "hold_floating": "HOLD# (IO3) low or floating with QE = 0",
    "qe0_eb": "quad read with QE = 0",
    "qe0_6b": "quad read with QE = 0",
    "no_write_enable": "write status register without write enable",
    "sr2_unchanged": None,
    "write_enable": None,
    "write_sr2": None,
    "within_tshsl2": "after Write Status Register-2 (0x31); tSHSL2 is 50 ns",
    "write_enable_2": None,
    "write_sr2_24_bits": "(0x31) ended after 24 bits; it takes exactly 16",
    "contention_io0": "contention on IO0",
    "contention_io1": "contention on IO1",
    "undriven_io2": "IO2 not driven by the controller in the address phase",
    "odd_nibbles": "CS released after 3 data nibbles, mid-byte",
    "continuous": "continuous read mode is not modelled",
    "clean_read": None,
}


@pytest.mark.parametrize("step", QUAD_VIOLATIONS)
def test_quad_violations(quad, step):
    errors = {name: errors for name, errors, _ in quad["quad_violations"]["steps"]}[step]
    want = QUAD_VIOLATIONS[step]
    if want is None:
        assert errors == []
    else:
        assert len(errors) == 1 and want in errors[0], errors


def test_quad_violation_side_effects(quad):
    r, image = quad["quad_violations"], quad["image"]
    steps = {name: got for name, _, got in r["steps"]}
    assert list(steps) == list(QUAD_VIOLATIONS)
    assert steps["qe0_eb"] == steps["qe0_6b"] == [0xFF, 0xFF]    # QE = 0: nothing driven
    assert steps["sr2_unchanged"] == [0x00]                     # 0x31 refused
    assert steps["within_tshsl2"] == [0x02] and r["sr2"] == 0x02
    assert steps["continuous"] == list(image[:1])               # the read goes on
    assert steps["clean_read"] == list(image[:2])
    eb, read = [0xEB, *BASE.to_bytes(3, "big")], [0x03, *BASE.to_bytes(3, "big")]
    assert r["commands"] == [[0x35], [0x35], [0xEB], [0x6B], [0x31, 0x02], [0x35], [0x50],
                             [0x31, 0x02], [0x35], [0x50], [0x31, 0x02], eb, read,
                             eb, eb, eb, eb]


def test_quad_strict_fails_the_test(quad):
    r, image = quad["quad_strict"], quad["image"]
    assert r["status"] == "PASS"                     # failed with the expected AssertionError
    assert r["reached"] == [list(image[:1])]         # the contending read never returned
    assert len(r["errors"]) == 1 and "contention on IO0" in r["errors"][0]
