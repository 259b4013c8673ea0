"""``dynfix simulate DIR --data digits|D.npz --images N [--sim icarus|verilator] [--waves]
[--json]``: run images through a generated design's Verilog (cocotb; Icarus or Verilator) and
compare every output integer with the integer model.

Reports the images, mismatches (images whose outputs differ from the integer model; the first
is localized to a layer and a coordinate), hardware / integer-model / float accuracy on the
labels, cycles per image from the engine's counter, MAC utilization per layer and overall,
and the simulator's speed. Writes the same object to ``DIR/simulation.json`` (atomically).
Exit status 1 when any image mismatches. See docs/verification.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dynfix.fileio import atomic_write_text


def register(subparsers) -> None:
    p = subparsers.add_parser("simulate", help="simulate a generated design against the "
                              "integer model", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("design", metavar="DIR", help="a folder written by dynfix generate")
    p.add_argument("--data", "-d", default="digits", metavar="DATA",
                   help="'digits' (its test split, default) or D.npz with 'x' (and 'y')")
    p.add_argument("--images", "-n", type=int, default=20, metavar="N",
                   help="how many images, from the start of the data (default 20)")
    p.add_argument("--sim", choices=("icarus", "verilator"), default=None,
                   help="simulator (default: $DYNFIX_SIM, else icarus)")
    p.add_argument("--waves", action="store_true", help="write an FST waveform")
    p.add_argument("--build-dir", metavar="PATH",
                   help="where to build and run (default DIR/sim_build)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dynfix import api          # deferred: see dynfix.commands
    from dynfix.workflow.names import display_names, relabel

    folder = Path(args.design)
    build = Path(args.build_dir) if args.build_dir else folder / "sim_build"
    s = api.simulate(folder, data=args.data, images=args.images, simulator=args.sim,
                     waves=args.waves, build_dir=build)
    res = s.details
    out = res.summary()
    atomic_write_text(folder / "simulation.json", json.dumps(out, indent=2, sort_keys=True)
                      + "\n")
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return 1 if res.mismatches else 0

    def pct(v):
        return "n/a (no labels)" if v is None else f"{100 * v:.2f} %"

    print(f"{s.model}: {res.images} images on {res.simulator}, "
          f"{res.mismatches} mismatches against the integer model")
    shown = display_names(dict.fromkeys([*res.mac_utilization, *res.layer_cycles]))
    if res.first_mismatch:
        fm = res.first_mismatch
        print(f"  first mismatch: image {fm['image']}: {relabel(shown)(fm['where'])}")
    print(f"  accuracy: hardware {pct(res.accuracy_hw)}, integer model {pct(res.accuracy_int)}, "
          f"float {pct(res.accuracy_float)}")
    print(f"  {res.cycles_per_image} engine cycles per image ({res.host_cycles_per_image} "
          f"from start to done, with load and unload)")
    width = max([10, *(len(shown[name]) for name in res.mac_utilization)])
    for name, u in res.mac_utilization.items():
        extra = f" ({res.layer_cycles[name]} cycles)" if name in res.layer_cycles else ""
        print(f"  MAC utilization {shown[name]:<{width}} {100 * u:5.1f} %{extra}")
    print(f"  simulator: {res.sim_cycles} cycles in {res.sim_seconds:.1f} s = "
          f"{res.sim_cycles_per_s:,.0f} cycles/s (build {res.build_seconds:.1f} s)")
    if res.waves:
        print(f"  waves: {res.waves}")
    print(f"  wrote {folder / 'simulation.json'}")
    return 1 if res.mismatches else 0
