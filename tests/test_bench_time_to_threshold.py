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


def test_evaluations_and_episodes_leave_the_evaluations_time_out(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"wall_time_s": 20.0, "env_steps": 2_000, "eval_seconds": 3.0,
                                                       "first_update_s": 6.0}))
    (tmp_path / "episodes.csv").write_text("episode,env,global_step,return,length,wall_time\n"
                                           "0,0,800,-1000.0,200,4.0\n1,0,1600,-800.0,200,8.0\n"
                                           "2,0,2000,-300.0,200,11.0\n")
    # evaluations at 800 (1.0 s), 1600 (1.5 s) and a final one at 2000 (0.5 s: the summary's 3.0 in all)
    head = "eval_time,kind,global_step,seed,episode,return,length,wall_time,eval_seconds\n"
    rows = [("periodic", 800, -500.0, 5.0, 0.0), ("periodic", 800, -300.0, 5.0, 0.0),
            ("periodic", 1600, -150.0, 9.0, 1.0), ("periodic", 1600, -190.0, 9.0, 1.0),
            ("final", 2000, -100.0, 12.0, 2.5), ("manual", 2000, -90.0, "nan", "nan")]
    (tmp_path / "eval.csv").write_text(head + "".join(f"t,{k},{s},10000,0,{r},200,{w},{e}\n"
                                                      for k, s, r, w, e in rows))
    launched = 1_000.0
    os.utime(tmp_path / "summary.json", (launched + 22.0, launched + 22.0))  # the trainer started 2 s in
    assert ttt.training_evaluations(tmp_path) == [("periodic", 800, 5.0, 0.0, -400.0),
                                                  ("periodic", 1600, 9.0, 1.0, -170.0),
                                                  ("final", 2000, 12.0, 2.5, -100.0)]  # the manual row left out
    ep, extra = ttt.fastddpg_episodes(tmp_path, launched)
    # before the first evaluation, nothing to leave out; after the first 1.0 s, after the second 2.5 s
    assert [t for t, _ in ep] == pytest.approx([6.0, 9.0, 10.5])
    assert extra["evaluations"] == [(800, pytest.approx(7.0), -400.0), (1600, pytest.approx(10.0), -170.0)]
    assert extra["eval_seconds"] == 3.0
    assert extra["to_first_update_s"] == pytest.approx(2.0 + 6.0 - 1.0)  # after the first evaluation: less its 1.0 s
    assert ttt.first_evaluation_at(extra["evaluations"], -200.0) == (1600, pytest.approx(10.0))
    assert ttt.first_evaluation_at(extra["evaluations"], -100.0) is None
    # a run without evaluations: its clock as it is
    (tmp_path / "eval.csv").unlink()
    assert ttt.fastddpg_episodes(tmp_path, launched)[1]["evaluations"] == []


def test_summary_and_table_of_evaluations():
    def evaluated(side: str, seed: int, steps: int | None, seconds: float | None) -> dict:
        return {**rec(side, seed, 30.0, None), "evaluations": [(800, 1.0, -900.0)],
                "eval_steps_to_threshold": steps, "eval_seconds_to_threshold": seconds}

    records = [evaluated("fastddpg-16env", s, 4_000, 10.0 + s) for s in range(3)]
    records += [evaluated("sb3", s, 3_200, 20.0 + s) if s else evaluated("sb3", s, None, None) for s in range(3)]
    table = ttt.summarize(records, ["fastddpg-16env", "sb3"])
    fast, sb3 = table
    assert (fast["eval_reached"], fast["eval_seconds_to_threshold"], fast["eval_steps_to_threshold"]) == (3, 11.0,
                                                                                                          4_000)
    assert (sb3["eval_reached"], sb3["eval_seconds_to_threshold"]) == (2, 22.0)
    assert fast["eval_to_threshold_vs_sb3"] == pytest.approx(0.5)
    md = ttt.markdown(table, {"env": "Pendulum-v1", "total_steps": 10_000, "threshold": -200.0, "seeds": "0, 1, 2",
                              "cache": "cold", "cpu": "CPU", "torch": "2.13.0", "date": "d", "threads": 1,
                              "eval_every": 800, "eval_episodes": 10})
    assert "Noise-free evaluations every 800 env steps, 10 episodes each" in md
    assert "| fastddpg run --num-envs 16 | 11.0 | 3/3 | 0.50x | 4,000 |" in md
    ratios = ttt.per_seed_ratios(records)["fastddpg-16env"]
    assert ratios["eval_to_threshold_vs_sb3"] == [None, pytest.approx(11.0 / 21.0), pytest.approx(12.0 / 22.0)]
    # a sitting without evaluations has no such table or ratios
    plain = [rec("fastddpg", 0, 20.0, 10.0), rec("sb3", 0, 30.0, 20.0)]
    assert "eval_reached" not in ttt.summarize(plain, ["fastddpg", "sb3"])[0]
    assert "eval_to_threshold_vs_sb3" not in ttt.per_seed_ratios(plain)["fastddpg"]


def test_bad_evaluation_flags_exit_2(capsys):
    for flags in (["--eval-every", "-5"], ["--eval-every", "1000"], ["--eval-every", "800", "--eval-episodes", "0"]):
        with pytest.raises(SystemExit) as e:
            ttt.parse_args(flags)
        assert e.value.code == 2
    assert "--eval-every 0 (none) or a multiple of 400 env steps" in capsys.readouterr().err
    assert ttt.parse_args(["--eval-every", "800"]).eval_every == 800


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
                        "--eval-every", "800", "--eval-episodes", "2",
                        *(["--sb3-python", str(sb3)] if sb3.exists() else [])],
                       capture_output=True, text=True, cwd=ROOT, timeout=3600)
    assert p.returncode == 0, p.stderr[-2000:]
    data = json.loads(out.read_text())
    assert {r["side"] for r in data["records"]} >= {"fastddpg", "fastddpg-1env", "fastddpg-16env", "notebook"}
    for r in data["records"]:
        assert r["env_steps"] >= 3_000 and all(0 < t <= r["seconds"] for t, _ in r["episodes"])
        # 200-step episodes: 15 on one env, 3 x 4 on 4 envs; 16 envs end their first ones at 3,200 steps
        assert len(r["episodes"]) == {"fastddpg": 12, "fastddpg-16env": 0}.get(r["side"], 15)
        # an evaluation at every 800 env steps of every side, on the same clock, with its time left out
        assert [s for s, _, _ in r["evaluations"]] == [800, 1_600, 2_400] and r["eval_seconds"] > 0
        assert all(0 < t <= r["seconds"] - r["eval_seconds"] for _, t, _ in r["evaluations"])
    assert out.with_suffix(".md").read_text().count("\n| ") >= 5
