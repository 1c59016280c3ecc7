"""Report details that used to mislead: the warm-up throughput spike, TD3's overlapping Q lines, heatmap axes
past the run's end, an empty learning curve without a word, where `fastddpg plot A B` wrote its file, and a
wrong hint on a missing Gymnasium dependency."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

from fastddpg import Config, ConfigError, load_run
from fastddpg.cli import main
from fastddpg.envs.vector import make_gym_vector_env
from fastddpg.reports.plots import learning_curve, probe_heatmap, q_vs_target, throughput
from tests.conftest import trained_copy
from tests.test_export import TINY_RUN


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("polish") / "run"
    return trained_copy(TINY_RUN, path)


def updates(rows: list[tuple[int, int, float]], **extra: list[float]) -> pd.DataFrame:
    """An updates table: (update, global_step, env_steps_per_sec) per row, other metrics filled in."""
    n = len(rows)
    df = pd.DataFrame(rows, columns=["update", "global_step", "env_steps_per_sec"])
    for col in ("critic_loss", "actor_loss", "q_mean", "y_mean"):
        df[col] = np.linspace(0, 1, n)
    df["updates_per_sec"] = 100.0
    df["wall_time"] = np.arange(1.0, n + 1)
    for col, values in extra.items():
        df[col] = values
    return df


def names(fig) -> list[str]:
    return [t.name for t in fig.data]


def test_warmup_interval_is_off_the_throughput_axis(run):
    # the default run's pattern: the first row covers the 1,000 random steps up to update_after with 4 updates
    data = dataclasses.replace(load_run(run), config=Config(update_after=1000, log_every=1000),
                               updates=updates([(4, 1000, 17013.0), (1004, 2000, 112.0), (2004, 3000, 137.0)]))
    fig = throughput([data], ["run"])
    main_line = fig.data[names(fig).index("env steps/s")]
    assert list(main_line.y) == [112.0, 137.0]
    warm = fig.data[names(fig).index("env steps/s, warm-up (before --update-after)")]
    assert list(warm.y) == [17013.0] and warm.visible == "legendonly"
    # no warm-up row (update_after at a report boundary before the first row): nothing hidden, no extra trace
    data = dataclasses.replace(data, config=Config(update_after=0, log_every=1000))
    fig = throughput([data], ["run"])
    assert names(fig) == ["env steps/s", "updates/s"] and len(fig.data[0].y) == 3


def test_td3_q_lines_are_distinct_and_q1_is_not_drawn_twice(run):
    q = [1.0, 2.0, 3.0]
    up = updates([(1, 100, 1.0), (2, 200, 1.0), (3, 300, 1.0)], q1_mean=q, q2_mean=[1.5, 2.5, 3.5],
                 target_min_mean=[0.5, 1.5, 2.5])
    up["q_mean"] = q
    data = dataclasses.replace(load_run(run), updates=up)
    fig = q_vs_target([data], ["run"])
    assert names(fig) == ["Q1(s,a) mean", "TD target y mean", "Q2(s,a) mean", "min Q'(s',a') mean"]
    styles = [(t.line.color, t.line.dash) for t in fig.data]
    assert len(set(styles)) == len(styles), styles
    assert names(q_vs_target([load_run(run)], ["run"])) == ["Q(s,a) mean", "TD target y mean"]  # DDPG


def test_probe_heatmap_axis_is_the_snapshots(run):
    data = load_run(run)
    for snapshots in ([3000], [1000, 2000, 3000], list(range(500, 10_001, 500))):
        rows = [(k, 5 * k, step, p, 0.1 * p, -1.0) for k, step in enumerate(snapshots) for p in range(4)]
        probes = pd.DataFrame(rows, columns=["snapshot", "episode", "global_step", "probe", "action", "q"])
        fig = probe_heatmap(dataclasses.replace(data, probes=probes), "run", "action", multi=False)
        ax = fig.layout.xaxis
        assert ax.type == "category"  # one column per snapshot: nothing past the last step, no 2,999.6
        assert list(fig.data[0].x) == snapshots
        labelled = snapshots if len(snapshots) <= 10 else snapshots[::2]  # at most 10 labels
        assert list(ax.tickvals) == labelled and list(ax.ticktext) == [f"{s:,}" for s in labelled]


def test_empty_learning_curve_says_why(run):
    cfg = Config(env="MountainCarContinuous-v0", num_envs=4, total_steps=3000)
    data = load_run(run)
    data = dataclasses.replace(data, config=cfg, episodes=data.episodes.iloc[:0], summary={"env_steps": 3000})
    fig = learning_curve([data], ["run"])
    (note,) = fig.layout.annotations
    assert note.text == "No episode finished yet (episodes are 999 steps; each of the 4 envs has run 750)."
    assert list(fig.layout.xaxis.range) == [0, 3000]
    assert not learning_curve([load_run(run)], ["run"]).layout.annotations  # episodes: no note


def test_plot_of_several_runs_says_where_it_wrote(run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["plot", str(run), str(run)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"report: {tmp_path / 'report_compare.html'}" and os.path.isabs(out.split(": ", 1)[1])
    assert (tmp_path / "report_compare.html").is_file()


def test_missing_dependency_keeps_gymnasiums_hint_only(monkeypatch):
    def no_mujoco(*args, **kwargs):
        raise gym.error.DependencyNotInstalled('MuJoCo is not installed, run `pip install "gymnasium[mujoco]"`')

    monkeypatch.setattr(gym, "make_vec", no_mujoco)
    with pytest.raises(ConfigError) as e:
        make_gym_vector_env("HalfCheetah-v5", 1)
    assert str(e.value) == ("cannot make environment 'HalfCheetah-v5': MuJoCo is not installed, run "
                            '`pip install "gymnasium[mujoco]"`')
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="Check the id"):  # a wrong id still gets the hint
        make_gym_vector_env("NoSuchEnv-v0", 1)


def test_run_labels_are_never_empty_and_never_the_same(tmp_path, monkeypatch):
    """`fastddpg plot . ../b` named the first run ''; the same directory twice, or two runs whose last two folders
    match (x1/s/a, x2/s/a), shared a label, so their traces and table rows could not be told apart."""
    from types import SimpleNamespace

    from fastddpg.reports.plots import run_labels

    monkeypatch.chdir(tmp_path)
    runs = [SimpleNamespace(path=Path(p)) for p in (".", "x1/s/a", "x2/s/a", "x1/s/a")]
    labels = run_labels(runs)
    assert all(labels) and len(set(labels)) == len(labels)
    assert labels[0] == tmp_path.name and labels[1] == "x1/s/a" and labels[3] == "x1/s/a (2)"


def test_the_learning_curves_hover_follows_its_x_axis(run):
    fig = learning_curve([load_run(run)], ["run"])
    for button in fig.layout.updatemenus[0].buttons:
        axis = button.args[1]["xaxis.title.text"]
        hover = button.args[0]["hovertemplate"]
        first = {"Env steps": "env step %{x", "Episode": "episode %{x", "Wall-clock time (s)": "wall %{x"}[axis]
        assert hover.startswith(first), (axis, hover)


def test_a_run_without_updates_and_a_stopped_run_say_so(run, tmp_path):
    import json
    import shutil

    from fastddpg.reports.plots import render_html

    copy = tmp_path / "stopped"
    shutil.copytree(run, copy)
    summary = json.loads((copy / "summary.json").read_text())
    (copy / "summary.json").write_text(json.dumps({**summary, "stopped_by": "SIGINT"}))
    idle = tmp_path / "idle"
    assert main(["run", *TINY_RUN, "--total-steps", "300", "--run-dir", str(idle)]) == 0  # update_after 200, batch 32
    data = load_run(idle)
    data.updates = data.updates.iloc[:0]  # as a run that ended before --update-after
    for fig in (q_vs_target([data], ["idle"]), throughput([data], ["idle"])):
        assert any("no gradient update" in a.text for a in fig.layout.annotations)
    page = render_html([load_run(copy)], plotly_cdn=True)
    assert "<th>ended</th>" in page and "stopped: SIGINT" in page
