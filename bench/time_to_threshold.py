"""Time to threshold on Pendulum-v1: env steps/s and seconds to a 10-episode mean of -200, each run's whole process
timed as a user waits for it (imports, env creation and compile included).

    python bench/time_to_threshold.py --sb3-python /tmp/vsb3/bin/python   # 5 sides x 3 seeds x 10,000 env steps
    python bench/time_to_threshold.py --quick                              # 1 seed x 3,000 env steps: the plumbing
    python bench/time_to_threshold.py --sides fastddpg notebook --seeds 5 --warm-cache

Sides (SIDES): `fastddpg run` at its defaults (``--device cpu --quiet``), the same with ``--num-envs 1`` and with
``--num-envs 16`` (and, when asked for, ``fastddpg-compiled``: ``--compile default``, the compiled update where
the default takes the hand-derived one; ``fastddpg-noclip`` and ``fastddpg-16env-noclip``: ``--grad-clip-norm 0``,
SB3's setting); the notebook's loop (bench/baseline.py); Stable-Baselines3's DDPG with the
notebook's hyperparameters (bench/fidelity.py's HYPER: 2,000 random steps, updates from 1,000, Gaussian noise
0.1, batch 128, 256x256, Adam 1e-3, tau 0.005, one update per env step) in a virtual environment of its own
(``--sb3-python``; without one the SB3 side is skipped). fastddpg's defaults are the notebook's hyperparameters;
gradient clipping differs: fastddpg and the notebook clip the gradient norm at 1.0, SB3 does not clip.

Each run is its own process, one at a time. Its clock starts just before the launch and ends when the process
exits. The time to threshold is the first episode end at which the moving mean of the last 10 training returns
reaches -200, on that clock: fastddpg's episodes.csv counts wall_time from the trainer's start, which summary.json's
write time less its wall_time_s places on the clock; bench/baseline.py prints its episode-end seconds and the unix
time its clock started; the SB3 runner records the unix time of each episode end.

Seed-major, the sides' order rotating per seed (ABCDE, BCDEA, ...), the same seeds for every side. Threads are each
side's own default (fastddpg's auto, torch's default for the notebook and SB3) unless ``--threads``. Each fastddpg
run compiles into an empty TORCHINDUCTOR_CACHE_DIR, with an empty TMPDIR (where inductor keeps its precompiled C++
headers), of its own, as on a fresh machine, unless ``--warm-cache`` (one cache for the sitting, filled first by an
unmeasured short compiled run per fastddpg side). A default DDPG run on the CPU compiles nothing (``--compile auto``
takes the hand-derived update below 30,000 updates); ``fastddpg-compiled`` measures the compile.

With ``--eval-every N`` (a multiple of 400, so that every side can evaluate at the same steps) every side also
evaluates its current actor after the env step that reaches each multiple of N: ``--eval-episodes`` noise-free
episodes on an env of its own, episode i reset with seed + 10,000 + i, the same episodes on every side (fastddpg's
own ``--eval-every``; bench/baseline.py's and the SB3 runner's evaluation in the same terms). No evaluation draws
from training's random streams, so training is what it is without them. Each side times its evaluations, and every
seconds figure (episode ends, evaluations, launch to the first update, env steps/s) leaves them out: the clock is
training's, start-up included. The seconds to the threshold on evaluations are those of the first
evaluation whose mean return reaches it: a measure of the policy itself, free of the exploration noise in the
training returns and of when a side's episodes happen to end.

Reported per side: medians over seeds of env steps/s (env steps / process seconds) and of seconds to -200 (a seed
that never reaches it counts as never: the median exists when more than half reach it), how many seeds reached it,
and ratios of the medians: env steps/s against the notebook's, seconds to -200 against SB3's.
bench/results/time_to_threshold.json is rewritten after every run (a partial sitting keeps what it measured);
bench/results/time_to_threshold.md holds the table for the README's Performance section.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import SB3_VENV, first_crossing, sb3_python
from bench.fidelity import HYPER, machine
from bench.side_by_side import THREAD_VARS
from fastddpg.core.config import Config
from fastddpg.runs.evaluate import EVAL_SEED_OFFSET

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "time_to_threshold.json"
ENV_ID = "Pendulum-v1"
THRESHOLD = -200.0
FASTDDPG_SIDES = {"fastddpg": [], "fastddpg-1env": ["--num-envs", "1"], "fastddpg-16env": ["--num-envs", "16"],
                  "fastddpg-compiled": ["--compile", "default"],
                  # SB3's DDPG has no gradient clipping: these are the notebook's hyperparameters less its clip, as SB3
                  # runs them
                  "fastddpg-noclip": ["--grad-clip-norm", "0"],
                  "fastddpg-16env-noclip": ["--num-envs", "16", "--grad-clip-norm", "0"]}
SIDES = ["fastddpg", "fastddpg-1env", "fastddpg-16env", "notebook", "sb3"]  # the default sitting
ALL_SIDES = [*FASTDDPG_SIDES, "notebook", "sb3"]
LABELS = {**{side: " ".join(["fastddpg run", *flags]) if flags else "fastddpg run (defaults)"
             for side, flags in FASTDDPG_SIDES.items()},
          "notebook": "the notebook's loop (bench/baseline.py)",
          "sb3": "SB3 DDPG, the notebook's hyperparameters"}
EVAL_STEP = 400  # --eval-every's unit: the steps at which every side can evaluate (200-step episodes, 16 envs)
WARM_UP_STEPS = 1_200  # past update_after (1,000): the warm-up run compiles the update

SB3_RUNNER = '''
import json, sys, time
import gymnasium as gym
import numpy as np
import stable_baselines3
from stable_baselines3 import DDPG
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.noise import NormalActionNoise

spec = json.loads(sys.argv[1])
h = spec["hyper"]


class Episodes(BaseCallback):
    """Each episode's end (unix time less the evaluations' seconds so far, return) and, every eval_every env steps,
    the mean return of eval_episodes noise-free episodes (env step, that clock, mean) on an env of its own: episode
    i reset with eval_seed + i. predict(deterministic=True) draws no random numbers, so training is unchanged. The
    callback runs inside the rollout, before that env step's gradient step: one update behind the other sides'
    evaluations of the same step, of some thousands."""

    def __init__(self):
        super().__init__()
        self.rows, self.evals, self.eval_seconds = [], [], 0.0

    def _on_step(self):
        for info in self.locals["infos"]:
            if "episode" in info:
                self.rows.append((time.time() - self.eval_seconds, float(info["episode"]["r"])))
        if spec["eval_every"] and self.num_timesteps % spec["eval_every"] == 0:
            t0 = time.time()
            env, returns = gym.make(spec["env"]), []
            for i in range(spec["eval_episodes"]):
                obs, _ = env.reset(seed=spec["eval_seed"] + i)
                total, done = 0.0, False
                while not done:
                    action, _ = self.model.predict(obs, deterministic=True)
                    obs, reward, terminated, truncated, _ = env.step(action)
                    total, done = total + float(reward), terminated or truncated
                returns.append(total)
            env.close()
            self.evals.append((int(self.num_timesteps), t0 - self.eval_seconds, float(np.mean(returns))))
            self.eval_seconds += time.time() - t0
        return True


class Warm(DDPG):  # uniform random actions for random_steps env steps, updates from learning_starts
    def _sample_action(self, learning_starts, action_noise=None, n_envs=1):
        return super()._sample_action(max(learning_starts, h["random_steps"]), action_noise, n_envs)


env = Monitor(gym.make(spec["env"]))
scale = (env.action_space.high - env.action_space.low) / 2.0
noise = NormalActionNoise(np.zeros(scale.shape), (h["noise_sigma"] / scale).astype(np.float64))
model = Warm("MlpPolicy", env, learning_rate=h["lr"], buffer_size=h["buffer_size"],
             learning_starts=h["learning_starts"], batch_size=h["batch_size"], tau=h["tau"], gamma=h["gamma"],
             train_freq=1, gradient_steps=1, action_noise=noise, policy_kwargs={"net_arch": h["hidden"]},
             seed=spec["seed"], device="cpu", verbose=0)
cb = Episodes()
model.learn(total_timesteps=spec["steps"], callback=cb)
print(json.dumps({"episodes": cb.rows, "env_steps": int(model.num_timesteps), "evaluations": cb.evals,
                  "eval_seconds": cb.eval_seconds, "version": stable_baselines3.__version__}))
'''


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sides", nargs="+", default=SIDES, choices=ALL_SIDES, help="in this order for the first seed")
    p.add_argument("--seeds", type=int, default=3, help="seeds first-seed, first-seed + 1, ... (default: 3)")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--total-steps", type=int, default=10_000, help="env steps per run (default: 10,000)")
    p.add_argument("--threshold", type=float, default=THRESHOLD, help="of the 10-episode moving mean (default: -200)")
    p.add_argument("--threads", type=int, default=0, help="torch threads of every run (default 0: each side's own)")
    p.add_argument("--warm-cache", action="store_true", help="one compile cache for the sitting, filled first")
    p.add_argument("--sb3-python", default="", help="python of a venv with stable-baselines3 (default: "
                   "bench/.sb3-venv's if it exists; none: the SB3 side is skipped)")
    p.add_argument("--make-sb3-venv", action="store_true", help="make bench/.sb3-venv if it is missing (downloads)")
    p.add_argument("--eval-every", type=int, default=0, metavar="N",
                   help="every side also evaluates its actor every N env steps on noise-free episodes (fastddpg's "
                   "--eval-every; the same episodes on every side), and each run's seconds leave the evaluations' "
                   "time out; the report adds the seconds to the first evaluation at the threshold (default 0: none)")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation (default: 10)")
    p.add_argument("--quick", action="store_true", help="1 seed x 3,000 env steps: the plumbing, not learning")
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--rescore", nargs="+", metavar="JSON", default=None,
                   help="score these sittings' saved episodes again with the current rule (rewrites each JSON and "
                   "its .md) and print every seed's ratios against the notebook and SB3 of its sitting, with their "
                   "medians over all seeds; runs nothing")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.total_steps = 1, 3_000
    if args.seeds < 1 or args.total_steps < 1_000:
        p.error("use --seeds >= 1 and --total-steps >= 1000 (the first 1,000 steps have no updates)")
    if args.eval_every < 0 or args.eval_every % EVAL_STEP or args.eval_episodes < 1:
        p.error(f"use --eval-every 0 (none) or a multiple of {EVAL_STEP} env steps (every side evaluates at the same "
                "steps: the notebook after its 200-step episodes, 16 envs after their 16-step vector steps), and "
                "--eval-episodes >= 1")
    return args


# --- pure helpers ---------------------------------------------------------------------------------------------------
def rotation(sides: list[str], index: int) -> list[str]:
    """The sides' order for the ``index``-th seed: ABCDE, then BCDEA, CDEAB, ..."""
    k = index % len(sides)
    return sides[k:] + sides[:k]


def seconds_to_threshold(rows: list[tuple[float, float]], threshold: float) -> float | None:
    """``rows``: (seconds since launch, return) per episode, in the order they ended. The seconds at which the mean
    of the last 10 returns first reaches ``threshold`` (None: never), checked once per moment after every episode
    that ended then (`fastddpg.core.schema.first_crossing`)."""
    i = first_crossing([t for t, _ in rows], [r for _, r in rows], threshold)
    return None if i is None else rows[i][0]


def first_evaluation_at(evals: list[tuple[int, float, float]], threshold: float) -> tuple[int, float] | None:
    """``evals``: (env step, seconds since launch, mean return) per evaluation, in order. The (env step, seconds)
    of the first whose mean return reaches ``threshold`` (None: never)."""
    return next(((step, t) for step, t, ret in evals if ret >= threshold), None)


def evaluated_threshold(evals: list[tuple[int, float, float]] | None, threshold: float) -> dict[str, Any]:
    """A record's fields of `first_evaluation_at` (both None without evaluations or where none reached it)."""
    first = None if evals is None else first_evaluation_at(evals, threshold)
    return {"eval_steps_to_threshold": None if first is None else first[0],
            "eval_seconds_to_threshold": None if first is None else first[1]}


def median_to_threshold(values: list[float | None]) -> float | None:
    """Median seconds to the threshold over seeds, None (never) counting as infinite: None unless more than half
    reached it."""
    m = statistics.median(math.inf if v is None else v for v in values)
    return None if math.isinf(m) else m


def _median_of(records: list[dict[str, Any]], key: str) -> float | None:
    """The median of ``key`` over the records that have it (fastddpg's runs report start-up and compile times)."""
    values = [r[key] for r in records if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(records: list[dict[str, Any]], sides: list[str]) -> list[dict[str, Any]]:
    """One row per side: medians over its runs, reached count, ratios of the medians (see the module docstring)."""
    rows = []
    for side in sides:
        rs = [r for r in records if r["side"] == side]
        if rs:
            rows.append({"side": side, "runs": len(rs), "steps_per_s": statistics.median(r["steps_per_s"] for r in rs),
                         "seconds": statistics.median(r["seconds"] for r in rs),
                         "reached": sum(r["seconds_to_threshold"] is not None for r in rs),
                         "seconds_to_threshold": median_to_threshold([r["seconds_to_threshold"] for r in rs]),
                         "to_first_update_s": _median_of(rs, "to_first_update_s"),
                         "compile_s": _median_of(rs, "compile_s")})
            if any(r.get("evaluations") for r in rs):  # a sitting with --eval-every
                rows[-1].update({"eval_reached": sum(r["eval_seconds_to_threshold"] is not None for r in rs),
                                 "eval_seconds_to_threshold": median_to_threshold(
                                     [r["eval_seconds_to_threshold"] for r in rs]),
                                 "eval_steps_to_threshold": median_to_threshold(
                                     [r["eval_steps_to_threshold"] for r in rs])})
    by = {r["side"]: r for r in rows}
    for row in rows:
        nb, sb3 = by.get("notebook"), by.get("sb3")
        row["steps_per_s_vs_notebook"] = row["steps_per_s"] / nb["steps_per_s"] if nb else None
        for key, ratio in (("seconds_to_threshold", "to_threshold_vs_sb3"),
                           ("eval_seconds_to_threshold", "eval_to_threshold_vs_sb3")):
            pair = (row.get(key), sb3.get(key) if sb3 else None)
            if key in row:
                row[ratio] = pair[0] / pair[1] if None not in pair else None
    return rows


def label_of(side: str, meta: dict[str, Any]) -> str:
    """A side's name in the tables (the defaults' env count and SB3's version when the sitting knows them)."""
    if side == "fastddpg" and meta.get("fastddpg_num_envs"):
        return f"fastddpg run (defaults: {meta['fastddpg_num_envs']} envs)"
    if side == "sb3" and meta.get("sb3_version"):
        return f"SB3 {meta['sb3_version']} DDPG, the notebook's hyperparameters"
    return LABELS[side]


def markdown(table: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """The README's table, with a line naming the machine and the sitting above it and the caveats below."""
    def num(x: float | None, fmt: str) -> str:
        return "never" if x is None else format(x, fmt)

    def cell(x: float | None) -> str:  # a figure only fastddpg's runs report
        return "" if x is None else f"{x:.1f}"


    thr = meta["threshold"]
    lines = [f"{meta['env']}, {meta['total_steps']:,} env steps per run, seeds {meta['seeds']}, medians; each run its "
             f"own process, start-up and compile included ({meta['cache']} compile cache), threads: {meta['threads']}; "
             f"{meta['cpu']}, torch {meta['torch']}, {meta['date']}", "",
             f"| run | seeds | env steps/s | vs the notebook | seconds to {thr:g} | seeds at {thr:g} | vs SB3 "
             "| seconds per run | launch to first update (s) | compile (s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in table:
        label = label_of(r["side"], meta)
        vs_nb = "" if r["steps_per_s_vs_notebook"] is None else f"{r['steps_per_s_vs_notebook']:.2f}x"
        vs_sb3 = "" if r["to_threshold_vs_sb3"] is None else f"{r['to_threshold_vs_sb3']:.2f}x"
        lines.append(f"| {label} | {r['runs']} | {r['steps_per_s']:,.0f} | {vs_nb} | "
                     f"{num(r['seconds_to_threshold'], '.1f')} | {r['reached']}/{r['runs']} | {vs_sb3} | "
                     f"{r['seconds']:.1f} | {cell(r.get('to_first_update_s'))} | "
                     f"{cell(r.get('compile_s'))} |")
    lines += ["", "fastddpg (but its --grad-clip-norm 0 sides) and the notebook clip the gradient norm at 1.0; SB3's "
              "DDPG does not clip."]
    if any("eval_reached" in r for r in table):
        lines += ["", f"Noise-free evaluations every {meta['eval_every']:,} env steps, {meta['eval_episodes']} "
                  "episodes each, the same episodes on every side; env steps/s and every seconds to the threshold, "
                  "above and below, leave the evaluations' time out (the seconds per run are the process's). The "
                  "first evaluation whose mean return reaches the threshold:", "",
                  f"| run | seconds to {thr:g} | seeds at {thr:g} | vs SB3 | env steps |",
                  "| --- | --- | --- | --- | --- |"]
        for r in table:
            if "eval_reached" in r:
                vs_sb3 = "" if r["eval_to_threshold_vs_sb3"] is None else f"{r['eval_to_threshold_vs_sb3']:.2f}x"
                lines.append(f"| {label_of(r['side'], meta)} | {num(r['eval_seconds_to_threshold'], '.1f')} | "
                             f"{r['eval_reached']}/{r['runs']} | {vs_sb3} | "
                             f"{num(r['eval_steps_to_threshold'], ',.0f')} |")
    return "\n".join(lines) + "\n"


def training_evaluations(run_dir: Path) -> list[tuple[str, int, float, float, float]]:
    """A fastddpg run directory's evaluations during training (periodic and final) as (kind, env step, wall_time,
    eval_seconds, mean return), in order (`fastddpg.core.schema.EvalRow`: wall_time its start on episodes.csv's
    clock, eval_seconds the seconds of the evaluations before it)."""
    path = run_dir / "eval.csv"
    if not path.exists():
        return []
    by_start: dict[tuple[float, int, str], list[dict[str, str]]] = {}
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            wall = float(r.get("wall_time") or "nan")
            if r["kind"] != "manual" and not math.isnan(wall):  # (NaN: an older run's rows)
                by_start.setdefault((wall, int(r["global_step"]), r["kind"]), []).append(r)
    return [(kind, step, wall, float(rs[0]["eval_seconds"]), statistics.fmean(float(r["return"]) for r in rs))
            for (wall, step, kind), rs in sorted(by_start.items())]


def eval_free_clock(evals: list[tuple[float, float]], total_eval_s: float) -> Callable[[float], float]:
    """Seconds on a run's clock (episodes.csv's wall_time) -> the same less the evaluations that ended before
    then: ``evals`` holds every evaluation's (wall_time, eval_seconds) in order (`training_evaluations`); each ends
    when the next one's eval_seconds count it, the last when ``total_eval_s`` (summary.json's eval_seconds) does."""
    starts = [w for w, _ in evals]
    ended = [e for _, e in evals[1:]] + [total_eval_s]

    def clock(w: float) -> float:
        k = bisect.bisect_left(starts, w)  # evaluations that began before w: episode rows come before them
        return w - (ended[k - 1] if k else 0.0)

    return clock


def fastddpg_episodes(run_dir: Path, launched: float) -> tuple[list[tuple[float, float]], dict[str, Any]]:
    """A finished fastddpg run directory's episodes as (seconds since ``launched``, return), and its start-up
    seconds (launch to the trainer's start), compile seconds, env steps and the thread counts it trained on
    (summary.json's ``thread_changes``: the auto threads' and the tuner's choices). episodes.csv's wall_time counts
    from the trainer's start; summary.json is written just after its wall_time_s is read, so its modification time
    less wall_time_s is that start on the unix clock. A run with --eval-every adds its periodic evaluations
    (``evaluations``: env step, seconds since ``launched``, mean return) and their seconds (``eval_seconds``), and
    every seconds figure leaves the evaluations' time out."""
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text())
    startup = summary_path.stat().st_mtime - summary["wall_time_s"] - launched
    evals, eval_s = training_evaluations(run_dir), float(summary.get("eval_seconds", 0.0))
    clock = eval_free_clock([(w, e) for _, _, w, e, _ in evals], eval_s)
    with open(run_dir / "episodes.csv", newline="") as f:
        rows = [(startup + clock(float(r["wall_time"])), float(r["return"])) for r in csv.DictReader(f)]
    first = summary.get("first_update_s")
    return rows, {"startup_s": startup, "compile_s": summary.get("compile_seconds"),
                  "to_first_update_s": None if first is None else startup + clock(first),
                  "env_steps": int(summary["env_steps"]), "thread_changes": summary.get("thread_changes"),
                  # the multiples of --eval-every only: the other sides have no final evaluation
                  "evaluations": [(step, startup + w - e, ret) for kind, step, w, e, ret in evals
                                  if kind == "periodic"],
                  "eval_seconds": eval_s}


# --- the runs ---------------------------------------------------------------------------------------------------------
def environment(threads: int, cache: Path | None = None) -> dict[str, str]:
    """This process's environment without thread settings (each side's default) or with ``threads`` for all."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    if cache is not None:
        env["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
        # inductor keeps its precompiled C++ headers under the temp dir, not the cache dir: a fresh machine has none
        env["TMPDIR"] = str(cache.parent / "tmp")
        (cache.parent / "tmp").mkdir(parents=True, exist_ok=True)
    return env


def launch(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``cmd`` to its end: its launch time (unix), its seconds from launch to exit, its stdout."""
    launched = time.time()
    p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.time() - launched
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed ({p.returncode}): {p.stderr.strip()[-800:]}")
    return launched, seconds, p.stdout


def fastddpg_command(side: str, seed: int, steps: int, threads: int, run_dir: Path,
                     evals: tuple[int, int] = (0, 0)) -> list[str]:
    """``evals``: (every N env steps, episodes), N = 0 for none."""
    return [sys.executable, "-m", "fastddpg.cli", "run", "--total-steps", str(steps), "--seed", str(seed),
            "--device", "cpu", "--quiet", "--run-dir", str(run_dir), *FASTDDPG_SIDES[side],
            *(["--threads", str(threads)] if threads else []),
            *(["--eval-every", str(evals[0]), "--eval-episodes", str(evals[1])] if evals[0] else [])]


def run_one(side: str, seed: int, args: argparse.Namespace, tmp: Path, sb3: Path | None) -> dict[str, Any]:
    """One measured run: its record (side, seed, process seconds, env steps/s, episodes, seconds to threshold)."""
    run_tmp = Path(tempfile.mkdtemp(dir=tmp))
    extra: dict[str, Any] = {}
    if side in FASTDDPG_SIDES:
        cache = tmp / "inductor" if args.warm_cache else run_tmp / "inductor"
        run_dir = run_tmp / "run"
        launched, seconds, _ = launch(fastddpg_command(side, seed, args.total_steps, args.threads, run_dir,
                                                       (args.eval_every, args.eval_episodes)),
                                      environment(args.threads, cache))
        rows, extra = fastddpg_episodes(run_dir, launched)
    elif side == "notebook":
        cmd = [sys.executable, str(ROOT / "bench" / "baseline.py"), "--total-steps", str(args.total_steps), "--seed",
               str(seed), "--device", "cpu", "--eval-every", str(args.eval_every), "--eval-episodes",
               str(args.eval_episodes), "--eval-seed", str(seed + EVAL_SEED_OFFSET)]
        launched, seconds, out = launch(cmd, environment(args.threads))
        r = json.loads(out.strip().splitlines()[-1])
        startup = r["started_unix"] - launched
        rows = [(startup + t, ret) for t, ret in zip(r["episode_end_seconds"], r["returns"], strict=True)]
        extra = {"startup_s": startup, "env_steps": r["env_steps"], "eval_seconds": r["eval_seconds"],
                 "evaluations": [(step, startup + t, ret) for step, t, ret in r["evaluations"]]}
    else:
        runner = run_tmp / "sb3_runner.py"
        runner.write_text(SB3_RUNNER)
        spec = {"env": ENV_ID, "seed": seed, "steps": args.total_steps, "hyper": HYPER, "eval_every": args.eval_every,
                "eval_episodes": args.eval_episodes, "eval_seed": seed + EVAL_SEED_OFFSET}
        env = {k: v for k, v in environment(args.threads).items() if k != "PYTHONPATH"}
        launched, seconds, out = launch([str(sb3), str(runner), json.dumps(spec)], env)
        r = json.loads(out.strip().splitlines()[-1])
        rows = [(t - launched, ret) for t, ret in r["episodes"]]
        extra = {"env_steps": r["env_steps"], "sb3_version": r["version"], "eval_seconds": r["eval_seconds"],
                 "evaluations": [(step, t - launched, ret) for step, t, ret in r["evaluations"]]}
    returns = [ret for _, ret in rows]
    trained = seconds - extra["eval_seconds"]  # the process's seconds less its evaluations'
    return {"side": side, "seed": seed, "steps": args.total_steps, "seconds": seconds, **extra,
            "steps_per_s": extra["env_steps"] / trained,
            "seconds_to_threshold": seconds_to_threshold(rows, args.threshold),
            **evaluated_threshold(extra["evaluations"] if args.eval_every else None, args.threshold),
            "last10_return": statistics.fmean(returns[-10:]) if returns else None, "episodes": rows}


def resolve_sb3(args: argparse.Namespace) -> tuple[Path | None, str]:
    """SB3's python, or None and the line that says why its side is skipped."""
    if args.make_sb3_venv and not args.sb3_python:
        return sb3_python(), ""
    python = Path(args.sb3_python) if args.sb3_python else SB3_VENV / "bin" / "python"
    if python.exists():
        return python, ""
    return None, (f"SB3 side skipped: no python at {python}; pass --sb3-python PATH (a venv with stable-baselines3) "
                  "or --make-sb3-venv")


def per_seed_ratios(records: list[dict[str, Any]]) -> dict[str, dict[str, list[float | None]]]:
    """For each fastddpg side: per seed, its env steps/s over the notebook's and its seconds to the threshold over
    SB3's (None where either never reached it, or the seed lacks that side), in seed order."""
    by = {(r["side"], r["seed"]): r for r in records}
    seeds = sorted({r["seed"] for r in records})
    evaluated_sitting = any(r.get("evaluations") for r in records)
    out: dict[str, dict[str, list[float | None]]] = {}
    for side in [s for s in FASTDDPG_SIDES if any(k[0] == s for k in by)]:
        speed, ttt, evaluated = [], [], []
        for seed in seeds:
            mine, nb, sb3 = by.get((side, seed)), by.get(("notebook", seed)), by.get(("sb3", seed))
            speed.append(mine["steps_per_s"] / nb["steps_per_s"] if mine and nb else None)
            for key, ratios in (("seconds_to_threshold", ttt), ("eval_seconds_to_threshold", evaluated)):
                pair = (mine or {}).get(key), (sb3 or {}).get(key)
                ratios.append(pair[0] / pair[1] if None not in pair else None)
        out[side] = {"seeds": seeds, "steps_per_s_vs_notebook": speed, "to_threshold_vs_sb3": ttt}
        if evaluated_sitting:
            out[side]["eval_to_threshold_vs_sb3"] = evaluated
    return out


def rescore(paths: list[str]) -> int:
    """`--rescore`: each sitting's records scored again with `seconds_to_threshold`, its table and markdown
    rewritten; then the per-seed ratios of all the sittings together, with medians (a seed that never reached the
    threshold counts as never: the median is None unless more than half reached it)."""
    everything: dict[str, dict[str, list[float | None]]] = {}
    for path in map(Path, paths):
        data = json.loads(path.read_text())
        threshold = data["args"]["threshold"]
        changed = 0
        for rec in data["records"]:
            new = seconds_to_threshold([tuple(e) for e in rec["episodes"]], threshold)
            changed += new != rec["seconds_to_threshold"]
            rec["seconds_to_threshold"] = new
        sides = [s for s in data["args"]["sides"] if any(r["side"] == s for r in data["records"])]
        data["table"] = summarize(data["records"], sides)
        data["meta"]["rescored"] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                    "rule": "the last 10 episodes' mean, checked once per moment after every "
                                            "episode that ended then, full windows only "
                                            "(fastddpg.core.schema.first_crossing)",
                                    "records_changed": changed}
        path.write_text(json.dumps(data, indent=1) + "\n")
        path.with_suffix(".md").write_text(markdown(data["table"], data["meta"]))
        print(f"{path}: {changed} of {len(data['records'])} runs' seconds to {threshold:g} changed")
        for side, r in per_seed_ratios(data["records"]).items():
            for key, values in r.items():
                everything.setdefault(side, {}).setdefault(key, []).extend(values)

    def fmt(values: list[float | None]) -> str:
        done = [v for v in values if v is not None]
        med = median_to_threshold(values)
        span = f"{min(done):.2f}-{max(done):.2f}" if done else "-"
        return f"median {'never' if med is None else f'{med:.2f}x'} (range {span}, {len(done)}/{len(values)} seeds)"

    for side, r in everything.items():
        print(f"{side}: env steps/s vs the notebook {fmt(r['steps_per_s_vs_notebook'])}; "
              f"seconds to the threshold vs SB3 {fmt(r['to_threshold_vs_sb3'])}"
              + (f"; on evaluations {fmt(r['eval_to_threshold_vs_sb3'])}" if "eval_to_threshold_vs_sb3" in r else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rescore:
        return rescore(args.rescore)
    sides = list(args.sides)
    sb3, why = resolve_sb3(args) if "sb3" in sides else (None, "")
    if why:
        print(why, flush=True)
        sides.remove("sb3")
    if not sides:
        return 0
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    plan = [(side, seed) for i, seed in enumerate(seeds) for side in rotation(sides, i)]
    out, md = Path(args.out), Path(args.out).with_suffix(".md")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"env": ENV_ID, "total_steps": args.total_steps, "threshold": args.threshold,
            "seeds": ", ".join(map(str, seeds)), "cache": "warm" if args.warm_cache else "cold",
            "threads": args.threads or "each side's default", "fastddpg_num_envs": Config().num_envs,
            **machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "sb3_python": str(sb3 or ""),
            "eval_every": args.eval_every, "eval_episodes": args.eval_episodes}
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ttt-") as tmp:
        if args.warm_cache:  # fill the sitting's cache: no measured run compiles from scratch
            for side in [s for s in sides if s in FASTDDPG_SIDES]:  # (auto would not compile so short a run)
                cmd = fastddpg_command(side, 0, WARM_UP_STEPS, args.threads, Path(tmp) / f"warm-{side}")
                launch([*cmd, "--compile", "default"], environment(args.threads, Path(tmp) / "inductor"))
        for side, seed in plan:
            rec = run_one(side, seed, args, Path(tmp), sb3)
            records.append(rec)
            meta["sb3_version"] = rec.get("sb3_version", meta.get("sb3_version"))
            print(json.dumps({k: v for k, v in rec.items() if k != "episodes"}), flush=True)
            table = summarize(records, sides)
            out.write_text(json.dumps({"meta": meta, "args": vars(args), "hyper": HYPER, "plan": plan,
                                       "completed": len(records), "records": records, "table": table}, indent=1)
                           + "\n")
            md.write_text(markdown(table, meta))
    print(md.read_text())
    print(f"wrote {out} and {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
