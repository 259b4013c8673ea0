"""Analytic cycle model of the engine (what the controller and sequencer do, counted)."""

from __future__ import annotations

from .compiler import CompiledModel, LayerPlan, window_items
from .compiler.plan import TRANSFERS
from .config import EngineConfig
from .timing import (bulk_timing, bulk_write_interval, issue_to_mac, pipeline_depth,
                     write_delay)

#: Controller cycles per layer besides issuing: program fetch (2) and sequencer start (1).
LAYER_OVERHEAD = 3
#: Output stream: a read, a register, a hand-over per value (host always ready).
UNLOAD_CYCLES_PER_VALUE = 3
#: Cycles from the last beat of a run of the weight image to the next run's address
#: handshake (a segmented stream, ``CompiledModel.weight_segments``): the reader goes idle,
#: takes the ring's next request, registers its burst and shows the address.
SEGMENT_RESTART = 4
#: Counted cycles of an entry that only moves a map (``m_bulk``: a host load or unload
#: strip) besides its map transfer: its fetch.
TRANSFER_OVERHEAD = 2


def issue_cycles(cfg: EngineConfig, plan: LayerPlan) -> int:
    """One cycle per (output-channel group, conv pixel, kernel tap, input word), plus a
    residual group's shortcut slots per output pixel and the write-back's ``gap`` idle
    cycles after every pooling window but the last; with a single-port map memory
    (``m_spram``) also the cycles the sequencer holds for the write-back before its last
    item (:func:`held_issue_cycles`)."""
    e = plan.entry
    windows = e["n_mg"] * e["n_py"] * e["n_px"]
    if cfg.m_spram:
        return held_issue_cycles(windows, window_items(plan, cfg), e["gap"],
                                 write_delay(cfg), cfg.wb_words)
    return windows * window_items(plan, cfg) + (windows - 1) * e["gap"]


def held_issue_cycles(windows: int, items: int, gap: int, delay: int, words: int) -> int:
    """Issue cycles of ``windows`` pooling windows of ``items`` items, ``gap`` rest cycles
    between them, when every window's end makes the sequencer hold ``words`` cycles, from
    ``delay`` cycles after that end (the write-back's writes). A hold freezes items, slots
    and rest cycles alike, so it always costs exactly ``words`` cycles when it falls before
    the last item, and nothing after it.

    Window by window: the last item lands ``items`` (+ ``gap``) working cycles after the
    previous one, later by ``words`` for each hold that starts before it. The pattern of
    pending holds relative to the last window end repeats after a few windows (it depends
    only on that relative pattern); from the first repeat on the rest is extrapolated
    (:func:`_walk`)."""
    return _walk(-1, [], windows, items, gap, delay, words, False, 0) + 1


#: Cycles from an inference's start (the cycle the image load begins) to the address
#: handshake of its weight pass on the bulk port (``w_bulk``): the ring's request, the
#: reader's burst length (registered), its address.
RING_REQUEST = 3
#: Cycles from the image load's start to the first layer's sequencer start, beyond one per
#: input value.
LOAD_TO_START = 1


def _advance(t: int, n: int, holds: list[int], words: int) -> int:
    """The cycle after ``n`` free cycles counted from cycle ``t`` on, where ``holds`` (start
    cycles, ascending; consumed as they are passed) each take ``words`` cycles."""
    while holds and holds[0] + words <= t:
        holds.pop(0)
    while True:
        if holds and holds[0] <= t:
            t = holds.pop(0) + words
            continue
        if not holds or t + n <= holds[0]:
            return t + n
        n -= holds[0] - t
        t = holds[0]


def _walk(end: int, holds: list[int], windows: int, items: int, gap: int, delay: int,
          words: int, rest_first: bool, not_before: int) -> int:
    """The cycle of the last item of ``windows`` pooling windows of ``items`` items after
    an item at cycle ``end``: ``gap`` rest cycles before each (before the first too when
    ``rest_first``), the first window not before cycle ``not_before``; with ``words``, each
    window's end makes the sequencer hold ``words`` cycles from ``delay`` cycles later
    (appended to ``holds``). From the second window on the pattern of pending holds
    repeats after a few windows; from the first repeat on the rest is extrapolated."""
    seen: dict[tuple[int, ...], tuple[int, int]] = {}
    i = 0
    while i < windows:
        if i:
            key = tuple(b - end for b in holds)
            if key in seen:
                j, end_j = seen[key]
                period, cycles = i - j, end - end_j
                jumps = (windows - i) // period
                if jumps:
                    end += jumps * cycles
                    holds[:] = [b + jumps * cycles for b in holds]
                    i += jumps * period
                    seen = {}
                    continue
            seen[key] = (i, end)
        t = _advance(end + 1, gap if (i or rest_first) else 0, holds, words)
        if not i:
            t = max(t, not_before)
        end = _advance(t, items, holds, words) - 1
        if words:
            holds.append(end + delay)
        i += 1
    return end


#: Cycles of a strip's map load (``m_bulk``) besides its beats and the memory's latency:
#: the controller's request state and hand-over, the DMA's request, its reader's burst
#: length and address registers, and the last word's write into the map memory.
DMA_LOAD = 6
#: Cycles of a strip's map store besides its beats: the request, the address and first
#: beat, the write response and the hand-over.
DMA_STORE = 4
#: Cycles each write burst of a store adds: the writer's idle W cycle before a burst and
#: the memory's write response before it takes the next burst's address.
DMA_STORE_BURST = 2


def dma_bursts(cfg: EngineConfig, beats: int) -> int:
    """Bus bursts of a map transfer of ``beats`` beats from a page start: one per 256 beats
    or 4 KiB page, whichever is shorter (a strip's map words start on a whole map word,
    which the compiler keeps page-aligned only for the maps' first word: a lower bound)."""
    per = min(256, 4096 * 8 // cfg.bus_bits)
    return -(-beats // per)


def dma_cycles(cfg: EngineConfig, words: int, store: bool) -> int:
    """Cycles an entry's map transfer of ``words`` map words takes (``m_bulk``), from the
    controller's request to its next state, on a bulk memory with the timing of the
    engine's ``bulk_store`` (:func:`~dynfix.hw.timing.bulk_timing`) when nothing else
    uses it: ``cfg.map_beats`` beats a word; a load waits for the first beat of its first
    burst (the reader keeps the next ones in flight), a store for the write response of
    each burst (:func:`~dynfix.hw.timing.bulk_write_interval` cycles a beat). The weight
    ring's reads around a load (its prefetch of the next tiles, whose beats come first)
    are not counted: then a lower bound."""
    if not words:
        return 0
    latency, interval = bulk_timing(cfg)
    beats = words * cfg.map_beats
    if store:
        return (DMA_STORE + beats * bulk_write_interval(cfg)
                + DMA_STORE_BURST * dma_bursts(cfg, beats))
    return DMA_LOAD + latency + (beats - 1) * interval + 1


def ring_layer_cycles(cm: CompiledModel, latency: int | None = None,
                      interval: int | None = None) -> list[dict]:
    """Per layer of an engine with weights in bulk memory (``w_bulk``): the cycles its
    counter reports and the cycles its groups waited for their tiles, for a memory whose
    first beat of a pass comes ``latency`` cycles after the address and every later beat
    (bus word) ``interval`` cycles after the previous one was taken (by default the
    timing of the engine's ``bulk_store``, :func:`~dynfix.hw.timing.bulk_timing`).

    Exact when the memory delivers so: the weight pass and the sequencer are followed
    together. Word ``n`` of the pass is in the ring (counted by ``w_avail``) the cycle
    after its last beat (``k`` beats per word, ``interval`` apart); the first beat comes at
    ``RING_REQUEST + latency``, but a word's first beat only once its ring slot is free
    (the sequencer's oldest needed word, ``issue_to_mac`` cycles late, is past ``n -
    w_ring``). A group's first item (or its first pixel's shortcut slot) issues once the
    tile's last word has been in the ring for a cycle (the sequencer's ``wait`` register),
    and not before the rest and holds of the wait-free schedule (:func:`_walk`)."""
    cfg = cm.config
    default = bulk_timing(cfg)
    latency = default[0] if latency is None else latency
    step = default[1] if interval is None else interval
    k, depth, lag = cfg.word_beats, cfg.w_ring, issue_to_mac(cfg)
    words = cfg.wb_words if cfg.m_spram else 0
    delay = write_delay(cfg) if cfg.m_spram else 0
    avail: list[int] = []               # avail[n]: first cycle w_avail counts word n
    freed: list[tuple[int, int]] = []   # (w_keep, the cycle the ring sees it from)
    seen = 0                            # freed[:seen] are behind every word still to come
    beat = RING_REQUEST + latency       # the next beat's earliest cycle
    # A segmented stream (groups in strips read their words again): each run after the
    # first is a request of its own, once the reader has sent the last run's last beat.
    restarts, at = set(), 0
    for _, n in cm.weight_segments[:-1]:
        at += n
        restarts.add(at)

    def ready(n: int) -> int:
        """The first cycle the ring holds words 0 .. n - 1 (all of them with n = 0)."""
        nonlocal beat, seen
        while len(avail) < n:
            m = len(avail)
            free = 0
            if m - depth + 1 > 0:
                # Both ascend (words and w_keep), so the search resumes where it stopped.
                while freed[seen][0] < m - depth + 1:
                    seen += 1
                free = freed[seen][1]
            first = max(beat, free)
            if m in restarts:
                first = max(first, avail[m - 1] - 1 + SEGMENT_RESTART + latency)
            avail.append(first + (k - 1) * step + 1)
            beat = first + k * step
        return avail[n - 1] if n else 0

    # Cycle 0 is the run's first host load's start, two cycles after the first entry's
    # fetch. ``fetch``: the current entry's fetch; an entry's counted cycles (fetch,
    # run, drain, map transfers) and its host transfers (a load before, an unload after:
    # not counted) bring the next entry's.
    fetch = -2
    pos = 0                             # the stream position of the group's first word
    out = []
    for i, p in enumerate(cm.plans):
        e = p.entry
        ld = e.get("ld", int(i == 0))
        host = (LOAD_TO_START + e["in_c"] * e["in_pix"]) if ld else 0
        # A strip's load (m_bulk) runs between the fetch (or the host load) and the
        # sequencer's start, its store after the drain.
        load = dma_cycles(cfg, e.get("di_words", 0), False)
        store = dma_cycles(cfg, e.get("do_words", 0), True)
        if p.kind in TRANSFERS:
            counted = TRANSFER_OVERHEAD + load + store
            out.append({"cycles": counted, "waits": 0, "dma": load + store})
            fetch += counted + host + (UNLOAD_CYCLES_PER_VALUE * e["out_c"] * e["out_pix"]
                                       if e.get("ul") else 0)
            continue
        windows, items = e["n_py"] * e["n_px"], window_items(p, cfg)
        holds: list[int] = []
        start = fetch + 2 + host + load     # the sequencer's start
        end = start                     # the first item may issue the cycle after
        freed.append((pos, start + 1 + lag))
        if e.get("w_stream"):
            # Each item issues once its own word is in the ring (the sequencer's ``wait``,
            # a register) and frees it as it issues.
            for _ in range(e["n_mg"] * items):
                end = max(end + 1, ready(pos + 1) + 1)
                pos += 1
                freed.append((pos, end + 1 + lag))
        else:
            for g in range(e["n_mg"]):
                if g:
                    freed.append((pos, end + 1 + lag))
                end = _walk(end, holds, windows, items, e["gap"], delay, words, bool(g),
                            ready(pos + e["w_tile"]) + 1)
                pos += e["w_tile"]
        cycles = LAYER_OVERHEAD + end - start + pipeline_depth(cfg)
        out.append({"cycles": cycles + load + store,
                    "waits": cycles - layer_cycles(cfg, p), "dma": load + store})
        fetch += cycles + load + store + host
    return out


def layer_cycles(cfg: EngineConfig, plan: LayerPlan) -> int:
    """Cycles the engine's per-layer counter reports: fetch, issue, pipeline drain."""
    return LAYER_OVERHEAD + issue_cycles(cfg, plan) + pipeline_depth(cfg)


def estimate(cm: CompiledModel, bulk_latency: int | None = None) -> dict:
    """Per-layer and total cycles and MAC utilization for one image; with weights in bulk
    memory (``w_bulk``) for the timing of its ``bulk_store`` (:func:`ring_layer_cycles`;
    ``bulk_latency`` replaces its first-beat latency), with each layer's ``waits`` and the
    bytes a pass reads; with maps there (``m_bulk``) each program entry's ``strip`` and
    ``dma`` cycles and the map bytes moved (:func:`map_bytes`)."""
    cfg = cm.config
    ring = ring_layer_cycles(cm, bulk_latency) if cfg.w_bulk else None
    layers = []
    for i, p in enumerate(cm.plans):
        cyc = ring[i]["cycles"] if ring else layer_cycles(cfg, p)
        macs = 0 if p.kind in TRANSFERS else p.macs
        layers.append({"name": p.name, "kind": p.kind, "in_shape": list(p.in_shape),
                       "out_shape": list(p.out_shape), "kernel": list(p.kernel),
                       "stride": list(p.stride), "pool": p.pool,
                       **({"pool_rows": p.pool_h} if p.pool_h else {}), "macs": macs,
                       "residual": p.add.name if p.add is not None else None,
                       "cycles": cyc,
                       "utilization": round(macs / (cyc * cfg.multipliers), 4),
                       **({"waits": ring[i]["waits"]} if ring else {}),
                       **({"strip": p.strip, "dma": ring[i]["dma"]} if cfg.m_bulk else {})})
    compute = sum(r["cycles"] for r in layers)
    load = cm.input_shape[0] * cm.input_shape[1] * cm.input_shape[2]
    unload = UNLOAD_CYCLES_PER_VALUE * cm.output_len
    macs = sum(r["macs"] for r in layers)
    return {"cycles_per_image": compute + load + unload, "compute_cycles": compute,
            "load_cycles": load, "unload_cycles": unload, "macs": macs,
            "utilization": round(macs / (compute * cfg.multipliers), 4), "layers": layers,
            **({"bulk_bytes": stream_words(cm) * cfg.word_beats * cfg.bus_bits // 8}
               if ring else {}),
            **({"map_bytes": map_bytes(cm)} if cfg.m_bulk else {})}


def per_layer(rows: list[dict]) -> list[dict]:
    """:func:`estimate`'s rows with a layer's strips (``m_bulk``: one program entry each)
    summed into one row per layer, in program order: ``cycles``, ``macs``, ``waits``,
    ``dma`` and the layer's ``entries``."""
    out: dict[str, dict] = {}
    for r in rows:
        a = out.setdefault(r["name"], {"name": r["name"], "kind": r["kind"], "cycles": 0,
                                       "macs": 0, "waits": 0, "dma": 0, "entries": 0})
        for key in ("cycles", "macs", "waits", "dma"):
            a[key] += r.get(key, 0)
        a["entries"] += 1
    return list(out.values())


def map_bytes(cm: CompiledModel) -> int:
    """Bytes of maps the engine moves between the chip and bulk memory per image
    (``m_bulk``): its strips' loads and stores, the host's strips included."""
    cfg = cm.config
    words = sum(p.entry["di_words"] + p.entry["do_words"] for p in cm.plans)
    return words * cfg.map_beats * cfg.bus_bits // 8


def stream_words(cm: CompiledModel) -> int:
    """Weight words the ring reads per inference (``w_bulk``): the image once, or with
    groups in strips each group's words once per strip."""
    if cm.weight_segments:
        return sum(n for _, n in cm.weight_segments)
    return cm.plans[0].entry["w_total"]
