#!/usr/bin/env python3
"""Convert the trained MLPerf Tiny reference models (float .tflite) to NCHW ONNX (dev fixture).

Why: the bench and the quantizer need the four MLPerf Tiny reference networks with their
trained weights (``bench/mlperf_tiny.py`` has random ones) plus the official int8 TFLite
models as a baseline; both exist only as .tflite files in mlcommons/tiny (Apache-2.0), under
``benchmark/training/`` (:data:`MODELS`).

How: LiteRT (``ai-edge-litert``) gives the tensors, its flatbuffer schema the op options.
Ops become opset-13 NCHW ONNX (input ``input``: N x C x H x W or N x 640, output ``output``):
CONV_2D/DEPTHWISE_CONV_2D -> Conv (group = C), FULLY_CONNECTED -> Gemm, ADD, AVERAGE_POOL_2D,
RESHAPE (a flatten) -> Flatten, SOFTMAX, fused RELU/RELU6 -> Relu/Clip(0, 6); nothing else
occurs in the four models, so anything else is refused. TF 'same' padding becomes explicit
pads (the odd row/column at the bottom/right); after a flatten of an H*W > 1 map the Gemm's
columns are reordered NHWC -> NCHW. The KWS "float32" file is dynamic-range quantized (int8
conv weights; LiteRT's hybrid kernels then quantize activations too): :func:`float_tflite`
stores such weights as float32, for conversion and as the float reference of ``--check``.
:func:`tflite_outputs` runs any .tflite (float or int8) on an NCHW batch.

Usage: ``python tools/mlperf_trained.py TFLITE_DIR [--out models/mlperf_tiny] [--check]``
(``--check``: onnxruntime and dynfix's float model vs LiteRT on 8 random inputs). Output
bytes are deterministic (each model is converted twice and compared).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import flatbuffers
import numpy as np
import onnx
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
SRC = "benchmark/training/"
#: name -> (float .tflite, int8 .tflite, folder under SRC)
MODELS = {
    "vww": ("vww_96_float.tflite", "vww_96_int8.tflite", "visual_wake_words/trained_models"),
    "resnet8": ("pretrainedResnet.tflite", "pretrainedResnet_quant.tflite",
                "image_classification/trained_models"),
    "dscnn": ("kws_ref_model_float32.tflite", "kws_ref_model.tflite",
              "keyword_spotting/trained_models"),
    "ad": ("ad01_fp32.tflite", "ad01_int8.tflite", "anomaly_detection/trained_models"),
}
#: Last path part of a TFLite tensor name segment that names the Keras layer before it.
_LAYER_OPS = ("Conv2D", "depthwise", "MatMul", "add", "AvgPool", "Reshape")


def interpreter(model: str | Path | bytes) -> Interpreter:
    """A LiteRT interpreter (a path or the file's bytes), built-in kernels only (no XNNPACK)."""
    src = dict(model_content=model) if isinstance(model, bytes) else dict(model_path=str(model))
    it = Interpreter(**src, experimental_op_resolver_type=OpResolverType
                     .BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def float_tflite(path: str | Path) -> bytes:
    """The .tflite with its int8 constant tensors (dynamic-range weights) dequantized to
    float32, so LiteRT runs float kernels; a pure float model comes back re-packed as is."""
    m = schema.ModelT.InitFromPackedBuf(Path(path).read_bytes(), 0)
    sub = m.subgraphs[0]
    if sub.tensors[sub.inputs[0]].type != schema.TensorType.FLOAT32:
        raise ValueError(f"{path}: not a float (or dynamic-range) model")
    for t in sub.tensors:
        buf, q = m.buffers[t.buffer], t.quantization
        if t.type != schema.TensorType.INT8 or buf.data is None or not len(buf.data):
            continue
        shape = [1] * len(t.shape)
        shape[q.quantizedDimension if len(q.scale) > 1 else 0] = -1
        w = np.frombuffer(bytes(buf.data), np.int8).reshape(t.shape).astype(np.float64)
        w = (w - np.reshape(q.zeroPoint, shape)) * np.reshape(q.scale, shape)
        buf.data = np.frombuffer(w.astype(np.float32).tobytes(), np.uint8)
        t.type, t.quantization = schema.TensorType.FLOAT32, None
    b = flatbuffers.Builder(0)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def tflite_outputs(tflite_path: str | Path | bytes, x_nchw: np.ndarray) -> np.ndarray:
    """Run a .tflite model (float or int8; a path or its bytes) on an NCHW (or N x F) batch.

    Int8 inputs are quantized with the input tensor's scale/zero point (round half away from
    zero, saturating), int8 outputs dequantized; images are fed one at a time (batch 1).
    """
    it = interpreter(tflite_path)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    x = np.asarray(x_nchw, np.float32)
    x = x.transpose(0, 2, 3, 1) if x.ndim == 4 else x
    if inp["dtype"] != np.float32:
        s, z = inp["quantization"]
        v = x / np.float32(s)
        q = np.sign(v) * np.floor(np.abs(v) + 0.5) + z
        info = np.iinfo(inp["dtype"])
        x = np.clip(q, info.min, info.max).astype(inp["dtype"])
    ys = []
    for row in x:
        it.set_tensor(inp["index"], row[None])
        it.invoke()
        ys.append(it.get_tensor(out["index"])[0])
    y = np.stack(ys)
    if out["dtype"] != np.float32:
        s, z = out["quantization"]
        y = (y.astype(np.float32) - z) * np.float32(s)
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


def input_range(int8_path: str | Path) -> tuple[float, float, float, int]:
    """(low, high, scale, zero point): the float range the int8 model's input covers."""
    d = interpreter(int8_path).get_input_details()[0]
    s, z = d["quantization"]
    info = np.iinfo(d["dtype"])
    return (info.min - z) * s, (info.max - z) * s, s, z


def same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow 'same' padding of one axis: (before, after), the extra one after."""
    total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def onnx_pads(padding: int, hw: list[int], k: list[int], st: list[int],
              dil: list[int]) -> list[int]:
    """ONNX pads [top, left, bottom, right] for a TFLite SAME or VALID window op."""
    if padding != schema.Padding.SAME:
        return [0, 0, 0, 0]
    (t, b), (l, r) = (same_pads(*a) for a in zip(hw, k, st, dil))
    return [t, l, b, r]


def nchw_dims(shape: list[int]) -> list[int | str]:
    """A TFLite NHWC (or N x F) shape as ONNX dims with a symbolic batch."""
    return ["N"] + ([shape[3], shape[1], shape[2]] if len(shape) == 4 else shape[1:])


class Converter:
    """One float .tflite (subgraph 0) -> an NCHW ONNX ModelProto."""

    def __init__(self, path: Path):
        data = float_tflite(path)
        self.path, self.it = path, interpreter(data)
        self.td = {t["index"]: t for t in self.it.get_tensor_details()}
        fb = schema.ModelT.InitFromPackedBuf(data, 0)
        self.sub, self.codes = fb.subgraphs[0], fb.operatorCodes
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.names: dict[int, str] = {}           # TFLite tensor index -> ONNX tensor name
        self.flat_chw: dict[str, tuple[int, int, int]] = {}  # flattened NHWC maps
        self.used: set[str] = set()

    def shape(self, i: int) -> list[int]:
        return [int(v) for v in self.td[i]["shape"]]

    def const(self, i: int) -> np.ndarray:
        arr = self.it.get_tensor(i)
        if arr.dtype != np.float32:
            raise NotImplementedError(f"{self.path.name}: {arr.dtype} weights")
        return np.ascontiguousarray(arr)

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def weights(self, o, name: str, wt: np.ndarray) -> list[str]:
        """Initializers of a Conv/Gemm: its weight and bias (zeros when the op has none)."""
        bias = self.const(o.inputs[2]) if len(o.inputs) > 2 and o.inputs[2] >= 0 \
            else np.zeros(wt.shape[0], np.float32)
        return [self.init(f"{name}.weight", wt), self.init(f"{name}.bias", bias)]

    def layer_name(self, op_name: str, tensor: int) -> str:
        """Readable, unique name: the Keras layer a TFLite tensor name points at."""
        base = op_name.lower()
        for seg in self.td[tensor]["name"].split(";"):
            parts = seg.split("/")
            if len(parts) >= 2 and parts[-1] in _LAYER_OPS:
                base = parts[-2]
                break
        base = re.sub(r"[^A-Za-z0-9_]", "_", base)
        name, k = base, 1
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name

    def emit(self, op: str, ins: list[str], name: str, **attrs) -> str:
        """A node whose output tensor has the node's name."""
        self.nodes.append(helper.make_node(op, ins, [name], name=name, **attrs))
        return name

    def activation(self, code: int, name: str, out_index: int) -> None:
        """The fused activation after node ``name``, then bind the TFLite output tensor."""
        AF, x = schema.ActivationFunctionType, name
        if code == AF.RELU:
            x = self.emit("Relu", [name], f"{name}_relu")
        elif code == AF.RELU6:
            if "relu6_min" not in {t.name for t in self.inits}:
                self.init("relu6_min", np.array(0, np.float32))
                self.init("relu6_max", np.array(6, np.float32))
            x = self.emit("Clip", [name, "relu6_min", "relu6_max"], f"{name}_relu6")
        elif code != AF.NONE:
            raise NotImplementedError(f"{self.path.name}: fused activation {code}")
        self.names[out_index] = x

    def op(self, o, kind: str) -> None:
        """One TFLite operator ``o`` (of BuiltinOperator name ``kind``) as ONNX nodes."""
        opts, x = o.builtinOptions, self.names.get(o.inputs[0])
        weighted = kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
        name = self.layer_name(kind, o.inputs[1] if weighted else o.outputs[0])
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            dw = kind == "DEPTHWISE_CONV_2D"
            (_, h, w, c), wt = self.shape(o.inputs[0]), self.const(o.inputs[1])
            # (O, KH, KW, I) or, depthwise, (1, KH, KW, C*M) -> (O, I / group, KH, KW)
            wt = wt.transpose(3, 0, 1, 2) if dw else wt.transpose(0, 3, 1, 2)
            k = list(wt.shape[2:])
            dil, st = [opts.dilationHFactor, opts.dilationWFactor], [opts.strideH, opts.strideW]
            self.emit("Conv", [x, *self.weights(o, name, wt)], name, kernel_shape=k,
                      strides=st, dilations=dil, group=c if dw else 1,
                      pads=onnx_pads(opts.padding, [h, w], k, st, dil))
        elif kind == "FULLY_CONNECTED":
            if len(self.shape(o.inputs[0])) != 2 or opts.keepNumDims:
                raise NotImplementedError(f"{self.path.name}: FC on a rank > 2 tensor")
            wt = self.const(o.inputs[1])
            if x in self.flat_chw:        # columns NHWC -> NCHW: a plain Flatten before
                c, h, w = self.flat_chw[x]
                wt = wt.reshape(-1, h, w, c).transpose(0, 3, 1, 2).reshape(wt.shape[0], -1)
            self.emit("Gemm", [x, *self.weights(o, name, wt)], name, transB=1)
        elif kind == "ADD":
            if any(i not in self.names for i in o.inputs):
                raise NotImplementedError(f"{self.path.name}: ADD of a constant")
            self.emit("Add", [self.names[i] for i in o.inputs], name)
        elif kind == "AVERAGE_POOL_2D":   # count_include_pad=0: TF averages valid cells only
            k, st = [opts.filterHeight, opts.filterWidth], [opts.strideH, opts.strideW]
            self.emit("AveragePool", [x], name, kernel_shape=k, strides=st,
                      pads=onnx_pads(opts.padding, self.shape(o.inputs[0])[1:3], k, st, [1, 1]))
        elif kind == "RESHAPE":
            src, dst = self.shape(o.inputs[0]), self.shape(o.outputs[0])
            if len(dst) != 2 or src[0] != dst[0]:
                raise NotImplementedError(f"{self.path.name}: RESHAPE {src} -> {dst}")
            out = x if len(src) == 2 else self.emit("Flatten", [x], name, axis=1)
            if len(src) == 4 and src[1] * src[2] > 1 and src[3] > 1:
                self.flat_chw[out] = (src[3], src[1], src[2])
            self.names[o.outputs[0]] = out
            return
        elif kind == "SOFTMAX":
            if opts.beta != 1.0:
                raise NotImplementedError(f"{self.path.name}: SOFTMAX with beta {opts.beta}")
            self.names[o.outputs[0]] = self.emit("Softmax", [x], name, axis=-1)
            return
        else:
            raise NotImplementedError(f"{self.path.name}: TFLite op {kind}")
        self.activation(opts.fusedActivationFunction, name, o.outputs[0])

    def convert(self, graph_name: str, doc: str) -> onnx.ModelProto:
        (i_in,), (i_out,) = self.sub.inputs, self.sub.outputs
        self.names[int(i_in)] = "input"
        ops = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
        for o in self.sub.operators:
            code = self.codes[o.opcodeIndex]
            self.op(o, ops[max(code.builtinCode, code.deprecatedBuiltinCode)])
        last = self.names[int(i_out)]
        for n in self.nodes:          # the graph output is called "output"
            n.output[:] = ["output" if t == last else t for t in n.output]
        graph = helper.make_graph(
            self.nodes, graph_name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                           nchw_dims(self.shape(i_in)))],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT,
                                           nchw_dims(self.shape(i_out)))],
            self.inits, doc_string=doc)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="dynfix tools/mlperf_trained.py")
        model.ir_version = 7
        onnx.checker.check_model(model, full_check=True)
        return model


def convert(name: str, tflite_dir: Path) -> bytes:
    """The ONNX bytes of one model, from its float .tflite in ``tflite_dir``."""
    fname, _, folder = MODELS[name]
    doc = (f"MLPerf Tiny {name} reference model with trained weights, converted from "
           f"mlcommons/tiny {SRC}{folder}/{fname} (Apache-2.0) by tools/mlperf_trained.py")
    return Converter(tflite_dir / fname).convert(name, doc).SerializeToString()


def check(name: str, tflite_dir: Path, onnx_path: Path, n: int = 8) -> dict[str, float]:
    """Max |diff| / max |LiteRT float output| for onnxruntime and dynfix's float model."""
    import onnxruntime as ort
    from dynfix.quant.float_model import predict
    from dynfix.quant.load import load_model

    fname, qname, _ = MODELS[name]
    model = load_model(str(onnx_path))
    x = np.random.default_rng(0).uniform(*input_range(tflite_dir / qname)[:2],
                                         (n, *model.input_shape)).astype(np.float32)
    ref = tflite_outputs(float_tflite(tflite_dir / fname), x)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ys = {"onnxruntime": sess.run(None, {"input": x})[0], "dynfix": predict(model, x)}
    return {k: float(np.abs(y - ref).max() / np.abs(ref).max()) for k, y in ys.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tflite_dir", type=Path, help="folder holding the .tflite files")
    ap.add_argument("--out", type=Path, default=Path("models/mlperf_tiny"))
    ap.add_argument("--check", action="store_true", help="compare with LiteRT afterwards")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        data = convert(name, args.tflite_dir)
        if convert(name, args.tflite_dir) != data:
            raise SystemExit(f"{name}: conversion is not deterministic")
        path = args.out / f"{name}.onnx"
        path.write_bytes(data)
        lo, hi, s, z = input_range(args.tflite_dir / MODELS[name][1])
        print(f"{path}: {len(data):,} bytes; int8 input scale {s:.6g} zero point {z} "
              f"-> float range [{lo:.4g}, {hi:.4g}]")
        if args.check:
            print("   max |diff| / max |LiteRT|:",
                  ", ".join(f"{k} {v:.2e}" for k, v in check(name, args.tflite_dir, path).items()))


if __name__ == "__main__":
    main()
