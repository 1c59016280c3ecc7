"""Evaluation during training (--eval-every): eval.csv rows at the expected steps, the best model kept (and its
weights give its return again), --which best|final for eval/export/load_checkpoint, resume keeps the best, a
population keeps each member's best, bad input exits 2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fastddpg import Config, load_checkpoint, load_run, train
from fastddpg.cli import main
from fastddpg.core.config import ConfigError
from fastddpg.reports.plots import TITLE_EVAL, figure_title, read_report_figures
from fastddpg.runs.checkpoint import latest_checkpoint
from fastddpg.runs.evaluate import EVAL_SEED_OFFSET, evaluate_members, load_actor
from tests.test_rundir import SHORT_RUN, short_run

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # TorchScript export, as test_export

EVAL = ["--eval-every", "200", "--eval-episodes", "2"]
# SHORT_RUN for 700 steps: periodic evaluations at 200, 400 and 600 env steps, a final one at 700
RUN = [a if a != "800" else "700" for a in SHORT_RUN]


def means(run: Path) -> pd.DataFrame:
    """One row per evaluation during training (and member): its kind, env step and mean return."""
    ev = load_run(run).evals
    ev = ev[ev["kind"] != "manual"]
    keys = (["member"] if "member" in ev.columns else []) + ["global_step", "kind"]
    return ev.groupby(keys, sort=True)["return"].mean().reset_index()


def best_of(table: pd.DataFrame) -> tuple[int, float]:
    """(env step, mean return) of the first evaluation with the highest mean: the one best_actor.pt keeps."""
    row = table.loc[table["return"].idxmax()]
    return int(row["global_step"]), float(row["return"])


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("periodic") / "run"
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["run", *RUN, "--run-dir", str(run_dir), *EVAL, "--tensorboard"]) == 0
    return run_dir, out.getvalue()


def test_rows_at_the_expected_steps(run):
    run_dir, _ = run
    ev = load_run(run_dir).evals
    assert ev.groupby(["global_step", "kind"]).size().to_dict() == {
        (200, "periodic"): 2, (400, "periodic"): 2, (600, "periodic"): 2, (700, "final"): 2}
    assert ev["seed"].unique().tolist() == [42 + EVAL_SEED_OFFSET]  # the same episodes at every evaluation
    assert ev["episode"].tolist() == [0, 1] * 4 and (ev["length"] == 200).all()


def test_best_model_is_the_best_evaluation(run):
    run_dir, _ = run
    step, ret = best_of(means(run_dir))
    best = json.loads((run_dir / "best.json").read_text())
    assert (best["global_step"], best["members"][0]["global_step"]) == (step, step)
    assert best["return"] == pytest.approx(ret, rel=1e-12)
    # the kept weights give that return again: evaluated anew on the same episodes
    again = evaluate_members(run_dir, episodes=2, which="best")[0]
    assert again.mean == pytest.approx(ret, rel=1e-9)
    ev = load_run(run_dir).evals
    assert ev[ev["kind"] == "manual"]["global_step"].tolist() == [step, step]  # tagged with the best's step
    # the final checkpoint holds the same best model
    ckpt = load_checkpoint(run_dir, which="best")
    assert ckpt["best"]["global_step"] == step
    saved = torch.load(run_dir / "best_actor.pt", weights_only=True)
    for k, v in ckpt["actor"].state_dict().items():
        torch.testing.assert_close(v, saved[k], rtol=0, atol=0)


def test_console_summary_and_cost(run):
    run_dir, out = run
    lines = re.findall(r"^(final )?eval at ([\d,]+) env steps: return (-?\d+\.\d) \+- ", out, re.M)
    assert [(f, s) for f, s, _ in lines] == [("", "200"), ("", "400"), ("", "600"), ("final ", "700")]
    table = means(run_dir)
    for (_, _, shown), want in zip(lines, table["return"], strict=True):
        assert float(shown) == pytest.approx(want, abs=0.051)
    assert re.search(r"^evaluation: 4 x 2 noise-free episodes in \d+\.\d s", out, re.M), out
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["evaluations"] == 4 and s["eval_seconds"] > 0
    assert (s["best_eval_step"], s["best_eval_return"]) == pytest.approx(best_of(table))
    # steps/s counts training time only
    assert s["env_steps_per_sec"] > s["env_steps"] / s["wall_time_s"]
    assert s["env_steps_per_sec"] == pytest.approx(s["env_steps"] / (s["wall_time_s"] - s["eval_seconds"]),
                                                   rel=1e-9)


def test_tensorboard_and_report(run):
    run_dir, _ = run
    from fastddpg.runs.tensorboard import read_scalars

    tb = read_scalars(run_dir)
    reward = tb[tb["tag"] == "eval/mean_reward"].sort_values("step")
    table = means(run_dir)
    assert reward["step"].tolist() == [200, 400, 600, 700]
    np.testing.assert_allclose(reward["value"], table["return"], rtol=1e-5)
    assert tb[tb["tag"] == "eval/mean_ep_length"]["value"].tolist() == [200.0] * 4
    figs = read_report_figures(run_dir / "report.html")
    titles = [figure_title(f) for f in figs]
    assert titles.index(TITLE_EVAL) == 1  # right after the learning curve
    traces = {t.get("name"): t for t in figs[1]["data"]}
    np.testing.assert_allclose(traces["eval return"]["y"], table["return"])
    step, ret = best_of(table)
    assert traces["best"]["x"] == [step] and traces["best"]["y"] == pytest.approx([ret])


def test_which_best_and_final_for_eval_export_load_checkpoint(run, tmp_path, capsys):
    run_dir, _ = run
    best, _ = load_actor(run_dir, which="best")
    final, _ = load_actor(run_dir)
    saved = torch.load(run_dir / "best_actor.pt", weights_only=True)
    torch.testing.assert_close(best.state_dict()["net.0.weight"], saved["net.0.weight"], rtol=0, atol=0)
    obs = torch.randn(5, 3)
    for which, actor in (("best", best), ("final", final)):
        out = tmp_path / f"{which}.ts.pt"
        assert main(["export", str(run_dir), "--which", which, "--out", str(out)]) == 0
        torch.testing.assert_close(torch.jit.load(str(out))(obs), actor(obs))
        assert main(["eval", str(run_dir), "--which", which, "--episodes", "1"]) == 0
    ckpt = load_checkpoint(run_dir)  # final: the checkpoint's last weights
    torch.testing.assert_close(ckpt["actor"](obs), final(obs))
    assert main(["eval", str(run_dir), "--which", "latest"]) == 2
    assert "--which='latest' is invalid" in capsys.readouterr().err


def test_which_best_without_a_best_model_is_one_line(tmp_path, capsys):
    plain = short_run(tmp_path / "plain")
    capsys.readouterr()
    for argv in (["eval", str(plain), "--which", "best"], ["export", str(plain), "--which", "best"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "has no best_actor.pt" in err[0] and "--eval-every N" in err[0], err
    with pytest.raises(ConfigError, match=r"holds no best model.*--eval-every N"):
        load_checkpoint(plain, which="best")
    assert not (plain / "best.json").exists()


@pytest.mark.parametrize("flag, value, words", [("--eval-every", "-1", "use 0 (off) or a positive"),
                                                ("--eval-episodes", "0", "evaluate at least 1 episode")])
def test_bad_eval_flags_exit_2(tmp_path, capsys, flag, value, words):
    assert main(["run", *SHORT_RUN, "--quiet", "--run-dir", str(tmp_path / "r"), flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{flag}={value} is invalid: {words}" in err[0]
    assert not (tmp_path / "r").exists()


def test_resume_keeps_the_best(tmp_path):
    """The best-so-far (weights and all) comes back from the checkpoint: a best that nothing can beat (its return
    set to 1e9 in the checkpoint) stays the best after the resumed run's evaluations, and an evaluation written
    after the checkpoint (a run killed there) is dropped and done again."""
    run_dir = tmp_path / "run"
    half = [a if a != "800" else "400" for a in SHORT_RUN]
    assert main(["run", *half, "--quiet", "--run-dir", str(run_dir), *EVAL]) == 0
    ckpt_path = latest_checkpoint(run_dir)
    state = torch.load(ckpt_path, weights_only=True)
    saved = state["trainer"]["callbacks"]["eval"]
    assert saved["best"][0][0] in (200, 400)
    saved["best"][0][1] = 1e9
    torch.save(state, ckpt_path)
    kept = dict(saved["best_actor"])
    with open(run_dir / "eval.csv", "a") as f:  # an evaluation after the checkpoint
        f.write("2026-01-01T00:00:00.000+00:00,periodic,600,10042,0,-1.0,200,12.5,0.25\r\n")
    (run_dir / "best.json").write_text(json.dumps({"global_step": 600, "return": -1.0, "members": []}))
    assert main(["run", "--resume", str(run_dir), "--total-steps", "800", "--quiet"]) == 0
    ev = load_run(run_dir).evals
    assert ev.groupby(["global_step", "kind"]).size().to_dict() == {
        (200, "periodic"): 2, (400, "periodic"): 2, (600, "periodic"): 2, (800, "periodic"): 2}
    assert -1.0 not in ev["return"].tolist()
    # the resumed run's clock goes on from the checkpoint's: its evaluations come later, with the first run's
    # evaluation seconds counted before them
    clock = ev.groupby("global_step")[["wall_time", "eval_seconds"]].first()
    assert (clock["wall_time"].diff().dropna() > 0).all() and (clock["eval_seconds"].diff().dropna() > 0).all()
    assert ((clock["wall_time"] - clock["eval_seconds"]).diff().dropna() > 0).all()
    best = json.loads((run_dir / "best.json").read_text())
    assert (best["global_step"], best["return"]) == (saved["best"][0][0], 1e9)
    now = torch.load(run_dir / "best_actor.pt", weights_only=True)
    for k, v in kept.items():
        torch.testing.assert_close(now[k], v, rtol=0, atol=0)
    assert json.loads((run_dir / "summary.json").read_text())["evaluations"] == 4


def test_population_keeps_each_members_best(tmp_path):
    run_dir = tmp_path / "pop"
    assert main(["run", *SHORT_RUN, "--quiet", "--run-dir", str(run_dir), *EVAL, "--num-seeds", "2"]) == 0
    table = means(run_dir)
    ev = load_run(run_dir).evals
    assert ev["seed"].nunique() == 1 and sorted(ev["member"].unique()) == [0, 1]  # both on the same episodes
    best = json.loads((run_dir / "best.json").read_text())
    assert "global_step" not in best  # a population's best is per member
    for m in (0, 1):
        step, ret = best_of(table[table["member"] == m].reset_index(drop=True))
        assert best["members"][m]["global_step"] == step
        assert best["members"][m]["return"] == pytest.approx(ret, rel=1e-12)
        assert evaluate_members(run_dir, episodes=2, members=[m], which="best")[m].mean == pytest.approx(ret,
                                                                                                     rel=1e-9)
        assert load_checkpoint(run_dir, member=m, which="best")["best"]["global_step"] == step
    # the report: one evaluation line per member
    fig = next(f for f in read_report_figures(run_dir / "report.html") if figure_title(f) == TITLE_EVAL)
    lines = {t["name"]: t for t in fig["data"] if t.get("mode") == "lines+markers"}
    assert sorted(lines) == ["member 0: eval return", "member 1: eval return"]
    for m in (0, 1):
        np.testing.assert_allclose(lines[f"member {m}: eval return"]["y"], table[table["member"] == m]["return"])


def test_python_api_without_a_run_dir():
    cfg = Config(total_steps=400, num_envs=2, hidden_sizes=(16,), batch_size=32, start_steps=200, update_after=200,
                 updates_per_step=0.25, log_every=200, device="cpu", compile="off", eval_every=200, eval_episodes=1)
    result = train(cfg)
    assert result.evals is not None and result.evals["global_step"].tolist() == [200, 400]
    assert result.evals["kind"].tolist() == ["periodic", "periodic"]
    assert result.summary["evaluations"] == 2
    assert train(Config(**{**cfg.to_dict(), "eval_every": 0})).evals is None


def test_old_eval_csv_still_reads_and_is_upgraded(tmp_path):
    run_dir = short_run(tmp_path / "old")
    (run_dir / "eval.csv").write_text("eval_time,seed,episode,return,length\r\n"
                                      "2025-01-01T00:00:00.000+00:00,7,0,-123.5,200\r\n")
    ev = load_run(run_dir).evals
    assert ev["kind"].tolist() == ["manual"] and ev["global_step"].tolist() == [800]
    assert ev["return"].tolist() == [-123.5]
    evaluate_members(run_dir, episodes=1)
    assert (run_dir / "eval.csv").read_text().splitlines()[0] == \
        "eval_time,kind,global_step,seed,episode,return,length,wall_time,eval_seconds"
    ev = load_run(run_dir).evals
    assert ev["return"].iloc[0] == -123.5 and ev["kind"].tolist() == ["manual", "manual"]
    assert ev["wall_time"].isna().all() and ev["eval_seconds"].isna().all()  # no run's clock to tell


def test_eval_csv_without_the_clock_columns_reads_and_is_upgraded(tmp_path):
    run_dir = short_run(tmp_path / "older")
    (run_dir / "eval.csv").write_text("eval_time,kind,global_step,seed,episode,return,length\r\n"
                                      "2025-01-01T00:00:00.000+00:00,periodic,400,7,0,-150.25,200\r\n")
    ev = load_run(run_dir).evals
    assert ev[["kind", "global_step", "return"]].values.tolist() == [["periodic", 400, -150.25]]
    assert ev["wall_time"].isna().all() and ev["eval_seconds"].isna().all()
    evaluate_members(run_dir, episodes=1)
    assert (run_dir / "eval.csv").read_text().splitlines()[0].endswith(",length,wall_time,eval_seconds")
    assert load_run(run_dir).evals["kind"].tolist() == ["periodic", "manual"]


def test_evaluations_on_the_runs_clock(run):
    """wall_time: each periodic evaluation's start on episodes.csv's clock; eval_seconds: the seconds earlier
    evaluations took, so that wall_time - eval_seconds is the time that reached the evaluated weights."""
    run_dir, _ = run
    r = load_run(run_dir)
    ev = r.evals[r.evals["kind"] != "manual"]
    per = ev.groupby("global_step")[["wall_time", "eval_seconds"]].agg(["min", "max"])
    for col in ("wall_time", "eval_seconds"):  # one clock reading per evaluation, shared by its episodes
        assert (per[(col, "min")] == per[(col, "max")]).all()
    wall, before = per[("wall_time", "min")].to_numpy(), per[("eval_seconds", "min")].to_numpy()
    assert before[0] == 0.0 and (np.diff(before) > 0).all()
    # an evaluation begins after the previous one ended: the gap holds at least the previous one's seconds
    assert (np.diff(wall) >= np.diff(before)).all()
    trained = wall - before
    assert (np.diff(trained) > 0).all()
    s = json.loads((run_dir / "summary.json").read_text())
    assert wall[-1] < s["wall_time_s"] and before[-1] < s["eval_seconds"]
    # the episode that ended at an evaluation's step ended before that evaluation began, on the same clock
    eps = r.episodes.set_index("global_step")["wall_time"]
    for step, w in zip(per.index, wall, strict=True):
        if step in eps.index:
            assert eps.loc[[step]].max() <= w


def test_sweep_eval_return_is_the_same_evaluation(tmp_path):
    """The sweep's eval_return (live, and of a finished trial) is `evaluate_state`'s: a population's is the mean
    over its members, each evaluated with its own actor on the same episodes as `fastddpg eval` evaluates it."""
    from fastddpg.tools.sweeps import SweepSpec, eval_return, final_metrics
    from fastddpg.training.trainer import Trainer

    run_dir = tmp_path / "pop"
    assert main(["run", *SHORT_RUN, "--quiet", "--run-dir", str(run_dir), "--num-seeds", "2"]) == 0
    by_eval = evaluate_members(run_dir, episodes=2)
    want = (by_eval[0].mean + by_eval[1].mean) / 2
    assert by_eval[0].mean != by_eval[1].mean
    spec = SweepSpec(out=str(tmp_path / "sweep"), base={}, metric="eval_return", eval_episodes=2)
    assert final_metrics(run_dir, spec)["eval_return"] == pytest.approx(want, rel=1e-12)
    trainer = Trainer(load_run(run_dir).config)
    trainer.algo.actor.load_state_dict(torch.load(run_dir / "actor.pt", weights_only=True))
    try:
        assert eval_return(trainer, 2) == pytest.approx(want, rel=1e-12)
    finally:
        trainer.env.close()


def test_eval_lines_in_both_reporters():
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from fastddpg.reports.reporting import PlainReporter, RichReporter
    from fastddpg.runs.evaluate import Best, EvalResult, Evaluation

    def result(*returns):
        return EvalResult(np.array(returns), np.array([200] * len(returns)), 10042)

    single = Evaluation("periodic", 2000, {0: result(-100.0, -300.0)}, [Best(1000, -150.0, 5.0)], [], 0.25)
    pop = Evaluation("final", 3000, {0: result(-100.0), 1: result(-300.0)}, [Best(3000, -100.0, 0.0),
                                                                            Best(1000, -250.0, 0.0)], [0], 0.5)
    lines: list[str] = []
    rep = PlainReporter(lines.append)
    rep.on_eval(None, single)
    rep.on_eval(None, pop)
    assert lines == ["eval at 2,000 env steps: return -200.0 +- 100.0 (2 episodes, 0.2 s) | best -150.0 at 1,000",
                     "final eval at 3,000 env steps: return -200.0 [-300.0, -100.0] over 2 members (1 episode each, "
                     "0.5 s) | new best for member 0"]
    buf = io.StringIO()
    rich = RichReporter(10_000, Console(file=buf, force_terminal=True, width=160, color_system=None))
    with rich:
        rich.at_start(SimpleNamespace(global_step=0, num_updates=0, num_episodes=0, num_envs=4,
                                      cfg=SimpleNamespace(env="Pendulum-v1")))
        rich.on_eval(None, single)
    out = buf.getvalue()
    assert lines[0] in out and "eval return" in out and "-200.0" in out


def test_ctrl_c_keeps_the_best_and_resume_finishes(tmp_path, monkeypatch):
    import signal

    from tests.conftest import stop_at

    run_dir = tmp_path / "run"
    stop_at(monkeypatch, 400, lambda: signal.raise_signal(signal.SIGINT))
    assert main(["run", *RUN, "--quiet", "--run-dir", str(run_dir), *EVAL]) == 130
    monkeypatch.undo()
    step, ret = best_of(means(run_dir))
    assert means(run_dir)["global_step"].tolist() == [200, 400]  # the evaluation at the stop's step is done
    best = json.loads((run_dir / "best.json").read_text())
    assert (best["global_step"], best["return"]) == (step, pytest.approx(ret, rel=1e-12))
    ckpt = load_checkpoint(run_dir, which="best")
    assert ckpt["global_step"] == 400 and ckpt["best"]["global_step"] == step
    assert main(["run", "--resume", str(run_dir), "--quiet"]) == 0
    assert means(run_dir)[["global_step", "kind"]].values.tolist() == [
        [200, "periodic"], [400, "periodic"], [600, "periodic"], [700, "final"]]
    step, ret = best_of(means(run_dir))
    assert json.loads((run_dir / "best.json").read_text())["global_step"] == step


def test_resume_an_older_run_and_turn_evaluation_on(tmp_path):
    """A run directory from before evaluation existed (no eval fields in its config.json and checkpoint, no
    callbacks' states) resumes, and --eval-every may be given with --resume."""
    run_dir = tmp_path / "old"
    half = [a if a != "800" else "400" for a in SHORT_RUN]
    assert main(["run", *half, "--quiet", "--run-dir", str(run_dir)]) == 0
    ckpt_path = latest_checkpoint(run_dir)
    state = torch.load(ckpt_path, weights_only=True)
    for key in ("eval_every", "eval_episodes"):
        del state["config"][key]
    del state["trainer"]["callbacks"], state["trainer"]["counters"]["eval_seconds"]
    torch.save(state, ckpt_path)
    meta = json.loads((run_dir / "config.json").read_text())
    for key in ("eval_every", "eval_episodes"):
        del meta["config"][key]
    (run_dir / "config.json").write_text(json.dumps(meta))
    assert main(["run", "--resume", str(run_dir), "--total-steps", "800", "--quiet", *EVAL[:2]]) == 0
    assert means(run_dir)[["global_step", "kind"]].values.tolist() == [[600, "periodic"], [800, "periodic"]]
    assert json.loads((run_dir / "best.json").read_text())["global_step"] in (600, 800)


def test_sweep_flags_share_eval_episodes(tmp_path, capsys):
    """`fastddpg sweep` has one --eval-episodes (its eval_return's, also its trials' --eval-every episodes), and
    --resume alone is not refused for it."""
    pytest.importorskip("ray", reason="ray not installed (pip install 'fastddpg[sweep]')")
    from fastddpg.cli import build_parser, config_from_args

    args = build_parser().parse_args(["sweep", "--out", "x", "--eval-episodes", "3", "--eval-every", "100"])
    base = config_from_args(args)
    assert (args.eval_episodes, base.eval_episodes, base.eval_every) == (3, 3, 100)
    assert main(["sweep", "--resume", str(tmp_path)]) == 2
    assert "not a sweep directory" in capsys.readouterr().err


def test_evaluation_adds_no_host_read_per_training_step(monkeypatch, tmp_path):
    """Host reads by fastddpg's code with --eval-every: the training loop's action copy once per vector step, the
    evaluations' own rollouts (one action copy per eval env step, two reads of the returns per evaluation), and
    the rest grows with reports only (tests/test_host_transfers.py, without evaluation)."""
    import sys
    from collections import Counter

    from tests.test_host_transfers import ACTION_COPY, COUNTED, LOG_EVERY, MAX_PER_FLUSH

    def counted(total_steps: int) -> tuple[Counter, dict]:
        counts: Counter = Counter()
        with monkeypatch.context() as mp:
            for name in COUNTED:
                orig = getattr(torch.Tensor, name)

                def wrapped(self, *args, _orig=orig, _name=name, **kwargs):
                    module = sys._getframe(1).f_globals.get("__name__", "")
                    if module.startswith("fastddpg."):
                        counts[(module, sys._getframe(1).f_code.co_name, _name)] += 1
                    return _orig(self, *args, **kwargs)

                mp.setattr(torch.Tensor, name, wrapped)
            result = train(Config(num_envs=2, total_steps=total_steps, log_every=LOG_EVERY, hidden_sizes=(16,),
                                  batch_size=32, start_steps=100, update_after=100, updates_per_step=0.5, probe_n=8,
                                  device="cpu", compile="off", eval_every=200, eval_episodes=1,
                                  run_dir=str(tmp_path / str(total_steps)), quiet=True))
        return counts, result.summary

    for total in (400, 800):
        counts, s = counted(total)
        evals = s["evaluations"]
        assert evals == total // 200
        copies = {k[2]: v for k, v in counts.items() if k[:2] == ACTION_COPY}
        assert copies == {"cpu": total // 2 + evals * 200, "numpy": total // 2 + evals * 200}  # Pendulum: 200 steps
        in_eval = sum(v for k, v in counts.items() if k[0] == "fastddpg.runs.evaluate")
        assert in_eval == 2 * evals  # returns.numpy() and lengths.numpy() of each evaluation
        rest = {k: v for k, v in counts.items() if k[:2] != ACTION_COPY and k[0] != "fastddpg.runs.evaluate"}
        assert {k[0] for k in rest} <= {"fastddpg.training.devicelog", "fastddpg.training.probes"}, rest
        assert sum(rest.values()) <= MAX_PER_FLUSH * (total // LOG_EVERY + 1), rest
