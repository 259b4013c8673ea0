"""The stages of a ``dynfix sweep`` as Dask tasks (:mod:`dynfix.workflow.sweep` submits them).

Each task runs on a worker: quantize (one per bit width), fit (one per board and bit width),
generate + simulate (one per engine candidate), synthesize (one per candidate and placement
seed). A task takes the result of the one before it and returns a plain dict; a stage that
fails returns ``{"failed": stage, "reason": ...}`` instead of raising, and every later task
that gets such a result passes it on untouched, so one failing point never stops the
sweep and each point's record says where and why it failed.

While a task runs, the worker's environment holds :data:`MARKER` (the sweep's token), which
the tools it starts (yosys, nextpnr, Icarus, Verilator) inherit: :func:`stop_tools` kills
exactly those when the sweep is stopped.
"""

from __future__ import annotations

import os
import signal
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from dynfix.errors import DynfixError

#: The environment variable that marks the processes a sweep's tasks start.
MARKER = "DYNFIX_SWEEP"
#: The sweeps stopped in this worker process (:func:`stop_tools`): a task of theirs that
#: Dask could not stop (a running one) starts no further stage.
STOPPED: set[str] = set()


class Stopped(Exception):
    """The sweep was stopped while this task ran."""


def failed(result: Any) -> bool:
    """Whether a task's result is a failure record."""
    return isinstance(result, dict) and "failed" in result


def failure(stage: str, error: BaseException) -> dict:
    """The failure record of ``stage``: a user-facing error's message as it is, anything
    else (a bug, a tool crash the stage did not catch) with its type and last frame."""
    if isinstance(error, DynfixError):
        reason = str(error)
    else:
        tb = traceback.extract_tb(error.__traceback__)
        where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
        reason = f"{type(error).__name__}: {error}{where}"
    return {"failed": stage, "reason": " ".join(reason.split())}


@contextmanager
def marked(token: str) -> Iterator[None]:
    """Run with :data:`MARKER` set to ``token`` (restored afterwards)."""
    check(token)
    old = os.environ.get(MARKER)
    os.environ[MARKER] = token
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(MARKER, None)
        else:
            os.environ[MARKER] = old


def ignore_sigint() -> None:
    """In a local cluster's worker process (``Client.run``, in its main thread): leave
    Ctrl-C, which the terminal sends to every process of the group, to the client, which
    stops the workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def check(token: str) -> None:
    """Raise :class:`Stopped` once the sweep ``token`` has been stopped."""
    if token in STOPPED:
        raise Stopped("the sweep was stopped")


def stop_tools(token: str) -> int:
    """Stop the sweep ``token`` in this worker (run on every worker with ``Client.run``
    when a sweep stops): kill the processes its tasks started, and let them start no more
    stages; how many processes."""
    import psutil                   # a dependency of distributed

    STOPPED.add(token)
    killed = 0
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.environ().get(MARKER) == token:
                proc.kill()
                killed += 1
        except psutil.Error:
            pass
    return killed


def executing(token: str, dask_worker=None) -> int:
    """How many of the sweep ``token``'s tasks this worker is running (``Client.run``
    passes the worker; a task Dask cancelled runs until it returns; ``""``: any task)."""
    try:
        return sum(str(ts.key).endswith(token) for ts in dask_worker.state.executing)
    except AttributeError:          # another distributed's worker state
        return 0


def quantize(model, calib: str, data: str, bits: str, method: str, path: str,
             token: str) -> dict:
    """Quantize at ``bits`` (the spec written to ``path``), and the integer model's
    accuracies on the whole test data (:func:`dynfix.workflow.run._accuracies`)."""
    from dynfix import api
    from dynfix.inputs import load_inputs, load_model
    from .report import sweep_metric
    from .run import _accuracies

    with marked(token):
        t0 = time.perf_counter()
        try:
            m = load_model(model)
            q = api.quantize(m, calib, bits, method, output=path)
            x, y = load_inputs(data, split="test")
            acc = _accuracies(m, q, x, y)
        except Exception as e:
            return failure("quantize", e)
        metric = sweep_metric(acc)
        value = {"accuracy": acc["integer"], "agreement": acc["agreement"],
                 "sqnr": acc["sqnr_db"]}[metric]
        return {"q": q, "metric": metric, "accuracy": value, "float": acc["float"],
                "seconds": round(time.perf_counter() - t0, 2)}


def fit(quant: dict, board, n: int, token: str) -> dict:
    """The ``n`` best engines for ``board`` by estimate: the fit's choice, then its
    runners-up (:func:`dynfix.boards.fit.fit` with ``alternatives``)."""
    if failed(quant):
        return quant
    from dynfix import api

    with marked(token):
        try:
            r = api.fit(quant["q"], board, alternatives=n - 1)
        except Exception as e:
            return failure("fit", e)
    return {"limit": r.limit, "candidates": [
        {"rank": i + 1, "engine": c.config.summary(), "config": c.config.choice(),
         "multipliers": c.config.multipliers_text(), "cycles_estimate": int(c.cycles),
         "estimate": {k: int(v) for k, v in c.estimate.total.rounded().items()}}
        for i, c in enumerate(r.candidates)]}


def design(quant: dict, board, cand: dict, folder: str, data: str, images: int, sim: str,
           token: str) -> dict:
    """Generate candidate ``cand`` into ``folder`` and simulate ``images`` test inputs on its
    Verilog against the integer model (none: ``images`` 0); a mismatch fails the point."""
    if failed(quant):
        return quant
    from dynfix import api
    from .simulator import choose

    out = {"quant": {k: v for k, v in quant.items() if k != "q"}, "folder": folder}
    with marked(token):
        t0 = time.perf_counter()
        try:
            g = api.generate(quant["q"], folder, config=cand["config"])
        except Exception as e:
            return dict(out, **failure("generate", e))
        out["seconds"] = {"generate": round(time.perf_counter() - t0, 2)}
        if images < 1:
            return dict(out, cycles=None, images=0, mismatches=0, simulator=None)
        try:
            check(token)
            chosen = choose(sim, g.cycles_per_image, images)
            t0 = time.perf_counter()
            s = api.simulate(g, quant["q"], data, images, simulator=chosen.simulator)
        except Exception as e:
            return dict(out, **failure("simulate", e))
    out["seconds"]["simulate"] = round(time.perf_counter() - t0, 2)
    res = s.details
    out.update(cycles=int(res.host_cycles_per_image), compute_cycles=int(res.cycles_per_image),
               images=int(res.images), mismatches=int(res.mismatches),
               simulator=res.simulator)
    if res.mismatches:
        where = res.first_mismatch["where"] if res.first_mismatch else "?"
        out.update(failed="simulate", reason=f"{res.mismatches} of {res.images} simulated "
                   f"images differ from the integer model (first: {where})")
    return out


def synth(design_result: dict, board, seed: int, build_dir: str, clock, closure,
          router: str | None, token: str) -> dict:
    """Synthesize the generated design with nextpnr seed ``seed`` (and ``router``, None for
    the board file's) into ``build_dir`` (:func:`dynfix.api.synth`: the timing closure on
    the board's PLL by default); missed timing fails the point (its figures kept)."""
    if failed(design_result):
        return design_result
    from dynfix import api

    out = dict(design_result)
    with marked(token):
        try:
            r = api.synth(design_result["folder"], board, build_dir, check_timing=False,
                          clock=clock, closure=closure, seed=seed, router=router)
        except Exception as e:
            return dict(out, **failure("synth", e))
    d = r.to_dict()
    out["synth"] = {k: d[k] for k in ("luts", "ffs", "dsps", "brams", "sprams", "fmax_mhz",
                                      "clock_mhz", "target_mhz", "timing_met", "seconds",
                                      "bitstream", "critical_path", "closure", "available", "pll")}
    if not r.timing_met:
        out.update(failed="synth", reason=f"timing not met: Fmax {r.fmax_mhz:.2f} MHz < "
                   f"{r.target_mhz:g} MHz at the best clock the closure found")
    return out
