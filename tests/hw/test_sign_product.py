"""Products without multipliers at weights of at most 2 bits (``hw/sign_product.py``), the
adder tree's carry-ins that complete them, and the MAC array and config of the ``sign``
multiplier: exact against numpy for every weight value and the extreme map values, the
MAC array's latency, no multiplier and no adder per product in the netlist."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from dynfix.errors import DynfixError
from dynfix.hw.adder_tree import AdderTree
from dynfix.hw.config import EngineConfig, Multiplier
from dynfix.hw.generate import ensure_yosys
from dynfix.hw.lut_mul import LATENCY as LUT_LATENCY
from dynfix.hw.sign_product import LATENCY, SignProduct, structure
from dynfix.hw.timing import MULTIPLIER

from dual_mac_vectors import pack, unpack
from mul_helpers import check_same_sums_as_single, mac_array_run
from sim_helpers import run_amaranth


class SignBank(wiring.Component):
    """``cells`` :class:`SignProduct` side by side (``neg`` only without ``exact``)."""

    def __init__(self, a_bits: int, b_bits: int, cells: int, exact: bool):
        self._args = (a_bits, b_bits, cells, exact)
        super().__init__({
            "a": In(data.ArrayLayout(a_bits, cells)),
            "b": In(data.ArrayLayout(b_bits, cells)),
            "p": Out(data.ArrayLayout(a_bits + b_bits, cells)),
            "neg": Out(cells),
        })

    def elaborate(self, platform):
        m = Module()
        a_bits, b_bits, cells, exact = self._args
        for c in range(cells):
            m.submodules[f"p{c}"] = mul = SignProduct(a_bits, b_bits, exact=exact)
            m.d.comb += [mul.a.eq(self.a[c]), mul.b.eq(self.b[c]), self.p[c].eq(mul.p)]
            if not exact:
                m.d.comb += self.neg[c].eq(mul.neg)
        return m


def _operands(a_bits: int, b_bits: int, cells: int) -> tuple[np.ndarray, np.ndarray]:
    """Every weight value against every map value (up to 8 bits), or against the extremes,
    their neighbours and a random spread (wider), in rows of ``cells``."""
    lo, hi = -(1 << (a_bits - 1)), (1 << (a_bits - 1)) - 1
    if a_bits <= 8:
        xs = np.arange(lo, hi + 1)
    else:
        rng = np.random.default_rng(a_bits)
        xs = np.unique(np.concatenate([[lo, lo + 1, -2, -1, 0, 1, 2, hi - 1, hi],
                                       rng.integers(lo, hi + 1, 120)]))
    ws = np.arange(-(1 << (b_bits - 1)), 1 << (b_bits - 1))
    x, w = (v.ravel() for v in np.meshgrid(xs, ws))
    pad = -len(x) % cells
    return (np.concatenate([x, x[:pad]]).reshape(-1, cells),
            np.concatenate([w, w[:pad]]).reshape(-1, cells))


def _simulate(a_bits: int, b_bits: int, exact: bool, x: np.ndarray, w: np.ndarray):
    """The bank fed a row of ``x``, ``w`` per cycle (then zeros): ``p`` and ``neg`` of every
    cycle, ``LATENCY + 2`` past the last row."""
    cells = x.shape[1]
    dut = SignBank(a_bits, b_bits, cells, exact)
    p, neg = [], []

    async def tb(ctx):
        for t in range(len(x) + LATENCY + 2):
            p.append(unpack(ctx.get(dut.p.as_value()), a_bits + b_bits, cells))
            neg.append([(ctx.get(dut.neg) >> c) & 1 for c in range(cells)])
            fed = t < len(x)
            ctx.set(dut.a.as_value(), pack(x[t].tolist(), a_bits) if fed else 0)
            ctx.set(dut.b.as_value(), pack(w[t].tolist(), b_bits) if fed else 0)
            await ctx.tick()

    run_amaranth(dut, tb)
    return np.array(p), np.array(neg)


@pytest.mark.filterwarnings("ignore:.*created but never used")   # never elaborated here
def test_latency_is_every_product_paths():
    """A sign product stands in for any other product: the MAC array's latency."""
    assert LATENCY == SignProduct(8, 2).latency == LUT_LATENCY == MULTIPLIER == 4
    assert "neg" in SignProduct(8, 2).signature.members
    assert "neg" not in SignProduct(8, 2, exact=True).signature.members
    for a_bits, b_bits in ((8, 3), (0, 2), (8, 0)):
        with pytest.raises(DynfixError, match=f"not {a_bits} x {b_bits}"):
            SignProduct(a_bits, b_bits)


@pytest.mark.parametrize("a_bits,b_bits", [(8, 2), (17, 2), (1, 2), (3, 1), (8, 1)])
@pytest.mark.parametrize("exact", [False, True])
def test_products_exact_with_exact_latency(a_bits, b_bits, exact):
    """Every weight value times every 8-bit map value (the most negative one included) or
    a spread of wider ones, against numpy: ``p + neg`` (``p`` with ``exact``) after exactly
    LATENCY cycles, and not a cycle earlier or later."""
    x, w = _operands(a_bits, b_bits, cells=8)
    p, neg = _simulate(a_bits, b_bits, exact, x, w)
    want = x.astype(np.int64) * w
    n = len(x)
    got = p + (0 if exact else neg)
    np.testing.assert_array_equal(got[LATENCY:LATENCY + n], want)
    if not exact:
        np.testing.assert_array_equal(neg[LATENCY:LATENCY + n], (w < 0).astype(int))
    for off in (LATENCY - 1, LATENCY + 1):
        assert not np.array_equal(got[off:off + n], want)


def test_ones_complement_by_hand():
    """Hand-computed ``p`` of 8-bit map values: the one's complement of the product for a
    negative weight (``-x - 1``, ``-2x - 1``), the product itself otherwise."""
    cases = [(-128, -2, 255), (-128, -1, 127), (127, -2, -255), (5, -1, -6), (-1, -2, 1),
             (0, -1, -1), (0, -2, -1), (-128, 1, -128), (127, 1, 127), (77, 0, 0)]
    x = np.array([[c[0] for c in cases]])
    w = np.array([[c[1] for c in cases]])
    p, neg = _simulate(8, 2, False, x, w)
    assert p[LATENCY].tolist() == [c[2] for c in cases]
    assert neg[LATENCY].tolist() == [int(c[1] < 0) for c in cases]


def test_no_multiplier_and_no_adder():
    """The product is a select and an XOR per bit: no ``$mul`` for yosys to put on a DSP
    block, and (without ``exact``) no adder either."""
    from amaranth.back import rtlil
    ensure_yosys()
    text = rtlil.convert(SignProduct(8, 2), name="m")
    assert "$mul" not in text and "$add" not in text and "$sub" not in text
    assert "$add" in rtlil.convert(SignProduct(8, 2, exact=True), name="m")


def test_structure_counts():
    """(LUT4s, carry bits, own FFs, shared FFs) of an 8-bit map value and a 2-bit weight:
    9 bits of q, three weight registers of 2 bits, q's 9 bits and ``neg``, three 8-bit map
    value registers."""
    assert structure(8, 2) == (9, 0, 6 + 9 + 1, 24)
    assert structure(8, 2, exact=True) == (9, 10, 6 + 10, 24)
    assert structure(8, 1) == (8, 0, 3 + 8 + 1, 24)


def test_structure_against_yosys(tmp_path):
    """yosys's count of one 8 x 2 sign product (``synth_ice40 -noabc``, ``stat``) is what
    ``structure`` says: 9 LUT4s, no carry cell, 16 FFs of its own and the map value's 24."""
    import json
    import os
    import shutil
    import subprocess
    from amaranth.back import verilog
    ensure_yosys()
    yosys = shutil.which("yosys") or os.environ["YOSYS"]
    (tmp_path / "p.v").write_text(verilog.convert(SignProduct(8, 2), name="top",
                                                  emit_src=False, strip_internal_attrs=True))
    subprocess.run([yosys, "-q", "-p", "read_verilog -sv p.v; synth_ice40 -noabc -top top; "
                    "tee -q -o stat.json stat -json"], cwd=tmp_path, check=True)
    cells = json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]
    luts, adders, own, shared = structure(8, 2)
    assert (cells.get("SB_LUT4"), cells.get("SB_CARRY", 0), adders) == (luts, 0, 0)
    assert sum(n for c, n in cells.items() if c.startswith("SB_DFF")) == own + shared


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_adder_tree_carries(n):
    """An adder tree with carry-ins: ``o + co`` is the sum of the inputs and the carries,
    exact at the inputs' extremes, after the tree's latency."""
    width = 6
    dut = AdderTree(width, n, carries=True)
    rng = np.random.default_rng(n)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    i = np.concatenate([np.full((1, n), lo), np.full((1, n), hi),
                        rng.integers(lo, hi + 1, (20, n))])
    c = np.concatenate([np.zeros((1, n), int), np.ones((1, n), int),
                        rng.integers(0, 2, (20, n))])
    out = []

    async def tb(ctx):
        for t in range(len(i) + dut.latency):
            if t < len(i):
                ctx.set(dut.i.as_value(), pack(i[t].tolist(), width))
                ctx.set(dut.c, pack(c[t].tolist(), 1))
            await ctx.delay(1e-9)   # the settled comb outputs of a tree without levels
            out.append(ctx.get(dut.o) + ctx.get(dut.co))
            await ctx.tick()

    top = Module()                  # with a clock domain for the tree without levels
    top.submodules.tree = dut
    tick = Signal()
    top.d.sync += tick.eq(~tick)
    run_amaranth(top, tb)
    lat = dut.latency
    assert out[lat:lat + len(i)] == (i.sum(axis=1) + c.sum(axis=1)).tolist()


def _sign_config(lanes: int, tm: int, **more) -> EngineConfig:
    return EngineConfig(tn=lanes, tm=tm, multiplier=Multiplier.SIGN, data_bits=8,
                        weight_bits=2, bias_bits=10, acc_bits=22, fmap_depth=16,
                        weight_depth=16, bias_depth=4, prog_depth=2, dim_bits=5, **more)


@pytest.mark.parametrize("lanes,tm,dw", [(4, 3, 0), (5, 2, 0), (1, 2, 0), (8, 1, 0),
                                         (4, 2, 2)])
def test_mac_array_sums_against_numpy(lanes, tm, dw):
    """A MAC array of sign products: every output pixel's sum is the bias shifted plus the
    dot products numpy computes, with all weights -2 or -1 (every carry used) and the most
    negative map value among the items; with the depthwise window (``dw``) every row
    multiplies its own map values."""
    cfg = _sign_config(lanes, tm, dw_window=dw)
    rows = tm if dw else 1
    rng = np.random.default_rng(lanes * 7 + tm)
    items = []
    for t in range(30):
        x = rng.integers(-128, 128, rows * lanes)
        w = rng.integers(-2, 2, lanes * tm)
        if t < 5:
            x, w = np.full(rows * lanes, -128), np.full(lanes * tm, -2 + t % 2)
        items.append({"x": x.tolist(), "w": w.tolist(),
                      "bias": rng.integers(-512, 512, tm).tolist(),
                      "first": int(t % 5 == 0), "last": int(t % 5 == 4)})
    out = mac_array_run(cfg, items)
    want = []
    for k in range(0, len(items), 5):
        pixel = items[k:k + 5]
        dots = sum((np.array(it["w"]).reshape(tm, lanes)
                    * np.array(it["x"]).reshape(rows, lanes)).sum(axis=1) for it in pixel)
        want.append((np.array(pixel[0]["bias"]) * 8 + dots).tolist())   # bias_shift 3
    assert [o for _, o in out] == want
    # On the cycles of an array of multipliers (the same latency).
    fabric = mac_array_run(replace(cfg, multiplier=Multiplier.FABRIC), items)
    assert [t for t, _ in out] == [t for t, _ in fabric]


def test_mac_array_same_sums_as_multipliers():
    """The same sums on the same cycles as one inferred multiplier per product, the
    largest products (-128 x -2) included."""
    check_same_sums_as_single(3, 3, weight_bits=2, multiplier=Multiplier.SIGN)


def test_mac_array_has_no_multiplier():
    from amaranth.back import rtlil
    from dynfix.hw.mac_array import MacArray
    ensure_yosys()
    cfg = _sign_config(4, 2)
    assert "$mul" not in rtlil.convert(MacArray(cfg), name="mac")
    assert "$mul" in rtlil.convert(MacArray(replace(cfg, multiplier=Multiplier.FABRIC)),
                                   name="mac")


def test_config():
    cfg = _sign_config(4, 3)
    assert (cfg.multipliers, cfg.dsp_blocks, cfg.logic_products) == (12, 0, 12)
    assert cfg.summary() == "tn=4 tm=3 sign" and cfg.choice()["multiplier"] == "sign"
    assert cfg.multipliers_text() == "12 multipliers in LUTs (sign products)"
    assert EngineConfig.from_dict({"tn": 2, "multiplier": "sign"}).sign_products == 1
    with pytest.raises(DynfixError, match="lut_products .* sign multiplier .* exclude"):
        EngineConfig.from_dict({"tn": 4, "tm": 3, "multiplier": "sign", "lut_products": 2})
    with pytest.raises(DynfixError, match="at most 2 bits .* 4-bit weights"):
        replace(cfg, weight_bits=4).check_fitted()
    cfg.check_fitted()
    replace(cfg, weight_bits=1).check_fitted()
