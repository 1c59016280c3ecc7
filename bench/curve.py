"""The notebook's reference learning curve, reproduced at scale.

Configurations over `--seeds` seeds each:
- `notebook`: the notebook's loop and defaults (bench/baseline.py: 1 env, numpy replay, `.item()` per update);
- `fastddpg-1`, `fastddpg-16`: fastddpg at num_envs 1 and 16, replay ratio 1, the same env-step budget;
- `fastest`: fastddpg's fastest wall-clock configuration that still learns, found by a small grid search over
  num_envs x replay ratio x batch size (`--grid-seeds` seeds per grid point; the winner is the configuration
  with the lowest median time to a 10-episode mean return of -200 among those whose every grid seed got there).

Layouts (`--layout`): `population` (the default) trains a fastddpg configuration's seeds as one population in one
process (`--num-seeds`, seeds 0..S-1; all usable cores, or `--pop-threads`), the configurations one after another;
`process` runs each seed as its own process, `--jobs` at a time with `--threads` each (the layout before
populations). The notebook's loop has no population, so it always runs process per seed. Both layouts record each
configuration's wall time for all its seeds (`config_wall_s`), the figure to compare layouts by: a seed's own
seconds mean different things in them (a population's members share one clock; processes in a second batch start
late), so the by-seconds bands compare configurations within a layout, not layouts.

For each configuration: the mean and 95% interval (Student t over seeds) of the 10-episode mean return against
env steps and against wall-clock seconds, and the time to first reach -200 (median, and how many seeds got
there). Writes curve.json, curve.html (Plotly, bands) and curve.md (a markdown table).

    python bench/curve.py --quick                 # 2 seeds, 6k steps, a 2-point grid: a few minutes
    python bench/curve.py --seeds 10 --jobs 2 --threads 1   # the full comparison (populations; notebook and
                                                            # grid points one process per core)
    python bench/curve.py --seeds 10 --jobs 2 --threads 1 --compare-layouts
                                                            # and fastddpg-1/16 one process per seed as well
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.common import first_crossing, moving_mean
from bench.workers import run_workers, set_worker_threads

ROOT = Path(__file__).resolve().parent.parent
THRESHOLD = -200.0
WINDOW = common.WINDOW

# two-sided 95% Student t quantiles t_{0.975, df}, df = 1..30 (beyond 30 the normal 1.96 is within 2%)
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


# --- pure helpers (unit-tested) ---------------------------------------------------------------------------------

def mean_ci95(samples: list[float]) -> tuple[float, float, float]:
    """(mean, low, high): Student-t 95% interval of the mean; a single sample gives a zero-width interval."""
    n = len(samples)
    mean = float(np.mean(samples))
    if n < 2:
        return mean, mean, mean
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    half = t * float(np.std(samples, ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half


def time_to_threshold(run: dict[str, Any], key: str, threshold: float = THRESHOLD) -> float | None:
    """``run[key]`` ("seconds" or "steps") of the episode at which the mean of its last 10 returns first reaches
    ``threshold`` (None if it never does), checked once per env step after every episode that ended at it
    (`fastddpg.core.schema.first_crossing`)."""
    i = first_crossing(run["steps"], run["returns"], threshold)
    return None if i is None else run[key][i]


def resample(xs: list[float], ys: list[float], grid: list[float]) -> list[float]:
    """The step function 'last y at or before x' on ``grid`` (NaN before the first point)."""
    idx = np.searchsorted(np.asarray(xs), np.asarray(grid), side="right") - 1
    return [float(ys[i]) if i >= 0 else float("nan") for i in idx]


def band(runs: list[dict[str, Any]], key: str, grid: list[float]) -> dict[str, list[float]]:
    """Mean and 95% interval across runs of the 10-episode mean return, resampled on ``grid`` of ``key``."""
    curves = [resample(r[key], moving_mean(r["returns"]), grid) for r in runs]
    mean, low, high = [], [], []
    for col in zip(*curves, strict=True):
        vals = [v for v in col if not math.isnan(v)]
        m, lo, hi = mean_ci95(vals) if len(vals) == len(col) else (float("nan"),) * 3
        mean.append(m)
        low.append(lo)
        high.append(hi)
    return {"x": grid, "mean": mean, "low": low, "high": high}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Final 10-episode return, time and steps to threshold over seeds."""
    finals = [moving_mean(r["returns"])[-1] for r in runs]
    times = [time_to_threshold(r, "seconds") for r in runs]
    steps = [time_to_threshold(r, "steps") for r in runs]
    reached = [t for t in times if t is not None]
    m, lo, hi = mean_ci95(finals)
    return {"final_mean": m, "final_low": lo, "final_high": hi, "seeds": len(runs), "reached": len(reached),
            "median_seconds_to_threshold": statistics.median(reached) if reached else None,
            "median_steps_to_threshold": statistics.median([s for s in steps if s is not None]) if reached else None,
            "mean_wall_seconds": float(np.mean([r["wall"] for r in runs]))}


# --- one run, in its own process ------------------------------------------------------------------------------

def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration and return its per-episode curve (steps, seconds, returns)."""
    sys.path.insert(0, str(ROOT))
    set_worker_threads(spec)
    if spec["kind"] == "notebook":
        from bench.baseline import notebook_train

        r = notebook_train(total_steps=spec["total_steps"], seed=spec["seed"])
        return {"steps": r["episode_end_steps"], "seconds": r["episode_end_seconds"], "returns": r["returns"],
                "wall": r["seconds"]}
    from fastddpg import Config, train

    t0 = time.perf_counter()
    members = spec.get("members", 1)
    res = train(Config(**spec["config"], seed=spec["seed"], num_seeds=members, total_steps=spec["total_steps"],
                       quiet=True, threads=spec.get("threads") or 0,
                       device="cpu" if spec.get("device") is None else spec["device"]))
    wall = time.perf_counter() - t0
    ep = res.episodes
    if members == 1:
        return {"steps": ep["global_step"].tolist(), "seconds": ep["wall_time"].tolist(),
                "returns": ep["return"].tolist(), "wall": wall, "summary": res.summary}
    return {"members": [{"steps": m["global_step"].tolist(), "seconds": m["wall_time"].tolist(),
                         "returns": m["return"].tolist(), "wall": wall, "seed": spec["seed"] + k}
                        for k, m in ep.groupby("member", sort=True)], "wall": wall, "summary": res.summary}


def run_many(specs: list[dict[str, Any]], jobs: int) -> list[dict[str, Any]]:
    return run_workers(__file__, specs, jobs)


def run_seeds(cfg: dict[str, Any] | None, seeds: list[int], args: argparse.Namespace,
              population: bool) -> tuple[list[dict[str, Any]], float]:
    """One configuration over ``seeds``: one run record per seed (in seed order), and the wall seconds all of them
    took. ``population``: one process whose members are the seeds (they must be consecutive); otherwise one process
    per seed, ``--jobs`` at a time."""
    t0 = time.perf_counter()
    base = {"kind": "notebook" if cfg is None else "fastddpg", "config": cfg, "total_steps": args.total_steps}
    if population and cfg is not None and len(seeds) > 1:
        assert seeds == list(range(seeds[0], seeds[0] + len(seeds))), "a population's seeds are consecutive"
        rec = run_many([{**base, "seed": seeds[0], "members": len(seeds), "threads": args.pop_threads}], 1)[0]
        runs = rec["members"]
    else:
        runs = run_many([{**base, "seed": s, "threads": args.threads} for s in seeds], args.jobs)
    return runs, time.perf_counter() - t0


def configs(grid_winner: dict[str, Any] | None, notebook: bool = True) -> dict[str, dict[str, Any] | None]:
    out: dict[str, dict[str, Any] | None] = {"notebook": None} if notebook else {}
    out.update({"fastddpg-1": {"num_envs": 1}, "fastddpg-16": {"num_envs": 16}})
    if grid_winner is not None:
        out["fastest"] = grid_winner
    return out


COMPARED = ("fastddpg-1", "fastddpg-16")  # --compare-layouts runs these in both layouts


def plan_layouts(cfgs: dict[str, dict[str, Any] | None], args: argparse.Namespace
                 ) -> list[tuple[str, dict[str, Any] | None, bool]]:
    """(name, config, population?) in run order. With ``--compare-layouts`` each of COMPARED also runs one process
    per seed (named "NAME (process per seed)"), right before or after its population, the order alternating
    between configurations (ABBA), so that the machine's drift falls on both layouts alike."""
    out: list[tuple[str, dict[str, Any] | None, bool]] = []
    flip = False
    for name, cfg in cfgs.items():
        population = args.layout == "population" and cfg is not None
        if not (args.compare_layouts and population and name in COMPARED):
            out.append((name, cfg, population))
            continue
        pair = [(name, cfg, True), (f"{name} (process per seed)", cfg, False)]
        out.extend(pair[::-1] if flip else pair)
        flip = not flip
    return out


def grid_search(args: argparse.Namespace) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    points = [{"num_envs": n, "updates_per_step": u, "batch_size": b}
              for n in args.grid_num_envs for u in args.grid_ratios for b in args.grid_batch_sizes]
    seeds = [1000 + s for s in range(args.grid_seeds)]
    if args.layout == "population" and args.grid_seeds > 1:  # one process per grid point, --jobs at a time
        specs = [{"kind": "fastddpg", "config": pt, "seed": seeds[0], "members": len(seeds),
                  "total_steps": args.total_steps, "threads": args.threads} for pt in points]
        per_point = [rec["members"] for rec in run_many(specs, args.jobs)]
    else:
        specs = [{"kind": "fastddpg", "config": pt, "seed": s, "total_steps": args.total_steps,
                  "threads": args.threads} for pt in points for s in seeds]
        runs = run_many(specs, args.jobs)
        per_point = [runs[i * len(seeds):(i + 1) * len(seeds)] for i in range(len(points))]
    table = []
    for pt, rs in zip(points, per_point, strict=True):
        s = summarize(rs)
        table.append({**pt, **s})
        print(f"grid {pt}: reached {s['reached']}/{s['seeds']}, median time to -200 "
              f"{s['median_seconds_to_threshold']}", flush=True)
    ok = [t for t in table if t["reached"] == t["seeds"]]
    if not ok:
        return None, table
    best = min(ok, key=lambda t: t["median_seconds_to_threshold"])
    return {k: best[k] for k in ("num_envs", "updates_per_step", "batch_size")}, table


def plot(result: dict[str, Any], path: Path) -> None:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("10-episode mean return vs env steps",
                                                        "10-episode mean return vs wall-clock seconds"))
    colors = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3"]
    for i, (name, c) in enumerate(result["configs"].items()):
        for col, key in ((1, "by_steps"), (2, "by_seconds")):
            b = c[key]
            color = colors[i % len(colors)]
            fig.add_trace(go.Scatter(x=b["x"] + b["x"][::-1], y=b["high"] + b["low"][::-1], fill="toself",
                                     line={"width": 0}, fillcolor=color, opacity=0.2, showlegend=False,
                                     hoverinfo="skip"), row=1, col=col)
            fig.add_trace(go.Scatter(x=b["x"], y=b["mean"], name=name, line={"color": color},
                                     showlegend=col == 1), row=1, col=col)
    fig.add_hline(y=THRESHOLD, line_dash="dot")
    fig.update_layout(title="Pendulum-v1: the notebook's curve at scale (mean and 95% interval over seeds)")
    fig.write_html(path, include_plotlyjs="cdn")


def markdown(result: dict[str, Any]) -> str:
    lines = ["| configuration | final 10-ep return (95% CI) | reached -200 | median s to -200 | "
             "median steps to -200 | wall s, all seeds |", "|---|---|---|---|---|---|"]
    for name, c in result["configs"].items():
        s = c["summary"]
        t = s["median_seconds_to_threshold"]
        st = s["median_steps_to_threshold"]
        lines.append(f"| {name} {c['config'] or ''} | {s['final_mean']:.0f} "
                     f"({s['final_low']:.0f}, {s['final_high']:.0f}) | {s['reached']}/{s['seeds']} | "
                     f"{'-' if t is None else f'{t:.1f}'} | "
                     f"{'-' if st is None else f'{st:.0f}'} | {c['config_wall_s']:.1f} ({c['layout']}) |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with ``--quick``'s settings applied and the step budget checked against the grid."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--total-steps", type=int, default=20_000)
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (timings stay honest only with 1 per core)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per run (0: torch's default); with --jobs J on C cores, use C // J")
    p.add_argument("--grid-num-envs", type=int, nargs="+", default=[4, 16, 64])
    p.add_argument("--grid-ratios", type=float, nargs="+", default=[1.0, 0.25])
    p.add_argument("--grid-batch-sizes", type=int, nargs="+", default=[128, 256])
    p.add_argument("--grid-seeds", type=int, default=2)
    p.add_argument("--no-grid", action="store_true", help="skip the search for the fastest configuration")
    p.add_argument("--no-notebook", action="store_true", help="skip the notebook's own loop")
    p.add_argument("--layout", choices=("population", "process"), default="population",
                   help="fastddpg's seeds as one population per configuration, or one process per seed")
    p.add_argument("--compare-layouts", action="store_true",
                   help=f"also run {' and '.join(COMPARED)} one process per seed, interleaved with their populations")
    p.add_argument("--pop-threads", type=int, default=0,
                   help="torch threads of a configuration's population process (0: all usable cores)")
    p.add_argument("--quick", action="store_true", help="2 seeds, 6k steps, grid of 2 points x 1 seed")
    p.add_argument("--out", default="bench/results")
    p.add_argument("--name", default="curve", help="file stem of the outputs in --out (NAME.json, .html, .md)")
    args = p.parse_args(argv)
    if args.worker:
        return args
    if args.pop_threads == 0:
        from fastddpg.core.threads import usable_cores

        args.pop_threads = usable_cores()
    if args.quick:
        args.seeds, args.total_steps = 2, 6_000
        args.grid_num_envs, args.grid_ratios, args.grid_batch_sizes, args.grid_seeds = [16], [1.0, 0.25], [128], 1
    most_envs = max([16] + ([] if args.no_grid else args.grid_num_envs))
    if args.total_steps < 200 * most_envs:  # Pendulum episodes are 200 steps, ended together by N synced envs
        p.error(f"--total-steps must be at least {200 * most_envs}, so that the {most_envs}-env runs finish an "
                "episode")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return {}
    t0 = time.perf_counter()
    winner, grid_table = (None, []) if args.no_grid else grid_search(args)
    result: dict[str, Any] = {"benchmark": "curve", "env": "Pendulum-v1", "seeds": args.seeds,
                              "total_steps": args.total_steps, "threshold": THRESHOLD, "grid": grid_table,
                              "layout": args.layout, "jobs": args.jobs, "threads": args.threads,
                              "pop_threads": args.pop_threads, "date": time.strftime("%Y-%m-%d"), "configs": {}}
    step_grid = list(range(200, args.total_steps + 1, 200))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{args.name}.{ext}" for ext in ("json", "html", "md")]
    for name, cfg, population in plan_layouts(configs(winner, notebook=not args.no_notebook), args):
        runs, wall = run_seeds(cfg, list(range(args.seeds)), args, population)
        max_s = max(r["seconds"][-1] for r in runs)
        sec_grid = list(np.linspace(0, max_s, 100)[1:])
        result["configs"][name] = {"config": cfg, "layout": "population" if population else "process",
                                   "config_wall_s": wall, "summary": summarize(runs),
                                   "by_steps": band(runs, "steps", step_grid),
                                   "by_seconds": band(runs, "seconds", sec_grid), "runs": runs}
        s = result["configs"][name]["summary"]
        print(f"{name}: final {s['final_mean']:.0f} [{s['final_low']:.0f}, {s['final_high']:.0f}], reached "
              f"{s['reached']}/{s['seeds']}, median {s['median_seconds_to_threshold']} s to -200, all seeds in "
              f"{wall:.1f} s", flush=True)
        paths[0].write_text(json.dumps(result, indent=1))  # so far: a crash late keeps the finished configurations
    result["bench_seconds"] = time.perf_counter() - t0
    paths[0].write_text(json.dumps(result, indent=1))
    plot(result, paths[1])
    paths[2].write_text(markdown(result))
    print(markdown(result))
    print("wrote " + ", ".join(map(str, paths)))
    return result


if __name__ == "__main__":
    main()
