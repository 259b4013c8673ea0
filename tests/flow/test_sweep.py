"""``dynfix sweep``: a small model swept on a two-worker Dask LocalCluster (quantize, fit,
generate, simulate; synthesis marked ``synth``), a point that fails (an engine that does not
fit), an interrupted sweep and its resume, the Pareto selection on hand-made points, the fit's
runners-up, and the one-line refusal without Dask.

One LocalCluster serves the module (starting one costs seconds); the sweeps reach it by its
scheduler address, as a cluster of machines would be reached."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from unittest.mock import ANY

import numpy as np
import psutil
import pytest
import yaml

import dynfix
from cli_helpers import run_cli
from dynfix.cli import main
from dynfix.commands.sweep import SOME_FAILED
from dynfix.workflow import sweep_tasks
from dynfix.workflow.pareto import choose, dominates, pareto_front
from dynfix.workflow.sweep import design_ids, slug

needs_iverilog = pytest.mark.usefixtures("icarus")

BITS = ["8", "6"]
#: The four engines the fit ranks first for the small model on the iCEBreaker, two per width.
IDS = [f"icebreaker-{b}-{e}" for b in BITS for e in ("tn5-tm3-dual8x8", "tn4-tm4-dual8x8")]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The small test network (tests/hw_models.py) as a model file, 40 labelled inputs, and
    a board file like the iCEBreaker's with one block RAM, which no engine fits."""
    from hw_models import small_net
    from dynfix.boards.registry import BOARDS_DIR
    from dynfix.quant.float_model import predict
    from dynfix.quant.yaml_io import save_yaml

    folder = tmp_path_factory.mktemp("sweep-files")
    model, _, _ = small_net()
    save_yaml(model, folder / "small.yaml")
    x = np.random.default_rng(0).standard_normal((40, 5, 7, 6)).astype(np.float32)
    y = np.argmax(predict(model, x).reshape(len(x), -1), axis=1)
    y[::8] = (y[::8] + 1) % 4                      # an accuracy below 100 %
    np.savez(folder / "data.npz", x=x, y=y)
    board = yaml.safe_load((BOARDS_DIR / "icebreaker.yaml").read_text())
    board.update(name="tiny", default=False)
    board["resources"]["bram"]["blocks"] = 1
    for key in ("spram",):
        board["resources"].pop(key)
    board.pop("flash")
    (folder / "tiny.yaml").write_text(yaml.safe_dump(board))
    return folder


@pytest.fixture(scope="module")
def scheduler():
    """A two-worker LocalCluster of processes, as ``dynfix sweep`` starts one."""
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address="127.0.0.1:0", memory_limit=0,
                      silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


def sweep_args(files, out, scheduler) -> list[str]:
    return ["sweep", str(files / "small.yaml"), "--data", str(files / "data.npz"),
            "--boards", f"icebreaker,{files / 'tiny.yaml'}", "--bits", ",".join(BITS),
            "--candidates", "2", "--no-synth", "--images", "2", "--output", str(out),
            "--scheduler", scheduler]


@pytest.fixture(scope="module")
def swept(files, scheduler, tmp_path_factory, icarus_module):
    """One CLI sweep: 2 bit widths x 2 candidates on the iCEBreaker, and the tiny board."""
    out = tmp_path_factory.mktemp("sweep") / "s"
    code, std, err = run_cli(sweep_args(files, out, scheduler))
    return code, std, err, out


@pytest.fixture(scope="module")
def icarus_module():
    from sim_helpers import require_simulator
    require_simulator("icarus")


def points(out) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in (out / "points").glob("*.json")}


def test_sweep_points(swept):
    code, std, err, out = swept
    assert code == SOME_FAILED, err                 # the tiny board's points failed
    recs = points(out)
    assert sorted(recs) == sorted(IDS + ["tiny-6", "tiny-8"])
    for pid in IDS:
        r = recs[pid]
        assert r["status"] == "ok" and r["mismatches"] == 0 and r["images"] == 2
        assert r["cycles_source"] == "simulated" and r["resources_source"] == "estimate"
        # Not synthesized: the latency is at the iCEBreaker's oscillator (its board file).
        assert r["clock_mhz"] == 12 and r["latency_us"] == pytest.approx(r["cycles"] / 12,
                                                                          abs=1e-3)
        assert abs(r["cycles"] - r["cycles_estimate"]) <= 0.05 * r["cycles_estimate"]
        assert r["metric"] == "accuracy" and 0.5 < r["accuracy"] < 1
    # A bit width is quantized once: each point of it has the same accuracy.
    assert recs[IDS[0]]["accuracy"] == recs[IDS[1]]["accuracy"]
    assert sorted(p.name for p in (out / "quant").glob("*.yaml")) == ["6.yaml", "8.yaml"]
    res = json.loads((out / "results.json").read_text())
    assert res["failed"] == 2 and res["synth"] is False
    assert "not synthesized" in res["latency"]
    front = res["pareto"]["icebreaker"]
    assert front and set(front) <= set(IDS) and res["chosen"]["icebreaker"] in front
    assert res["chosen"]["tiny"] is None
    # Only the chosen design's folder is kept.
    chosen = recs[res["chosen"]["icebreaker"]]
    assert [p.name for p in (out / "designs").iterdir()] == [chosen["id"]]
    assert (out / chosen["design"] / "dynfix_engine.v").is_file()
    assert (out / "pareto.png").stat().st_size > 1000
    md = (out / "results.md").read_text()
    assert md.strip() == std.strip()
    assert f"**{chosen['id']}**" in md and "not synthesized" in md
    # Progress on stderr: one line per finished point, with the counts and the best.
    done = [ln for ln in err if ln.startswith("sweep: [")]
    assert len(done) == 6 and done[-1].startswith("sweep: [6/6 done, 2 failed, 0 running")
    assert any("best" in ln for ln in done)


def test_failing_point_recorded(swept):
    code, std, err, out = swept
    recs = points(out)
    for bits in BITS:
        r = recs[f"tiny-{bits}"]
        assert r["status"] == "failed" and r["stage"] == "fit"
        assert "does not fit tiny even with the smallest engine" in r["reason"]
    md = (out / "results.md").read_text()
    assert "## Failed points (2)" in md and "| tiny-8 | fit | small does not fit tiny" in md
    assert "sweep: tiny: no point finished" in err


def test_resume_skips_finished_points(swept, files, scheduler, tmp_path):
    """A sweep folder as an interrupted sweep leaves it (one point not finished, no results):
    --resume runs that point only; the others and the bit width all of whose points are
    finished are not computed again."""
    _, _, _, done = swept
    out = tmp_path / "s"
    shutil.copytree(done, out)
    (out / "points" / f"{IDS[3]}.json").unlink()
    for name in ("results.json", "results.md", "pareto.png"):
        (out / name).unlink()
    before = {p.name: p.stat().st_mtime_ns for p in [*(out / "points").iterdir(),
                                                     *(out / "quant").iterdir()]}
    code, std, err = run_cli(sweep_args(files, out, scheduler))
    assert code == 1 and "holds a sweep (5 finished points): pass --resume" in err[-1]
    result = dynfix.sweep(files / "small.yaml", files / "data.npz",
                          boards=["icebreaker", files / "tiny.yaml"], bits=BITS, candidates=2,
                          synth=False, images=2, output=out, scheduler=scheduler, resume=True)
    assert result.computed == [IDS[3]]
    assert sorted(result.reused) == sorted(IDS[:3] + ["tiny-6", "tiny-8"])
    after = {p.name: p.stat().st_mtime_ns for p in [*(out / "points").iterdir(),
                                                    *(out / "quant").iterdir()]}
    # Quantized again: 6 bits only (8 bits: all its points were finished).
    assert {k for k in before if after[k] != before[k]} == {"6.yaml", "6.params.npz"}
    assert points(out)[IDS[3]] == points(done)[IDS[3]] | {"seconds": ANY}
    assert len(result.points) == 6 and len(result.failed) == 2
    # Other options than the sweep's: its points would not compare.
    with pytest.raises(dynfix.DynfixError, match="other options .*images 2 -> 1"):
        dynfix.sweep(files / "small.yaml", files / "data.npz", bits=BITS, synth=False,
                     images=1, output=out, scheduler=scheduler, resume=True)


def test_interrupted_sweep_keeps_finished_points(files, scheduler, tmp_path, icarus_module):
    """Ctrl-C (here raised by the progress callback after the first finished point) stops
    the sweep: the tools its tasks run are killed, the finished points are kept, and
    --resume finishes the rest without running them again."""
    out = tmp_path / "s"
    seen = []

    def stop_after_first(msg: str) -> None:
        if msg.startswith("sweep: ["):
            seen.append(msg)
            raise KeyboardInterrupt

    kwargs = dict(boards=["icebreaker"], bits=["8"], candidates=2, synth=False, images=1,
                  output=out, scheduler=scheduler)
    with pytest.raises(KeyboardInterrupt):
        dynfix.sweep(files / "small.yaml", files / "data.npz", progress=stop_after_first,
                     **kwargs)
    kept = points(out)
    assert len(seen) == 1 and len(kept) == 1 and not (out / "results.json").exists()
    # The cluster's workers are this process's children: none runs a tool of the sweep
    # (a task stopped between its stages starts none).
    for _ in range(50):
        marked = [p for p in psutil.Process().children(recursive=True) if _marker(p)]
        if not marked:
            break
        time.sleep(0.1)
    assert not marked, marked
    # A task Dask cancelled while it ran (a generate: pure Python) ends on its own.
    from distributed import Client
    with Client(scheduler) as client:
        for _ in range(100):
            if not sum(client.run(sweep_tasks.executing, "").values()):
                break
            time.sleep(0.1)
    result = dynfix.sweep(files / "small.yaml", files / "data.npz", resume=True, **kwargs)
    assert result.reused == sorted(kept) and sorted(result.computed) == sorted(
        set(IDS[:2]) - set(kept))
    assert not result.failed


def _marker(proc) -> bool:
    try:
        return sweep_tasks.MARKER in proc.environ()
    except psutil.Error:
        return False


def test_pareto_front_on_hand_made_points():
    """Latency and LUTs lower, accuracy higher is better. Worked out by hand: B dominates
    D (faster, fewer LUTs, as accurate); E equals A in everything (neither dominates); F
    is dominated by C (same latency and accuracy, more LUTs)."""
    pts = [{"id": "A", "latency_us": 100, "luts": 3000, "accuracy": 0.98},
           {"id": "B", "latency_us": 80, "luts": 3500, "accuracy": 0.97},
           {"id": "C", "latency_us": 60, "luts": 5000, "accuracy": 0.90},
           {"id": "D", "latency_us": 90, "luts": 3600, "accuracy": 0.97},
           {"id": "E", "latency_us": 100, "luts": 3000, "accuracy": 0.98},
           {"id": "F", "latency_us": 60, "luts": 5100, "accuracy": 0.90}]
    by = {p["id"]: p for p in pts}
    assert dominates(by["B"], by["D"]) and not dominates(by["D"], by["B"])
    assert not dominates(by["A"], by["E"]) and dominates(by["C"], by["F"])
    assert not dominates(by["A"], by["B"]) and not dominates(by["B"], by["A"])
    front = pareto_front(pts)
    assert [p["id"] for p in front] == ["C", "B", "A", "E"]
    # Within 1 point of the best accuracy (0.98): B (0.97) is the fastest; within 10: C;
    # within none: A and E tie in everything, the id decides.
    assert choose(front, 0.01)["id"] == "B"
    assert choose(front, 0.10)["id"] == "C"
    assert choose(front, 0.0)["id"] == "A"
    assert choose([], 0.01) is None


def test_ids():
    assert slug("tn=4 tm=4 im2col dual 8x8") == "tn4-tm4-im2col-dual8x8"
    assert slug("8/4/4") == "8-4-4"
    cands = [{"engine": "tn=2 tm=2", "config": {"tn": 2}},
             {"engine": "tn=2 tm=2", "config": {"tn": 2, "w_spram": 1}}]
    first, second = design_ids("ulx3s", "8/4/4", cands)
    assert first == "ulx3s-8-4-4-tn2-tm2" and second.startswith(first + "-")


def test_fit_runners_up():
    """``alternatives``: the same choice, then the next engines that fit, ranked by
    estimated cycles then LUTs, none twice."""
    from hw_models import small_net
    from dynfix.boards.fit import fit
    from dynfix.inputs import get_board

    model, spec, _ = small_net()
    for name in ("icebreaker", "ulx3s"):
        board = get_board(name)
        plain = fit(model, spec, board)
        more = fit(model, spec, board, alternatives=3)
        assert plain.alternatives == [] and plain.candidates == [plain.chosen]
        assert more.chosen.config == plain.chosen.config and more.limit == plain.limit
        assert more.considered == plain.considered and len(more.alternatives) == 3
        configs = [c.config for c in more.candidates]
        assert len(set(configs)) == 4 and all(c.fits for c in more.candidates)
        ranks = [(c.cycles, c.estimate.total.luts) for c in more.alternatives]
        assert ranks == sorted(ranks)


def test_sweep_without_dask(monkeypatch, files):
    """Without Dask installed: one line that says what to install, exit 1."""
    monkeypatch.setitem(sys.modules, "distributed", None)
    code, std, err = run_cli(["sweep", str(files / "small.yaml"), "--data",
                              str(files / "data.npz"), "--no-synth"])
    assert code == 1 and std == "" and len(err) == 1
    assert "pip install 'dask[distributed]'" in err[0]


def test_synth_seed_argument(tmp_path):
    """``dynfix.synth(seed=)`` refuses what is not a seed before anything else."""
    with pytest.raises(dynfix.DynfixError, match="placement seed is an integer"):
        dynfix.synth(tmp_path, seed="2")
    with pytest.raises(dynfix.DynfixError, match="router must be one of router1, router2, "
                       "not 'router3'"):
        dynfix.synth(tmp_path, router="router3")


def test_sweep_router_reaches_every_build(monkeypatch, files, tmp_path, capsys):
    """``router``: refused before any work (no cluster, no output folder) when nextpnr has
    no such router; otherwise passed to each build's ``dynfix.synth`` (None: the board
    file's)."""
    from dynfix import api

    with pytest.raises(dynfix.DynfixError, match="router must be one of router1, router2, "
                       "not 'router3'"):
        dynfix.sweep(files / "small.yaml", files / "data.npz", router="router3",
                     output=tmp_path / "s")
    assert not (tmp_path / "s").exists()
    with pytest.raises(SystemExit):
        main(["sweep", str(files / "small.yaml"), "--router", "router3"])
    assert "invalid choice: 'router3'" in capsys.readouterr().err

    def synth(folder, board, build_dir, **kw):
        raise dynfix.DynfixError(f"router={kw['router']}")

    monkeypatch.setattr(api, "synth", synth)
    design = {"folder": str(tmp_path), "design": "d"}
    for router in ("router2", None):
        out = sweep_tasks.synth(design, "ulx3s", 1, str(tmp_path / "b"), "auto", None, router,
                                "token")
        assert out["failed"] == "synth" and out["reason"] == f"router={router}"


@pytest.mark.synth
def test_sweep_with_synthesis(files, scheduler, tmp_path, icarus_module):
    """Synthesis with two nextpnr seeds: a point per seed, each build placed with its seed,
    the latency at the clock the bitstream runs at, the chosen bitstream kept."""
    out = tmp_path / "s"
    result = dynfix.sweep(files / "small.yaml", files / "data.npz", boards=["icebreaker"],
                          bits=["8"], candidates=1, seeds=2, images=1, output=out,
                          scheduler=scheduler)
    assert not result.failed and len(result.points) == 2
    for r in result.points:
        assert r["id"].endswith(f"-s{r['seed']}") and r["clock_source"] == "synthesized"
        assert r["resources_source"] == "synthesized" and r["clock_mhz"] > 12
        assert r["latency_us"] == pytest.approx(r["cycles"] / r["clock_mhz"], abs=1e-3)
        assert r["synth"]["timing_met"] and r["fmax_mhz"] >= r["clock_mhz"]
    chosen = result.chosen["icebreaker"]
    assert (out / chosen["bitstream"]).is_file()
    script = (out / "builds" / chosen["id"] / "build_dynfix_top.sh").read_text()
    assert f"--seed {chosen['seed']} " in script
    assert [p.name for p in (out / "builds").iterdir()] == [chosen["id"]]
