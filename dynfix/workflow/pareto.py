"""The Pareto front of a design-space sweep (``dynfix sweep``) and the design it chooses.

A point is a finished design: its latency per image (microseconds, at the clock the bitstream
runs at), its LUTs and its accuracy (the sweep's measure: top-1 accuracy, top-1 agreement
with the float model, or output SQNR; higher is better). Lower latency and fewer LUTs are
better. A point dominates another when it is at least as good in all three and better in
one; the front is the points no other point dominates (points with equal values all stay).

The chosen design is the fastest point of the front whose accuracy is within ``max_drop`` of
the best accuracy on the front (ties: fewer LUTs, then higher accuracy, then the point's
id): the speed the sweep is for, without giving up more accuracy than the user allows.
"""

from __future__ import annotations

from typing import Iterable, Sequence

#: The objectives: (key, +1 when higher is better, -1 when lower is).
OBJECTIVES = (("latency_us", -1), ("luts", -1), ("accuracy", +1))


def _values(p: dict) -> tuple[float, ...]:
    """A point's objectives, each turned so that smaller is better."""
    return tuple(-sign * float(p[key]) for key, sign in OBJECTIVES)


def dominates(a: dict, b: dict) -> bool:
    """Whether ``a`` is at least as good as ``b`` in every objective and better in one."""
    va, vb = _values(a), _values(b)
    return all(x <= y for x, y in zip(va, vb)) and any(x < y for x, y in zip(va, vb))


def pareto_front(points: Iterable[dict]) -> list[dict]:
    """The points no other point dominates, by latency (then LUTs, then id)."""
    pts = list(points)
    front = [p for p in pts if not any(dominates(q, p) for q in pts if q is not p)]
    return sorted(front, key=lambda p: (p["latency_us"], p["luts"], str(p.get("id", ""))))


def choose(front: Sequence[dict], max_drop: float) -> dict | None:
    """The fastest point of ``front`` whose accuracy is at least the best one's less
    ``max_drop`` (in the accuracy's own units); None for an empty front."""
    if not front:
        return None
    best = max(float(p["accuracy"]) for p in front)
    ok = [p for p in front if float(p["accuracy"]) >= best - max_drop - 1e-12]
    return min(ok, key=lambda p: (p["latency_us"], p["luts"], -float(p["accuracy"]),
                                  str(p.get("id", ""))))
