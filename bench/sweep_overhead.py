"""What `fastddpg sweep` costs against running the same runs without Ray, in one sitting.

Over seeds 0..3 of one config (default: the notebook's, configs/pendulum_ddpg.toml), each way in its own
processes:

- `sequential`: four `fastddpg run` one after another (each with the machine's cores);
- `jobs2`: two at a time with one torch thread each, as `bench/curve.py --jobs 2 --threads 1` runs its seeds
  (bench/workers.py);
- `sweep`: `fastddpg sweep --grid seed=0..3 --cpus-per-trial 1` (a private local Ray, one trial per core).

Also Ray's start-up (`ray.init` of a private local Ray, in a fresh process) and two per-trial overheads of the
sweep. `per_trial_overhead_s`, what a trial costs in a sweep beyond what the same run costs on its own two at a
time: (sweep wall time - jobs2 wall time) per trial at once (negative: the sweep is quicker). And the older
`per_trial_overhead_in_run_s`: (sweep wall time - Ray start-up - its trials' own wall times / trials at once) per
trial at once, where a trial's own wall time is what its Trainer measured (the runs of `jobs2` pay Python's and
torch's imports outside theirs too: `jobs2_outside_run_s`, the median of a process's wall time less its run's). A sweep
reuses its workers (one per trial at once: torch and fastddpg imported once, compiled graphs kept), so that figure
is mostly the sweep's start-up spread over the trials; two more split it: `sweep_startup_s`, from the command's
start to the first trial's run directory (Python, Ray, Tune, a worker process, its imports, the first Trainer),
and `reused_worker_gap_s`, the median time between one trial's end (its report.html written) and the next
trial's run directory in the same worker (Tune handing the worker on, the next Trainer built). Writes
bench/results/sweep_overhead.{json,md}.

    python bench/sweep_overhead.py --quick      # 2,000 env steps per run: the overheads, in about 2 minutes
    python bench/sweep_overhead.py --quick --skip-sequential   # jobs2 and the sweep only
    python bench/sweep_overhead.py              # the notebook's config (10k env steps per run)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-c", "import sys; from fastddpg.cli import main; sys.exit(main(sys.argv[1:]))"]
RAY_START = ("import time, ray; t = time.perf_counter(); ray.init(address='local', include_dashboard=False, "
             "log_to_driver=False); print(time.perf_counter() - t); ray.shutdown()")


def run(cmd: list[str]) -> float:
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[3:]} failed: {p.stderr.strip().splitlines()[-3:]}")
    return time.perf_counter() - t


def worker_split(sweep_dir: Path, started: float) -> dict[str, object]:
    """From a finished sweep's files: seconds from ``started`` (the command's start, epoch) to the first trial's
    config.json; trials per worker process (Tune's result.json pids); the median gap between one trial's
    report.html and the next trial's config.json in the same worker (nan with one trial per worker)."""
    trials = []
    for d in (sweep_dir / "trials").iterdir():
        pid = json.loads((sweep_dir / "tune" / d.name / "result.json").read_text().splitlines()[0])["pid"]
        trials.append((pid, (d / "config.json").stat().st_mtime, (d / "report.html").stat().st_mtime))
    gaps = []
    for pid in {t[0] for t in trials}:
        mine = sorted(t[1:] for t in trials if t[0] == pid)
        gaps += [nxt[0] - prev[1] for prev, nxt in itertools.pairwise(mine)]
    return {"sweep_startup_s": min(t[1] for t in trials) - started,
            "trials_per_worker": len(trials) / len({t[0] for t in trials}),
            "reused_worker_gap_s": statistics.median(gaps) if gaps else float("nan"), "reused_worker_gaps_s": gaps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/pendulum_ddpg.toml")
    ap.add_argument("--total-steps", type=int, default=0, help="override the config's (0: keep it)")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="2,000 env steps per run")
    ap.add_argument("--skip-sequential", action="store_true", help="leave out the one-at-a-time runs")
    ap.add_argument("--out", default="bench/results")
    a = ap.parse_args()
    steps = ["--total-steps", str(2_000 if a.quick else a.total_steps)] if a.quick or a.total_steps else []
    base = ["--config", a.config, *steps, "--quiet"]
    work = Path(tempfile.mkdtemp(prefix="sweep_overhead-"))
    seeds = list(range(a.seeds))
    res: dict[str, object] = {"config": a.config, "args": base, "seeds": seeds, "cores": os.cpu_count()}

    res["ray_start_s"] = float(subprocess.run([sys.executable, "-c", RAY_START], capture_output=True, text=True,
                                              check=True).stdout.strip().splitlines()[-1])
    if not a.skip_sequential:
        t = time.perf_counter()
        for s in seeds:
            run([*CLI, "run", *base, "--seed", str(s), "--run-dir", str(work / f"seq{s}")])
        res["sequential_s"] = time.perf_counter() - t

    t = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        walls = list(pool.map(lambda s: run([*CLI, "run", *base, "--threads", "1", "--seed", str(s), "--run-dir",
                                             str(work / f"jobs{s}")]), seeds))
    res["jobs2_s"] = time.perf_counter() - t
    res["jobs2_outside_run_s"] = statistics.median(
        w - json.loads((work / f"jobs{s}" / "summary.json").read_text())["wall_time_s"]
        for w, s in zip(walls, seeds, strict=True))

    sweep_dir = work / "sweep"
    started = time.time()
    res["sweep_s"] = run([*CLI, "sweep", *base, "--grid", f"seed=0..{a.seeds - 1}", "--cpus-per-trial", "1",
                          "--out", str(sweep_dir)])
    trial_walls = [json.loads(p.read_text())["wall_time_s"] for p in sweep_dir.glob("trials/*/summary.json")]
    res.update(worker_split(sweep_dir, started))
    at_once = min(2, os.cpu_count() or 1)
    res["sweep_trial_wall_s"] = trial_walls
    res["per_trial_overhead_s"] = (res["sweep_s"] - res["jobs2_s"]) / (len(trial_walls) / at_once)
    res["per_trial_overhead_in_run_s"] = (res["sweep_s"] - res["ray_start_s"] - sum(trial_walls) / at_once) / (
        len(trial_walls) / at_once)
    out = ROOT / a.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep_overhead.json").write_text(json.dumps(res, indent=2))
    ref = "sequential_s" if "sequential_s" in res else "jobs2_s"
    lines = [f"| way | wall s | vs {ref[:-2]} |", "| --- | --- | --- |"]
    for k in ("sequential_s", "jobs2_s", "sweep_s"):
        if k in res:
            lines.append(f"| {k[:-2]} | {res[k]:.1f} | {res[ref] / res[k]:.2f}x |")
    lines.append(f"\nsweep / jobs2: {res['sweep_s'] / res['jobs2_s']:.2f}x")
    lines.append(f"Ray start-up {res['ray_start_s']:.1f} s; per-trial overhead against jobs2 "
                 f"{res['per_trial_overhead_s']:.1f} s; beyond the trials' own run time "
                 f"{res['per_trial_overhead_in_run_s']:.1f} s (a jobs2 process spends "
                 f"{res['jobs2_outside_run_s']:.1f} s outside its run; "
                 f"sweep start-up to the first trial {res['sweep_startup_s']:.1f} s; "
                 f"{res['trials_per_worker']:g} trials per worker, {res['reused_worker_gap_s']:.1f} s between two "
                 "trials in one worker)")
    (out / "sweep_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
