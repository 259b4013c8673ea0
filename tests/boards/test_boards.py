"""Board registry: the bundled files load, malformed files give one clear DynfixError."""

import json
from pathlib import Path

import pytest
import yaml

from dynfix.boards.registry import BOARDS_DIR, get_board, list_boards, load_board_file
from dynfix.cli import main
from dynfix.errors import DynfixError
from dynfix.hw.fpga_family import fpga_family


def test_bundled_boards():
    boards = {b.name: b for b in list_boards()}
    assert {"icebreaker", "ulx3s", "orangecrab"} <= set(boards)
    assert list_boards()[0].name == "icebreaker" and get_board(None).name == "icebreaker"
    ice, ulx = boards["icebreaker"], boards["ulx3s"]
    assert (ice.luts, ice.dsp.blocks, ice.bram.blocks, ice.spram.blocks) == (5280, 8, 30, 4)
    assert ice.bram.total_bits == 30 * 4096 and ice.clock_mhz == 12
    assert (ulx.luts, ulx.dsp.blocks, ulx.bram.blocks, ulx.spram) == (83640, 156, 208, None)
    assert ulx.bram.bits == 18 * 1024 and ulx.clock_mhz == 25


def test_fpga_family_records():
    """One record per family, looked up by the name a board file gives."""
    assert get_board("icebreaker").family is fpga_family("ice40")
    assert get_board("orangecrab").family is get_board("ulx3s").family is fpga_family("ecp5")
    assert (fpga_family("ice40").bitstream, fpga_family("ecp5").bitstream) == ("bin", "bit")
    with pytest.raises(DynfixError, match="unknown FPGA family 'virtex'; known: ice40, ecp5"):
        fpga_family("virtex")


@pytest.mark.parametrize("name", ["icebreaker", "ulx3s", "orangecrab"])
def test_platform_has_pins(name):
    b = get_board(name)
    plat = b.make_platform()
    assert plat.device == b.device and plat.package == b.package
    plat.request(b.uart_resource, b.uart_number, dir="-")
    plat.request(b.clock_resource, 0, dir="-")
    for res in {(led.resource, led.number) for led in b.leds.values()}:
        plat.request(*res, dir="-")


def _write(tmp_path, mutate) -> Path:
    data = yaml.safe_load((BOARDS_DIR / "icebreaker.yaml").read_text())
    mutate(data)
    p = tmp_path / "myboard.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d["resources"].pop("luts"), "resources.luts: missing"),
    (lambda d: d["resources"]["dsp"].update(blocks="eight"), "resources.dsp.blocks: expected int"),
    (lambda d: d["fpga"].update(family="virtex"), "fpga.family"),
    (lambda d: d["clock"].update(mhz=-3), "clock.mhz: must be positive"),
    (lambda d: d["clock"].update(max_mhz=0), "clock.max_mhz: must be positive"),
    (lambda d: d.update(colour="red"), "colour: unknown key"),
    (lambda d: d["resources"]["bram"].update(shapes=[[512, 16]]), "does not fit 4096 bits"),
    (lambda d: d["resources"]["bram"].update(shapes=[[256, 16, 0]]), "bits per write enable"),
    (lambda d: d["resources"]["bram"].update(shapes=[[256]]), "expected a list of"),
    (lambda d: d["uart"].update(add={"rx": "1"}), "uart.add: needs rx and tx"),
    (lambda d: d["resources"].update(sdram={"part": "MT48LC4M16"}),
     "resources.sdram.part: unknown SDRAM part 'MT48LC4M16'"),
    (lambda d: d["resources"].update(sdram={}), "resources.sdram.part: missing"),
    (lambda d: d.setdefault("synth", {}).update(router="router3"),
     "synth.router: must be one of router1, router2, not 'router3'"),
])
def test_malformed_board(tmp_path, mutate, needle):
    p = _write(tmp_path, mutate)
    with pytest.raises(DynfixError, match=needle.replace(".", r"\.")) as e:
        load_board_file(p)
    assert "myboard.yaml" in str(e.value) and "\n" not in str(e.value)


def test_max_clock_defaults_to_the_family_s(tmp_path):
    """``clock.max_mhz`` (the timing closure's first clock) comes from the family unless the
    board file sets it."""
    assert get_board("icebreaker").max_mhz == fpga_family("ice40").max_mhz
    assert get_board("ulx3s").max_mhz == fpga_family("ecp5").max_mhz
    assert fpga_family("ice40").max_mhz < fpga_family("ecp5").max_mhz
    mine = load_board_file(_write(tmp_path, lambda d: d["clock"].update(max_mhz=33)))
    assert mine.max_mhz == 33 and mine.summary()["max_mhz"] == 33


def test_router_comes_from_the_board_file(tmp_path):
    """``synth.router`` picks nextpnr's router; router1 (nextpnr's default) unless set."""
    assert get_board("ulx3s").router == get_board("icebreaker").router == "router1"
    mine = load_board_file(_write(tmp_path, lambda d: d.setdefault("synth", {}).update(
        router="router2")))
    assert mine.router == "router2"


def test_board_from_path_and_bad_yaml(tmp_path):
    assert get_board(str(_write(tmp_path, lambda d: d.update(name="mine")))).name == "mine"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(DynfixError, match="not valid YAML"):
        get_board(str(bad))
    with pytest.raises(DynfixError, match="unknown board 'nope'.*icebreaker"):
        get_board("nope")


def test_cli_boards(capsys):
    assert main(["boards", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in data][0] == "icebreaker"
    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    assert "icebreaker (default)" in out and "LFE5U-85F" in out



def test_sdram_on_the_boards_that_carry_one():
    """The ULX3S declares its 32 MB SDRAM (the part the controller is timed for, and the
    platform resource); boards without one say none."""
    u = get_board("ulx3s")
    assert u.sdram is not None and u.sdram.part.name.startswith("IS42S16160")
    assert u.sdram.bytes == 32 * 1024 * 1024 and u.sdram.resource == "sdram"
    assert u.summary()["sdram"] == {"part": u.sdram.part.name, "bytes": 32 * 1024 * 1024}
    plat = u.make_platform()
    plat.request(u.sdram.resource, 0, dir="-")           # amaranth-boards has the pins
    assert get_board("icebreaker").sdram is None
    assert get_board("icebreaker").summary()["sdram"] is None
