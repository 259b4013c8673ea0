"""ONNX conformance: onnx's own operator test cases and PyTorch-converted models.

The onnx package ships a test case per operator behaviour (``collect_testcases``: a one-node
model, inputs, and outputs from onnx's numpy reference) and old PyTorch exports with stored
inputs and outputs (``backend/test/data/pytorch-converted``, opset 6 and older, which the
loader upgrades with onnx's version converter). Every case of an operator dynfix imports
must either match the expected output through ``load_onnx`` + the float model, or be refused
with a one-line DynfixError: never a wrong answer, never another exception.

Node test cases feed weights as graph inputs; dynfix wants one data input and constant
weights, so every graph input after the first is frozen into an initializer with the case's
value (the case's own numbers). Add/Sum of two inputs of one shape, which one input cannot
express, also runs as ``op(x, x)`` against onnx's reference evaluator. The counts per
operator are printed (``pytest -s``).
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from dynfix.errors import DynfixError
from dynfix.quant.float_model import predict
from dynfix.quant.onnx import load_onnx

#: Operators dynfix imports on the data path (ops it only folds are not listed).
OPS = ("Conv", "Gemm", "MatMul", "Relu", "Clip", "MaxPool", "AveragePool",
       "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape", "Squeeze",
       "BatchNormalization", "Add", "Sum", "Sub", "Mul", "Div", "ReduceMean", "Pad",
       "Transpose", "Softmax", "Identity", "Dropout", "Cast", "Resize", "Upsample")
#: Node cases that must match (the plain forms the IR models).
MUST_MATCH = {
    "Conv": ["test_basic_conv_with_padding", "test_basic_conv_without_padding",
             "test_conv_with_strides_padding", "test_conv_with_strides_no_padding",
             "test_conv_with_strides_and_asymmetric_padding", "test_conv_with_autopad_same"],
    "Relu": ["test_relu"],
    "MaxPool": ["test_maxpool_2d_default", "test_maxpool_2d_pads", "test_maxpool_2d_strides",
                "test_maxpool_2d_same_upper", "test_maxpool_2d_ceil"],
    "AveragePool": ["test_averagepool_2d_default", "test_averagepool_2d_pads",
                    "test_averagepool_2d_strides", "test_averagepool_2d_same_upper",
                    "test_averagepool_2d_pads_count_include_pad", "test_averagepool_2d_ceil"],
    "GlobalAveragePool": ["test_globalaveragepool", "test_globalaveragepool_precomputed"],
    "Gemm": ["test_gemm_default_vector_bias", "test_gemm_default_no_bias",
             "test_gemm_transposeB", "test_gemm_alpha", "test_gemm_beta"],
    "MatMul": ["test_matmul_2d"],
    "BatchNormalization": ["test_batchnorm_example", "test_batchnorm_epsilon"],
    "Clip": ["test_clip", "test_clip_default_min", "test_clip_default_max"],
    "Flatten": ["test_flatten_axis1"],
    "Softmax": ["test_softmax_example"],
    "Add (x, x)": ["test_add"],
}
PYTORCH_MUST_MATCH = ["test_Conv2d", "test_Conv2d_depthwise", "test_Conv2d_groups",
                      "test_Conv2d_depthwise_padded", "test_Conv2d_depthwise_with_multiplier",
                      "test_AvgPool2d", "test_MaxPool2d", "test_ReLU", "test_Linear",
                      "test_BatchNorm2d_eval", "test_Softmax"]
PYTORCH_DIR = Path(onnx.__file__).parent / "backend/test/data/pytorch-converted"


def close(y: np.ndarray, ref: np.ndarray, rtol: float = 0.0, atol: float = 0.0) -> bool:
    """Equal shapes, and values within float32 tolerance relative to the output's scale
    (or within the case's own tolerance: some expected outputs are rounded)."""
    if y.shape != ref.shape:
        return False
    err = np.max(np.abs(y.astype(np.float64) - ref), initial=0.0)
    return bool(err <= 1e-4 * max(float(np.max(np.abs(ref), initial=0.0)), 1e-3)) \
        or bool(np.allclose(y, ref, rtol=rtol, atol=atol))


def outcome(proto: onnx.ModelProto, x, ref, path: Path, tol=(0.0, 0.0)) -> str:
    """'match', 'refused' or 'WRONG: ...' for one model and one input/output pair."""
    onnx.save(proto, str(path))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            y = predict(load_onnx(path), x)
    except DynfixError as e:
        assert "\n" not in str(e), str(e)
        return "refused"
    if close(y, np.asarray(ref), *tol):
        return "match"
    return f"WRONG: got {y.shape} {y.ravel()[:4]}, expected {np.shape(ref)}"


def freeze_weights(model: onnx.ModelProto, inputs: list) -> onnx.ModelProto | None:
    """The case's model with every graph input but the first as an initializer."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    graph = m.graph
    for vi, value in zip(list(graph.input[1:]), inputs[1:]):
        if not isinstance(value, (np.ndarray, np.generic)):
            return None  # a sequence or optional input: not a tensor
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), vi.name))
    return m


def shared_input(model: onnx.ModelProto, inputs: list):
    """op(x, x) for a two-input case of equal float32 shapes, and onnx's reference output."""
    if len(inputs) != 2 or not all(isinstance(v, np.ndarray) for v in inputs) \
            or inputs[0].shape != inputs[1].shape or inputs[0].dtype != np.float32:
        return None
    m = onnx.ModelProto()
    m.CopyFrom(model)
    a, b = m.graph.input[0].name, m.graph.input[1].name
    for node in m.graph.node:
        node.input[:] = [a if t == b else t for t in node.input]
    del m.graph.input[1]
    return m, ReferenceEvaluator(m).run(None, {a: inputs[0]})[0]


def case_op(case, ops_by_name: dict[str, str]) -> str | None:
    """The operator a node case tests (an expanded function body counts for its op)."""
    nodes = case.model.graph.node
    if len(nodes) == 1:
        return nodes[0].op_type
    base = case.name.split("_expanded")[0]
    return ops_by_name.get(base)


@pytest.fixture(scope="module")
def node_cases():
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # the reference implementations overflow on purpose
        cases = [c for c in collect_testcases() if c.model is not None and c.data_sets]
    ops_by_name = {c.name: c.model.graph.node[0].op_type for c in cases
                   if len(c.model.graph.node) == 1}
    return [(case_op(c, ops_by_name), c) for c in cases]


def table(results: dict[str, Counter]) -> str:
    rows = [f"{'operator':<20} {'match':>6} {'refused':>8} {'wrong':>6}"]
    for op, n in sorted(results.items()):
        wrong = sum(v for k, v in n.items() if k.startswith("WRONG"))
        rows.append(f"{op:<20} {n['match']:>6} {n['refused']:>8} {wrong:>6}")
    return "\n".join(rows)


def test_onnx_node_cases(node_cases, tmp_path):
    results: dict[str, Counter] = defaultdict(Counter)
    by_case: dict[tuple[str, str], str] = {}
    wrong = []
    for op, case in node_cases:
        if op not in OPS:
            continue
        for k, (inputs, outputs) in enumerate(case.data_sets):
            runs = []
            frozen = freeze_weights(case.model, list(inputs))
            runs.append((op, frozen, outputs[0], (case.rtol, case.atol))
                        if frozen is not None and len(outputs) == 1 else (op, None, None, None))
            if op in ("Add", "Sum") and len(case.model.graph.node) == 1:
                shared = shared_input(case.model, list(inputs))
                if shared is not None:
                    runs.append((f"{op} (x, x)", *shared, (0.0, 0.0)))
            for label, proto, ref, tol in runs:
                result = "refused" if proto is None else \
                    outcome(proto, inputs[0], ref, tmp_path / "m.onnx", tol)
                results[label][result] += 1
                by_case[(label, case.name)] = result
                if result.startswith("WRONG"):
                    wrong.append(f"{case.name} [{label}, data set {k}]: {result}")
    print("\nonnx node test cases through load_onnx + float model:\n" + table(results))
    assert not wrong, wrong
    missing = [(op, name, by_case.get((op, name))) for op, names in MUST_MATCH.items()
               for name in names if by_case.get((op, name)) != "match"]
    assert not missing, missing


def test_pytorch_converted_models(tmp_path):
    """Old (opset <= 9) PyTorch exports shipped with onnx, upgraded and imported."""
    dirs = sorted(p for p in PYTORCH_DIR.iterdir() if (p / "model.onnx").is_file())
    assert len(dirs) > 50
    results, wrong, matched = Counter(), [], set()
    for d in dirs:
        try:
            model = load_onnx(d / "model.onnx")
        except DynfixError as e:
            assert "\n" not in str(e), str(e)
            results["refused"] += 1
            continue
        ok = True
        for data in sorted(d.glob("test_data_set_*")):
            x, ref = (numpy_helper.to_array(onnx.load_tensor(str(data / f)))
                      for f in ("input_0.pb", "output_0.pb"))
            y = predict(model, x)
            if not close(y, ref):
                ok = False
                wrong.append(f"{d.name}/{data.name}: max error "
                             f"{np.max(np.abs(y - ref)) if y.shape == ref.shape else y.shape}")
        results["match" if ok else "wrong"] += 1
        if ok:
            matched.add(d.name)
    print(f"\npytorch-converted models: {results['match']} match, {results['refused']} "
          f"refused, {results['wrong']} wrong of {len(dirs)}; matched: {sorted(matched)}")
    assert not wrong, wrong
    assert set(PYTORCH_MUST_MATCH) <= matched, sorted(set(PYTORCH_MUST_MATCH) - matched)
