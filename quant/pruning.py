"""Structured pruning: whole output channels (filters) removed, fitted without retraining.

Han et al. (2015) prune single weights by magnitude with per-layer thresholds from a
sensitivity sweep; the engine would only profit from that if its schedule skipped zero
weight words, which it does not. This module prunes in the structured form the engine
profits from as it is (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017):
whole output channels of Conv2d and Linear layers are removed from the model, together
with everything that carries those channels (a depthwise conv's filter, an affine's entry,
an Add's other operand, a Concat's slice, a Flatten's block of features) and the matching
input channels of the layers that read them. The pruned model is an ordinary, smaller float
model: the compiler gives it fewer cycles and fewer weight words by itself.

**Units.** :func:`channel_units` walks the graph and labels each channel of each tensor with
the *unit* it belongs to: a filter of a producer (a groups=1 Conv2d or a Linear), merged
with the filters an Add ties it to (both operands of a residual Add lose the same channel,
so the two producers' filters are one unit). A unit is removed whole. Units are *blocked*
(never pruned) when their channels are the model's input or output, feed a grouped
(non-depthwise) convolution, or reach a layer kind that mixes channels. Producers whose
units are tied by Adds form a *family*, pruned by one fraction (the sensitivity sweep's
"layer").

**Ranking** within a family: ``response`` (default) scores a unit by the error its removal
leaves in the responses of the layers that read it, on calibration data, after the bias
refit below, relative to each reader's response spread; ``l1`` by the L1 norms of its
filters (Li et al.), data-blind. Dead channels (zero after the ReLU on every input) score 0.

**Bias refit.** The readers of a removed channel lose its contribution; its mean over the
calibration data (the constant part) is added to their bias, as
:func:`~dynfix.quant.adjust.corrected_bias` does for rounding. A channel that is constant
on the calibration data (a dead one, or one whose filter is zero) is thus removed without
changing the readers' responses, except at a convolution's padded border.

**Per-family fractions** are given (``LAYER=FRACTION``) or chosen for a target share of
the model's MACs or weights removed (:func:`choose_counts`): a sensitivity sweep prunes
each family alone at fractions 1/16 .. 3/4 and measures the model output's SQNR against
the float model on the calibration data; every family then prunes as many units as keep
its own sweep SQNR above one common threshold, the highest threshold that meets the target.
Layers whose removal costs little (often the late, wide convolutions and the FC layers)
thus give up more channels than sensitive ones.

**On the engine's tile** (``multiple``): the engine computes ``tm`` output channels at a
time, so a layer's cycles fall only when ``ceil(kept / tm)`` does. With a multiple, every
pruned family's kept count is rounded *up* to a multiple of it (:func:`on_tile`): the
channels that would not have taken a whole group off stay (they save no cycles, and their
removal would cost accuracy); a target then takes whole groups from the families its
threshold allows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np

from dynfix.errors import DynfixError, literal
from .fidelity import agreement, output_name, sqnr_db
from .float_model import check_input, trace
from .ir import (Add, Affine, Concat, Conv2d, Flatten, GlobalAvgPool, Layer, Linear,
                 Model, Pool2d, Resize)

#: How units are ranked within a family (:func:`unit_scores`).
RANKINGS = ("response", "l1")
#: What a target fraction is a fraction of (:func:`measure`).
MEASURES = ("macs", "weights")
#: The sensitivity sweep's fractions of a family's units.
FRACTIONS = tuple(i / 16 for i in range(1, 13))
#: SQNR (dB) that stands for "no change" when sweep curves are interpolated.
SQNR_CAP = 300.0


# --- which channels go together ----------------------------------------------------------

class _UnionFind:
    """Units with union-find roots, each unit's owner (producer, filter) and block reason."""

    def __init__(self):
        self.parent: list[int] = []
        self.owner: list[tuple[str, int] | None] = []
        self.why: list[str] = []

    def new(self, n: int, owner: str | None = None, why: str = "") -> np.ndarray:
        start = len(self.parent)
        self.parent += range(start, start + n)
        self.owner += [(owner, j) if owner else None for j in range(n)]
        self.why += [why] * n
        return np.arange(start, start + n)

    def find(self, u: int) -> int:
        while self.parent[u] != u:
            self.parent[u] = self.parent[self.parent[u]]
            u = self.parent[u]
        return u

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
            self.why[ra] = self.why[ra] or self.why[rb]

    def block(self, units: np.ndarray, why: str) -> None:
        for u in units:
            r = self.find(int(u))
            self.why[r] = self.why[r] or why


def _reader(layer: Layer) -> bool:
    """A layer whose inputs' channels can shrink: a groups=1 Conv2d or a Linear."""
    return isinstance(layer, Linear) or (isinstance(layer, Conv2d) and layer.groups == 1)


def _depthwise(layer: Layer, in_shape) -> bool:
    """A Conv2d with one input channel per group (a depthwise conv, any multiplier)."""
    return (isinstance(layer, Conv2d) and layer.groups > 1
            and layer.weight.shape[1] == 1 and layer.groups == in_shape[0])


@dataclass
class Channels:
    """Every tensor's channels (or features) labelled by unit root; the roots that may be
    pruned, by family (tuple of producer names in model order), and why the others may not."""

    roots: dict[str, np.ndarray]
    families: dict[tuple[str, ...], list[int]]
    #: unit root -> the (producer, filter) pairs removed with it
    members: dict[int, list[tuple[str, int]]]
    #: producer -> why none of its filters may be removed (producers with some prunable
    #: filters are not listed)
    blocked: dict[str, str]

    def keep(self, tensor: str, pruned: set[int]) -> np.ndarray:
        """Mask of the channels of ``tensor`` that stay when the units ``pruned`` go."""
        r = self.roots[tensor]
        return ~np.isin(r, list(pruned)) if pruned else np.ones(len(r), bool)


def channel_units(model: Model) -> Channels:
    """Label the channels of every tensor of ``model`` with their units (module docstring)."""
    uf = _UnionFind()
    units = {model.input_name: uf.new(model.input_shape[0], why="it is the model input")}
    for layer in model.layers:
        ins = [units[t] for t in layer.inputs]
        shapes = model.in_shapes(layer)
        if _reader(layer):
            out = uf.new(layer.weight.shape[0], layer.name)
        elif _depthwise(layer, shapes[0]):
            out = np.repeat(ins[0], layer.weight.shape[0] // layer.groups)
        elif isinstance(layer, Add):
            for a, b in zip(ins[0], ins[1]):
                uf.union(int(a), int(b))
            out = ins[0]
        elif isinstance(layer, Concat):
            out = np.concatenate(ins)
        elif isinstance(layer, Flatten):
            out = np.repeat(ins[0], int(np.prod(shapes[0][1:], dtype=np.int64)))
        elif (isinstance(layer, (Affine, GlobalAvgPool, Pool2d, Resize))
              or (layer.elementwise and not layer.host)
              or (layer.host and layer is model.layers[-1])):
            out = ins[0]
        else:
            why = (f"its channels reach {layer.name!r}, a grouped convolution"
                   if isinstance(layer, Conv2d) else
                   f"its channels reach {layer.name!r} ({layer.op}), which mixes them")
            for u in ins:
                uf.block(u, why)
            n = layer.out_shape[0] if layer.out_shape else 1
            out = uf.new(n, why=f"it follows {layer.name!r} ({layer.op})")
        units[layer.name] = out
    uf.block(units[model.output_name], "its channels are the model output")
    roots = {t: np.array([uf.find(int(u)) for u in us], np.int64) for t, us in units.items()}
    members: dict[int, list[tuple[str, int]]] = {}
    for u, own in enumerate(uf.owner):
        if own is not None:
            members.setdefault(uf.find(u), []).append(own)
    order = {layer.name: i for i, layer in enumerate(model.layers)}
    families: dict[tuple[str, ...], list[int]] = {}
    blocked: dict[str, str] = {}
    free: set[str] = set()
    for r, mem in members.items():
        names = tuple(sorted({p for p, _ in mem}, key=order.get))
        if uf.why[r]:
            for p in names:
                blocked.setdefault(p, uf.why[r])
        else:
            families.setdefault(names, []).append(r)
            free.update(names)
    for p in free:
        blocked.pop(p, None)
    families = dict(sorted(families.items(), key=lambda kv: order[kv[0][0]]))
    return Channels(roots, families, members, blocked)


# --- removing units ----------------------------------------------------------------------

def _weights(layer: Layer) -> int:
    return int(layer.weight_array().size) if layer.compute else 0


def measure(model: Model, by: str) -> int:
    """The model's MACs (``macs``) or its compute layers' weights (``weights``)."""
    if by == "macs":
        return int(sum(layer.macs(*model.in_shapes(layer)) for layer in model.layers))
    return int(sum(_weights(layer) for layer in model.layers))


def remove(model: Model, ch: Channels, pruned: set[int],
           corrections: dict[str, dict[int, np.ndarray]] | None = None) -> Model:
    """``model`` without the units ``pruned``: every layer copied, its parameters sliced to
    the channels that stay; each reader's bias gets ``corrections[reader][unit]`` (the
    removed channels' mean contribution) added for every removed unit it read."""
    layers = []
    for layer in model.layers:
        keep_in = ch.keep(layer.inputs[0], pruned) if layer.inputs else None
        keep_out = ch.keep(layer.name, pruned)
        new = replace(layer)
        if _reader(layer):
            w = layer.weight[keep_out][:, keep_in]
            b = None if layer.bias is None else layer.bias.astype(np.float64)
            gone = [u for u in (corrections or {}).get(layer.name, {}) if u in pruned]
            if gone:
                b = ((np.zeros(layer.weight.shape[0]) if b is None else b)
                     + sum(corrections[layer.name][u] for u in gone))
            new.weight = np.ascontiguousarray(w)
            new.bias = None if b is None else b[keep_out].astype(np.float32)
        elif isinstance(layer, Conv2d):            # depthwise (or grouped: untouched)
            if _depthwise(layer, model.in_shapes(layer)[0]):
                new.weight = np.ascontiguousarray(layer.weight[keep_out])
                new.bias = None if layer.bias is None else layer.bias[keep_out]
                new.groups = int(keep_in.sum())
        elif isinstance(layer, Affine):
            new.scale, new.shift = layer.scale[keep_out], layer.shift[keep_out]
        layers.append(new)
    return model.with_layers(layers)


# --- calibration statistics -----------------------------------------------------------

@dataclass
class UnitStats:
    """Per reader and unit it reads: the unit's mean contribution to the reader's outputs
    (the bias refit) and the response error its removal leaves after that refit, relative
    to the reader's response spread (the ``response`` ranking)."""

    mean: dict[str, dict[int, np.ndarray]]
    error: dict[str, dict[int, float]]


def unit_stats(model: Model, ch: Channels, x: np.ndarray) -> UnitStats:
    """:class:`UnitStats` of every prunable unit on the graph inputs ``x`` (the original
    model's maps, so each refit and score sees the unpruned network)."""
    prunable = {r for roots in ch.families.values() for r in roots}
    readers = [layer for layer in model.layers if _reader(layer)]
    maps = trace(model, x, keep={layer.inputs[0] for layer in readers})
    mean: dict[str, dict[int, np.ndarray]] = {}
    error: dict[str, dict[int, float]] = {}
    for layer in readers:
        xin = maps[layer.inputs[0]].astype(np.float64)
        roots = ch.roots[layer.inputs[0]]
        here = [int(r) for r in np.unique(roots) if int(r) in prunable]
        if not here:
            continue
        w = layer.weight.astype(np.float64)
        y = layer.products(xin, w)
        axes = (0,) + tuple(range(2, y.ndim))
        spread = float(((y - y.mean(axis=axes, keepdims=True)) ** 2).sum())
        mean[layer.name], error[layer.name] = {}, {}
        for r in here:
            sel = roots == r
            c = layer.products(xin[:, sel], w[:, sel])
            m = c.mean(axis=axes)
            mean[layer.name][r] = m
            dev = c - m.reshape((1, -1) + (1,) * (c.ndim - 2))
            error[layer.name][r] = float((dev ** 2).sum()) / max(spread, 1e-30)
    return UnitStats(mean, error)


def unit_scores(model: Model, ch: Channels, rank: str, stats: UnitStats | None
                ) -> dict[int, float]:
    """Each prunable unit's score (lower: pruned first) by ``rank`` (:data:`RANKINGS`)."""
    roots = [r for rs in ch.families.values() for r in rs]
    if rank == "response":
        return {r: sum(e.get(r, 0.0) for e in stats.error.values()) for r in roots}
    norms: dict[str, np.ndarray] = {}
    for name in {p for r in roots for p, _ in ch.members[r]}:
        w = np.abs(model.layer(name).weight.astype(np.float64))
        l1 = w.reshape(len(w), -1).sum(axis=1)
        norms[name] = l1 / max(float(l1.mean()), 1e-30)
    return {r: float(sum(norms[p][j] for p, j in ch.members[r])) for r in roots}


# --- reports -------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepPoint:
    """One family pruned alone by ``pruned`` of its ``units``: the float model's output
    SQNR (dB) and top-1 agreement against the unpruned model on the calibration inputs."""

    pruned: int
    units: int
    sqnr_db: float
    agreement: float

    @property
    def fraction(self) -> float:
        return self.pruned / self.units


@dataclass
class FamilyReport:
    """A family (its producers, tied by residual Adds) and how many of its units went."""

    name: str
    layers: tuple[str, ...]
    units: int
    pruned: int
    sweep: list[SweepPoint] = field(default_factory=list)


@dataclass(frozen=True)
class PruneLayerReport:
    """One compute layer before and after pruning."""

    layer: str
    op: str
    out_before: int
    out_after: int
    in_before: int
    in_after: int
    macs_before: int
    macs_after: int
    weights_before: int
    weights_after: int

    @property
    def sparsity(self) -> float:
        """Share of the layer's weights removed."""
        return 1 - self.weights_after / max(self.weights_before, 1)


@dataclass
class PruneResult:
    """The pruned model, per-layer and per-family reports, totals, and the pruned float
    model's output SQNR and agreement against the original on the calibration inputs."""

    model: Model = field(repr=False)
    layers: list[PruneLayerReport]
    families: list[FamilyReport]
    blocked: dict[str, str]
    rank: str
    macs_before: int
    macs_after: int
    weights_before: int
    weights_after: int
    sqnr_db: float
    agreement: float
    multiple: int = 1       # every pruned family keeps a multiple of this many channels


def layer_reports(before: Model, after: Model) -> list[PruneLayerReport]:
    """A :class:`PruneLayerReport` for each compute layer (same names in both models)."""
    rows = []
    for old in before.layers:
        if not old.compute:
            continue
        new = after.layer(old.name)
        rows.append(PruneLayerReport(
            old.name, old.op, old.out_shape[0], new.out_shape[0],
            before.in_shapes(old)[0][0], after.in_shapes(new)[0][0],
            old.macs(*before.in_shapes(old)), new.macs(*after.in_shapes(new)),
            _weights(old), _weights(new)))
    return rows


# --- choosing what to prune --------------------------------------------------------------

def parse_prune(items: list[str] | str) -> dict[str, float]:
    """``['c2=0.25,c3=0.5', 'fc=0.5']`` (or one such string) -> {'c2': 0.25, ...}."""
    parts = [p for item in ([items] if isinstance(items, str) else items)
             for p in item.split(",")]
    out: dict[str, float] = {}
    for p in parts:
        m = re.fullmatch(r"\s*([^=\s]+)\s*=\s*([0-9]*\.?[0-9]+)\s*", p)
        if not m:
            raise DynfixError(f"{{prune}} {literal(repr(p))}: expected LAYER=FRACTION (e.g. "
                              f"conv2=0.25)", ("prune",))
        if m.group(1) in out:
            raise DynfixError(f"{{prune}}: layer {literal(repr(m.group(1)))} is given twice",
                              ("prune",))
        out[m.group(1)] = float(m.group(2))
    if not out:
        raise DynfixError("nothing to prune: give at least one {prune} LAYER=FRACTION",
                          ("prune",))
    return out


def on_tile(units: int, pruned: int, multiple: int) -> int:
    """Units to prune of a family of ``units`` for ``pruned`` asked, so that the count it
    keeps is a multiple of ``multiple`` (the engine's tile): rounded up, i.e. the channels
    that would not take a whole tile off are kept. A family of at most ``multiple`` units
    keeps them all; one that is no multiple itself may keep all of them."""
    if multiple <= 1 or pruned <= 0:
        return pruned
    keep = min(units, -(-(units - pruned) // multiple) * multiple)
    return units - keep


def _family_counts(model: Model, ch: Channels, fractions: dict[str, float],
                   multiple: int = 1) -> dict[tuple[str, ...], int]:
    """Units to prune per family for the named layers' fractions (the kept counts rounded
    up to a ``multiple``, :func:`on_tile`)."""
    names = {layer.name for layer in model.layers}
    counts: dict[tuple[str, ...], int] = {}
    given: dict[tuple[str, ...], tuple[str, float]] = {}
    for name, f in fractions.items():
        if name not in names:
            raise DynfixError(f"{{prune}}: model {literal(repr(model.name))} has no layer "
                              f"{literal(repr(name))}", ("prune",))
        if not 0 <= f < 1:
            raise DynfixError(f"{{prune}} {literal(name)}={f:g}: the fraction must be at "
                              f"least 0 and below 1", ("prune",))
        fams = [k for k in ch.families if name in k]
        if not fams:
            layer = model.layer(name)
            why = (ch.blocked.get(name, "none of its channels may be removed")
                   if _reader(layer) else
                   f"it is a {layer.op} layer, not a Conv2d (groups=1) or Linear")
            raise DynfixError(f"{{prune}}: layer {literal(repr(name))} cannot be pruned: "
                              f"{literal(why)}", ("prune",))
        for k in fams:
            if k in given and given[k][1] != f:
                raise DynfixError(f"{{prune}}: layers {literal(repr(given[k][0]))} and "
                                  f"{literal(repr(name))} share their channels (a residual "
                                  f"Add) and must be pruned alike", ("prune",))
            given[k] = (name, f)
            n = len(ch.families[k])
            counts[k] = on_tile(n, min(int(round(f * n)), n - 1), multiple)
    return counts


def _pruned_set(ch: Channels, order: dict[tuple[str, ...], list[int]],
                counts: dict[tuple[str, ...], int]) -> set[int]:
    return {r for k, n in counts.items() for r in order[k][:n]}


def sweep(model: Model, ch: Channels, order: dict[tuple[str, ...], list[int]],
          stats: UnitStats, x: np.ndarray, ref: np.ndarray,
          fractions: tuple[float, ...] = FRACTIONS) -> dict[tuple[str, ...], list[SweepPoint]]:
    """The sensitivity sweep: each family pruned alone (its lowest-ranked units first) at
    each of ``fractions``, the output SQNR and agreement against ``ref`` (the unpruned
    model's logits on the graph inputs ``x``)."""
    out = output_name(model)
    curves: dict[tuple[str, ...], list[SweepPoint]] = {}
    for k, roots in ch.families.items():
        n = len(roots)
        counts = sorted({min(max(int(round(f * n)), 1), n - 1) for f in fractions} - {0})
        pts = []
        for c in counts:
            m = remove(model, ch, set(order[k][:c]), stats.mean)
            got = trace(m, x, keep={out})[out].reshape(len(x), -1)
            pts.append(SweepPoint(c, n, sqnr_db(ref, got), agreement(ref, got)))
        curves[k] = pts
    return curves


def _allowed(points: list[SweepPoint], threshold: float) -> int:
    """The most units a family may lose with its sweep SQNR (interpolated linearly between
    the swept counts, and made non-increasing) still at or above ``threshold``."""
    counts = [0] + [p.pruned for p in points]
    sq = np.minimum.accumulate([SQNR_CAP] + [float(np.clip(p.sqnr_db, -SQNR_CAP, SQNR_CAP))
                                             for p in points])
    best = 0
    for i in range(1, len(counts)):
        a, b = sq[i - 1], sq[i]
        if b >= threshold:
            best = counts[i]
            continue
        if a >= threshold:                  # crosses between the two swept counts
            t = (a - threshold) / max(a - b, 1e-12)
            best = counts[i - 1] + int(np.floor(t * (counts[i] - counts[i - 1])))
        break
    return best


def choose_counts(model: Model, ch: Channels, order: dict[tuple[str, ...], list[int]],
                  curves: dict[tuple[str, ...], list[SweepPoint]],
                  fixed: dict[tuple[str, ...], int], target: float, by: str,
                  multiple: int = 1) -> dict[tuple[str, ...], int]:
    """Units to prune per family so ``target`` of the model's ``by`` (:data:`MEASURES`) go:
    each family (other than the ``fixed`` ones) loses what keeps its sweep SQNR above a
    common threshold, its kept count rounded up to a ``multiple`` (:func:`on_tile`), at
    the highest threshold (by bisection) that meets the target."""
    total = measure(model, by)

    def counts_at(t: float) -> dict[tuple[str, ...], int]:
        return {**{k: on_tile(len(ch.families[k]), _allowed(curves[k], t), multiple)
                   for k in curves if k not in fixed}, **fixed}

    def removed(t: float) -> float:
        m = remove(model, ch, _pruned_set(ch, order, counts_at(t)))
        return 1 - measure(m, by) / total

    lo_t = -SQNR_CAP - 1
    most = removed(lo_t)
    if most < target:
        tile = (f", the kept counts rounded up to multiples of {multiple}" if multiple > 1
                else "")
        raise DynfixError(f"{{prune_target}} {target:g} is out of reach: the sweep's largest "
                          f"fractions{tile} remove {most:.3f} of the model's {by}",
                          ("prune_target",))
    lo, hi = lo_t, SQNR_CAP + 1                  # removed(lo) >= target > removed(hi)
    for _ in range(50):
        mid = (lo + hi) / 2
        if removed(mid) >= target:
            lo = mid
        else:
            hi = mid
    return counts_at(lo)


def prune(model: Model, x: np.ndarray, fractions: dict[str, float] | None = None,
          target: float | None = None, by: str = "macs", rank: str = "response",
          samples: int = 64, multiple: int = 1) -> PruneResult:
    """A new model with whole channels removed: the named layers' ``fractions`` (of their
    family's units) and/or the fractions the sensitivity sweep picks so ``target`` of the
    model's ``by`` (:data:`MEASURES`) go; units ranked by ``rank`` (:data:`RANKINGS`) and
    the readers' biases refitted, on up to ``samples`` of the calibration batch ``x`` (the
    user's data, in the model's layout). With a ``multiple`` (the engine's output channels
    per group, ``tm``) every pruned family keeps a multiple of it (:func:`on_tile`): only
    whole groups going save cycles."""
    if isinstance(multiple, bool) or not isinstance(multiple, (int, np.integer)) \
            or multiple < 1:
        raise DynfixError(f"{{prune_multiple}} {literal(repr(multiple))}: a number of "
                          f"channels, at least 1", ("prune_multiple",))
    if rank not in RANKINGS:
        raise DynfixError(f"{{prune_rank}} {literal(repr(rank))}: choose one of "
                          f"{', '.join(RANKINGS)}", ("prune_rank",))
    if by not in MEASURES:
        raise DynfixError(f"{{prune_by}} {literal(repr(by))}: choose one of "
                          f"{', '.join(MEASURES)}", ("prune_by",))
    if target is not None and not 0 < target < 1:
        raise DynfixError(f"{{prune_target}} must be above 0 and below 1, got {target:g}",
                          ("prune_target",))
    if not fractions and target is None:
        raise DynfixError("nothing to prune: give {prune} LAYER=FRACTION or a "
                          "{prune_target}", ("prune", "prune_target"))
    ch = channel_units(model)
    fixed = _family_counts(model, ch, fractions or {}, multiple)
    x = check_input(model, x)[:samples]
    stats = unit_stats(model, ch, x)
    scores = unit_scores(model, ch, rank, stats)
    order = {k: sorted(rs, key=lambda r: (scores[r], r)) for k, rs in ch.families.items()}
    out = output_name(model)
    ref = trace(model, x, keep={out})[out].reshape(len(x), -1)
    curves: dict[tuple[str, ...], list[SweepPoint]] = {}
    counts = dict(fixed)
    if target is not None:
        curves = sweep(model, ch, order, stats, x, ref)
        counts = choose_counts(model, ch, order, curves, fixed, target, by, multiple)
    new = remove(model, ch, _pruned_set(ch, order, counts), stats.mean)
    got = trace(new, x, keep={out})[out].reshape(len(x), -1)
    fams = [FamilyReport("+".join(k), k, len(rs), counts.get(k, 0), curves.get(k, []))
            for k, rs in ch.families.items()]
    return PruneResult(new, layer_reports(model, new), fams, dict(ch.blocked), rank,
                       measure(model, "macs"), measure(new, "macs"),
                       measure(model, "weights"), measure(new, "weights"),
                       sqnr_db(ref, got), agreement(ref, got), int(multiple))
