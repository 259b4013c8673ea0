"""Map memory: where each stored map lives, by tensor lifetime."""

from __future__ import annotations

from .plan import LayerPlan, Shape3, _ceil_div


def _words(shape: Shape3, lanes: int) -> int:
    """Map words of a C x H x W map: ``H * W * ceil(C / lanes)``."""
    c, h, w = shape
    return h * w * _ceil_div(c, lanes)


def allocate(plans: list[LayerPlan], sizes: dict[str, int], first: str) -> dict[str, int]:
    """Map-memory base of every stored tensor, by lifetime: the model input ``first`` at 0
    or right above the largest map (whichever needs fewer words: above, the first layers'
    outputs can take the bottom once the input is dead), then each group's output at the
    lowest address where it overlaps no tensor still to be read (by this group or a later
    one; the last output is read by the unload). A group's output never overlaps what it
    reads, except that a residual group writes over its shortcut when it is the shortcut's
    last reader (in place: same size, read first). A Concat's map (:attr:`LayerPlan.writes`
    of the groups that write its inputs) is placed with its first writer and lives until
    its last reader, so no map in between overlaps it."""
    last_use = {first: 0}
    for i, p in enumerate(plans):
        for t in (p.input, p.shortcut):
            if t:
                last_use[t] = i
    last_use[plans[-1].writes] = len(plans)
    best = None
    for input_at in sorted({0, max(sizes[p.writes] for p in plans)}):
        base = _first_fit(plans, sizes, last_use, {first: input_at})
        depth = max(base[t] + sizes[t] for t in base)
        if best is None or depth < best[0]:
            best = (depth, base)
    return best[1]


def _first_fit(plans: list[LayerPlan], sizes: dict[str, int], last_use: dict[str, int],
               base: dict[str, int]) -> dict[str, int]:
    """:func:`allocate`'s placement of every group's output, given the input's."""
    for i, p in enumerate(plans):
        sc, out = p.shortcut, p.writes
        if out in base:                 # a Concat's map, placed with its first writer
            continue
        if sc and sc != p.input and last_use[sc] == i and sizes[sc] == sizes[out]:
            # In place: the residual group reads pixel q's shortcut words before it writes
            # pixel q's results (many cycles later), each group only its own lanes, and
            # nothing reads the shortcut afterwards.
            base[out] = base[sc]
            continue
        live = sorted((base[t], base[t] + sizes[t]) for t in base if last_use.get(t, -1) >= i)
        at = 0
        for lo, hi in live:
            if at + sizes[out] <= lo:
                break
            at = max(at, hi)
        base[out] = at
    return base
