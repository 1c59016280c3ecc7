"""Fidelity: fastddpg against Stable-Baselines3 at matched hyperparameters, per env and algorithm, interleaved.

    python bench/fidelity.py                                   # every env x {ddpg, td3} x 3 seeds (hours on a CPU)
    python bench/fidelity.py --envs InvertedPendulum-v5 --algos td3 --seeds 5
    python bench/fidelity.py --quick                           # the plumbing: tiny budgets, 1 seed
    python bench/fidelity.py --sb3-python /tmp/vsb3/bin/python # an existing venv with stable-baselines3

Both sides run the notebook's hyperparameters: Adam 1e-3 for both networks, batch 128, 256x256, tau 0.005,
gamma 0.99, 2,000 uniform random env steps, updates from env step 1,000, one env, one update per env step,
Gaussian exploration noise of std 0.1 in env action units (SB3 acts in [-1, 1]: its sigma is 0.1 / scale), TD3's
target policy noise 0.2 clipped at 0.5 (units of the action scale on both sides: SB3's normalized units),
policy delay 2, replay 200k. fastddpg runs with ``grad_clip_norm=0`` (SB3 has no clipping) unless ``--variants``
adds ``clip1`` (fastddpg's default, the notebook's 1.0). SB3 bootstraps through time-limit truncations
(``handle_timeout_termination``) as fastddpg does.

Each run is its own process (`bench.workers.run_workers`), SB3's in its own venv (`bench.common.sb3_python`); the
sides alternate run by run (seed-major), so the machine's drift falls on both alike. Per run: the noise-free
evaluation return after the budget (``--eval-episodes`` episodes) and the mean training return of the last 10
episodes; per (env, algo, side): their mean with a Student-t 95% interval, and the env steps at which the moving
mean of 10 training episodes first reaches the env's threshold (median over the seeds that reach it).
bench/results/fidelity.json is rewritten after every run (a partial sitting keeps what it measured) and
bench/results/fidelity.md holds the table for the README.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_model, first_crossing, sb3_python
from bench.curve import mean_ci95
from bench.workers import run_workers, set_worker_threads

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "fidelity.json"


class EnvSpec(NamedTuple):
    steps: int  # env steps per run
    threshold: float  # of the 10-episode moving mean of training returns
    quick_steps: int = 1_200


ENVS: dict[str, EnvSpec] = {
    "Pendulum-v1": EnvSpec(15_000, -200.0),
    "InvertedPendulum-v5": EnvSpec(15_000, 100.0),
    "MountainCarContinuous-v0": EnvSpec(15_000, 0.0, 2_000),
    "HalfCheetah-v5": EnvSpec(20_000, 1_000.0),
}
HYPER = {"lr": 1e-3, "batch_size": 128, "hidden": [256, 256], "tau": 0.005, "gamma": 0.99, "random_steps": 2_000,
         "learning_starts": 1_000, "noise_sigma": 0.1, "policy_noise": 0.2, "noise_clip": 0.5, "policy_delay": 2,
         "buffer_size": 200_000}
# fastddpg's variants: their grad_clip_norm, and whether the env's actions are rescaled to [-1, 1] first (SB3's
# parametrisation: the critic then takes normalized actions; the noise is rescaled with them)
VARIANTS = {"fastddpg": (0.0, False), "clip1": (1.0, False), "normalized": (0.0, True)}

SB3_RUNNER = '''
import json, sys, time
import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DDPG, TD3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.noise import NormalActionNoise

spec = json.loads(sys.argv[1])
h = spec["hyper"]
torch.set_num_threads(spec["threads"])


class Episodes(BaseCallback):
    def __init__(self):
        super().__init__()
        self.rows = []

    def _on_step(self):
        for info in self.locals["infos"]:
            if "episode" in info:
                self.rows.append((int(self.num_timesteps), float(info["episode"]["r"])))
        return True


base = TD3 if spec["algo"] == "td3" else DDPG


class Warm(base):  # uniform random actions for random_steps env steps, updates from learning_starts
    def _sample_action(self, learning_starts, action_noise=None, n_envs=1):
        return super()._sample_action(max(learning_starts, h["random_steps"]), action_noise, n_envs)


env = Monitor(gym.make(spec["env"]))
scale = (env.action_space.high - env.action_space.low) / 2.0
noise = NormalActionNoise(np.zeros(scale.shape), (h["noise_sigma"] / scale).astype(np.float64))
extra = ({"policy_delay": h["policy_delay"], "target_policy_noise": h["policy_noise"],
          "target_noise_clip": h["noise_clip"]} if spec["algo"] == "td3" else {})
model = Warm("MlpPolicy", env, learning_rate=h["lr"], buffer_size=h["buffer_size"],
             learning_starts=h["learning_starts"], batch_size=h["batch_size"], tau=h["tau"], gamma=h["gamma"],
             train_freq=1, gradient_steps=1, action_noise=noise, policy_kwargs={"net_arch": h["hidden"]},
             seed=spec["seed"], device="cpu", verbose=0, **extra)
cb = Episodes()
t0 = time.perf_counter()
model.learn(total_timesteps=spec["steps"], callback=cb)
wall = time.perf_counter() - t0
eval_env = gym.make(spec["env"])
eval_env.reset(seed=spec["seed"] + 10_000)
returns, _ = evaluate_policy(model, eval_env, n_eval_episodes=spec["eval_episodes"], deterministic=True,
                             return_episode_rewards=True)
print(json.dumps({"episodes": cb.rows, "eval_return": float(np.mean(returns)), "wall_s": wall}))
'''


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    p.add_argument("--algos", nargs="+", default=["ddpg", "td3"], choices=["ddpg", "td3"])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--variants", nargs="+", default=["fastddpg"], choices=list(VARIANTS),
                   help="fastddpg's sides: 'fastddpg' (grad_clip_norm 0, as SB3), 'clip1' (the default 1.0), "
                        "'normalized' (grad_clip_norm 0 on the env rescaled to [-1, 1], as SB3 sees it)")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run, both sides (default: 1)")
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (one per core at most)")
    p.add_argument("--sb3-python", default="", help="python of a venv with stable-baselines3 (default: make "
                   "bench/.sb3-venv)")
    p.add_argument("--quick", action="store_true", help="1 seed, tiny budgets, 2 eval episodes: the plumbing")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--append", action="store_true",
                   help="keep the records already in --out and run only the (env, algo, side, seed, steps) not there")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.eval_episodes = 1, 2
    return args


def steps_to_threshold(episodes: list[tuple[int, float]], threshold: float) -> int | None:
    """The env step at which the mean of the last 10 training returns first reaches ``threshold`` (None: never),
    checked once per env step after every episode that ended at it (`fastddpg.core.schema.first_crossing`)."""
    i = first_crossing([s for s, _ in episodes], [r for _, r in episodes], threshold)
    return None if i is None else episodes[i][0]


def normalized_env(env_id: str) -> tuple[str, float]:
    """A registered id of ``env_id`` with its actions rescaled to [-1, 1] (RescaleAction), and the action scale
    (high - low) / 2 it divides by (one value: the bounds of these envs are symmetric and equal per dimension)."""
    import gymnasium as gym
    import numpy as np

    name = f"FastDDPGFidelity/{env_id.replace('/', '_')}-normalized"
    if name not in gym.registry:
        gym.register(name, entry_point=lambda: gym.wrappers.RescaleAction(gym.make(env_id), -1.0, 1.0))
    space = gym.make(env_id).action_space
    return name, float(np.max((space.high - space.low) / 2.0))


def run_key(run: dict[str, Any]) -> tuple:
    """What identifies a run: (env, algo, side, seed, steps)."""
    return tuple(run[k] for k in ("env", "algo", "side", "seed", "steps"))


def fastddpg_run(spec: dict[str, Any]) -> dict[str, Any]:
    """fastddpg with HYPER on spec's env/algo/seed; its training episodes and noise-free evaluation."""
    from fastddpg import Config, train
    from fastddpg.runs.evaluate import evaluate_actor

    h, steps = HYPER, spec["steps"]
    clip, normalized = VARIANTS[spec["side"]]
    env_id, sigma = spec["env"], h["noise_sigma"]
    if normalized:
        env_id, scale = normalized_env(env_id)
        sigma /= scale
    cfg = Config(env=env_id, algo=spec["algo"], num_envs=1, total_steps=steps, seed=spec["seed"],
                 batch_size=h["batch_size"], actor_lr=h["lr"], critic_lr=h["lr"], start_steps=h["random_steps"],
                 update_after=h["learning_starts"], noise_sigma=sigma, policy_noise=h["policy_noise"],
                 noise_clip=h["noise_clip"], policy_delay=h["policy_delay"], tau=h["tau"], gamma=h["gamma"],
                 hidden_sizes=tuple(h["hidden"]), replay_size=h["buffer_size"], grad_clip_norm=clip,
                 updates_per_step=1.0, device="cpu", quiet=True, threads=spec["threads"], log_every=1_000)
    t0 = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - t0
    ev = evaluate_actor(result.actor.cpu().eval(), env_id, spec["eval_episodes"], spec["seed"] + 10_000)
    eps = result.episodes
    return {"episodes": [(int(s), float(r)) for s, r in zip(eps["global_step"], eps["return"], strict=True)],
            "eval_return": ev.mean, "wall_s": wall, "compile": result.summary["compile"]}


def sb3_run(spec: dict[str, Any]) -> dict[str, Any]:
    """SB3 with HYPER in its venv, through a runner script written there."""
    python = Path(spec["sb3_python"])
    runner = python.parent.parent / "fidelity_runner.py"
    if not runner.exists() or runner.read_text() != SB3_RUNNER:
        runner.write_text(SB3_RUNNER)
    env = {"OMP_NUM_THREADS": str(spec["threads"]), "PATH": "/usr/bin:/bin"}
    p = subprocess.run([str(python), str(runner), json.dumps({**spec, "hyper": HYPER})], capture_output=True,
                       text=True, env=env, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"SB3 run failed: {p.stderr.strip()[-800:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """One run of one side, in a worker process: its record (the spec, episodes, returns, threshold step)."""
    set_worker_threads(spec)
    out = sb3_run(spec) if spec["side"] == "sb3" else fastddpg_run(spec)
    eps = [tuple(e) for e in out["episodes"]]
    returns = [r for _, r in eps]
    return {**{k: spec[k] for k in ("env", "algo", "side", "seed", "steps")}, **out,
            "last10_return": statistics.fmean(returns[-10:]) if returns else None,
            "steps_to_threshold": steps_to_threshold(eps, ENVS[spec["env"]].threshold)}


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (env, algo, side): eval and last-10 returns with 95% intervals, steps to the threshold."""
    rows = []
    keys = dict.fromkeys((r["env"], r["algo"], r["side"]) for r in records)
    for env, algo, side in keys:
        rs = [r for r in records if (r["env"], r["algo"], r["side"]) == (env, algo, side)]
        ev = mean_ci95([r["eval_return"] for r in rs])
        last = [r["last10_return"] for r in rs if r["last10_return"] is not None]
        reached = [r["steps_to_threshold"] for r in rs if r["steps_to_threshold"] is not None]
        rows.append({"env": env, "algo": algo, "side": side, "runs": len(rs), "steps": rs[0]["steps"],
                     "eval_return": ev[0], "eval_ci95": [ev[1], ev[2]],
                     "last10_return": mean_ci95(last)[0] if last else None,
                     "last10_ci95": list(mean_ci95(last)[1:]) if last else None,
                     "threshold": ENVS[env].threshold, "reached": len(reached),
                     "median_steps_to_threshold": statistics.median(reached) if reached else None,
                     "wall_s_median": statistics.median(r["wall_s"] for r in rs)})
    return rows


def verdict(fast: dict[str, Any], sb3: dict[str, Any]) -> str:
    """'overlaps', 'above' or 'below': fastddpg's eval interval against SB3's."""
    (flo, fhi), (slo, shi) = fast["eval_ci95"], sb3["eval_ci95"]
    if flo > shi:
        return "above"
    return "overlaps" if fhi >= slo else "below"


def markdown(table: list[dict[str, Any]]) -> str:
    """The README table: one line per (env, algo, fastddpg variant) against SB3."""
    def ci(r: dict[str, Any], key: str) -> str:
        lo, hi = r[f"{key}_ci95"]
        return f"{r[f'{key}_return']:,.1f} ({lo:,.1f} .. {hi:,.1f})"

    def thr(r: dict[str, Any]) -> str:
        s = r["median_steps_to_threshold"]
        return f"{r['reached']}/{r['runs']}" + (f", {s:,.0f}" if s is not None else "")

    lines = ["| env (steps, threshold) | algo | side | runs | eval return (95% CI) | last-10 training return (95% CI) "
             "| reached threshold, median env steps | vs SB3 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    by = {(r["env"], r["algo"], r["side"]): r for r in table}
    for (env, algo, side), r in by.items():
        sb3 = by.get((env, algo, "sb3"))
        vs = verdict(r, sb3) if side != "sb3" and sb3 is not None and r["runs"] > 1 and sb3["runs"] > 1 else ""
        lines.append(f"| {env} ({r['steps']:,}, {r['threshold']:g}) | {algo} | {side} | {r['runs']} | {ci(r, 'eval')} "
                     f"| {ci(r, 'last10') if r['last10_return'] is not None else 'no episode'} | {thr(r)} | {vs} |")
    return "\n".join(lines) + "\n"


def machine() -> dict[str, str]:
    import torch

    return {"cpu": cpu_model(), "torch": torch.__version__, "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_one(json.loads(args.worker))))
        return 0
    python = args.sb3_python or str(sb3_python())
    sides = [*args.variants, "sb3"]
    specs = [{"env": env, "algo": algo, "side": side, "seed": seed,
              "steps": ENVS[env].quick_steps if args.quick else ENVS[env].steps, "threads": args.threads,
              "eval_episodes": args.eval_episodes, "sb3_python": python}
             for seed in range(args.first_seed, args.first_seed + args.seeds) for env in args.envs
             for algo in args.algos for side in sides]
    out, md = Path(args.out), Path(args.out).with_suffix(".md")
    out.parent.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    sittings = [{"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "args": {k: v for k, v in vars(args).items() if k != "worker"}}]
    if args.append and out.exists():
        old = json.loads(out.read_text())
        before = old.get("sittings", [{"started": old.get("started"), "args": old.get("args")}])
        records, sittings = old["records"], [*before, *sittings]
        done = {run_key(r) for r in records}
        specs = [s for s in specs if run_key(s) not in done]

    def save(rec: dict[str, Any]) -> None:
        records.append(rec)
        print(json.dumps({k: v for k, v in rec.items() if k != "episodes"}), flush=True)
        table = summarize(records)
        out.write_text(json.dumps({"hyper": HYPER, "envs": {k: v._asdict() for k, v in ENVS.items()},
                                   "machine": machine(), "sittings": sittings,
                                   "planned_this_sitting": [run_key(s) for s in specs],
                                   "completed": len(records),
                                   "records": records, "table": table}, indent=1) + "\n")
        md.write_text(markdown(table))

    run_workers(__file__, specs, args.jobs, on_result=save)
    print(markdown(summarize(records)))
    print(f"wrote {out} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
