"""The layer registry: every registered kind provides every handler, and each one's float
forward, ONNX export and integer forward agree (against onnxruntime and the float model);
every kind says how the engine plans it or why it refuses it."""

from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest

from dynfix.errors import DynfixError
from dynfix.hw.compiler.plan import plan_groups
from dynfix.quant import fixed
from dynfix.quant.float_model import forward
from dynfix.quant.int_model import MapFormat
from dynfix.quant.layers import KINDS, Compute, EngineRole, Layer
from dynfix.quant.layers.base import ONNX_IMPORTS
from dynfix.quant.ir import (Add, Affine, AvgPool2d, Clip, Concat, Conv2d, Flatten,
                             GlobalAvgPool, LeakyReLU, Linear, MaxPool2d, Model, ReLU, Resize,
                             Sigmoid, Softmax)
from dynfix.quant.layers.leaky_relu import leak, slope_fixed
from dynfix.quant.onnx import load_onnx
from dynfix.quant.onnx import to_onnx

RNG = np.random.default_rng(7)


def _w(*shape):
    return RNG.normal(0, 0.5, shape).astype(np.float32)


#: One small model per kind: its input shape and its layers (the kind's layer last).
EXAMPLES = {
    "conv": ((2, 5, 5), [Conv2d("k", ("x",), weight=_w(4, 1, 3, 3), bias=_w(4),
                                stride=(2, 1), pads=(1, 0, 1, 2), groups=2)]),
    "linear": ((6,), [Linear("k", ("x",), weight=_w(3, 6), bias=_w(3))]),
    "relu": ((2, 3, 3), [ReLU("k", ("x",))]),
    "clip": ((2, 3, 3), [Clip("k", ("x",), lo=-0.5, hi=0.75)]),
    "maxpool": ((2, 5, 5), [MaxPool2d("k", ("x",), kernel=(3, 3), stride=(2, 2),
                                      pads=(1, 1, 0, 0), ceil_mode=True)]),
    "avgpool": ((2, 5, 5), [AvgPool2d("k", ("x",), kernel=(3, 2), stride=(2, 2),
                                      pads=(1, 0, 1, 1), count_include_pad=True)]),
    "gap": ((2, 3, 4), [GlobalAvgPool("k", ("x",))]),
    "flatten": ((2, 3, 3), [Flatten("k", ("x",))]),
    "affine": ((3, 2, 2), [Affine("k", ("x",), scale=_w(3), shift=_w(3))]),
    "add": ((2, 3, 3), [ReLU("r", ("x",)), Add("k", ("x", "r"))]),
    "softmax": ((5,), [Softmax("k", ("x",))]),
    "sigmoid": ((5,), [Sigmoid("k", ("x",))]),
    "leaky_relu": ((2, 3, 3), [LeakyReLU("k", ("x",), alpha=0.125)]),
    "concat": ((2, 3, 3), [Concat("k", ("x", "x"))]),
    "resize": ((2, 3, 4), [Resize("k", ("x",))]),
}


def _overrides(cls: type, name: str, base: type) -> bool:
    return getattr(cls, name) is not getattr(base, name)


@pytest.mark.parametrize("op", sorted(KINDS))
def test_every_kind_has_every_handler(op):
    """A kind registers under its op, overrides the handlers every kind must have, and the
    ones its flags promise; this test's EXAMPLES has one for it (so the tests below run
    it)."""
    cls = KINDS[op]
    assert cls.op == op and issubclass(cls, Layer)
    for handler in ("infer", "forward", "onnx_nodes"):
        assert _overrides(cls, handler, Layer), f"{op} has no {handler}"
    if not cls.formatted:
        assert _overrides(cls, "forward_int", Layer), f"{op} has no forward_int"
    assert cls.compute == issubclass(cls, Compute)
    if cls.compute:
        assert cls.formatted
        for handler in ("products", "fan_in"):
            assert _overrides(cls, handler, Compute), f"{op} has no {handler}"
    if cls.dot_product:
        for handler in ("input_rows", "input_columns", "scale_inputs"):
            assert _overrides(cls, handler, Compute), f"{op} has no {handler}"
    assert op in EXAMPLES, f"add an example of {op} to EXAMPLES"


@pytest.mark.parametrize("op", sorted(EXAMPLES))
def test_float_forward_matches_onnxruntime(op):
    """The kind's ONNX export, run by onnxruntime, computes its float forward."""
    shape, layers = EXAMPLES[op]
    model = Model(op, "x", shape, layers)
    x = RNG.normal(0, 1, (3,) + shape).astype(np.float32)
    sess = ort.InferenceSession(to_onnx(model).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": x})[0]
    np.testing.assert_allclose(forward(model, x)["k"], want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", sorted(op for op in EXAMPLES if not KINDS[op].formatted))
def test_integer_forward_follows_the_float_one(op):
    """On a map of 12-bit integers at fl 6, a plain layer's integer forward lands within
    half a step (its rounding) of the float forward of the dequantized map."""
    shape, layers = EXAMPLES[op]
    model = Model(op, "x", shape, layers)
    layer = model.layers[-1]
    fmt = MapFormat(12, 6, 0)
    xq = fixed.quantize(RNG.normal(0, 1, (3,) + shape), fmt.bw, fmt.fl)
    n = len(layer.inputs)                   # a Concat joins the list of its inputs
    got = fixed.dequantize(layer.forward_int(xq if n == 1 else [xq] * n, fmt), fmt.fl, fmt.zp)
    want = layer.forward(*[fixed.dequantize(xq, fmt.fl, fmt.zp).astype(np.float32)] * n)
    if layer.host:          # kept on the host: the integers are its input, unchanged
        want = fixed.dequantize(xq, fmt.fl, fmt.zp)
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= 0.5 * 2.0 ** -fmt.fl + 1e-9


@pytest.mark.parametrize("op", sorted(KINDS))
def test_every_kind_says_how_the_engine_plans_it(op):
    """A kind's engine role is one the compiler plans; a clamp has its range; a refused
    kind says why in a sentence of its own."""
    cls = KINDS[op]
    assert isinstance(cls.engine, EngineRole)
    if cls.engine is EngineRole.CLAMP:
        assert _overrides(cls, "clamp", Layer), f"{op} has no clamp"
    if cls.engine is EngineRole.REFUSED:
        assert cls.refusal.strip(), f"{op} is refused without a sentence"


@pytest.mark.parametrize("op", sorted(op for op in KINDS if KINDS[op].engine
                                      in (EngineRole.REFUSED, EngineRole.HOST)))
def test_the_compiler_refuses_with_the_kinds_sentence(op):
    """After a 1x1 conv and before a ReLU (so it is not last), the kind's own refusal is
    what the compiler says, naming the layer."""
    shape, layers = EXAMPLES[op]
    c = shape[0]
    conv = Conv2d("c", ("x",), weight=_w(c, c, 1, 1)) if len(shape) == 3 else \
        Linear("c", ("x",), weight=_w(c, c))
    kind = replace(layers[-1], inputs=("c",))
    model = Model(op, "x", shape, [conv, kind, ReLU("r", ("k",))])
    with pytest.raises(DynfixError) as e:
        plan_groups(model)
    assert f"k ({type(kind).__name__}): {KINDS[op].refusal}" in str(e.value)


@pytest.mark.parametrize("op", sorted(EXAMPLES))
def test_onnx_export_reads_back_through_the_import_handlers(op, tmp_path):
    """What a kind writes, the registered import handlers read back as the same kind with
    the same float function; every operator a kind writes has a handler."""
    shape, layers = EXAMPLES[op]
    model = Model(op, "x", shape, layers)
    proto = to_onnx(model)
    assert {n.op_type for n in proto.graph.node} <= set(ONNX_IMPORTS)
    path = tmp_path / f"{op}.onnx"
    path.write_bytes(proto.SerializeToString())
    back = load_onnx(path)
    assert [type(layer) for layer in back.layers] == [type(layer) for layer in layers]
    x = RNG.normal(0, 1, (2,) + shape).astype(np.float32)
    np.testing.assert_allclose(forward(back, x)["k"], forward(model, x)["k"], rtol=1e-6,
                               atol=1e-6)


@pytest.mark.parametrize("alpha, a, s", [(0.01, 164, 14), (0.1, 205, 11), (0.2, 205, 10),
                                         (0.5, 128, 8), (0.3, 154, 9), (0.999999, 128, 7)])
def test_leaky_slope_fixed_point(alpha, a, s):
    """Hand-derived: a = round(alpha * 2**s) in [128, 256) (0.01 * 2**14 = 163.84 -> 164;
    0.1 * 2**11 = 204.8; 0.3 * 2**9 = 153.6); 0.999999 * 2**8 rounds to 256, so one bit
    fewer: 128 / 2**7."""
    assert slope_fixed(alpha) == (a, s)


def test_leaky_integer_rounds_half_up():
    """(v * a + 2**(s-1)) >> s at a = 128, s = 8 (slope 1/2): -3 -> -1.5 -> -1, -1 -> -0.5
    -> 0, -4 -> -2; non-negative values pass."""
    v = np.array([-4, -3, -1, 0, 5])
    assert leak(v, 128, 8).tolist() == [-2, -1, 0, 0, 5]
    with pytest.raises(DynfixError, match="alpha must lie in"):
        Model("t", "x", (3,), [LeakyReLU("k", ("x",), alpha=1.5)])


def test_the_compiler_places_a_leaky_relu_as_the_groups_slope():
    """A LeakyReLU joins its conv's group as the requantizer's slope (after the clamps);
    a clamp after it, or a second one, is refused with the reason."""
    conv = Conv2d("c", ("x",), weight=_w(2, 2, 1, 1))
    ok = Model("ok", "x", (2, 4, 4), [conv, ReLU("r", ("c",)),
                                      LeakyReLU("k", ("r",), alpha=0.1),
                                      MaxPool2d("p", ("k",))])
    plans, _ = plan_groups(ok)
    assert len(plans) == 1 and plans[0].slope.name == "k" and plans[0].pool == 2
    assert [a.name for a in plans[0].acts] == ["r"]
    late = Model("late", "x", (2, 4, 4), [conv, LeakyReLU("k", ("c",), alpha=0.1),
                                          Clip("z", ("k",), lo=-1.0, hi=1.0)])
    with pytest.raises(DynfixError, match="z \\(Clip\\): after the LeakyReLU k"):
        plan_groups(late)
    two = Model("two", "x", (2, 4, 4), [conv, LeakyReLU("k", ("c",), alpha=0.1),
                                        LeakyReLU("k2", ("k",), alpha=0.2)])
    with pytest.raises(DynfixError, match="a second LeakyReLU"):
        plan_groups(two)
