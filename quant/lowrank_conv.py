"""Low-rank convolutions fitted on the responses (Zhang, Zou, He, Sun, CVPR 2015 / TPAMI 2016).

A conv layer with ``d`` filters of size ``k x k x c`` computes, at each output position, a
response ``y = W x + b`` (``x`` the ``k^2 c`` input patch). Trained networks' responses lie
close to a low-dimensional subspace, far more than their weights are low rank, so the paper
approximates the *responses*: ``y ~ M y + c`` with ``M = P Q^T`` of rank ``d'``. The layer
then becomes two convolutions (:func:`split`): ``<name>_lr``, k x k x c -> d' without bias
(weights ``Q^T W``), and a 1 x 1 conv d' -> d that keeps the layer's name (so later layers and
the model output still refer to it), with weights ``P`` and bias ``P Q^T b + c``. MACs per
output position fall from ``k^2 c d`` to ``d' (k^2 c + d)``.

``M`` and ``c`` are fitted on responses sampled from calibration inputs, three ways:

* **linear** (:func:`fit_linear`): ``P = Q`` = the top ``d'`` eigenvectors of the responses'
  covariance (PCA), ``c = (I - M) mean(y)``: the subspace that keeps most response energy.
* **nonlinear** (:func:`fit_nonlinear`): when the layer feeds a ReLU ``r``, minimize
  ``sum ||r(y) - r(M y + c)||^2``: errors the ReLU zeroes cost nothing. The paper relaxes it
  with an auxiliary ``z``, ``||r(y) - r(z)||^2 + lam ||z - (M y + c)||^2``, and alternates a
  closed-form per-element ``z`` step (:func:`z_step`) with a reduced-rank regression of ``z``
  on ``y`` for ``M`` (the GSVD step, :class:`Regression`), 25 iterations at ``lam = 0.01`` and 25
  at ``lam = 1`` from the linear solution; the best solution of the true objective is kept,
  so it is never worse than the linear one on the calibration responses.
* **asymmetric** (the TPAMI version): the same, but the input to ``M`` is ``y^ = W x^ + b``
  with ``x^`` from the network whose earlier layers are already approximated, while the
  target ``r(y)`` comes from the original network: each layer corrects what the earlier ones
  got wrong (``min ||r(W x) - r(M W x^ + c)||``).

``svd``, the baseline: truncated SVD of the weight matrix ``W`` (d x k^2 c), blind to the data.

Ranks are given per layer or chosen for a whole-model speed-up of the convolutions
(:func:`select_ranks`): the paper's greedy maximization of the product of the layers' PCA
energies under the MAC budget. Grouped (depthwise) convolutions are left alone: their
filters see one channel each, there is no shared subspace to exploit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dynfix.errors import DynfixError, literal
from .float_model import check_input, trace
from .ir import Conv2d, Model, ReLU
from .svd import parse_ranks
from .layers.kernels import windows

SUFFIX = "_lr"
#: The ways to fit a layer's factors (:func:`compress_convs`), the paper's last the default.
METHODS = ("svd", "linear", "nonlinear", "asymmetric")
#: The paper's schedule for the relaxation weight: 25 iterations at each value.
LAMBDAS = (0.01,) * 25 + (1.0,) * 25
#: Response positions sampled per layer from the calibration inputs.
SAMPLES = 4000


@dataclass(frozen=True)
class Factors:
    """``y ~ P @ Qt @ y + c``: the rank-``d'`` map fitted on one layer's responses."""

    p: np.ndarray       # d x d'
    qt: np.ndarray      # d' x d
    c: np.ndarray       # d

    def apply(self, y: np.ndarray) -> np.ndarray:
        """The approximated responses of ``y`` (d x n)."""
        return self.p @ (self.qt @ y) + self.c[:, None]


@dataclass(frozen=True)
class ConvRankReport:
    """One decomposed conv: its rank, cost before/after and the relative error of each
    fit on the calibration responses (after the ReLU when the layer feeds one), all measured
    in the approximated network (input ``x^``) against the original network's responses."""

    layer: str
    rank: int
    filters: int
    relu: bool
    method: str
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    energy: float            # share of the response variance the top d' PCA directions hold
    err_svd: float
    err_linear: float
    err_nonlinear: float
    err_asymmetric: float

    @property
    def error(self) -> float:
        """The error of the fit the model uses."""
        return getattr(self, "err_" + self.method)


@dataclass
class LowRankResult:
    """A model with low-rank convs, per-layer reports, and the convs' MACs before/after."""

    model: Model = field(repr=False)
    layers: list[ConvRankReport]
    skipped: dict[str, str]              # conv layer -> why it was left as is
    conv_macs_before: int
    conv_macs_after: int

    @property
    def speedup(self) -> float:
        return self.conv_macs_before / max(self.conv_macs_after, 1)


def parse_lowrank(items: list[str] | str) -> dict[str, int]:
    """``['conv2=8,conv3=16', 'conv4=4']`` (or one such string) -> {'conv2': 8, ...}."""
    parts = [p for item in ([items] if isinstance(items, str) else items)
             for p in item.split(",") if item.strip()]
    return parse_ranks(parts, "lowrank", "conv2=8")


# --- the fits ----------------------------------------------------------------------------

def _top_eig(s: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (descending) and the top ``rank`` eigenvectors of a symmetric matrix."""
    vals, vecs = np.linalg.eigh(s)
    return vals[::-1], vecs[:, ::-1][:, :rank]


def pca_energy(y: np.ndarray) -> np.ndarray:
    """Eigenvalues of the responses' covariance (d x n samples), descending, clipped at 0."""
    yc = y - y.mean(axis=1, keepdims=True)
    return np.clip(np.linalg.eigvalsh(yc @ yc.T / y.shape[1])[::-1], 0, None)


def fit_linear(y: np.ndarray, rank: int) -> Factors:
    """The PCA solution: ``M = P P^T`` on the top eigenvectors, ``c = (I - M) mean(y)``."""
    mean = y.mean(axis=1)
    yc = y - mean[:, None]
    _, p = _top_eig(yc @ yc.T, rank)
    return Factors(p, p.T.copy(), mean - p @ (p.T @ mean))


class Regression:
    """Reduced-rank regressions ``min ||z - (M y + c)||^2``, ``rank(M) <= rank``, of many
    targets ``z`` on one ``y`` (the paper's GSVD step): with ``G = Z Y^T`` on centred data,
    ``M_ols = G (Y Y^T)^-1``, ``P`` = the top eigenvectors of ``G (Y Y^T)^-1 G^T`` (the
    fitted values' covariance), ``Q^T = P^T M_ols``. The inverse is computed once; a tiny
    ridge keeps rank-deficient responses (fewer patch inputs than filters) solvable."""

    def __init__(self, y: np.ndarray, rank: int):
        self.y, self.rank = y, rank
        self.mean = y.mean(axis=1)
        self.yc = y - self.mean[:, None]
        cyy = self.yc @ self.yc.T
        ridge = 1e-9 * max(np.trace(cyy) / len(cyy), 1e-30)
        self.inv = np.linalg.inv(cyy + ridge * np.eye(len(cyy)))

    def fit(self, z: np.ndarray) -> Factors:
        g = z @ self.yc.T                         # = Zc Yc^T, as Yc's rows sum to 0
        m_ols = g @ self.inv
        _, p = _top_eig(m_ols @ g.T, self.rank)
        qt = p.T @ m_ols
        return Factors(p, qt, z.mean(axis=1) - p @ (qt @ self.mean))


def z_step(t: np.ndarray, v: np.ndarray, lam: float) -> np.ndarray:
    """The per-element minimizer of ``(t - relu(z))^2 + lam (z - v)^2`` (``t >= 0``): the
    best ``z <= 0`` is ``min(0, v)``, the best ``z >= 0`` is ``max(0, (t + lam v)/(1 + lam))``;
    the cheaper of the two."""
    z0 = np.minimum(v, 0.0)
    z1 = np.maximum((t + lam * v) / (1.0 + lam), 0.0)
    cost0 = t * t + lam * (z0 - v) ** 2
    cost1 = (t - z1) ** 2 + lam * (z1 - v) ** 2
    return np.where(cost0 <= cost1, z0, z1)


def fit_nonlinear(y: np.ndarray, y_in: np.ndarray, rank: int, relu: bool) -> Factors:
    """``min ||r(y) - r(M y_in + c)||^2`` (``r`` a ReLU when ``relu``, else the identity).
    ``y_in is y``: the symmetric (nonlinear) fit; ``y_in`` from the approximated network:
    the asymmetric one. Without a ReLU the problem is a reduced-rank regression, solved
    exactly; with one, the paper's alternating solver from the linear solution, keeping the
    best iterate of the true objective."""
    reg = Regression(y_in, rank)
    if not relu:
        return reg.fit(y)
    t = np.maximum(y, 0.0)
    best, best_cost = None, np.inf
    f = fit_linear(y, rank)
    for lam in LAMBDAS + (None,):
        v = f.apply(y_in)
        cost = float(((t - np.maximum(v, 0.0)) ** 2).sum())
        if cost < best_cost:
            best, best_cost = f, cost
        if lam is not None:
            f = reg.fit(z_step(t, v, lam))
    return best


def rel_error(y: np.ndarray, approx: np.ndarray, relu: bool) -> float:
    """``||r(y) - r(approx)|| / ||r(y) - mean r(y)||``: the error relative to the spread of
    the (post-ReLU) responses around their mean, so a large mean does not hide it."""
    if relu:
        y, approx = np.maximum(y, 0.0), np.maximum(approx, 0.0)
    spread = np.sqrt(((y - y.mean(axis=1, keepdims=True)) ** 2).sum())
    return float(np.sqrt(((y - approx) ** 2).sum()) / max(spread, 1e-30))


# --- layers ------------------------------------------------------------------------------

def _matrix(layer: Conv2d) -> tuple[np.ndarray, np.ndarray]:
    """The weight as a d x k^2 c matrix and the bias (zeros if none), in float64."""
    w = layer.weight.astype(np.float64).reshape(layer.weight.shape[0], -1)
    b = (layer.bias.astype(np.float64) if layer.bias is not None
         else np.zeros(layer.weight.shape[0]))
    return w, b


def split(layer: Conv2d, f: Factors) -> tuple[Conv2d, Conv2d]:
    """The two convs of ``y ~ P Q^T (W x + b) + c``: ``<name>_lr`` (``Q^T W``, no bias, the
    layer's window) and the 1 x 1 conv named like the layer (``P``, bias ``P Q^T b + c``)."""
    w, b = _matrix(layer)
    rank = f.p.shape[1]
    first = Conv2d(layer.name + SUFFIX, tuple(layer.inputs),
                   weight=(f.qt @ w).reshape((rank,) + layer.weight.shape[1:])
                   .astype(np.float32), bias=None, stride=layer.stride, pads=layer.pads,
                   dilation=layer.dilation)
    second = Conv2d(layer.name, (first.name,),
                    weight=f.p.reshape(f.p.shape + (1, 1)).astype(np.float32),
                    bias=(f.p @ (f.qt @ b) + f.c).astype(np.float32))
    return first, second


def svd_split(layer: Conv2d, rank: int) -> tuple[Conv2d, Conv2d]:
    """The data-blind baseline: truncated SVD of the d x k^2 c weight matrix, ``S`` split
    evenly between the factors (as :mod:`dynfix.quant.svd` does for Linear layers)."""
    w, b = _matrix(layer)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    root = np.sqrt(s[:rank])
    first = Conv2d(layer.name + SUFFIX, tuple(layer.inputs),
                   weight=(root[:, None] * vt[:rank]).reshape((rank,) + layer.weight.shape[1:])
                   .astype(np.float32), bias=None, stride=layer.stride, pads=layer.pads,
                   dilation=layer.dilation)
    second = Conv2d(layer.name, (first.name,),
                    weight=(u[:, :rank] * root).reshape(len(w), rank, 1, 1).astype(np.float32),
                    bias=b.astype(np.float32))
    return first, second


def unit_macs(layer: Conv2d, out_shape: tuple[int, ...]) -> int:
    """MACs per unit of rank of the decomposed layer: ``(k^2 c + d) * OH * OW``."""
    return int((layer.fan_in + layer.weight.shape[0]) * out_shape[1] * out_shape[2])


def max_useful_rank(layer: Conv2d) -> int:
    """The largest ``d'`` with ``d' (k^2 c + d) < k^2 c d`` (0: no rank saves MACs)."""
    kc, d = layer.fan_in, layer.weight.shape[0]
    return int(-(-kc * d // (kc + d)) - 1)


def _patches(layer: Conv2d, x: np.ndarray, pos: tuple[np.ndarray, ...]) -> np.ndarray:
    """The input patches (k^2 c x n) at the sampled output positions (image, row, col)."""
    v = windows(x, layer.kernel, layer.stride, layer.pads, 0, layer.dilation)
    n, oh, ow = pos
    return v[n, :, oh, ow].reshape(len(n), -1).T.astype(np.float64)


def _sample(shape: tuple[int, ...], samples: int, seed: int) -> tuple[np.ndarray, ...]:
    """Up to ``samples`` distinct output positions (image, row, col) of an N x d x H x W map."""
    n, _, h, w = shape
    total = n * h * w
    flat = (np.arange(total) if total <= samples
            else np.sort(np.random.default_rng(seed).choice(total, samples, replace=False)))
    return np.unravel_index(flat, (n, h, w))


def _responses(t: np.ndarray, pos: tuple[np.ndarray, ...]) -> np.ndarray:
    n, oh, ow = pos
    return t[n, :, oh, ow].T.astype(np.float64)          # d x samples


def feeds_relu(model: Model, name: str) -> bool:
    """Whether the layer's only consumer is a ReLU (the nonlinearity the fit accounts for)."""
    users = model.consumers(name)
    return len(users) == 1 and isinstance(users[0], ReLU)


# --- the model ---------------------------------------------------------------------------

def _check_ranks(model: Model, ranks: dict[str, int]) -> None:
    names = {layer.name for layer in model.layers}
    for name, rank in ranks.items():
        if name not in names:
            raise DynfixError(f"{{lowrank}}: model {literal(repr(model.name))} has no layer "
                              f"{literal(repr(name))}", ("lowrank",))
        layer = model.layer(name)
        if not isinstance(layer, Conv2d):
            raise DynfixError(f"{{lowrank}}: layer {literal(repr(name))} is a {layer.op}, "
                              f"not a convolution", ("lowrank",))
        if layer.groups != 1:
            raise DynfixError(f"{{lowrank}}: layer {literal(repr(name))} is a grouped "
                              f"(groups={layer.groups}) convolution; low-rank applies to "
                              f"groups=1 convolutions", ("lowrank",))
        d = layer.weight.shape[0]
        if not 1 <= rank <= d:
            raise DynfixError(f"{{lowrank}} {literal(name)}={rank}: rank must be in 1..{d} "
                              f"for a conv with {d} filters", ("lowrank",))
        if name + SUFFIX in names:
            raise DynfixError(f"{{lowrank}}: layer name {literal(repr(name + SUFFIX))} is "
                              f"already taken", ("lowrank",))


def select_ranks(model: Model, energies: dict[str, np.ndarray], fixed: dict[str, int],
                 speedup: float) -> dict[str, int]:
    """Ranks for the layers of ``energies`` so the convs' MACs fall by ``speedup``.

    The paper's greedy: every layer starts at full rank; each step drops the one eigenvalue
    (from the layer) that costs the least ``log`` of the product of PCA energies per MAC
    saved (``(k^2 c + d) OH OW`` per rank), until the convs' MACs, counting a layer whose
    rank saves nothing at its original cost, fit the budget. Then the decompositions that
    save the fewest MACs are undone while the budget still holds. ``fixed`` layers count at
    their given rank. Returns only the layers that end up decomposed."""
    convs = [layer for layer in model.layers if isinstance(layer, Conv2d)]
    before = sum(layer.macs(*model.in_shapes(layer)) for layer in convs)
    budget = before / speedup
    orig = {layer.name: layer.macs(*model.in_shapes(layer)) for layer in convs}
    unit = {layer.name: unit_macs(layer, layer.out_shape) for layer in convs}
    cap = {layer.name: max_useful_rank(layer) for layer in convs}

    def cost(name: str, rank: int) -> int:
        return rank * unit[name] if rank <= cap[name] else orig[name]

    rank = {name: len(e) for name, e in energies.items()}
    logs = {name: np.log(np.maximum(np.cumsum(e), 1e-300)) for name, e in energies.items()}
    static = sum(cost(name, fixed[name]) if name in fixed else orig[name]
                 for name in orig if name not in energies)
    floor = static + sum(unit[name] for name in energies)
    if floor > budget:
        raise DynfixError(f"{{speedup}} {speedup:g} is out of reach: at rank 1 in every "
                          f"eligible convolution the convolutions' MACs fall from {before} to "
                          f"{floor} ({before / floor:.2f}x)", ("speedup",))
    total = static + sum(orig[name] for name in energies)
    while total > budget:
        name = min((n for n in rank if rank[n] > 1),
                   key=lambda n: (logs[n][rank[n] - 1] - logs[n][rank[n] - 2]) / unit[n])
        total += cost(name, rank[name] - 1) - cost(name, rank[name])
        rank[name] -= 1
    # The last step may leave room: undo the decompositions that save the fewest MACs while
    # the budget still holds (a layer cut to just under its break-even rank saves little).
    for name in sorted((n for n in rank if rank[n] <= cap[n]),
                       key=lambda n: orig[n] - cost(n, rank[n])):
        if total + orig[name] - cost(name, rank[name]) <= budget:
            total += orig[name] - cost(name, rank[name])
            rank[name] = len(energies[name])
    return {name: r for name, r in rank.items() if r <= cap[name]}


def compress_convs(model: Model, x: np.ndarray, ranks: dict[str, int] | None = None,
                   speedup: float | None = None, method: str = "asymmetric",
                   samples: int = SAMPLES, seed: int = 0) -> LowRankResult:
    """A new model with low-rank convs: the named ``ranks`` and/or the ranks the greedy
    picks for a ``speedup`` of the convs' MACs, fitted by ``method`` (:data:`METHODS`) on
    the calibration batch ``x`` (the user's data, in the model's layout)."""
    ranks = dict(ranks or {})
    if method not in METHODS:
        raise DynfixError(f"{{lowrank_method}} {literal(repr(method))}: choose one of "
                          f"{', '.join(METHODS)}", ("lowrank_method",))
    if speedup is not None and not speedup > 1:
        raise DynfixError(f"{{speedup}} must be above 1, got {speedup:g}", ("speedup",))
    if not ranks and speedup is None:
        raise DynfixError("nothing to compress: give {lowrank} LAYER=RANK or a {speedup}",
                          ("lowrank", "speedup"))
    _check_ranks(model, ranks)
    x = check_input(model, x)
    convs = [layer for layer in model.layers if isinstance(layer, Conv2d)]
    ref = trace(model, x, keep={layer.name for layer in convs})   # the original responses
    pos = {layer.name: _sample(ref[layer.name].shape, samples, seed + i)
           for i, layer in enumerate(convs)}
    skipped: dict[str, str] = {}
    if speedup is not None:
        energies = {}
        for layer in convs:
            if layer.name in ranks:
                continue
            if layer.groups != 1:
                skipped[layer.name] = f"grouped (groups={layer.groups}): left as is"
            elif max_useful_rank(layer) < 1:
                skipped[layer.name] = "no rank saves MACs"
            else:
                energies[layer.name] = pca_energy(_responses(ref[layer.name], pos[layer.name]))
        chosen = select_ranks(model, energies, ranks, speedup)
        for name in energies:
            if name not in chosen:
                skipped[name] = "kept at full rank by the rank selection"
        ranks.update(chosen)
        _check_ranks(model, ranks)
    layers, reports = [], []
    approx = {model.input_name: x}
    last = model.last_use()
    for i, layer in enumerate(model.layers):
        ins = [approx[t] for t in layer.inputs]
        if layer.name in ranks:
            pair, rep = _fit_layer(model, layer, ranks[layer.name], ins[0], ref, pos, method)
            layers += pair
            approx[layer.name] = pair[1].forward(pair[0].forward(ins[0]))
            reports.append(rep)
        else:
            layers.append(layer)
            approx[layer.name] = layer.forward(*ins)
        for t in set(layer.inputs):
            if last[t] == i:
                del approx[t]
    new = model.with_layers(layers)
    after = sum(layer.macs(*new.in_shapes(layer)) for layer in new.layers
                if isinstance(layer, Conv2d))
    before = sum(layer.macs(*model.in_shapes(layer)) for layer in convs)
    return LowRankResult(new, reports, skipped, before, after)


def _fit_layer(model: Model, layer: Conv2d, rank: int, x_hat: np.ndarray,
               ref: dict[str, np.ndarray], pos: dict, method: str
               ) -> tuple[tuple[Conv2d, Conv2d], ConvRankReport]:
    """Fit one conv every way, keep ``method``'s pair, report every fit's error."""
    relu = feeds_relu(model, layer.name)
    p = pos[layer.name]
    w, b = _matrix(layer)
    y = _responses(ref[layer.name], p)                       # original network
    patches = _patches(layer, x_hat, p)
    y_hat = w @ patches + b[:, None]                         # approximated network's input
    fits = {"linear": fit_linear(y, rank), "nonlinear": fit_nonlinear(y, y, rank, relu),
            "asymmetric": fit_nonlinear(y, y_hat, rank, relu)}
    errs = {k: rel_error(y, f.apply(y_hat), relu) for k, f in fits.items()}
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    w_r = (u[:, :rank] * s[:rank]) @ vt[:rank]
    errs["svd"] = rel_error(y, w_r @ patches + b[:, None], relu)
    pair = svd_split(layer, rank) if method == "svd" else split(layer, fits[method])
    e = pca_energy(y)
    d = len(w)
    rep = ConvRankReport(layer.name, rank, d, relu, method,
                         macs_before=layer.macs(*model.in_shapes(layer)),
                         macs_after=rank * unit_macs(layer, layer.out_shape),
                         params_before=w.size + (d if layer.bias is not None else 0),
                         params_after=rank * (w.shape[1] + d) + d,
                         energy=float(e[:rank].sum() / max(e.sum(), 1e-300)),
                         err_svd=errs["svd"], err_linear=errs["linear"],
                         err_nonlinear=errs["nonlinear"], err_asymmetric=errs["asymmetric"])
    return pair, rep
