"""Sweeps on a real (local) Ray: a 2 x 2 grid whose trials are the runs `train` makes, PBT exploiting through
fastddpg's checkpoints, ASHA stopping the worst trial, population trials reporting their members' returns, and
nothing else. One local Ray (2 CPUs, no dashboard: tests/conftest.py's session fixture `local_ray`) serves every
in-process Ray test of the run; the resume test runs the CLI in its own processes (tests/test_sweep_cluster.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ray = pytest.importorskip("ray", reason="Ray Tune is not installed (pip install -e '.[sweep]')")
pytest.importorskip("ray.tune", reason="Ray Tune is not installed (pip install -e '.[sweep]')")

from fastddpg import Config, load_run, sweep, train  # noqa: E402
from fastddpg.reports.plots import figure_title, read_report_figures  # noqa: E402
from fastddpg.tools.sweeps import REPORTS_FILE, TRIALS_FILE  # noqa: E402

# compile auto, the default: a CPU trial of one agent runs the hand-derived update, so the fresh worker process of
# each trial does not import torch's compiler stack, which torch.func's first eager gradient does (~1 s of CPU each)
TINY = dict(env="Pendulum-v1", num_envs=2, total_steps=800, log_every=200, hidden_sizes=(16,), batch_size=32,
            start_steps=200, update_after=200, updates_per_step=0.25, probe_n=8, probe_every_episodes=1,
            device="cpu", compile="auto")
CLI = [sys.executable, "-c", "import sys; from fastddpg.cli import main; sys.exit(main(sys.argv[1:]))"]
TIMING = ["env_steps_per_sec", "updates_per_sec", "wall_time"]
TRIAL_COLUMNS = ["trial", "status", "env_steps", "episodes", "final_return_10", "best_return_10", "exploits",
                 "wall_time_s", "run_dir"]
RUN_FILES = ("config.json", "episodes.csv", "updates.csv", "probes.csv", "actor.pt", "critic.pt", "summary.json",
             "report.html", REPORTS_FILE)


def test_a_grid_of_seeds_and_learning_rates(tmp_path, local_ray):
    out = tmp_path / "grid"
    result = sweep(Config(**TINY), {"seed": [0, 1], "actor_lr": [1e-3, 3e-4]}, out=out)
    trials = pd.read_csv(out / TRIALS_FILE)
    assert len(trials) == 4 and {*TRIAL_COLUMNS, "seed", "actor_lr"} <= set(trials.columns)
    assert sorted(zip(trials["seed"], trials["actor_lr"], strict=True)) == [(0, 3e-4), (0, 1e-3), (1, 3e-4), (1, 1e-3)]
    assert (trials["status"] == "finished").all() and (trials["env_steps"] == 800).all()
    dirs = sorted((out / "trials").iterdir())
    assert len(dirs) == 4 and all(all((d / f).is_file() for f in RUN_FILES) for d in dirs)
    assert len(result.history) == trials["episodes"].sum() and "return_10" in result.history.columns
    titles = [figure_title(f) for f in read_report_figures(out / "report.html")]
    assert any("mean over seeds" in t for t in titles)

    # Tune reuses a finished trial's worker for the next trial: 4 trials, 2 at a time, at most 2 worker processes
    pids = {name: {json.loads(line)["pid"] for line in (out / "tune" / name / "result.json").read_text().splitlines()}
            for name in (d.name for d in dirs)}
    assert len(set().union(*pids.values())) <= 2, pids
    # and a trial, in a fresh worker or a reused one, is the run `train` makes of its config (its own seed, threads)
    for d in (dirs[0], dirs[-1]):
        trial = load_run(d)
        assert json.loads((d / "summary.json").read_text())["threads"] == 1  # --cpus-per-trial 1
        threads = torch.get_num_threads()
        try:
            plain = train(Config.from_dict({**trial.config.to_dict(), "run_dir": str(tmp_path / f"plain-{d.name}")}))
        finally:
            torch.set_num_threads(threads)
        again = load_run(plain.run_dir)
        pd.testing.assert_frame_equal(trial.episodes.drop(columns="wall_time"),
                                      again.episodes.drop(columns="wall_time"), check_exact=True)
        pd.testing.assert_frame_equal(trial.updates.drop(columns=TIMING), again.updates.drop(columns=TIMING),
                                      check_exact=True)
        pd.testing.assert_frame_equal(trial.probes, again.probes, check_exact=True)


def test_pbt_exploits_through_fastddpg_checkpoints(tmp_path, local_ray):
    """Seed 1 is rigged to look worst, so at its first PBT decision with a scored partner it clones seed 0."""
    marks = tmp_path / "marks"
    marks.mkdir()

    def rig(trainer, metrics):
        seed, step = trainer.cfg.seed, trainer.global_step
        (marks / f"{seed}-{step}").touch()
        # Lockstep, so that seed 0 is scored and unfinished at seed 1's decisions however the two workers are
        # scheduled: seed 1 waits until seed 0 has reached its step, seed 0 stays at most one interval ahead.
        other, target = (0, step) if seed == 1 else (1, step - 400)
        deadline = time.monotonic() + 60
        while target > 0 and time.monotonic() < deadline and not any(
                int(m.name.split("-")[1]) >= target for m in marks.glob(f"{other}-*")):
            time.sleep(0.02)
        if seed == 1:
            metrics["return_10"] -= 1e6

    out = tmp_path / "pbt"
    cfg = Config(**{**TINY, "total_steps": 1600})  # three decisions (at 400, 800, 1200): 1200 steps' two missed once
    result = sweep(cfg, {"seed": [0, 1]}, out=out, scheduler="pbt", mutate=["actor_lr"], pbt_interval=400,
                   report_hook=rig)
    t = result.trials.set_index("seed")
    assert t.loc[1, "exploits"] >= 1 and (t["status"] == "finished").all()
    run_dir = Path(t.loc[1, "run_dir"])
    meta = json.loads((run_dir / "config.json").read_text())
    first = meta["exploits"][0]
    assert first["from_trial"] == t.loc[0, "trial"] and first["global_step"] >= 400
    # the learning rate PBT mutated (from the clone's) is the trial's config
    new_lr = meta["exploits"][-1]["mutated"]["actor_lr"][1]
    assert load_run(run_dir).config.actor_lr == pytest.approx(new_lr) and new_lr != cfg.actor_lr
    # after the exploit the trial's env steps continue from the copied checkpoint, not from 0
    reports = pd.read_csv(run_dir / REPORTS_FILE)
    at = reports.index[reports["event"].fillna("").str.startswith("exploit")][0]
    assert reports.loc[at, "env_steps"] > first["global_step"]
    assert reports.loc[at, "env_steps"] <= first["global_step"] + 400
    assert (run_dir / "exploits" / "01" / "episodes.csv").is_file()  # its own history before the exploit
    episodes = load_run(run_dir).episodes
    assert episodes["global_step"].is_monotonic_increasing and episodes["global_step"].max() == cfg.total_steps
    assert episodes["global_step"].min() < first["global_step"]  # the clone's history up to its checkpoint too
    assert any("PBT schedule of actor_lr" in figure_title(f) for f in read_report_figures(out / "report.html"))


def test_asha_stops_the_worst_trial(tmp_path, local_ray):
    def rig(trainer, metrics):
        if trainer.cfg.actor_lr < 5e-4:
            metrics["return_10"] = -1e9

    out = tmp_path / "asha"
    result = sweep(Config(**{**TINY, "total_steps": 1200}), {"actor_lr": [1e-3, 3e-4, 1e-4]}, out=out,
                   scheduler="asha", grace_period=400, max_concurrent=1, report_hook=rig)
    t = result.trials.set_index("actor_lr")
    assert t.loc[1e-3, "status"] == "finished" and t.loc[1e-3, "env_steps"] == 1200
    for lr in (3e-4, 1e-4):
        assert t.loc[lr, "status"] == "stopped" and t.loc[lr, "env_steps"] < 1200
        assert (Path(t.loc[lr, "run_dir"]) / "report.html").is_file()  # written for a stopped trial too
    # one worker ran the three trials (Tune's actor reuse with ASHA): the 1e-4 trial took the worker of the
    # stopped 3e-4 trial, whose thread had finished its run directory (its summary) before the worker was handed on
    pids = {json.loads(line)["pid"] for d in (out / "trials").iterdir()
            for line in (out / "tune" / d.name / "result.json").read_text().splitlines()}
    assert len(pids) == 1, pids
    summary = json.loads((Path(t.loc[3e-4, "run_dir"]) / "summary.json").read_text())
    assert summary["env_steps"] == t.loc[3e-4, "env_steps"]


@pytest.mark.slow
def test_a_reused_worker_keeps_its_compiled_update_and_each_trial_is_its_fresh_process_run(tmp_path, local_ray):
    """Four compiled trials in one worker, in this order: seed 0 and seed 1 on 1 thread (seed 1 runs the graph
    seed 0 compiled: the same shapes and hyperparameters), then seeds 0 and 1 on 2 threads (the graphs are reset:
    inductor's kernels keep the thread count they were compiled with). Each trial runs on its own thread count
    and its tables are exactly those of `fastddpg run` of its config.json in a fresh process."""

    def threads_seen(trainer, metrics):
        from torch._dynamo.utils import counters

        metrics["torch_threads"] = torch.get_num_threads()
        metrics["graphs"] = counters["stats"]["unique_graphs"]  # graphs dynamo compiled in this worker so far

    out = tmp_path / "compiled"
    cfg = Config(**{**TINY, "compile": "default", "total_steps": 600})
    sweep(cfg, {"seed": [0, 1], "threads": [1, 2]}, out=out, max_concurrent=1, report_hook=threads_seen)
    dirs = sorted((out / "trials").iterdir())  # trial ids in the order Tune made them: seed varies fastest
    reports = {d.name: [json.loads(line) for line in (out / "tune" / d.name / "result.json").read_text().splitlines()]
               for d in dirs}
    assert len({r["pid"] for rows in reports.values() for r in rows}) == 1  # one worker ran the four
    summaries = [json.loads((d / "summary.json").read_text()) for d in dirs]
    assert [(load_run(d).config.seed, s["threads"]) for d, s in zip(dirs, summaries, strict=True)] == [
        (0, 1), (1, 1), (0, 2), (1, 2)]
    for d, s in zip(dirs, summaries, strict=True):
        assert {r["torch_threads"] for r in reports[d.name]} == {s["threads"]}
        assert s["compile"] == "default"
    graphs = [reports[d.name][-1]["graphs"] for d in dirs]
    assert graphs[1] == graphs[0] and graphs[3] == graphs[2] > graphs[1]  # seed 1 reran seed 0's graph
    for d in dirs:
        fresh = tmp_path / f"fresh-{d.name}"
        p = subprocess.run([*CLI, "run", "--config", str(d / "config.json"), "--run-dir", str(fresh), "--quiet"],
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-2000:]
        trial, again = load_run(d), load_run(fresh)
        pd.testing.assert_frame_equal(trial.episodes.drop(columns="wall_time"),
                                      again.episodes.drop(columns="wall_time"), check_exact=True)
        pd.testing.assert_frame_equal(trial.updates.drop(columns=TIMING), again.updates.drop(columns=TIMING),
                                      check_exact=True)
        pd.testing.assert_frame_equal(trial.probes, again.probes, check_exact=True)


def test_a_population_trial_reports_its_members_returns_to_tune(tmp_path, local_ray):
    """Trials of 2 seeds each (--num-seeds 2): at every report, the return_10 that Tune received (the trial's
    result.json under tune/) is the mean over the members of each member's last-10 mean of the episodes ended
    by then, computed here from the trial's episodes.csv, and so lies within the returns' range."""
    out = tmp_path / "population"
    result = sweep(Config(**{**TINY, "num_seeds": 2, "total_steps": 1200}), {"seed": [0, 1]}, out=out)
    received = sorted((out / "tune").rglob("result.json"))
    assert len(received) == 2
    for path in received:
        reports = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        trial = reports[0]["trial_id"]
        episodes = load_run(out / "trials" / trial).episodes
        assert set(episodes["member"]) == {0, 1} and reports[-1]["env_steps"] == 1200 and len(reports) >= 3
        for report in reports:
            ended = episodes[episodes["global_step"] <= report["env_steps"]]
            means = [g.sort_values("episode")["return"].tail(10).mean() for _, g in ended.groupby("member")]
            assert report["return_10"] == pytest.approx(np.mean(means), rel=1e-9), (trial, report["env_steps"])
            assert ended["return"].min() <= report["return_10"] <= ended["return"].max()
        # what the sweep's own tables say the trial ended with is what it last told Tune
        row = result.trials.set_index("trial").loc[trial]
        assert row["final_return_10"] == pytest.approx(reports[-1]["return_10"], rel=1e-9)
        assert result.history[result.history["trial"] == trial]["return_10"].iloc[-1] == pytest.approx(
            reports[-1]["return_10"], rel=1e-9)


def test_a_killed_worker_is_retried_from_its_checkpoint_and_a_trial_that_always_fails_ends_as_error(tmp_path,
                                                                                                     local_ray):
    """One sweep of three trials (one sweep, not two: each costs Ray workers' start-up).

    Seed 1's worker process is killed (SIGKILL, once) at env step 1000, after its checkpoint at 800. Tune starts
    the trial again (--max-failures), it resumes from that checkpoint, and its tables end continuous: the same
    episodes, update and probe steps as seed 0's uninterrupted trial (Pendulum's episodes are 200 steps, so the
    envs' restart at 800 falls on episode ends), nothing duplicated or lost.

    Seed 2 raises at env step 600 on every attempt: it ends as ``error`` after the first try and max_failures
    retries, with its error in trials.csv, the result and the report, each retry resumed from its checkpoint at 400
    (no episode twice), and the other trials finish."""
    import os
    import signal

    marker, attempts = tmp_path / "killed", tmp_path / "attempts"
    attempts.mkdir()

    def kill_once_or_fail(trainer, metrics):
        if trainer.cfg.seed == 1 and trainer.global_step == 1000 and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        if trainer.cfg.seed == 2 and trainer.global_step == 600:
            (attempts / f"{time.time_ns()}").touch()
            raise RuntimeError("rigged failure at step 600")

    out = tmp_path / "crashes"
    cfg = Config(**{**TINY, "total_steps": 1200, "checkpoint_every": 400})
    result = sweep(cfg, {"seed": [0, 1, 2]}, out=out, report_hook=kill_once_or_fail, max_failures=1)
    assert marker.exists()
    t = result.trials.set_index("seed")
    assert (t.loc[[0, 1], "status"] == "finished").all() and (t.loc[[0, 1], "env_steps"] == 1200).all()
    assert list(result.errors) == [t.loc[2, "trial"]]

    # the killed trial
    killed, whole = load_run(t.loc[1, "run_dir"]), load_run(t.loc[0, "run_dir"])
    assert [r["global_step"] for r in killed.meta["resumes"]] == [800]  # the retry went through the resume path
    pids = {json.loads(line)["pid"] for line in (out / "tune" / t.loc[1, "trial"] / "result.json").read_text()
            .splitlines()}
    assert int(marker.read_text()) in pids and len(pids) == 2  # reports from the killed worker and from the retry
    same = ["episode", "env", "global_step", "length"]
    pd.testing.assert_frame_equal(killed.episodes[same], whole.episodes[same])
    assert killed.episodes["episode"].tolist() == list(range(1, len(killed.episodes) + 1))
    for table, key in (("updates", ["global_step"]), ("probes", ["snapshot", "probe"])):
        rows, ref = getattr(killed, table), getattr(whole, table)
        assert not rows.duplicated(key).any() and rows["global_step"].is_monotonic_increasing, table
        assert rows[[*key, "global_step"]].values.tolist() == ref[[*key, "global_step"]].values.tolist(), table
    reports = pd.read_csv(Path(t.loc[1, "run_dir"]) / REPORTS_FILE)
    assert reports["env_steps"].is_unique and reports["env_steps"].is_monotonic_increasing
    assert reports["env_steps"].tolist() == pd.read_csv(Path(t.loc[0, "run_dir"]) / REPORTS_FILE)["env_steps"].tolist()
    assert reports["event"].fillna("").tolist().count("resume@800") == 1

    # the trial that always fails
    assert len(list(attempts.iterdir())) == 2  # the first try and max_failures retries
    trials = pd.read_csv(out / TRIALS_FILE).set_index("seed")
    assert trials.loc[2, "status"] == "error" and "rigged failure at step 600" in trials.loc[2, "error"]
    assert "rigged failure at step 600" in result.errors[trials.loc[2, "trial"]]
    assert "rigged failure at step 600" in (out / "report.html").read_text()
    episodes = load_run(trials.loc[2, "run_dir"]).episodes  # each retry resumed at 400: no episode twice
    assert not episodes.duplicated(["global_step", "env"]).any()
    assert episodes["episode"].tolist() == list(range(1, len(episodes) + 1))


def test_optuna_search_with_asha_samples_inside_the_bounds(tmp_path, local_ray):
    pytest.importorskip("optuna", reason="Optuna is not installed (pip install -e '.[sweep]')")
    out = tmp_path / "optuna"
    space = {"actor_lr": "loguniform:1e-4:1e-2", "tau": "uniform:0.001:0.02", "batch_size": "choice:16,32",
             "hidden_sizes": "choice:16,8x8"}
    result = sweep(Config(**{**TINY, "total_steps": 1200}), space, out=out, search="optuna", num_samples=3,
                   scheduler="asha", grace_period=400)
    trials = pd.read_csv(out / TRIALS_FILE, dtype={"trial": str})  # Optuna's trial ids are 8 hex digits
    assert len(trials) == 3 and set(trials["status"]) <= {"finished", "stopped"} and not result.errors
    assert trials["actor_lr"].between(1e-4, 1e-2).all() and trials["tau"].between(0.001, 0.02).all()
    assert set(trials["batch_size"]) <= {16, 32} and set(trials["hidden_sizes"].astype(str)) <= {"16", "8x8"}
    for d in trials["run_dir"]:  # each trial ran the values Optuna proposed: its config, as the table says
        row = trials.set_index("run_dir").loc[d]
        assert load_run(d).config.actor_lr == pytest.approx(row["actor_lr"], rel=1e-12)
    import pickle

    searcher = pickle.loads(max((out / "tune").glob("searcher-state-*.pkl")).read_bytes())  # OptunaSearch's state
    assert searcher["_completed_trials"] == set(trials["trial"])  # Optuna was told every result
    assert searcher["_metric"] == "return_10" and searcher["_mode"] == "max" and searcher["_seed"] == 42
