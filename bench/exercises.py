"""The notebook's exercises (section 7), answered with data: Gaussian vs OU noise, LayerNorm, DDPG vs TD3.

Variants on Pendulum-v1 (``--variants``): ``ddpg`` (Gaussian noise, the notebook's), ``ddpg-ou`` (``--noise ou``),
``ddpg-ln`` (``--layer-norm``), ``td3`` (``--algo td3``); each at num_envs 1 and 16 (``--num-envs``), replay ratio 1,
``--total-steps`` 20k env steps, ``--seeds`` 5 seeds; every run is its own process (``--jobs`` at a time).

Per run, after training:
- the learning curve (10-episode moving mean of training returns) and the time (wall seconds and env steps) at
  which it first reaches -200;
- 10 noise-free evaluation episodes of the final actor (seeds ``seed + 10000 + i``), the "final 10-episode return";
- Q overestimation on those episodes: mean over the states s_t of an ordinary episode (t < the env's time limit)
  of Q(s_t, mu(s_t)) - G_t, where G_t = sum_k gamma^k r_{t+k} is the discounted return the policy actually
  obtained from s_t. The critic bootstraps through the time limit (it estimates the infinite-horizon value), so
  the evaluation episodes run ``--tail-steps`` (500) steps past the limit to measure G_t without truncation bias
  (the residual gamma^500 = 0.7% of the tail's value is negligible; Pendulum's dynamics do not depend on time).
  The return reported is that of the first (time-limit) steps only, i.e. an ordinary episode's. For TD3, Q is Q_1
  (the critic the actor ascends).

Writes ``exercises.json`` (every run and the summaries), ``exercises.html`` (Plotly: curves with mean +- std
bands over seeds per num_envs; bars of final return and of Q overestimation) and ``exercises.md`` (the table)
into ``--out``. Anchors: RL Zoo reports DDPG -152 +- 94 and TD3 -152 +- 90 on Pendulum-v1 at 20k steps.

    python bench/exercises.py --quick       # 1 seed, num_envs 16, 4k steps: a smoke run of a few minutes
    python bench/exercises.py               # the full benchmark: 4 variants x 2 num_envs x 5 seeds x 20k steps
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.common import moving_mean
from bench.workers import run_workers, set_worker_threads

ROOT = Path(__file__).resolve().parent.parent
THRESHOLD = -200.0
WINDOW = common.WINDOW
EVAL_EPISODES = 10
EVAL_SEED_OFFSET = 10_000
ANCHORS = {"ddpg": (-152.0, 94.0), "td3": (-152.0, 90.0)}  # RL Zoo, Pendulum-v1, 20k steps

VARIANTS: dict[str, dict[str, Any]] = {
    "ddpg": {},
    "ddpg-ou": {"noise": "ou"},
    "ddpg-ln": {"layer_norm": True},
    "td3": {"algo": "td3"},
}


# --- pure helpers (unit-tested) ---------------------------------------------------------------------------------

def first_reach(xs: list[float], curve: list[float], threshold: float = THRESHOLD,
                min_points: int = WINDOW) -> float | None:
    """The x at which ``curve`` first reaches ``threshold``, counting only points with a full window behind them
    (index >= min_points - 1); None if never."""
    for i, (x, y) in enumerate(zip(xs, curve, strict=True)):
        if i >= min_points - 1 and y >= threshold:
            return float(x)
    return None


def returns_to_go(rewards: np.ndarray, alive: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = alive_t (r_t + gamma G_{t+1}) over time (axis 0), G_T = 0; ``alive`` (T, N) is 1 while the episode
    runs (0 after a termination), so G never crosses an episode end."""
    g = np.zeros_like(rewards, dtype=np.float64)
    nxt = np.zeros(rewards.shape[1:], dtype=np.float64)
    for t in range(rewards.shape[0] - 1, -1, -1):
        nxt = alive[t] * (rewards[t] + gamma * nxt)
        g[t] = nxt
    return g


def mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof 1; 0 for a single value) of the finite values; (nan, nan) if none."""
    v = [x for x in xs if x is not None and math.isfinite(x)]
    if not v:
        return float("nan"), float("nan")
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def band(runs: list[dict[str, Any]], grid: np.ndarray) -> dict[str, list[float]]:
    """Mean and std over runs of their moving-mean curves resampled on ``grid`` (env steps); NaN before a run's
    first episode and where no run has data."""
    ys = []
    for r in runs:
        xs, curve = np.asarray(r["steps"], float), np.asarray(moving_mean(r["returns"]), float)
        ys.append(np.interp(grid, xs, curve, left=np.nan, right=curve[-1]) if len(xs) else np.full(len(grid), np.nan))
    y = np.vstack(ys)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (before any episode ended) stay NaN
        mean, std = np.nanmean(y, axis=0), np.nanstd(y, axis=0)
    return {"x": grid.tolist(), "mean": mean.tolist(), "std": np.nan_to_num(std).tolist()}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Across the seeds of one (variant, num_envs): mean +- std of the final eval return, the last-10 training
    return and the Q overestimation; how many seeds reached -200 and their median steps and seconds to it."""
    reached = [r for r in runs if r["steps_to_threshold"] is not None]
    ev, tr, qo = (mean_std([r[k] for r in runs]) for k in ("eval_return", "last10_train_return", "q_over"))
    return {
        "seeds": len(runs), "eval_return_mean": ev[0], "eval_return_std": ev[1],
        "train_return_mean": tr[0], "train_return_std": tr[1], "q_over_mean": qo[0], "q_over_std": qo[1],
        "q_mean": mean_std([r["q_mean"] for r in runs])[0], "g_mean": mean_std([r["g_mean"] for r in runs])[0],
        "reached": len(reached),
        "median_steps_to_threshold": float(np.median([r["steps_to_threshold"] for r in reached])) if reached else None,
        "median_seconds_to_threshold": (float(np.median([r["seconds_to_threshold"] for r in reached]))
                                        if reached else None),
        "mean_wall_seconds": float(np.mean([r["wall_seconds"] for r in runs])),
    }


def _pm(m: float, s: float, fmt: str = ".0f") -> str:
    return "-" if not math.isfinite(m) else f"{m:{fmt}} ± {s:{fmt}}"


def markdown(result: dict[str, Any]) -> str:
    """The comparison table (one row per variant and num_envs)."""
    a = result["args"]
    lines = [f"Pendulum-v1, {a['total_steps']} env steps, replay ratio 1, {a['seeds']} seed(s); mean ± std over "
             f"seeds; device {result['device']}. Anchors (RL Zoo, 20k steps): DDPG -152 ± 94, TD3 -152 ± 90.", "",
             "| variant | num_envs | final 10-ep eval return | last 10 training episodes | reached -200 | "
             "median env steps to -200 | median s to -200 | Q overestimation (Q - G) | mean Q | mean G | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in result["groups"]:
        s = g["summary"]
        st, sec = s["median_steps_to_threshold"], s["median_seconds_to_threshold"]
        lines.append(f"| {g['variant']} | {g['num_envs']} | {_pm(s['eval_return_mean'], s['eval_return_std'])} | "
                     f"{_pm(s['train_return_mean'], s['train_return_std'])} | {s['reached']}/{s['seeds']} | "
                     f"{'-' if st is None else f'{st:.0f}'} | {'-' if sec is None else f'{sec:.1f}'} | "
                     f"{_pm(s['q_over_mean'], s['q_over_std'], '.1f')} | {s['q_mean']:.1f} | {s['g_mean']:.1f} | "
                     f"{s['mean_wall_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


# --- one run, in its own process --------------------------------------------------------------------------------

def evaluate_q(learner: Any, env_id: str, gamma: float, episodes: int, seed: int, tail_steps: int) -> dict[str, Any]:
    """Noise-free episodes of the learner's actor: returns over the env's time limit, and Q(s, mu(s)) - G(s) on
    the states of those steps, G measured over ``tail_steps`` more steps (see the module docstring)."""
    import gymnasium as gym
    import torch

    limit = gym.spec(env_id).max_episode_steps or 1000
    envs = [gym.make(env_id, max_episode_steps=limit + tail_steps) for _ in range(episodes)]
    device = learner.action_low.device
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]).astype(np.float32)
    steps = limit + tail_steps
    rewards = np.zeros((steps, episodes))
    alive = np.zeros((steps, episodes))
    qs = np.zeros((limit, episodes))
    running = np.ones(episodes, dtype=bool)
    with torch.no_grad():
        for t in range(steps):
            s = torch.as_tensor(obs, device=device)
            a = learner.actor(s)
            if t < limit:
                qs[t] = learner.q1(s, a).reshape(-1).cpu().numpy()
            act = a.cpu().numpy()
            for i, e in enumerate(envs):
                if not running[i]:
                    continue
                o, r, term, trunc, _ = e.step(act[i])
                rewards[t, i], alive[t, i] = r, 1.0
                obs[i] = o
                running[i] = not (term or trunc)
            if not running.any():
                break
    for e in envs:
        e.close()
    g = returns_to_go(rewards, alive, gamma)[:limit]
    mask = alive[:limit] > 0
    return {"returns": rewards[:limit].sum(axis=0).tolist(), "q_over": float((qs - g)[mask].mean()),
            "q_mean": float(qs[mask].mean()), "g_mean": float(g[mask].mean())}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one (variant, num_envs, seed) and evaluate it; returns the run's record."""
    sys.path.insert(0, str(ROOT))
    from fastddpg import Config, Trainer

    set_worker_threads(spec)
    cfg = Config(env=spec["env"], num_envs=spec["num_envs"], total_steps=spec["total_steps"], seed=spec["seed"],
                 updates_per_step=1.0, device=spec["device"], quiet=True, threads=spec.get("threads") or 0,
                 **VARIANTS[spec["variant"]])
    t0 = time.perf_counter()
    trainer = Trainer(cfg)
    result = trainer.train()
    wall = time.perf_counter() - t0
    ep = result.episodes
    steps, seconds, returns = ep["global_step"].tolist(), ep["wall_time"].tolist(), ep["return"].tolist()
    curve = moving_mean(returns)
    ev = evaluate_q(trainer.algo, cfg.env, cfg.gamma, EVAL_EPISODES, cfg.seed + EVAL_SEED_OFFSET,
                    spec["tail_steps"])
    return {**{k: spec[k] for k in ("variant", "num_envs", "seed")}, "config": cfg.to_dict(),
            "steps": steps, "seconds": seconds, "returns": returns,
            "steps_to_threshold": first_reach(steps, curve), "seconds_to_threshold": first_reach(seconds, curve),
            "last10_train_return": float(np.mean(returns[-WINDOW:])) if returns else float("nan"),
            "eval_returns": ev["returns"], "eval_return": float(np.mean(ev["returns"])), "q_over": ev["q_over"],
            "q_mean": ev["q_mean"], "g_mean": ev["g_mean"], "wall_seconds": wall,
            "updates": result.summary["updates"], "compile": result.summary["compile"],
            "device": result.summary["device"]}


def run_many(specs: list[dict[str, Any]], jobs: int) -> list[dict[str, Any]]:
    """Each spec in its own ``python bench/exercises.py --worker SPEC`` process, ``jobs`` at a time."""
    def report(rec: dict[str, Any]) -> None:
        print(f"  {rec['variant']:8s} num_envs {rec['num_envs']:3d} seed {rec['seed']}: eval {rec['eval_return']:8.1f}"
              f"  Q-G {rec['q_over']:7.1f}  to -200: {rec['steps_to_threshold']} steps  ({rec['wall_seconds']:.0f} s)",
              flush=True)

    return run_workers(__file__, specs, jobs, on_result=report)


# --- outputs ---------------------------------------------------------------------------------------------------

def plot(result: dict[str, Any], path: Path) -> None:
    """Curves with mean +- std bands (one panel per num_envs), bars of final return and of Q overestimation."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    num_envs = sorted({g["num_envs"] for g in result["groups"]})
    variants = list(dict.fromkeys(g["variant"] for g in result["groups"]))
    colors = dict(zip(variants, ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3"], strict=False))
    cols = max(2, len(num_envs))
    fig = make_subplots(rows=2, cols=cols, vertical_spacing=0.14, subplot_titles=(
        *[f"num_envs {n}: 10-episode mean training return" for n in num_envs], *[""] * (cols - len(num_envs)),
        "final 10-episode eval return (noise-free)", "Q overestimation: mean Q(s, mu(s)) - G(s)",
        *[""] * (cols - 2)))
    for g in result["groups"]:
        col = num_envs.index(g["num_envs"]) + 1
        b, color = g["band"], colors[g["variant"]]
        x, m, s = b["x"], np.asarray(b["mean"]), np.asarray(b["std"])
        fig.add_trace(go.Scatter(x=x + x[::-1], y=(m + s).tolist() + (m - s).tolist()[::-1], fill="toself",
                                 line={"width": 0}, fillcolor=color, opacity=0.2, showlegend=False,
                                 hoverinfo="skip", legendgroup=g["variant"]), row=1, col=col)
        fig.add_trace(go.Scatter(x=x, y=m.tolist(), name=g["variant"], line={"color": color},
                                 legendgroup=g["variant"], showlegend=col == 1), row=1, col=col)
        fig.add_hline(y=THRESHOLD, line_dash="dot", row=1, col=col)
    for panel, key in ((1, "eval_return"), (2, "q_over")):
        for v in variants:
            gs = [g for g in result["groups"] if g["variant"] == v]
            fig.add_trace(go.Bar(x=[f"num_envs {g['num_envs']}" for g in gs],
                                 y=[g["summary"][f"{key}_mean"] for g in gs],
                                 error_y={"type": "data", "array": [g["summary"][f"{key}_std"] for g in gs]},
                                 name=v, marker_color=colors[v], legendgroup=v, showlegend=False), row=2, col=panel)
    fig.update_layout(barmode="group", height=850, title=f"Pendulum-v1 exercises: {result['args']['total_steps']} "
                      f"env steps, {result['args']['seeds']} seed(s), mean ± std over seeds")
    fig.update_xaxes(title_text="env steps", row=1)
    fig.write_html(path, include_plotlyjs="cdn" if result["args"].get("plotly_cdn") else True)


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--seeds", type=int, default=5, help="seeds per variant and num_envs (0..seeds-1)")
    p.add_argument("--num-envs", type=int, nargs="+", default=[1, 16])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--total-steps", type=int, default=20_000)
    p.add_argument("--tail-steps", type=int, default=500, help="eval steps past the time limit, for G (see above)")
    p.add_argument("--env", default="Pendulum-v1")
    p.add_argument("--device", default="auto")
    p.add_argument("--jobs", type=int, default=1, help="runs in parallel (timings stay honest only with 1 per core)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per run (0: fastddpg's auto, the cores divided among the runs at a time)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 seed, num_envs 16, 4k steps")
    p.add_argument("--plotly-cdn", action="store_true", help="small HTML that loads plotly.js from the CDN")
    p.add_argument("--out", default="bench/results")
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return None
    if args.quick:
        args.seeds, args.num_envs, args.total_steps = 1, [16], 4_000
    specs = [{"variant": v, "num_envs": n, "seed": s, "env": args.env, "total_steps": args.total_steps,
              "device": args.device, "threads": args.threads, "tail_steps": args.tail_steps}
             for n in args.num_envs for v in args.variants for s in range(args.seeds)]
    print(f"exercises: {len(specs)} runs ({len(args.variants)} variants x num_envs {args.num_envs} x {args.seeds} "
          f"seed(s)), {args.total_steps} env steps each", flush=True)
    t0 = time.perf_counter()
    runs = run_many(specs, args.jobs)
    grid = np.linspace(0, args.total_steps, 101)
    groups = []
    for n in args.num_envs:
        for v in args.variants:
            rs = [r for r in runs if r["variant"] == v and r["num_envs"] == n]
            groups.append({"variant": v, "num_envs": n, "summary": summarize(rs), "band": band(rs, grid)})
    result = {"args": vars(args), "device": runs[0]["device"], "anchors": ANCHORS, "groups": groups, "runs": runs,
              "seconds": time.perf_counter() - t0}
    out = ROOT / args.out if not Path(args.out).is_absolute() else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "exercises.json").write_text(json.dumps(result, indent=1, allow_nan=True) + "\n")
    (out / "exercises.md").write_text(markdown(result))
    plot(result, out / "exercises.html")
    print(markdown(result))
    print(f"wrote {out / 'exercises.json'}, {out / 'exercises.md'}, {out / 'exercises.html'} "
          f"({result['seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
