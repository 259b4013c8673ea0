"""The bundled edge-layer example ``digits-edge`` and its trainer (tools/train_digits_edge.py).

The trainer's hand-written backward passes (Add, depthwise conv, Clip, global average pool,
and the whole network's loss gradient) are checked against central finite differences in
float64 on tiny inputs; the depthwise forward against a direct loop written here. The bundled
file is checked for the layer kinds it is meant to show, its float accuracy on the digits
test split (dynfix's float model) and agreement with onnxruntime.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import train_digits_edge as tde  # noqa: E402

import dynfix  # noqa: E402
from dynfix.quant.datasets import load_digits  # noqa: E402
from dynfix.quant.float_model import predict  # noqa: E402
from dynfix.quant.ir import Add, Clip, Conv2d, GlobalAvgPool, Linear  # noqa: E402
from dynfix.quant.load import BUNDLED, bundled_path, load_model  # noqa: E402
from dynfix.quant.lower import lower  # noqa: E402

EPS = 1e-6


def numeric_grad(f, x: np.ndarray) -> np.ndarray:
    """Central differences of the scalar f() with respect to every entry of x (in place)."""
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + EPS
        up = f()
        flat[i] = old - EPS
        down = f()
        flat[i] = old
        gf[i] = (up - down) / (2 * EPS)
    return g


def close(analytic, numeric, tol=1e-6):
    np.testing.assert_allclose(analytic, numeric, rtol=tol, atol=tol)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


# ----------------------------------------------------------------------------- gradients

def test_depthwise_forward_matches_a_direct_loop(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    w = rng.standard_normal((3, 1, 3, 3))
    b = rng.standard_normal(3)
    y, _ = tde.dwconv_fwd(x, w, b)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = np.zeros_like(x)
    for n in range(2):
        for c in range(3):
            for i in range(4):
                for j in range(5):
                    ref[n, c, i, j] = np.sum(xp[n, c, i:i + 3, j:j + 3] * w[c, 0]) + b[c]
    close(y, ref, 1e-12)


def test_depthwise_backward_matches_finite_differences(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    w = rng.standard_normal((3, 1, 3, 3))
    b = rng.standard_normal(3)
    r = rng.standard_normal((2, 3, 4, 5))          # loss = sum(r * y): dL/dy = r

    def loss():
        return float(np.sum(r * tde.dwconv_fwd(x, w, b)[0]))

    _, cols = tde.dwconv_fwd(x, w, b)
    dx, dw, db = tde.dwconv_bwd(r, cols, w, x.shape)
    close(dx, numeric_grad(loss, x))
    close(dw, numeric_grad(loss, w))
    close(db, numeric_grad(loss, b))


def test_add_backward_matches_finite_differences(rng):
    a, b = rng.standard_normal((2, 2, 3, 3)), rng.standard_normal((2, 2, 3, 3))
    r = rng.standard_normal((2, 2, 3, 3))

    def loss():
        return float(np.sum(r * (a + b)))

    da, db = tde.add_bwd(r)
    close(da, numeric_grad(loss, a))
    close(db, numeric_grad(loss, b))


def test_clip_backward_matches_finite_differences(rng):
    z = rng.uniform(-2.0, 8.0, (2, 3, 4, 4))
    for edge in (0.0, 6.0):                        # keep away from the kinks
        near = np.abs(z - edge) < 1e-2
        z[near] += 0.1
    assert (z < 0).any() and (z > 6).any() and ((z > 0) & (z < 6)).any()
    r = rng.standard_normal(z.shape)

    def loss():
        return float(np.sum(r * tde.clip_fwd(z)))

    assert tde.clip_fwd(z).min() == 0.0 and tde.clip_fwd(z).max() == 6.0
    close(tde.clip_bwd(r, z), numeric_grad(loss, z))


def test_global_average_pool_backward_matches_finite_differences(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    r = rng.standard_normal((2, 3))
    close(tde.gap_fwd(x), x.reshape(2, 3, -1).sum(axis=2) / 16, 1e-12)

    def loss():
        return float(np.sum(r * tde.gap_fwd(x)))

    close(tde.gap_bwd(r, x.shape), numeric_grad(loss, x))


def test_network_loss_gradient_matches_finite_differences(rng):
    p = {k: v.astype(np.float64) for k, v in tde.init_params(rng).items()}
    for k in p:                                    # nonzero biases: every path is exercised
        if k.startswith("b"):
            p[k] = rng.standard_normal(p[k].shape) * 0.1
    x, y = rng.random((2, 1, 8, 8)), np.array([3, 8])
    _, g = tde.loss_grad(p, x, y)
    assert set(g) == set(p)
    for k, v in p.items():
        flat = v.reshape(-1)
        idx = rng.choice(flat.size, size=min(6, flat.size), replace=False)
        for i in idx:
            old = flat[i]
            flat[i] = old + EPS
            up = tde.loss_grad(p, x, y)[0]
            flat[i] = old - EPS
            down = tde.loss_grad(p, x, y)[0]
            flat[i] = old
            num = (up - down) / (2 * EPS)
            assert g[k].reshape(-1)[i] == pytest.approx(num, rel=1e-5, abs=1e-7), (k, i)


# ----------------------------------------------------------------------------- bundled file

def test_digits_edge_is_bundled_with_the_edge_layers():
    assert BUNDLED["digits-edge"] == "digits_edge.onnx"
    path = bundled_path("digits-edge")
    assert path == ROOT / "dynfix" / "data" / "digits_edge.onnx"

    proto = onnx.load(path)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 13)]
    ops = [n.op_type for n in proto.graph.node]
    for op in ("Conv", "Add", "Clip", "GlobalAveragePool", "Flatten", "Gemm", "MaxPool"):
        assert op in ops, op
    groups = [a.i for n in proto.graph.node if n.op_type == "Conv"
              for a in n.attribute if a.name == "group"]
    assert 8 in groups

    m = load_model("digits-edge")
    assert tuple(m.input_shape) == (1, 8, 8) and tuple(m.output_shape) == (10,)
    adds = [la for la in m.layers if isinstance(la, Add)]
    assert len(adds) == 1
    dws = [la for la in m.layers if isinstance(la, Conv2d) and la.groups == 8]
    assert len(dws) == 1 and dws[0].weight.shape == (8, 1, 3, 3)
    clips = [la for la in m.layers if isinstance(la, Clip)]
    assert [(c.lo, c.hi) for c in clips] == [(0.0, 6.0)]
    assert any(isinstance(la, GlobalAvgPool) for la in m.layers)
    # ... and the pool folds into the classifier for the engine: 16 x 4 x 4 inputs to the fc.
    low = lower(m)
    assert not any(isinstance(la, GlobalAvgPool) for la in low.layers)
    fc = [la for la in low.layers if isinstance(la, Linear)]
    assert len(fc) == 1 and fc[0].weight.shape == (10, 16 * 4 * 4)


def test_digits_edge_float_accuracy():
    res = dynfix.evaluate("digits-edge")
    _, y = load_digits("test")
    assert res.mode == "float" and res.n == len(y) == 360
    assert res.accuracy >= 0.95


def test_digits_edge_matches_onnxruntime():
    ort = pytest.importorskip("onnxruntime")
    x, _ = load_digits("test")
    x = np.ascontiguousarray(x[:20], np.float32)
    sess = ort.InferenceSession(str(bundled_path("digits-edge")),
                                providers=["CPUExecutionProvider"])
    (ref,) = sess.run(None, {sess.get_inputs()[0].name: x})
    ours = predict(load_model("digits-edge"), x)
    assert ref.shape == ours.shape == (20, 10)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)
