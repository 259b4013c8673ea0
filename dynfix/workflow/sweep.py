"""``dynfix sweep``: a design-space sweep on Dask: bit widths x engine candidates x placement
seeds on one or more boards, the Pareto front of latency, LUTs and accuracy, and the design
it chooses. See docs/sweep.md.

The stages are Dask tasks (:mod:`.sweep_tasks`) with their dependencies: quantize (once per
bit width) -> fit (per board: the ``candidates`` best engines by estimate) -> generate +
simulate (per candidate) -> synthesize (per placement seed). They run on a
``distributed.LocalCluster`` of worker processes (one per core by default) or on an existing
Dask scheduler (``scheduler="tcp://host:8786"``: a cluster of machines, dask-jobqueue's
included). The client (this process) writes each finished point atomically to the sweep
folder as it comes in, so a sweep that stops keeps what it finished and ``resume`` goes on
from there; a point that fails is recorded with its stage and reason and the sweep goes on.

Sweep folder (``output``)::

    sweep.json              what decides a point's result (checked by resume)
    quant/BITS.yaml         the spec of each bit width (8/4/4 -> 8-4-4.yaml)
    fits/BOARD-BITS.json    each fit's candidates
    points/ID.json          one record per finished point: ok, or failed with stage, reason
    designs/DESIGN/         a candidate's generated engine (generate's folder)
    builds/ID/              a seed's synthesis (bitstream)
    results.json            every point, the Pareto front and the chosen design per board
    results.md, pareto.png  the same as a table and a plot

A point's id is ``BOARD-BITS-ENGINE`` (the engine's summary, e.g. ``tn4-tm4-im2col-dual8x8``)
and, with synthesis, ``-sSEED``. When the sweep ends, only the chosen designs' folders and
builds are kept (``keep_all`` keeps every one).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
import threading
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from dynfix.boards.closure import ClosurePolicy
from dynfix.boards.registry import check_router
from dynfix.errors import DynfixError, literal
from dynfix.fileio import atomic_write_text
from . import sweep_tasks as tasks
from .options import SWEEP_IMAGES
from .pareto import choose, pareto_front
from .report import SWEEP_METRICS

#: What to install when Dask is missing.
DASK_HINT = "pip install 'dask[distributed]' (or pip install 'dynfix[sweep]')"
DEFAULT_IMAGES = SWEEP_IMAGES
#: What resume checks: the options that decide a point's result.
FINGERPRINT = ("model", "model_digest", "data", "calib", "method", "images", "synth",
               "clock", "closure", "router")
#: Seconds to wait for a scheduler, and for the cluster to stop.
CONNECT_TIMEOUT = 30
STOP_TIMEOUT = 20

Say = Callable[[str], None]


def _quiet(msg: str) -> None:
    """Default progress callback: say nothing."""


@dataclass
class SweepOptions:
    """What ``dynfix sweep`` takes (its command-line options, one field each)."""

    model: Any = "digits"
    data: str | Path | None = None          # labelled test data; default digits
    calib: str | Path | None = None         # calibration inputs; default the data
    boards: Sequence[Any] | None = None     # names, board files or Boards; default board
    bits: Sequence[str] = ("8",)
    candidates: int = 1
    seeds: int | Sequence[int] = 1          # K: seeds 1..K; or the seeds themselves
    synth: bool = True
    images: int = DEFAULT_IMAGES            # 0: no simulation (cycles from the estimate)
    clock: float | str = "auto"
    closure: ClosurePolicy = field(default_factory=ClosurePolicy)
    router: str | None = None               # nextpnr's router; default the board file's
    method: str = "greedy"
    sim: str = "auto"
    output: str | Path | None = None
    scheduler: str | None = None            # tcp://host:8786; default a LocalCluster
    workers: int | None = None              # LocalCluster workers; default the cores
    resume: bool = False
    #: How much accuracy the chosen design may give up against the best on the front: in
    #: percentage points (accuracy, agreement) or dB (SQNR).
    max_drop: float = 1.0
    keep_all: bool = False


@dataclass
class SweepResult:
    """What a sweep produced: ``points`` are every finished point's record (this run's and
    the ones ``resume`` found), ``front`` the Pareto front's ids and ``chosen`` the chosen
    point per board; ``computed`` the ids this run finished, ``reused`` the ones it
    skipped."""

    output: Path
    points: list[dict] = field(repr=False)
    front: dict[str, list[str]]
    chosen: dict[str, dict | None] = field(repr=False)
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    table: str = field(default="", repr=False)

    @property
    def failed(self) -> list[dict]:
        return [p for p in self.points if p["status"] != "ok"]

    @property
    def ok(self) -> list[dict]:
        return [p for p in self.points if p["status"] == "ok"]


# --- names -----------------------------------------------------------------------------------

def slug(text: str) -> str:
    """A file-name-safe form: ``tn=4 tm=4 dual 8x8`` -> ``tn4-tm4-dual8x8``, ``8/4/4`` ->
    ``8-4-4``."""
    text = re.sub(r"(\w)=(\w)", r"\1\2", str(text))
    text = re.sub(r"\b(dual|dw window) ", r"\1", text).replace("dw window", "dw")
    return re.sub(r"[^A-Za-z0-9_.+]+", "-", text).strip("-")


def group_id(board: str, bits: str) -> str:
    return f"{slug(board)}-{slug(bits)}"


def design_ids(board: str, bits: str, cands: list[dict]) -> list[str]:
    """The design id of each candidate: ``BOARD-BITS-ENGINE``, with a short hash of the
    engine's keys when two summaries coincide."""
    ids, seen = [], set()
    for c in cands:
        name = f"{group_id(board, bits)}-{slug(c['engine'])}"
        if name in seen:
            digest = hashlib.sha256(json.dumps(c["config"], sort_keys=True).encode())
            name += "-" + digest.hexdigest()[:6]
        seen.add(name)
        ids.append(name)
    return ids


def point_id(design: str, seed: int | None) -> str:
    return design if seed is None else f"{design}-s{seed}"


# --- checks before any work ------------------------------------------------------------------

@dataclass
class Prepared:
    model: Any                      # the loaded Model
    name: str
    boards: list                    # Board objects
    bits: list[str]
    seeds: list[int]
    data: str
    calib: str
    fingerprint: dict


def _seeds(seeds) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise DynfixError(f"{{seeds}} must be at least 1, not {seeds}", ("seeds",))
        return list(range(1, seeds + 1))
    out = list(dict.fromkeys(seeds))
    if not out or any(not isinstance(s, int) or isinstance(s, bool) for s in out):
        raise DynfixError(f"{{seeds}}: a count or a list of integer seeds, not "
                          f"{literal(repr(seeds))}", ("seeds",))
    return out


def _data_arg(data) -> str:
    """``digits`` or an absolute path (the workers may run elsewhere in the file system)."""
    text = str(data)
    return text if text == "digits" or not Path(text).exists() else str(Path(text).resolve())


def _model_digest(model) -> str:
    """A file model's SHA-256 (resume notices a changed file); the name for the rest."""
    path = Path(str(model))
    if isinstance(model, (str, Path)) and path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return ""


def prepare(opts: SweepOptions) -> Prepared:
    """Load and check everything before any work, as the flow does."""
    from dynfix.hw.compiler import plan_groups
    from dynfix.inputs import check_data_fits, get_board, load_inputs, load_model
    from dynfix.quant.bits import layer_widths
    from dynfix.quant.float_model import check_input
    from .names import model_name
    from .simulator import check_choice

    if not isinstance(opts.images, int) or isinstance(opts.images, bool) or opts.images < 0:
        raise DynfixError(f"{{images}} must be a non-negative integer, got "
                          f"{literal(repr(opts.images))}", ("images",))
    if not isinstance(opts.candidates, int) or opts.candidates < 1:
        raise DynfixError(f"{{candidates}} must be at least 1, got "
                          f"{literal(repr(opts.candidates))}", ("candidates",))
    if opts.workers is not None and opts.workers < 1:
        raise DynfixError(f"{{workers}} must be at least 1, got {opts.workers}", ("workers",))
    if not opts.max_drop >= 0:
        raise DynfixError(f"{{max_drop}} must not be negative, got {opts.max_drop}",
                          ("max_drop",))
    _check_clock(opts.clock)
    check_router(opts.router)
    check_choice(opts.sim)
    seeds = _seeds(opts.seeds)
    bits = list(dict.fromkeys(str(b) for b in opts.bits))
    if not bits:
        raise DynfixError("{bits}: at least one bit width", ("bits",))
    model = load_model(opts.model)
    for b in bits:
        layer_widths(model, b)              # a bad width fails before any work
    plan_groups(model)                      # so do layers the engine cannot run
    boards = [get_board(b) for b in (opts.boards or [None])]
    names = [b.name for b in boards]
    if len(set(names)) < len(names):
        raise DynfixError(f"{{boards}}: a board named twice ({', '.join(names)})", ("boards",))
    data = _data_arg(opts.data if opts.data is not None else "digits")
    calib = _data_arg(opts.calib) if opts.calib is not None else data
    check_data_fits(model, data)
    check_data_fits(model, calib, "calibration data", "calib")
    x, _ = load_inputs(data, split="test")
    check_input(model, x[:1])
    if opts.images > len(x):
        raise DynfixError(f"{{images}} {opts.images}: the data has only {len(x)} inputs",
                          ("images",))
    name = model_name(model.name, opts.model)
    fp = {"model": name if not isinstance(opts.model, (str, Path)) else str(opts.model),
          "model_digest": _model_digest(opts.model), "data": data, "calib": calib,
          "method": opts.method, "images": opts.images, "synth": bool(opts.synth),
          "clock": opts.clock if opts.synth else None,
          "closure": asdict(opts.closure) if opts.synth else None,
          "router": opts.router if opts.synth else None}
    return Prepared(model, name, boards, bits, seeds, data, calib, fp)


def _check_clock(clock) -> None:
    if clock in ("auto", "oscillator"):
        return
    if isinstance(clock, (int, float)) and not isinstance(clock, bool) and clock > 0 \
            and math.isfinite(clock):
        return
    raise DynfixError(f"the clock is 'auto', 'oscillator' or a frequency in MHz, not "
                      f"{literal(repr(clock))}")


# --- the sweep folder ------------------------------------------------------------------------

def default_output(name: str) -> Path:
    return Path("out") / re.sub(r"[^A-Za-z0-9_.-]+", "_", f"sweep-{name}")


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None             # a record that cannot be read is not finished


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def open_folder(out: Path, p: Prepared, opts: SweepOptions) -> dict[str, dict]:
    """Create (or, with resume, reopen) the sweep folder; the finished points' records."""
    stored = None
    if out.exists():
        if not out.is_dir():
            raise DynfixError(f"output {literal(repr(str(out)))} exists and is not a folder")
        stored = _read_json(out / "sweep.json")
        if any(out.iterdir()) and stored is None:
            raise DynfixError(f"output folder {literal(repr(str(out)))} exists and is not a "
                              f"dynfix sweep; choose another {{output}} or remove it",
                              ("output",))
    if stored is not None and not opts.resume:
        n = len(list((out / "points").glob("*.json")))
        if n:
            raise DynfixError(f"{literal(str(out))} holds a sweep ({n} finished points): "
                              f"pass {{resume}} to go on with it, or choose another "
                              f"{{output}}", ("resume", "output"))
        # A sweep that finished no point (stopped early, a scheduler not reached): begin
        # again, without what it left.
        for sub in ("quant", "fits", "points", "designs", "builds"):
            shutil.rmtree(out / sub, ignore_errors=True)
        stored = None
    if stored is not None:
        old = stored.get("fingerprint", {})
        diff = [k for k in FINGERPRINT if old.get(k) != p.fingerprint.get(k)]
        if diff:
            what = ", ".join(f"{k} {literal(old.get(k))!s} -> {literal(p.fingerprint.get(k))}"
                             for k in diff)
            raise DynfixError(f"{literal(str(out))} holds a sweep with other options ({what}):"
                              f" its points would not compare; choose another {{output}}",
                              ("output",))
    for sub in ("quant", "fits", "points", "designs", "builds"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    _write_json(out / "sweep.json", {"fingerprint": p.fingerprint, "model": p.name})
    records = {}
    for path in sorted((out / "points").glob("*.json")):
        rec = _read_json(path)
        if rec is not None and rec.get("status") in ("ok", "failed"):
            records[path.stem] = rec
    return records


# --- the points' records ---------------------------------------------------------------------

def _record(pid: str, board, bits: str, cand: dict | None, seed: int | None,
            result: dict, synth: bool) -> dict:
    """A point's record from its last task's result."""
    rec: dict[str, Any] = {"id": pid, "board": board.name, "bits": bits, "seed": seed,
                           "status": "failed" if tasks.failed(result) else "ok"}
    if cand is not None:
        rec.update(candidate=cand["rank"], engine=cand["engine"], config=cand["config"],
                   multipliers=cand["multipliers"], cycles_estimate=cand["cycles_estimate"],
                   estimate=cand["estimate"])
    if tasks.failed(result):
        rec.update(stage=result["failed"], reason=result["reason"])
    q = result.get("quant") or {}
    if "metric" in q:
        rec.update(metric=q["metric"], accuracy=q["accuracy"], float_accuracy=q["float"])
    for key in ("images", "mismatches", "simulator", "compute_cycles"):
        if key in result:
            rec[key] = result[key]
    if result.get("folder"):
        rec["design"] = str(Path("designs") / Path(result["folder"]).name)
    if cand is None or "folder" not in result:
        return rec
    cycles = result.get("cycles") or cand["cycles_estimate"]
    rec["cycles"], rec["cycles_source"] = cycles, "simulated" if result.get("cycles") \
        else "estimate"
    syn = result.get("synth")
    if syn is not None:
        rec.update(synth=syn, clock_mhz=syn["clock_mhz"], fmax_mhz=syn["fmax_mhz"],
                   clock_source="synthesized", luts=syn["luts"], ffs=syn["ffs"],
                   dsps=syn["dsps"], brams=syn["brams"], resources_source="synthesized")
        rec["bitstream"] = str(Path("builds") / pid / Path(syn["bitstream"]).name)
        rec["synth"] = dict(syn, bitstream=rec["bitstream"])     # relative to the folder
    elif not synth:
        est = cand["estimate"]
        rec.update(clock_mhz=board.clock_mhz, clock_source="oscillator (not synthesized)",
                   luts=est["luts"], ffs=est["ffs"], dsps=est["dsps"], brams=est["brams"],
                   resources_source="estimate")
    if rec.get("clock_mhz"):
        rec["latency_us"] = round(cycles / rec["clock_mhz"], 3)
    rec["seconds"] = result.get("seconds", {})
    return rec


def _group_failure(board, bits: str, result: dict) -> dict:
    return _record(group_id(board.name, bits), board, bits, None, None, result, False)


# --- Dask ------------------------------------------------------------------------------------

def _dask():
    try:
        import distributed
    except ImportError:
        raise DynfixError(f"dynfix sweep runs on Dask, which is not installed: "
                          f"{DASK_HINT}") from None
    return distributed


class Cluster:
    """The Dask client: on a ``LocalCluster`` of ``workers`` processes (one thread each),
    or on the scheduler at ``address``. Closing it stops what it started."""

    def __init__(self, address: str | None, workers: int | None, say: Say):
        distributed = _dask()
        self.cluster = None
        if address:
            try:
                self.client = distributed.Client(address, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError) as e:
                raise DynfixError(f"cannot reach the Dask scheduler at "
                                  f"{literal(address)}: {e}") from None
            n = len(self.client.scheduler_info().get("workers", {}))
            self.where = f"the Dask scheduler at {address} ({n} workers now)"
        else:
            n = workers or os.cpu_count() or 1
            self.cluster = distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, memory_limit=0,
                dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
            self.client = distributed.Client(self.cluster)
            self.client.run(tasks.ignore_sigint)
            self.where = f"a local Dask cluster of {n} worker process{'es' * (n > 1)}"
        say(f"sweep: on {self.where}")

    def close(self) -> None:
        try:
            self.client.close(timeout=STOP_TIMEOUT)
        finally:
            if self.cluster is not None:
                self.cluster.close(timeout=STOP_TIMEOUT)


# --- the sweep -------------------------------------------------------------------------------

@dataclass
class _Group:
    """One board at one bit width: its candidates once the fit is known."""

    board: Any
    bits: str
    cands: list[dict] | None = None
    designs: list[str] = field(default_factory=list)


class _Run:
    """The client's side of one sweep: submits the tasks, records what comes back."""

    def __init__(self, opts: SweepOptions, p: Prepared, out: Path, records: dict[str, dict],
                 say: Say):
        self.opts, self.p, self.out, self.records, self.say = opts, p, out, records, say
        self.token = uuid.uuid4().hex
        self.seeds: list[int | None] = p.seeds if opts.synth else [None]
        self.computed: list[str] = []
        self.reused: set[str] = set()
        self.futures: dict[str, tuple] = {}         # key -> (kind, info)
        self.live: dict[str, Any] = {}              # key -> future, until it is done with
        self.quant: dict[str, Any] = {}             # bits -> future
        self.total = 0
        self.client = None
        self.ac = None

    # what is left to do ------------------------------------------------------------------

    def plan(self) -> tuple[list[_Group], list[_Group]]:
        """The groups that need a fit, and those whose fit is known with points left."""
        need_fit, known = [], []
        for board in self.p.boards:
            for bits in self.p.bits:
                g = _Group(board, bits)
                gid = group_id(board.name, bits)
                if gid in self.records:         # its quantization or fit failed
                    self.reused.add(gid)
                    self.total += 1
                    continue
                fit = _read_json(self.out / "fits" / f"{gid}.json")
                if fit is not None and fit.get("requested", 0) >= self.opts.candidates:
                    self._set_cands(g, fit["candidates"][:self.opts.candidates])
                    pending = self._pending(g)
                    self.total += len(g.designs) * len(self.seeds)
                    if pending:
                        known.append(g)
                else:
                    self.total += self.opts.candidates * len(self.seeds)
                    need_fit.append(g)
        return need_fit, known

    def _set_cands(self, g: _Group, cands: list[dict]) -> None:
        g.cands, g.designs = cands, design_ids(g.board.name, g.bits, cands)
        for d in g.designs:
            for seed in self.seeds:
                if point_id(d, seed) in self.records:
                    self.reused.add(point_id(d, seed))

    def _pending(self, g: _Group) -> list[str]:
        return [point_id(d, s) for d in g.designs for s in self.seeds
                if point_id(d, s) not in self.records]

    # submitting ----------------------------------------------------------------------------

    def _submit(self, kind: str, name: str, info, fn, *args):
        key = f"dynfix-{kind}-{name}-{self.token}"
        fut = self.client.submit(fn, *args, key=key, pure=False)
        self.futures[key] = (kind, info)
        self.live[key] = fut
        return fut

    def _quant(self, bits: str):
        if bits not in self.quant:
            path = self.out / "quant" / f"{slug(bits)}.yaml"
            self.quant[bits] = self._submit(
                "quantize", slug(bits), bits, tasks.quantize, self.p.model, self.p.calib,
                self.p.data, bits, self.opts.method, str(path.resolve()), self.token)
        return self.quant[bits]

    def _submit_fit(self, g: _Group) -> None:
        gid = group_id(g.board.name, g.bits)
        self.ac.add(self._submit("fit", gid, g, tasks.fit, self._quant(g.bits), g.board,
                                 self.opts.candidates, self.token))

    def _submit_points(self, g: _Group) -> None:
        o = self.opts
        for cand, did in zip(g.cands, g.designs):
            pending = [s for s in self.seeds if point_id(did, s) not in self.records]
            if not pending:
                continue
            folder = str((self.out / "designs" / did).resolve())
            d = self._submit("design", did, (g, cand, None), tasks.design, self._quant(g.bits),
                             g.board, cand, folder, self.p.data, o.images, o.sim, self.token)
            if not o.synth:
                self.ac.add(d)
                continue
            self.futures[d.key] = ("design", None)      # its synth tasks report it
            for seed in pending:
                pid = point_id(did, seed)
                build = str((self.out / "builds" / pid).resolve())
                self.ac.add(self._submit("synth", pid, (g, cand, seed), tasks.synth, d,
                                         g.board, seed, build, o.clock, o.closure, o.router,
                                         self.token))

    # results -------------------------------------------------------------------------------

    def _result(self, fut) -> dict:
        """A finished future's result; a task that raised (a worker that died, an error in
        Dask itself) as a failure record."""
        kind = self.futures[fut.key][0]
        if fut.status == "finished":
            return fut.result()
        try:
            err = fut.exception()
        except Exception as e:          # cancelled
            err = e
        return tasks.failure(kind, err)

    def _save(self, rec: dict) -> None:
        _write_json(self.out / "points" / f"{rec['id']}.json", rec)
        self.records[rec["id"]] = rec
        self.computed.append(rec["id"])
        self._progress(rec)

    def _progress(self, rec: dict) -> None:
        mine = [self.records[i] for i in {*self.computed, *self.reused}]
        failed = sum(r["status"] != "ok" for r in mine)
        ok = [r for r in mine if r["status"] == "ok" and "latency_us" in r]
        best = min(ok, key=lambda r: r["latency_us"], default=None)
        try:
            running = sum(self.client.run(tasks.executing, self.token).values())
        except Exception:
            running = "?"
        what = (f"failed in {rec['stage']}: {rec['reason']}" if rec["status"] != "ok" else
                f"{rec['latency_us']:,.1f} us at {rec['clock_mhz']:g} MHz, "
                f"{rec['luts']:,} LUTs")
        best_text = (f"; best {best['latency_us']:,.1f} us ({best['id']})" if best else "")
        self.say(f"sweep: [{len(mine)}/{self.total} done, {failed} failed, {running} running"
                 f"{best_text}] {rec['id']}: {what}")

    def run(self, cluster: Cluster, need_fit: list[_Group], known: list[_Group]) -> None:
        distributed = _dask()
        self.client = cluster.client
        self.ac = distributed.as_completed()
        for g in need_fit:
            self._submit_fit(g)
        for g in known:
            self._submit_points(g)
        for fut in self.ac:
            kind, info = self.futures[fut.key]
            res = self._result(fut)
            if kind == "fit":
                self._fitted(info, res)
            elif kind in ("design", "synth"):
                g, cand, seed = info
                did = g.designs[g.cands.index(cand)]
                pid = point_id(did, seed)
                self._save(_record(pid, g.board, g.bits, cand, seed, res, self.opts.synth))
            self.live.pop(fut.key, None)
            fut.release()
        self.quant.clear()
        self.live.clear()

    def _fitted(self, g: _Group, res: dict) -> None:
        gid = group_id(g.board.name, g.bits)
        planned = self.opts.candidates * len(self.seeds)
        if tasks.failed(res):
            self.total -= planned - 1
            self._save(_group_failure(g.board, g.bits, res))
            return
        _write_json(self.out / "fits" / f"{gid}.json",
                    {"board": g.board.name, "bits": g.bits, "requested": self.opts.candidates,
                     "limit": res["limit"], "candidates": res["candidates"]})
        self._set_cands(g, res["candidates"])
        pending = self._pending(g)
        self.total += len(g.designs) * len(self.seeds) - planned
        self.say(f"sweep: {gid}: {len(g.cands)} candidate"
                 f"{'s' * (len(g.cands) > 1)} ({', '.join(c['engine'] for c in g.cands)})")
        if pending:
            self._submit_points(g)

    def stop(self) -> None:
        """Cancel what is left and kill the tools the workers run for this sweep."""
        if self.client is None:
            return
        try:
            self.client.cancel(list(self.live.values()), force=True)
            self.client.run(tasks.stop_tools, self.token)
        except Exception:
            pass
        self.live.clear()


class Terminated(KeyboardInterrupt):
    """SIGTERM during a sweep, raised in the main thread so that it unwinds like Ctrl-C."""


def _terminate(signum, frame) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)      # one unwinding is enough
    raise Terminated()


def _terminate_handler():
    """While the sweep runs in the main thread of a process that does not handle SIGTERM:
    SIGTERM unwinds it as Ctrl-C does (the CLI installs its own, dynfix.cli)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    return signal.signal(signal.SIGTERM, _terminate)


def run_sweep(opts: SweepOptions, say: Say = _quiet) -> SweepResult:
    """Run (or with ``opts.resume`` go on with) the sweep into ``opts.output``."""
    _dask()
    p = prepare(opts)
    out = Path(opts.output) if opts.output is not None else default_output(p.name)
    records = open_folder(out, p, opts)
    run = _Run(opts, p, out, records, say)
    need_fit, known = run.plan()
    n_groups = len(p.boards) * len(p.bits)
    say(f"sweep: {p.name} on {', '.join(b.name for b in p.boards)} at "
        f"{', '.join(p.bits)} bits, {opts.candidates} candidate"
        f"{'s' * (opts.candidates > 1)} each"
        + (f", {len(p.seeds)} seed{'s' * (len(p.seeds) > 1)} each" if opts.synth
           else ", no synthesis (latency and LUTs are estimates)")
        + f": {n_groups} fit{'s' * (n_groups > 1)}"
        + (f"; {len(run.reused)} points already finished in {out}" if run.reused else ""))
    if need_fit or known:
        previous = _terminate_handler()
        cluster = None
        try:
            cluster = Cluster(opts.scheduler, opts.workers, say)
            run.run(cluster, need_fit, known)
        except BaseException:
            run.stop()
            raise
        finally:
            if cluster is not None:
                cluster.close()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return finish(out, opts, p, run)


# --- results ---------------------------------------------------------------------------------

def _metric_scale(metric: str) -> float:
    """Display units per stored unit: percent for the fractions, dB as it is."""
    return 100.0 if SWEEP_METRICS[metric][1] == "%" else 1.0


def finish(out: Path, opts: SweepOptions, p: Prepared, run: _Run) -> SweepResult:
    """The Pareto front and the chosen design per board over the points of this sweep's
    boards, bit widths, candidates and seeds; results.json, results.md, pareto.png; the
    designs and builds not chosen removed (unless ``keep_all``)."""
    wanted = set(run.reused) | set(run.computed)
    points = [run.records[i] for i in sorted(wanted) if i in run.records]
    front, chosen = {}, {}
    for board in p.boards:
        ok = [r for r in points if r["board"] == board.name and r["status"] == "ok"
              and "latency_us" in r]
        f = pareto_front(ok)
        metric = ok[0]["metric"] if ok else "accuracy"
        c = choose(f, opts.max_drop / _metric_scale(metric))
        front[board.name] = [r["id"] for r in f]
        chosen[board.name] = c
    synth = bool(opts.synth)
    results = {"model": p.name, "boards": [b.name for b in p.boards], "bits": p.bits,
               "candidates": opts.candidates, "seeds": p.seeds if synth else [],
               "synth": synth, "images": opts.images, "max_drop": opts.max_drop,
               "latency": ("at the clock the bitstream runs at (synthesized)" if synth else
                           "estimate: at the board's oscillator clock, not synthesized"),
               "points": points, "pareto": front,
               "chosen": {b: (c["id"] if c else None) for b, c in chosen.items()},
               "failed": sum(r["status"] != "ok" for r in points)}
    _write_json(out / "results.json", results)
    from .sweep_report import markdown, plot
    table = markdown(results)
    atomic_write_text(out / "results.md", table)
    plot(results, out / "pareto.png")
    if not opts.keep_all:
        _prune(out, [c for c in chosen.values() if c is not None])
    return SweepResult(out, points, front, chosen, list(run.computed),
                       sorted(run.reused), table)


def _prune(out: Path, chosen: list[dict]) -> None:
    """Remove the designs and builds that are not the chosen ones'."""
    keep_designs = {Path(c["design"]).name for c in chosen if c.get("design")}
    keep_builds = {c["id"] for c in chosen}
    for sub, keep in (("designs", keep_designs), ("builds", keep_builds)):
        for path in (out / sub).iterdir():
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)


def sweep(model: Any = "digits", data: str | Path | None = None, *,
          boards: Sequence[Any] | None = None, bits: Sequence[str] | str = ("8",),
          candidates: int = 1, seeds: int | Sequence[int] = 1, synth: bool = True,
          images: int = DEFAULT_IMAGES, output: str | Path | None = None,
          scheduler: str | None = None, workers: int | None = None, resume: bool = False,
          calib: str | Path | None = None, method: str = "greedy", sim: str = "auto",
          clock: float | str = "auto", closure: ClosurePolicy = ClosurePolicy(),
          router: str | None = None, max_drop: float = 1.0, keep_all: bool = False,
          progress: Say = _quiet) -> SweepResult:
    """``dynfix sweep``: every bit width in ``bits`` x the ``candidates`` best engines by
    estimate x placement ``seeds`` (a count K: seeds 1..K) on each of ``boards``, as Dask
    tasks on a local cluster of ``workers`` processes or on ``scheduler``; results, the
    Pareto front and the chosen design per board in ``output`` (default
    ``out/sweep-MODEL``). ``synth=False``: no synthesis (latency at the board's oscillator
    and LUTs from the estimate, labelled as such). ``resume``: go on with the sweep in
    ``output``, skipping its finished points. ``router``: nextpnr's router for every build,
    as :func:`dynfix.api.synth`'s. See :mod:`dynfix.workflow.sweep` and docs/sweep.md."""
    if isinstance(bits, str):
        bits = [b for b in bits.split(",") if b]
    return run_sweep(SweepOptions(
        model=model, data=data, calib=calib, boards=boards, bits=tuple(bits),
        candidates=candidates, seeds=seeds, synth=synth, images=images, clock=clock,
        closure=closure, router=router, method=method, sim=sim, output=output,
        scheduler=scheduler, workers=workers, resume=resume, max_drop=max_drop,
        keep_all=keep_all), progress)
