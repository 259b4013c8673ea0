"""``dynfix compress MODEL --svd LAYER=RANK --output M2.onnx|M2.yaml``: replace fully connected
layers by low-rank pairs (truncated SVD) before quantization. ``--lowrank LAYER=RANK`` and/or
``--speedup X`` (with ``--calib DATA``) split convolutions into a k x k conv into RANK channels
and a 1 x 1 conv, fitted on the calibration responses (Zhang et al.: docs/compression.md).
``--prune LAYER=FRACTION`` and/or ``--prune-target F`` (with ``--calib``) first remove whole
channels (filters), per-layer fractions from a sensitivity sweep, so the engine runs fewer
cycles and stores fewer weights; ``--prune-multiple N`` keeps multiples of the engine's
tile."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict

from . import MODEL_HELP

#: :data:`dynfix.quant.lowrank_conv.METHODS`, spelled here so ``--help`` loads no numpy.
METHODS = ("asymmetric", "nonlinear", "linear", "svd")
#: :data:`dynfix.quant.pruning.RANKINGS` and ``MEASURES``, likewise.
RANKINGS = ("response", "l1")
MEASURES = ("macs", "weights")


def finite(v: float) -> float | None:
    """``v``, or None for an infinite SQNR (no error), which JSON cannot hold."""
    return v if math.isfinite(v) else None


def run(args: argparse.Namespace) -> int:
    from dynfix import api          # deferred: see dynfix.commands
    r = api.compress(args.model, args.svd, args.output,
                     lowrank=",".join(args.lowrank) if args.lowrank else None,
                     speedup=args.speedup, calib=args.calib, lowrank_method=args.lowrank_method,
                     prune=",".join(args.prune) if args.prune else None,
                     prune_target=args.prune_target, prune_by=args.prune_by,
                     prune_rank=args.prune_rank, prune_multiple=args.prune_multiple)
    name = r.model.name                 # compress keeps the model's name
    p = r.pruning
    if args.json:
        pruning = None if p is None else {
            "layers": [asdict(x) for x in p.layers],
            "families": [{**asdict(f), "sweep": [{**asdict(x), "sqnr_db": finite(x.sqnr_db)}
                                                 for x in f.sweep]} for f in p.families],
            "blocked": p.blocked, "rank": p.rank, "macs_before": p.macs_before,
            "macs_after": p.macs_after, "weights_before": p.weights_before,
            "weights_after": p.weights_after, "calib_sqnr_db": finite(p.sqnr_db),
            "calib_agreement": p.agreement, "multiple": p.multiple}
        print(json.dumps({"model": name, "output": str(r.path), "pruning": pruning,
                          "layers": [asdict(x) for x in r.layers],
                          "conv_layers": [asdict(x) for x in r.conv_layers],
                          "skipped": r.skipped, "conv_macs_before": r.conv_macs_before,
                          "conv_macs_after": r.conv_macs_after, "macs_before": r.macs_before,
                          "macs_after": r.macs_after,
                          "params_before": r.params_before, "params_after": r.params_after}))
        return 0
    if p is not None:
        for f in p.families:
            if f.pruned:
                print(f"{f.name}: {f.pruned}/{f.units} channels pruned")
        for x in p.layers:
            if x.weights_after != x.weights_before:
                print(f"{x.layer}: {x.out_before} -> {x.out_after} outputs, {x.in_before} -> "
                      f"{x.in_after} inputs, {x.macs_before} -> {x.macs_after} MACs, "
                      f"{x.weights_before} -> {x.weights_after} weights")
        for layer, why in p.blocked.items():
            print(f"{layer}: not pruned ({why})")
        tile = f", kept channels multiples of {p.multiple}" if p.multiple > 1 else ""
        print(f"pruned ({p.rank} ranking{tile}): {p.macs_before} -> {p.macs_after} MACs, "
              f"{p.weights_before} -> {p.weights_after} weights; calibration output SQNR "
              f"{p.sqnr_db:.2f} dB, agreement {100 * p.agreement:.1f} %")
    for x in r.conv_layers:
        print(f"{x.layer}: rank {x.rank}/{x.filters}, {x.macs_before} -> {x.macs_after} MACs, "
              f"{x.params_before} -> {x.params_after} parameters, relative error "
              f"{x.error:.3f} ({x.method}{', after the ReLU' if x.relu else ''}; weight SVD "
              f"{x.err_svd:.3f}, linear {x.err_linear:.3f}, nonlinear "
              f"{x.err_nonlinear:.3f}, asymmetric {x.err_asymmetric:.3f})")
    for layer, why in r.skipped.items():
        print(f"{layer}: not decomposed ({why})")
    if r.conv_layers:
        print(f"convolutions: {r.conv_macs_before} -> {r.conv_macs_after} MACs "
              f"({r.conv_macs_before / max(r.conv_macs_after, 1):.2f}x)")
    for x in r.layers:
        print(f"{x.layer}: rank {x.rank}, {x.params_before} -> {x.params_after} weights, "
              f"relative error {x.rel_error:.3f}")
    print(f"model {name}: {r.params_before} -> {r.params_after} parameters, {r.macs_before} "
          f"-> {r.macs_after} MACs; wrote {r.path}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("compress", help="low-rank layers and channel pruning",
                              description=__doc__)
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--svd", action="append", metavar="LAYER=RANK",
                   help="factor this Linear layer through a RANK-wide bottleneck "
                        "(repeatable)")
    p.add_argument("--lowrank", action="append", metavar="LAYER=RANK[,...]",
                   help="split this conv into a k x k conv into RANK channels and a 1 x 1 "
                        "conv, fitted on --calib (repeatable)")
    p.add_argument("--speedup", type=float, metavar="X",
                   help="choose the ranks of the other convs so the convolutions' MACs fall "
                        "X-fold (greedy on the responses' PCA energy; needs --calib)")
    p.add_argument("--prune", action="append", metavar="LAYER=FRACTION[,...]",
                   help="remove this fraction of the Conv2d/Linear layer's output channels "
                        "(and of the layers tied to it by a residual Add), fitted on --calib "
                        "(repeatable)")
    p.add_argument("--prune-target", type=float, metavar="F",
                   help="remove this fraction of the model's MACs (or --prune-by weights) "
                        "by channel pruning, per-layer fractions from a sensitivity sweep "
                        "on --calib")
    p.add_argument("--prune-multiple", type=int, default=1, metavar="N",
                   help="round every pruned layer's kept channel count up to a multiple of "
                        "N: the engine's tm (output channels per group), so that only whole "
                        "groups go and every channel pruned saves cycles (default 1)")
    p.add_argument("--prune-by", choices=MEASURES, default="macs",
                   help="what --prune-target is a fraction of (default macs)")
    p.add_argument("--prune-rank", choices=RANKINGS, default="response",
                   help="which channels go first: response (default: the least error in "
                        "the next layers' responses on --calib) or l1 (smallest filter L1 "
                        "norm)")
    p.add_argument("--calib", metavar="DATA",
                   help="calibration inputs for --lowrank/--speedup/--prune: digits (its "
                        "calib split), X.npy or D.npz")
    p.add_argument("--lowrank-method", choices=METHODS, default="asymmetric",
                   help="how the conv factors are fitted: asymmetric (default: nonlinear "
                        "and correcting earlier layers' error), nonlinear, linear (PCA of "
                        "the responses) or svd (of the weights, data-blind)")
    p.add_argument("--output", "-o", required=True, metavar="M2.onnx|M2.yaml",
                   help="where to write the compressed model")
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.set_defaults(func=run)
