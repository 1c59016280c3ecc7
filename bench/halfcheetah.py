"""TD3, SAC or CrossQ on HalfCheetah-v5: fastddpg next to its peer (Stable-Baselines3's TD3 or SAC, sb3-contrib's
CrossQ) with the same hyperparameters, in the same sitting.

    python bench/halfcheetah.py                      # TD3: 3 seeds x 100k env steps each, both sides (hours on a CPU)
    python bench/halfcheetah.py --algo sac --jobs 2  # SAC, two runs at a time, one core and one thread each
    python bench/halfcheetah.py --algo crossq --critic-width 256   # CrossQ with narrower critics on both sides
    python bench/halfcheetah.py --quick              # 1 seed x 3k env steps each: the plumbing, not learning
    python bench/halfcheetah.py --only fastddpg      # one side only

Hyperparameters (`HYPER`), the same on both sides, one env, one update per env step, replay 1M, batch 256,
gamma 0.99, no gradient clipping:
- td3: what CleanRL's td3_continuous_action.py and SB3's TD3 use on MuJoCo: Adam 3e-4 for both networks, 25k
  uniform random steps, Gaussian exploration noise 0.1 (x the action bound, 1 here), target policy noise 0.2
  clipped at 0.5, policy delay 2, tau 0.005, 256x256 networks;
- sac: the RL Zoo's HalfCheetah entry (learning_starts 10k) on SB3's SAC defaults: Adam 3e-4 (actor, critics and
  alpha), tau 0.005, 256x256 networks, alpha learned from 1.0 toward an entropy of -|A|;
- crossq: the RL Zoo's HalfCheetah entry on sb3-contrib's CrossQ defaults: Adam 1e-3 with betas (0.5, 0.999),
  learning_starts 5k, policy delay 3, actor 256x256, critics 2048x2048 (`--critic-width`: the Zoo's 2048 costs
  about 60x the update compute of 256 on a CPU; a narrower width is set on both sides alike), BatchRenorm
  momentum 0.01 and 100k warm-up steps, no target networks.
fastddpg runs in this process's environment. The peer runs in a virtual environment of its own (`--sb3-python`, or
bench/.sb3-venv, which this script makes: torch 2.13.0 CPU, stable-baselines3, sb3-contrib, gymnasium[mujoco])
through its public API (a small runner written to that venv); none of its code is copied.

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
COMMON = {"batch_size": 256, "gamma": 0.99, "buffer_size": 1_000_000, "hidden": [256, 256]}
HYPER: dict[str, dict[str, Any]] = {
    "td3": {**COMMON, "lr": 3e-4, "learning_starts": 25_000, "exploration_noise": 0.1, "policy_noise": 0.2,
            "noise_clip": 0.5, "policy_delay": 2, "tau": 0.005},
    "sac": {**COMMON, "lr": 3e-4, "learning_starts": 10_000, "tau": 0.005, "init_alpha": 1.0},
    "crossq": {**COMMON, "lr": 1e-3, "learning_starts": 5_000, "policy_delay": 3, "critic_width": 2048,
               "init_alpha": 1.0},
}
PEER = {"td3": "SB3 TD3", "sac": "SB3 SAC", "crossq": "sb3-contrib CrossQ"}

SB3_RUNNER = '''
import json, sys, time
import gymnasium as gym
import numpy as np
from stable_baselines3 import SAC, TD3
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.noise import NormalActionNoise

spec = json.loads(sys.argv[1])
h, algo = spec["hyper"], spec["algo"]
env = gym.make(spec["env"])
common = dict(learning_rate=h["lr"], buffer_size=h["buffer_size"], learning_starts=min(h["learning_starts"],
              spec["steps"]), batch_size=h["batch_size"], gamma=h["gamma"], train_freq=1, gradient_steps=1,
              seed=spec["seed"], device="cpu", verbose=0)
if algo == "td3":
    act_dim = env.action_space.shape[0]
    noise = NormalActionNoise(np.zeros(act_dim), h["exploration_noise"] * np.ones(act_dim))
    model = TD3("MlpPolicy", env, tau=h["tau"], action_noise=noise, policy_delay=h["policy_delay"],
                target_policy_noise=h["policy_noise"], target_noise_clip=h["noise_clip"],
                policy_kwargs={"net_arch": h["hidden"]}, **common)
elif algo == "sac":
    model = SAC("MlpPolicy", env, tau=h["tau"], ent_coef=f"auto_{h['init_alpha']}",
                policy_kwargs={"net_arch": h["hidden"]}, **common)
else:
    from sb3_contrib import CrossQ
    width = h["critic_width"]
    model = CrossQ("MlpPolicy", env, policy_delay=h["policy_delay"], ent_coef=f"auto_{h['init_alpha']}",
                   policy_kwargs={"net_arch": {"pi": h["hidden"], "qf": [width, width]}}, **common)
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
    p.add_argument("--algo", choices=tuple(HYPER), default="td3")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=100_000, help="env steps per run (default: 100,000)")
    p.add_argument("--only", choices=("fastddpg", "sb3"), default=None, help="one side only (sb3: the peer)")
    p.add_argument("--critic-width", type=int, default=0,
                   help="crossq: the critics' width on both sides (default 0: the RL Zoo's 2048)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run, both sides (default: 1)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at a time, each in its own process (the runs alternate sides, so with 2 jobs a "
                        "fastddpg run and a peer run share the machine; use at most one job per core)")
    p.add_argument("--sb3-python", default="", help="the python of a venv with stable-baselines3, sb3-contrib and "
                   "gymnasium[mujoco] (default: bench/.sb3-venv, made on first use)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="1 seed x 3,000 env steps (learning_starts capped)")
    p.add_argument("--out", default="", help="default: bench/results/halfcheetah_ALGO.json")
    args = p.parse_args(argv)
    if args.critic_width and args.algo != "crossq":
        p.error(f"--critic-width is CrossQ's; --algo {args.algo} has no such setting")
    if args.quick:
        args.seeds, args.steps = 1, 3_000
    args.out = args.out or str(ROOT / "bench" / "results" / f"halfcheetah_{args.algo}.json")
    return args


def hyper(algo: str, critic_width: int = 0) -> dict[str, Any]:
    """``HYPER[algo]``, CrossQ's critic width replaced by ``critic_width`` when given."""
    h = dict(HYPER[algo])
    if critic_width:
        h["critic_width"] = critic_width
    return h


def fastddpg_config(algo: str, h: dict[str, Any], seed: int, steps: int, threads: int) -> Any:
    """The fastddpg Config of ``h``: every value the peer is given, given here too (not left to defaults)."""
    from fastddpg import Config

    starts = min(h["learning_starts"], steps)
    own: dict[str, Any] = {"tau": h["tau"]} if "tau" in h else {}
    if algo == "td3":
        own |= {"noise_sigma": h["exploration_noise"], "policy_noise": h["policy_noise"],
                "noise_clip": h["noise_clip"], "policy_delay": h["policy_delay"]}
    if algo in ("sac", "crossq"):
        own["init_alpha"] = h["init_alpha"]
    if algo == "crossq":
        own |= {"policy_delay": h["policy_delay"], "critic_width": h["critic_width"]}
    return Config(env=ENV_ID, algo=algo, num_envs=1, total_steps=steps, seed=seed, batch_size=h["batch_size"],
                  actor_lr=h["lr"], critic_lr=h["lr"], start_steps=starts, update_after=starts, gamma=h["gamma"],
                  hidden_sizes=tuple(h["hidden"]), replay_size=h["buffer_size"], grad_clip_norm=0.0,
                  updates_per_step=1.0, device="cpu", quiet=True, threads=threads, log_every=5_000, **own)


def fastddpg_run(algo: str, h: dict[str, Any], seed: int, steps: int, threads: int) -> dict[str, Any]:
    """fastddpg's run with ``h``, then its noise-free evaluation (the deterministic action; as many episodes as the
    peer's)."""
    from fastddpg import train
    from fastddpg.runs.evaluate import evaluate_actor

    t0 = time.perf_counter()
    result = train(fastddpg_config(algo, h, seed, steps, threads))
    wall = time.perf_counter() - t0
    ev = evaluate_actor(result.actor.cpu().eval(), ENV_ID, EVAL_EPISODES, seed + 10_000)
    return {"side": "fastddpg", "seed": seed, "wall_s": wall, "eval_return": ev.mean,
            "compile": result.summary["compile"],
            "cpu_matmul": result.summary.get("cpu_matmul")}


def ensure_sb3_venv(python: str = "") -> Path:
    """The peer's python (``python``, or bench/.sb3-venv made by `bench.common.sb3_python`), with this script's
    runner written beside this script's venv."""
    exe = Path(python) if python else sb3_python(SB3_VENV)
    runner = SB3_VENV / "runner.py"
    runner.parent.mkdir(parents=True, exist_ok=True)
    if not runner.exists() or runner.read_text() != SB3_RUNNER:
        runner.write_text(SB3_RUNNER)
    return exe


def sb3_run(python: Path, algo: str, h: dict[str, Any], seed: int, steps: int, threads: int) -> dict[str, Any]:
    spec = {"env": ENV_ID, "algo": algo, "seed": seed, "steps": steps, "hyper": h, "eval_episodes": EVAL_EPISODES}
    env = {"OMP_NUM_THREADS": str(threads), "PATH": "/usr/bin:/bin"}
    p = subprocess.run([str(python), str(SB3_VENV / "runner.py"), json.dumps(spec)], capture_output=True, text=True,
                       env=env, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"{PEER[algo]} run failed: {p.stderr.strip()[-800:]}")
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
    args = (spec["algo"], spec["hyper"], spec["seed"], spec["steps"], spec["threads"])
    if spec["side"] == "fastddpg":
        return fastddpg_run(*args)
    return sb3_run(ensure_sb3_venv(spec["sb3_python"]), *args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_one(json.loads(args.worker))))
        return 0
    if args.only != "fastddpg":
        args.sb3_python = str(ensure_sb3_venv(args.sb3_python))
    h = hyper(args.algo, args.critic_width)
    sides = [s for s in ("fastddpg", "sb3") if args.only in (None, s)]
    # the two sides alternate, so the machine's drift (and, with 2 jobs, the neighbour) falls on both alike
    specs = [{"side": side, "algo": args.algo, "hyper": h, "seed": seed, "steps": args.steps,
              "threads": args.threads, "sb3_python": args.sb3_python} for seed in range(args.seeds) for side in sides]
    if args.jobs > 1:
        records = run_workers(__file__, specs, args.jobs, on_result=lambda r: print(json.dumps(r), flush=True))
    else:
        records = []
        for spec in specs:
            records.append(run_one(spec))
            print(json.dumps(records[-1]), flush=True)
    table = summarize(records)
    for r in table:
        name = "fastddpg" if r["side"] == "fastddpg" else PEER[args.algo]
        print(f"{name:>17}: eval return {r['eval_return']:9.1f} (95% CI {r['ci95'][0]:.1f} .. {r['ci95'][1]:.1f}),"
              f" {r['runs']} runs, median wall {r['wall_s_median']:.0f} s per {args.steps:,} env steps")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "algo": args.algo, "hyper": h, "peer": PEER[args.algo],
                               "records": records, "table": table, "date": time.strftime("%Y-%m-%d")}, indent=2)
                   + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
