"""bench/gpu_suite.py on the CPU: it refuses without CUDA, its plan holds every step the issue asks for, and its
parsing, failure recording and summary work on fake outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from bench import gpu_suite
from bench.gpu_suite import (
    Step,
    assemble,
    format_summary,
    plan,
    run_step,
    summarize_population,
    summarize_pytest,
    summarize_run,
    summarize_throughput,
    summarize_update_bench,
    summarize_verify,
    time_to_target,
)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_without_a_gpu_in_one_line(tmp_path, capsys):
    assert gpu_suite.main(["--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("gpu_suite: error: CUDA is not available")
    assert not (tmp_path / "out").exists()


def test_the_cuda_step_selects_no_test_that_a_gpu_skips():
    """The pytest step runs ``-k cuda`` and counts a skip as a failure: a test skipped where CUDA is available
    (a CPU-only check) must not have "cuda" in its name, or the step fails on every GPU machine."""
    import ast

    for path in Path(__file__).parent.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and "cuda" in node.name.lower():
                for decorator in node.decorator_list:
                    text = ast.unparse(decorator)
                    assert not ("skipif" in text and "not torch.cuda.is_available()" not in text
                                and "cuda.is_available()" in text), f"{path.name}::{node.name} skips on a GPU"


def test_dry_run_lists_every_step(tmp_path, capsys):
    assert gpu_suite.main(["--out", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for needle in ["verify --device cuda --algo ddpg --json", "verify --device cuda --algo td3 --json",
                   "run --num-envs 16 --device cuda --total-steps 20000 --run-dir", "-m pytest",
                   "-k cuda", "bench/update.py --device cuda", "bench/throughput.py --device cuda --env-backend torch",
                   "bench/throughput.py --device cuda --env-backend gymnasium",
                   "verify --device cuda --algo td3 --num-seeds 64", "bench/population.py --device cuda"]:
        assert needle in out, needle
    assert gpu_suite.main(["--out", str(tmp_path), "--only", "nope"]) == 2


def test_plan_fits_the_budget():
    """Every step's timeout together may exceed the budget (the budget cuts them), but no single step may."""
    steps = plan(Path("/tmp/w"))
    assert len({s.name for s in steps}) == len(steps)
    assert all(s.timeout_s <= gpu_suite.BUDGET_S for s in steps) and gpu_suite.BUDGET_S < 9 * 60


@pytest.mark.parametrize("tail,ok,passed,skipped", [
    ("4 passed, 300 deselected in 52.10s", True, 4, 0),
    ("3 passed, 1 skipped, 300 deselected in 12.00s", False, 3, 1),  # a CUDA test skipped on a GPU machine
    ("1 failed, 3 passed, 300 deselected in 9.00s", False, 3, 0),
    ("2 passed, 1 error in 3.00s", False, 2, 0),
    ("no tests ran in 0.01s", False, 0, 0),
    ("", False, 0, 0),
])
def test_summarize_pytest(tail, ok, passed, skipped):
    s = summarize_pytest(f"....\n\n{tail}\n")
    assert (s["ok"], s["passed"], s["skipped"]) == (ok, passed, skipped)


def test_summarize_population():
    def row(k, ratio, rate):
        return {"members": k, "ratio": ratio, "population": {"agent_updates_per_sec": rate,
                                                             "agent_env_steps_per_sec": rate}}
    s = summarize_population({"results": [row(1, 1.0, 100.0), row(64, 1.0, 2500.0), row(64, 1 / 16, 9e9)]})
    assert s["members"] == 64 and s["ratio_to_one_member"] == 25.0 and s["goal_met"] and "met" in s["line"]
    assert not summarize_population({"results": [row(1, 1.0, 100.0), row(64, 1.0, 1000.0)]})["goal_met"]
    assert not summarize_population({"results": [row(64, 1.0, 1000.0)]})["ok"]


def fake_verify(passed: bool) -> dict:
    def path(name, rate, excess, tensor="-"):
        return {"name": name, "passed": excess <= 1, "rate_per_sec": rate, "ratio_to_eager": rate / 100.0,
                "worst_tensor": tensor, "worst_update": 3, "worst_excess": excess, "deviations": {}}
    return {"passed": passed,
            "update_paths": [path("eager", 100.0, 0.0), path("compiled", 300.0, 0.01),
                             path("compiled+cudagraph", 900.0, 0.02 if passed else 7.0, "critic.net.0.weight")],
            "acting_paths": [path("eager", 5000.0, 0.0), path("compiled", 9000.0, 0.0)]}


def test_summarize_verify():
    good = summarize_verify(fake_verify(True))
    assert good["ok"] and good["line"].startswith("PASS") and "compiled+cudagraph 900/s (9.0x)" in good["line"]
    assert good["rates"]["acting compiled"] == 9000.0
    bad = summarize_verify(fake_verify(False))
    assert not bad["ok"] and "FAIL compiled+cudagraph: critic.net.0.weight" in bad["line"]


def test_summarize_benchmarks():
    upd = summarize_update_bench({"rows": [{"batch_size": 256, "notebook": 50.0, "eager": 100.0, "compiled": 800.0,
                                            "compiled_ratio": 16.0}]})
    assert upd["ok"] and "8.0x eager" in upd["line"]
    thr = summarize_throughput({"notebook_steps_per_sec": 100.0, "rows": [
        {"num_envs": 16, "compile": "off", "ratio_label": "1", "env_steps_per_sec": 500.0, "updates_per_sec": 500.0,
         "ratio_to_notebook": 5.0},
        {"num_envs": 4096, "compile": "default", "ratio_label": "1/N", "env_steps_per_sec": 2e6,
         "updates_per_sec": 488.0, "ratio_to_notebook": 2e4}]})
    assert thr["ok"] and "num_envs 4096" in thr["line"] and len(thr["points"]) == 2
    assert not summarize_throughput({"notebook_steps_per_sec": 1.0, "rows": []})["ok"]


def episodes(returns: list[float]) -> list[dict]:
    return [{"return": str(r), "wall_time": str(1.5 * (i + 1)), "global_step": str(16 * (i + 1))}
            for i, r in enumerate(returns)]


def test_time_to_target():
    rets = [-1200.0] * 10 + [-150.0] * 30
    hit = time_to_target(episodes(rets))
    # one -1200 in the window still gives -255: the mean first reaches -200 at episode 20, all -150
    assert hit == {"reached": True, "seconds": 1.5 * 20, "env_steps": 16 * 20, "episode": 20}
    assert not time_to_target(episodes([-1200.0] * 40))["reached"]
    run = summarize_run(episodes(rets), {"env_steps_per_sec": 900.0, "updates_per_sec": 880.0, "wall_time_s": 30.0,
                                         "compile_seconds": 12.0})
    assert run["ok"] and "reached after 30.0 s, 320 env steps" in run["line"]
    assert not summarize_run(episodes([-1200.0] * 12), None)["ok"]


def test_a_failing_step_is_recorded_and_the_rest_still_run(tmp_path):
    ok_step = Step("fine", [sys.executable, "-c", "print('4 passed in 0.1s')"], 30,
                   lambda s, w: summarize_pytest(s.output))
    bad_step = Step("boom", [sys.executable, "-c", "import sys; print('broken thing'); sys.exit(3)"], 30,
                    lambda s, w: {"ok": True, "line": "parsed"})
    slow_step = Step("slow", [sys.executable, "-c", "import time; time.sleep(30)"], 1,
                     lambda s, w: {"ok": True, "line": "parsed"})
    odd_step = Step("odd", [sys.executable, "-c", "pass"], 30, lambda s, w: json.loads("not json"))
    late_step = Step("late", [sys.executable, "-c", "pass"], 30, lambda s, w: {"ok": True, "line": ""})
    import time

    deadline = time.perf_counter() + 60
    for s in (ok_step, bad_step, slow_step, odd_step):
        run_step(s, tmp_path, deadline)
    run_step(late_step, tmp_path, time.perf_counter() + 5)  # less budget left than a step needs
    steps = [ok_step, bad_step, slow_step, odd_step, late_step]
    assert ok_step.summary["ok"] and ok_step.rc == 0
    assert not bad_step.summary["ok"] and bad_step.rc == 3 and "exit 3: broken thing" in bad_step.summary["line"]
    assert not slow_step.summary["ok"] and slow_step.timed_out and "timed out" in slow_step.summary["line"]
    assert not odd_step.summary["ok"] and "could not read its results" in odd_step.summary["line"]
    assert not late_step.summary["ok"] and late_step.rc is None and "skipped" in late_step.summary["line"]
    info = {"gpu": "Fake GPU", "driver": "1.0", "capability": "9.0", "torch": "x", "cuda": "y", "date": "today"}
    text = format_summary(info, steps, 42.0)
    assert "Fake GPU (driver 1.0" in text and text.endswith("FAIL: 4 of 5 steps did not pass")
    assert len(text.splitlines()) <= 25  # one screen
    report = json.loads(json.dumps(assemble(info, steps, 42.0, 510)))
    assert not report["passed"] and [s["ok"] for s in report["steps"]] == [True, False, False, False, False]
    assert report["gpu"] == "Fake GPU" and "broken thing" in report["steps"][1]["output_tail"]
