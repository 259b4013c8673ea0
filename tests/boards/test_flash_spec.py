"""The SPI flash per board (``flash:`` in a board file, :class:`FlashSpec`): what the bundled
files say, malformed sections refused in one line, the programming commands, the image's
size limit in the flash image, the fit and the board top, and the ULX3S's flash driven
through ``USRMCLK`` at 4 MiB."""

from __future__ import annotations

import gc
import re
from dataclasses import replace
from types import SimpleNamespace

import pytest
import yaml
from amaranth import Module
from amaranth.lib import wiring

from dynfix.boards.board_top import BoardTop
from dynfix.boards.flash_image import (DEFAULT_FLASH, FLASH_OFFSET, PAYLOAD_BYTES,
                                       bitstream_command, flash_header, flash_image,
                                       payload_bytes, program_commands, write_flash_files)
from dynfix.boards.protocol import LinkInfo
from dynfix.boards.registry import BOARDS_DIR, FlashSpec, get_board, load_board_file
from dynfix.errors import DynfixError
from dynfix.hw.host_interface import EngineHostSignature

MiB = 1 << 20
INFO = LinkInfo(n_in=4, n_out=3, in_bits=8, out_bits=8)


class WeightSink(wiring.Component):
    """Stand-in engine that loads its weights (``weight_load``): always ready for a halfword
    on ``wl``; never runs."""

    def __init__(self):
        super().__init__(EngineHostSignature(8, weight_load=True))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.wl.ready.eq(1)
        return m


def test_bundled_flash_sections():
    """The ULX3S: its ``spi_flash`` resource (no quad one), 16 MiB, the image at 4 MiB, the
    clock through USRMCLK; the iCEBreaker's section is exactly the defaults the code keeps
    (1 MiB into its 16 MiB, both resources); the OrangeCrab has none."""
    ulx = get_board("ulx3s").flash
    assert ulx == FlashSpec(
        resource="spi_flash", quad_resource=None, bytes=16_777_216, offset=4_194_304,
        usrmclk=True,
        program=("openFPGALoader -b ulx3s -f -o {offset:#x} {file}",
                 "fujprog -j flash -f {offset:#x} {file}"),
        program_bitstream="openFPGALoader -b ulx3s -f {file}")
    ice = get_board("icebreaker").flash
    assert ice == DEFAULT_FLASH
    assert (ice.resource, ice.quad_resource, ice.bytes, ice.offset, ice.usrmclk) == (
        "spi_flash_1x", "spi_flash_4x", 16_777_216, 1_048_576, False)
    assert get_board("orangecrab").flash is None
    assert get_board("orangecrab").summary()["flash"] is None
    assert get_board("ulx3s").summary()["flash"] == {
        "bytes": 16_777_216, "offset": 4_194_304, "resource": "spi_flash",
        "quad_resource": None, "usrmclk": True}


@pytest.mark.parametrize("name", ["icebreaker", "ulx3s"])
def test_flash_resources_exist_on_the_platform(name):
    """The resources a flash section names are the platform's, with the pins the board top
    drives: no clock pin with USRMCLK."""
    b = get_board(name)
    plat = b.make_platform()
    pins = plat.request(b.flash.resource, 0, dir="-")
    assert all(hasattr(pins, name) for name in ("cs", "copi", "cipo", "wp", "hold"))
    assert hasattr(pins, "clk") != b.flash.usrmclk
    if b.flash.quad_resource is not None:           # the same pins: another platform
        quad = b.make_platform().request(b.flash.quad_resource, 0, dir="-")
        assert len(quad.dq.io) == 4


def test_program_commands_per_board(tmp_path):
    """Each board's commands, spelled out: the bitstream at 0, the image at the offset."""
    ulx, ice = get_board("ulx3s").flash, get_board("icebreaker").flash
    assert program_commands("weights.flash.bin", ulx) == [
        "openFPGALoader -b ulx3s -f -o 0x400000 weights.flash.bin",
        "fujprog -j flash -f 0x400000 weights.flash.bin"]
    assert bitstream_command("dynfix_top.bit", ulx) == "openFPGALoader -b ulx3s -f dynfix_top.bit"
    assert program_commands("weights.flash.bin", ice) == program_commands() == [
        "iceprog -o 1M weights.flash.bin",
        "openFPGALoader -b ice40_generic -f -o 0x100000 weights.flash.bin"]
    assert bitstream_command("dynfix_top.bin") == "iceprog dynfix_top.bin"
    assert write_flash_files(tmp_path, b"\x01\x02", ulx)[0] == (
        "openFPGALoader -b ulx3s -f -o 0x400000 weights.flash.bin")
    assert (tmp_path / "weights.flash.bin").read_bytes() == flash_image(b"\x01\x02")


def test_payload_limit_is_the_board_s():
    """Room past the offset and the 16-byte header: 12 MiB - 16 on the ULX3S, 15 MiB - 16 on
    the iCEBreaker (the old constant); a payload one byte over is refused in one line that
    names the offset."""
    ulx = get_board("ulx3s").flash
    assert payload_bytes(ulx) == 12_582_896
    assert payload_bytes() == PAYLOAD_BYTES == 15_728_624
    assert len(flash_header(bytes(12_582_896), ulx)) == 16
    with pytest.raises(DynfixError, match=r"^a payload of 12582897 bytes does not fit the "
                                          r"flash after 0x400000 \(16 MiB\)$"):
        flash_header(bytes(12_582_897), ulx)
    flash_header(bytes(12_582_897))                 # the iCEBreaker's flash has room


def _write(tmp_path, mutate):
    data = yaml.safe_load((BOARDS_DIR / "ulx3s.yaml").read_text())
    mutate(data["flash"])
    p = tmp_path / "myboard.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("mutate, needle", [
    (lambda f: f.update(offset=0x400800), "flash.offset: must be a multiple of 4 KiB (an "
                                          "erase sector), got 0x400800"),
    (lambda f: f.update(offset=0x1000000), "flash.offset: 0x1000000 is past the end of the "
                                           "0x1000000-byte flash"),
    (lambda f: f.update(offset=0), "flash.offset: must be positive, got 0"),
    (lambda f: f.update(bytes=1 << 25), "flash.bytes: at most 16777216"),
    (lambda f: f.update(bytes="16M"), "flash.bytes: expected int, got '16M'"),
    (lambda f: f.pop("resource"), "flash.resource: missing"),
    (lambda f: f.update(usrmclk="yes"), "flash.usrmclk: expected bool"),
    (lambda f: f.update(colour="red"), "flash.colour: unknown key"),
    (lambda f: f.update(program=[]), "flash.program: expected a list of command templates"),
    (lambda f: f.update(program=["fujprog -f {addr} {file}"]),
     "flash.program: 'fujprog -f {addr} {file}': unknown placeholder {addr}"),
    (lambda f: f.update(program=["iceprog -o {offset}"]),
     "flash.program: 'iceprog -o {offset}' does not name the file ({file})"),
    (lambda f: f.update(offset=0x480000, program=["iceprog -o {offset_mib}M {file}"]),
     "flash.program: 'iceprog -o {offset_mib}M {file}': {offset_mib} needs an offset of whole "
     "MiB, not 0x480000"),
    (lambda f: f.update(program_bitstream="openFPGALoader {file"),
     "flash.program_bitstream: 'openFPGALoader {file'"),
])
def test_malformed_flash_section(tmp_path, mutate, needle):
    with pytest.raises(DynfixError, match=re.escape(needle)) as e:
        load_board_file(_write(tmp_path, mutate))
    assert str(e.value).startswith("board file myboard.yaml: ") and "\n" not in str(e.value)


def test_a_valid_custom_flash(tmp_path):
    """An older 4 MB ULX3S: the image moved to 3 MiB; the commands follow the offset."""
    b = load_board_file(_write(tmp_path, lambda f: f.update(bytes=0x400000, offset=0x300000)))
    assert (b.flash.bytes, b.flash.offset) == (4_194_304, 3_145_728)
    assert payload_bytes(b.flash) == 1_048_560
    assert b.flash.program_commands("w.bin")[0] == "openFPGALoader -b ulx3s -f -o 0x300000 w.bin"


@pytest.mark.filterwarnings("ignore:.*created but never used")   # built, not elaborated
def test_board_top_takes_the_board_s_flash():
    """Built for a board, the reader's offset and size are the board's; ``flash_offset``
    overrides it, without a board the default stays 1 MiB of 16 MiB; a board without a flash
    section refuses an engine that loads weights, one without a quad resource an engine
    that reads the flash at run time."""
    from dynfix.hw.axi import AxiReadSignature
    from dynfix.hw.config import BulkStore

    w = bytes(range(64))
    ulx = get_board("ulx3s")
    top = BoardTop(WeightSink(), INFO, divisor=8, board=ulx, weights=w)
    assert (top._flash_spec.offset, top._flash_spec.bytes) == (0x400000, 1 << 24)
    top = BoardTop(WeightSink(), INFO, divisor=8, weights=w, clk_hz=12_000_000)
    assert (top._flash_spec.offset, top._flash_spec.bytes) == (FLASH_OFFSET, 1 << 24)
    top = BoardTop(WeightSink(), INFO, divisor=8, weights=w, clk_hz=12_000_000,
                   flash_offset=0x200000)
    assert top._flash_spec.offset == 0x200000
    small = replace(ulx, flash=replace(ulx.flash, bytes=0x400000 + 0x40))
    with pytest.raises(DynfixError, match=r"does not fit the flash after 0x400000 \(4194368 "
                                          r"bytes\)"):
        BoardTop(WeightSink(), INFO, divisor=8, board=small, weights=w)
    with pytest.raises(ValueError, match=r"^board orangecrab has no flash section in its "
                                         r"board file"):
        BoardTop(WeightSink(), INFO, divisor=8, board=get_board("orangecrab"), weights=w)
    quad = EngineHostSignature(8, bulk=AxiReadSignature(16, 8))

    class QuadSink(wiring.Component):
        def __init__(self):
            super().__init__(quad)

        def elaborate(self, platform):
            return Module()

    with pytest.raises(ValueError, match="board ulx3s's flash has no quad resource"):
        BoardTop(QuadSink(), INFO, divisor=8, board=ulx, weights=w,
                 bulk_store=BulkStore.FLASH)
    del top
    gc.collect()            # the unbuilt components warn here, under this test's filter


def test_ulx3s_board_top_drives_its_flash_through_usrmclk():
    """The ULX3S board top of an engine that loads its weights: a ``USRMCLK`` instance (kept)
    drives the flash clock, and the ``spi_flash`` pins CS (R2), COPI (W2), CIPO (V2), WP (Y2)
    and HOLD (W1) are constrained; no other flash pin."""
    from dynfix.boards.synth import prepare

    board = get_board("ulx3s")
    top = BoardTop(WeightSink(), INFO, divisor=217, board=board, weights=bytes(range(64)))
    files = {k: v if isinstance(v, str) else v.decode()
             for k, v in prepare(top, board).files.items()}
    il, lpf = files["dynfix_top.il"], files["dynfix_top.lpf"]
    cell = il[il.index("cell \\USRMCLK"):]
    cell = cell[:cell.index("\n  end")]
    assert il.count("cell \\USRMCLK") == 1
    assert "connect \\USRMCLKTS 1'0" in cell and "connect \\USRMCLKI " in cell
    assert "attribute \\keep 1" in il[il.rindex("\n", 0, il.index("cell \\USRMCLK")) - 200:
                                        il.index("cell \\USRMCLK")]
    sites = dict(re.findall(r'LOCATE COMP "(spi_flash_0__\w+)" SITE "(\w+)"', lpf))
    assert sites == {"spi_flash_0__cs__io": "R2", "spi_flash_0__copi__io": "W2",
                     "spi_flash_0__cipo__io": "V2", "spi_flash_0__wp__io": "Y2",
                     "spi_flash_0__hold__io": "W1"}


def test_ulx3s_board_top_loads_from_4_mib():
    """In the simulator against the cycle-level flash model holding the image at 4 MiB, the
    ULX3S board top reads it there (READ 0x03 0x40 0x00 0x00) and loads every halfword; the
    same image at 1 MiB is not found (erased flash: the header does not match)."""
    from dynfix.boards.spi_flash_reader import READ, RELEASE_POWER_DOWN
    from test_spi_flash_reader import TickFlash

    payload = bytes(range(40))
    for base, loads in ((4 * MiB, True), (1 * MiB, False)):
        top = BoardTop(WeightSink(), INFO, divisor=8, board=get_board("ulx3s"),
                       weights=payload, clk_hz=12_000_000)
        pins = SimpleNamespace(sck=top.flash_sck, cs_n=top.flash_cs_n, copi=top.flash_copi,
                               cipo=top.flash_cipo)
        flash = TickFlash(pins, flash_image(payload), base)
        seen = {"halfwords": 0}

        async def bench(ctx, top=top):
            for _ in range(5000):
                await ctx.tick()
                wl = top._engine.wl
                seen["halfwords"] += ctx.get(wl.valid) and ctx.get(wl.ready)
                if ctx.get(top.loaded) or ctx.get(top.load_error):
                    break
            seen["loaded"], seen["error"] = ctx.get(top.loaded), ctx.get(top.load_error)

        flash.simulate(top, bench)
        assert [t[0][:4] for t in flash.log] == [bytes([RELEASE_POWER_DOWN]),
                                                 bytes([READ, 0x40, 0x00, 0x00])]
        assert (seen["loaded"], seen["error"]) == ((1, 0) if loads else (0, 1))
        assert seen["halfwords"] == (20 if loads else 0)


def test_design_refuses_a_board_without_flash(tmp_path):
    """``design.check_flash``: an engine that loads its weights needs the board's flash
    section; one that does not is fine anywhere."""
    from dynfix.boards.design import check_flash

    loads = SimpleNamespace(weight_load=True, bulk=False, folder=tmp_path)
    with pytest.raises(DynfixError, match=r"loads its weights from the SPI flash; "
                                          r"orangecrab's board file has no flash section"):
        check_flash(loads, get_board("orangecrab"))
    check_flash(loads, get_board("ulx3s"))
    check_flash(SimpleNamespace(weight_load=False, bulk=False, folder=tmp_path),
                get_board("orangecrab"))


def test_fit_limit_and_refusal_follow_the_board_s_flash():
    """The fit's estimate takes a bulk image read from the flash only if it fits the board's
    flash past the board's offset, to the byte; a board without a flash section refuses an
    engine that loads its weights from flash in one line that names the board."""
    from dynfix.boards.fit import board_estimate
    from dynfix.hw.compiler import compile_model
    from dynfix.hw.config import BulkStore, EngineConfig
    from hw_models import small_net

    model, spec, _ = small_net()
    cfg = compile_model(model, spec, EngineConfig(tn=4, tm=2, w_bulk=1, bulk_bits=8,
                                                 bulk_store=BulkStore.FLASH)).config
    image = cfg.weight_depth * cfg.word_beats       # 8-bit bus words: one byte each
    ice = get_board("icebreaker")
    for flash, fits in ((replace(ice.flash, bytes=0x100000 + 16 + image), True),
                        (replace(ice.flash, bytes=0x100000 + 16 + image - 1), False),
                        (replace(ice.flash, bytes=0x101000 + 16 + image), True),
                        (replace(ice.flash, bytes=0x101000 + 16 + image, offset=0x102000),
                         False)):
        board = replace(ice, flash=flash)
        if fits:
            assert board_estimate(cfg, board).total.sprams == 0
            continue
        room = flash.bytes - flash.offset - 16
        assert room < image
        with pytest.raises(DynfixError, match=rf"^the weights \({image} bytes as the bulk "
                                              rf"image\) do not fit the {room} bytes of SPI "
                                              rf"flash past the bitstream$"):
            board_estimate(cfg, board)
    with pytest.raises(DynfixError, match=r"^the engine loads its weights from the SPI flash "
                                          r"\(w_bulk\); icebreaker's board file has no flash "
                                          r"section$"):
        board_estimate(cfg, replace(ice, flash=None))
    spram = compile_model(model, spec, EngineConfig(tn=4, tm=2, w_spram=1)).config
    assert board_estimate(spram, ice).total.sprams >= 1
    with pytest.raises(DynfixError, match=r"^the engine loads its weights from the SPI flash "
                                          r"\(w_spram\); icebreaker's board file has no flash "
                                          r"section$"):
        board_estimate(spram, replace(ice, flash=None))
