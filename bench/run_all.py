"""Regenerate every table and plot in ``bench/results/`` from scratch: the one bench command.

    .venv/bin/python bench/run_all.py            # everything, synthesis included
    .venv/bin/python bench/run_all.py --quick    # minutes: no synthesis, digits-only
                                                      # RTL efficiency, Icarus-only speed

Each script runs in its own Python process, in order; a failing script is reported and the
others still run (the exit status is non-zero if any failed). Wall time per script is
printed at the end (it is not written into the results).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts(quick: bool) -> list[list[str]]:
    """(script, args...) in the order they run."""
    return [
        ["quant_table.py"],                                   # item 1 (helper-2's)
        ["paper_vgg16.py"],                                   # item 4: VGG16, paper budget
        ["engine_efficiency.py"] + (["--quick"] if quick else []),   # item 2: RTL sim
        ["boards.py"] + ([] if quick else ["--synth"]),       # item 3: boards
        *([] if quick else [["estimate_blocks.py"]]),         # the estimate per part
        ["tool_speed.py"] + (["--quick"] if quick else []),   # item 5: wall times
        ["mlperf_engine.py"] + (["--models", "resnet8,autoencoder", "--boards", "ulx3s"]
                                if quick else ["--synth", "resnet8:ulx3s,dscnn:orangecrab"]),
        *([] if quick else [["lowrank_conv.py"]]),            # low-rank convolutions
        ["ternary_products.py"],                              # products without multipliers
        # The compression algorithms on the trained MLPerf models (minutes each).
        *([] if quick else [["weight_sharing.py"], ["codebook_engine.py"], ["ternary.py"],
                            ["pruning.py"], ["compression.py"]]),
        # The flash image Huffman-coded: ratio and load time, the decoder's cost (minutes).
        *([] if quick else [["huffman_load.py"]]),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="skip synthesis and the long RTL simulations")
    ap.add_argument("--only", nargs="*", default=None,
                    help="run only these scripts (e.g. paper_vgg16.py boards.py)")
    a = ap.parse_args(argv)
    times, failed = [], []
    for cmd in scripts(a.quick):
        if a.only and cmd[0] not in a.only:
            continue
        print(f"=== {' '.join(cmd)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(HERE / cmd[0]), *cmd[1:]], cwd=HERE.parent)
        times.append((" ".join(cmd), time.perf_counter() - t0, rc))
        if rc:
            failed.append(cmd[0])
    print("\nwall time per script (varies between runs):")
    for name, t, rc in times:
        print(f"  {name:40s} {t:7.1f} s{'  FAILED' if rc else ''}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
