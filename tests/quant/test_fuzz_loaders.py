"""Fuzz the model loaders with truncated and byte-mutated files.

Every case must end in a clean load or a one-line DynfixError: never another exception, a
warning turned error, or a hang. Examples are bounded and derandomized so the test is quick
and repeatable.
"""

import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dynfix.errors import DynfixError
from dynfix.quant.load import bundled_path
from dynfix.quant.onnx import SUPPORTED_OPS, load_onnx
from dynfix.quant.yaml_io import load_yaml, save_yaml
from dynfix.quant.load import load_model

from onnx_graphs import GraphBuilder

FUZZ = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def folding_graph() -> bytes:
    """A small graph that exercises folding, BN/affine folding, pooling and MatMul+Add."""
    g = GraphBuilder((3, 9, 9), opset=13)
    g.op("Sub", g.constant(np.array([0.5, 0.4, 0.3], np.float32).reshape(3, 1, 1)))
    g.conv(4, 3, stride=2, pads=[0, 1, 1, 0]).bn().relu().maxpool(2, 2, ceil_mode=True)
    g.avgpool(2, 1, count_include_pad=True).flatten_torch().dropout().matmul_add(6)
    g.gemm(5, trans_b=False).softmax()
    return g.build().SerializeToString()


BASES = {"digits": bundled_path("digits").read_bytes(), "folding": folding_graph()}


def mutate(data: bytes, cut: float | None, edits: list[tuple[float, int]]) -> bytes:
    b = bytearray(data)
    if cut is not None:
        b = b[:int(cut * len(b))]
    for pos, val in edits:
        if b:
            b[int(pos * (len(b) - 1))] = val
    return bytes(b)


mutations = st.tuples(
    st.one_of(st.none(), st.floats(0, 1)),
    st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), min_size=0, max_size=6))


def must_load_or_fail_cleanly(load, path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            load(path)
        except DynfixError as e:
            assert "\n" not in str(e)


@FUZZ
@given(base=st.sampled_from(sorted(BASES)), m=mutations)
def test_mutated_onnx(base, m):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.onnx"
        path.write_bytes(mutate(BASES[base], *m))
        must_load_or_fail_cleanly(load_onnx, path)


VALUES = [-(2 ** 40), -3, -1, 0, 1, 2, 3, 5, 64, 2 ** 31]
edits = st.lists(st.tuples(st.integers(0, 4), st.floats(0, 1), st.floats(0, 1),
                           st.sampled_from(VALUES)), min_size=1, max_size=3)


def pick(seq, f: float):
    return seq[min(int(f * len(seq)), len(seq) - 1)]


def structured(data: bytes, changes) -> bytes:
    """Parse, then change attributes, inputs, op types or dims: files that parse but lie."""
    m = onnx.ModelProto()
    m.ParseFromString(data)
    g = m.graph
    names = [t for n in g.node for t in n.output] + [t.name for t in g.initializer] + [""]
    for kind, f1, f2, v in changes:
        n = pick(g.node, f1)
        if kind == 0 and n.attribute:
            a = pick(n.attribute, f2)
            if a.ints:
                a.ints[0] = v
            elif a.type == a.INT:
                a.i = v
            elif a.type == a.FLOAT:
                a.f = float(v)
        elif kind == 1 and n.attribute:
            n.attribute.remove(pick(n.attribute, f2))
        elif kind == 2 and n.input:
            n.input[0] = pick(names, f2)
        elif kind == 3:
            n.op_type = pick(sorted(SUPPORTED_OPS), f2)
        elif kind == 4:
            t = pick(g.initializer, f2)
            if t.dims:
                t.dims[0] = abs(v) % 10
    return m.SerializeToString()


@FUZZ
@given(base=st.sampled_from(sorted(BASES)), changes=edits)
def test_structurally_mutated_onnx(base, changes):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.onnx"
        path.write_bytes(structured(BASES[base], changes))
        must_load_or_fail_cleanly(load_onnx, path)


@pytest.fixture(scope="module")
def yaml_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("yaml")
    ypath, npz = save_yaml(load_model("digits"), d / "digits.yaml")
    return ypath.read_bytes(), npz.read_bytes()


@FUZZ
@given(which=st.sampled_from(["yaml", "npz"]), m=mutations)
def test_mutated_yaml_npz(yaml_files, which, m):
    text, npz = yaml_files
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "digits.yaml").write_bytes(mutate(text, *m) if which == "yaml" else text)
        (Path(d) / "digits.npz").write_bytes(mutate(npz, *m) if which == "npz" else npz)
        must_load_or_fail_cleanly(load_yaml, Path(d) / "digits.yaml")


def test_mutations_do_reach_the_checks():
    """Guard against a fuzz test that only ever loads the unchanged file."""
    text = BASES["digits"]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.onnx"
        path.write_bytes(mutate(text, 0.5, []))
        with pytest.raises(DynfixError):
            load_onnx(path)
