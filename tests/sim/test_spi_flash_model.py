"""The cocotb SPI flash model (``sim/spi_flash_model.py``) on its own, under a bit-banged
master (``tests/spi_flash_model_tb.py``, Icarus): asleep until 0xAB, READ, FAST READ, the
erased flash past the image, the device ID, and the violations it reports."""

from __future__ import annotations

import json
import random

import pytest

BASE = 0x100000


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
    for name in ("commands", "violations"):
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
