"""bench/time_to_threshold.py's plumbing: time to threshold from (seconds, return) rows, the rotation, the medians
and ratios, the README table, fastddpg's run directory on the launcher's clock, and the SB3 side skipped without its
venv. The --quick run of every side is the slow test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import time_to_threshold as ttt

ROOT = Path(__file__).resolve().parent.parent


def test_seconds_to_threshold_uses_the_10_episode_mean_once_per_moment():
    # ten bad episodes, then good ones: the last 10 reach -200 with 9 good ones in them (all 19 would not: -574)
    rows = [(float(i), -1_000.0 if i < 10 else -100.0) for i in range(20)]
    assert ttt.seconds_to_threshold(rows, -200.0) == 18.0
    assert ttt.seconds_to_threshold(rows, 0.0) is None
    assert ttt.seconds_to_threshold(rows[:9], -2_000.0) is None  # fewer than 10 episodes: no 10-episode mean
    # four envs end their episodes at one moment (18.0): the mean is taken after all four, where a check after
    # each row would have stopped at the second
    rows = [(float(i), -1_000.0 if i < 10 else -100.0) for i in range(17)] + [(18.0, -100.0), (18.0, -100.0),
                                                                             (18.0, -1_000.0), (18.0, -1_000.0)]
    assert ttt.seconds_to_threshold(rows, -200.0) is None


def test_rotation_is_seed_major_abcde_then_bcdea():
    assert ttt.rotation(list("ABCDE"), 0) == list("ABCDE")
    assert ttt.rotation(list("ABCDE"), 1) == list("BCDEA")
    assert ttt.rotation(list("ABCDE"), 6) == list("BCDEA")
    assert [ttt.rotation(list("AB"), i) for i in range(3)] == [list("AB"), list("BA"), list("AB")]


def test_median_to_threshold_counts_never_as_never():
    assert ttt.median_to_threshold([3.0, 1.0, 2.0]) == 2.0
    assert ttt.median_to_threshold([3.0, None, 1.0]) == 3.0  # two of three reached: the middle one is finite
    assert ttt.median_to_threshold([3.0, None, None]) is None
    assert ttt.median_to_threshold([1.0, None]) is None


def rec(side: str, seed: int, seconds: float, to: float | None) -> dict:
    return {"side": side, "seed": seed, "steps": 10_000, "seconds": seconds, "steps_per_s": 10_000 / seconds,
            "seconds_to_threshold": to}


def test_summary_ratios_and_table():
    records = [rec("fastddpg", s, 20.0 + s, 10.0 + s) for s in range(3)]
    records += [rec("notebook", s, 40.0 + s, None if s else 30.0) for s in range(3)]
    records += [rec("sb3", s, 38.0, 20.0 + 2 * s) for s in range(3)]
    table = ttt.summarize(records, ttt.SIDES)
    assert [r["side"] for r in table] == ["fastddpg", "notebook", "sb3"]
    fast, nb, sb3 = table
    assert fast["steps_per_s"] == pytest.approx(10_000 / 21.0) and fast["seconds"] == 21.0
    assert fast["steps_per_s_vs_notebook"] == pytest.approx(41.0 / 21.0)
    assert fast["seconds_to_threshold"] == 11.0 and sb3["seconds_to_threshold"] == 22.0
    assert fast["to_threshold_vs_sb3"] == pytest.approx(0.5) and fast["reached"] == 3
    assert nb["reached"] == 1 and nb["seconds_to_threshold"] is None and nb["to_threshold_vs_sb3"] is None
    meta = {"env": "Pendulum-v1", "total_steps": 10_000, "threshold": -200.0, "seeds": "0, 1, 2", "cache": "cold",
            "cpu": "Some CPU", "torch": "2.13.0", "date": "2026-12-03", "sb3_version": "2.9.2", "threads": 2,
            "fastddpg_num_envs": 4}
    md = ttt.markdown(table, meta)
    assert "Some CPU" in md and "(cold compile cache), threads: 2;" in md and "SB3's DDPG does not clip" in md
    assert "| fastddpg run (defaults: 4 envs) | 3 | 476 | 1.95x | 11.0 | 3/3 | 0.50x | 21.0 |" in md
    assert "| the notebook's loop (bench/baseline.py) | 3 | 244 | 1.00x | never | 1/3 |  | 41.0 |" in md
    assert "| SB3 2.9.2 DDPG, the notebook's hyperparameters | 3 |" in md
    # without SB3 the ratio column stays empty
    assert ttt.summarize(records[:3], ttt.SIDES)[0]["to_threshold_vs_sb3"] is None


def test_fastddpg_episodes_on_the_launchers_clock(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"wall_time_s": 30.0, "compile_seconds": 4.0,
                                                       "env_steps": 10_000}))
    (tmp_path / "episodes.csv").write_text("episode,env,global_step,return,length,wall_time\n"
                                           "0,0,800,-1200.5,200,3.25\n1,1,800,-900.0,200,3.25\n")
    launched = 1_000.0
    os.utime(tmp_path / "summary.json", (launched + 40.0, launched + 40.0))  # written 40 s after the launch
    rows, extra = ttt.fastddpg_episodes(tmp_path, launched)
    # the trainer started 40 - 30 = 10 s after the launch
    assert rows == [(pytest.approx(13.25), -1200.5), (pytest.approx(13.25), -900.0)]
    assert extra["startup_s"] == pytest.approx(10.0) and extra["env_steps"] == 10_000 and extra["compile_s"] == 4.0


def test_sb3_side_is_skipped_with_a_clear_line_without_its_venv(tmp_path, capsys):
    out = tmp_path / "ttt.json"
    assert ttt.main(["--quick", "--sides", "sb3", "--sb3-python", str(tmp_path / "none" / "python"),
                 "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert line.startswith("SB3 side skipped: no python at") and "--sb3-python" in line
    assert not out.exists()  # nothing else to run, nothing ran


@pytest.mark.slow
def test_time_to_threshold_quick(tmp_path):
    """Every side end to end at --quick (SB3 with /tmp/vsb3 or bench/.sb3-venv when there: a few minutes)."""
    out = tmp_path / "ttt.json"
    sb3 = Path("/tmp/vsb3/bin/python")
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "time_to_threshold.py"), "--quick", "--out", str(out),
                        *(["--sb3-python", str(sb3)] if sb3.exists() else [])],
                       capture_output=True, text=True, cwd=ROOT, timeout=3600)
    assert p.returncode == 0, p.stderr[-2000:]
    data = json.loads(out.read_text())
    assert {r["side"] for r in data["records"]} >= {"fastddpg", "fastddpg-1env", "fastddpg-16env", "notebook"}
    for r in data["records"]:
        assert r["env_steps"] >= 3_000 and all(0 < t <= r["seconds"] for t, _ in r["episodes"])
        # 200-step episodes: 15 on one env, 3 x 4 on 4 envs; 16 envs end their first ones at 3,200 steps
        assert len(r["episodes"]) == {"fastddpg": 12, "fastddpg-16env": 0}.get(r["side"], 15)
    assert out.with_suffix(".md").read_text().count("\n| ") >= 5
