"""The whole CUDA proof in one command: the CUDA tests, `fastddpg verify` on CUDA, the update and throughput
benchmarks on CUDA, and an end-to-end `fastddpg run` on CUDA with its time to a 10-episode mean of -200.

    python bench/gpu_suite.py --out DIR                       # CUDA only; about 6-9 minutes on an H100
    python bench/gpu_suite.py --out DIR --dry-run             # print the steps (works without CUDA)

Each step runs as a subprocess with its own timeout, inside a total budget (default 510 s, so the suite and its
start fit one 10-minute job); a step that fails, times out or finds no budget left is recorded and the others
still run; the exit code is 1 if any step did not pass. It prints a one-screen summary and writes
DIR/gpu_suite.json (every step's command, exit code, seconds, parsed figures and output tail, the benchmarks'
own JSON embedded, and the GPU model, driver, torch and CUDA versions) and DIR/gpu_suite.txt (the summary).
Benchmark files and the run directory go under ``--work-dir`` (default DIR/work).

On the project's GPU machine gymnasium, tensordict and plotly are missing: carry them as wheels
(bench/fetch_gpu_wheels.sh; CONTRIBUTING.md, "On a GPU machine", has the exact command).

Method: the benchmarks exclude warm-up (compilation, CUDA-graph capture) and synchronize the device before
reading the clock, and each measures its baseline (eager, and the notebook's loop) in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import first_crossing  # noqa: E402
from bench.curve import THRESHOLD, WINDOW  # noqa: E402

BUDGET_S = 510  # 8.5 minutes: the suite must finish inside 9 on an H100
MIN_STEP_S = 20  # a step is not started with less budget than this left


@dataclass
class Step:
    """One subprocess of the suite; ``parse(step, work_dir)`` turns its output and files into a summary dict with
    at least ``ok`` (bool) and ``line`` (one line for the summary screen)."""

    name: str
    argv: list[str]
    timeout_s: float
    parse: Callable[[Step, Path], dict[str, Any]]
    rc: int | None = None
    seconds: float = 0.0
    timed_out: bool = False
    output: str = ""
    summary: dict[str, Any] = field(default_factory=dict)


# --- parsing what each step leaves (pure functions of text and files: tested on the CPU) --------------------------

def summarize_pytest(output: str) -> dict[str, Any]:
    """Counts from pytest's last line, e.g. '4 passed, 1 skipped, 300 deselected in 52.1s'. Passing needs no
    failure or error and at least one test run: the CUDA tests must not all skip on a GPU machine."""
    counts = {k: 0 for k in ("passed", "failed", "skipped", "error", "deselected")}
    lines = [line for line in output.strip().splitlines() if line.strip()]
    for part in (lines[-1] if lines else "").strip("= ").split(","):
        words = part.split()
        if len(words) >= 2 and words[0].isdigit():
            key = words[1].rstrip("s") if words[1].startswith("error") else words[1]
            if key in counts:
                counts[key] = int(words[0])
    ok = counts["passed"] > 0 and counts["failed"] == 0 and counts["error"] == 0 and counts["skipped"] == 0
    line = ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed", "skipped", "error"))
    return {**counts, "ok": ok, "line": line}


def summarize_verify(report: dict[str, Any]) -> dict[str, Any]:
    """Pass/fail, each path's rate and ratio to eager, and the worst deviation as a fraction of the tolerance."""
    paths = report["update_paths"] + report["acting_paths"]
    kinds = ["update"] * len(report["update_paths"]) + ["acting"] * len(report["acting_paths"])
    rates = {f"{k} {p['name']}": p["rate_per_sec"] for k, p in zip(kinds, paths, strict=True)}
    worst = max(paths, key=lambda p: p["worst_excess"])
    parts = [f"{p['name']} {p['rate_per_sec']:,.0f}/s ({p['ratio_to_eager']:.1f}x)" for p in report["update_paths"]]
    acting = [f"acting {p['name']} {p['rate_per_sec']:,.0f}/s" for p in report["acting_paths"]]
    verdict = "PASS" if report["passed"] else f"FAIL {worst['name']}: {worst['worst_tensor']}"
    return {"ok": bool(report["passed"]), "rates": rates, "worst_tensor": worst["worst_tensor"],
            "worst_excess": worst["worst_excess"],
            "line": f"{verdict}; worst {worst['worst_excess']:.2g} of tol; " + ", ".join(parts + acting)}


def summarize_update_bench(result: dict[str, Any]) -> dict[str, Any]:
    rows = result["rows"]
    line = "; ".join(f"batch {r['batch_size']}: eager {r['eager']:,.0f}/s, compiled+graph {r['compiled']:,.0f}/s "
                     f"({r['compiled'] / r['eager']:.1f}x eager, {r['compiled_ratio']:.1f}x notebook)" for r in rows)
    keep = ("batch_size", "notebook", "eager", "compiled")
    return {"ok": bool(rows), "rows": [{k: r[k] for k in keep} for r in rows], "line": line}


def summarize_throughput(result: dict[str, Any]) -> dict[str, Any]:
    rows = result["rows"]
    best = max(rows, key=lambda r: r["env_steps_per_sec"]) if rows else None
    line = (f"best {best['env_steps_per_sec']:,.0f} env steps/s (num_envs {best['num_envs']}, {best['compile']}, "
            f"ratio {best['ratio_label']}; {best['ratio_to_notebook']:.0f}x the notebook's "
            f"{result['notebook_steps_per_sec']:,.0f})" if best else "no points")
    points = [{k: r[k] for k in ("num_envs", "compile", "ratio_label", "env_steps_per_sec", "updates_per_sec")}
              for r in rows]
    return {"ok": bool(rows), "points": points, "line": line}


POPULATION_GOAL = 20.0  # agent updates/s of 64 members x 16 envs over one member's, at replay ratio 1


def summarize_population(result: dict[str, Any]) -> dict[str, Any]:
    """Agent updates/s of the largest population over a single member's, at replay ratio 1 (the issue's goal:
    64 members x 16 envs at >= 20x)."""
    rows = {r["members"]: r["population"] for r in result["results"] if r["ratio"] == 1.0}
    if 1 not in rows or len(rows) < 2:
        return {"ok": False, "line": "no K = 1 and K > 1 points at ratio 1"}
    k = max(rows)
    ratio = rows[k]["agent_updates_per_sec"] / rows[1]["agent_updates_per_sec"]
    line = (f"K={k}: {rows[k]['agent_updates_per_sec']:,.0f} agent updates/s, {ratio:.1f}x K=1's "
            f"{rows[1]['agent_updates_per_sec']:,.0f} (goal >= {POPULATION_GOAL:.0f}x: "
            f"{'met' if ratio >= POPULATION_GOAL else 'not met'})")
    return {"ok": True, "members": k, "ratio_to_one_member": ratio, "goal_met": ratio >= POPULATION_GOAL,
            "line": line}


def time_to_target(episodes: list[dict[str, Any]], target: float = THRESHOLD, window: int = WINDOW) -> dict[str, Any]:
    """When the moving mean return of the last ``window`` episodes (in order of completion; bench/curve.py's
    definition, so the figure compares with the README's curve table) first reaches ``target``: its wall_time (s),
    global_step and episode number, or None for each if never."""
    i = first_crossing([int(e["global_step"]) for e in episodes], [float(e["return"]) for e in episodes], target,
                       window)
    if i is None:
        return {"reached": False, "seconds": None, "env_steps": None, "episode": None}
    e = episodes[i]
    return {"reached": True, "seconds": float(e["wall_time"]), "env_steps": int(e["global_step"]), "episode": i + 1}


def summarize_run(episodes: list[dict[str, Any]], summary: dict[str, Any] | None) -> dict[str, Any]:
    hit = time_to_target(episodes)
    last = [float(e["return"]) for e in episodes[-WINDOW:]]
    final = sum(last) / len(last) if last else math.nan
    s = summary or {}
    line = (f"{WINDOW}-episode mean {THRESHOLD:.0f} reached after {hit['seconds']:.1f} s, "
            f"{hit['env_steps']:,} env steps" if hit["reached"] else f"never reached {THRESHOLD:.0f}")
    line += (f"; final mean {final:.0f}; {s.get('env_steps_per_sec', math.nan):,.0f} env steps/s, "
             f"{s.get('updates_per_sec', math.nan):,.0f} updates/s, wall {s.get('wall_time_s', math.nan):.0f} s "
             f"(compile {s.get('compile_seconds', math.nan):.0f} s)")
    return {"ok": bool(hit["reached"]), "time_to_target": hit, "final_mean_return": final, "run_summary": s,
            "line": line}


def read_csv_rows(path: Path) -> list[dict[str, Any]]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _json_file(path: Path, summarize: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    if not path.exists():
        return {"ok": False, "line": f"no {path.name} written"}
    data = json.loads(path.read_text())
    return {**summarize(data), "result": data}


# --- the plan --------------------------------------------------------------------------------------------------

def plan(work: Path, python: str = sys.executable) -> list[Step]:
    """The suite's steps, in order of importance (the budget may cut the last ones)."""
    cli = [python, "-m", "fastddpg.cli"]
    run_dir = work / time.strftime("run_%Y%m%d_%H%M%S")

    def verify(algo: str) -> Step:
        out = work / f"verify_{algo}.json"
        return Step(f"verify-{algo}", [*cli, "verify", "--device", "cuda", "--algo", algo, "--json", str(out)], 150,
                    lambda s, w: _json_file(out, summarize_verify))

    def throughput(backend: str, extra: list[str]) -> Step:
        out = work / f"throughput_{backend}"
        return Step(f"throughput-{backend}", [python, "bench/throughput.py", "--device", "cuda", "--env-backend",
                                              backend, *extra, "--out", str(out)], 150,
                    lambda s, w: _json_file(out / "throughput.json", summarize_throughput))

    def parse_run(s: Step, w: Path) -> dict[str, Any]:
        if not (run_dir / "episodes.csv").exists():
            return {"ok": False, "line": "no episodes.csv written"}
        summary_file = run_dir / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.exists() else None
        return summarize_run(read_csv_rows(run_dir / "episodes.csv"), summary)

    return [
        verify("ddpg"),
        verify("td3"),
        Step("run-e2e", [*cli, "run", "--num-envs", "16", "--device", "cuda", "--total-steps", "20000", "--run-dir",
                         str(run_dir), "--quiet"], 240, parse_run),
        # addopts= drops pyproject's -n auto: a machine with the base packages only has no pytest-xdist; -k cuda
        # must select no test that a GPU skips (a skip fails the step; tests/test_gpu_suite.py checks the names)
        Step("pytest-cuda", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-m", "not slow",
                             "-k", "cuda"], 180, lambda s, w: summarize_pytest(s.output)),
        Step("bench-update", [python, "bench/update.py", "--device", "cuda", "--quick", "--batch-sizes", "128", "1024",
                              "--out", str(work / "update")], 150,
             lambda s, w: _json_file(work / "update" / "update.json", summarize_update_bench)),
        throughput("torch", ["--num-envs", "256", "4096", "--compile", "default", "--ratios", "1/N", "--seconds", "2",
                             "--repeats", "2"]),
        throughput("gymnasium", ["--quick"]),
        Step("verify-population", [*cli, "verify", "--device", "cuda", "--algo", "td3", "--num-seeds", "64",
                                   "--json", str(work / "verify_population.json")], 150,
             lambda s, w: _json_file(w / "verify_population.json", summarize_verify)),
        Step("population", [python, "bench/population.py", "--device", "cuda", "--env-backend", "torch",
                            "--num-envs", "16", "--members", "1", "64", "--no-separate", "--seconds", "2",
                            "--repeats", "2", "--out", str(work / "population.json")], 150,
             lambda s, w: _json_file(w / "population.json", summarize_population)),
    ]


def run_step(step: Step, work: Path, deadline: float) -> None:
    """Run one step within its timeout and what is left of the budget; record rc, time, output and summary."""
    left = deadline - time.perf_counter()
    if left < MIN_STEP_S:
        step.summary = {"ok": False, "line": f"skipped: {left:.0f} s of the budget left"}
        return
    timeout = min(step.timeout_s, left)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    t0 = time.perf_counter()
    try:
        p = subprocess.run(step.argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        step.rc, step.output = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        step.timed_out, step.rc = True, 124
        step.output = "".join(x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
                              for x in (e.stdout, e.stderr))
    step.seconds = time.perf_counter() - t0
    try:
        step.summary = step.parse(step, work)
    except Exception as e:  # a step's odd output must not lose the others' results
        step.summary = {"ok": False, "line": f"could not read its results: {type(e).__name__}: {e}"}
    if step.rc != 0:
        tail = step.output.strip().splitlines()[-1:] or [""]
        reason = f"timed out after {timeout:.0f} s" if step.timed_out else f"exit {step.rc}"
        step.summary = {**step.summary, "ok": False, "line": f"{reason}: {tail[0][:150]} | {step.summary['line']}"}


def gpu_info() -> dict[str, Any]:
    """GPU model, driver (nvidia-smi), torch and CUDA versions, date."""
    import torch

    from fastddpg.tools.verify import device_info

    return device_info(torch.device("cuda"))


def format_summary(info: dict[str, Any], steps: list[Step], total_s: float) -> str:
    lines = [f"fastddpg GPU suite: {info.get('gpu')} (driver {info.get('driver')}, compute {info.get('capability')}), "
             f"torch {info.get('torch')}, CUDA {info.get('cuda')}, {info.get('date')}; {total_s:.0f} s", ""]
    for s in steps:
        status = "ok" if s.summary.get("ok") else "FAIL"
        lines.append(f"{s.name:<21} {status:<4} {s.seconds:>5.0f} s  {s.summary.get('line', '')}")
    passed = all(s.summary.get("ok") for s in steps)
    lines += ["", "PASS: every step passed" if passed else
              f"FAIL: {sum(not s.summary.get('ok') for s in steps)} of {len(steps)} steps did not pass"]
    return "\n".join(lines)


def assemble(info: dict[str, Any], steps: list[Step], total_s: float, budget_s: float) -> dict[str, Any]:
    return {"suite": "gpu_suite", **info, "budget_s": budget_s, "total_s": total_s,
            "passed": all(s.summary.get("ok") for s in steps),
            "steps": [{"name": s.name, "command": shlex.join(s.argv), "rc": s.rc, "seconds": s.seconds,
                       "timed_out": s.timed_out, "ok": bool(s.summary.get("ok")), "line": s.summary.get("line"),
                       "summary": {k: v for k, v in s.summary.items() if k not in ("ok", "line")},
                       "output_tail": s.output[-3000:]} for s in steps]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for gpu_suite.json and gpu_suite.txt")
    p.add_argument("--work-dir", default=None, help="folder for the benchmarks' files and the run (default: OUT/work)")
    p.add_argument("--budget", type=float, default=BUDGET_S, help=f"total seconds (default: {BUDGET_S})")
    p.add_argument("--only", nargs="+", default=None, metavar="STEP", help="run only these steps (by name)")
    p.add_argument("--dry-run", action="store_true", help="print the steps' commands and exit (no CUDA needed)")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    work = Path(args.work_dir).resolve() if args.work_dir else out / "work"
    steps = plan(work)
    names = [s.name for s in steps]
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            print(f"gpu_suite: error: --only {' '.join(unknown)}: no such step; the steps are {', '.join(names)}",
                  file=sys.stderr)
            return 2
        steps = [s for s in steps if s.name in args.only]
    if args.dry_run:
        for s in steps:
            print(f"{s.name:<21} timeout {s.timeout_s:>4.0f} s  {shlex.join(s.argv)}")
        return 0
    import torch

    if not torch.cuda.is_available():
        print(f"gpu_suite: error: CUDA is not available here (torch {torch.__version__}); run it on a GPU machine "
              "(CONTRIBUTING.md, 'On a GPU machine'), or use --dry-run to see the steps", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    info = gpu_info()
    t0 = time.perf_counter()
    deadline = t0 + args.budget
    for s in steps:
        print(f"[{time.perf_counter() - t0:5.0f} s] {s.name}: {shlex.join(s.argv)}", flush=True)
        run_step(s, work, deadline)
        print(f"[{time.perf_counter() - t0:5.0f} s] {s.name}: {'ok' if s.summary.get('ok') else 'FAIL'} "
              f"{s.summary.get('line', '')}", flush=True)
    total = time.perf_counter() - t0
    text = format_summary(info, steps, total)
    print("\n" + text)
    (out / "gpu_suite.txt").write_text(text + "\n")
    (out / "gpu_suite.json").write_text(json.dumps(assemble(info, steps, total, args.budget), indent=2))
    print(f"wrote {out / 'gpu_suite.json'} and {out / 'gpu_suite.txt'}")
    return 0 if all(s.summary.get("ok") for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
