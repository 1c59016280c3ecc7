"""A population's run reported in one unit: the console summary, summary.json and report.html's table say per
member and over all members, labelled; the learning curve, Q-vs-target and loss panels draw each member apart."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from fastddpg import load_run
from fastddpg.cli import main
from fastddpg.reports.plots import figure_title, moving_average, read_report_figures
from fastddpg.reports.reporting import print_summary

TITLE_CURVE, TITLE_Q = "DDPG learning curve (score per episode)", "Critic outputs vs TD targets (mean over minibatch)"
TITLE_LOSSES, TITLE_THROUGHPUT = "Actor/Critic losses", "Throughput (env steps/s over time)"


@pytest.fixture(scope="module")
def population(tmp_path_factory) -> tuple[Path, str]:
    """2 grid points x 2 seeds, 2 envs each, 400 env steps per member (one 200-step episode per env)."""
    d = tmp_path_factory.mktemp("pop") / "run"
    args = ["run", "--env", "Pendulum-v1", "--num-envs", "2", "--num-seeds", "2", "--grid", "tau=0.005,0.05",
            "--total-steps", "400", "--start-steps", "200", "--update-after", "100", "--updates-per-step", "0.5",
            "--log-every", "100", "--hidden-sizes", "16", "--batch-size", "16", "--probe-n", "4", "--device", "cpu",
            "--compile", "off", "--run-dir", str(d)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(args) == 0
    return d, out.getvalue()


def test_summary_says_per_member_and_in_total(population):
    d, console = population
    s = json.loads((d / "summary.json").read_text())
    per_member_updates = s["updates"]
    assert per_member_updates == 151  # one per vector step (2 envs x 0.5) at env steps 100, 102, ..., 400
    assert s["member_episodes"] == [2, 2, 2, 2] and s["episodes"] == s["episodes_total"] == 8
    assert s["env_steps"] == s["env_steps_per_member"] == 400 and s["env_steps_total"] == 1600
    assert s["updates_per_member"] == per_member_updates and s["updates_total"] == 4 * per_member_updates
    assert s["env_steps_per_sec_total"] == pytest.approx(4 * s["env_steps_per_sec_per_member"])
    assert s["env_steps_per_sec_per_member"] == pytest.approx(s["env_steps_per_sec"])
    assert s["updates_per_sec_total"] == pytest.approx(4 * s["updates_per_sec_per_member"])
    lines = console.strip().splitlines()
    progress = [line for line in lines if line.startswith("step ")]  # the plain per-report lines
    assert len(progress) == 4 and progress[-1].startswith("step       400/400 per member | ep     8 over 4 members")
    assert all(" steps/s per member | " in line and line.endswith(" upd/s per member") for line in progress)
    lines = lines[lines.index(next(line for line in lines if line.startswith("done in "))):]
    assert f"| per member: 2 episodes, 400 env steps, {per_member_updates} updates, " in lines[0], lines
    assert lines[1].startswith(f"all 4 members: 8 episodes, 1,600 env steps, {4 * per_member_updates:,} updates, ")
    rate = re.search(r"per member: .*, ([\d,]+) env steps/s", lines[0]).group(1)
    total = re.search(r"all 4 members: .*, ([\d,]+) env steps/s", lines[1]).group(1)
    assert int(total.replace(",", "")) == pytest.approx(4 * int(rate.replace(",", "")), abs=4)
    assert lines[2].startswith("population: 4 members, last-10-episode mean return ")
    table = re.search(r"<table>.*?</table>", (d / "report.html").read_text(), re.S).group(0)
    assert "<td>2 per member (8 over 4 members)</td>" in table
    assert "<td>400 per member (1,600 over 4 members)</td>" in table
    assert f"<td>{per_member_updates} per member ({4 * per_member_updates:,} over 4 members)</td>" in table


def test_a_single_run_summary_names_no_member(capsys):
    s = {"episodes": 8, "env_steps": 400, "updates": 300, "wall_time_s": 2.0, "env_steps_per_sec": 200.0,
         "updates_per_sec": 150.0, "replay_ratio": 0.75, "last10_mean_return": -1200.0, "num_envs": 2}
    print_summary(s)
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["done: 8 episodes, 400 env steps, 300 updates in 2.0 s | 200 env steps/s, 150 updates/s | "
                   "replay ratio 0.750 | last-10-episode mean return -1200.0"]


def traces_named(fig: dict, pattern: str) -> dict[int, dict]:
    """{member: trace} of the traces whose name matches ``pattern`` (with a (\\d+) for the member)."""
    out = {}
    for t in fig["data"]:
        m = re.fullmatch(pattern, t.get("name", ""))
        if m:
            out[int(m.group(1))] = t
    return out


def test_learning_curve_q_and_losses_draw_each_member(population):
    d, _ = population
    run = load_run(d)
    ep, up = run.episodes, run.updates
    figs = {figure_title(f): f for f in read_report_figures(d / "report.html")}
    curve = figs[TITLE_CURVE]
    returns = traces_named(curve, r"member (\d+): Return")
    averages = traces_named(curve, r"member (\d+): Return \(MA 10\)")
    assert sorted(returns) == sorted(averages) == [0, 1, 2, 3]
    assert len(curve["data"]) == 8  # nothing pooled beside them
    for k in range(4):
        mine = ep[ep["member"] == k].sort_values("episode")
        np.testing.assert_array_equal(returns[k]["x"], mine["global_step"])
        np.testing.assert_array_equal(returns[k]["y"], mine["return"])
        np.testing.assert_allclose(averages[k]["y"], moving_average(mine["return"].to_numpy()))
    # coloured by grid point: members 0 and 1 (tau 0.005) alike, 2 and 3 (tau 0.05) another colour
    colors = [returns[k]["marker"]["color"] for k in range(4)]
    assert colors[0] == colors[1] != colors[2] == colors[3]

    q, y = traces_named(figs[TITLE_Q], r"member (\d+): Q\(s,a\) mean"), \
        traces_named(figs[TITLE_Q], r"member (\d+): TD target y mean")
    critic = traces_named(figs[TITLE_LOSSES], r"member (\d+): Critic loss \(MSE\)")
    assert sorted(q) == sorted(y) == sorted(critic) == [0, 1, 2, 3]
    for k in range(4):
        mine = up[up["member"] == k]
        assert len(mine) == up["update"].nunique()
        np.testing.assert_array_equal(q[k]["x"], mine["update"])
        np.testing.assert_array_equal(q[k]["y"], mine["q_mean"])
        np.testing.assert_array_equal(y[k]["y"], mine["y_mean"])
        np.testing.assert_array_equal(critic[k]["y"], mine["critic_loss"])
    # the members' rates are one per report, drawn once and said to be per member
    rates = [t for t in figs[TITLE_THROUGHPUT]["data"] if t["name"] == "env steps/s per member"]
    assert len(rates) == 1 and len(rates[0]["x"]) == len(set(rates[0]["x"]))


def test_tensorboard_writes_each_member_as_a_run(tmp_path):
    """--tensorboard with a population: tensorboard/member_K/ per member, its episodes, update rows and evaluations
    only."""
    pytest.importorskip("tensorboard", reason="pip install 'fastddpg[tensorboard]' (CI installs it)")
    from fastddpg.runs.tensorboard import read_scalars

    d = tmp_path / "run"
    assert main(["run", "--env", "Pendulum-v1", "--num-envs", "2", "--num-seeds", "2", "--total-steps", "400",
                 "--start-steps", "200", "--update-after", "100", "--updates-per-step", "0.5", "--log-every", "200",
                 "--hidden-sizes", "16", "--batch-size", "16", "--probe-n", "4", "--device", "cpu", "--compile", "off",
                 "--quiet", "--tensorboard", "--eval-every", "200", "--eval-episodes", "1", "--run-dir", str(d)]) == 0
    run, scalars = load_run(d), read_scalars(d)
    assert sorted(p.name for p in (d / "tensorboard").glob("member_*")) == ["member_0", "member_1"]
    assert sorted(scalars["member"].unique()) == [0, 1]
    for k in range(2):
        mine = scalars[scalars["member"] == k]
        ret = mine[mine["tag"] == "charts/episodic_return"].sort_values("step")
        ep = run.episodes[run.episodes["member"] == k]
        np.testing.assert_allclose(ret["value"], ep["return"], rtol=1e-6)
        q = mine[mine["tag"] == "losses/q_mean"].sort_values("step")
        up = run.updates[run.updates["member"] == k]
        assert q["step"].tolist() == up["global_step"].tolist()
        np.testing.assert_allclose(q["value"], up["q_mean"], rtol=1e-6)
        assert "losses/member" not in set(mine["tag"])
        # its own evaluations, under a single run's tags
        ev = run.evals[run.evals["member"] == k].groupby("global_step")["return"].mean()
        tb = mine[mine["tag"] == "eval/mean_reward"].sort_values("step")
        assert tb["step"].tolist() == ev.index.tolist() == [200, 400]
        np.testing.assert_allclose(tb["value"], ev.to_numpy(), rtol=1e-6)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (d / "tensorboard" / "member_1").glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    text = acc.Tensors("hyperparameters/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "|seed|44|" in text and "|num_seeds|1|" in text  # member 1's own config: its seed (42 + 1 x 2 envs)


def test_live_panel_labels_a_populations_units():
    from types import SimpleNamespace

    from rich.console import Console

    from fastddpg.core.schema import EpisodeRow, Last10, Report
    from fastddpg.reports.reporting import RichReporter

    buf = io.StringIO()
    trainer = SimpleNamespace(cfg=SimpleNamespace(total_steps=1000, env="Pendulum-v1",
                                                  grid_members=lambda: {"all members": [0, 1]}),
                              global_step=0, num_updates=0, num_episodes=0, num_envs=2, members=2)
    row = {"update": 90, "global_step": 500, "critic_loss": 0.125, "actor_loss": 3.5, "q_mean": -3.25,
           "y_mean": -3.5, "updates_in_row": 90, "env_steps_per_sec": 1000.0, "updates_per_sec": 900.0,
           "wall_time": 1.0}
    rep = RichReporter(1000, console=Console(file=buf, force_terminal=True, width=160, color_system=None),
                       refresh_per_second=20)
    with rep:
        rep.at_start(trainer)
        trainer.global_step, trainer.num_updates, trainer.num_episodes = 500, 90, 4
        episodes = [EpisodeRow(k, i, 0, 500, r, 200, 0.0)
                    for i, (k, r) in enumerate(zip([0, 0, 1, 1], [-1200.0, -1000.0, -900.0, -700.0], strict=True))]
        last10 = Last10(episodes)
        rep(trainer, Report(global_step=500, vector_steps=0, num_updates=90, num_episodes=4, member_episodes=(2, 2),
                            episodes=episodes, updates=[{"member": 0, **row}, {"member": 1, **row}], probes=[],
                            return_10=last10.value, member_return_10=last10.members(2), wall_time=0.0,
                            eval_seconds=0.0, compile_seconds=0.0))
    out = buf.getvalue()
    for needle in ("env steps per member", "env steps/s per member", "updates/s per member",
                   "episodes over 2 members", "updates per member"):
        assert needle in out, needle


def test_two_populations_in_one_report_are_told_apart_by_name(population, tmp_path):
    from fastddpg.reports.plots import build_figures, run_labels

    d, _ = population
    other = tmp_path / "other"
    shutil.copytree(d, other)
    runs = [load_run(d), load_run(other)]
    titles = [f.layout.title.text for f in build_figures(runs) if "population" in (f.layout.title.text or "")]
    assert len(titles) == 2 and len(set(titles)) == 2
    assert all(f"({label})" in title for label, title in zip(run_labels(runs), titles, strict=True))
