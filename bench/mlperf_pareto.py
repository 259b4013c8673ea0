"""Pareto tables of the trained MLPerf Tiny models: ``dynfix sweep`` over bit widths x engine
candidates x placement seeds, synthesized, per board.

For each model (the trained ones of ``models/mlperf_tiny``; calibration and labelled test
inputs from ``bench/mlperf_data.py``, written once as ``.npz`` files into the work folder)
and its boards, one sweep (:func:`dynfix.sweep`, a Dask ``LocalCluster`` of ``--workers``
processes or ``--scheduler``): quantize once per bit width (greedy, on the calibration
inputs), fit the ``--candidates`` best engines by estimate, generate each and simulate a
few test inputs bit-exact, and synthesize each with ``--seeds`` nextpnr seeds through
``dynfix synth``'s timing closure on the board's PLL, so every latency is at the clock its
bitstream runs at. A seed's closure starts a little under the Fmax the MLPerf bench
recorded for the model on the board (``bench/results/mlperf_synth.json``, when there is
one), which saves the builds above it.

The sweep folders live in the work folder (default ``out/pareto``): a stopped run goes on
with ``--resume`` where it stopped (each finished point is kept). Writes
``bench/results/pareto_MODEL.md`` (the sweep's table with the Pareto front and the chosen
design per board, and how it was run), ``pareto_MODEL.json`` (every point) and
``pareto_MODEL.png`` (latency against LUTs).

    python bench/mlperf_pareto.py [--models dscnn,resnet8] [--boards icebreaker,ulx3s]
                                  [--bits 8,8/4/4] [--candidates 3] [--seeds 3]
                                  [--workers N | --scheduler tcp://host:8786]
                                  [--work out/pareto] [--resume] [--no-synth]

A ULX3S build of these engines takes 15 to 60 minutes and the iCEBreaker's a few: the
default grid (2 widths x 3 candidates x 3 seeds = 18 builds per model and board, each one
or two place-and-routes) is hours on one machine; that is what ``--scheduler`` is for.
``--no-synth`` runs the grid without synthesis (estimated LUTs, latency at the oscillator,
labelled so) in minutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, rebuild_closure, write_result  # noqa: E402

import dynfix  # noqa: E402
from dynfix.boards.closure import ClosurePolicy  # noqa: E402
from dynfix.workflow.sweep_report import markdown  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "models" / "mlperf_tiny"
#: Bench model name -> (file and ``mlperf_data`` name, what it is).
MODELS = {"dscnn": ("dscnn", "DS-CNN (keyword spotting)"),
          "resnet8": ("resnet8", "ResNet-8 (CIFAR-10 image classification)"),
          "mobilenet_v1_025": ("vww", "MobileNetV1 0.25 (visual wake words)"),
          "autoencoder": ("ad", "FC autoencoder (anomaly detection)")}
#: Calibration and test inputs per model (``bench/mlperf_data.py``'s defaults).
CALIB, TEST = 64, 200


def write_data(name: str, work: Path) -> tuple[Path, Path]:
    """The model's calibration inputs and labelled test inputs as ``.npz`` files (x, and y
    where ``mlperf_data`` knows the classes) in ``work``; written once."""
    from mlperf_data import inputs, labels

    short = MODELS[name][0]
    work.mkdir(parents=True, exist_ok=True)
    calib, test = work / f"{short}_calib.npz", work / f"{short}_test.npz"
    if not calib.exists():
        np.savez(calib, x=inputs(short, "calib", CALIB))
    if not test.exists():
        arrays = {"x": inputs(short, "test", TEST)}
        try:
            arrays["y"] = labels(short, "test", TEST)
        except Exception:       # no classes known: the sweep measures agreement and SQNR
            pass
        np.savez(test, **arrays)
    return calib, test


def recorded_fmax(name: str, board: str) -> float | None:
    """The Fmax of the MLPerf bench's synthesized engine of the trained ``name`` on
    ``board`` at 8 bits (``mlperf_synth.json``), or None."""
    path = OUT / "mlperf_synth.json"
    if not path.exists():
        return None
    row = json.loads(path.read_text()).get(f"{name} {board} 8 trained")
    return row.get("fmax") if row else None


def closure_for(name: str, board: str) -> ClosurePolicy:
    """The seeds' timing closure: placed for the recorded Fmax with the PLL a little under
    it, else from the board's highest clock (``dynfix synth``'s default)."""
    fmax = recorded_fmax(name, board)
    if not fmax:
        return ClosurePolicy(builds=2)
    return rebuild_closure(round(fmax, 2), builds=2)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(name: str, board: str, args, work: Path) -> dict:
    """One sweep of ``name`` on ``board``: its results (``results.json``)."""
    calib, test = write_data(name, work)
    out = work / f"sweep-{name}-{board}"
    r = dynfix.sweep(
        MODELS_DIR / f"{MODELS[name][0]}.onnx", test, calib=calib, boards=[board],
        bits=args.bits, candidates=args.candidates, seeds=args.seeds, synth=args.synth,
        images=args.images, output=out, scheduler=args.scheduler, workers=args.workers,
        resume=args.resume and out.exists(), closure=closure_for(name, board), progress=say)
    say(f"{name} on {board}: {len(r.ok)} points ok, {len(r.failed)} failed")
    return json.loads((r.output / "results.json").read_text())


def report(name: str, results: list[tuple[str, dict]], args, command: str) -> list[str]:
    """``pareto_MODEL.md``: how it was run, then each board's sweep table."""
    lines = [f"# Pareto front: trained {MODELS[name][1]}", "",
             f"Generated by `bench/mlperf_pareto.py` with `dynfix sweep`: bit widths "
             f"{args.bits}, the {args.candidates} best engines by estimate per board and "
             f"width, "
             + (f"nextpnr seeds 1..{args.seeds} through `dynfix synth`'s timing closure on "
                f"the board's PLL (latency at the clock the bitstream runs at)" if args.synth
                else "not synthesized (latency and LUTs are estimates)")
             + f"; {args.images} test inputs simulated bit-exact per design. Calibration: "
             f"{CALIB} inputs of `bench/mlperf_data.py`; accuracy on its {TEST} held-out "
             f"test inputs. Reproduce: `{command}`.", ""]
    for board, res in results:
        table = markdown(res).split("\n", 2)[2].strip()
        lines += [f"<!-- {board} -->", table, ""]
    return lines


def _shown(argv: list[str]) -> list[str]:
    """The arguments as the results file shows them: without ``--work`` (a local path) and
    ``--resume`` (how, not what, was run)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--work":
            skip = True
        elif a != "--resume" and not a.startswith("--work="):
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="dscnn,resnet8")
    ap.add_argument("--boards", default="icebreaker,ulx3s")
    ap.add_argument("--bits", default="8,8/4/4", help="bit widths, comma-separated")
    ap.add_argument("--candidates", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--images", type=int, default=2, help="test inputs simulated per design")
    ap.add_argument("--workers", type=int, default=None, help="LocalCluster processes")
    ap.add_argument("--scheduler", default=None, help="a Dask scheduler's address")
    ap.add_argument("--work", default=str(ROOT / "out" / "pareto"),
                    help="folder of the data files and sweep folders")
    ap.add_argument("--resume", action="store_true", help="go on with the sweeps in --work")
    ap.add_argument("--no-synth", dest="synth", action="store_false",
                    help="no synthesis: estimates only")
    args = ap.parse_args(argv)
    work = Path(args.work)
    command = "python bench/mlperf_pareto.py " + " ".join(_shown(argv if argv is not None
                                                                 else sys.argv[1:]))
    for name in args.models.split(","):
        if name not in MODELS:
            sys.exit(f"unknown model {name!r}: one of {', '.join(MODELS)}")
        results = [(board, run(name, board, args, work)) for board in args.boards.split(",")]
        write_result(f"pareto_{name}.md", report(name, results, args, command.strip()))
        (OUT / f"pareto_{name}.json").write_text(json.dumps(
            {board: res for board, res in results}, indent=1, sort_keys=True) + "\n")
        pngs = [(board, work / f"sweep-{name}-{board}" / "pareto.png") for board, _ in results]
        for board, png in pngs:
            if png.exists():
                suffix = "" if len(pngs) == 1 else f"_{board}"
                shutil.copyfile(png, OUT / f"pareto_{name}{suffix}.png")


if __name__ == "__main__":
    main()
