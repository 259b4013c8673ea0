"""Half-to-even rounding of the data shift: the requantizer (Amaranth simulator) in both modes
against numpy, the integer arithmetic against ``np.round`` (round half to even), and the
program bit that selects the mode per group."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dynfix.errors import DynfixError
from dynfix.hw.compiler import compile_model
from dynfix.hw.config import EngineConfig
from dynfix.hw.generate import TOP_NAME, write_outputs
from dynfix.hw.lint import lint
from dynfix.hw.requantizer import Requantizer
from dynfix.quant import fixed
from dynfix.quant.layers.kernels import avg_round
from dynfix.quant.onnx.qonnx import import_qonnx
from dynfix.quant.int_model import IntModel
from dynfix.quant.qspec_io import load_qspec, save_qspec

from hw_models import residual_net
from sim_helpers import check, requantize_stream, run_amaranth, simulate

ACC_BITS = 20
OUT_BITS = 8


def reference(acc: np.ndarray, shift: int, even: bool, lo: int, hi: int) -> np.ndarray:
    """``clamp(round(acc / 2**shift), lo, hi)`` computed in float64 (exact here: |acc| <
    2**53): ``np.round`` is half to even, ``floor(v + 1/2)`` half up."""
    v = np.asarray(acc, np.float64) * 2.0 ** -shift
    r = np.round(v) if even else np.floor(v + 0.5)
    return np.clip(r, lo, hi).astype(np.int64)


def cases(rng) -> list[tuple[int, int, int, list[int]]]:
    """(shift, lo, hi, accumulators): for each shift, exact ties of both signs with odd and
    even neighbours, values one off a tie, random values and the accumulator's extremes
    (which saturate); shifts 0 (no rounding), 1, small, large (``ACC_BITS - 1``,
    ``ACC_BITS``) and left."""
    top = (1 << (ACC_BITS - 1)) - 1
    out = []
    for shift in (0, 1, 2, 3, 7, ACC_BITS - 1, ACC_BITS, -2):
        k = np.concatenate([np.arange(-6, 7), rng.integers(-300, 300, 8)])
        r = max(shift, 0)
        ties = (k << r) + ((1 << (r - 1)) if r else 0)
        accs = np.concatenate([ties, ties + 1, ties - 1,
                               rng.integers(-top, top, 8), [top, -top - 1]])
        accs = np.clip(accs, -top - 1, top)
        for lo, hi in ((fixed.qmin(OUT_BITS), fixed.qmax(OUT_BITS)), (0, 6), (-3, -3)):
            out.append((shift, lo, hi, [int(a) for a in accs]))
    return out


def run_requantizer(rounding: bool, mode: list[int], tests) -> list[list[int]]:
    """The requantizer's outputs for each case, with the program bit ``even`` set per case
    from ``mode``; without ``rounding`` it gets ``acc + 2**(s-1)`` (the engine's folded
    constant), one bit wider."""
    dut = Requantizer(ACC_BITS + (not rounding), OUT_BITS, shift_bits=6, rounding=rounding,
                      even=True)
    got = []

    async def tb(ctx):
        for even, (shift, lo, hi, accs) in zip(mode, tests):
            ctx.set(dut.shift, shift)
            ctx.set(dut.lo, lo)
            ctx.set(dut.hi, hi)
            ctx.set(dut.even, even)
            await ctx.tick()            # the shift's decodes are registered
            got.append(await requantize_stream(ctx, dut, accs, shift, rounding))

    run_amaranth(dut, tb)
    return got


@pytest.mark.parametrize("rounding", [True, False], ids=["rounding", "constant-in-acc"])
def test_requantizer_rounds_half_even_or_half_up_per_bit(rounding):
    """The same requantizer rounds half to even where its ``even`` bit is set and half up
    where it is not, equal to numpy's rounding of ``acc / 2**s`` then the clamp: ties of
    both signs, s = 0, s up to the accumulator's width, a left shift, saturation."""
    tests = cases(np.random.default_rng(1))
    mode = [1, 0] * len(tests)
    both = [t for t in tests for _ in (0, 1)]
    got = run_requantizer(rounding, mode, both)
    differ = 0
    for even, (shift, lo, hi, accs), res in zip(mode, both, got):
        want = reference(np.array(accs), shift, bool(even), lo, hi)
        assert res == want.tolist(), (even, shift, lo, hi)
        differ += int(np.any(want != reference(np.array(accs), shift, not even, lo, hi)))
    assert differ > 0                   # the cases hold ties on which the modes differ


def test_requantize_half_even_is_np_round():
    """``fixed.requantize`` with ``half_even`` is ``np.round`` of ``acc / 2**s`` (saturated),
    also with a shift per channel; half up is ``floor(v + 1/2)``."""
    rng = np.random.default_rng(2)
    for shift in (1, 2, 5, 11):
        acc = np.concatenate([(np.arange(-40, 40) << shift) + (1 << (shift - 1)),
                              rng.integers(-1 << 16, 1 << 16, 200)])
        for even in (True, False):
            mode = fixed.HALF_EVEN if even else fixed.HALF_UP
            want = reference(acc, shift, even, -128, 127)
            assert fixed.requantize(acc, shift, 8, rounding=mode).tolist() == want.tolist()
    shifts = np.array([0, 1, 3, 6]).reshape(1, -1)
    acc = (np.arange(-20, 20).reshape(-1, 1) << 6) + (1 << 5) + np.zeros((1, 4), np.int64)
    got = fixed.requantize(acc, shifts, 8, rounding=fixed.HALF_EVEN)
    want = np.stack([reference(acc[:, i], int(s), True, -128, 127)
                     for i, s in enumerate(shifts[0])], axis=1)
    assert got.tolist() == want.tolist()


def test_average_half_even_is_np_round():
    """The integer average pool's mean rounded half to even is ``np.round(sum / n)`` for
    any ``n`` (ties only where ``n`` is even)."""
    s = np.arange(-40, 41)
    for n in (2, 3, 4, 6, 9, 16):
        assert avg_round(s, n, fixed.HALF_EVEN).tolist() == np.round(s / n).astype(int).tolist()
        assert avg_round(s, n).tolist() == np.floor(s / n + 0.5).astype(int).tolist()


FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "qonnx"


def _residual():
    """The Brevitas residual fixture imported: a conv and an Add rounding half to even."""
    imp = import_qonnx(FIXTURES / "brevitas_residual.onnx")
    modes = [f.rounding for f in imp.spec.layers.values()]
    assert modes == ["half_even", "half_up", "half_even", "half_up"]
    return imp.model, imp.spec


def test_qyaml_keeps_the_rounding_and_old_files_load_half_up(tmp_path):
    """``rounding: half_even`` is written for the layers that round so (only them) and read
    back; a file without the key (written before rounding modes) loads half up; an unknown
    mode is one error line naming the layer."""
    model, spec = _residual()
    path = tmp_path / "Q.yaml"
    save_qspec(spec, path)
    text = path.read_text()
    assert text.count("rounding: half_even") == 2 and "half_up" not in text
    back = load_qspec(path, model)
    assert [f.rounding for f in back.layers.values()] == [f.rounding
                                                         for f in spec.layers.values()]
    path.write_text(text.replace(", rounding: half_even", ""))
    assert {f.rounding for f in load_qspec(path, model).layers.values()} == {"half_up"}
    path.write_text(text.replace("rounding: half_even", "rounding: floor", 1))
    with pytest.raises(DynfixError, match=r"layer 'node_conv2d': rounding 'floor' is none "
                                          r"of half_up, half_even$"):
        load_qspec(path, model)


@pytest.mark.usefixtures("verilator")
def test_half_even_engine_lints_clean_and_half_up_has_no_bit(tmp_path):
    """An engine with half-to-even requantizers (the group's and the residual Add's) lints
    clean with only the waived classes; the same spec rounding half up everywhere compiles
    to an engine without them (no ``even`` program bits)."""
    model, spec = _residual()
    cm = compile_model(model, spec, EngineConfig(tn=2, tm=2))
    assert cm.config.round_even == 1 and cm.config.residual == 1
    assert [(p.entry["even"], p.entry["add_even"]) for p in cm.plans] == [(1, 0), (0, 1),
                                                                          (0, 0)]
    write_outputs(cm, "residual", tmp_path / "e")
    rc, out = lint(tmp_path / "e" / f"{TOP_NAME}.v")
    assert rc == 0, out
    up = replace(spec, layers={k: replace(f, rounding=fixed.HALF_UP)
                               for k, f in spec.layers.items()})
    cm = compile_model(model, up, EngineConfig(tn=2, tm=2))
    assert cm.config.round_even == 0 and "even" not in cm.plans[0].entry


@pytest.mark.slow
@pytest.mark.usefixtures("icarus")
def test_residual_net_mixed_modes_on_the_engine(tmp_path):
    """Layers rounding half to even and half up in turn (the residual Adds among them) on
    the engine under Icarus: bit-exact with the integer model, the cycle model exact, and
    the outputs not those of every layer rounding half up."""
    model, spec, calib = residual_net()
    mixed = replace(spec, layers={k: replace(f, rounding=fixed.HALF_EVEN if i % 2 else
                                             fixed.HALF_UP)
                                  for i, (k, f) in enumerate(spec.layers.items())})
    x = calib[:3]
    cm, ref, res = simulate(model, mixed, EngineConfig(tn=4, tm=2), x, tmp_path)
    check(cm, ref, res)
    assert any(p.entry["add_even"] for p in cm.plans)
    im = IntModel(model, spec)
    assert np.any(im.forward(im.quantize_input(x))[cm.output_name].reshape(ref.shape) != ref)
