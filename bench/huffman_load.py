"""Huffman-coded flash images on the trained MLPerf Tiny models: ratio, load time, decoder cost.

Writes ``bench/results/huffman_load.md``. Each model (``models/mlperf_tiny``) is quantized by
``greedy`` on ``bench/mlperf_data.py``'s calibration inputs, at 8 bits and at 8/4/4 (4-bit
weights), and fitted to the iCEBreaker and the ULX3S. The flash payload is the one
``dynfix synth`` writes (``boards/design.py``, ``weights_payload``): for the iCEBreaker's
fitted engine (its weights in SPRAM, in the SPRAM bulk memory, or read from the flash at run
time, whose image stays uncoded: its row says what a load at power-up would store); for the
ULX3S, whose fitted engines keep the weights in block RAM (in the bitstream), the same
engine with its weights in the SDRAM (the fit's placement when block RAM runs short,
``SDRAM_PLACEMENTS``), filled from the flash at power-up. Per payload: its bytes, the coded
bytes (``--flash-coding huffman``: the code of at most ``MAX_CODE_BITS`` bits a word,
``boards/flash_image.py``) and the whole coded image, the ratio, what the length limit costs
against an unlimited Huffman code, the order-0 entropy bound, and the load's streaming time
in cycles (16 a byte: SCK at half the clock) and at the board's oscillator. Every coded
image is read back (decoded, CRC checked).

Then the decoder's cost: ``HuffmanDecoder`` alone synthesized by yosys (``synth_ice40`` /
``synth_ecp5``, no place and route) for a code of all 256 byte values with the longest words
the image takes, decoding 1 MiB: what ``boards/board_top.py``'s ``DECODER_USAGE`` holds.

Run: ``.venv/bin/python bench/huffman_load.py [--models resnet8,dscnn,vww,ad]
[--bits 8,8/4/4]`` (minutes: quantization dominates).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import mlperf_data as md  # noqa: E402
from common import md_table, write_result  # noqa: E402

import dynfix  # noqa: E402
from dynfix.boards.block_stat import module_usage, yosys_stat  # noqa: E402
from dynfix.boards.design import weights_payload  # noqa: E402
from dynfix.boards.fit import SDRAM_PLACEMENTS  # noqa: E402
from dynfix.boards.flash_image import (MAX_CODE_BITS, FlashCoding, flash_image,  # noqa: E402
                                       load_figures, read_payload)
from dynfix.boards.huffman_decoder import HuffmanDecoder  # noqa: E402
from dynfix.boards.registry import get_board  # noqa: E402
from dynfix.boards.spi_flash_reader import sck_divider  # noqa: E402
from dynfix.errors import DynfixError  # noqa: E402
from dynfix.hw.config import BulkStore, EngineConfig  # noqa: E402
from dynfix.quant.huffman import code_bits, huffman_lengths, limited_lengths  # noqa: E402

MODELS = HERE.parent / "models" / "mlperf_tiny"
LABELS = {"resnet8": "ResNet-8", "dscnn": "DS-CNN", "vww": "MobileNetV1 (VWW)",
          "ad": "FC autoencoder"}
CALIB = 48
#: The decoder's cost is measured for a payload this long (its counter of decoded bytes).
DECODER_BYTES = 1 << 20


def where(cfg: EngineConfig) -> str:
    """Where the engine keeps the weights the payload fills."""
    if cfg.w_spram:
        return "SPRAM, loaded at power-up"
    if cfg.bulk_store is BulkStore.FLASH:
        return "read from the flash at run time (stays uncoded)"
    if cfg.bulk_store is BulkStore.SDRAM:
        return "SDRAM, loaded at power-up (placed there)"
    return "SPRAM bulk memory, loaded at power-up"


def payload_row(label: str, bits: str, board: str, cfg: EngineConfig, payload: bytes) -> list:
    """One table row: the payload coded and read back, its figures."""
    image = flash_image(payload, get_board(board).flash, FlashCoding.HUFFMAN)
    assert read_payload(image) == payload, (label, bits, board)
    clk = get_board(board).clock_mhz * 1e6
    f = load_figures(payload, FlashCoding.HUFFMAN, clk, sck_divider(clk))
    data = np.frombuffer(payload, np.uint8).astype(np.int64)
    counts = np.bincount(data, minlength=256)
    free = code_bits(data, huffman_lengths(counts))
    limited = code_bits(data, limited_lengths(counts, MAX_CODE_BITS))
    p = counts[counts > 0] / len(data)
    entropy = float(-(p * np.log2(p)).sum()) * len(data) / 8
    uncoded_ms = f["uncoded_load_cycles"] / clk * 1e3
    return [label, bits, board, f"`{cfg.summary()}`", where(cfg), f"{len(payload):,}",
            f"{f['coded_bytes']:,} ({len(image):,})", f"{f['ratio']:.3f}x",
            f"+{(limited - free) / 8:,.0f} B ({100 * (limited - free) / free:.3f} %)",
            f"{len(payload) / entropy:.3f}x",
            f"{f['uncoded_load_cycles']:,} -> {f['load_cycles']:,}",
            f"{uncoded_ms:.1f} -> {f['load_ms']:.1f} ms at {clk / 1e6:g} MHz"]


def run(name: str, bits: str, work: Path) -> list[list]:
    t0 = time.perf_counter()
    q = dynfix.quantize(str(MODELS / f"{name}.onnx"), calib=md.inputs(name, "calib", CALIB),
                        bits=bits)
    print(f"{name} {bits}: quantized in {time.perf_counter() - t0:.0f} s", flush=True)
    rows, label = [], LABELS[name]
    for board in ("icebreaker", "ulx3s"):
        folder = work / f"{name}_{bits.replace('/', '-')}_{board}"
        try:
            g = dynfix.generate(q, folder, board=board)
        except DynfixError as e:
            rows.append([label, bits, board, f"does not fit: {e}"] + [""] * 8)
            continue
        if weights_payload(g) is None:          # in block RAM: the SDRAM placement
            cfg = EngineConfig(**{**g.config.choice(), **SDRAM_PLACEMENTS[0]})
            g = dynfix.generate(q, folder.with_name(folder.name + "_sdram"), config=cfg)
        rows.append(payload_row(label, bits, board, g.config, weights_payload(g)))
        print(" | ".join(map(str, rows[-1])), flush=True)
    return rows


def decoder_cost() -> list[str]:
    """Yosys's count of the decoder alone, per family (worst-case code)."""
    from amaranth.back import verilog

    from dynfix.hw.generate import ensure_yosys

    ensure_yosys()
    # Every byte value, two-sided geometric counts: the 12-bit limit binds.
    counts = np.floor(DECODER_BYTES * np.exp(-np.abs(np.arange(256) - 128) / 6.0)) + 1
    lengths = limited_lengths(counts, MAX_CODE_BITS)
    assert lengths.min() > 0 and lengths.max() == MAX_CODE_BITS
    rows = []
    with tempfile.TemporaryDirectory(prefix="dynfix-huffman-") as tmp:
        for board in ("icebreaker", "ulx3s"):
            b = get_board(board)
            path = Path(tmp) / f"{board}.v"
            path.write_text(verilog.convert(HuffmanDecoder(lengths, DECODER_BYTES),
                                            name="decoder", emit_src=False,
                                            strip_internal_attrs=True))
            use = module_usage(yosys_stat(path, "decoder", b), b)["decoder"]
            rows.append([b.family.name, f"`synth_{b.family.name}`", f"{use.luts:.0f}",
                         f"{use.ffs:.0f}", str(use.brams)])
    return md_table(["family", "yosys", "LUT4s", "FFs", "block RAMs"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet8,dscnn,vww,ad")
    ap.add_argument("--bits", default="8,8/4/4")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="dynfix-huffman-") as tmp:
        for name in args.models.split(","):
            for bits in args.bits.split(","):
                rows += run(name, bits, Path(tmp))
    cost = decoder_cost()
    text = ["# Huffman-coded flash images on the trained MLPerf Tiny models", "",
            "Generated by `bench/huffman_load.py`. Each model quantized by `greedy` on "
            f"{CALIB} calibration inputs of `bench/mlperf_data.py` and fitted to the board; "
            "the flash payload is the one `dynfix synth` writes for that engine (on the "
            "ULX3S, whose fitted engines keep their weights in block RAM, for the same "
            "engine with its weights in the SDRAM). Coded: the payload's bytes in a "
            f"canonical Huffman code of at most {MAX_CODE_BITS} bits a word "
            "(`dynfix synth --flash-coding huffman`); in parentheses the whole image "
            "(20-byte header, coded bytes, 128-byte code). Ratio = payload / coded bytes. "
            f"Limit: the bytes the {MAX_CODE_BITS}-bit limit costs against an unlimited "
            "Huffman code. Entropy bound: payload / the order-0 entropy of its bytes (what "
            "any code of single bytes can reach). Load: the streaming's clock cycles, "
            "uncoded -> coded (the reader takes 16 cycles a byte; the header and the "
            "flash's wake-up come on top), and the time at the board's oscillator (the "
            "cycles scale with the clock the bitstream runs at). Every coded image was "
            "decoded back and its CRC checked.", "",
            "Run: `.venv/bin/python bench/huffman_load.py`.", ""]
    text += md_table(["model", "bits", "board", "engine", "weights", "payload bytes",
                      "coded bytes (image)", "ratio", "limit", "entropy bound", "load cycles",
                      "load time"], rows)
    text += ["", "## The decoder", "",
             "`HuffmanDecoder` alone, yosys without place and route, for a code of all 256 "
             f"byte values with {MAX_CODE_BITS}-bit longest words, decoding "
             f"{DECODER_BYTES:,} bytes (the counter's width): the figures of `DECODER_USAGE` "
             "in `boards/board_top.py`, which the fit adds to a board top that loads a "
             "coded image. LUT4s as yosys counts them (an ECP5 carry cell as two); the "
             "symbol table is a block RAM on the iCE40, logic on the ECP5.", ""]
    text += cost
    write_result("huffman_load.md", text)


if __name__ == "__main__":
    main()
