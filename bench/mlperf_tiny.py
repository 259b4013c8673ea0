"""The four MLPerf Tiny reference models as ONNX files, built with ``onnx.helper``.

Layer lists from ``/work/shared/reference/mlperf_tiny.md`` (the benchmark's Keras training
scripts): ResNet-8 (IC), DS-CNN (KWS), MobileNetV1 0.25 (VWW), the FC autoencoder (AD).
Weights are seeded random numbers (nothing is downloaded); every Conv/Gemm before a
BatchNormalization keeps a real BN node with sane statistics, so a loader has to fold it.

Padding is TensorFlow's 'same' written as explicit pads (the extra row/column of an even
total goes to the bottom/right: stride 2 gives asymmetric pads), BN epsilon is Keras' 1e-3.
Two export styles of the same function (same seed -> same outputs):

* default, PyTorch-like: NCHW, Conv without bias before a BN (its bias moves into the BN
  mean), AveragePool over the whole map, Flatten, Gemm, Softmax(axis=1);
* ``tf_style=True``, tf2onnx-like: Conv with bias + BN, ReduceMean over H, W, a Transpose
  NCHW -> NHWC before a Reshape to N x F with the FC weights in NHWC order, Softmax(axis=-1);
  the autoencoder's Dense layers become MatMul + Add.

ReLU6 (MobileNet) is Clip(0, 6). Parameters and MACs are counted from the ONNX graph with BN
folded (what the published figures count).

Where the reference note and TensorFlow differ, TensorFlow wins: DS-CNN's first conv (10x4,
stride 2, 49x10 -> 25x5) pads rows 4/5 and columns 1/1 (total (5-1)*2+4-10 = 2), not 1/2;
a second right column would never be read, so outputs are the same. MobileNet's ReLU6 is
the Keras MobileNet's; the MLPerf training script (vww_model.py) uses plain ReLU, which
changes outputs, not counts.

Run: ``.venv/bin/python bench/mlperf_tiny.py`` (prints the counts against the published ones).
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import md_table  # noqa: E402

MODELS = ("resnet8", "dscnn", "mobilenet_v1_025", "autoencoder")
OPSET = 13
BN_EPS = 1e-3                       # Keras' BatchNormalization default

_PUBLISHED = {
    "resnet8": dict(task="IC", model="ResNet-8", input="32x32x3", input_shape=(3, 32, 32),
                    params=77_706, macs_text="12.50 M", outputs=10, quality="85 % top-1"),
    "dscnn": dict(task="KWS", model="DS-CNN", input="49x10x1", input_shape=(1, 49, 10),
                  params=22_604, macs_text="2.66 M", outputs=12, quality="90 % top-1"),
    "mobilenet_v1_025": dict(task="VWW", model="MobileNetV1 0.25", input="96x96x3",
                             input_shape=(3, 96, 96), params=210_850, macs_text="7.49 M",
                             outputs=2, quality="80 % top-1"),
    "autoencoder": dict(task="AD", model="FC autoencoder", input="640", input_shape=(640,),
                        params=265_864, macs_text="0.264 M", outputs=640,
                        quality="AUC 0.85"),
}

#: Published FPGA results (source, model, FPGA (board), clock, task, latency, quality).
FPGA_RESULTS = [
    ("fpgaConvNet v1.1 closed", "reference INT8", "XC7Z010 (ZyBo; 17.6K LUT6, 80 DSP)",
     "125 MHz", "IC", "3.15 ms", "85.5 %"),
    ("fpgaConvNet v1.1 closed", "reference INT8", "XC7Z010 (ZyBo)", "125 MHz", "KWS",
     "2.15 ms", "91.0 %"),
    ("fpgaConvNet v1.1 closed", "reference INT8", "XC7Z007S (Cora-Z7; 14.4K LUT6, 66 DSP)",
     "143 MHz", "KWS", "4.21 ms", "91.0 %"),
    ("fpgaConvNet v1.1 closed", "reference INT8", "XC7Z020 (ZedBoard; 53K LUT6, 220 DSP)",
     "143 MHz", "IC", "0.411 ms", "86.0 %"),
    ("fpgaConvNet v1.1 closed", "reference INT8", "XC7Z020 (ZedBoard)", "143 MHz", "KWS",
     "0.324 ms", "91.1 %"),
    ("fpgaConvNet v1.1 closed", "reference INT8", "XC7Z020 (ZedBoard)", "111 MHz", "VWW",
     "9.49 ms", "84.8 %"),
    ("hls4ml v0.7 open", "RN07 (W8/A9, no skips)", "XC7Z020 (Pynq-Z2)", "150 MHz", "IC",
     "27.3 ms", "83.5 %"),
    ("hls4ml v1.0 open", "RN08", "XC7Z020 (Pynq-Z2)", "150 MHz", "IC", "7.64 ms", "83.5 %"),
    ("hls4ml v0.7 open", "AD08 (W12, 64-72-72-8-72-72-64)", "XC7Z020 (Pynq-Z2)", "100 MHz",
     "AD", "18.7 us", "AUC 0.83"),
    ("FINN v0.7 open", "CNV W1/A1", "XC7Z020 (Pynq-Z2)", "100 MHz", "IC", "1.51 ms",
     "84.5 %"),
    ("FINN v0.7 open", "MLP W3/A3", "XC7Z020 (Pynq-Z2)", "100 MHz", "KWS", "17.5 us",
     "82.5 %"),
    ("CFU Playground (VexRiscv + CFU)", "reference DS-CNN", "XC7A35T (Arty)", "100 MHz",
     "KWS", "about 98 ms", "-"),
]
_FPGA_KEYS = ("source", "model", "fpga", "clock", "task", "latency", "quality")


def published(name: str) -> dict:
    """The published figures of a model: task, input, params, MACs (``macs`` rounded as
    published, ``macs_text`` verbatim), outputs, quality target and the FPGA result rows."""
    p = dict(_PUBLISHED[name])
    value, unit = p["macs_text"].split()
    p["macs"] = round(float(value) * {"M": 1e6, "K": 1e3}[unit])
    p["fpga"] = [dict(zip(_FPGA_KEYS, row)) for row in FPGA_RESULTS if row[4] == p["task"]]
    return p


def macs_match(macs: int, text: str) -> bool:
    """True if ``macs`` rounds to the published ``text`` ("12.50 M") at its precision."""
    value, unit = text.split()
    decimals = len(value.partition(".")[2])
    return f"{macs / {'M': 1e6, 'K': 1e3}[unit]:.{decimals}f}" == value


def sample_inputs(name: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` float32 inputs, N x C x H x W (N x 640 for the autoencoder, whose IR input is a
    flat ``(640,)``): images uniform in [0, 1) like pixels / 255, MFCC and spectrogram
    features standard normal."""
    rng = np.random.default_rng(seed)
    shape = (n,) + _PUBLISHED[name]["input_shape"]
    x = rng.random(shape) if len(shape) == 4 and shape[1] == 3 else rng.standard_normal(shape)
    return x.astype(np.float32)


def same_pads(hw, kernel, stride) -> tuple[int, int, int, int]:
    """TensorFlow's 'same' padding as ONNX pads (top, left, bottom, right): output =
    ceil(input / stride), an odd total puts the extra row/column at the bottom/right."""
    begin, end = [], []
    for n, k, s in zip(hw, kernel, stride):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return (begin[0], begin[1], end[0], end[1])


class _Builder:
    """A chain of layers (plus residual adds) on named tensors whose shapes (no batch) it
    tracks. Random draws happen in the same order in both styles, so both compute the same
    function."""

    def __init__(self, name: str, seed: int, tf_style: bool):
        self.name, self.tf = name, tf_style
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.shape = {"input": _PUBLISHED[name]["input_shape"]}
        self.clip_bounds = False         # relu6.min / relu6.max initializers written

    def init(self, name: str, arr, dtype=np.float32) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(arr, dtype), name))
        return name

    def node(self, op: str, inputs, name: str, shape, **attrs) -> str:
        self.nodes.append(helper.make_node(op, list(inputs), [name], name, **attrs))
        self.shape[name] = tuple(shape)
        return name

    def he(self, *shape, gain=2.0) -> np.ndarray:
        return self.rng.normal(0, math.sqrt(gain / math.prod(shape[1:])), shape)

    def bn_stats(self, c: int):
        """gamma, beta, running mean, running variance: random but sane."""
        return (self.rng.uniform(0.5, 1.5, c), self.rng.normal(0, 0.2, c),
                self.rng.normal(0, 0.2, c), self.rng.uniform(0.5, 1.5, c))

    def bn(self, x: str, name: str, stats) -> str:
        names = [self.init(f"{name}.{p}", v) for p, v in
                 zip(("weight", "bias", "running_mean", "running_var"), stats)]
        return self.node("BatchNormalization", [x, *names], name, self.shape[x],
                         epsilon=BN_EPS)

    def act(self, x: str, name: str, act: str | None) -> str:
        if act == "relu":
            return self.node("Relu", [x], name + ".relu", self.shape[x])
        if act == "relu6":
            if not self.clip_bounds:
                self.clip_bounds = True
                self.init("relu6.min", 0.0)
                self.init("relu6.max", 6.0)
            return self.node("Clip", [x, "relu6.min", "relu6.max"], name + ".relu6",
                             self.shape[x])
        return x

    def conv(self, x: str, name: str, cout: int, k, stride=1, group=1, bn=True,
             act: str | None = "relu") -> str:
        c, h, w = self.shape[x]
        kh, kw = (k, k) if isinstance(k, int) else k
        pads = same_pads((h, w), (kh, kw), (stride, stride))
        out = (cout, -(-h // stride), -(-w // stride))
        weight = self.he(cout, c // group, kh, kw)
        bias = self.rng.normal(0, 0.1, cout)
        ins = [x, self.init(name + ".weight", weight)]
        if bn:
            gamma, beta, mean, var = self.bn_stats(cout)
            if self.tf:                  # Keras: Conv2D has a bias, BN follows
                ins.append(self.init(name + ".bias", bias))
            else:                        # PyTorch: Conv(bias=False) + BN; bias into the mean
                mean = mean - bias
        else:
            ins.append(self.init(name + ".bias", bias))
        y = self.node("Conv", ins, name, out, kernel_shape=[kh, kw], strides=[stride] * 2,
                      pads=list(pads), dilations=[1, 1], group=group)
        if bn:
            y = self.bn(y, name + ".bn", (gamma, beta, mean, var))
        return self.act(y, name, act)

    def fc(self, x: str, name: str, m: int, bn=False, act: str | None = None,
           nhwc_from=None) -> str:
        """Dense layer; ``nhwc_from`` = (C, H, W) of the map flattened before it: in tf
        style its input comes in H, W, C order, so the weight columns are permuted to it."""
        f = self.shape[x][0]
        weight = self.he(m, f, gain=1.0 if act is None else 2.0)
        bias = self.rng.normal(0, 0.1, m)
        if self.tf and nhwc_from is not None:
            weight = weight.reshape((m,) + nhwc_from).transpose(0, 2, 3, 1).reshape(m, f)
        if self.tf:                      # tf2onnx: MatMul with a K x M weight, then Add
            y = self.node("MatMul", [x, self.init(name + ".kernel", weight.T)],
                          name + ".matmul", (m,))
            y = self.node("Add", [y, self.init(name + ".bias", bias)], name, (m,))
        else:
            y = self.node("Gemm", [x, self.init(name + ".weight", weight),
                                   self.init(name + ".bias", bias)], name, (m,), transB=1)
        if bn:
            y = self.bn(y, name + ".bn", self.bn_stats(m))
        return self.act(y, name, act)

    def add_relu(self, a: str, b: str, name: str) -> str:
        y = self.node("Add", [a, b], name + ".add", self.shape[a])
        return self.act(y, name, "relu")

    def head(self, x: str, classes: int) -> str:
        """Global average pool, flatten, FC, softmax."""
        c, h, w = self.shape[x]
        if self.tf:
            x = self.node("ReduceMean", [x], "pool", (c, 1, 1), axes=[2, 3], keepdims=1)
            x = self.node("Transpose", [x], "pool.nhwc", (1, 1, c), perm=[0, 2, 3, 1])
            x = self.node("Reshape", [x, self.init("flatten.shape", [-1, c], np.int64)],
                          "flatten", (c,))
        else:
            x = self.node("AveragePool", [x], "pool", (c, 1, 1), kernel_shape=[h, w],
                          strides=[1, 1])
            x = self.node("Flatten", [x], "flatten", (c,), axis=1)
        x = self.fc(x, "fc", classes, nhwc_from=(c, 1, 1))
        return self.node("Softmax", [x], "softmax", (classes,), axis=-1 if self.tf else 1)

    def model(self, out: str) -> onnx.ModelProto:
        def info(name, shape):
            return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", *shape])
        graph = helper.make_graph(self.nodes, self.name, [info("input", self.shape["input"])],
                                  [info(out, self.shape[out])], initializer=self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                 producer_name="dynfix-bench")


def _resnet8(b: _Builder) -> str:
    x = b.conv("input", "conv1", 16, 3)
    for i, c in enumerate((16, 32, 64), start=1):
        s = 1 if i == 1 else 2
        y = b.conv(x, f"stack{i}.conv1", c, 3, s)
        y = b.conv(y, f"stack{i}.conv2", c, 3, act=None)
        if s != 1:
            x = b.conv(x, f"stack{i}.shortcut", c, 1, s, bn=False, act=None)
        x = b.add_relu(x, y, f"stack{i}")
    return b.head(x, 10)


def _dscnn(b: _Builder) -> str:
    x = b.conv("input", "conv1", 64, (10, 4), 2)
    for i in range(1, 5):
        x = b.conv(x, f"block{i}.dwconv", 64, 3, group=64)
        x = b.conv(x, f"block{i}.pwconv", 64, 1)
    return b.head(x, 12)


#: MobileNetV1 0.25: (pointwise channels, depthwise stride) of the 13 blocks.
MOBILENET_BLOCKS = [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1),
                    (128, 1), (128, 1), (128, 1), (128, 1), (256, 2), (256, 1)]


def _mobilenet_v1_025(b: _Builder) -> str:
    x = b.conv("input", "conv1", 8, 3, 2, act="relu6")
    for i, (cout, s) in enumerate(MOBILENET_BLOCKS, start=1):
        c = b.shape[x][0]
        x = b.conv(x, f"block{i}.dwconv", c, 3, s, group=c, act="relu6")
        x = b.conv(x, f"block{i}.pwconv", cout, 1, act="relu6")
    return b.head(x, 2)


AUTOENCODER = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128, 640]


def _autoencoder(b: _Builder) -> str:
    x, last = "input", len(AUTOENCODER) - 1
    for i, m in enumerate(AUTOENCODER[1:], start=1):
        x = b.fc(x, f"dense{i}", m, bn=i < last, act="relu" if i < last else None)
    return x


def build(name: str, folder, seed: int = 0, tf_style: bool = False) -> Path:
    """Write ``folder/name.onnx`` (seeded random weights); returns its path."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; one of {', '.join(MODELS)}")
    b = _Builder(name, seed, tf_style)
    model = b.model(globals()[f"_{name}"](b))
    path = Path(folder) / f"{name}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def count(path) -> dict:
    """Parameters and MACs of an ONNX file, counted from its graph with BN folded:

    * params: every Conv/Gemm/MatMul weight, plus one bias per output channel if it has a
      bias or a BatchNormalization / constant Add right after it (that is where a folded BN
      goes); a BN anywhere else counts its scale and shift;
    * MACs: Conv = output elements x (input channels / group) x kh x kw, Gemm/MatMul = K x M
      per row; pooling, adds and BN count none.

    ``raw_params`` is every float initializer value (BN unfolded: gamma, beta, mean, var).
    """
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True)
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*g.value_info, *g.output)}
    producer = {n.output[0]: n for n in g.node}
    consumers: dict[str, list] = {}
    for n in g.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)

    def is_bias(n) -> bool:
        return n.op_type == "BatchNormalization" or (
            n.op_type == "Add" and any(t in inits for t in n.input))

    params = macs = 0
    for n in g.node:
        if n.op_type in ("Conv", "Gemm", "MatMul"):
            w = inits[n.input[1]]
            params += w.size
            transposed = n.op_type == "MatMul" or (
                n.op_type == "Gemm" and not any(a.name == "transB" and a.i for a in n.attribute))
            m = w.shape[1] if transposed else w.shape[0]
            nxt = consumers.get(n.output[0], [])
            if (len(n.input) > 2 and n.input[2]) or (len(nxt) == 1 and is_bias(nxt[0])):
                params += m
            if n.op_type == "Conv":
                macs += math.prod(shapes[n.output[0]][1:]) * math.prod(w.shape[1:])
            else:
                macs += w.size
        elif n.op_type == "BatchNormalization":
            before = producer.get(n.input[0])
            if before is not None and before.op_type == "Add" and is_bias(before):
                before = producer.get(next(t for t in before.input if t not in inits))
            if before is None or before.op_type not in ("Conv", "Gemm", "MatMul"):
                params += 2 * inits[n.input[1]].size
    raw = sum(a.size for a in inits.values() if a.dtype.kind == "f" and a.ndim > 0)
    return {"params": int(params), "macs": int(macs), "raw_params": int(raw)}


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            p = published(name)
            c = count(build(name, tmp))
            t = count(build(name, Path(tmp) / "tf", tf_style=True))
            ok = c["params"] == p["params"] and macs_match(c["macs"], p["macs_text"]) \
                and (t["params"], t["macs"]) == (c["params"], c["macs"])
            rows.append([f"{p['model']} ({p['task']})", p["input"], f"{c['params']:,}",
                         f"{p['params']:,}", f"{c['macs']:,}", p["macs_text"],
                         f"{t['raw_params']:,}", "yes" if ok else "**no**"])
    print("\n".join(md_table(
        ["model", "input", "params (BN folded)", "published", "MACs", "published",
         "Keras count (BN unfolded)", "match"], rows)))
    print("\nCounted from the ONNX graphs (both export styles); Keras count = every "
          "initializer of the tf_style file (conv bias + gamma, beta, mean, var).")


if __name__ == "__main__":
    main()
