"""report.html: every figure is there with the run's data (read from the embedded figure JSON), `fastddpg plot`
regenerates it, for one run and for two overlaid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fastddpg import load_run
from fastddpg.cli import main
from fastddpg.reports.plots import figure_title, moving_average, probe_matrix, read_report_figures
from tests.test_rundir import short_run

TITLES = ["DDPG learning curve (score per episode)", "Critic outputs vs TD targets (mean over minibatch)",
          "Actor/Critic losses", "Policy evolution on fixed probe states",
          "Q-values on probe states (critic under current actor)", "Throughput (env steps/s over time)"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("plots")
    return short_run(root / "seed1", "--seed", "1"), short_run(root / "seed2", "--seed", "2")


def by_title(figs: list[dict]) -> dict[str, dict]:
    return {figure_title(f): f for f in figs}


def trace(fig: dict, name: str) -> dict:
    matches = [t for t in fig["data"] if t.get("name") == name]
    assert len(matches) == 1, [t.get("name") for t in fig["data"]]
    return matches[0]


def test_report_holds_every_figure_with_the_run_data(runs):
    run = runs[0]
    data = load_run(run)
    figs = by_title(read_report_figures(run / "report.html"))
    assert list(figs) == TITLES
    ep, up = data.episodes, data.updates

    curve = figs[TITLES[0]]
    ret, ma = trace(curve, "Return"), trace(curve, "Return (MA 10)")
    np.testing.assert_array_equal(ret["x"], ep["global_step"])  # x axis: env steps
    np.testing.assert_array_equal(ret["y"], ep["return"])
    np.testing.assert_array_equal([c[0] for c in ret["customdata"]], ep["episode"])  # episodes in the hover
    np.testing.assert_allclose(ma["y"], [ep["return"][: i + 1][-10:].mean() for i in range(len(ep))])
    menu = curve["layout"]["updatemenus"][0]["buttons"]
    assert [b["label"] for b in menu] == ["x: env steps", "x: episode", "x: wall-clock time (s)"]
    assert menu[1]["args"][0]["x"][0] == ep["episode"].tolist()

    q = figs[TITLES[1]]
    np.testing.assert_array_equal(trace(q, "Q(s,a) mean")["x"], up["update"])
    np.testing.assert_array_equal(trace(q, "Q(s,a) mean")["y"], up["q_mean"])
    np.testing.assert_array_equal(trace(q, "TD target y mean")["y"], up["y_mean"])
    losses = figs[TITLES[2]]
    np.testing.assert_array_equal(trace(losses, "Critic loss (MSE)")["y"], up["critic_loss"])
    np.testing.assert_array_equal(trace(losses, "Actor loss (-Q)")["y"], up["actor_loss"])

    z_action, snaps = probe_matrix(data.probes, "action")
    policy = figs[TITLES[3]]["data"][0]
    assert policy["type"] == "heatmap" and np.shape(policy["z"]) == (8, len(snaps)) and len(snaps) >= 2
    np.testing.assert_array_equal(policy["z"], z_action)
    np.testing.assert_array_equal(policy["x"], snaps["global_step"])
    first = data.probes[data.probes["snapshot"] == snaps["snapshot"].iloc[0]].sort_values("probe")
    np.testing.assert_array_equal(np.asarray(figs[TITLES[4]]["data"][0]["z"])[:, 0], first["q"])

    tp = figs[TITLES[5]]
    np.testing.assert_array_equal(trace(tp, "env steps/s")["x"], up["wall_time"])
    np.testing.assert_array_equal(trace(tp, "env steps/s")["y"], up["env_steps_per_sec"])


def test_report_is_self_contained_and_cdn_is_small(runs, tmp_path):
    html = (runs[0] / "report.html").read_text()
    assert "<script src=" not in html and len(html) > 1_000_000  # plotly.js inlined: works offline
    out = tmp_path / "cdn.html"
    assert main(["plot", str(runs[0]), "--out", str(out), "--plotly-cdn"]) == 0
    small = out.read_text()
    assert '<script src="https://cdn.plot.ly/plotly-' in small and len(small) < len(html) / 10
    assert [figure_title(f) for f in read_report_figures(out)] == TITLES


def test_a_bad_out_path_is_one_line_and_exit_2(runs, tmp_path, capsys):
    for out, needle in ((tmp_path, "is a directory"), (tmp_path / "no" / "r.html", "does not exist")):
        assert main(["plot", str(runs[0]), "--out", str(out)]) == 2
        assert needle in capsys.readouterr().err
    assert not list(tmp_path.glob("*.html"))


def test_plot_regenerates_one_run(runs, capsys):
    report = runs[0] / "report.html"
    before = read_report_figures(report)
    report.unlink()
    assert main(["plot", str(runs[0])]) == 0
    assert f"report: {report}" in capsys.readouterr().out
    assert read_report_figures(report) == before


def test_plot_overlays_two_runs(runs, tmp_path):
    out = tmp_path / "both.html"
    assert main(["plot", str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    figs = by_title(read_report_figures(out))
    assert list(figs) == [TITLES[0], TITLES[1], TITLES[2],
                          f"{TITLES[3]} — seed1", f"{TITLES[4]} — seed1",
                          f"{TITLES[3]} — seed2", f"{TITLES[4]} — seed2", TITLES[5]]
    curve = figs[TITLES[0]]
    assert [t["name"] for t in curve["data"]] == ["seed1: Return", "seed1: Return (MA 10)", "seed2: Return",
                                                  "seed2: Return (MA 10)"]
    for label, run in (("seed1", runs[0]), ("seed2", runs[1])):
        data = load_run(run)
        np.testing.assert_array_equal(trace(curve, f"{label}: Return")["y"], data.episodes["return"])
        np.testing.assert_array_equal(trace(figs[TITLES[1]], f"{label}: Q(s,a) mean")["y"], data.updates["q_mean"])
        assert trace(curve, f"{label}: Return")["legendgroup"] == label
    # the two runs' curves differ (different seeds), and each run keeps one colour across its traces
    assert trace(curve, "seed1: Return")["y"] != trace(curve, "seed2: Return")["y"]
    colors = [t["marker" if t["mode"] == "markers" else "line"]["color"] for t in curve["data"]]
    assert colors[0] == colors[1] != colors[2] == colors[3]
    assert "2 runs" in out.read_text()


def test_plot_of_a_missing_run_is_one_line(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a fastddpg run directory" in err[0]


def test_moving_average_is_trailing_10():
    x = np.arange(1.0, 16.0)
    ma = moving_average(x)
    np.testing.assert_allclose(ma[:3], [1.0, 1.5, 2.0])
    np.testing.assert_allclose(ma[9:], [np.mean(x[i - 9: i + 1]) for i in range(9, 15)])


def test_probe_matrix_drops_a_repeated_end_snapshot():
    rows = [(s, e, g, p, float(10 * s + p), 0.0) for s, e, g in ((0, 5, 100), (1, 10, 200), (2, 10, 200))
            for p in range(3)]
    probes = pd.DataFrame(rows, columns=["snapshot", "episode", "global_step", "probe", "action", "q"])
    z, snaps = probe_matrix(probes, "action")
    assert snaps["global_step"].tolist() == [100, 200] and snaps["snapshot"].tolist() == [0, 2]
    np.testing.assert_array_equal(z, [[0, 20], [1, 21], [2, 22]])
