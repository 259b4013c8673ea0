"""Weight sharing (Deep Compression's codebooks) on the trained MLPerf Tiny ResNet-8 and DS-CNN.

Writes ``bench/results/weight_sharing.md``: each model quantized to 8 bits by ``greedy`` on
``bench/mlperf_data.py``'s calibration inputs, then with every Conv2d and Linear layer's
weights shared at b = 3, 4, 5 index bits (k-means on the fixed-point grid, refined on the
layers' responses; quant/weight_sharing.py). Per model and b: the weight storage as 8-bit
fixed point, as b-bit indices plus codebooks, and with the indices Huffman-coded, with the
ratios; top-1 agreement and output SQNR of the integer model against the float model on the
held-out test inputs. Every layer's Huffman code is checked by an encode/decode round trip.
Every b with one codebook entry forced to 0 and with all entries free (``share_zero``).
Then, per layer at one b, the response SQNR of the fixed-point, k-means and refined weights,
and of the refined ones without the 0 entry.

Run: ``.venv/bin/python bench/weight_sharing.py [--models resnet8,dscnn] [--bits 3,4,5]
[--detail 4]`` (about a quarter of an hour on two cores).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mlperf_data as md  # noqa: E402
from common import md_table, write_result  # noqa: E402

from dynfix.hw.config import clog2  # noqa: E402
from dynfix.quant.adjust import tied_columns  # noqa: E402
from dynfix.quant.fidelity import fidelity, outputs  # noqa: E402
from dynfix.quant.int_model import IntModel, weight_array  # noqa: E402
from dynfix.quant.load import load_model  # noqa: E402
from dynfix.quant.search import search_model  # noqa: E402
from dynfix.quant.huffman import (huffman_decode, huffman_encode,  # noqa: E402
                                  huffman_lengths, table_bits)
from dynfix.quant.weight_sharing import shareable  # noqa: E402

MODELS = HERE.parent / "models" / "mlperf_tiny"
LABELS = {"resnet8": "ResNet-8", "dscnn": "DS-CNN"}
CALIB = 64


def stored(im: IntModel, name: str) -> np.ndarray:
    """A layer's integer weights as the engine stores them (a folded pool's runs once)."""
    w = im.weights[name]
    runs = tied_columns(weight_array(im.model.layer(name)))
    return w.reshape(len(w), -1)[:, ::runs].ravel()


def huffman_bits_8bit(im: IntModel, names: list[str]) -> int:
    """The 8-bit weights themselves Huffman-coded per layer (codes and their tables)."""
    total = 0
    for n in names:
        s = stored(im, n) + 128
        lengths = huffman_lengths(np.bincount(s, minlength=256))
        total += int(np.sum(lengths[s])) + table_bits(lengths)
    return total


def padded_index_bits(im: IntModel, names: list[str]) -> int:
    """The index width an engine whose weight words are padded with zero weights needs for
    the layers ``names``: each codebook holds the layer's values and the padding's 0."""
    return max(clog2(len(set(np.unique(im.weights[n]).tolist()) | {0})) for n in names)


def round_trip(im: IntModel, names: list[str]) -> None:
    """Every shared layer's index stream through the Huffman coder and back."""
    for n in names:
        _, ids = np.unique(stored(im, n), return_inverse=True)
        lengths = huffman_lengths(np.bincount(ids))
        data, nbits = huffman_encode(ids, lengths)
        assert np.array_equal(huffman_decode(data, nbits, lengths), ids), n


def run(name: str, bits: list[int], detail: int, log=print) -> tuple[list, list]:
    model = load_model(str(MODELS / f"{name}.onnx"))
    cal, test = md.inputs(name, "calib", CALIB), md.inputs(name, "test")
    rows, per_layer, free = [], {}, {}
    for b, zero in [(None, True)] + [(b, z) for b in bits for z in (True, False)]:
        t0 = time.perf_counter()
        r = search_model(model, cal, bits="8", method="greedy", share=b, share_zero=zero)
        dt = time.perf_counter() - t0
        ref, out = outputs(model, r.spec, test, r.model)
        fid = fidelity(ref, out)
        im = IntModel(r.model, r.spec)
        names = [layer.name for layer in im.model.layers if shareable(layer)]
        w8 = sum(stored(im, n).size for n in names)           # bytes at 8 bits
        if b is None:
            h8 = huffman_bits_8bit(im, names) / 8
            rows.append([LABELS[name], "none (8-bit)", f"{w8:,}", "-",
                         f"{h8:,.0f} ({w8 / h8:.2f}x, 8-bit values)", "-",
                         f"{100 * fid.agreement:.1f} %", f"{fid.sqnr_db:.2f}", f"{dt:.0f}"])
        else:
            round_trip(im, names)
            idx = sum(x.bits_after for x in r.sharing) / 8
            huf = sum(x.bits_huffman for x in r.sharing) / 8
            assert sum(x.bits_before for x in r.sharing) == 8 * w8
            rows.append([LABELS[name], f"{b} bits" + ("" if zero else ", no 0 entry"),
                         f"{w8:,}", f"{idx:,.0f} ({w8 / idx:.2f}x)",
                         f"{huf:,.0f} ({w8 / huf:.2f}x)", padded_index_bits(im, names),
                         f"{100 * fid.agreement:.1f} %", f"{fid.sqnr_db:.2f}", f"{dt:.0f}"])
            if b == detail and zero:
                per_layer = {x.layer: [LABELS[name], x.layer, f"{x.weights:,}", x.distinct,
                                       f"{x.sqnr_fixed_db:.1f}", f"{x.sqnr_kmeans_db:.1f}",
                                       f"{x.sqnr_db:.1f}",
                                       f"{x.bits_before / x.bits_huffman:.2f}x"]
                             for x in r.sharing}
            elif b == detail:
                free = {x.layer: [x.distinct, f"{x.sqnr_db:.1f}"] for x in r.sharing}
        log(" | ".join(map(str, rows[-1])))
    return rows, [row + free.get(n, ["-", "-"]) for n, row in per_layer.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet8,dscnn")
    ap.add_argument("--bits", default="3,4,5")
    ap.add_argument("--detail", type=int, default=4, help="the b whose layers are tabulated")
    args = ap.parse_args()
    bits = [int(v) for v in args.bits.split(",")]
    rows, per_layer = [], []
    for name in args.models.split(","):
        a, b = run(name, bits, args.detail)
        rows, per_layer = rows + a, per_layer + b
    text = ["# Weight sharing on the trained MLPerf Tiny models", "",
            "Generated by `bench/weight_sharing.py`. Each model is quantized to 8 bits by",
            f"`greedy` on {CALIB} calibration inputs of `bench/mlperf_data.py`; then every",
            "Conv2d and Linear layer's weights are shared (`dynfix quantize --share B`): a",
            "codebook of at most 2^B entries on the layer's fixed-point grid, by k-means on",
            "the weights (linear start) refined by least squares on the layer's responses,",
            "without retraining (docs/compression.md). Storage of those layers' weights:",
            "as 8-bit fixed point; as B-bit indices plus a 2^B-entry codebook of 8-bit",
            "values per layer; with the indices Huffman-coded per layer (plus each code's",
            "table of lengths), as the image in flash would be, decoded at load. Ratios",
            "against 8-bit fixed point. Agreement (top-1) and SQNR: the integer model against",
            "the float model on the held-out test inputs (logits before the softmax).", "",
            "For scale: Deep Compression (Han, Mao, Dally, ICLR 2016) reports 35x on AlexNet",
            "and 49x on VGG-16 against 32-bit floats, with pruning, retrained shared weights",
            "and Huffman coding together; against 32-bit floats the ratios here are four",
            "times those in the table, from sharing alone and with no retraining, on models",
            "with far fewer weights and no large FC layers.", "",
            "Every B is run twice: with one codebook entry forced to 0 (the default) and",
            "with all 2^B entries free (`--share-zero off`). Index bits, padded words: the",
            "widest index an engine needs whose weight words are padded with zero weights",
            "(a depthwise layer's always are; a layer's input channels short of a multiple",
            "of the lanes are): the layer's values and the 0, at most 2^B + 1 of them.", "",
            *md_table(["model", "sharing", "weight bytes (8-bit)", "index bytes",
                       "Huffman bytes", "index bits, padded words", "test agreement",
                       "test output SQNR dB", "quantize s"], rows), "",
            f"## Per layer at {args.detail} bits", "",
            "Response SQNR (dB) of each layer's pre-activation on the calibration inputs,",
            "against the float layer on the float model's input, each channel's mean",
            "error removed (the bias correction after sharing removes it): with the",
            "unshared fixed-point weights, with the k-means codebook, and with the refined",
            "one (kept only when better). Ratio: 8-bit weights over Huffman-coded indices,",
            "code table and codebook. No 0 entry: the values and the refined codebook's",
            "SQNR with all entries free.", "",
            *md_table(["model", "layer", "weights", "values", "fixed point", "k-means",
                       "refined", "ratio", "no 0 entry: values", "no 0 entry: refined"],
                      per_layer)]
    write_result("weight_sharing.md", text)


if __name__ == "__main__":
    main()
