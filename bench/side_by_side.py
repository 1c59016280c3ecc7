"""Runs side by side: N `fastddpg run`s started together on one machine against one run alone, per thread setting.

    python bench/side_by_side.py --quick                  # 2 rounds, 3,000 env steps: a few minutes
    python bench/side_by_side.py                          # 3 rounds, 6,000 env steps, compiled and eager
    python bench/side_by_side.py --concurrent 2 --settings lease threads1 threads2 passive --compile default off

Each setting is a way to start the process (see SETTINGS): the command is the real `fastddpg run` (4 envs,
replay ratio 1, --quiet), so the figures are what a user sees, compile time included. A round runs, for each
compile mode and each setting, one run alone and then N runs started together; the order of the settings
rotates from round to round (ABAB..., then BABA...), so the machine's drift falls on every setting alike.
Reported per setting: the median over rounds of the lone run's seconds, of the mean seconds of the N runs
started together, and of their ratio; "alone / best alone": the lone run over the fastest lone run of the
fixed settings (all but the first) in the same round (how far a setting is from the best fixed choice for one run;
the default, first, can read below 1); and "together / in
sequence": the N runs' makespan over N lone runs of the *first* setting in the same round (<= 1 means starting
them together costs nothing; with --stagger, the longest of the N runs stands for the makespan). Each record
also keeps the torch threads each run ended with and its changes (summary.json), which show the lease at work.

Every start (the lone run, the N runs together) gets a lease directory of its own (FASTDDPG_LEASE_DIR, see
fastddpg.core.threads), so that the runs count each other and nothing else: not the other fastddpg processes of
this user, nor a crashed run's leftovers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_model

ROOT = Path(__file__).resolve().parent.parent

# name -> (extra environment, extra `fastddpg run` flags). Every setting starts from an environment without the
# variables below; `fastddpg run` then applies its own defaults (fastddpg.core.threads) unless the setting chose.
# "lease" is fastddpg's default (--threads 0: the cores divided among the runs holding a lease); "fastddpg" is the
# same command, under the name older result files use for the default of their time. "openmp-default" is what a
# run did before fastddpg chose anything: GNU OpenMP's own spin count when OMP_WAIT_POLICY is unset (300,000),
# given explicitly so that fastddpg keeps it; threads1 and threads2 are fixed thread counts with that spin count.
THREAD_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "FASTDDPG_LEASE_DIR")
SETTINGS: dict[str, tuple[dict[str, str], list[str]]] = {
    "lease": ({}, []),
    "fastddpg": ({}, []),
    "openmp-default": ({"GOMP_SPINCOUNT": "300000"}, []),
    "threads1": ({"GOMP_SPINCOUNT": "300000"}, ["--threads", "1"]),
    "threads2": ({"GOMP_SPINCOUNT": "300000"}, ["--threads", "2"]),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, []),
    "spin10k": ({"GOMP_SPINCOUNT": "10000"}, []),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--concurrent", type=int, default=2, help="runs started together (default: 2)")
    p.add_argument("--settings", nargs="+", default=["lease", "threads1", "threads2"],
                   choices=list(SETTINGS), help="thread settings to compare (default: lease threads1 threads2); "
                   "'together / in sequence' is against the first")
    p.add_argument("--compile", nargs="+", default=None, choices=["default", "off", "analytic", "auto"],
                   help="update compile modes (default: default off; --quick: default)")
    p.add_argument("--rounds", type=int, default=None,
                   help="interleaved rounds; medians are over rounds (default: 3; --quick: 2)")
    p.add_argument("--total-steps", type=int, default=None, help="env steps per run (default: 6,000; --quick: 3,000)")
    p.add_argument("--num-envs", type=int, default=4)
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "side_by_side.json"))
    p.add_argument("--quick", action="store_true", help="2 rounds of 3,000 env steps, compiled only (flags given "
                   "explicitly win)")
    p.add_argument("--alone-only", action="store_true", help="measure the lone runs only (which thread setting "
                   "is fastest for one run)")
    p.add_argument("--together-only", action="store_true", help="measure the runs started together only")
    p.add_argument("--alone-settings", nargs="+", default=[], metavar="SETTING", choices=list(SETTINGS),
                   help="settings measured alone only, in every round (e.g. threads2: two runs of 2 threads each "
                        "on 2 cores can take 14x as long as one, minutes a round, and their figure is known)")
    p.add_argument("--stagger", type=float, default=0.0,
                   help="start the N runs this many seconds apart instead of at once (a run that started alone "
                   "gives up its extra threads only at its next report: this measures that window); each run's "
                   "seconds are from its own start")
    args = p.parse_args(argv)
    quick = {"rounds": 2, "total_steps": 3_000, "compile": ["default"]}
    full = {"rounds": 3, "total_steps": 6_000, "compile": ["default", "off"]}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.concurrent < 2:
        p.error("--concurrent must be at least 2 (one run alone is always measured)")
    if missing := [s for s in args.alone_settings if s not in args.settings]:
        p.error(f"--alone-settings {' '.join(missing)}: not among --settings; add it there too (it is one of the "
                "settings measured, only without runs together)")
    if args.rounds < 1 or args.total_steps < 1_000:
        p.error("use --rounds >= 1 and --total-steps >= 1000 (the first 1,000 steps have no updates)")
    return args


def command(args: argparse.Namespace, compile_mode: str, run_dir: Path, seed: int, setting: str) -> list[str]:
    return [sys.executable, "-m", "fastddpg.cli", "run", "--num-envs", str(args.num_envs), "--total-steps",
            str(args.total_steps), "--compile", compile_mode, "--device", "cpu", "--quiet", "--seed", str(seed),
            "--run-dir", str(run_dir), *SETTINGS[setting][1]]


def environment(setting: str, lease_dir: Path) -> dict[str, str]:
    """The setting's environment, with ``lease_dir`` as the runs' lease directory (one per start)."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env.update(SETTINGS[setting][0])
    env["FASTDDPG_LEASE_DIR"] = str(lease_dir)
    return env


def summary(run_dir: Path) -> dict[str, Any]:
    """What a run's summary.json says of its compile time (0 for an eager run) and threads (at its end, and each
    change at a report)."""
    s = json.loads((run_dir / "summary.json").read_text())
    return {"compile_s": float(s.get("compile_seconds", 0.0)), "threads": s.get("threads"),
            "thread_changes": s.get("thread_changes", [])}


def start_together(cmds: list[list[str]], env: dict[str, str], stagger: float = 0.0) -> list[float]:
    """Start every command at once (or each ``stagger`` seconds after the one before); the seconds each one took,
    from its own start to its own exit."""
    starts, procs = [], []
    for i, c in enumerate(cmds):
        if i and stagger:
            time.sleep(stagger)
        starts.append(time.perf_counter())
        procs.append(subprocess.Popen(c, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True))
    done: dict[int, float] = {}
    while len(done) < len(procs):
        for i, pr in enumerate(procs):
            if i not in done and pr.poll() is not None:
                done[i] = time.perf_counter() - starts[i]
                if pr.returncode != 0:
                    raise RuntimeError(f"{' '.join(cmds[i])} failed: {pr.stderr.read()[-500:]}")
        time.sleep(0.05)
    return [done[i] for i in range(len(procs))]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    n = args.concurrent
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(10**9))

        def dirs(k: int) -> list[Path]:
            return [Path(tmp) / f"r{next(counter)}" for _ in range(k)]

        def env(setting: str) -> dict[str, str]:
            return environment(setting, Path(tmp) / f"leases{next(counter)}")

        if "default" in args.compile:  # fill inductor's cache, so no measured run pays a cold compile
            for setting in args.settings:  # each thread count compiles kernels of its own
                start_together([command(args, "default", dirs(1)[0], 0, setting)], env(setting))
        for rnd in range(args.rounds):
            shift = rnd % len(args.settings)
            order = args.settings[shift:] + args.settings[:shift]
            for mode in args.compile:
                for setting in order:
                    alone_dir = dirs(1)[0]
                    alone = (math.nan if args.together_only else
                             start_together([command(args, mode, alone_dir, 0, setting)], env(setting))[0])
                    pair_dirs = [] if args.alone_only or setting in args.alone_settings else dirs(n)
                    cmds = [command(args, mode, d, i, setting) for i, d in enumerate(pair_dirs)]
                    together = start_together(cmds, env(setting), args.stagger) if cmds else []
                    lone = {} if args.together_only else summary(alone_dir)
                    pair = [summary(d) for d in pair_dirs]
                    rec = {"round": rnd, "compile": mode, "setting": setting, "alone_s": alone,
                           "together_s": together, "alone_compile_s": lone.get("compile_s", math.nan),
                           "together_compile_s": [s["compile_s"] for s in pair],
                           "alone_threads": lone.get("threads"), "alone_thread_changes": lone.get("thread_changes"),
                           "together_threads": [s["threads"] for s in pair],
                           "together_thread_changes": [s["thread_changes"] for s in pair]}
                    records.append(rec)
                    print(json.dumps(rec), flush=True)
    table = summarize(records, args.settings, args.compile, n)
    print(render(table, n, args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "machine": machine(), "records": records, "table": table},
                              indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def summarize(records: list[dict[str, Any]], settings: list[str], modes: list[str], n: int) -> list[dict[str, Any]]:
    """One row per (compile mode, setting): medians over rounds (see the module docstring)."""
    rows = []
    for mode in modes:
        default_alone = {r["round"]: r["alone_s"] for r in records
                         if r["compile"] == mode and r["setting"] == settings[0]}
        # the best *fixed* setting of each round (the default's own time left out: "within 1.1x of the best fixed
        # --threads" must be able to read below 1.00x)
        best_alone: dict[int, float] = {}
        for r in records:
            if r["compile"] == mode and r["setting"] != settings[0] and not math.isnan(r["alone_s"]):
                best_alone[r["round"]] = min(best_alone.get(r["round"], math.inf), r["alone_s"])
        for setting in settings:
            rs = [r for r in records if r["compile"] == mode and r["setting"] == setting]
            if not rs:
                continue
            row = {"compile": mode, "setting": setting, "rounds": len(rs),
                   "alone_s": statistics.median(r["alone_s"] for r in rs),
                   "alone_compile_s": statistics.median(r.get("alone_compile_s", 0.0) for r in rs)}
            if all(r["together_s"] for r in rs):
                row["together_s"] = statistics.median(statistics.mean(r["together_s"]) for r in rs)
                row["together_over_alone"] = statistics.median(statistics.mean(r["together_s"]) / r["alone_s"]
                                                               for r in rs)
            if best_alone:
                row["alone_over_best_alone"] = statistics.median(
                    r["alone_s"] / best_alone[r["round"]] for r in rs if r["round"] in best_alone)
            if default_alone:
                row["alone_over_default_alone"] = statistics.median(
                    r["alone_s"] / default_alone[r["round"]] for r in rs if r["round"] in default_alone)
                if "together_s" in row:
                    row["together_over_sequence"] = statistics.median(
                        max(r["together_s"]) / (n * default_alone[r["round"]]) for r in rs
                        if r["round"] in default_alone)
            rows.append(row)
    return rows


def render(table: list[dict[str, Any]], n: int, args: argparse.Namespace) -> str:
    apart = f", started {args.stagger:g} s apart" if getattr(args, "stagger", 0.0) else ""
    head = (f"\n{n} runs together{apart} vs 1 alone: fastddpg run --num-envs {args.num_envs} --total-steps "
            f"{args.total_steps:,} (ratio 1), median of {args.rounds} interleaved rounds, seconds per run\n")
    lines = [head, "| compile | setting | alone s | alone / best alone | alone / first alone | each of N together s "
             f"| together / alone | together / {n} in sequence |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in table:
        nan = float("nan")
        lines.append(f"| {r['compile']} | {r['setting']} | {r['alone_s']:.1f} | "
                     f"{r.get('alone_over_best_alone', nan):.2f} | "
                     f"{r.get('alone_over_default_alone', nan):.2f} | {r.get('together_s', nan):.1f} | "
                     f"{r.get('together_over_alone', nan):.2f} | {r.get('together_over_sequence', nan):.2f} |")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "processor": platform.processor(), "cpu": cpu_model(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M")}


if __name__ == "__main__":
    sys.exit(main())
