"""How close a quantized model's output is to the float model's: the measures and the rule
that picks one.

Three measures, all on the model's *output* (the logits: a trailing Softmax is left out, it
runs on the host and keeps the class):

* **top-1 accuracy** against labels (only when the output is classes and labels exist);
* **top-1 agreement** with the float model: the fraction of inputs whose argmax is the same;
* **output SQNR** against the float model: ``10 log10(sum f^2 / sum (f - q)^2)`` over every
  output value of every input (dB; +inf when equal).

Which output is "classes" (:func:`output_kind`): a model whose last layer is a Softmax or a
Sigmoid, or whose output is a flat vector of 2 to ``MAX_CLASSES`` values, fewer than its
input has. Any other output (an autoencoder's reconstruction, a regression value, a feature
map) is "values", and top-1 measures do not apply to it. A single output is a binary
classifier's logit (a trailing Sigmoid's input): its class is 1 when it is positive, i.e.
when the sigmoid is above 0.5 (:func:`top1`).

The quantizer's ``objective`` (what its refinement maximizes on calibration data) and
``dynfix evaluate --metric`` use the same rule for ``auto``: agreement first, SQNR as the
tie-break, for classes; SQNR for values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dynfix.errors import DynfixError
from .float_model import forward
from .int_model import IntModel
from .ir import Model
from .qspec import QuantSpec

MAX_CLASSES = 1000
OBJECTIVES = ("auto", "agreement", "sqnr")
METRICS = ("auto", "accuracy", "agreement", "sqnr")


def output_name(model: Model) -> str:
    """The tensor compared with the float model: the last layer's, before any trailing
    Softmax (the logits)."""
    for layer in reversed(model.layers):
        if not layer.host:
            return layer.name
    return model.input_name


def output_kind(model: Model) -> str:
    """'classes' or 'values' (see the module docstring)."""
    if model.layers[-1].host:
        return "classes"
    shape = tuple(model.output_shape)
    n_in = int(np.prod(model.input_shape))
    if len(shape) == 1 and 2 <= shape[0] <= MAX_CLASSES and shape[0] < n_in:
        return "classes"
    return "values"


def resolve_objective(model: Model, objective: str) -> str:
    """'agreement' or 'sqnr' for an ``objective`` of auto / agreement / sqnr."""
    if objective not in OBJECTIVES:
        raise DynfixError(f"unknown objective {objective!r}; choose one of "
                          f"{', '.join(OBJECTIVES)}")
    if objective != "auto":
        return objective
    return "agreement" if output_kind(model) == "classes" else "sqnr"


def sqnr_db(ref: np.ndarray, approx: np.ndarray) -> float:
    """10 log10(signal power / noise power); +inf when there is no error."""
    ref = np.asarray(ref, dtype=np.float64)
    noise = float(((ref - approx) ** 2).sum())
    signal = float((ref ** 2).sum())
    if noise == 0:
        return float("inf")
    if signal == 0:
        return float("-inf")
    return 10.0 * np.log10(signal / noise)


def top1(scores: np.ndarray) -> np.ndarray:
    """Argmax per input (ties: the lowest index) of an N x ... score array of logits; for
    a single score per input (a binary classifier's logit), 1 where it is positive."""
    s = np.asarray(scores)
    s = s.reshape(len(s), -1)
    if s.shape[1] == 1:
        return (s[:, 0] > 0).astype(np.int64)
    return s.argmax(axis=1)


def float_logits(model: Model, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    """The float model's outputs at :func:`output_name` (before a trailing Softmax or
    Sigmoid: what :func:`top1` reads), N x values float32."""
    out = output_name(model)
    return np.concatenate([forward(model, x[i:i + batch], keep={out})[out]
                           .reshape(len(x[i:i + batch]), -1)
                           for i in range(0, len(x), batch)])


def agreement(ref: np.ndarray, approx: np.ndarray) -> float:
    """Fraction of inputs whose top-1 class is the same in both score arrays."""
    return float(np.mean(top1(ref) == top1(approx)))


@dataclass(frozen=True)
class Fidelity:
    """Top-1 agreement (``agree`` of ``n`` inputs) and output SQNR (dB) of a quantized
    output against float."""

    agree: int
    n: int
    sqnr_db: float
    #: Each input's squared output error (what the refinement tests a step's gain on,
    #: :mod:`.refine`); None unless asked for.
    errors: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def agreement(self) -> float:
        return self.agree / self.n if self.n else 0.0

    def text(self) -> str:
        return f"agreement {100 * self.agreement:.2f} %, output SQNR {self.sqnr_db:.2f} dB"


def fidelity(ref: np.ndarray, approx: np.ndarray, errors: bool = False) -> Fidelity:
    """The measures of ``approx`` (dequantized outputs, one row per input) against the
    float ``ref``; with ``errors``, also each input's squared error."""
    e = ((np.asarray(ref, np.float64) - approx) ** 2).reshape(len(ref), -1).sum(axis=1) \
        if errors else None
    return Fidelity(int(np.sum(top1(ref) == top1(approx))), len(ref), sqnr_db(ref, approx),
                    e)


def agreement_tolerance(f: Fidelity) -> int:
    """Agreement counts within this many inputs of ``f``'s tie (the objective's
    resolution): a count of ``m`` disagreeing inputs is uncertain by about ``sqrt(m)``
    (borderline inputs flip either way), so ``round(sqrt(m + 1))``, at least one."""
    return max(1, round(math.sqrt(f.n - f.agree + 1)))


@dataclass(frozen=True)
class Objective:
    """How two :class:`Fidelity` values on the same calibration inputs compare
    (:meth:`key`: larger is better).

    ``sqnr``: output SQNR. ``agreement``: top-1 agreement first, output SQNR as the
    tie-break; agreement counts are compared in bands of ``2 * tol + 1`` inputs centred on
    the ``anchor`` count (greedy-paper's), so a search keeps a choice that raises SQNR while
    it changes agreement by no more than ``tol`` inputs (:func:`agreement_tolerance`: a few
    flipped borderline inputs are noise) and prefers one a whole band higher. ``tol = 0``
    is plain lexicographic order.
    """

    name: str
    anchor: int = 0
    tol: int = 0

    def key(self, f: Fidelity) -> tuple[float, ...]:
        s = f.sqnr_db if not math.isnan(f.sqnr_db) else float("-inf")
        if self.name == "sqnr":
            return (s,)
        return ((f.agree - self.anchor + self.tol) // (2 * self.tol + 1), s)


def outputs(model: Model, spec: QuantSpec, x: np.ndarray, qmodel: Model | None = None,
            batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """The float model's and the integer model's (dequantized) outputs at
    :func:`output_name`, both N x values float64. ``qmodel``: the model with the spec's
    adjusted parameters, if any (default ``model``)."""
    out = output_name(model)
    im = IntModel(qmodel if qmodel is not None else model, spec)
    f, q = [], []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        f.append(forward(model, xb, keep={out})[out].reshape(len(xb), -1))
        q.append(im.dequantize(out, im.forward(im.quantize_input(xb))[out])
                 .reshape(len(xb), -1))
    return np.concatenate(f).astype(np.float64), np.concatenate(q)
