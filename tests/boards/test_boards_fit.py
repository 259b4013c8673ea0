"""Resource estimate and board fitting."""

import dataclasses

import re

import pytest

from dynfix.boards.fit import evaluate_config, fit
from dynfix.boards.registry import get_board
from dynfix.errors import DynfixError
from dynfix.hw.config import BulkStore, EngineConfig, Multiplier
from dynfix.hw.resources import Device, estimate, memory_blocks
from dynfix.quant.load import load_model

from hw_models import fc_model

ICE40 = get_board("icebreaker").bram.shapes
ECP5 = get_board("ulx3s").bram.shapes


@pytest.mark.parametrize("shapes,depth,width,blocks", [
    # checked against yosys 0.70 synth_ice40 (weights and fmap of the digits engines)
    (ICE40, 536, 72, 14), (ICE40, 128, 72, 5), (ICE40, 536, 64, 12), (ICE40, 128, 64, 4),
    (ICE40, 256, 16, 1), (ICE40, 257, 16, 2), (ICE40, 2048, 2, 1),
    (ECP5, 512, 36, 1), (ECP5, 1024, 18, 1), (ECP5, 16384, 1, 1), (ECP5, 128, 80, 3),
])
def test_memory_blocks(shapes, depth, width, blocks):
    assert memory_blocks(depth, width, shapes) == blocks


@pytest.mark.parametrize("depth,width,lane_bits,rom,blocks", [
    # checked against yosys 0.70 synth_ecp5 (DP16KD cells per memory of the MLPerf engines)
    (11520, 96, 8, False, 72),      # MobileNet fmap, 12 lanes: x4 blocks, 3 rows (not 63)
    (2048, 176, 8, False, 22),      # ResNet-8 fmap, 22 lanes: a 9-bit byte per lane
    (1608, 1152, 0, True, 128),     # MobileNet weights
    (274, 2816, 0, True, 79),       # ResNet-8 weights: x36
    (49, 192, 0, False, 6),         # MobileNet depthwise line: one write enable
])
def test_memory_blocks_write_lanes(depth, width, lane_bits, rom, blocks):
    """A lane with its own write enable takes whole 9-bit bytes of a DP16KD; yosys weighs
    the blocks against the read multiplexer of a deep memory."""
    assert memory_blocks(depth, width, ECP5, 128, lane_bits, rom) == blocks


def test_memory_blocks_bit_mask_packs_lanes():
    """iCE40's 16-bit mode masks single bits: 6-bit lanes pack without padding."""
    assert memory_blocks(256, 96, ICE40, 64, 6) == 6
    assert memory_blocks(256, 96, ECP5, 128, 6) == 4       # 16 lanes in 9-bit bytes, x36


def _qspec_digits(tmp_path):
    from dynfix.cli import main
    from dynfix.quant.qspec_io import load_qspec
    q = tmp_path / "q.yaml"
    assert main(["quantize", "digits", "--calib", "digits", "--output", str(q)]) == 0
    model = load_model("digits")
    return model, load_qspec(q, model)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return _qspec_digits(tmp_path_factory.mktemp("fit"))


def test_fit_uses_the_board(digits):
    model, spec = digits
    ice = fit(model, spec, get_board("icebreaker"))
    ulx = fit(model, spec, get_board("ulx3s"))
    # iCE40: 8-bit products in pairs on the SB_MAC16s, more products than DSP blocks.
    c = ice.chosen.config
    assert c.dual_mac == 1 and c.dsp_blocks <= 8 < c.multipliers and ice.chosen.fits
    assert ulx.chosen.config.dual_mac == 0
    assert ulx.chosen.config.multipliers >= 6 * c.multipliers
    assert ulx.chosen.cycles * 3 < ice.chosen.cycles
    # ULX3S: products in LUTs would save only 1.2 % of the cycles (the digits model has
    # little more parallelism to use): the DSP blocks alone.
    u = ulx.chosen.config
    assert u.lut_products == 0 and ulx.chosen.estimate.total.dsps == u.dsp_blocks <= 156
    assert "DSP blocks" in ulx.limit and "> 156" in ulx.limit
    assert "products in LUTs: the fastest such engine" in ulx.limit and "+100 lut" in ulx.limit
    d = ice.to_dict()
    assert d["estimate"]["total"]["dsps"] == d["dsp_blocks"] == -(-d["multipliers"] // 2)
    assert d["multiplier"] == "ice40-dual"


def test_dual_mac_doubles_the_icebreaker_products(digits):
    """The same iCE40 board without the dual 8x8 mode: one product per SB_MAC16, slower (the
    LUTs, not the DSP blocks, stop the next faster dual engine)."""
    model, spec = digits
    board = get_board("icebreaker")
    single = dataclasses.replace(board, family=dataclasses.replace(board.family,
                                                                   dual_mac=False))
    one, two = fit(model, spec, single), fit(model, spec, board)
    assert one.chosen.config.dual_mac == 0 and one.chosen.config.multipliers <= 8
    assert two.chosen.config.multipliers > 8 >= two.chosen.estimate.total.dsps
    assert two.chosen.cycles < 0.6 * one.chosen.cycles
    assert "DSP blocks 16 > 8" in one.limit and "dual 8x8" in two.limit
    assert two.limit.startswith("LUTs") and "DSP blocks 16 > 8" in two.limit


def test_dual_mac_needs_8_bit_operands_and_an_ice40(digits):
    """16-bit weights: one product per SB_MAC16. A dual engine is refused on ECP5."""
    from dynfix.hw.compiler import compile_model
    model, spec = digits
    wide = dataclasses.replace(spec, layers={
        name: dataclasses.replace(f, bw_w=16, fl_w=f.fl_w + 8, acc_bits=f.acc_bits + 8)
        if hasattr(f, "bw_w") else f for name, f in spec.layers.items()})
    r = fit(model, wide, get_board("icebreaker"))
    assert r.chosen.config.dual_mac == 0 and r.chosen.config.multipliers <= 8
    dual = EngineConfig(tn=4, tm=4, multiplier=Multiplier.ICE40_DUAL)
    cfg = compile_model(model, spec, dual).config
    assert estimate(cfg, Device.from_board(get_board("icebreaker"))).total.dsps == 8
    with pytest.raises(DynfixError, match="pairs products on iCE40 SB_MAC16 .* ecp5"):
        estimate(cfg, Device.from_board(get_board("ulx3s")))


def test_ecp5_boards_get_registered_dsps(digits):
    """ECP5 boards: every product on a registered MULT18X18D (``ecp5_dsp``), the same engine
    as without (same DSPs, fewer FFs: the cell's registers are not fabric); iCE40 boards never
    get the flag, and its estimate is refused there. Operands wider than 18 bits: off."""
    from dynfix.hw.compiler import compile_model
    model, spec = digits
    for name in ("orangecrab", "ulx3s"):
        board = get_board(name)
        r = fit(model, spec, board)
        plain = dataclasses.replace(board, family=dataclasses.replace(
            board.family, registered_dsp=False))
        p = fit(model, spec, plain)
        c = r.chosen.config
        assert c.ecp5_dsp == 1 and c.dual_mac == 0 and "ecp5 dsp" in c.summary()
        assert r.to_dict()["multiplier"] == "ecp5" and p.chosen.config.ecp5_dsp == 0
        assert dataclasses.replace(c, multiplier=Multiplier.FABRIC) == p.chosen.config
        e, q = r.chosen.estimate, p.chosen.estimate
        assert e.total.dsps == q.total.dsps == c.dsp_blocks == c.multipliers - c.lut_products
        n = c.dsp_blocks
        assert q.blocks["multipliers"].ffs - e.blocks["multipliers"].ffs == n * (
            c.data_bits + c.weight_bits + 0.5 * (c.data_bits + c.weight_bits))
    ice = fit(model, spec, get_board("icebreaker")).chosen.config
    assert ice.ecp5_dsp == 0 and ice.dual_mac == 1
    cfg = compile_model(model, spec, EngineConfig(tn=4, tm=4, multiplier=Multiplier.ECP5)).config
    with pytest.raises(DynfixError, match="ECP5 MULT18X18D cells .* ice40 has none"):
        estimate(cfg, Device.from_board(get_board("icebreaker")))
    wide = dataclasses.replace(spec, layers={
        name: dataclasses.replace(f, bw_w=20, fl_w=f.fl_w + 12, acc_bits=f.acc_bits + 12)
        if hasattr(f, "bw_w") else f for name, f in spec.layers.items()})
    assert fit(model, wide, get_board("orangecrab")).chosen.config.ecp5_dsp == 0


def test_ecp5_fit_goes_past_the_dsp_blocks_with_lut_products(digits):
    """OrangeCrab (28 MULT18X18D): the digits model can use more parallelism than 28
    products, so the fit takes every DSP block and computes the rest in LUTs, faster than
    the best engine on DSP blocks alone, within the LUT share for LUT products; the estimate
    counts them as logic (no DSPs)."""
    from dynfix.boards.fit import LUT_PRODUCT_HEADROOM, check_usage
    from dynfix.hw.resources import lut_product_usage
    model, spec = digits
    board = get_board("orangecrab")
    r = fit(model, spec, board)
    dsp_only = fit(model, spec, dataclasses.replace(board, family=dataclasses.replace(
        board.family, lut_products=False)))
    c, d = r.chosen.config, dsp_only.chosen.config
    assert d.lut_products == 0 and d.multipliers <= 28
    assert c.ecp5_dsp == 1 and c.dsp_blocks == 28 and c.lut_products == c.multipliers - 28 > 0
    assert r.chosen.cycles < 0.6 * dsp_only.chosen.cycles
    assert r.to_dict()["lut_products"] == c.lut_products
    assert r.to_dict()["dsp_blocks"] == r.chosen.estimate.total.dsps == 28
    e = r.chosen.estimate
    assert e.total.luts <= LUT_PRODUCT_HEADROOM * board.luts
    assert e.blocks["lut_products"].dsps == 0
    assert round(e.blocks["lut_products"].luts) == c.lut_products * lut_product_usage(8, 8)[0]
    # The same engine without LUT products' share: over the LUTs it may take.
    assert check_usage(dataclasses.replace(e.total, luts=0.61 * board.luts), board, 1)
    assert not check_usage(dataclasses.replace(e.total, luts=0.61 * board.luts), board, 0)


def test_ecp5_fit_takes_the_leanest_lut_engine_within_the_share(digits):
    """A wider engine with products in LUTs that saves less than LUT_PRODUCT_AS_FAST of the
    cycles gives way to the narrower one (its products cost LUTs and clock): on the
    OrangeCrab the digits model's engine named in the limit fits and is faster, by less
    than the share, with more products and more LUTs."""
    from dynfix.boards.fit import LUT_PRODUCT_AS_FAST
    model, spec = digits
    board = get_board("orangecrab")
    r = fit(model, spec, board)
    c = r.chosen
    assert c.config.lut_products > 0 and "not worth their LUTs and clock" in r.limit
    tn, tm = map(int, re.search(r"products in LUTs: tn=(\d+) tm=(\d+)", r.limit).groups())
    wider = evaluate_config(model, spec, dataclasses.replace(
        c.config, tn=tn, tm=tm, lut_products=tn * tm - board.dsp.blocks), board)
    assert wider.fits and wider.config.multipliers > c.config.multipliers
    assert wider.cycles < c.cycles <= wider.cycles * (1 + LUT_PRODUCT_AS_FAST)
    assert wider.estimate.total.luts > c.estimate.total.luts


def test_planned_cycles_are_the_compiled_ones_without_bulk_memory(digits):
    """The shape-only plan the fit ranks candidates by counts what the compiled engine
    counts (image load, layers, output unload): without a bulk memory the two agree
    exactly, on a conv model and on a Linear layer whose output unload is most of its
    cycles (a plan without the unload let slower engines pass as within a share)."""
    from dynfix.boards.fit import _on_blocks, candidates
    board = get_board("ulx3s")
    for model, spec in (digits, fc_model(256, 64)):
        found = candidates(model, 64)
        for planned, lanes, tm, im2col in found[:3] + found[-3:]:
            cfg = _on_blocks(EngineConfig(tn=lanes, tm=tm, im2col=im2col,
                                          multiplier=Multiplier.ECP5), board.dsp.blocks, 0, 1)
            c = evaluate_config(model, spec, cfg, board)
            assert c.fits and c.config.w_bulk == 0
            assert c.cycles == planned, (lanes, tm, im2col)


def test_ecp5_fit_packs_narrow_weights_before_lut_products(digits):
    """OrangeCrab with 4-bit weights: the fit packs two products per MULT18X18D first, then
    puts the rest in LUTs, and is faster than the 8-bit engine and than the engine on packed
    blocks alone (and as fast as LUT products alone could be, in fewer LUTs); the ULX3S,
    which has blocks enough for the parallelism that pays, packs nothing (a wider engine
    would gain 1.2 %, not 1.25x)."""
    from hw_models import digits_4bit_weights
    model, spec = digits_4bit_weights()
    board = get_board("orangecrab")
    r = fit(model, spec, board)
    c = r.chosen.config
    assert c.packed_dsp == 1 and c.dsp_blocks == 28 and c.packed_pairs == 28
    assert c.lut_products == c.multipliers - 56 > 0 and r.to_dict()["multiplier"] == "ecp5-packed"
    assert r.chosen.estimate.total.dsps == 28
    eight = fit(*digits, board).chosen
    assert c.multipliers > eight.config.multipliers and r.chosen.cycles < eight.cycles
    no_lut = fit(model, spec, dataclasses.replace(board, family=dataclasses.replace(
        board.family, lut_products=False))).chosen
    assert no_lut.config.packed_dsp == 1 and no_lut.config.lut_products == 0
    assert 28 < no_lut.config.multipliers <= 56 and r.chosen.cycles * 1.25 <= no_lut.cycles
    # The same engine with LUT products alone: the 72 + 56 products in LUTs, more LUTs.
    lut_only = evaluate_config(model, spec,
                               dataclasses.replace(c, multiplier=Multiplier.ECP5,
                                                   lut_products=100), board)
    assert lut_only.cycles == r.chosen.cycles
    assert lut_only.estimate.total.luts > r.chosen.estimate.total.luts + 1000
    ulx = fit(model, spec, get_board("ulx3s"))
    assert ulx.chosen.config.packed_dsp == 0 and ulx.chosen.config.lut_products == 0
    assert "the fastest such engine" in ulx.limit and "is not 1.25x as fast" in ulx.limit


def test_ecp5_lut_products_stop_at_the_lut_share():
    """A wide Linear layer could use hundreds of products: on the OrangeCrab the LUT share
    for LUT products, not the DSP blocks, stops the fit."""
    model, spec = fc_model(256, 256)
    r = fit(model, spec, get_board("orangecrab"))
    c = r.chosen.config
    assert c.lut_products > 0 and c.dsp_blocks == 28
    assert "LUTs" in r.limit and "DSP blocks" not in r.limit.split(";")[0]


def test_estimate_grows_with_parallelism(digits):
    from dynfix.boards.fit import board_estimate
    from dynfix.hw.compiler import compile_model
    model, spec = digits
    ulx3s = get_board("ulx3s")
    dev = Device.from_board(ulx3s)
    small = estimate(compile_model(model, spec, EngineConfig(tn=4, tm=2)).config, dev)
    big = estimate(compile_model(model, spec, EngineConfig(tn=8, tm=8)).config, dev)
    assert big.total.luts > 2 * small.total.luts
    assert (small.total.dsps, big.total.dsps) == (8, 64)
    assert set(big.blocks) >= {"multipliers", "adder_trees", "accumulators", "requantizers",
                               "control", "mem_weights", "mem_fmap"}
    assert "board_top" not in big.blocks        # the engine alone; the board adds its top
    on_board = board_estimate(compile_model(model, spec, EngineConfig(tn=8, tm=8)).config,
                              ulx3s)
    assert set(on_board.blocks) == set(big.blocks) | {"board_top"}
    assert on_board.total.luts > big.total.luts and on_board.total.dsps == 64


def test_weights_beyond_block_ram_go_to_spram():
    """32 K weights (256 kbit) overflow the iCEBreaker's 30 block RAMs (120 kbit): the fit
    puts them in its SPRAMs, at most 4 x 16 bits wide, so 8 products per cycle read them."""
    model, spec = fc_model(512)
    r = fit(model, spec, get_board("icebreaker"))
    c = r.chosen.config
    assert r.chosen.fits and c.w_spram == 1
    assert c.weight_word_bits <= 64 and c.multipliers <= 8
    total = r.chosen.estimate.total
    assert 1 <= total.sprams <= 4 and total.brams <= 30
    assert "SPRAMs" in r.chosen.estimate.memories["weights"]
    assert r.to_dict()["w_spram"] == 1
    # The ULX3S has no SPRAM; its block RAM holds them.
    assert fit(model, spec, get_board("ulx3s")).chosen.config.w_spram == 0


def test_model_too_big_fails_before_synthesis():
    """192 K weights: more than the 4 SPRAMs hold, so the iCEBreaker's engine reads them from
    the SPI flash at run time; a board whose flash has less room past its offset (a smaller
    flash in its board file, as a model of 15 MiB would take long to compile) refuses them
    in one line that names the memories and the board's room (150,000 bytes: a flash of
    0x124a00 bytes, the image at 1 MiB, its 16-byte header); the OrangeCrab's block RAM
    cannot hold them either."""
    model, spec = fc_model(2048, 96)
    r = fit(model, spec, get_board("icebreaker"))
    c = r.chosen.config
    assert c.w_bulk and c.bulk_store is BulkStore.FLASH
    # Each weight is used once: the flash's bandwidth binds, and the fit keeps the smallest
    # engine that is as fast as the fastest it found, and says why.
    assert r.limit.startswith("the bulk memory's bandwidth: ")
    assert re.search(r"waits \d+ of its \d+ cycles for weights, and (\d+ products? (is|are) "
                     r"as fast|no engine with more products that fits is faster)", r.limit)
    assert r.chosen.waits > r.chosen.cycles / 2 and c.multipliers <= 2
    ice = get_board("icebreaker")
    small = dataclasses.replace(ice, flash=dataclasses.replace(ice.flash, bytes=0x124a00))
    with pytest.raises(DynfixError, match=r"big does not fit icebreaker even with the smallest "
                                          r"engine.*SPRAMs \d+ > 4.*weights.*150000 bytes of "
                                          r"SPI flash") as e:
        fit(model, spec, small)
    assert "\n" not in str(e.value)
    with pytest.raises(DynfixError, match=r"block RAMs \d+ > 56"):
        fit(model, spec, get_board("orangecrab"))


def test_boards_fit_cli_names_where_memories_go(digits, tmp_path, capsys):
    """``dynfix boards --fit``: the engine, the estimate with the board's SPRAMs, where each
    memory goes, and what limits a faster engine."""
    from dynfix.cli import main
    from dynfix.quant.qspec_io import save_qspec
    model, spec = digits
    q = tmp_path / "q.yaml"
    save_qspec(spec, q)
    assert main(["boards", "--fit", "digits", "--quant", str(q), "--board", "icebreaker"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("icebreaker: tn=")
    assert out[1].startswith("  estimate: ") and "/4 SPRAMs" in out[1]
    assert out[2].startswith("  memories: fmap ") and "weights " in out[2]
    assert "blocks" in out[2]               # digits' memories fit the block RAMs
    assert out[3].startswith("  limited by ")


def test_engine_yaml_round_trip_and_older_forms(digits, tmp_path, capsys):
    """``boards --fit --write`` saves the choice (the multiplier by name, no derived stage);
    ``generate --config`` of it builds the engine ``--board`` builds, and an engine.yaml of
    the older form (``k`` and the multiplier flags) still loads and gives the same Verilog;
    a derived stage in a file is refused, naming why."""
    import yaml

    from dynfix.cli import main
    from dynfix.hw.config import CHOICE_KEYS, DERIVED_KEYS
    from dynfix.quant.qspec_io import save_qspec
    _, spec = digits
    q = tmp_path / "q.yaml"
    save_qspec(spec, q)
    eng = tmp_path / "engine.yaml"
    assert main(["boards", "--fit", "digits", "--quant", str(q), "--board", "icebreaker",
                 "--write", str(eng)]) == 0
    saved = yaml.safe_load(eng.read_text())
    assert set(saved) == set(CHOICE_KEYS) and saved["multiplier"] == "ice40-dual"
    older = dict(saved, k=1, dual_mac=1, ecp5_dsp=0, packed_dsp=0)
    del older["multiplier"]
    (tmp_path / "older.yaml").write_text(yaml.safe_dump(older))
    texts = []
    for name, how in (("board", ["--board", "icebreaker"]), ("new", ["--config", str(eng)]),
                      ("old", ["--config", str(tmp_path / "older.yaml")])):
        assert main(["generate", "digits", "--quant", str(q), *how,
                     "--output", str(tmp_path / name)]) == 0
        texts.append((tmp_path / name / "dynfix_engine.v").read_text())
    assert texts[0] == texts[1] == texts[2] and "SB_MAC16" in texts[0]
    capsys.readouterr()
    (tmp_path / "derived.yaml").write_text(yaml.safe_dump(dict(saved, residual=1)))
    assert main(["generate", "digits", "--quant", str(q), "--config",
                 str(tmp_path / "derived.yaml"), "--output", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert "residual" in err and "derived from the model" in err and err.count("\n") == 1
    assert "residual" in DERIVED_KEYS and not (tmp_path / "d").exists()


def test_generate_names_the_waits_and_the_bytes(digits, tmp_path, capsys):
    """``dynfix generate --config`` of an engine reading the flash: each layer that waits for
    weights says how long (and when that is most of its cycles, that the bulk memory bounds
    it), and the bytes a pass reads; an unknown store is refused naming the key."""
    import json

    import yaml

    from dynfix.cli import main
    from dynfix.quant.qspec_io import save_qspec
    _, spec = digits
    q = tmp_path / "q.yaml"
    save_qspec(spec, q)
    eng = tmp_path / "engine.yaml"
    eng.write_text(yaml.safe_dump({"tn": 2, "tm": 2, "w_bulk": 1, "bulk_bits": 8,
                                   "bulk_store": "flash"}))
    assert main(["generate", "digits", "--quant", str(q), "--config", str(eng),
                 "--output", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    est = json.loads((tmp_path / "g" / "report.json").read_text())["estimate"]
    waiting = [r for r in est["layers"] if r["waits"]]
    assert waiting and all(f"{r['waits']} waiting for weights" in out for r in waiting)
    assert (" (bound by the bulk memory)" in out) == any(2 * r["waits"] >= r["cycles"]
                                                        for r in waiting)
    assert f"weights from bulk memory (flash): {est['bulk_bytes']} bytes per image" in out
    eng.write_text(yaml.safe_dump({"tn": 2, "tm": 2, "w_bulk": 1, "bulk_store": "dram"}))
    assert main(["generate", "digits", "--quant", str(q), "--config", str(eng),
                 "--output", str(tmp_path / "h")]) == 1
    err = capsys.readouterr().err
    assert "bulk_store 'dram' is none of ram, flash, sdram" in err and err.count("\n") == 1


def test_weights_beyond_block_ram_go_to_sdram():
    """786K weights: more than the ULX3S's 208 block RAMs hold, so the fit puts them in its
    SDRAM (bulk memory over a 16-bit port) and says so; the board top builds it (the image
    copied from the flash), and a board without SDRAM, or without a flash section to load
    it from, refuses such an engine."""
    from dynfix.boards.board_top import bulk_store_refusal
    model, spec = fc_model(8192, 96)
    ulx3s = get_board("ulx3s")
    c = fit(model, spec, ulx3s).chosen
    assert c.fits and c.config.w_bulk and c.config.bulk_store is BulkStore.SDRAM
    assert c.config.bus_bits == 16 and "sdram_port" in c.estimate.blocks
    assert c.estimate.total.brams <= ulx3s.bram.blocks
    assert bulk_store_refusal(c.config, ulx3s) is None
    assert bulk_store_refusal(c.config, ulx3s, build=True) is None
    no_flash = dataclasses.replace(ulx3s, flash=None)
    assert "no flash section" in bulk_store_refusal(c.config, no_flash, build=True)
    assert "has none" in bulk_store_refusal(c.config, get_board("orangecrab"))
    # The same engine with its weights in block RAM is what ran short.
    from dynfix.boards.fit import board_estimate, check_usage
    from dynfix.hw.compiler import compile_model
    same = EngineConfig(tn=c.config.tn, tm=c.config.tm, im2col=c.config.im2col,
                        multiplier=c.config.multiplier)
    on_chip = board_estimate(compile_model(model, spec, same).config, ulx3s)
    assert "brams" in check_usage(on_chip.total, ulx3s)
