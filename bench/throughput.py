"""Training throughput on Pendulum-v1: env steps/s and updates/s of fastddpg over num_envs x {eager, compiled}
x replay ratio {1, 1/num_envs}, each next to the notebook's loop measured in the same run, with where the
time goes.

    python bench/throughput.py --quick            # under ~2 minutes on a 2-core CPU
    python bench/throughput.py                    # num_envs 1 4 16 64 256, 3 repetitions
    python bench/throughput.py --device cuda --num-envs 16 256 1024 4096 --env-backend torch

Method. Each point builds a fresh Trainer, runs it past start_steps/update_after and through a warm-up
(compile time and CUDA-graph capture are excluded and reported apart), then times `--seconds` of steady-state
training `--repeats` times and reports the median with min-max. The notebook baseline (bench/baseline.py: one
env, numpy replay, `.item()` per update) is timed on its episodes after start_steps, i.e. also in steady state.
A separate, shorter pass wraps the trainer's phases (acting, env step incl. host<->device copies, buffer write,
sampling, updates, flush/reporting) with timers (and a device sync per phase on CUDA) to show where the time
goes; that pass is not used for the throughput figures.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.baseline import notebook_train
from bench.common import sync
from fastddpg import Config, Trainer

WARM_START = 1_000  # start_steps = update_after here: the steady state costs the same, the warm-up is shorter


def notebook_steady_rate(total_steps: int, device: str, seed: int = 0) -> float:
    """Env steps/s of the notebook's loop over its episodes that end after start_steps (2,000)."""
    r = notebook_train(total_steps=total_steps, seed=seed, device=device)
    steps, secs = r["episode_end_steps"], r["episode_end_seconds"]
    k = next(i for i, s in enumerate(steps) if s >= 2_000)
    return (steps[-1] - steps[k]) / (secs[-1] - secs[k])


def _run_for(trainer: Trainer, seconds: float, min_vsteps: int) -> tuple[int, int, float]:
    """Step the trainer for at least ``seconds`` and ``min_vsteps`` vector steps; (env steps, updates, s)."""
    sync(trainer.device)
    s0, u0, t0 = trainer.global_step, trainer.num_updates, time.perf_counter()
    n = 0
    while n < min_vsteps or time.perf_counter() - t0 < seconds:
        trainer.step()
        n += 1
    sync(trainer.device)
    return trainer.global_step - s0, trainer.num_updates - u0, time.perf_counter() - t0


def _timed(fn: Callable, name: str, acc: dict[str, float], device: torch.device) -> Callable:
    def wrapper(*a: Any, **kw: Any) -> Any:
        sync(device)
        t0 = time.perf_counter()
        out = fn(*a, **kw)
        sync(device)
        acc[name] = acc.get(name, 0.0) + time.perf_counter() - t0
        return out

    return wrapper


def breakdown(trainer: Trainer, seconds: float) -> dict[str, float]:
    """Fractions of wall time per phase over ``seconds`` of training (phases wrapped with timers)."""
    acc: dict[str, float] = {}
    d = trainer.device
    trainer.act = _timed(trainer.act, "acting", acc, d)
    trainer.env.step = _timed(trainer.env.step, "env_step_and_copies", acc, d)
    trainer.buffer.add = _timed(trainer.buffer.add, "buffer_write", acc, d)
    trainer.buffer.sample_rows = _timed(trainer.buffer.sample_rows, "sampling", acc, d)
    trainer.update_fns = {k: _timed(fn, "update", acc, d) for k, fn in trainer.update_fns.items()}
    trainer.flush = _timed(trainer.flush, "flush_reporting", acc, d)
    _, _, wall = _run_for(trainer, seconds, 2)
    acc["other"] = wall - sum(acc.values())
    return {k: v / wall for k, v in acc.items()}


def measure_point(num_envs: int, compile_mode: str, ratio: str, device: str, backend: str, seconds: float,
                  repeats: int) -> dict[str, Any]:
    ups = 1.0 if ratio == "1" else 1.0 / num_envs
    cfg = Config(num_envs=num_envs, total_steps=10**12, start_steps=WARM_START, update_after=WARM_START,
                 updates_per_step=ups, compile=compile_mode, device=device, env_backend=backend, quiet=True,
                 log_every=max(1_000, num_envs * 50), seed=0)
    trainer = Trainer(cfg)
    t0 = time.perf_counter()
    while trainer.global_step < WARM_START or trainer.num_updates < 3 * max(1, int(num_envs * ups)):
        trainer.step()
    _run_for(trainer, 0.0, 2)
    warmup = time.perf_counter() - t0
    steps_ps, upd_ps = [], []
    for _ in range(repeats):
        s, u, w = _run_for(trainer, seconds, 2)
        steps_ps.append(s / w)
        upd_ps.append(u / w)
    parts = breakdown(trainer, max(1.0, seconds / 2))
    trainer.env.close()
    return {"num_envs": num_envs, "compile": compile_mode, "replay_ratio": ups, "ratio_label": ratio,
            "env_steps_per_sec": statistics.median(steps_ps), "env_steps_per_sec_min": min(steps_ps),
            "env_steps_per_sec_max": max(steps_ps), "updates_per_sec": statistics.median(upd_ps),
            "warmup_seconds": warmup, "compile_seconds": trainer.compile_seconds, "time_fractions": parts}


def env_only_rate(backend: str, num_envs: int, seconds: float, device: str) -> float:
    """Env steps/s of stepping the env alone with fixed actions (``backend``: sync, async or torch), through
    fastddpg's device-tensor interface (so the gymnasium figures include the host<->device packing)."""
    from fastddpg.envs.vector import make_env

    dev = torch.device(device)
    if backend == "torch":
        env = make_env("Pendulum-v1", num_envs, dev, backend="torch")
    else:
        env = make_env("Pendulum-v1", num_envs, dev, mode=backend)
    env.reset(seed=0)
    actions = torch.full((num_envs, 1), 0.5, device=dev)
    for _ in range(3):
        env.step(actions)
    sync(dev)
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        env.step(actions)
        n += 1
    sync(dev)
    rate = n * num_envs / (time.perf_counter() - t0)
    env.close()
    return rate


def env_only(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for backend in args.env_only_backends:
        for n in args.env_only_num_envs:
            if backend == "async" and n > 64:
                continue  # one process per env: beyond the core count it only measures the OS scheduler
            rate = env_only_rate(backend, n, args.seconds / 2, args.device)
            rows.append({"backend": backend, "num_envs": n, "env_steps_per_sec": rate})
            print(f"env only | {backend:5s} | num_envs {n:6d} | {rate:14,.0f} env steps/s", flush=True)
    return rows


def plot(result: dict[str, Any], path: Path) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    rows = result["rows"]
    for mode in sorted({r["compile"] for r in rows}):
        for label in ("1", "1/N"):
            pts = sorted((r["num_envs"], r["env_steps_per_sec"]) for r in rows
                         if r["compile"] == mode and r["ratio_label"] == label)
            if pts:
                fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                         name=f"fastddpg {mode}, replay ratio {label}"))
    fig.add_hline(y=result["notebook_steps_per_sec"], line_dash="dash",
                  annotation_text=f"notebook loop ({result['notebook_steps_per_sec']:.0f} steps/s)")
    fig.update_layout(title=f"Pendulum-v1 training throughput ({result['device']}, torch {result['torch']})",
                      xaxis_title="num_envs", yaxis_title="env steps/s", xaxis_type="log", yaxis_type="log")
    fig.write_html(path, include_plotlyjs="cdn")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--num-envs", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    p.add_argument("--compile", nargs="+", default=["off", "default"], choices=("off", "default", "max-autotune"))
    p.add_argument("--ratios", nargs="+", default=["1", "1/N"], choices=("1", "1/N"))
    p.add_argument("--env-backend", default="gymnasium", choices=("gymnasium", "numpy", "torch", "auto"))
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per repetition")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="num_envs 1 16, 2 s x 2 repetitions")
    p.add_argument("--env-only", action="store_true", help="only time the envs alone (no training)")
    p.add_argument("--env-only-backends", nargs="+", default=["sync", "async", "torch"],
                   choices=("sync", "async", "torch"))
    p.add_argument("--env-only-num-envs", type=int, nargs="+", default=[1, 16, 256, 4096, 65536])
    p.add_argument("--out", default="bench/results")
    args = p.parse_args(argv)
    if args.quick:
        args.num_envs, args.seconds, args.repeats = [1, 16], 2.0, 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.env_only:
        rows = env_only(args)
        result = {"benchmark": "env_only", "env": "Pendulum-v1", "device": args.device, "torch": torch.__version__,
                  "date": time.strftime("%Y-%m-%d"), "rows": rows}
        (out / "env_only.json").write_text(json.dumps(result, indent=2))
        print(f"wrote {out / 'env_only.json'}")
        return result
    t0 = time.perf_counter()
    nb = [notebook_steady_rate(3_000 if args.quick else 4_000, args.device, seed=r) for r in range(args.repeats)]
    nb_rate = statistics.median(nb)
    print(f"notebook loop (1 env, steady state): {nb_rate:.0f} env steps/s (min {min(nb):.0f}, max {max(nb):.0f})",
          flush=True)
    rows = []
    for n in args.num_envs:
        for mode in args.compile:
            for ratio in args.ratios:
                if ratio == "1/N" and n == 1:
                    continue  # the same point as ratio 1
                r = measure_point(n, mode, ratio, args.device, args.env_backend, args.seconds, args.repeats)
                r["ratio_to_notebook"] = r["env_steps_per_sec"] / nb_rate
                rows.append(r)
                top = sorted(r["time_fractions"].items(), key=lambda kv: -kv[1])[:3]
                print(f"num_envs {n:5d} | {mode:8s} | ratio {ratio:3s} | {r['env_steps_per_sec']:10,.0f} steps/s "
                      f"({r['ratio_to_notebook']:6.2f}x notebook) | {r['updates_per_sec']:8,.0f} updates/s | "
                      + ", ".join(f"{k} {v:.0%}" for k, v in top), flush=True)
    result = {"benchmark": "throughput", "env": "Pendulum-v1", "device": args.device, "env_backend": args.env_backend,
              "torch": torch.__version__, "machine": platform.machine(), "threads": torch.get_num_threads(),
              "date": time.strftime("%Y-%m-%d"), "seconds_per_repeat": args.seconds, "repeats": args.repeats,
              "warmup_excluded": True, "notebook_steps_per_sec": nb_rate, "notebook_runs": nb, "rows": rows,
              "bench_seconds": time.perf_counter() - t0}
    (out / "throughput.json").write_text(json.dumps(result, indent=2))
    plot(result, out / "throughput.html")
    print(f"wrote {out / 'throughput.json'} and {out / 'throughput.html'}")
    return result


if __name__ == "__main__":
    main()
