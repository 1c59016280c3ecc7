"""TD3 on HalfCheetah-v5: fastddpg next to Stable-Baselines3 with the same hyperparameters, in the same sitting.

    python bench/halfcheetah_td3.py                  # 3 seeds x 100k env steps each, both sides (hours on a CPU)
    python bench/halfcheetah_td3.py --quick          # 1 seed x 3k env steps each: the plumbing, not learning
    python bench/halfcheetah_td3.py --only fastddpg  # one side only
    python bench/halfcheetah_td3.py --jobs 2         # two runs at a time, one core and one thread each

The hyperparameters CleanRL's td3_continuous_action.py and SB3's TD3 use on MuJoCo: batch 256, Adam 3e-4 for
both networks, 25k uniform random steps, Gaussian exploration noise 0.1 (x the action bound, 1 here), target
policy noise 0.2 clipped at 0.5, policy delay 2, tau 0.005, gamma 0.99, 256x256 networks, one env, one update
per env step, no gradient clipping, replay 1M. fastddpg runs in this process's environment. SB3 runs in a
virtual environment of its own that this script makes (bench/.sb3-venv: torch 2.13.0 CPU, stable-baselines3,
gymnasium[mujoco]) through its public API (a small runner written to that venv); none of its code is copied.

Reported per side: the noise-free evaluation return after the budget (10 episodes, mean over seeds with a
Student-t 95% interval) and the wall time per run. Published 1M-step anchors, for orientation only: CleanRL TD3
on HalfCheetah-v4 9,583 +- 126, RL Zoo TD3 9,656 +- 970.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import SB3_VENV, sb3_python
from bench.curve import mean_ci95
from bench.workers import run_workers

ROOT = Path(__file__).resolve().parent.parent
ENV_ID = "HalfCheetah-v5"
EVAL_EPISODES = 10
HYPER = {"batch_size": 256, "lr": 3e-4, "learning_starts": 25_000, "exploration_noise": 0.1, "policy_noise": 0.2,
         "noise_clip": 0.5, "policy_delay": 2, "tau": 0.005, "gamma": 0.99, "hidden": [256, 256],
         "buffer_size": 1_000_000}

SB3_RUNNER = '''
import json, sys, time
import gymnasium as gym
import numpy as np
from stable_baselines3 import TD3
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.noise import NormalActionNoise

spec = json.loads(sys.argv[1])
h = spec["hyper"]
env = gym.make(spec["env"])
act_dim = env.action_space.shape[0]
noise = NormalActionNoise(np.zeros(act_dim), h["exploration_noise"] * np.ones(act_dim))
model = TD3("MlpPolicy", env, learning_rate=h["lr"], buffer_size=h["buffer_size"],
            learning_starts=min(h["learning_starts"], spec["steps"]), batch_size=h["batch_size"], tau=h["tau"],
            gamma=h["gamma"], train_freq=1, gradient_steps=1, action_noise=noise, policy_delay=h["policy_delay"],
            target_policy_noise=h["policy_noise"], target_noise_clip=h["noise_clip"],
            policy_kwargs={"net_arch": h["hidden"]}, seed=spec["seed"], device="cpu", verbose=0)
t0 = time.perf_counter()
model.learn(total_timesteps=spec["steps"])
wall = time.perf_counter() - t0
eval_env = gym.make(spec["env"])
eval_env.reset(seed=spec["seed"] + 10_000)
returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=spec["eval_episodes"], deterministic=True,
                             return_episode_rewards=True)
print(json.dumps({"side": "sb3", "seed": spec["seed"], "wall_s": wall, "eval_return": float(np.mean(returns))}))
'''


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=100_000, help="env steps per run (default: 100,000)")
    p.add_argument("--only", choices=("fastddpg", "sb3"), default=None)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run, both sides (default: 1)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at a time, each in its own process (the runs alternate sides, so with 2 jobs a "
                        "fastddpg run and an SB3 run share the machine; use at most one job per core)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="1 seed x 3,000 env steps (learning_starts capped)")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "halfcheetah_td3.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.steps = 1, 3_000
    return args


def fastddpg_run(seed: int, steps: int, threads: int) -> dict[str, Any]:
    """fastddpg's TD3 with HYPER, then its noise-free evaluation (the same episodes count as SB3's)."""
    from fastddpg import Config, train
    from fastddpg.runs.evaluate import evaluate_actor

    h = HYPER
    cfg = Config(env=ENV_ID, algo="td3", num_envs=1, total_steps=steps, seed=seed, batch_size=h["batch_size"],
                 actor_lr=h["lr"], critic_lr=h["lr"], start_steps=min(h["learning_starts"], steps),
                 update_after=min(h["learning_starts"], steps), noise_sigma=h["exploration_noise"],
                 policy_noise=h["policy_noise"], noise_clip=h["noise_clip"], policy_delay=h["policy_delay"],
                 tau=h["tau"], gamma=h["gamma"], hidden_sizes=tuple(h["hidden"]), replay_size=h["buffer_size"],
                 grad_clip_norm=0.0, updates_per_step=1.0, device="cpu", quiet=True, threads=threads,
                 log_every=5_000)
    t0 = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - t0
    ev = evaluate_actor(result.actor.cpu().eval(), ENV_ID, EVAL_EPISODES, seed + 10_000)
    return {"side": "fastddpg", "seed": seed, "wall_s": wall, "eval_return": ev.mean,
            "compile": result.summary["compile"]}


def ensure_sb3_venv() -> Path:
    """bench/.sb3-venv (`bench.common.sb3_python`) with this script's SB3 runner in it; its python."""
    python = sb3_python(SB3_VENV)
    runner = SB3_VENV / "runner.py"
    if not runner.exists() or runner.read_text() != SB3_RUNNER:
        runner.write_text(SB3_RUNNER)
    return python


def sb3_run(python: Path, seed: int, steps: int, threads: int) -> dict[str, Any]:
    spec = {"env": ENV_ID, "seed": seed, "steps": steps, "hyper": HYPER, "eval_episodes": EVAL_EPISODES}
    env = {"OMP_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin"}
    p = subprocess.run([str(python), str(SB3_VENV / "runner.py"), json.dumps(spec)], capture_output=True, text=True,
                       env=env, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"SB3 run failed: {p.stderr.strip()[-800:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for side in ("fastddpg", "sb3"):
        rs = [r for r in records if r["side"] == side]
        if rs:
            mean, lo, hi = mean_ci95([r["eval_return"] for r in rs])
            rows.append({"side": side, "runs": len(rs), "eval_return": mean, "ci95": [lo, hi],
                         "wall_s_median": statistics.median(r["wall_s"] for r in rs)})
    return rows


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """One run of one side (in a --worker process when --jobs > 1)."""
    import torch

    torch.set_num_threads(spec["threads"])
    if spec["side"] == "fastddpg":
        return fastddpg_run(spec["seed"], spec["steps"], spec["threads"])
    return sb3_run(ensure_sb3_venv(), spec["seed"], spec["steps"], spec["threads"])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_one(json.loads(args.worker))))
        return 0
    if args.only != "fastddpg":
        ensure_sb3_venv()
    sides = [s for s in ("fastddpg", "sb3") if args.only in (None, s)]
    # the two sides alternate, so the machine's drift (and, with 2 jobs, the neighbour) falls on both alike
    specs = [{"side": side, "seed": seed, "steps": args.steps, "threads": args.threads}
             for seed in range(args.seeds) for side in sides]
    if args.jobs > 1:
        records = run_workers(__file__, specs, args.jobs, on_result=lambda r: print(json.dumps(r), flush=True))
    else:
        records = []
        for spec in specs:
            records.append(run_one(spec))
            print(json.dumps(records[-1]), flush=True)
    table = summarize(records)
    for r in table:
        print(f"{r['side']:>9}: eval return {r['eval_return']:9.1f} (95% CI {r['ci95'][0]:.1f} .. {r['ci95'][1]:.1f}),"
              f" {r['runs']} runs, median wall {r['wall_s_median']:.0f} s per {args.steps:,} env steps")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "hyper": HYPER, "records": records, "table": table,
                               "date": time.strftime("%Y-%m-%d")}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
