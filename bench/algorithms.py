"""The algorithms on Pendulum-v1 against their peers: fastddpg's DDPG, TD3, SAC and CrossQ (each from its tuned file
in configs/), Stable-Baselines3's SAC and sb3-contrib's CrossQ at the same settings (the RL Zoo's Pendulum-v1
entries: 20,000 env steps, one env, batch 256, learning rate 1e-3, updates from env step 100; CrossQ with policy
delay 2 and 256-wide critics), each run its own process, start-up and compile included.

    python bench/algorithms.py --sb3-python /tmp/vsb3/bin/python    # 6 sides x 3 seeds x 20,000 env steps
    python bench/algorithms.py --sides fastddpg-sac sb3-sac --seeds 5
    python bench/algorithms.py --quick                              # 1 seed x 2,000 env steps: the plumbing

The peers' venv needs stable-baselines3 and sb3-contrib. Seed-major, the sides' order rotating per seed, one run at
a time (bench/time_to_threshold.py's clock: launch to exit, episode ends placed on it). Reported per side: medians
over seeds of env steps/s, seconds and env steps to a 10-episode mean of -200 (a seed that never reaches it counts
as never), and the mean of the last 10 training returns at the end (20k steps) with its spread over seeds.
fastddpg runs with a warm compile cache (filled first by an unmeasured short run per algorithm) unless ``--cold``.
bench/results/algorithms.json is rewritten after every run; bench/results/algorithms.md holds the README's table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fidelity import machine, steps_to_threshold
from bench.time_to_threshold import (
    ROOT,
    THRESHOLD,
    environment,
    fastddpg_episodes,
    launch,
    median_to_threshold,
    rotation,
    seconds_to_threshold,
)

OUT = ROOT / "bench" / "results" / "algorithms.json"
FASTDDPG = {f"fastddpg-{a}": f"configs/pendulum_{a}.toml" for a in ("ddpg", "td3", "sac", "crossq")}
PEERS = {"sb3-sac": "SAC", "sb3-crossq": "CrossQ"}
SIDES = [*FASTDDPG, *PEERS]

PEER_RUNNER = '''
import json, sys, time
import gymnasium as gym
import stable_baselines3, sb3_contrib
from stable_baselines3 import SAC
from sb3_contrib import CrossQ
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor

spec = json.loads(sys.argv[1])


class Episodes(BaseCallback):
    def __init__(self):
        super().__init__()
        self.rows = []

    def _on_step(self):
        for info in self.locals["infos"]:
            if "episode" in info:
                self.rows.append((time.time(), float(info["episode"]["r"]), int(self.num_timesteps)))
        return True


env = Monitor(gym.make("Pendulum-v1"))
common = dict(learning_rate=1e-3, buffer_size=1_000_000, learning_starts=100, batch_size=256, gamma=0.99,
              train_freq=1, gradient_steps=1, seed=spec["seed"], device="cpu", verbose=0)
if spec["algo"] == "SAC":
    model = SAC("MlpPolicy", env, tau=0.005, policy_kwargs={"net_arch": [256, 256]}, **common)
else:
    model = CrossQ("MlpPolicy", env, policy_delay=2, policy_kwargs={"net_arch": {"pi": [256, 256], "qf": [256, 256]}},
                   **common)
cb = Episodes()
model.learn(total_timesteps=spec["steps"], callback=cb)
print(json.dumps({"episodes": cb.rows, "env_steps": int(model.num_timesteps),
                  "version": f"SB3 {stable_baselines3.__version__}, sb3-contrib {sb3_contrib.__version__}"}))
'''


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sides", nargs="+", default=SIDES, choices=SIDES, help="in this order for the first seed")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--total-steps", type=int, default=20_000)
    p.add_argument("--threads", type=int, default=0, help="torch threads of every run (default 0: each side's own)")
    p.add_argument("--cold", action="store_true", help="each fastddpg run compiles into an empty cache")
    p.add_argument("--sb3-python", default="/tmp/vsb3/bin/python", help="a venv's python with stable-baselines3 "
                   "and sb3-contrib")
    p.add_argument("--quick", action="store_true", help="1 seed x 2,000 env steps")
    p.add_argument("--out", default=str(OUT), help="the JSON file (the table goes beside it as .md), or a folder for "
                   f"{OUT.name}")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.total_steps = 1, 2_000
    if Path(args.out).is_dir():  # a folder: the usual file name in it (found before the first run, not after)
        args.out = str(Path(args.out) / OUT.name)
    return args


def run_one(side: str, seed: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    run_tmp = Path(tempfile.mkdtemp(dir=tmp))
    extra: dict[str, Any] = {}
    if side in FASTDDPG:
        run_dir = run_tmp / "run"
        cmd = [sys.executable, "-m", "fastddpg.cli", "run", "--config", FASTDDPG[side], "--seed", str(seed),
               "--total-steps", str(args.total_steps), "--device", "cpu", "--quiet", "--run-dir", str(run_dir),
               *(["--threads", str(args.threads)] if args.threads else [])]
        cache = (run_tmp if args.cold else tmp) / "inductor"
        launched, seconds, _ = launch(cmd, environment(args.threads, cache))
        rows, extra = fastddpg_episodes(run_dir, launched)
        import pandas as pd

        steps = pd.read_csv(run_dir / "episodes.csv")["global_step"].tolist()
    else:
        runner = run_tmp / "peer_runner.py"
        runner.write_text(PEER_RUNNER)
        spec = {"algo": PEERS[side], "seed": seed, "steps": args.total_steps}
        env = {k: v for k, v in environment(args.threads).items() if k != "PYTHONPATH"}
        launched, seconds, out = launch([args.sb3_python, str(runner), json.dumps(spec)], env)
        r = json.loads(out.strip().splitlines()[-1])
        rows = [(t - launched, ret) for t, ret, _ in r["episodes"]]
        steps = [s for _, _, s in r["episodes"]]
        extra = {"env_steps": r["env_steps"], "version": r["version"]}
    returns = [ret for _, ret in rows]
    return {"side": side, "seed": seed, "seconds": seconds, "steps_per_s": extra["env_steps"] / seconds, **extra,
            "seconds_to_threshold": seconds_to_threshold(rows, THRESHOLD),
            "steps_to_threshold": steps_to_threshold(list(zip(steps, returns, strict=True)), THRESHOLD),
            "last10_return": statistics.fmean(returns[-10:]) if returns else None}


def summarize(records: list[dict[str, Any]], sides: list[str]) -> list[dict[str, Any]]:
    rows = []
    for side in sides:
        rs = [r for r in records if r["side"] == side]
        if not rs:
            continue
        finals = [r["last10_return"] for r in rs if r["last10_return"] is not None]
        rows.append({"side": side, "runs": len(rs), "steps_per_s": statistics.median(r["steps_per_s"] for r in rs),
                     "reached": sum(r["seconds_to_threshold"] is not None for r in rs),
                     "seconds_to_threshold": median_to_threshold([r["seconds_to_threshold"] for r in rs]),
                     "steps_to_threshold": median_to_threshold([r["steps_to_threshold"] for r in rs]),
                     "final_mean": statistics.fmean(finals) if finals else None,
                     "final_min": min(finals) if finals else None, "final_max": max(finals) if finals else None})
    return rows


def markdown(table: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    def num(x: float | None, fmt: str) -> str:
        return "never" if x is None else format(x, fmt)

    lines = [f"Pendulum-v1, {meta['total_steps']:,} env steps per run, seeds {meta['seeds']}, medians (final return: "
             f"mean [min, max] over seeds of the last 10 training episodes); each run its own process, start-up and "
             f"compile included ({meta['cache']} compile cache); {meta['cpu']}, torch {meta['torch']}, "
             f"{meta.get('peer_version', '')}, {meta['date']}", "",
             "| run | env steps/s | seconds to -200 | env steps to -200 | seeds at -200 | final return |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in table:
        final = "" if r["final_mean"] is None else f"{r['final_mean']:.0f} [{r['final_min']:.0f}, {r['final_max']:.0f}]"
        lines.append(f"| {r['side']} | {r['steps_per_s']:,.0f} | {num(r['seconds_to_threshold'], '.1f')} | "
                     f"{num(r['steps_to_threshold'], ',.0f')} | {r['reached']}/{r['runs']} | {final} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sides = list(args.sides)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    plan = [(side, seed) for i, seed in enumerate(seeds) for side in rotation(sides, i)]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"total_steps": args.total_steps, "seeds": ", ".join(map(str, seeds)),
            "cache": "cold" if args.cold else "warm", **machine(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="algos-") as tmp:
        if not args.cold:  # fill the sitting's compile cache with each algorithm's update
            for side in [s for s in sides if s in FASTDDPG]:
                cmd = [sys.executable, "-m", "fastddpg.cli", "run", "--config", FASTDDPG[side], "--total-steps", "400",
                       "--compile", "default", "--device", "cpu", "--quiet", "--run-dir", str(Path(tmp) / side)]
                launch(cmd, environment(args.threads, Path(tmp) / "inductor"))
        for side, seed in plan:
            rec = run_one(side, seed, args, Path(tmp))
            records.append(rec)
            if "version" in rec:
                meta["peer_version"] = rec["version"]
            to, steps = rec["seconds_to_threshold"], rec["steps_to_threshold"]
            reached = "never" if to is None else f"{to:.1f} s / {steps:,} steps"
            print(f"{side:<16} seed {seed}: {rec['seconds']:6.1f} s, {rec['steps_per_s']:6.0f} steps/s, to -200: "
                  f"{reached}, final {rec['last10_return']:.0f}", flush=True)
            table = summarize(records, sides)
            out.write_text(json.dumps({"meta": meta, "table": table, "runs": records}, indent=1))
            out.with_suffix(".md").write_text(markdown(table, meta))
    print(markdown(summarize(records, sides), meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
