"""bench/fidelity.py's plumbing: thresholds, the summary, the verdict and the README table on fake records, and one
tiny fastddpg worker run (SB3's side needs its venv: the slow --quick run covers it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.fidelity import markdown, run_one, steps_to_threshold, summarize, verdict

ROOT = Path(__file__).resolve().parent.parent


def fake(side: str, seed: int, final: float) -> dict:
    eps = [(200 * (i + 1), final - 5.0 * (20 - i)) for i in range(20)]
    return {"env": "Pendulum-v1", "algo": "td3", "side": side, "seed": seed, "steps": 4_000, "episodes": eps,
            "eval_return": final, "wall_s": 1.0 + seed, "last10_return": sum(r for _, r in eps[-10:]) / 10,
            "steps_to_threshold": steps_to_threshold(eps, -200.0)}


def test_steps_to_threshold_uses_the_10_episode_mean_once_per_env_step():
    eps = [(100 * (i + 1), -300.0 if i < 9 else -100.0) for i in range(12)]
    # full windows: -280 (episodes 1-10), -260, -240
    assert steps_to_threshold(eps, -260.0) == 1_100
    assert steps_to_threshold(eps, -300.0) == 1_000  # not before the 10th episode
    assert steps_to_threshold(eps, 0.0) is None
    # two envs end episodes at 1,100 and 1,200: the mean is taken after both of a step
    eps = [(100 * (i + 1), -300.0) for i in range(9)] + [(1_000, -100.0), (1_000, -500.0)]
    assert steps_to_threshold(eps, -290.0) is None  # -280 after the first row of step 1,000, -300 after the second


def test_summary_verdict_and_table():
    records = [fake("fastddpg", s, f) for s, f in enumerate((-150.0, -160.0, -170.0))]
    records += [fake("sb3", s, f) for s, f in enumerate((-155.0, -165.0, -175.0))]
    table = summarize(records)
    assert [(r["side"], r["runs"]) for r in table] == [("fastddpg", 3), ("sb3", 3)]
    fast, sb3 = table
    assert fast["eval_return"] == pytest.approx(-160.0) and fast["eval_ci95"][0] < -160.0 < fast["eval_ci95"][1]
    assert fast["reached"] == 3 and fast["wall_s_median"] == 2.0
    assert verdict(fast, sb3) == "overlaps"
    assert verdict({**fast, "eval_ci95": [0.0, 1.0]}, sb3) == "above"
    assert verdict({**fast, "eval_ci95": [-1e4, -1e3]}, sb3) == "below"
    md = markdown(table)
    assert md.count("\n") == 4 and "| Pendulum-v1 (4,000, -200) | td3 | fastddpg | 3 |" in md and "overlaps" in md


def test_fastddpg_worker_records_episodes_and_eval():
    rec = run_one({"env": "Pendulum-v1", "algo": "ddpg", "side": "fastddpg", "seed": 0, "steps": 400, "threads": 1,
                   "eval_episodes": 1, "sb3_python": ""})
    assert [s for s, _ in rec["episodes"]] == [200, 400]
    assert rec["last10_return"] == pytest.approx(sum(r for _, r in rec["episodes"]) / 2)
    assert rec["eval_return"] < 0 and rec["steps_to_threshold"] is None


@pytest.mark.slow
def test_fidelity_quick(tmp_path):
    """Both sides end to end on one env (makes bench/.sb3-venv if missing: minutes)."""
    out = tmp_path / "fidelity.json"
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "fidelity.py"), "--quick", "--envs", "Pendulum-v1",
                        "--algos", "td3", "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=3600)
    assert p.returncode == 0, p.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["completed"] == 2 and {r["side"] for r in data["table"]} == {"fastddpg", "sb3"}
    assert out.with_suffix(".md").read_text().startswith("| env")


def test_append_skips_the_runs_already_recorded(tmp_path, capsys):
    from bench import fidelity

    out = tmp_path / "fidelity.json"
    records = [{**fake(side, 0, -150.0), "steps": fidelity.ENVS["Pendulum-v1"].quick_steps} for side in
               ("fastddpg", "sb3")]
    out.write_text(json.dumps({"records": records, "sittings": []}))
    # every planned run is already there: nothing may start (a worker would fail on the fake SB3 python)
    assert fidelity.main(["--quick", "--envs", "Pendulum-v1", "--algos", "td3", "--append", "--out", str(out),
                          "--sb3-python", "/nonexistent/python"]) == 0
    assert "| Pendulum-v1 (1,200, -200) | td3 | fastddpg | 1 |" in capsys.readouterr().out
