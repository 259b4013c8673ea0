"""Output-fidelity refinement: a coordinate descent of the greedy search's fl choices.

The greedy search fixes each layer's formats once, by that layer's own error. The
refinement then revisits every choice against what the user sees, the *network output* on
the calibration batch (:mod:`.fidelity`: top-1 agreement with the float model first and
output SQNR as the tie-break for class outputs, output SQNR otherwise):

* coordinates, in network order: the input's fl, then per layer with a format its
  ``fl_out`` and, for a compute layer, its ``fl_w``;
* candidates: the current value +-1 and +-2; each is scored by running the integer model
  from that layer on (the layers before it keep their integers), and the best candidate
  replaces the current value only if it scores strictly better, and, when it gains output
  SQNR only (not a higher agreement band), lowers the squared output error by more than
  two standard errors of the per-input changes: on few calibration inputs a descent
  otherwise fits their noise (MobileNetV1 on 64 inputs of 2 outputs: +0.87 dB on them,
  -0.84 dB on the test inputs);
* one pass: at most four partial forward passes per coordinate, so the cost is bounded by
  about ``4 x (1 + 2 x layers)`` half-network forwards on at most
  ``search.REFINE_SAMPLES`` inputs.

A changed ``fl_w`` rounds the model's own weights to nearest at the new fl (weights that
adaptive rounding chose at the old fl are not reused); a bias keeps any correction. Every
accepted step improves the objective, so the result is never worse than the start.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from dynfix.errors import DynfixError
from . import fixed
from .fidelity import Fidelity, Objective, fidelity, output_name
from .int_model import (accumulate, add_sum, apply_plain, bias_integers, check_spec,
                        has_format, is_compute, is_sum, narrow, plain_input, weight_array)
from .ir import Model
from .lower import lower
from .qspec import QuantSpec

STEPS = (-2, -1, 1, 2)
SIGMAS = 2.0            # a step's SQNR gain must exceed this many standard errors


class Evaluator:
    """Scores a spec and its parameters on a calibration batch against the float output
    (the integer arithmetic runs on ``lower(model)``, as the integer model's does)."""

    def __init__(self, model: Model, x: np.ndarray, ref: np.ndarray):
        self.model, self.x = lower(model), x
        self.ref = np.asarray(ref, np.float64).reshape(len(x), -1)
        self.out = output_name(self.model)
        self.index = {layer.name: i for i, layer in enumerate(self.model.layers)}

    def on(self, model: Model) -> "Evaluator":
        """The same scoring with the integers run on ``model``'s layers: a rescaled copy
        of this one (quant/fill.py, other Clip bounds), whose spec carries the scales."""
        ev = copy.copy(self)
        ev.model = lower(model)
        return ev

    def run(self, spec: QuantSpec, params: dict, trace: dict | None = None, start: int = 0
            ) -> tuple[dict, Fidelity]:
        """The integer trace (layers from ``start`` on recomputed, earlier tensors taken
        from ``trace``) and its score."""
        model = self.model
        fmts = check_spec(model, spec)
        if start == 0 or trace is None:
            t = {model.input_name: fixed.quantize(self.x * spec.input_scale, spec.input_bw,
                                                  spec.input_fl, spec.input_zp)}
            start = 0
        else:
            t = dict(trace)
        for layer in model.layers[start:]:
            x = t[layer.inputs[0]]
            f = spec.layers.get(layer.name)
            if is_sum(layer):
                y = narrow(add_sum(x, t[layer.inputs[1]], f), f)
            elif is_compute(layer):
                p = params[layer.name]
                bq = bias_integers(p.b, f)
                y = narrow(accumulate(layer, x, p.integers(f.bw_w), bq, f), f)
            else:
                y = apply_plain(layer, plain_input(layer, t), fmts[layer.inputs[0]])
            t[layer.name] = y
        fo = fmts[self.out]
        y = fixed.dequantize(t[self.out], fo.fl, fo.zp).reshape(len(self.x), -1)
        y /= spec.output_scale
        return t, fidelity(self.ref, y, errors=True)

    def score(self, spec: QuantSpec, params: dict) -> Fidelity:
        return self.run(spec, params)[1]


def _holds(objective: Objective, new: Fidelity, cur: Fidelity) -> bool:
    """Whether a step that scores better than ``cur`` is more than a fit to the batch's
    noise. One that gains output SQNR must lower the squared error by more than
    :data:`SIGMAS` standard errors of its per-input changes (a paired test: few inputs, or
    changes that help some inputs and hurt others, do not pass). One that reaches a higher
    agreement band is kept when it agrees on more than the objective's tolerance more
    inputs, or passes the same paired test: the bands have fixed edges, so one borderline
    input can cross one, and a step that buys it with output error fits the batch (DS-CNN
    at 8 bits: a weight format 2 bits coarser, -1.6 dB, for one calibration input)."""
    d = new.errors - cur.errors
    if len(d) < 2:
        paired = bool(d.sum() < 0)
    else:
        paired = bool(d.sum() < -SIGMAS * d.std(ddof=1) * np.sqrt(len(d)))
    if objective.key(new)[:-1] != objective.key(cur)[:-1]:
        return new.agree - cur.agree > objective.tol or paired
    return paired


def refine(ev: Evaluator, objective: Objective, ctx: Any, fls: dict[str, int],
           params: dict[str, Any], fid: Fidelity, say: Callable[[str], None],
           zps: dict[str, int], finest: dict[str, int] | None = None
           ) -> tuple[dict[str, int], dict[str, Any], Fidelity]:
    """One coordinate-descent pass (see the module docstring) from the choices ``fls`` and
    ``params`` (``search.Params`` by layer) scoring ``fid``, better by ``objective.key``;
    ``ctx`` is the search (its ``model`` and ``build``), ``zps`` the map offsets (kept).
    ``finest``: the finest fl each map may take (the search's headroom: a finer format
    scores better on the calibration batch only because new inputs are not in it).
    Returns the improved choices, parameters and score."""
    model = ctx.model
    trace, _ = ev.run(ctx.build(fls, params, zps), params)
    coords = [(model.input_name, "fl")]
    for layer in model.layers:
        if has_format(layer):
            coords.append((layer.name, "fl"))
            if is_compute(layer):
                coords.append((layer.name, "w"))
    moved = 0
    ties = getattr(ctx, "ties", {})
    for name, kind in coords:
        # Maps joined into one (search.tied_maps) move together, from the first of them.
        group = ties.get(name, (name,)) if kind == "fl" else (name,)
        if name != group[0]:
            continue
        start = min(0 if n == model.input_name else ev.index[n] for n in group)
        base = fls[name] if kind == "fl" else params[name].fl_w
        best = None
        for d in STEPS:
            c_fls, c_params = fls, params
            if kind == "fl":
                if finest is not None and any(base + d > finest.get(n, base + d)
                                              for n in group):
                    continue
                c_fls = {**fls, **{n: base + d for n in group}}
            else:
                own = weight_array(model.layer(name))
                c_params = {**params, name: replace(params[name], w=own, fl_w=base + d)}
            try:
                spec = ctx.build(c_fls, c_params, zps)
                t, f = ev.run(spec, c_params, trace, start)
            except DynfixError:                     # a format the arithmetic cannot hold
                continue
            if objective.key(f) > objective.key(best[3] if best else fid) \
                    and _holds(objective, f, fid):
                best = (c_fls, c_params, t, f)
        if best is not None:
            fls, params, trace, fid = best
            moved += 1
            new = fls[name] if kind == "fl" else params[name].fl_w
            say(f"refine: {name} {'fl' if kind == 'fl' else 'fl_w'} {base} -> {new}: "
                f"{fid.text()}")
    say(f"refine: {moved} of {len(coords)} choices changed; {fid.text()}")
    return fls, params, fid
